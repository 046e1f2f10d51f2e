"""`raytrade tune` on 2 CPUs: a 2-trial ASHA sweep and a 2-trial PBT sweep from
tune_configs/smoke.yaml with tiny budgets. Each gives one MLflow parent run with a child run per
trial, an exported best policy that loads, a registered model version, and PBO / DSR (values,
or n/a with the reason). Plus: a trial's real setup path (algorithm built, trained, evaluated)
never reads the test split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "tune_configs/smoke.yaml")


def sweep(tmp: Path, *extra: str) -> tuple[dict, str]:
    args = ["tune", SMOKE, "--set", "stopping.iterations=4", "--set", "evaluation.interval_iterations=1",
            "--set", "algorithm.train_batch_size=128", "--set", f"tracking.runs_dir={tmp / 'runs'}",
            "--set", f"tracking.mlflow_uri=sqlite:///{tmp / 'mlruns.db'}",
            "--set", f"tracking.bounds_file={ROOT / 'tune_configs/bounds.yaml'}"]
    for item in extra:
        args += ["--set", item]
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    print(f"sweep took {time.perf_counter() - t0:.1f} s\n{result.output}")
    assert result.exit_code == 0, result.output
    (summary_path,) = (tmp / "runs").glob("smoke-tune-*/summary.json")
    return json.loads(summary_path.read_text()), result.output


def check_sweep(tmp: Path, summary: dict, output: str) -> list:
    import mlflow
    from ray.rllib.core.rl_module.rl_module import RLModule

    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_id == summary["mlflow_parent_run_id"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(summary["trials"]) == 2
    metric = summary["metric"]
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["raytrade.sweep"] == summary["name"]
        assert metric in child.data.metrics and "learners/default_policy/total_loss" in child.data.metrics
        assert child.data.params["algorithm.train_batch_size"] == "128"
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["policy"]
    assert parent.info.status == "FINISHED" and parent.data.params["tune.metric"] == metric
    assert f"best/{metric}" in parent.data.metrics

    module = RLModule.from_checkpoint(summary["best_policy"])  # the exported best policy loads
    assert module is not None and Path(summary["best_policy"]).parent.name == summary["name"]
    versions = client.search_model_versions("name='smoke'")
    assert any(v.run_id == parent.info.run_id and v.version == int(summary["registered_version"]) for v in versions)

    for key in ("pbo", "dsr"):
        stat, tag = summary["statistics"][key], parent.data.tags[f"overfitting.{key}"]
        if stat["value"] is None:
            assert stat["reason"] and tag.startswith("n/a (")
        else:
            assert 0.0 <= stat["value"] <= 1.0 and f"overfitting/{key}" in parent.data.metrics
        assert f"{key.upper()} " in output
    assert "best trial" in output and summary["best_trial"] in output
    return children


@pytest.mark.slow
def test_asha_sweep_tracks_trials_exports_and_scores_the_best(ray_session, tmp_path):
    summary, output = sweep(tmp_path)
    check_sweep(tmp_path, summary, output)
    assert summary["metric"] == "val_stochastic/sharpe"
    assert {t["params"]["seed"] for t in summary["trials"]} == {1, 2}  # the grid, one trial per seed
    best = max(summary["trials"], key=lambda t: t["score"])
    assert summary["best_trial"] == best["trial_id"] and summary["best_score"] == best["score"]


@pytest.mark.slow
def test_pbt_sweep_mutates_and_exploits(ray_session, tmp_path):
    summary, output = sweep(tmp_path, "stopping.iterations=6", "tune.scheduler.name=pbt",
                            "tune.scheduler.perturbation_interval_iterations=2",
                            "tune.scheduler.hyperparam_mutations={algorithm.lr: {loguniform: [1.0e-4, 3.0e-3]}, "
                            "algorithm.clip_param: {uniform: [0.1, 0.3]}}")
    children = check_sweep(tmp_path, summary, output)
    for trial in summary["trials"]:
        assert 1e-4 <= trial["params"]["algorithm.lr"] <= 3e-3 and 0.1 <= trial["params"]["algorithm.clip_param"] <= 0.3
        assert trial["iterations"] == 6 and trial["status"] == "done (iterations)"
    for child in children:  # the mutated hyperparameters are logged as metrics over time
        assert "config/algorithm.clip_param" in child.data.metrics
    exploits = [k for c in children for k in c.data.tags if k.startswith("raytrade.pbt.exploit.")]
    print("PBT exploits:", exploits)


def test_a_trials_setup_path_never_reads_the_test_split(ray_session, tmp_path, monkeypatch):
    """The trainable's own setup (algorithm built in-process with num_env_runners=0), one
    training iteration and one validation evaluation: no test symbol is ever read."""
    import pandas as pd

    from app.data.schema import DatasetKey
    from app.data.store import ParquetStore
    from app.runs.env_factory import load_env_data
    from app.tuning.runner import absolutize
    from app.tuning.trainable import SweepContext, start_session
    from tests.unit.data.conftest import make_bars
    from tests.unit.training.test_run_data import SECTORS, experiment

    store = ParquetStore(tmp_path / "store")
    symbols = [f"S{i:02d}" for i in range(15)]
    store.write(DatasetKey("t", "stock", "1d"), pd.concat([make_bars(n=400, symbol=s, start="2015-01-01", seed=i)
                                                          for i, s in enumerate(symbols)]))
    store.write(DatasetKey("t", "index", "1d"), make_bars(n=400, symbol="^IDX", start="2015-01-01", seed=99))
    meta_path = tmp_path / "meta.parquet"
    pd.DataFrame({"symbol": symbols, "sector": [SECTORS[i % 3] for i in range(15)]}).to_parquet(meta_path)

    reads: list[str] = []
    real_read, real_load = ParquetStore.read, ParquetStore.load_arrays

    def read(self, key, syms=None, *args, **kwargs):
        reads.extend(syms if syms is not None else self.symbols(key))
        return real_read(self, key, syms, *args, **kwargs)

    def load_arrays(self, key, syms=None):
        reads.extend(syms if syms is not None else self.symbols(key))
        return real_load(self, key, syms)

    monkeypatch.setattr(ParquetStore, "read", read)
    monkeypatch.setattr(ParquetStore, "load_arrays", load_arrays)
    load_env_data.cache_clear()
    base = experiment(store, meta_path).model_dump(mode="json")
    base["algorithm"] |= {"train_batch_size": 64, "minibatch_size": 32, "num_epochs": 1}
    base["resources"] = {"num_env_runners": 0, "num_envs_per_env_runner": 2}
    base["evaluation"] = {"episodes": 2, "interval_iterations": 1}
    base["tracking"] = {"bounds_file": None, "runs_dir": str(tmp_path / "runs")}
    ctx = SweepContext(absolutize(base), "sweep", None, "val_greedy/sharpe", "max", (1,))
    exp, session = start_session(ctx, {"algorithm.lr": 3e-4, "seed": 5})
    try:
        metrics = session.step() | session.evaluate()
    finally:
        session.close()
    assert "val_greedy/sharpe" in metrics and exp.seed == 5
    test_symbols = set(session.data.splits["by_symbol"].symbols["test"])
    assert test_symbols and reads and not test_symbols & set(reads)

"""``raytrade runs`` and ``raytrade runs compare`` on a real (temporary) sqlite MLflow store written
with MlflowTracker: a sweep (parent run + two trials) and a standalone run. No Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.tracking import runs_view as rv

runner = CliRunner()
BOX_DRAWING = {chr(c) for c in range(0x2500, 0x2580)}
RETURN = "env_runners/episode_return_mean"
SHARPE = "val_greedy/sharpe"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """The store's URI. trial-a's return rises, trial-b's falls; they differ in lr (and gamma,
    which only trial-b has); the standalone run lives in another experiment."""
    from app.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE")}
    try:
        sweep = MlflowTracker(uri, "tests", "sweep-lr")
        for name, lr, sign in (("trial-a", 3e-4, 1), ("trial-b", 1e-3, -1)):
            trial = MlflowTracker(uri, "tests", name, parent_run_id=sweep.run_id)
            trial.log_params({"algorithm": {"lr": lr}, "seed": 1} | ({"gamma": 0.9} if sign < 0 else {}))
            trial.set_tags({"raytrade.env": "raytrade/SyntheticMeanReversion-v0"})
            for it in range(1, 21):
                metrics = {RETURN: sign * it / 10, "iteration": it}
                if it % 5 == 0:
                    metrics[SHARPE] = 0.5 + sign * it / 30
                trial.log_metrics(metrics, step=it * 1000)
            trial.end("FINISHED")
        sweep.end("FINISHED")
        solo = MlflowTracker(uri, "other", "solo-run")
        solo.log_params({"algorithm": {"lr": 5e-5}, "seed": 2})
        for it in range(1, 4):
            solo.log_metrics({RETURN: 0.25, "iteration": it}, step=it * 256)  # constant: a flat curve
    finally:  # MlflowTracker sets process-wide MLflow env vars: leave the session as it was
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return uri


def invoke(*args: str):
    return runner.invoke(app, ["runs", *args])


def line_with(output: str, text: str) -> str:
    return next(line for line in output.splitlines() if text in line)


def spark(line: str) -> list[str]:
    """The sparklines in a line of output."""
    out, current = [], ""
    for ch in line + " ":
        if ch in rv.GLYPHS:
            current += ch
        elif current:
            out.append(current)
            current = ""
    return out


def test_listing_shows_the_sweep_then_its_trials_indented_with_sparklines(store):
    result = invoke("--mlflow-uri", store)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    order = [next(i for i, line in enumerate(lines) if name in line)
             for name in ("solo-run", "sweep-lr (2 trials)", "trial-a", "trial-b")]
    assert order == sorted(order)  # newest top-level first; trials in start order under their sweep
    assert "├─ trial-a" in lines[order[2]] and "└─ trial-b" in lines[order[3]]
    rising, falling = spark(lines[order[2]]), spark(lines[order[3]])
    assert rising[0][0] == "▁" and rising[0][-1] == "█" and len(rising) == 2  # return and val sharpe
    assert falling[0][0] == "█" and falling[0][-1] == "▁"
    assert len(set(spark(lines[order[0]])[0])) == 1  # the constant run is flat
    assert "20.0k" in lines[order[2]] and "40.0k" in lines[order[1]]  # env steps; the sweep's total
    assert "1 sweep, 1 standalone run, 4 runs" in result.output


def test_plain_has_no_box_drawing_and_indents_trials(store):
    result = invoke("--mlflow-uri", store, "--plain", "--width", "8")
    assert result.exit_code == 0, result.output
    assert not BOX_DRAWING & set(result.output)
    trial_a = line_with(result.output, "trial-a")
    assert trial_a.startswith("  trial-a") and line_with(result.output, "sweep-lr").startswith("sweep-lr")
    assert [len(s) for s in spark(trial_a)] == [8, 4]  # 20 returns averaged to 8; 4 validations
    assert "trial-a *" in result.output  # the sweep's best trial by return


def test_experiment_limit_and_metric_options(store):
    only = invoke("--mlflow-uri", store, "--plain", "--experiment", "other")
    assert only.exit_code == 0 and "solo-run" in only.output and "sweep-lr" not in only.output
    newest = invoke("--mlflow-uri", store, "--plain", "--limit", "1")
    assert "solo-run" in newest.output and "trial-a" not in newest.output and "newest 1 of 2" in newest.output
    custom = invoke("--mlflow-uri", store, "--plain", "-m", "iteration:min")
    assert custom.exit_code == 0 and "iteration last" in custom.output and "return" not in custom.output
    unknown = invoke("--mlflow-uri", store, "--experiment", "nope")
    assert unknown.exit_code == 2 and "no experiment 'nope'" in unknown.output and "tests" in unknown.output


def test_an_empty_store_gives_a_hint_and_is_not_created(tmp_path):
    db = tmp_path / "none.db"
    result = invoke("--mlflow-uri", f"sqlite:///{db}")
    assert result.exit_code == 0 and "raytrade train tune_configs/smoke.yaml" in result.output
    assert not db.exists()


def test_compare_shows_differing_params_and_both_sparklines(store):
    result = invoke("compare", "trial-a", "trial-b", "--mlflow-uri", store, "--plain")
    assert result.exit_code == 0, result.output
    assert not BOX_DRAWING & set(result.output)
    out = result.output
    assert out.startswith("A: trial-a (") and "in sweep sweep-lr" in out and "\nB: trial-b (" in out
    assert "params that differ: 2 of 3" in out  # algorithm.lr and gamma; seed is the same
    lr = line_with(out, "algorithm.lr").split()
    assert lr == ["algorithm.lr", "0.0003", "0.001"]
    assert line_with(out, "gamma").split() == ["gamma", "-", "0.9"]
    assert "seed" not in out
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("return"))
    (curve_a,), (curve_b,) = spark(lines[i]), spark(lines[i + 1])
    # one scale (-2 .. +2): both start near the middle, A ends at the top and B at the bottom
    assert {rv.GLYPHS.index(curve_a[0]), rv.GLYPHS.index(curve_b[0])} <= {3, 4}
    assert curve_a[-1] == "█" and curve_b[-1] == "▁"
    assert lines[i + 2].split() == ["Δ", "-4.000", "-2.100"]  # B - A: last -2 - 2, best -0.1 - 2
    assert "val sharpe" in out


def test_compare_by_id_prefix_with_options_before_the_subcommand(store):
    listing = invoke("--mlflow-uri", store, "--plain")
    trial_b_id = line_with(listing.output, "trial-b").split()[1]
    result = runner.invoke(app, ["runs", "--mlflow-uri", store, "--plain", "compare", "trial-a", trial_b_id[:6]])
    assert result.exit_code == 0, result.output
    assert "B: trial-b" in result.output and not BOX_DRAWING & set(result.output)
    rich = invoke("compare", "sweep", "solo", "--mlflow-uri", store)
    assert rich.exit_code == 0 and "params that differ" in rich.output and "┃" in rich.output


def test_compare_an_unknown_run_exits_2_naming_close_matches(store):
    result = invoke("compare", "trial-a", "trial-c", "--mlflow-uri", store)
    assert result.exit_code == 2
    assert "no run named 'trial-c'" in result.output and "trial-a" in result.output
    ambiguous = invoke("compare", "trial", "solo-run", "--mlflow-uri", store)
    assert ambiguous.exit_code == 2 and "matches 2 runs" in ambiguous.output


def test_import_app_cli_does_not_import_mlflow_or_rich_tables():
    code = ("import sys, app.cli; print(','.join(m for m in ('mlflow', 'app.tracking.runs_view', "
            "'app.tracking.mlflow_tracker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- raytrade runs --json and raytrade inspect -----------------------------------------------

def _config(lr: float) -> dict:
    return {"name": "exp", "seed": 1, "env": {"id": "raytrade/CryptoFutures-v0"}, "model": {"name": "gru"},
            "algorithm": {"name": "PPO", "lr": lr}}


def _run_dir(root, name: str, config: dict, state: dict):
    import json as _json

    import yaml

    path = root / name
    (path / "checkpoints" / "final").mkdir(parents=True)
    (path / "experiment.yaml").write_text(yaml.safe_dump(config))
    (path / "state.json").write_text(_json.dumps(state))
    return path


@pytest.fixture(scope="module")
def world(store, tmp_path_factory) -> dict:
    """A copy of ``store`` (its schema is already migrated: a new sqlite store costs ~20 s) plus, in
    experiment ``review``, an older run (lr 3e-4) and a newer one of the same name stem (lr 1e-3)
    with a run dir (an alert in state.json, a final checkpoint, a backtest summary), and a run dir
    MLflow never heard of."""
    import shutil

    import pandas as pd

    from app.tracking.mlflow_tracker import MlflowTracker

    tmp = tmp_path_factory.mktemp("review")
    shutil.copy(store.removeprefix("sqlite:///"), tmp / "mlruns.db")
    uri, runs = f"sqlite:///{tmp / 'mlruns.db'}", tmp / "runs"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE")}
    try:
        old = MlflowTracker(uri, "review", "exp-20261201-000000")
        old.log_params(_config(3e-4))
        old.log_metrics({RETURN: 0.1, "iteration": 1}, step=100)
        old.end("FINISHED")
        new = MlflowTracker(uri, "review", "exp-20261202-000000")
        path = _run_dir(runs, "exp-20261202-000000", _config(1e-3),
                        {"iteration": 10, "env_steps": 1000, "best_metric": 0.42, "best_iteration": 8,
                         "mlflow_run_id": new.run_id, "status": "finished", "alerts": ["entropy collapsed"]})
        (path / "backtests" / "test-greedy").mkdir(parents=True)
        pd.DataFrame([{"strategy": "agent", "scope": "portfolio", "symbol": "*PORTFOLIO*", "metric": "sharpe",
                       "value": 1.25, "ci_low": 1.0, "ci_high": 1.5, "n": 9, "ci_method": "bootstrap"}]
                     ).to_parquet(path / "backtests" / "test-greedy" / "summary.parquet")
        new.log_params(_config(1e-3))
        new.set_tags({"raytrade.run_dir": str(path), "raytrade.env": "raytrade/CryptoFutures-v0"})
        for it in range(1, 11):
            new.log_metrics({RETURN: it / 10, "iteration": it, "actions/frac_0": 0.5 - it / 40,
                             "actions/frac_1": 0.5 + it / 40}, step=it * 100)
        new.alert("return_mean above bound", 5)
        new.end("FINISHED")
        _run_dir(runs, "orphan-20261203-000000", _config(1e-3) | {"name": "orphan"},
                 {"iteration": 2, "status": "failed"})
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {"uri": uri, "runs": str(runs), "path": str(path), "new_id": new.run_id}


def inspect(world: dict, *args: str):
    return runner.invoke(app, ["inspect", *args, "--mlflow-uri", world["uri"], "--runs-dir", world["runs"]])


def test_inspect_reviews_a_run_from_mlflow_and_its_run_dir(world):
    result = inspect(world, "exp-20261202")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"# run exp-20261202-000000 ({world['new_id']})")
    assert "status finished, env raytrade/CryptoFutures-v0, model gru, algorithm PPO" in out
    assert "config diff against exp-20261201-000000" in out and "- algorithm.lr: 0.0003 -> 0.001" in out
    assert "- iteration 5: return_mean above bound" in out and "- entropy collapsed" in out
    assert line_with(out, "action   1").split()[2:4] == ["0.750", "[0.525]"]
    assert "test-greedy (portfolio)" in out and "1.250 [1.000, 1.500]" in out
    assert out.count("█") > 10 and not BOX_DRAWING & set(out)  # the learning curve is drawn


def test_inspect_by_run_dir_against_and_unknown(world):
    by_dir = inspect(world, world["path"])
    assert by_dir.exit_code == 0 and f"({world['new_id']})" in by_dir.output.splitlines()[0]
    assert "- iteration 5: return_mean above bound" in by_dir.output  # joined with its MLflow run
    against = inspect(world, "exp-20261202", "--against", "trial-a")
    assert "against trial-a" in against.output and "given by --against" in against.output
    orphan = inspect(world, "orphan")
    assert orphan.exit_code == 0 and orphan.output.startswith("# run orphan-20261203-000000\nstatus failed")
    sweep = inspect(world, "sweep-lr")
    assert "## trials (2; * = best by return)" in sweep.output and "  trial-a *" in sweep.output
    missing = inspect(world, "nope")
    assert missing.exit_code == 2 and "no run named 'nope'" in missing.output


def test_runs_json_is_the_registry_newest_first(world):
    import json as _json

    result = invoke("--json", "--limit", "50", "--mlflow-uri", world["uri"], "--runs-dir", world["runs"])
    assert result.exit_code == 0, result.output
    entries = _json.loads(result.output)
    assert len(entries) == 7  # 4 in the store, 2 new MLflow runs, the unlogged run dir
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)
    by_name = {e["name"]: e for e in entries}
    new, old, orphan = (by_name[n] for n in ("exp-20261202-000000", "exp-20261201-000000", "orphan-20261203-000000"))
    assert new["id"] == world["new_id"] and new["status"] == "finished" and new["alerts"] == 2
    assert (new["env"], new["model"], new["algorithm"]) == ("raytrade/CryptoFutures-v0", "gru", "PPO")
    assert new["metrics"][RETURN] == {"last": 1.0, "best": 1.0, "mode": "max"}
    assert new["paths"]["checkpoints"]["final"].endswith("checkpoints/final")
    assert new["paths"]["mlflow"]["run_id"] == world["new_id"]
    assert by_name["sweep-lr"]["id"] == by_name["trial-a"]["parent_id"]
    assert orphan["id"] is None and orphan["status"] == "failed"
    assert orphan["config_hash"] == new["config_hash"] != old["config_hash"]  # names are not hashed
    one = invoke("--json", "-n", "1", "--mlflow-uri", world["uri"], "--runs-dir", world["runs"])
    assert [e["name"] for e in _json.loads(one.output)] == [entries[0]["name"]]


def test_runs_out_writes_the_registry_file_under_its_lock(world, tmp_path):
    import json as _json

    from filelock import FileLock, Timeout

    target = tmp_path / "reg" / "registry.json"
    args = ["--out", str(target), "--limit", "50", "--mlflow-uri", world["uri"], "--runs-dir", world["runs"]]
    result = invoke(*args)
    assert result.exit_code == 0 and "wrote the registry of 7 runs" in result.output
    assert len(_json.loads(target.read_text())) == 7
    from app.cli.runs import write_locked

    # another writer holds the lock: this one waits and gives up, the file is untouched
    with FileLock(str(target) + ".lock"), pytest.raises(Timeout):
        write_locked(target, "[]\n", timeout=0.2)
    assert len(_json.loads(target.read_text())) == 7
    write_locked(target, "[]\n")
    assert target.read_text() == "[]\n"

"""The sweep runner's pieces that need no Ray instance: refusals before anything starts, paths
made absolute for trials, schedulers and the sweep-level stopper built from the YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config.loader import load_experiment, parse_experiment
from app.errors import ConfigError
from app.tuning import runner

ROOT = Path(__file__).resolve().parents[3]
BASE = {"name": "b", "env": {"id": "raytrade/SyntheticMeanReversion-v0"}}


def test_a_config_without_a_tune_section_is_refused():
    with pytest.raises(ConfigError, match="no tune section"):
        runner.run_sweep(parse_experiment(BASE), where="b.yaml")


def test_a_forbidden_search_key_is_refused_before_any_trial(tmp_path):
    exp = parse_experiment(BASE | {"tune": {"search_space": {"data.store": {"choice": ["a", "b"]}}},
                                   "tracking": {"runs_dir": str(tmp_path)}})
    with pytest.raises(ConfigError, match="cannot be searched"):
        runner.run_sweep(exp, where="b.yaml")
    assert not list(tmp_path.iterdir())  # nothing created


def test_relative_paths_become_absolute_for_the_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = {"data": {"store": "store", "by_symbol": {"metadata": "meta.parquet"}},
           "tracking": {"runs_dir": "runs", "bounds_file": "b.yaml", "mlflow_uri": "sqlite:///mlruns.db"}}
    out = runner.absolutize(raw)
    assert out["data"]["store"] == str(tmp_path / "store")
    assert out["data"]["by_symbol"]["metadata"] == str(tmp_path / "meta.parquet")
    assert out["tracking"]["runs_dir"] == str(tmp_path / "runs")
    assert out["tracking"]["mlflow_uri"] == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert runner.absolutize({"tracking": {"mlflow_uri": "sqlite:////abs/m.db"}})["tracking"]["mlflow_uri"] \
        == "sqlite:////abs/m.db"
    assert raw["data"]["store"] == "store"  # the input is not modified


@pytest.mark.parametrize("config", ["smoke.yaml", "stocks_ppo_gru_asha.yaml", "crypto_ppo_attention_pbt.yaml"])
def test_the_shipped_sweeps_validate_and_build_their_scheduler(config):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from app.tuning.space import check_space

    exp = load_experiment(ROOT / "tune_configs" / config)
    runner.check_objective(exp, exp.tune, config)
    check_space(runner.absolutize(exp.model_dump(mode="json")), exp.tune, config)
    scheduler = runner._scheduler(exp, exp.tune)
    assert isinstance(scheduler, {"asha": ASHAScheduler, "pbt": PopulationBasedTraining}[exp.tune.scheduler.name])
    periods = runner._periods(exp)
    assert exp.evaluation.interval_iterations in periods
    if exp.tune.scheduler.name == "pbt":  # PBT needs a checkpoint at every perturbation
        assert exp.tune.scheduler.perturbation_interval_iterations in periods


def test_trials_evaluate_at_asha_rungs():
    exp = parse_experiment(BASE | {"stopping": {"iterations": 40}, "tune": {"scheduler": {
        "name": "asha", "grace_period_iterations": 3, "reduction_factor": 2.5}}})
    assert runner._asha_rungs(exp) == (3, 8, 19)  # 3, 7.5, 18.75 (< 40); judged at the next result
    pbt = parse_experiment(BASE | {"tune": {"scheduler": {"name": "pbt", "hyperparam_mutations": {
        "algorithm.lr": {"loguniform": [1e-4, 1e-3]}}}}})
    assert runner._asha_rungs(pbt) == ()


def test_asha_max_t_follows_the_budget():
    exp = parse_experiment(BASE | {"stopping": {"iterations": None, "env_steps": 10_000},
                                   "algorithm": {"train_batch_size": 4000, "minibatch_size": 100}})
    assert runner._max_iterations(exp) == 3
    assert runner._max_iterations(parse_experiment(BASE | {"stopping": {"iterations": 7}})) == 7


def test_the_sweep_stops_when_a_trial_reaches_the_target_and_trials_at_their_own_end():
    exp = parse_experiment(BASE | {"tune": {"metric": "val_greedy/max_drawdown", "mode": "min", "stop_sweep_at": 0.05}})
    stopper = runner._target_stopper(exp.tune)
    assert stopper("t1", {"val_greedy/max_drawdown": 0.2}) is False and not stopper.stop_all()
    assert stopper("t1", {"val_greedy/max_drawdown": 0.2, "stopped_by": "iterations"}) is True
    stopper("t2", {"val_greedy/max_drawdown": 0.04})
    assert stopper.stop_all() and stopper.reached_by == "t2"
    never = runner._target_stopper(parse_experiment(BASE | {"tune": {}}).tune)
    never("t", {"val_greedy/sharpe": 1e9})
    assert not never.stop_all()

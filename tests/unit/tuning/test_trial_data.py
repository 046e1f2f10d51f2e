"""The test split is unreachable from tuning: a trial's setup reads no test bars and asks for no
test env config, whatever the sampled values; a test metric cannot be the objective."""

from __future__ import annotations

import json

import pytest

from app.errors import ConfigError
from app.runs import data as run_data
from app.runs.env_factory import create_env
from app.tuning.runner import absolutize
from app.tuning.trainable import SweepContext, prepare_trial
from tests.unit.training.test_run_data import experiment, store_and_meta, store_reads  # noqa: F401 - fixtures


@pytest.fixture
def instrumented(monkeypatch, store_reads):  # noqa: F811
    """Every symbol read from the store, and every split part an env config is made for."""
    parts: list[str] = []
    real_config = run_data.env_config_for

    def env_config_for(exp, splits, part):
        parts.append(part)
        return real_config(exp, splits, part)

    monkeypatch.setattr(run_data, "env_config_for", env_config_for)
    return store_reads, parts


def sweep_context(store, meta_path) -> SweepContext:
    base = experiment(store, meta_path).model_dump(mode="json")
    base["tune"] = {"search_space": {"algorithm.lr": {"loguniform": [1e-4, 1e-3]},
                                     "env.config.episode_bars": {"choice": [20, 30]}}}
    return SweepContext(absolutize(base), "sweep", None, "val_greedy/sharpe", "max", (1,))


@pytest.mark.parametrize("sampled", [{"algorithm.lr": 3e-4, "env.config.episode_bars": 20},
                                     {"algorithm.lr": 1e-4, "env.config.episode_bars": 30, "seed": 9}])
def test_a_trials_setup_never_reads_the_test_split(store_and_meta, instrumented, sampled):  # noqa: F811
    store, meta_path = store_and_meta
    reads, parts = instrumented
    exp, data = prepare_trial(sweep_context(store, meta_path), sampled)
    for cfg in (data.train_env_config, data.validation_env_config):
        create_env(exp.env.id, cfg | {"num_envs": 2}).close()
    test_symbols = set(data.splits["by_symbol"].symbols["test"])
    assert test_symbols and reads
    assert not test_symbols & set(reads)
    assert "test" not in parts and set(parts) == {"train", "validation"}
    blob = json.dumps([data.train_env_config, data.validation_env_config])
    assert not any(s in blob for s in test_symbols)
    test_start = data.splits["by_time"].windows["test"].start.value
    assert data.train_env_config["end_ts_ns"] < test_start and data.validation_env_config["end_ts_ns"] < test_start


def test_the_sweep_refuses_a_test_metric_before_anything_runs(store_and_meta):  # noqa: F811
    store, meta_path = store_and_meta
    raw = experiment(store, meta_path).model_dump(mode="json") | {"tune": {"metric": "test_greedy/sharpe"}}
    from app.config.loader import parse_experiment

    with pytest.raises(ConfigError, match="must be a validation metric"):
        parse_experiment(raw)

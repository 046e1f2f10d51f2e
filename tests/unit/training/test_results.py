"""flatten_result on a result shaped by RLlib 2.60 itself: the callback's ``log_value`` calls
go through a real env-runner MetricsLogger, are aggregated under ``env_runners`` by a root
MetricsLogger as the Algorithm does, and the action-frequency alert of bounds.yaml fires."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from app.training import alerts
from app.training.callbacks import TradingCallbacks
from app.training.results import flatten_result

ROOT = Path(__file__).resolve().parents[3]


class Chunk:
    def __init__(self, equity: list[float], actions: list[int]) -> None:
        self.infos = [{"equity_usd": e, "position_qty": np.array([1.0])} for e in equity]
        self.actions = np.array(actions)

    def get_infos(self):
        return self.infos

    def get_actions(self):
        return self.actions


def rllib_result(actions: list[int]) -> dict:
    """One env runner, one episode; then the Algorithm's aggregation (no Ray needed)."""
    runner = MetricsLogger()
    steps = np.random.default_rng(0).normal(0.001, 0.01, len(actions))
    equity = list(100.0 * np.cumprod(np.r_[1.0, 1.0 + steps]))
    TradingCallbacks().on_episode_end(episode=Chunk(equity, actions), metrics_logger=runner)
    runner.log_value("episode_return_mean", 1.5, reduce="mean", window=20)
    root = MetricsLogger(root=True)
    root.aggregate([runner.reduce()], key="env_runners")
    return root.reduce(compile=True) | {"training_iteration": 1, "time_this_iter_s": 0.5}


def test_rllib_keeps_the_callback_keys_flat_under_env_runners():
    result = rllib_result([0, 1, 2, 1, 1, 0] * 10)
    assert "trading/sharpe" in result["env_runners"] and "trading" not in result["env_runners"]


def test_trading_and_action_metrics_reach_the_flat_keys():
    flat = flatten_result(rllib_result([0, 1, 2, 1, 1, 0] * 10))
    assert math.isfinite(flat["trading/return"]) and math.isfinite(flat["trading/sharpe"])
    assert {"trading/max_drawdown", "trading/exposure", "trading/turnover"} <= set(flat)
    assert flat["actions/frac_1"] == 0.5 and math.isclose(flat["actions/frac_0"], 1 / 3)
    assert flat["env_runners/episode_return_mean"] == 1.5


def test_nested_groups_flatten_the_same():
    nested = {"env_runners": {"trading": {"sharpe": 1.0}, "actions": {"frac_0": 0.5}}}
    flat = flatten_result(nested)
    assert flat["trading/sharpe"] == 1.0 and flat["actions/frac_0"] == 0.5


def test_the_shipped_action_frequency_alert_fires_on_a_collapsed_initial_policy():
    rules = alerts.load_rules(ROOT / "tune_configs/bounds.yaml")
    constants = {"max_entropy": math.log(3), "uniform": 1 / 3}
    collapsed = flatten_result(rllib_result([2, 2, 2, 2, 2, 2, 2, 1] * 5))
    breaches = alerts.check(rules, collapsed, 1, constants)
    assert {b.metric for b in breaches} == {"actions/frac_0", "actions/frac_1", "actions/frac_2"}
    healthy = flatten_result(rllib_result([0, 1, 2, 0, 1, 2] * 5))
    assert alerts.check(rules, healthy, 1, constants) == []


def test_dqn_learner_metrics_reach_the_flat_keys():
    from ray.rllib.algorithms.dqn.dqn_learner import QF_LOSS_KEY, QF_MEAN_KEY, TD_ERROR_MEAN_KEY

    learner = {QF_LOSS_KEY: 0.25, QF_MEAN_KEY: 1.5, TD_ERROR_MEAN_KEY: -0.1, "total_loss": 0.3}
    flat = flatten_result({"learners": {"default_policy": learner}, "training_iteration": 2})
    assert flat["learners/default_policy/qf_loss"] == 0.25
    assert flat["learners/default_policy/qf_mean"] == 1.5
    assert flat["learners/default_policy/td_error_mean"] == -0.1

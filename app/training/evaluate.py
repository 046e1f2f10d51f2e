"""Validation evaluation during training: the current policy on the validation split, greedy
and (reported apart) stochastic, through the same rollout the backtest uses.

When the validation market is synthetic with a known oracle (:mod:`app.evaluation.oracle`),
every evaluation also plays the oracle through the same env and episodes and reports
``<prefix>/oracle_fraction`` (share of the oracle's net excess over the index the policy
captured),
``<prefix>/excess`` and ``<prefix>/oracle_excess``, ``<prefix>/buy_rate`` and
``<prefix>/trades_per_252_bars``, and where the market plants events ``<prefix>/buy_precision``,
``<prefix>/buy_recall`` and ``<prefix>/event_rate`` (the precision of buying blind).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.evaluation.oracle import (
    IndexPath,
    capture_metrics,
    market_events,
    play_oracle,
    synthetic_market_of,
)
from app.evaluation.rollout import EpisodeTrace, rollout, summarize
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env


def evaluate_policy(module: Any, env_id: str, env_config: dict[str, Any], *, num_envs: int, seed: int,
                    periods_per_year: float, stochastic_too: bool = True) -> dict[str, float]:
    """``val_greedy/<metric>`` (and ``val_stochastic/<metric>``): one episode per env, fixed seed,
    so successive evaluations of the same policy give the same numbers. Also
    ``model/dead_relu_fraction``: ReLU units that never fired over the greedy episodes."""
    from app.models import ReluMonitor

    env = create_env(env_id, env_config | {"num_envs": num_envs, "vector_info": True})
    out: dict[str, float] = {}
    modes = [("val_greedy", True)] + ([("val_stochastic", False)] if stochastic_too else [])
    try:
        oracle = OracleReference.of(env, seed=seed)
        for prefix, greedy in modes:
            policy = BatchedPolicy(module, env.single_action_space, num_envs, greedy=greedy, seed=seed)
            with ReluMonitor(module) as relus:
                traces = rollout(env, policy, seed=seed)
            summary = summarize(traces, periods_per_year)
            if oracle is not None:
                summary |= oracle.measure(traces)
            out |= {f"{prefix}/{k}": v for k, v in summary.items() if np.isfinite(v)}
            dead = relus.dead_fraction()
            if greedy and dead is not None:
                out["model/dead_relu_fraction"] = dead
    finally:
        env.close()
    return out


class OracleReference:
    """The oracle's episodes on an env (played once) and the market's planted events."""

    def __init__(self, traces: list[EpisodeTrace], events: np.ndarray | None,
                 index: IndexPath | None) -> None:
        self.traces, self.events, self.index = traces, events, index

    @classmethod
    def of(cls, env: Any, *, seed: int) -> OracleReference | None:
        """None when the env's market has no oracle (stored data) or the env's actions cannot
        express it."""
        market = synthetic_market_of(env)
        traces = None if market is None else play_oracle(env, market, seed=seed)
        return None if traces is None else cls(traces, market_events(market), IndexPath.of(market))

    def measure(self, traces: list[EpisodeTrace]) -> dict[str, float]:
        return capture_metrics(traces, self.traces, self.events, self.index)

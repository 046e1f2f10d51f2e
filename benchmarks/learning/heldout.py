"""A trained policy on held-out markets, greedy and stochastic, against the oracle played
through the same env (same episodes, same costs): :mod:`app.evaluation.oracle`'s measures,
pooled over the held-out market seeds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.config.schema import Experiment
from app.errors import RaytradeError
from app.evaluation.oracle import (
    IndexPath,
    buy_stats,
    episode_excess,
    market_events,
    oracle_fraction,
    play_oracle,
    synthetic_market_of,
)
from app.evaluation.rollout import EpisodeTrace, rollout
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env
from benchmarks.learning.cells import heldout_env_config

MODES = (("greedy", True), ("stochastic", False))


class NoOracleError(RaytradeError):
    """The cell's env trades a market without an oracle (or the oracle cannot act in it)."""


def evaluate_heldout(module: Any, exp: Experiment, market_seeds: list[int], *, episodes: int,
                     seed: int = 7) -> dict[str, float]:
    """``<mode>_<measure>`` for mode greedy/stochastic: ``oracle_fraction``, ``excess``,
    ``buy_rate``, ``trades_per_252_bars`` and, with events, ``buy_precision``, ``buy_recall``
    and ``event_rate`` (the precision of buying blind at that policy's decisions); plus
    ``oracle_excess`` and the same measures of a uniformly random policy (``random_*``: on pure
    noise the agent must trade less and lose less). ``episodes`` episodes per held-out market,
    pooled over the markets."""
    pooled: dict[str, list[EpisodeTrace]] = {"oracle": [], "random": [], "greedy": [], "stochastic": []}
    events: list[np.ndarray | None] = []
    index_open: list[np.ndarray] = []
    index_close: list[np.ndarray] = []
    rows_before = 0
    for market_seed in market_seeds:
        env = create_env(exp.env.id, heldout_env_config(exp, market_seed)
                         | {"num_envs": episodes, "vector_info": True})
        try:
            market = synthetic_market_of(env)
            oracle = None if market is None else play_oracle(env, market, seed=seed)
            if oracle is None:
                raise NoOracleError(f"{exp.name}: {exp.env.id} with {dict(exp.env.config)} has no "
                                    "oracle to compare with")
            index = IndexPath.of(market)
            if index is None:
                raise NoOracleError(f"{exp.name}: the synthetic market has no index")
            pooled["oracle"] += [_shifted(t, rows_before) for t in oracle]
            events.append(market_events(market))
            index_open.append(index.log_open)
            index_close.append(index.log_close)
            policies: dict[str, Any] = {"random": RandomPolicy(env.action_space, seed)}
            for mode, greedy in MODES:
                policies[mode] = BatchedPolicy(module, env.single_action_space, episodes,
                                               greedy=greedy, seed=seed)
            for mode, policy in policies.items():
                pooled[mode] += [_shifted(t, rows_before) for t in rollout(env, policy, seed=seed)]
            rows_before += len(market.oracle_position)
        finally:
            env.close()
    joint_events = None if any(e is None for e in events) else np.concatenate(events)
    joint_index = IndexPath(np.concatenate(index_open), np.concatenate(index_close))
    oracle_excess = episode_excess(pooled["oracle"], joint_index)
    out = {"oracle_excess": float(oracle_excess.mean())}
    for mode in ("random", *(m for m, _ in MODES)):
        excess = episode_excess(pooled[mode], joint_index)
        out[f"{mode}_oracle_fraction"] = oracle_fraction(excess, oracle_excess)
        out[f"{mode}_excess"] = float(excess.mean())
        stats = buy_stats(pooled[mode], joint_events)
        out |= {f"{mode}_{k}": v for k, v in stats.items()}
    return out


class RandomPolicy:
    """Uniform random actions (seeded): the blind baseline."""

    stateful = False

    def __init__(self, action_space: Any, seed: int) -> None:
        self.space = action_space
        self.space.seed(seed)

    def act(self, obs: Any) -> Any:
        from app.evaluation.oracle import ActionStep

        return ActionStep(np.asarray(self.space.sample()))


def _shifted(trace: EpisodeTrace, rows: int) -> EpisodeTrace:
    """``trace`` with its bar rows moved past the ``rows`` rows of the markets before its own,
    so the concatenated event arrays index it."""
    return replace(trace, bar_row=[r + rows for r in trace.bar_row])


def load_policy(policy_dir: Path) -> Any:
    from app.policy.loader import load_module

    return load_module(policy_dir)

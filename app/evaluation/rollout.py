"""Roll a policy over a vector env: every env plays exactly one episode, all in one batch.

This is the evaluation used during training (validation split) and the core of the backtest
engine: B episodes stepped together through the env's native vector face with one batched
forward pass per bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.evaluation.metrics import episode_metrics
from app.policy.batched import BatchedPolicy


@dataclass
class EpisodeTrace:
    equity_usd: list[float] = field(default_factory=list)
    position: list[float] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    #: the market row each recorded state was observed at (``info["bar_row"]``; empty when the
    #: env reports none): ``bar_row[k]`` is where the action ``actions[k]`` was decided
    bar_row: list[int] = field(default_factory=list)

    def metrics(self, periods_per_year: float) -> dict[str, float]:
        return episode_metrics(np.asarray(self.equity_usd), np.asarray(self.position[1:]), periods_per_year)


def rollout(env, policy: BatchedPolicy | Any, *, seed: int, max_steps: int = 100_000) -> list[EpisodeTrace]:
    """Play one episode in each of ``env.num_envs`` envs; returns their traces in env order.

    ``env`` must return ``equity_usd`` and ``position_qty`` arrays in its info (the raytrade
    envs do). Envs that finish early keep stepping (autoreset) but are no longer recorded.
    A policy with ``uses_info = True`` (the oracle of a synthetic market,
    :mod:`app.evaluation.oracle`) is called as ``policy.act(obs, info)``.
    """
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    traces = [EpisodeTrace() for _ in range(n)]
    _record(traces, np.ones(n, bool), info, None, None)
    live = np.ones(n, dtype=bool)
    with_info = getattr(policy, "uses_info", False)
    for _ in range(max_steps):
        step = policy.act(obs, info) if with_info else policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(step.actions)
        _record(traces, live, info, step.actions, reward)
        done = (terminated | truncated) & live
        live &= ~done
        if not live.any():
            return traces
        if policy.stateful and done.any():
            policy.reset_state(done)
    raise RuntimeError(f"rollout: episodes still running after {max_steps} steps")


def _record(traces: list[EpisodeTrace], live: np.ndarray, info: dict, actions, rewards) -> None:
    equity = np.asarray(info["equity_usd"], dtype=np.float64)
    position = np.asarray(info["position_qty"], dtype=np.float64)
    rows = np.asarray(info["bar_row"]) if "bar_row" in info else None
    rows = rows if rows is not None and rows.ndim == 1 else None
    for i in np.flatnonzero(live):
        trace = traces[i]
        trace.equity_usd.append(float(equity[i]))
        trace.position.append(float(position[i]) if position.ndim == 1 else float(np.abs(position[i]).sum()))
        if rows is not None:
            trace.bar_row.append(int(rows[i]))
        if actions is not None:
            trace.actions.append(np.asarray(actions[i]))
            trace.rewards.append(float(rewards[i]))


def summarize(traces: list[EpisodeTrace], periods_per_year: float) -> dict[str, float]:
    """Mean of each per-episode metric, plus the mean episode reward."""
    per_episode = [t.metrics(periods_per_year) for t in traces]
    out = {k: float(np.nanmean([m[k] for m in per_episode])) for k in per_episode[0]}
    out["episode_reward"] = float(np.mean([np.sum(t.rewards) for t in traces]))
    out["episodes"] = float(len(traces))
    return out

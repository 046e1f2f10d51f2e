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

    Each step is recorded as whole ``[num_envs]`` rows; the per-env traces are cut from them
    once every episode has ended (an env's episode is a prefix of the steps), so the loop does
    no per-env Python work.
    """
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    steps = _Steps(n)
    steps.add(info, None, None)
    live = np.ones(n, dtype=bool)
    ends = np.zeros(n, dtype=np.int64)  # the step each env's episode ended at
    with_info = getattr(policy, "uses_info", False)
    act: Any = policy.act  # the oracle's act takes the info too
    for t in range(1, max_steps + 1):
        step = act(obs, info) if with_info else act(obs)
        obs, reward, terminated, truncated, info = env.step(step.actions)
        steps.add(info, step.actions, reward)
        done = (terminated | truncated) & live
        ends[done] = t
        live &= ~done
        if not live.any():
            return steps.traces(ends)
        if policy.stateful and done.any():
            policy.reset_state(done)
    raise RuntimeError(f"rollout: episodes still running after {max_steps} steps")


class _Steps:
    """Rows of every env per step: equity, position (summed |qty| over assets), bar row (where
    the env reports one per env), and the actions and rewards of each step after the reset."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.equity: list[np.ndarray] = []
        self.position: list[np.ndarray] = []
        self.rows: list[np.ndarray | None] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[np.ndarray] = []

    def add(self, info: dict, actions: Any, rewards: Any) -> None:
        self.equity.append(np.array(info["equity_usd"], dtype=np.float64))
        position = np.asarray(info["position_qty"], dtype=np.float64)
        self.position.append(position.copy() if position.ndim == 1
                             else np.array([np.abs(p).sum() for p in position]))  # per env, as a scalar sum
        rows = np.asarray(info["bar_row"]) if "bar_row" in info else None
        self.rows.append(rows.copy() if rows is not None and rows.ndim == 1 else None)
        if actions is not None:
            self.actions.append(np.array(actions))
            self.rewards.append(np.asarray(rewards, dtype=np.float64))

    def traces(self, ends: np.ndarray) -> list[EpisodeTrace]:
        """Env ``i``'s trace: the reset and steps ``1 .. ends[i]``."""
        equity, position = np.stack(self.equity), np.stack(self.position)
        actions, rewards = np.stack(self.actions), np.stack(self.rewards)
        rows = np.stack(self.rows) if all(r is not None for r in self.rows) else None  # type: ignore[arg-type]
        out = []
        for i, k in enumerate(ends.tolist()):
            if rows is not None:
                bar_row = rows[:k + 1, i].tolist()
            else:  # only the steps that reported rows
                bar_row = [int(r[i]) for r in self.rows[:k + 1] if r is not None]
            out.append(EpisodeTrace(equity_usd=equity[:k + 1, i].tolist(), position=position[:k + 1, i].tolist(),
                                    actions=[np.asarray(a) for a in actions[:k, i]],
                                    rewards=rewards[:k, i].tolist(), bar_row=bar_row))
        return out


def summarize(traces: list[EpisodeTrace], periods_per_year: float) -> dict[str, float]:
    """Mean of each per-episode metric, plus the mean episode reward."""
    per_episode = [t.metrics(periods_per_year) for t in traces]
    out = {k: float(np.nanmean([m[k] for m in per_episode])) for k in per_episode[0]}
    out["episode_reward"] = float(np.mean([np.sum(t.rewards) for t in traces]))
    out["episodes"] = float(len(traces))
    return out

"""The rollout records whole rows per step and cuts the traces at the end: the traces equal
the ones the per-env recording loop it replaced made, value for value."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.evaluation.rollout import EpisodeTrace, rollout
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env
from envs import synthetic
from envs.core.market import MarketArrays
from tests.unit.serve.helpers import ENV_ID, WINDOW, build_module


def _previous_rollout(env, policy, *, seed: int) -> list[EpisodeTrace]:
    """The loop as it was: one Python append per live env and step."""
    def record(traces, live, info, actions, rewards):
        equity = np.asarray(info["equity_usd"], dtype=np.float64)
        position = np.asarray(info["position_qty"], dtype=np.float64)
        rows = np.asarray(info["bar_row"])
        for i in np.flatnonzero(live):
            traces[i].equity_usd.append(float(equity[i]))
            traces[i].position.append(float(position[i]))
            traces[i].bar_row.append(int(rows[i]))
            if actions is not None:
                traces[i].actions.append(np.asarray(actions[i]))
                traces[i].rewards.append(float(rewards[i]))

    obs, info = env.reset(seed=seed)
    n = env.num_envs
    traces = [EpisodeTrace() for _ in range(n)]
    record(traces, np.ones(n, bool), info, None, None)
    live = np.ones(n, dtype=bool)
    while live.any():
        step = policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(step.actions)
        record(traces, live, info, step.actions, reward)
        done = (terminated | truncated) & live
        live &= ~done
        if policy.stateful and done.any():
            policy.reset_state(done)
    return traces


def test_traces_equal_the_per_env_recording():
    """A recurrent policy (its state reset as each episode ends), stochastic, ragged episodes."""
    base = synthetic.generate("mean_reversion", seed=4, n_symbols=1, n_bars=60).market
    lengths = [60, 45, 30]  # each env plays one symbol's whole range: episodes end at different steps
    market = MarketArrays(("A", "B", "C"), np.r_[0, np.cumsum(lengths)].astype(np.int64),
                          np.concatenate([base.ts_ns[60 - n:] for n in lengths]),
                          np.concatenate([base.ohlcv[60 - n:] for n in lengths]))
    config: dict[str, Any] = {"market": market, "index": None, "window_bars": WINDOW, "episode_bars": None,
                              "random_start": False, "num_envs": 5}
    module = build_module(config | {"num_envs": 1}, "gru")

    def run(fn):
        env = create_env(ENV_ID, config)
        return fn(env, BatchedPolicy(module, env.single_action_space, 5, greedy=False, seed=3), seed=5)

    fast, before = run(rollout), run(_previous_rollout)
    assert len(fast) == len(before) == 5 and len({len(t.rewards) for t in fast}) > 1
    for a, b in zip(fast, before, strict=True):
        assert a.equity_usd == b.equity_usd and a.position == b.position and a.rewards == b.rewards
        assert a.bar_row == b.bar_row and len(a.actions) == len(b.actions) == len(a.rewards)
        assert all(x.shape == y.shape and x.dtype == y.dtype and x == y for x, y in zip(a.actions, b.actions, strict=True))
        assert all(type(v) is float for v in a.equity_usd + a.position + a.rewards)
    assert len({float(x) for t in fast for x in t.actions}) > 1  # the policy does not hold one action

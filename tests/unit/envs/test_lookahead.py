"""Look-ahead probe: perturb every bar after t; observations, actions and rewards up to t hold.

Run for every registered env id, both action modes, every reward, every observation field, and
both observation paths (precomputed tables and on-the-fly gathering).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.core.market import MarketArrays
from envs.core.rewards import REWARDS
from envs.synthetic import generate

STEPS = 45


def _perturb_after(m: MarketArrays, ts_cut: int, seed: int) -> MarketArrays:
    rng = np.random.default_rng(seed)
    later = m.ts_ns > ts_cut
    ohlcv = m.ohlcv.copy()
    ohlcv[later, :4] *= np.exp(rng.normal(0.0, 0.3, later.sum()))[:, None]
    ohlcv[later, 4] *= rng.uniform(0.0, 3.0, later.sum())
    return MarketArrays(m.symbols, m.offsets, m.ts_ns, ohlcv)


def _policy(obs: dict, n_actions: int) -> int:
    """A deterministic policy that depends on every field of the observation."""
    total = sum(float(np.abs(v).sum()) * (i + 1) for i, v in enumerate(obs.values()))
    return int(total * 1e4) % n_actions


def _rollout(env_id: str, market: MarketArrays, index: MarketArrays, **kw) -> tuple[list, list]:
    env = gym.make(env_id, market=market, index=index, episode_bars=STEPS, **kw).unwrapped
    obs, _ = env.reset(seed=17)
    trace, rows = [(obs, None, 0.0)], [env.engine.row]
    for _ in range(STEPS):
        action = _policy(obs, env.action_space.n)
        obs, reward, *_ = env.step(action)
        trace.append((obs, action, reward))
        rows.append(env.engine.row)
    return trace, rows


@pytest.fixture(scope="module")
def synth():
    return generate("gbm", seed=2, n_symbols=2, n_bars=500)


# Portfolio-v0 (MultiDiscrete/Box actions, many assets per step): test_portfolio_lookahead.py
# CryptoFutures-v0 (episodes end at a liquidation; funding and mark arrays): test_crypto_futures_properties.py
CASES = [(env_id, {}) for env_id in envs.ENV_IDS
         if env_id not in (envs.PORTFOLIO, envs.CRYPTO_FUTURES, *envs.SYNTHETIC_PERP_IDS)]
CASES += [(envs.STOCK_SWING, {"mode": mode, "reward": reward}) for mode in ("swing", "buy_only") for reward in REWARDS]
CASES += [(envs.STOCK_SWING, {"mode": "swing", "precompute_max_mb": 0.0})]


@pytest.mark.parametrize(("env_id", "kw"), CASES, ids=[f"{e}-{k}" for e, k in CASES])
def test_nothing_after_t_changes_anything_up_to_t(synth, env_id, kw):
    ref, rows = _rollout(env_id, synth.market, synth.index, **kw)
    ts = synth.market.ts_ns
    for k in (0, 9, 30):
        cut = int(ts[rows[k]])
        probe, probe_rows = _rollout(env_id, _perturb_after(synth.market, cut, k),
                                     _perturb_after(synth.index, cut, k + 1), **kw)
        assert probe_rows == rows  # same symbol and start: sampling never looks at prices
        for j in range(k + 1):
            (obs_a, act_a, rew_a), (obs_b, act_b, rew_b) = ref[j], probe[j]
            for key in obs_a:
                np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"field {key} at step {j} <= {k}")
            assert act_a == act_b and rew_a == rew_b, f"step {j} <= {k}"
        # the probe has teeth: the first observation after t does change
        assert any(not np.array_equal(ref[k + 1][0][key], probe[k + 1][0][key]) for key in ref[0][0])

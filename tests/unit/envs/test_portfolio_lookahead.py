"""Portfolio-v0 look-ahead probe: perturb every bar after t of EVERY asset (prices, volume, funding,
mark prices) and the index; observations, actions and rewards up to t are unchanged.

Run for both action modes, every reward, asset subsets, perpetuals with funding and mark prices,
calendar gaps, and both observation paths (precomputed tables and on-the-fly gathering).
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.core.market import MarketArrays
from envs.portfolio import REWARDS, PortfolioEnv
from envs.synthetic import generate

STEPS = 40


def _perturb_after(m: MarketArrays, ts_cut: int, seed: int) -> MarketArrays:
    rng = np.random.default_rng(seed)
    later = m.ts_ns > ts_cut
    k = int(later.sum())
    ohlcv = m.ohlcv.copy()
    ohlcv[later, :4] *= np.exp(rng.normal(0.0, 0.3, k))[:, None]
    ohlcv[later, 4] *= rng.uniform(0.0, 3.0, k)
    funding = mark = None
    if m.funding_rate is not None:
        funding = m.funding_rate.copy()
        funding[later] = rng.normal(0.0, 0.01, k)
    if m.mark_ohlc is not None:
        mark = m.mark_ohlc.copy()
        mark[later] *= np.exp(rng.normal(0.0, 0.3, k))[:, None]
    return MarketArrays(m.symbols, m.offsets, m.ts_ns, ohlcv, funding, mark)


def _policy(obs: dict, space) -> np.ndarray:
    """A deterministic policy that depends on every field of the observation."""
    total = sum(float(np.abs(v).sum()) * (i + 1) for i, v in enumerate(obs.values()))
    n = space.shape[0]
    if hasattr(space, "nvec"):
        return np.array([int(total * 1e4 * (j + 1)) % int(space.nvec[j]) for j in range(n)])
    return np.sin(total * 1e3 * (np.arange(n) + 1.0)).astype(np.float32)


def _rollout(market, index, **kw) -> tuple[list, list]:
    env = PortfolioEnv(market, index, episode_bars=STEPS, **kw)
    obs, info = env.reset(seed=17)
    trace, stamps = [(obs, None, 0.0, info["assets"].tolist())], [info["bar_ts_ns"]]
    for _ in range(STEPS):
        action = _policy(obs, env.action_space)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, action, reward, info["assets"].tolist()))
        stamps.append(info["bar_ts_ns"])
        if terminated:
            break
    return trace, stamps


def _perp_market() -> tuple[MarketArrays, MarketArrays]:
    """Four perpetuals with funding and mark prices; the last one misses some bars (gaps)."""
    synth = generate("trend", seed=4, n_symbols=4, n_bars=400)
    m = synth.market
    rng = np.random.default_rng(1)
    funding = np.where(rng.random(len(m.ts_ns)) < 0.3, rng.normal(0, 1e-3, len(m.ts_ns)), 0.0)
    mark = m.ohlcv[:, :4] * np.exp(rng.normal(0, 1e-3, (len(m.ts_ns), 1)))
    keep = np.ones(len(m.ts_ns), bool)
    keep[m.offsets[3] + rng.choice(np.arange(60, 390), 40, replace=False)] = False
    offsets = np.array([0, 400, 800, 1200, 1200 + keep[1200:].sum()])
    perp = MarketArrays(m.symbols, offsets, m.ts_ns[keep], m.ohlcv[keep], funding[keep], mark[keep])
    return perp, synth.index


@pytest.fixture(scope="module")
def markets():
    spot = generate("gbm", seed=2, n_symbols=3, n_bars=500)
    return {"spot": (spot.market, spot.index), "perp": _perp_market()}


CASES = [("spot", {"action_mode": mode, "reward": reward}) for mode in ("discrete", "continuous") for reward in REWARDS]
CASES += [
    ("spot", {"n_assets": 2, "allow_short": False}),
    ("spot", {"action_mode": "continuous", "precompute_max_mb": 0.0, "n_assets": 2}),
    ("perp", {"n_assets": 3, "max_leverage": 3.0}),
    ("perp", {"action_mode": "continuous", "max_leverage": 5.0, "rebalance_band": 0.02}),
    ("perp", {"with_index": False, "precompute_max_mb": 0.0, "window_bars": 20}),
]


@pytest.mark.parametrize(("kind", "kw"), CASES, ids=[f"{k}-{kw}" for k, kw in CASES])
def test_nothing_after_t_changes_anything_up_to_t(markets, kind, kw):
    market, index = markets[kind]
    ref, stamps = _rollout(market, index, **kw)
    assert len(ref) == STEPS + 1
    for k in (0, 7, 25):
        cut = int(stamps[k])
        probe, probe_stamps = _rollout(_perturb_after(market, cut, k), _perturb_after(index, cut, k + 1), **kw)
        assert probe_stamps[:k + 1] == stamps[:k + 1]  # same start and assets: sampling never looks at prices
        for j in range(k + 1):
            (obs_a, act_a, rew_a, assets_a), (obs_b, act_b, rew_b, assets_b) = ref[j], probe[j]
            for key in obs_a:
                np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"field {key} at step {j} <= {k}")
            assert assets_a == assets_b and np.array_equal(act_a, act_b) and rew_a == rew_b, f"step {j} <= {k}"
        # the probe has teeth: the first observation after t does change
        assert any(not np.array_equal(ref[k + 1][0][key], probe[k + 1][0][key]) for key in ref[0][0])

"""The one observation builder: parity with the envs, bounds, no NaN, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.market import CLOSE
from envs.core.observation import ObservationSpec, build_observation, observation_space
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv
from envs.synthetic import generate

from .helpers import market


@pytest.fixture(scope="module")
def synth():
    return generate("trend", seed=3, n_symbols=2, n_bars=1400)


@pytest.mark.parametrize(("precompute_max_mb", "start_bar"), [(1024.0, 49), (0.0, 49), (1024.0, 1320)])
def test_env_observation_is_build_observation_on_the_bars_up_to_t(synth, precompute_max_mb, start_bar):
    """Tables and on-the-fly gathering; early bars (edge padding) and late ones (a window of
    recent bars, as Serve passes, gives the same observation)."""
    m, idx = synth.market, synth.index
    env = StockSwingEnv(m, idx, mode="swing", precompute_max_mb=precompute_max_mb, episode_bars=None,
                        random_start=False, start_ts_ns=int(m.ts_ns[start_bar]),
                        action_mask=False)  # the mask's parity: tests/unit/envs/test_action_mask.py
    env.reset(seed=5)
    for step in range(40):
        obs, *_ = env.step(step % 3)
        e = env.engine
        rows = m.rows(int(e.symbol))
        t = int(e.row) - rows.start
        ts, ohlcv = m.ts_ns[rows], m.ohlcv[rows]
        owned, held = e.qty > 0, e.bars_held
        full = build_observation(ts[:t + 1], ohlcv[:t + 1], index_ts_ns=idx.ts_ns, index_ohlc=idx.ohlcv,
                                 owned=owned, bars_held=held)
        # Serve passes a window of recent bars; 1300 daily bars cover 50 complete months
        window = build_observation(ts[max(0, t - 1299):t + 1], ohlcv[max(0, t - 1299):t + 1],
                                   index_ts_ns=idx.ts_ns[:t + 1], index_ohlc=idx.ohlcv[:t + 1],
                                   owned=owned, bars_held=held)
        assert obs.keys() == full.keys()
        for key in obs:
            np.testing.assert_array_equal(obs[key], full[key], err_msg=key)
            if start_bar > 1300:
                np.testing.assert_array_equal(obs[key], window[key], err_msg=key)


def test_layout_normalization_and_partial_bars():
    closes = np.linspace(100, 130, 80)
    m = market(np.column_stack([closes, closes * 1.01, closes * 0.99, closes, np.full(80, 10.0)]))
    obs = build_observation(m.ts_ns, m.ohlcv)
    daily = obs["daily_hloc"]
    assert daily.shape == (50, 4) and daily.dtype == np.float32
    assert daily[-1, 3] == 0.0                                   # latest close vs itself
    np.testing.assert_allclose(daily[:, 3], np.log(closes[-50:] / closes[-1]), rtol=1e-6)
    np.testing.assert_allclose(obs["daily_volume"], 1.0)          # constant volume = its mean
    assert obs["weekly_hloc"][-1, 3] == 0.0                       # partial week closes at t
    assert np.all(obs["index_hloc"] == 0.0) and obs["owned"][0] == 0.0


@given(n=st.integers(50, 90), zero_frac=st.floats(0, 1), gap_days=st.integers(1, 40), seed=st.integers(0, 99))
@settings(max_examples=25, deadline=None)
def test_no_nan_even_with_zero_volume_and_gap_bars(n, zero_frac, gap_days, seed):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.5, n)))       # huge moves and gaps
    open_ = close * np.exp(rng.normal(0, 0.5, n))
    vol = rng.random(n) * (rng.random(n) >= zero_frac)
    bars = np.column_stack([open_, np.maximum(open_, close) * 1.1, np.minimum(open_, close) * 0.9, close, vol])
    days = np.cumsum(rng.integers(1, gap_days + 1, n))
    spec = ObservationSpec()
    obs = build_observation(days * 86_400 * 10**9, bars, spec=spec, owned=True, bars_held=10**9)
    assert observation_space(spec).contains(obs)
    assert all(np.isfinite(v).all() for v in obs.values())


def test_vector_observations_stay_in_space_with_zero_volume_market():
    synth = generate("mean_reversion", seed=1, n_symbols=3, n_bars=400, zero_volume_prob=0.3)
    env = StockSwingVectorEnv(8, synth.market, synth.index, episode_bars=60, mode="swing")
    obs, _ = env.reset(seed=0)
    for _ in range(130):
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())


def test_build_observation_errors_are_clear():
    m = market(np.column_stack([np.full(60, 100.0)] * 4 + [np.ones(60)]))
    bad = m.ohlcv.copy()
    bad[7, CLOSE] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_observation(m.ts_ns, bad)
    with pytest.raises(ValueError, match="longer than"):
        build_observation(m.ts_ns[:10], m.ohlcv[:10])
    with pytest.raises(ValueError, match=r"ohlcv must be"):
        build_observation(m.ts_ns[:55], m.ohlcv)
    with pytest.raises(ValueError, match="index starts after"):
        build_observation(m.ts_ns, m.ohlcv, index_ts_ns=m.ts_ns[-1:] + 1, index_ohlc=m.ohlcv[-1:])
    with pytest.raises(ValueError, match="window_bars"):
        ObservationSpec(window_bars=0)

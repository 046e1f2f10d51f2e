"""Synthetic markets: seeded, valid, and their oracles earn what they promise through the env."""

from __future__ import annotations

import numpy as np
import pytest

from envs.stock_swing import StockSwingVectorEnv
from envs.synthetic import KINDS, business_days_ts_ns, generate


@pytest.mark.parametrize("kind", KINDS)
def test_generators_are_seeded_and_valid(kind):
    a, b, c = generate(kind, seed=4, n_bars=300), generate(kind, seed=4, n_bars=300), generate(kind, seed=5, n_bars=300)
    np.testing.assert_array_equal(a.market.ohlcv, b.market.ohlcv)
    assert not np.array_equal(a.market.ohlcv, c.market.ohlcv)
    o = a.market.ohlcv
    assert np.isfinite(o).all() and (o[:, :4] > 0).all()
    assert (o[:, 1] >= o[:, [0, 3]].max(axis=1)).all() and (o[:, 2] <= o[:, [0, 3]].min(axis=1)).all()
    assert a.oracle_position.shape == (len(o),) and set(np.unique(a.oracle_position)) <= {0, 1}
    with pytest.raises(ValueError, match="unknown"):
        generate(kind, bogus=1.0)


def test_business_days_skip_weekends():
    days = (business_days_ts_ns(30) // 86_400_000_000_000 + 3) % 7
    assert days.max() <= 4 and len(np.unique(business_days_ts_ns(30))) == 30


def _run_policy(synth, policy: str, fee_bps: float = 10.0, slippage_bps: float = 5.0) -> float:
    """Mean log return per bar of a policy over every symbol's whole history (batched backtest)."""
    m = synth.market
    n = m.n_symbols
    env = StockSwingVectorEnv(n, m, synth.index, mode="swing", reward="log_return", episode_bars=None,
                              random_start=False, symbol_order="sequential", fee_bps=fee_bps,
                              slippage_bps=slippage_bps, vector_info=False)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, steps = np.zeros(n), 0
    while True:
        e = env.engine
        if policy == "oracle":
            action = [synth.oracle_action(int(r), bool(q > 0)) for r, q in zip(e.row, e.qty, strict=True)]
        elif policy == "buy_and_hold":
            action = np.ones(n, dtype=np.int64)
        else:
            action = rng.integers(0, 3, n)
        _, reward, _, truncated, _ = env.step(np.asarray(action))
        total += reward
        steps += 1
        if truncated.all():
            return float(total.sum() / (steps * n))


@pytest.mark.parametrize("kind", ["mean_reversion", "trend"])
def test_oracle_beats_buy_and_hold_and_random_after_costs(kind):
    synth = generate(kind, seed=1, n_symbols=4, n_bars=1500)
    oracle, hold, rand = (_run_policy(synth, p) for p in ("oracle", "buy_and_hold", "random"))
    assert oracle > 0.5 * synth.expected_log_return_per_bar > 0
    assert oracle > hold + 5e-4 and oracle > rand + 5e-4
    gross = _run_policy(synth, "oracle", fee_bps=0.0, slippage_bps=0.0)
    assert gross == pytest.approx(synth.expected_log_return_per_bar, rel=0.35)


def test_gbm_has_no_edge_beyond_buy_and_hold():
    synth = generate("gbm", seed=1, n_symbols=8, n_bars=1500)
    hold = _run_policy(synth, "buy_and_hold")
    se = synth.params["vol"] / np.sqrt(8 * 1450)
    assert abs(hold - synth.expected_log_return_per_bar) < 4 * se
    assert _run_policy(synth, "random") < hold + 4 * se

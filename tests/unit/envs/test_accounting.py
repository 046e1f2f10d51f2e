"""Scenario tables (bars, actions -> fills, fees, cash, position, equity) and accounting properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.stock_swing import BUY, HOLD, SELL, StockSwingEnv

from .helpers import market, run, series

BACKTEST = {"window_bars": 3, "episode_bars": None, "random_start": False, "initial_cash_usd": 10_000.0}
COLUMNS = ("fill_price_usd", "fee_usd", "cash_usd", "position_qty", "equity_usd")


def _check_table(records, table):
    assert len(records) == len(table) + 1
    for step, (rec, (_action, *expected)) in enumerate(zip(records[1:], table, strict=True), start=1):
        got = [rec["info"][c] for c in COLUMNS] + [rec["reward"]]
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-9), f"step {step}"


# Bars are flat at 100: a buy then a sell loses exactly the two fees (fee 10 bps, no slippage).
FEE_ONLY_ROUND_TRIP = [
    # action, fill_price, fee, cash, qty, equity, reward (linear_return)
    (BUY, 100.0, 9.990009990009991, 0.0, 99.9000999000999, 9990.00999000999, -0.000999000999000999),
    (SELL, 100.0, 9.990009990009991, 9980.01998001998, 0.0, 9980.01998001998, -0.000999000999000999),
    (HOLD, 100.0, 0.0, 9980.01998001998, 0.0, 9980.01998001998, 0.0),
]


def test_fee_only_round_trip():
    env = StockSwingEnv(market(series([100.0] * 8)), mode="swing", reward="linear_return",
                        fee_bps=10, slippage_bps=0, **BACKTEST)
    records = run(env, [a for a, *_ in FEE_ONLY_ROUND_TRIP])
    _check_table(records, FEE_ONLY_ROUND_TRIP)
    final = records[-1]["info"]
    assert final["equity_usd"] == pytest.approx(10_000.0 - final["fees_paid_usd"], rel=1e-15)


# Gapping market, 10 bps slippage, no fee: buys fill above the open, sells below.
SLIPPAGE = [
    (BUY, 105.105, 0.0, 0.0, 95.14295228580944, 10465.724751439038, math.log(1.0465724751439038)),
    (HOLD, 115.0, 0.0, 0.0, 95.14295228580944, 11417.154274297132, math.log(120 / 110)),
    (SELL, 124.875, 0.0, 11880.976166690454, 0.0, 11880.976166690454, math.log(124.875 / 120)),
]


def test_slippage_on_both_sides_and_mark_to_market_at_close():
    bars = series([100, 100, 100, 110, 120, 130, 130], open_=[100, 100, 100, 105, 115, 125, 130])
    env = StockSwingEnv(market(bars), mode="swing", reward="log_return", fee_bps=0, slippage_bps=10, **BACKTEST)
    _check_table(run(env, [a for a, *_ in SLIPPAGE]), SLIPPAGE)


# Buy-only, horizon 2, flat index: the buy is held 2 bars (open 100 -> open 106) and closed by the
# env; excess_horizon pays (106-100)/100 - 2% = 4% in per-bar pieces: 0 (2% day - 2% penalty), 2%, 2%.
BUY_ONLY = [
    (BUY, 100.0, 0.0, 0.0, 100.0, 10200.0, 0.0),
    (BUY, 103.0, 0.0, 0.0, 100.0, 10400.0, 0.02),   # ignored while holding
    (HOLD, 106.0, 0.0, 10600.0, 0.0, 10600.0, 0.02),  # closed after horizon_bars
    (BUY, 108.0, 0.0, 0.0, 98.14814814814815, 10600.0, -0.02),
]


def test_buy_only_holds_for_the_horizon_and_pays_the_excess_return():
    bars = series([100, 100, 100, 102, 104, 107, 108, 108], open_=[100, 100, 100, 100, 103, 106, 108, 108])
    env = StockSwingEnv(market(bars), mode="buy_only", reward="excess_horizon", horizon_bars=2,
                        fee_bps=0, slippage_bps=0, **BACKTEST)
    records = run(env, [a for a, *_ in BUY_ONLY])
    _check_table(records, BUY_ONLY)
    assert [float(r["obs"]["bars_held"][0]) for r in records] == [0, 1, 2, 0, 1]
    assert [float(r["obs"]["owned"][0]) for r in records] == [0, 1, 1, 0, 1]


@st.composite
def episodes(draw):
    n = draw(st.integers(8, 40))
    steps = draw(st.lists(st.floats(-0.3, 0.3), min_size=n, max_size=n))
    close = 50 * np.exp(np.cumsum(steps))
    open_ = close * np.exp(np.array(draw(st.lists(st.floats(-0.2, 0.2), min_size=n, max_size=n))))
    vol = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 1e6]), min_size=n, max_size=n)))
    actions = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    costs = {"fee_bps": draw(st.sampled_from([0.0, 1.0, 25.0])), "slippage_bps": draw(st.sampled_from([0.0, 7.0]))}
    return series(close, open_, vol), actions, costs


@given(episodes(), st.sampled_from(["swing", "buy_only"]))
@settings(max_examples=40, deadline=None)
def test_reward_equals_pnl_and_the_books_balance(data, mode):
    bars, actions, costs = data
    m = market(bars)
    logs = {}
    for reward in ("log_return", "linear_return"):
        env = StockSwingEnv(m, mode=mode, reward=reward, horizon_bars=3, **costs, **BACKTEST)
        records = run(env, [a % env.action_space.n for a in actions])
        logs[reward] = records
        assert all(env.observation_space.contains(r["obs"]) for r in records)
    rec = logs["log_return"]
    e0, e_t = rec[0]["info"]["equity_usd"], rec[-1]["info"]["equity_usd"]
    assert sum(r["reward"] for r in rec) == pytest.approx(math.log(e_t / e0), rel=1e-9, abs=1e-12)
    assert sum(r["reward"] for r in logs["linear_return"]) == pytest.approx((e_t - e0) / e0, rel=1e-9, abs=1e-12)
    # rebuild the books from the trade log: cash, equity and PnL decomposition
    cash, qty, fees, pnl = 10_000.0, 0.0, 0.0, 0.0
    o, c = m.ohlcv[:, 0], m.ohlcv[:, 3]
    for cur in rec[1:]:
        info, row = cur["info"], cur["info"]["bar_row"]
        dq = info["position_qty"] - qty
        cash -= dq * info["fill_price_usd"] + info["fee_usd"]
        fees += info["fee_usd"]
        pnl += qty * (o[row] - c[row - 1]) + (qty + dq) * (c[row] - o[row]) \
            - dq * (info["fill_price_usd"] - o[row]) - info["fee_usd"]
        qty += dq
        assert info["cash_usd"] == pytest.approx(cash, rel=1e-9, abs=1e-6)
        assert info["equity_usd"] == info["cash_usd"] + info["position_qty"] * c[row]
        assert info["fees_paid_usd"] == pytest.approx(fees, rel=1e-12, abs=1e-12)
        assert info["equity_usd"] - e0 == pytest.approx(pnl, rel=1e-9, abs=1e-6)
        assert info["cash_usd"] >= -1e-9 * info["equity_usd"] and info["position_qty"] >= 0

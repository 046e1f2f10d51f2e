"""Portfolio-v0 scenario tables (bars, actions -> fills, fees, cash, positions, equity) and
accounting properties (hypothesis): the books balance, reward = PnL, the leverage cap holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.market import CLOSE, HIGH, OPEN, MarketArrays
from envs.portfolio import FLAT, LONG, SHORT, PortfolioEnv
from envs.synthetic import business_days_ts_ns

from .helpers import market, run, series

BACKTEST = {"window_bars": 3, "episode_bars": None, "random_start": False, "initial_cash_usd": 10_000.0,
            "with_index": False}
COLUMNS = ("fill_price_usd", "fee_usd", "cash_usd", "position_qty", "equity_usd")


def _check_table(records, table):
    assert len(records) >= len(table) + 1
    for step, (rec, (_action, *expected)) in enumerate(zip(records[1:], table, strict=False), start=1):
        info = rec["info"]
        got = [list(info["fill_price_usd"]), info["fee_usd"], info["cash_usd"], list(info["position_qty"]),
               info["equity_usd"], rec["reward"]]
        for name, g, e in zip((*COLUMNS, "reward"), got, expected, strict=True):
            assert g == pytest.approx(e, rel=1e-12, abs=1e-9), f"step {step}: {name}"
        assert info["equity_usd"] == pytest.approx(
            info["cash_usd"] + float(np.dot(info["position_qty"], _closes(records, step))), rel=1e-13)


def _closes(records, step):
    return records[step]["_closes"]


def _run(env, table, closes):
    records = run(env, [np.array(a) for a, *_ in table])
    for step, rec in enumerate(records):
        rec["_closes"] = closes[step]
    return records


# Two assets flat at 100 and 50, fee 10 bps, no slippage, max_leverage 1 -> w = 0.5 per asset.
# A long of 0.5 * 10,000 spends 5,000 including its fee: qty = 5000 / (100 * 1.001); closing it pays
# the fee again. The round trip loses exactly the two fees (linear_return sums to -9.99 / 10,000).
FEE_ONLY_ROUND_TRIP = [
    # actions, fill prices, fee, cash, qty, equity, reward (linear_return)
    ((LONG, FLAT), [100.0, 0.0], 4.995004995004995, 5000.0, [49.95004995004995, 0.0], 9995.004995004995,
     -0.0004995004995004995),
    ((FLAT, FLAT), [100.0, 0.0], 4.995004995004995, 9990.00999000999, [0.0, 0.0], 9990.00999000999,
     -0.0004995004995004995),
    ((FLAT, FLAT), [0.0, 0.0], 0.0, 9990.00999000999, [0.0, 0.0], 9990.00999000999, 0.0),
]


def test_fee_only_round_trip():
    env = PortfolioEnv(market(series([100.0] * 7), series([50.0] * 7)), fee_bps=10, slippage_bps=0,
                       reward="linear_return", **BACKTEST)
    records = _run(env, FEE_ONLY_ROUND_TRIP, [[100.0, 50.0]] * 5)
    _check_table(records, FEE_ONLY_ROUND_TRIP)
    final = records[3]["info"]
    assert final["equity_usd"] == pytest.approx(10_000.0 - final["fees_paid_usd"], rel=1e-15)
    assert sum(r["reward"] for r in records) == pytest.approx(-final["fees_paid_usd"] / 10_000.0, rel=1e-12)


# Continuous weights, fee 10 bps. Bar 3: A opens 100 closes 110, B opens 50 closes 40.
# Step 1 [0.5, 0.5]: half the equity in each (fees included): cash 0; marked 110/40 -> 9490.51.
# Step 2 [1, 0]: rebalance B into A at the opens 110/40: sell all B (fee 3.996), buy A up to
# 9490.51 / (110 * 1.001) = 86.19 (fee 3.987); cash keeps 1.4985 (the fee on the sale's proceeds).
REBALANCE = [
    ((0.5, 0.5), [100.0, 50.0], 9.990009990009990, 0.0, [49.95004995004995, 99.9000999000999],
     9490.50949050949, math.log(0.949050949050949)),
    ((1.0, 0.0), [110.0, 40.0], 7.982526963545945, 1.4985014985003549, [86.19116783679495, 0.0],
     9482.526963545944, math.log(9482.526963545944 / 9490.50949050949)),
]


def test_rebalance_between_two_assets():
    a = series([100, 100, 100, 110, 110, 110], open_=[100, 100, 100, 100, 110, 110])
    b = series([50, 50, 50, 40, 40, 40], open_=[50, 50, 50, 50, 40, 40])
    env = PortfolioEnv(market(a, b), fee_bps=10, slippage_bps=0, action_mode="continuous", **BACKTEST)
    records = _run(env, REBALANCE, [[100.0, 50.0], [110.0, 40.0], [110.0, 40.0]])
    _check_table(records, REBALANCE)
    assert records[1]["info"]["exposure_at_fill"] == pytest.approx(1.0, rel=1e-12)  # fully invested
    assert records[2]["info"]["exposure_at_fill"] <= 1.0


# Short A at 100 (w = -0.5: -50 units, cash 15,000), A closes at 90: +500; buy back at the open 95.
SHORT_PNL = [
    ((SHORT, FLAT), [100.0, 0.0], 0.0, 15_000.0, [-50.0, 0.0], 10_500.0, 0.05),
    ((FLAT, FLAT), [95.0, 0.0], 0.0, 10_250.0, [0.0, 0.0], 10_250.0, -0.025),
    ((FLAT, FLAT), [0.0, 0.0], 0.0, 10_250.0, [0.0, 0.0], 10_250.0, 0.0),
]


def test_short_position_pnl():
    a = series([100, 100, 100, 90, 95, 95], open_=[100, 100, 100, 100, 95, 95])
    env = PortfolioEnv(market(a, series([100.0] * 6)), fee_bps=0, slippage_bps=0, reward="linear_return",
                       **BACKTEST)
    records = _run(env, SHORT_PNL, [[100.0, 100.0], [90.0, 100.0], [95.0, 100.0], [95.0, 100.0]])
    _check_table(records, SHORT_PNL)
    assert records[-1]["info"]["equity_usd"] - 10_000.0 == pytest.approx(50 * (100 - 95))


def _perpetual(rate: float) -> MarketArrays:
    """Two perpetuals flat at 100; asset A funds ``rate`` at bar 4, where its mark opens at 101."""
    m = market(series([100.0] * 7), series([100.0] * 7))
    funding = np.zeros(14)
    funding[4] = rate
    mark = m.ohlcv[:, :4].copy()
    mark[4] = [101.0, 101.0, 99.0, 100.0]
    return MarketArrays(m.symbols, m.offsets, m.ts_ns, m.ohlcv, funding, mark)


# funding = qty * mark open * rate, paid after the fill: 50 * 101 * 0.001 = 5.05
FUNDING_LONG = [
    ((LONG, FLAT), [100.0, 0.0], 0.0, 5000.0, [50.0, 0.0], 10_000.0, 0.0),
    ((LONG, FLAT), [0.0, 0.0], 0.0, 4994.95, [50.0, 0.0], 9994.95, -0.000505),
]
FUNDING_SHORT = [
    ((SHORT, FLAT), [100.0, 0.0], 0.0, 15_000.0, [-50.0, 0.0], 10_000.0, 0.0),
    ((SHORT, FLAT), [0.0, 0.0], 0.0, 15_005.05, [-50.0, 0.0], 10_005.05, 0.000505),
]


@pytest.mark.parametrize(("table", "paid"), [(FUNDING_LONG, 5.05), (FUNDING_SHORT, -5.05)], ids=["long", "short"])
def test_funding_paid_on_a_long_and_received_on_a_short(table, paid):
    env = PortfolioEnv(_perpetual(0.001), fee_bps=0, slippage_bps=0, reward="linear_return", **BACKTEST)
    records = _run(env, table, [[100.0, 100.0]] * 3)
    _check_table(records, table)
    assert [r["info"]["funding_usd"] for r in records[1:3]] == pytest.approx([0.0, paid], rel=1e-12)
    spot = PortfolioEnv(market(series([100.0] * 7), series([100.0] * 7)), fee_bps=0, slippage_bps=0, **BACKTEST)
    assert all(r["info"]["funding_usd"] == 0.0 for r in run(spot, [np.array(a) for a, *_ in table]))


def test_liquidation_on_the_bar_range_and_on_a_gap_at_the_open():
    """2x short of 200 units at 100 (cash 30,000). Bar 4's high 149.5 takes the worst-case equity to
    100 <= 0.5 % of 29,900: closed at 149.5, equity 100, terminated. Gapping open at 160: equity
    at the open is -2,000: closed at the open before any order, equity floored at 0."""
    a = series([100.0] * 4 + [120.0, 120.0], open_=[100.0] * 5 + [120.0])
    a[4, HIGH] = 149.5
    cfg = {"n_assets": 1, "max_leverage": 2.0, "fee_bps": 0, "slippage_bps": 0, "maintenance_margin_bps": 50}
    env = PortfolioEnv(market(a), **cfg, **BACKTEST)
    records = run(env, [np.array([SHORT])] * 3)
    assert len(records) == 3 and records[-1]["done"]
    first, liq = records[1]["info"], records[2]["info"]
    assert first["position_qty"].tolist() == [-200.0] and first["cash_usd"] == 30_000.0
    assert not first["liquidated"] and liq["liquidated"]
    assert liq["fill_price_usd"].tolist() == [149.5] and liq["position_qty"].tolist() == [0.0]
    assert liq["cash_usd"] == liq["equity_usd"] == pytest.approx(100.0)
    assert records[2]["reward"] == pytest.approx(math.log(100.0 / 10_000.0))
    gap = series([100.0] * 4 + [170.0, 170.0], open_=[100.0] * 4 + [160.0, 170.0])
    records = run(PortfolioEnv(market(gap), **cfg, **BACKTEST), [np.array([SHORT])] * 3)
    info = records[2]["info"]
    assert info["liquidated"] and info["equity_usd"] == 0.0 and info["position_qty"].tolist() == [0.0]
    assert info["fill_price_usd"].tolist() == [160.0] and records[2]["reward"] < -600  # log(0) clamped


def test_leverage_cap_forces_a_conservative_rebalance():
    """Flipping a 3x book from all-short to all-long with costs would overshoot the cap with the plain
    sizing: every asset is sized on a reduced equity instead, and gross exposure stays <= 3."""
    up = series([100.0] * 4 + [100.0] * 3)
    env = PortfolioEnv(market(up, up.copy()), max_leverage=3.0, fee_bps=25, slippage_bps=7, **BACKTEST)
    records = run(env, [np.array([SHORT, SHORT]), np.array([LONG, LONG])])
    for rec in records[1:]:
        info = rec["info"]
        gross = float(np.abs(info["position_qty"] * 100.0).sum())
        assert gross <= 3.0 * info["equity_usd"] * (1 + 1e-12)
        assert info["exposure_at_fill"] == pytest.approx(gross / info["equity_usd"], rel=1e-12)
        assert info["exposure_at_fill"] > 2.9  # conservative, not timid


# --- properties --------------------------------------------------------------------------------

def _bar(m: MarketArrays, asset: int, ts: int) -> tuple[float, float, bool]:
    """(open, close, live) of ``asset`` at ``ts``; a missing bar is flat at the last close."""
    rows = m.rows(asset)
    own = m.ts_ns[rows]
    j = int(np.searchsorted(own, ts, "right")) - 1
    o, c = m.ohlcv[rows.start + j, [OPEN, CLOSE]]
    live = own[j] == ts
    return (float(o) if live else float(c)), float(c), bool(live)


@st.composite
def portfolios(draw):
    n_assets = draw(st.integers(2, 3))
    n = draw(st.integers(8, 30))
    ts = business_days_ts_ns(n)
    bars, stamps, funding = [], [], []
    for i in range(n_assets):
        steps = draw(st.lists(st.floats(-0.3, 0.3), min_size=n, max_size=n))
        close = 50 * np.exp(np.cumsum(steps))
        gaps = np.array(draw(st.lists(st.floats(-0.2, 0.2), min_size=n, max_size=n)))
        vol = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 1e6]), min_size=n, max_size=n)))
        keep = np.ones(n, bool)
        if i > 0:  # calendar gaps (never the first or last bar)
            keep[1:-1] = draw(st.lists(st.booleans(), min_size=n - 2, max_size=n - 2))
        bars.append(series(close, close * np.exp(gaps), vol)[keep])
        stamps.append(ts[keep])
        funding.append(np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 3e-4, -1e-3]), min_size=n,
                                              max_size=n)))[keep])
    perp = draw(st.booleans())
    m = MarketArrays(tuple(f"A{i}" for i in range(n_assets)),
                     np.concatenate([[0], np.cumsum([len(b) for b in bars])]).astype(np.int64),
                     np.concatenate(stamps), np.concatenate(bars), np.concatenate(funding) if perp else None)
    mode = draw(st.sampled_from(["discrete", "continuous"]))
    short = draw(st.booleans())
    if mode == "discrete":
        actions = draw(st.lists(st.lists(st.integers(0, 2 if short else 1), min_size=n_assets, max_size=n_assets),
                                min_size=n, max_size=n))
    else:
        actions = draw(st.lists(st.lists(st.floats(-1.5, 1.5), min_size=n_assets, max_size=n_assets),
                                min_size=n, max_size=n))
    cfg = {"action_mode": mode, "allow_short": short, "max_leverage": draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])),
           "fee_bps": draw(st.sampled_from([0.0, 1.0, 25.0])), "slippage_bps": draw(st.sampled_from([0.0, 7.0])),
           "rebalance_band": draw(st.sampled_from([0.0, 0.05]))}
    return m, [np.array(a) for a in actions], cfg


@given(portfolios())
@settings(max_examples=60, deadline=None)
def test_books_balance_reward_is_pnl_and_gross_exposure_is_capped(data):
    m, actions, cfg = data
    logs = {}
    for reward in ("log_return", "linear_return"):
        env = PortfolioEnv(m, reward=reward, **cfg, **BACKTEST)
        logs[reward] = records = run(env, actions)
        for rec in records:
            assert env.observation_space.contains(rec["obs"])
            assert all(np.isfinite(v).all() for v in rec["obs"].values())
    rec = logs["log_return"]
    lev = cfg["max_leverage"]
    cash, qty, fees = 10_000.0, np.zeros(m.n_symbols), 0.0
    for cur in rec[1:]:
        info = cur["info"]
        bars = [_bar(m, a, info["bar_ts_ns"]) for a in range(m.n_symbols)]
        opens, closes, live = (np.array(x) for x in zip(*bars, strict=True))
        # equity = cash + sum(qty * close), shorts included
        assert info["equity_usd"] == pytest.approx(info["cash_usd"] + float(np.dot(info["position_qty"], closes)),
                                                   rel=1e-12, abs=1e-9)
        fees += info["fee_usd"]
        assert info["fees_paid_usd"] == pytest.approx(fees, rel=1e-12, abs=1e-12) and info["fee_usd"] >= 0.0
        if info["liquidated"]:
            assert cur["done"] and info["cash_usd"] >= 0.0 and not info["position_qty"].any()
            break
        dq = info["position_qty"] - qty
        assert not dq[~live].any()  # no fills on gap bars
        cash -= float(np.dot(dq, info["fill_price_usd"])) + info["fee_usd"] + info["funding_usd"]
        assert info["cash_usd"] == pytest.approx(cash, rel=1e-9, abs=1e-6)
        qty = info["position_qty"].copy()
        if not cfg["allow_short"]:
            assert (qty >= 0).all()
        # gross exposure after the fill, marked at the fill bar's open, <= max_leverage
        equity_fill = info["cash_usd"] + info["funding_usd"] + float(np.dot(qty, opens))
        gross = float(np.abs(qty * opens).sum())
        assert info["exposure_at_fill"] == pytest.approx(gross / equity_fill, rel=1e-9, abs=1e-12)
        if live.all():  # an asset without a bar cannot be traded back under the cap
            assert gross <= lev * equity_fill * (1 + 1e-9) + 1e-9
    e0, e_t = 10_000.0, rec[-1]["info"]["equity_usd"]
    assert [r["info"]["equity_usd"] for r in logs["linear_return"]] == [r["info"]["equity_usd"] for r in rec]
    if e_t > 0:
        assert sum(r["reward"] for r in rec) == pytest.approx(math.log(e_t / e0), rel=1e-9, abs=1e-12)
    assert sum(r["reward"] for r in logs["linear_return"]) == pytest.approx((e_t - e0) / e0, rel=1e-9, abs=1e-12)

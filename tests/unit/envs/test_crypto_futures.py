"""CryptoFutures-v0 scenario tables (bars, actions -> fills, fees, funding, margin, position,
equity), liquidations, sizing, and clear errors for bad configs and arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.core.market import MarketArrays
from envs.crypto_futures import CryptoFuturesConfig, CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.synthetic import NS_PER_HOUR, funding_series, generate_perpetual, hourly_ts_ns

from .helpers import run, series

SHORT, SHORT_HALF, FLAT, LONG_HALF, LONG = range(5)  # size_levels=(0.5, 1.0)
E0 = 10_000.0
# window 3: the first observation is row 2, the first step fills at row 3's open
BACKTEST = {"window_bars": 3, "episode_bars": None, "random_start": False, "initial_cash_usd": E0,
            "fee_bps": 0.0, "slippage_bps": 0.0}


def perp(close: Sequence[float], open_: Sequence[float] | None = None, *, mark: np.ndarray | None = None,
         funding: dict[int, float] | None = None, volume: float | Sequence[float] = 1_000.0,
         ts_ns: np.ndarray | None = None) -> MarketArrays:
    """One hourly perpetual: OHLCV from closes/opens, optional mark OHLC and {row: funding rate}."""
    bars = series(close, open_, volume)
    n = len(bars)
    rate = None
    if funding is not None:
        rate = np.zeros(n)
        for row, r in funding.items():
            rate[row] = r
    ts = hourly_ts_ns(n) if ts_ns is None else np.asarray(ts_ns, dtype=np.int64)
    return MarketArrays(("BTC/USDT:USDT",), np.array([0, n]), ts, bars, rate, mark)


def marks(close: Sequence[float], **rows: tuple[float, float, float, float]) -> np.ndarray:
    """Mark OHLC equal to the closes, with whole rows replaced: ``marks(c, r4=(o, h, l, c))``."""
    out = np.repeat(np.asarray(close, dtype=np.float64)[:, None], 4, axis=1)
    for key, ohlc in rows.items():
        out[int(key[1:])] = ohlc
    return out


COLUMNS = ("trade_qty", "fill_price_usd", "fee_usd", "funding_usd", "margin_usd", "position_qty", "equity_usd")


def check_table(records, table, columns=COLUMNS):
    assert len(records) == len(table) + 1
    for step, (rec, (_action, *expected)) in enumerate(zip(records[1:], table, strict=True), start=1):
        got = [rec["info"][c] for c in columns] + [rec["reward"]]
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-9), f"step {step}"


# --- fee-only round trip: flat 100, 10 bps taker fee, 2x ------------------------------------
Q2 = E0 / (100 * (1 / 2 + 0.001))   # margin + fee = all of the equity: |q| * p * (1/L + fee)
FEE = Q2 * 100 * 0.001
FEE_ONLY_ROUND_TRIP = [
    # action, trade_qty, fill, fee, funding, margin, qty, equity, reward (linear_return)
    (LONG, Q2, 100.0, FEE, 0.0, Q2 * 100 / 2, Q2, E0 - FEE, -FEE / E0),
    (FLAT, -Q2, 100.0, FEE, 0.0, 0.0, 0.0, E0 - 2 * FEE, -FEE / E0),
    (FLAT, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0, E0 - 2 * FEE, 0.0),
]


def test_fee_only_round_trip_costs_two_fees_and_leaves_no_free_balance_below_zero():
    env = CryptoFuturesEnv(perp([100.0] * 8), leverage=2.0, reward="linear_return", **{**BACKTEST, "fee_bps": 10.0})
    records = run(env, [a for a, *_ in FEE_ONLY_ROUND_TRIP])
    check_table(records, FEE_ONLY_ROUND_TRIP)
    opened = records[1]["info"]
    assert opened["wallet_usd"] == pytest.approx(opened["margin_usd"], rel=1e-12)  # level 1: free = 0
    assert records[-1]["info"]["fees_paid_usd"] == pytest.approx(2 * FEE, rel=1e-12)


@pytest.mark.parametrize("leverage", [1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize(("action", "level"), [(LONG, 1.0), (LONG_HALF, 0.5), (SHORT, -1.0)])
def test_leverage_scales_size_margin_and_pnl(leverage, action, level):
    """Bar 3 fills at 100, bar 3 closes at 101: qty = level * E * L / 100, margin = |level| * E."""
    env = CryptoFuturesEnv(perp([100, 100, 100, 101, 101], [100, 100, 100, 100, 101]), leverage=leverage,
                           reward="linear_return", maintenance_margin_bps=10.0, **BACKTEST)
    rec = run(env, [action])[1]
    qty = level * E0 * leverage / 100
    assert rec["info"]["position_qty"] == pytest.approx(qty, rel=1e-12)
    assert rec["info"]["margin_usd"] == pytest.approx(abs(level) * E0, rel=1e-12)
    assert rec["info"]["equity_usd"] == pytest.approx(E0 + qty * 1.0, rel=1e-12)
    assert rec["reward"] == pytest.approx(level * leverage / 100, rel=1e-12)
    side = 1.0 if level > 0 else -1.0
    liq = (100 * qty - abs(level) * E0) / (qty - 0.001 * abs(qty))  # costs.liquidation_price
    assert rec["info"]["liquidation_price_usd"] == pytest.approx(liq, rel=1e-12)
    assert rec["obs"]["size"][0] == pytest.approx(abs(qty) * 101 / ((E0 + qty) * leverage), rel=1e-6)
    assert rec["obs"]["side"][0] == side and rec["obs"]["bars_held"][0] == 1.0


# --- funding: long pays a positive rate, short receives it; the reverse when negative -------
# 1x, flat traded prices at 100; row 5's mark is 101 (funding is valued at the mark close).
def _funding_table(s: float):
    """Expected rows with every funding rate multiplied by ``s`` (+1 or -1)."""
    q_short = -(E0 - s * 1.0) / 100       # the flip re-sizes from the equity at the open
    cash_short = (E0 - s * 1.0 - 100 * 100) - (q_short - 100) * 100
    f5 = q_short * 101 * (-2e-4 * s)       # rate -2e-4 * s on the short, at mark 101
    f7 = q_short * 100 * (3e-4 * s)
    return [
        # action, trade_qty, fill, fee, funding, margin, qty, equity, reward (linear)
        (LONG, 100.0, 100.0, 0.0, 0.0, E0, 100.0, E0, 0.0),                            # row 3: no event
        (LONG, 0.0, 100.0, 0.0, s * 1.0, E0 - s, 100.0, E0 - s, -s / E0),              # row 4: +1e-4*s
        (SHORT, q_short - 100, 100.0, 0.0, f5, E0 - s - f5, q_short,                     # row 5: flip
         cash_short - f5 + q_short * 101, (cash_short - f5 + q_short * 101 - E0 + s) / E0),
        (SHORT, 0.0, 100.0, 0.0, 0.0, E0 - s - f5, q_short, cash_short - f5 + q_short * 100,
         -q_short / E0),
        (SHORT, 0.0, 100.0, 0.0, f7, E0 - s - f5 - f7, q_short, cash_short - f5 - f7 + q_short * 100,
         -f7 / E0),
        (FLAT, -q_short, 100.0, 0.0, 0.0, 0.0, 0.0, cash_short - f5 - f7 + q_short * 100, 0.0),  # row 8: flat pays none
    ]


@pytest.mark.parametrize("s", [1.0, -1.0], ids=["positive-rates", "negative-rates"])
def test_funding_in_each_direction(s):
    close = [100.0] * 10
    m = perp(close, mark=marks(close, r5=(101.0, 101.0, 101.0, 101.0)),
             funding={4: 1e-4 * s, 5: -2e-4 * s, 7: 3e-4 * s, 8: 5e-4 * s})
    env = CryptoFuturesEnv(m, leverage=1.0, reward="linear_return", **BACKTEST)
    table = _funding_table(s)
    records = run(env, [a for a, *_ in table])
    check_table(records, table)
    assert (records[2]["info"]["funding_usd"] > 0) == (s > 0)   # long pays positive, receives negative
    assert (records[5]["info"]["funding_usd"] < 0) == (s > 0)   # short receives positive, pays negative
    paid = sum(r["info"]["funding_usd"] for r in records[1:])
    assert records[-1]["info"]["funding_paid_usd"] == pytest.approx(paid, rel=1e-12)
    assert records[-1]["info"]["equity_usd"] == pytest.approx(E0 - paid, rel=1e-12)


# --- liquidation at 10x: mmr 50 bps, liquidation fee 30 bps ---------------------------------
LIQ = {"leverage": 10.0, "maintenance_margin_bps": 50.0, "liquidation_fee_bps": 30.0, "reward": "log_return"}


@pytest.mark.parametrize(("action", "bad_mark", "liq_price"), [
    (LONG, (100.0, 100.0, 90.0, 99.0), (100 * 1000 - E0) / (1000 * 0.995)),      # 90.4522...
    (SHORT, (100.0, 110.0, 100.0, 101.0), (100 * 1000 + E0) / (1000 * 1.005)),   # 109.4527...
], ids=["long", "short"])
def test_liquidation_closes_at_the_liquidation_price_and_terminates(action, bad_mark, liq_price):
    close = [100.0] * 8  # traded prices never move: only the mark range liquidates
    env = CryptoFuturesEnv(perp(close, mark=marks(close, r4=bad_mark)), **LIQ, **BACKTEST)
    records = run(env, [action, action, action])
    opened, liq = records[1]["info"], records[2]["info"]
    side = 1.0 if action == LONG else -1.0
    assert opened["position_qty"] == side * 1000 and opened["margin_usd"] == E0 and not opened["liquidated"]
    assert opened["liquidation_price_usd"] == pytest.approx(liq_price, rel=1e-12)
    left = E0 + side * 1000 * (liq_price - 100)                  # = mmr * notional at the liquidation price
    assert left == pytest.approx(0.005 * 1000 * liq_price, rel=1e-9)
    fee = 0.003 * 1000 * liq_price
    assert liq["liquidated"] and records[2]["done"] and len(records) == 3     # terminates
    assert liq["position_qty"] == 0.0 and liq["margin_usd"] == 0.0
    assert liq["liquidation_fee_usd"] == pytest.approx(fee, rel=1e-12)
    assert liq["equity_usd"] == pytest.approx(left - fee, rel=1e-9)       # free balance was 0
    assert records[2]["reward"] == pytest.approx(math.log((left - fee) / E0), rel=1e-9)
    assert liq["fees_paid_usd"] == pytest.approx(fee, rel=1e-12)


def test_traded_price_through_the_liquidation_price_does_not_liquidate_when_the_mark_does_not():
    close = [100.0] * 8
    bars = series(close)
    bars[4, 2] = 80.0  # a traded wick to 80; the mark stays at 100
    m = MarketArrays(("X",), np.array([0, 8]), hourly_ts_ns(8), bars, None, marks(close))
    records = run(CryptoFuturesEnv(m, **LIQ, **BACKTEST), [LONG, LONG, LONG])
    assert not any(r["info"]["liquidated"] for r in records) and records[-1]["info"]["equity_usd"] == E0


def test_liquidation_can_continue_flat_and_the_fee_never_exceeds_the_margin_left():
    """Half size: 5,000 of margin, 5,000 free. A 5 % liquidation fee would exceed what is left
    of the margin: it takes all of it and nothing more, the free balance survives."""
    close = [100.0] * 8
    env = CryptoFuturesEnv(perp(close, mark=marks(close, r4=(100.0, 100.0, 80.0, 99.0))),
                           terminate_on_liquidation=False, **{**LIQ, "liquidation_fee_bps": 500.0}, **BACKTEST)
    records = run(env, [LONG_HALF, LONG_HALF, LONG_HALF, FLAT])
    liq, reopened, closed = (r["info"] for r in records[2:5])
    left = 0.005 * 500 * (100 * 500 - E0 / 2) / (500 * 0.995)
    assert liq["liquidated"] and not records[2]["done"] and len(records) == 5
    assert liq["liquidation_fee_usd"] == pytest.approx(left, rel=1e-9)
    assert liq["equity_usd"] == pytest.approx(E0 / 2, rel=1e-12)
    assert liq["position_level"] == 0.0 and records[2]["obs"]["side"][0] == 0.0
    assert reopened["position_qty"] == pytest.approx(250.0) and reopened["margin_usd"] == pytest.approx(E0 / 4)
    assert closed["equity_usd"] == pytest.approx(E0 / 2, rel=1e-12)
    ruined = run(CryptoFuturesEnv(env.engine.market, terminate_on_liquidation=False,
                                  **{**LIQ, "liquidation_fee_bps": 500.0}, **BACKTEST), [LONG, LONG, LONG])
    assert ruined[-1]["done"] and len(ruined) == 3  # full size: nothing left -> the episode ends anyway


def test_a_gap_through_the_liquidation_price_loses_the_margin_only():
    close, open_ = [100.0] * 4 + [80.0] * 4, [100.0] * 4 + [80.0] * 4
    gap = perp(close, open_)
    closing = run(CryptoFuturesEnv(gap, **LIQ, **BACKTEST), [LONG, FLAT])[-1]["info"]
    assert closing["cover_usd"] == pytest.approx(E0, rel=1e-12)  # lost 20k at 10x, margin 10k: venue covers 10k
    assert closing["equity_usd"] == pytest.approx(0.0, abs=1e-9)
    holding = run(CryptoFuturesEnv(gap, **LIQ, **BACKTEST), [LONG, LONG])[-1]
    assert holding["info"]["liquidated"] and holding["done"]
    assert holding["info"]["equity_usd"] == pytest.approx(0.002 * 1000 * (100 * 1000 - E0) / (1000 * 0.995), rel=1e-9)


def test_maker_execution_fills_at_the_open_with_the_maker_fee():
    m = perp([100.0] * 6, [100.0] * 6)
    kw = {**BACKTEST, "fee_bps": 10.0, "slippage_bps": 5.0, "maker_fee_bps": 2.0, "leverage": 1.0}
    taker = run(CryptoFuturesEnv(m, **kw), [LONG])[1]["info"]
    maker = run(CryptoFuturesEnv(m, execution="maker", **kw), [LONG])[1]["info"]
    assert taker["fill_price_usd"] == pytest.approx(100.05) and maker["fill_price_usd"] == 100.0
    assert maker["fee_usd"] == pytest.approx(maker["trade_qty"] * 100 * 2e-4, rel=1e-12)
    assert maker["trade_qty"] == pytest.approx(E0 / (100 * (1 + 2e-4)), rel=1e-12)
    assert CryptoFuturesConfig(execution="maker").cost_model.slippage_bps == 0.0


def test_sizing_from_equity_or_from_the_initial_balance():
    close = [100, 100, 100, 100, 110, 110, 110, 90, 90, 90]
    m = perp(close, close)
    kw = {**BACKTEST, "leverage": 1.0}
    eq = run(CryptoFuturesEnv(m, sizing="equity", **kw), [LONG_HALF, FLAT, LONG])
    fixed = run(CryptoFuturesEnv(m, sizing="initial", **kw), [LONG_HALF, FLAT, LONG])
    for rec in (eq, fixed):
        assert rec[1]["info"]["position_qty"] == pytest.approx(50.0) and rec[2]["info"]["equity_usd"] == pytest.approx(10_500)
    assert eq[3]["info"]["position_qty"] == pytest.approx(10_500 / 110)     # the equity at the fill
    assert fixed[3]["info"]["position_qty"] == pytest.approx(E0 / 110)      # the fixed amount
    # after a loss the fixed amount is capped by the free balance
    lost = run(CryptoFuturesEnv(m, sizing="initial", **kw), [FLAT, LONG, LONG, LONG, FLAT, LONG])
    left = E0 - E0 / 110 * 20  # bought at 110, sold at 90
    assert lost[5]["info"]["equity_usd"] == pytest.approx(left, rel=1e-12)
    assert lost[6]["info"]["position_qty"] == pytest.approx(left / 90, rel=1e-12)
    assert lost[6]["info"]["margin_usd"] == pytest.approx(left, rel=1e-12)


def test_continuous_levels_and_the_dead_band():
    m = perp([100.0] * 10)
    env = CryptoFuturesEnv(m, action_mode="continuous", leverage=2.0, min_level_change=0.1, **BACKTEST)
    assert env.action_space.shape == (1,)
    levels = [0.3, 0.35, 0.5, -0.2, 0.0]
    records = run(env, [np.array([a], dtype=np.float32) for a in levels])
    qty = [r["info"]["position_qty"] for r in records[1:]]
    assert qty[0] == pytest.approx(np.float32(0.3) * E0 * 2 / 100) and qty[1] == qty[0]  # 0.05 < dead band
    assert qty[2] == pytest.approx(np.float32(0.5) * E0 * 2 / 100) and qty[3] < 0 and qty[4] == 0.0
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan], dtype=np.float32))


# --- configs, arrays, registration ------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("leverage", 0.0), ("leverage", -2.0), ("leverage", float("nan")), ("leverage", True),
    ("maintenance_margin_bps", 1_000.0), ("maintenance_margin_bps", -1.0), ("liquidation_fee_bps", -1.0),
    ("maker_fee_bps", float("inf")), ("execution", "limit"), ("action_mode", "multi"), ("sizing", "kelly"),
    ("size_levels", ()), ("size_levels", (0.0,)), ("size_levels", (1.5,)), ("size_levels", (1.0, 0.5)),
    ("min_level_change", -0.1), ("terminate_on_liquidation", 1), ("reward", "excess_horizon"),
    ("clip_log_ratio", 0.0), ("funding_clip_bps", -1.0), ("market_seed", -1), ("window_bars", 0),
])
def test_bad_config_names_the_field(field, value):
    kw = {field: value}
    if field == "maintenance_margin_bps" and value > 0:
        kw["leverage"] = 10.0  # 1000 bps = 1/leverage: liquidated at once
    with pytest.raises(ValueError, match=f"CryptoFuturesConfig.{field}"):
        CryptoFuturesConfig(**kw)


def test_mapping_config_and_unknown_keys():
    assert CryptoFuturesConfig.from_mapping({"size_levels": [0.25, 1.0]}).levels == (-1.0, -0.25, 0.0, 0.25, 1.0)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['levrage'\]"):
        CryptoFuturesConfig.from_mapping({"levrage": 5})


def _bad(**change) -> MarketArrays:
    close = np.linspace(100, 120, 80)
    m = perp(close, mark=marks(close), funding={8: 1e-4})
    arrays = {"ohlcv": m.ohlcv.copy(), "funding_rate": m.funding_rate.copy(), "mark_ohlc": m.mark_ohlc.copy()}
    for name, (row, col, value) in change.items():
        if arrays[name].ndim == 1:
            arrays[name][row] = value
        else:
            arrays[name][row, col] = value
    return MarketArrays(m.symbols, m.offsets, m.ts_ns, arrays["ohlcv"], arrays["funding_rate"], arrays["mark_ohlc"])


@pytest.mark.parametrize(("market", "message"), [
    (_bad(ohlcv=(40, 3, np.nan)), "market: NaN or inf in ohlcv at row 40"),
    (_bad(ohlcv=(5, 0, -1.0)), "market: prices must be > 0"),
    (_bad(mark_ohlc=(7, 2, np.nan)), "market.mark_ohlc: NaN or inf"),
    (_bad(mark_ohlc=(7, 2, 0.0)), "market.mark_ohlc: prices must be > 0"),
    (_bad(funding_rate=(9, 0, np.nan)), "market.funding_rate: must be finite"),
    (_bad(funding_rate=(9, 0, 1.5)), "market.funding_rate: must be finite and in"),
])
def test_bad_arrays_name_the_field(market, message):
    with pytest.raises(ValueError, match=message):
        CryptoFuturesEnv(market, episode_bars=10, window_bars=5)


def test_window_longer_than_data_and_missing_funding_and_mark_arrays():
    m = perp(np.linspace(100, 120, 60))
    with pytest.raises(ValueError, match="window longer than data"):
        CryptoFuturesEnv(m, window_bars=48, episode_bars=20)
    with pytest.raises(ValueError, match="window longer than data"):
        CryptoFuturesVectorEnv(2, m, window_bars=80, episode_bars=None)
    assert m.funding_rate is None and m.mark_ohlc is None
    records = run(CryptoFuturesEnv(m, **BACKTEST), [LONG] * 20)   # defaults: funding 0, mark = traded
    assert all(r["info"]["funding_usd"] == 0.0 for r in records)
    assert all(r["info"]["mark_price_usd"] == m.ohlcv[r["info"]["bar_row"], 3] for r in records)
    assert np.all(records[-1]["obs"]["funding_bps"] == 0.0)


def test_gym_make_without_arguments_runs_on_a_seeded_synthetic_perpetual():
    env = gym.make(envs.CRYPTO_FUTURES)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["equity_usd"] == E0
    unwrapped = env.unwrapped
    m = unwrapped.engine.market
    assert m.funding_rate is not None and m.mark_ohlc is not None and m.symbols[0].endswith("/USDT:USDT")
    assert set(obs) >= {"hourly_hloc", "4h_hloc", "daily_hloc", "funding_bps", "side", "margin_ratio"}
    with pytest.raises(ValueError, match="render_mode"):
        CryptoFuturesEnv(m, render_mode="human")


def test_synthetic_perpetual_is_seeded_with_funding_every_8_hours_and_a_consistent_mark():
    a, b, c = (generate_perpetual(seed=s, n_symbols=2, n_bars=500) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.funding_rate, b.funding_rate)
    assert not np.array_equal(a.ohlcv, c.ohlcv)
    hours = (a.ts_ns // NS_PER_HOUR) % 24
    assert set(hours[a.funding_rate != 0]) <= {0, 8, 16} and (np.abs(a.funding_rate) <= 0.0075).all()
    assert np.all(np.diff(a.ts_ns[:500]) == NS_PER_HOUR)
    ratio = a.mark_ohlc / a.ohlcv[:, :4]
    assert np.allclose(ratio, ratio[:, :1]) and np.abs(np.log(ratio)).max() < 0.01
    # causal: the rate settled at a bar does not depend on that bar's close
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 0.01, 100))
    y = x.copy()
    y[50:] += 1.0
    fa = funding_series(hourly_ts_ns(100), x, np.random.default_rng(1))
    fb = funding_series(hourly_ts_ns(100), y, np.random.default_rng(1))
    np.testing.assert_array_equal(fa[:51], fb[:51])

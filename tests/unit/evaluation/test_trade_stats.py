"""Per-symbol metrics: hand-computed scenario tables, a naive round-trip loop, invariants, and
quantstats as an independent implementation (skipped when it is not installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.evaluation import metrics as m
from app.evaluation import trade_stats as ts

# --- scenario 1: returns +10 %, -20 %, +25 %, 0 % with P = 4 bars a year ----------------------
# equity 1, 1.1, 0.88, 1.1, 1.1
# mean = 0.0375; deviations .0625 -.2375 .2125 -.0375, squares sum .106875, / 3 = .035625,
# sd = 0.1887459; volatility = sd * sqrt(4) = 0.3774917; Sharpe = .0375 / sd * 2 = 0.3973597
# downside deviation = sqrt(.2**2 / 4) = 0.1 -> Sortino = .0375 / .1 * 2 = 0.75
# total = annualized (n = P) = 0.10; max drawdown 1.1 -> 0.88 = 0.20 for 1 bar; Calmar = 0.5
# --- scenario 2: returns +5 %, -5 %, +5 %, -5 % with P = 4 --------------------------------------
# equity 1, 1.05, 0.9975, 1.047375, 0.99500625; mean 0 -> Sharpe = Sortino = 0
# sd = sqrt(4 * .0025 / 3) = 0.0577350, volatility = 0.1154701
# total = annualized = 0.99500625 - 1 = -0.00499375
# max drawdown = 1 - 0.99500625 / 1.05 = 0.052375 (under the 1.05 peak for 3 bars)
# Calmar = -0.00499375 / 0.052375 = -0.0953461
SCENARIOS = [
    ([0.10, -0.20, 0.25, 0.0],
     dict(total_return=0.10, annualized_return=0.10, volatility=0.3774917, sharpe=0.3973597,
          sortino=0.75, max_drawdown=0.20, max_drawdown_duration_bars=1, calmar=0.5)),
    ([0.05, -0.05, 0.05, -0.05],
     dict(total_return=-0.00499375, annualized_return=-0.00499375, volatility=0.1154701,
          sharpe=0.0, sortino=0.0, max_drawdown=0.052375, max_drawdown_duration_bars=3,
          calmar=-0.0953461)),
]


@pytest.mark.parametrize(("rets", "expected"), SCENARIOS)
def test_return_metrics_scenario_table(rets, expected, monkeypatch):
    monkeypatch.setattr(m, "MIN_BARS", 1)  # the formulas on 4 hand-computed bars; minimums: test_metrics
    equity = np.cumprod(np.r_[1.0, 1.0 + np.array(rets)])
    got = ts.return_metrics(equity, periods_per_year=4)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


# --- scenario 3: a hand-traded path with a loss, a flip and a trade closed by a flat bar ------
#  bar:        0    1    2    3    4    5    6    7
#  position:   0   +1   +1    0   -1   -1   +1    0
#  equity: 100  100  110   99   98  103  108  102  101    (9 points, bar i: E[i] -> E[i+1])
# trade 1 long  bars 1-2, exit bar 3 is flat and charged to it: 98 - 100  = -2
# trade 2 short bars 4-5, closed by the flip (no flat bar):     108 - 98  = +10
# trade 3 long  bar 6, exit bar 7 flat:                         101 - 108 = -7
# win rate 1/3, profit factor 10 / (2 + 7) = 1.1111; exposure 5/8, long 3/8, short 2/8,
# flat 3/8; mean long run (2 + 1) / 2 = 1.5 bars, mean short run 2 bars;
# turnover |0-0|+|1-0|+0+|0-1|+|-1-0|+0+|1+1|+|0-1| = 6 over 8 bars = 0.75
EQUITY3 = np.array([100.0, 100, 110, 99, 98, 103, 108, 102, 101])
POSITION3 = np.array([0.0, 1, 1, 0, -1, -1, 1, 0])


def test_round_trips_scenario():
    trades = ts.round_trips(EQUITY3, POSITION3)
    assert list(trades.side) == [1, -1, 1]
    assert list(trades.entry_bar) == [1, 4, 6] and list(trades.exit_bar) == [3, 6, 7]
    assert list(trades.bars) == [2, 2, 1]
    np.testing.assert_allclose(trades.pnl_usd, [-2.0, 10.0, -7.0])
    np.testing.assert_allclose(trades.ret, [-2 / 100, 10 / 98, -7 / 108])


def test_backtest_metrics_scenario():
    actions = np.array([1, 2, 2, 1, 0, 0, 2, 1])  # 0 sell, 1 hold, 2 buy
    got = ts.backtest_metrics(EQUITY3, POSITION3, 252, actions, ["sell", "hold", "buy"])
    expected = dict(trades=3, win_rate=1 / 3, profit_factor=10 / 9, exposure=5 / 8, pct_long=3 / 8,
                    pct_short=2 / 8, pct_flat=3 / 8, turnover=0.75, mean_long_bars=1.5,
                    mean_short_bars=2.0, total_return=0.01, max_drawdown=1 - 98 / 110,
                    max_drawdown_duration_bars=6, action_freq_sell=2 / 8, action_freq_hold=3 / 8,
                    action_freq_buy=3 / 8)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert set(ts.RETURN_METRICS) | set(ts.POSITION_METRICS) <= set(got)


def test_trade_edge_cases():
    # a position still open at the end is a trade closed at the last bar: +7, no loss -> inf
    open_end = ts.backtest_metrics(np.array([100.0, 105, 103, 107]), np.ones(3), 252)
    assert (open_end["trades"], open_end["win_rate"], open_end["profit_factor"]) == (1, 1.0, math.inf)
    # never in the market: no trades -> nan win rate and profit factor, nan holding lengths
    flat = ts.backtest_metrics(np.full(5, 100.0), np.zeros(4), 252)
    assert flat["trades"] == 0 and flat["exposure"] == 0 and flat["pct_flat"] == 1
    assert all(math.isnan(flat[k]) for k in ("win_rate", "profit_factor", "mean_long_bars", "calmar"))
    # only zero-PnL trades: 0 / 0
    assert math.isnan(ts.profit_factor(ts.round_trips(np.full(4, 1.0), np.array([1.0, 0, -1]))))
    # only losses: profit factor 0
    assert ts.profit_factor(ts.round_trips(np.array([1.0, 0.9, 0.8]), np.array([1.0, -1]))) == 0.0
    with pytest.raises(ValueError, match="len"):
        ts.round_trips(np.ones(3), np.ones(3))


def test_buy_and_hold_scenario():
    # 100 -> 110 -> 99 -> 121: +21 %, drawdown 110 -> 99 = 10 %, one winning trade, entry only
    got = ts.buy_and_hold_metrics(np.array([100.0, 110, 99, 121]), 252)
    assert got["total_return"] == pytest.approx(0.21) and got["max_drawdown"] == pytest.approx(0.10)
    assert (got["trades"], got["win_rate"], got["exposure"], got["pct_long"]) == (1, 1.0, 1.0, 1.0)
    assert got["turnover"] == pytest.approx(1 / 3) and got["mean_long_bars"] == 3


def test_action_frequencies():
    np.testing.assert_allclose(ts.action_frequencies(np.array([0, 2, 2, 1])), [0.25, 0.25, 0.5])
    np.testing.assert_allclose(ts.action_frequencies(np.array([1, 1]), num_actions=3), [0, 1, 0])
    with pytest.raises(ValueError, match="integer"):
        ts.action_frequencies(np.array([0.5, 1.0]))
    np.testing.assert_allclose(ts.action_frequencies(np.array([[0], [1]])), [0.5, 0.5])
    with pytest.raises(ValueError, match="one discrete action"):
        ts.action_frequencies(np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="num_actions"):
        ts.action_frequencies(np.array([0, 3]), num_actions=3)


def test_calmar_edge_cases():
    assert m.calmar(np.linspace(1.0, 1.2, 30), 252) == math.inf  # no drawdown, positive return
    assert math.isnan(m.calmar(np.ones(30), 252))
    assert math.isnan(m.calmar(np.array([1.0, 1.1, 1.2]), 252))  # too short to annualize
    assert math.isnan(m.calmar(np.ones(1), 252))


# --- a naive bar-by-bar loop as an independent implementation of round trips ----------------

def naive_round_trips(equity: np.ndarray, position: np.ndarray) -> list[tuple[int, int, int, float]]:
    trades, side, entry = [], 0, 0
    n = len(position)
    for i in range(n + 1):
        s = int(np.sign(position[i])) if i < n else 0
        if side != 0 and s != side:  # close the open trade at bar i
            exit_point = i + 1 if i < n and s == 0 else i
            trades.append((side, entry, i, equity[exit_point] - equity[entry]))
            side = 0
        if s != 0 and side == 0:
            side, entry = s, i
    return trades


positions = st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0]), min_size=1, max_size=40)


@settings(max_examples=120, deadline=None)
@given(positions, st.integers(0, 2**32 - 1))
def test_round_trips_match_a_naive_loop(position, seed):
    pos = np.array(position)
    equity = 100 * np.cumprod(np.r_[1.0, 1 + np.random.default_rng(seed).normal(0, 0.02, len(pos))])
    trades = ts.round_trips(equity, pos)
    naive = naive_round_trips(equity, pos)
    assert len(trades) == len(naive)
    for k, (side, entry, exit_bar, pnl) in enumerate(naive):
        assert (trades.side[k], trades.entry_bar[k], trades.exit_bar[k]) == (side, entry, exit_bar)
        assert trades.pnl_usd[k] == pytest.approx(pnl, abs=1e-9)
    got = ts.backtest_metrics(equity, pos, 252)
    assert got["pct_long"] + got["pct_short"] + got["pct_flat"] == pytest.approx(1.0)
    assert 0 <= got["max_drawdown"] <= 1 and got["trades"] <= np.count_nonzero(pos)
    assert math.isnan(got["win_rate"]) or 0 <= got["win_rate"] <= 1
    assert math.isnan(got["profit_factor"]) or got["profit_factor"] >= 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.99, 5.0, allow_nan=False), min_size=1, max_size=80))
def test_drawdown_bounds_and_duration_match_a_loop(rets):
    equity = np.cumprod(np.r_[1.0, 1 + np.array(rets)])
    dd = m.drawdown(equity)
    assert np.all((dd <= 0) & (dd >= -1))
    longest = run = 0
    for flag in dd < 0:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    assert m.max_drawdown_duration_bars(equity) == longest


# --- quantstats as the independent implementation ---------------------------------------------

def _series(kind: str, seed: int, n: int = 750) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(0.0004, 0.012, n)
    if kind == "student":
        return 0.008 * rng.standard_t(3, n) + 0.0002
    return np.where(rng.random(n) < 0.5, 0.0, rng.normal(-0.0003, 0.02, n))  # half flat bars


@pytest.mark.parametrize("kind", ["normal", "student", "sparse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_quantstats(kind, seed):
    qs = pytest.importorskip("quantstats", reason="quantstats (dev extra) not installed: "
                             "pip install -e '.[dev]' to compare against it")
    import pandas as pd

    rets = _series(kind, seed)
    r = pd.Series(rets, index=pd.bdate_range("2020-01-01", periods=len(rets)))
    equity = np.cumprod(np.r_[1.0, 1.0 + rets])
    ours = ts.return_metrics(equity, periods_per_year=252)
    assert ours["sharpe"] == pytest.approx(qs.stats.sharpe(r, periods=252), rel=1e-9)
    assert ours["sortino"] == pytest.approx(qs.stats.sortino(r, periods=252), rel=1e-9)
    assert ours["volatility"] == pytest.approx(qs.stats.volatility(r, periods=252), rel=1e-9)
    assert ours["max_drawdown"] == pytest.approx(-qs.stats.max_drawdown(r), rel=1e-9)
    assert ours["annualized_return"] == pytest.approx(qs.stats.cagr(r, periods=252), rel=1e-9)
    assert ours["calmar"] == pytest.approx(qs.stats.calmar(r, periods=252), rel=1e-9)
    assert ours["total_return"] == pytest.approx(qs.stats.comp(r), rel=1e-9)

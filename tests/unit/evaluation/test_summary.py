"""The summary table: agent vs buy-and-hold vs index, per symbol, cross-section and portfolio, with CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.evaluation.summary import (
    ALL_LABEL,
    PORTFOLIO_LABEL,
    combine_seed_tables,
    position_weights,
    summary_table,
)
from app.evaluation.trade_stats import backtest_metrics, buy_and_hold_metrics

# two symbols over 4 bars; the agent is long A for bars 1-2 and short B for bar 0
CLOSE = {"A": np.array([100.0, 110, 99, 121, 121]), "B": np.array([50.0, 45, 45, 54, 60])}
POSITION = {"A": np.array([0.0, 1, 1, 0]), "B": np.array([-1.0, 0, 0, 0])}
EQUITY = {"A": np.array([1000.0, 1000, 900, 1100, 1100]),  # long A: 110 -> 99 -> 121
          "B": np.array([1000.0, 1100, 1100, 1100, 1100])}  # short B: 50 -> 45
ACTIONS = {"A": np.array([1, 2, 2, 1]), "B": np.array([0, 1, 1, 1])}
INDEX = np.array([10.0, 10.5, 10.2, 10.8, 11.0])


def _table(**kw) -> pd.DataFrame:
    args = dict(periods_per_year=252, rng=0, actions=ACTIONS, action_names=["sell", "hold", "buy"],
                n_boot=200)
    return summary_table(EQUITY, POSITION, CLOSE, INDEX, **(args | kw))


def _value(table: pd.DataFrame, strategy: str, symbol: str, metric: str) -> pd.Series:
    scope = {ALL_LABEL: "cross_section", PORTFOLIO_LABEL: "portfolio"}.get(symbol, "symbol")
    row = table[(table.strategy == strategy) & (table.scope == scope) & (table.symbol == symbol)
                & (table.metric == metric)]
    assert len(row) == 1, (strategy, symbol, metric)
    return row.iloc[0]


def test_layout_and_per_symbol_values():
    table = _table()
    assert list(table.columns) == ["strategy", "scope", "symbol", "metric", "value", "ci_low",
                                   "ci_high", "n", "ci_method"]
    assert set(table.strategy) == {"agent", "buy_and_hold", "index"}
    assert set(table.symbol) == {"A", "B", ALL_LABEL, PORTFOLIO_LABEL}
    assert not table.duplicated(["strategy", "symbol", "metric"]).any()
    for sym in CLOSE:
        agent = backtest_metrics(EQUITY[sym], POSITION[sym], 252, ACTIONS[sym], ["sell", "hold", "buy"])
        bh = buy_and_hold_metrics(CLOSE[sym], 252)
        idx = buy_and_hold_metrics(INDEX, 252)
        for strategy, expected in (("agent", agent), ("buy_and_hold", bh), ("index", idx)):
            for metric, value in expected.items():
                got = _value(table, strategy, sym, metric)
                assert got.value == pytest.approx(value, nan_ok=True), (strategy, sym, metric)
                assert np.isnan(got.ci_low) and got.n == 1
    # action frequencies only for the agent
    assert set(table[table.metric.str.startswith("action_freq")].strategy) == {"agent"}


def test_hand_computed_values():
    table = _table()
    # A: long 110 -> 99 -> 121, then flat: one trade, +10 %; B: short 50 -> 45, one trade +10 %
    assert _value(table, "agent", "A", "total_return").value == pytest.approx(0.10)
    assert _value(table, "agent", "A", "max_drawdown").value == pytest.approx(0.10)
    assert _value(table, "agent", "B", "pct_short").value == pytest.approx(0.25)
    assert _value(table, "agent", ALL_LABEL, "trades").value == 1.0
    assert _value(table, "agent", ALL_LABEL, "win_rate").value == 1.0
    # buy and hold: A +21 %, B +20 %; ALL is their mean
    assert _value(table, "buy_and_hold", "A", "total_return").value == pytest.approx(0.21)
    assert _value(table, "buy_and_hold", ALL_LABEL, "total_return").value == pytest.approx(0.205)
    # profit factor is inf for both agent symbols (no losing trade): pooled, still inf
    pf = _value(table, "agent", ALL_LABEL, "profit_factor")
    assert pf.value == np.inf and pf.n == 2
    # the equal-split account's total return is the mean of the symbols' total returns
    for strategy in ("agent", "buy_and_hold", "index"):
        per_symbol = table[(table.strategy == strategy) & table.symbol.isin(["A", "B"])
                           & (table.metric == "total_return")].value.mean()
        assert _value(table, strategy, PORTFOLIO_LABEL, "total_return").value == pytest.approx(per_symbol)


def test_aggregate_intervals_bracket_the_point_and_are_seeded():
    rng = np.random.default_rng(0)
    n_bars, symbols = 300, [f"S{i}" for i in range(8)]
    close = {s: 100 * np.cumprod(np.r_[1, 1 + rng.normal(0.0003, 0.01, n_bars)]) for s in symbols}
    position = {s: rng.choice([-1.0, 0.0, 1.0], n_bars) for s in symbols}
    equity = {s: 1000 * np.cumprod(np.r_[1, 1 + position[s] * np.diff(close[s]) / close[s][:-1]])
              for s in symbols}
    index = 100 * np.cumprod(np.r_[1, 1 + rng.normal(0.0002, 0.008, n_bars)])
    table = summary_table(equity, position, close, index, periods_per_year=252, rng=4, n_boot=300)
    agg = table[table.scope != "symbol"].dropna(subset=["ci_low"])
    assert len(agg) > 50 and (agg.ci_low <= agg.ci_high).all()
    # every aggregate point, max drawdown included, lies inside its interval on typical paths
    tol = 1e-9 * (1 + agg.value.abs())
    assert ((agg.ci_low <= agg.value + tol) & (agg.value <= agg.ci_high + tol)).all()
    again = summary_table(equity, position, close, index, periods_per_year=252, rng=4, n_boot=300)
    pd.testing.assert_frame_equal(table, again)
    other = summary_table(equity, position, close, index, periods_per_year=252, rng=5, n_boot=300)
    assert not np.allclose(other.ci_low.fillna(0), table.ci_low.fillna(0))
    # the index as a per-symbol mapping gives the same table
    by_symbol = summary_table(equity, position, close, dict.fromkeys(symbols, index),
                              periods_per_year=252, rng=4, n_boot=300)
    pd.testing.assert_frame_equal(table, by_symbol)


def test_unequal_lengths_have_no_portfolio_and_bad_lengths_are_named():
    equity = EQUITY | {"C": np.array([1000.0, 1010, 1020])}
    position = POSITION | {"C": np.array([1.0, 1.0])}
    close = CLOSE | {"C": np.array([10.0, 10.1, 10.2])}
    index = {s: INDEX[: len(equity[s])] for s in equity}
    table = summary_table(equity, position, close, index, periods_per_year=252, rng=0, n_boot=50)
    assert "portfolio" not in set(table.scope)
    with pytest.raises(ValueError, match="B: need len"):
        summary_table(EQUITY, POSITION | {"B": np.zeros(3)}, CLOSE, INDEX, periods_per_year=252, rng=0)


def test_position_weights():
    # qty 2 held through bar 0 closing at 110 with equity 1020 -> 220 / 1020
    w = position_weights(np.array([2.0, -1.0]), np.array([100.0, 110, 120]), np.array([1000.0, 1020, 1000]))
    np.testing.assert_allclose(w, [220 / 1020, -120 / 1000])


def test_combine_seed_tables():
    t0, t1 = _table(rng=0), _table(rng=1)
    t1 = t1.assign(value=np.where(t1.metric == "total_return", t1.value + 0.02, t1.value))
    out = combine_seed_tables({0: t0, 1: t1})
    assert len(out) == len(t0)
    assert list(out.columns[:7]) == ["strategy", "scope", "symbol", "metric", "mean", "std", "n_seeds"]
    row = out[(out.strategy == "agent") & (out.symbol == "A") & (out.metric == "total_return")].iloc[0]
    assert (row.seed_0, row.seed_1) == pytest.approx((0.10, 0.12))
    assert row["mean"] == pytest.approx(0.11) and row["std"] == pytest.approx(0.02 / np.sqrt(2))
    assert row.n_seeds == 2
    pf = out[(out.strategy == "agent") & (out.symbol == "A") & (out.metric == "profit_factor")].iloc[0]
    assert pf.n_seeds == 0 and np.isnan(pf["mean"])  # inf in both seeds: not averaged

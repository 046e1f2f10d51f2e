"""Aggregates of the summary table: their own namespace, joint time-block intervals that cover,
pooled profit factor, buy-and-hold costs and the caveats every table carries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.evaluation import metrics as m
from app.evaluation import trade_stats as ts
from app.evaluation.batch_metrics import path_metrics
from app.evaluation.pipeline import BacktestReport, backtest_dir_name
from app.evaluation.summary import ALL_LABEL, CAVEATS, PORTFOLIO_LABEL, summary_table
from envs.core import costs


def _walks(seed: int, symbols: list[str], n_bars: int, rho: float = 0.25, mu: float = 0.001,
           sigma: float = 0.01) -> dict[str, np.ndarray]:
    """Equity paths (from 1) of correlated iid returns: a common factor with weight ``rho``."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=n_bars)
    out = {}
    for s in symbols:
        r = mu + sigma * (np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.normal(size=n_bars))
        out[s] = np.cumprod(np.r_[1.0, 1.0 + r])
    return out


def _row(table: pd.DataFrame, strategy: str, scope: str, metric: str, symbol: str | None = None):
    sel = (table.strategy == strategy) & (table.scope == scope) & (table.metric == metric)
    if symbol is not None:
        sel &= table.symbol == symbol
    rows = table[sel]
    assert len(rows) == 1
    return rows.iloc[0]


def test_a_stock_named_ALL_stays_a_symbol_and_never_heads_the_table():
    symbols = ["ALL", "PORTFOLIO", "MSFT"]  # Allstate, and a ticker shaped like the other label
    curves = _walks(0, symbols, 60)
    curves["ALL"] = curves["ALL"] * 3.0  # its own total return differs from the cross-section
    pos = {s: np.ones(60) for s in symbols}
    table = summary_table(curves, pos, curves, curves["MSFT"], periods_per_year=252, rng=0, n_boot=50)
    stock = _row(table, "agent", "symbol", "total_return", "ALL")
    cross = _row(table, "agent", "cross_section", "total_return")
    assert cross.symbol == ALL_LABEL and stock.symbol == "ALL"
    assert stock.value == pytest.approx(curves["ALL"][-1] / curves["ALL"][0] - 1)
    assert cross.value == pytest.approx(np.mean([c[-1] / c[0] - 1 for c in curves.values()]))
    # the headline is the aggregates only: the stock ALL is not in it
    report = BacktestReport(None, None, table, pd.DataFrame())  # type: ignore[arg-type]
    head = report.headline()
    assert set(head.scope) == {"cross_section", "portfolio"}
    assert set(head.symbol) == {ALL_LABEL, PORTFOLIO_LABEL}
    with pytest.raises(ValueError, match="aggregate label"):
        summary_table({ALL_LABEL: curves["MSFT"]}, {ALL_LABEL: np.ones(60)}, {ALL_LABEL: curves["MSFT"]},
                      curves["MSFT"], periods_per_year=252, rng=0)


def test_cross_section_interval_covers_the_true_mean_of_correlated_symbols():
    # 4 symbols, cross-correlation 0.25, iid over time with a known mean: the expected total
    # return is (1 + mu) ** T - 1. A bootstrap across symbols covered it ~68 % of the time here;
    # resampling time blocks jointly must be near the nominal 95 %.
    n_bars, mu, reps = 160, 0.001, 100
    truth = (1 + mu) ** n_bars - 1
    hits = []
    for rep in range(reps):
        curves = _walks(1000 + rep, ["A", "B", "C", "D"], n_bars, mu=mu)
        pos = {s: np.ones(n_bars) for s in curves}
        table = summary_table(curves, pos, curves, np.ones(n_bars + 1), periods_per_year=252,
                              rng=rep, n_boot=100)
        row = _row(table, "agent", "cross_section", "total_return")
        hits.append(row.ci_low <= truth <= row.ci_high)
    assert 0.88 <= np.mean(hits) <= 0.995, np.mean(hits)


def test_an_index_shared_by_every_symbol_has_a_real_interval():
    symbols = [f"S{i}" for i in range(18)]
    curves = _walks(3, symbols, 120)
    index = _walks(4, ["IDX"], 120)["IDX"]
    pos = {s: np.ones(120) for s in symbols}
    table = summary_table(curves, pos, curves, index, periods_per_year=252, rng=0, n_boot=200)
    row = _row(table, "index", "cross_section", "total_return")
    assert row.ci_high - row.ci_low > 0.02  # was zero-width: 18 copies of one series
    assert row.ci_low <= row.value <= row.ci_high and "joint across symbols" in row.ci_method


def test_too_few_bars_give_no_interval_and_say_why():
    curves = _walks(5, ["A", "B"], 12)
    table = summary_table(curves, {s: np.ones(12) for s in curves}, curves, curves["A"],
                          periods_per_year=252, rng=0, n_boot=50)
    agg = table[table.scope != "symbol"]
    assert agg.ci_low.isna().all() and agg.ci_method.str.contains("too few").all()


def test_unequal_windows_are_aligned_by_timestamp():
    curves = _walks(6, ["A", "B"], 80)
    ts_ns = {"A": np.arange(81), "B": np.arange(81)}
    short = {"A": curves["A"], "B": curves["B"][:41]}
    table = summary_table(short, {"A": np.ones(80), "B": np.ones(40)}, short,
                          {"A": curves["A"], "B": curves["B"][:41]}, periods_per_year=252, rng=0,
                          n_boot=50, ts_ns={"A": ts_ns["A"], "B": ts_ns["B"][:41]})
    assert "portfolio" not in set(table.scope)
    assert np.isfinite(_row(table, "agent", "cross_section", "total_return").ci_low)


def test_profit_factor_of_the_cross_section_is_pooled_not_averaged():
    # A: two trades +10 and -5 (PF 2); B: one trade +3, no loss (PF inf, used to be dropped)
    equity = {"A": np.array([100.0, 110, 110, 105, 105]), "B": np.array([100.0, 103, 103, 103, 103])}
    pos = {"A": np.array([1.0, 0, 1, 0]), "B": np.array([1.0, 0, 0, 0])}
    table = summary_table(equity, pos, equity, equity["A"], periods_per_year=252, rng=0, n_boot=20)
    assert _row(table, "agent", "symbol", "profit_factor", "B").value == np.inf
    pf = _row(table, "agent", "cross_section", "profit_factor")
    assert pf.value == pytest.approx((0.10 + 0.03) / 0.05) and pf.n == 2  # in units of equity


def test_buy_and_hold_pays_the_envs_entry_and_exit_costs():
    close = np.array([100.0, 110.0, 121.0])
    cost = costs.CostModel(fee_bps=10, slippage_bps=5)
    equity = ts.buy_and_hold_equity(close, cost)
    fee, slip = 1e-3, 5e-4
    qty = 1.0 / (100 * (1 + slip) * (1 + fee))  # all the cash, fee included
    assert equity[0] == 1.0
    assert equity[1] == pytest.approx(qty * 110)
    assert equity[2] == pytest.approx(qty * 121 * (1 - slip) * (1 - fee))
    assert equity[2] / equity[0] - 1 == pytest.approx(1.21 * (1 - slip) * (1 - fee) / ((1 + slip) * (1 + fee)) - 1)
    np.testing.assert_allclose(ts.buy_and_hold_equity(close), close / 100)
    table = summary_table({"A": close}, {"A": np.ones(2)}, {"A": close}, close, periods_per_year=252,
                          rng=0, cost=cost, n_boot=10)
    assert _row(table, "buy_and_hold", "symbol", "total_return", "A").value == pytest.approx(equity[2] - 1)
    assert _row(table, "index", "symbol", "total_return", "A").value == pytest.approx(equity[2] - 1)


def test_every_table_and_report_states_its_conventions_and_caveats():
    curves = _walks(7, ["A"], 30)
    table = summary_table(curves, {"A": np.ones(30)}, curves, curves["A"], periods_per_year=252,
                          rng=0, n_boot=10)
    caveats = " ".join(table.attrs["caveats"])
    assert table.attrs["caveats"] == list(CAVEATS)
    for word in ("Costs", "dividends", "Survivorship", "bootstrap"):
        assert word in caveats


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.2, 0.2), st.sampled_from([-1.0, 0.0, 0.5, 1.0]), st.booleans()),
                min_size=1, max_size=70))
def test_path_metrics_equal_the_scalar_metrics_on_the_bars_a_path_has(bars):
    r = np.array([b[0] for b in bars])
    pos = np.array([b[1] for b in bars])
    keep = np.array([b[2] for b in bars])
    got = path_metrics(np.where(keep, r, np.nan)[None], np.where(keep, pos, np.nan)[None], 252)
    equity = np.cumprod(np.r_[1.0, 1.0 + r[keep]])
    want = ts.return_metrics(equity, 252) | m.time_in_market(pos[keep]) | {"turnover": m.turnover(pos[keep])}
    for k, v in want.items():
        assert got[k][0] == pytest.approx(v, rel=1e-9, abs=1e-12, nan_ok=True), k


@pytest.mark.parametrize(("greedy", "samples", "seed", "name"), [
    (True, 1, 0, "test-greedy"),
    (False, 8, 0, "test-stochastic8-seed0"),
    (False, 8, 1, "test-stochastic8-seed1"),
])
def test_stochastic_backtests_of_another_seed_get_their_own_directory(greedy, samples, seed, name):
    assert backtest_dir_name("test", greedy, samples, seed) == name

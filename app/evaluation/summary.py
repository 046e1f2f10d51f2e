"""The backtest summary table: every metric for the agent, buy-and-hold of the same symbols and
the market index, per symbol and aggregated, with bootstrap confidence intervals.

Tidy (long) layout, one row per ``(strategy, scope, symbol, metric)``:

========== ===================================================================================
strategy   ``agent``, ``buy_and_hold`` (the symbol itself, weight 1) or ``index`` (the market
           index bought and held over the symbol's window); both pay the env's entry and exit
           costs when ``cost`` is given (:func:`~app.evaluation.trade_stats.buy_and_hold_equity`)
scope      ``symbol`` (one symbol), ``cross_section`` (the mean over symbols) or ``portfolio``
           (one account split equally across the symbols at the start, never rebalanced; only
           when every symbol covers the same bars; return metrics only)
symbol     the symbol for ``scope == "symbol"``; for aggregates a label that no ticker can be,
           :data:`ALL_LABEL` or :data:`PORTFOLIO_LABEL` (a stock named ``ALL`` stays a symbol).
           Select aggregates by ``scope``, never by ``symbol``.
metric     see :mod:`app.evaluation.trade_stats` for the definitions
value      the metric. Cross-section: the mean over the symbols where it is finite (``inf``
           Calmar and ``nan`` win rate without trades are left out), except the profit factor,
           pooled: summed gross profits / summed gross losses of every symbol's round trips
           (in units of each symbol's starting equity), ``inf`` when no trade lost.
ci_low/    percentile bootstrap interval (``nan`` when there is none; ``ci_method`` says why).
ci_high    Aggregates resample **time**: stationary-bootstrap blocks of bars
           (:func:`app.evaluation.stats.joint_time_block_indices`), the same bars for every
           symbol and strategy, so cross-symbol correlation is kept and the intervals of the
           three strategies are paired. Round-trip statistics (trades, win rate, profit factor,
           holding lengths) get none: a block join cuts a trade in two.
n          number of symbols behind the value (1 per symbol; finite ones for the cross-section)
ci_method  how the interval was made, or why there is none
========== ===================================================================================

Symbols are aligned on a common calendar by their bar timestamps (``ts_ns``); without them,
series of equal length are taken as the same bars and shorter ones as ending with the longest.
A wide view: ``table.pivot_table(index=["symbol", "metric"], columns="strategy",
values="value")``. :data:`CAVEATS` lists what the numbers do not account for; the table carries
them in ``table.attrs["caveats"]`` and the report prints them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from app.evaluation import metrics as m
from app.evaluation import stats
from app.evaluation.batch_metrics import PATH_METRICS, path_metrics, return_path_metrics
from app.evaluation.trade_stats import (
    backtest_metrics,
    buy_and_hold_equity,
    buy_and_hold_metrics,
    gross_pnl,
    pooled_profit_factor,
    return_metrics,
)
from envs.core.costs import CostModel

STRATEGIES = ("agent", "buy_and_hold", "index")
COLUMNS = ["strategy", "scope", "symbol", "metric", "value", "ci_low", "ci_high", "n", "ci_method"]
SYMBOL, CROSS_SECTION, PORTFOLIO = "symbol", "cross_section", "portfolio"
#: aggregate labels in the ``symbol`` column: ``*`` is in no Yahoo or ccxt ticker
ALL_LABEL, PORTFOLIO_LABEL = "*ALL*", "*PORTFOLIO*"
AGGREGATE_SCOPES = (PORTFOLIO, CROSS_SECTION)
#: conventions and caveats every summary carries (``table.attrs["caveats"]``)
CAVEATS: tuple[str, ...] = (
    "Costs: the agent pays the env's fees and slippage on every fill; the buy-and-hold and "
    "index benchmarks pay the same fee and slippage once on entry and once on exit when the "
    "backtest knows the env's cost model, and nothing else (no spread, borrow or taxes).",
    "Index: a price index (e.g. ^GSPC) excludes dividends, while stock prices are "
    "total-return adjusted, so it understates a total-return benchmark by roughly its "
    "dividend yield (about 2 percentage points a year for the S&P 500).",
    "Survivorship: the universe is the symbols in the data store today; symbols delisted "
    "before then are absent, which flatters every long strategy, buy-and-hold included.",
    "Intervals: percentile stationary bootstrap over time blocks, joint across symbols; "
    "annualized figures need at least a month of bars, ratios at least 20 bars (else n/a).",
)


def position_weights(qty: np.ndarray, close_usd: np.ndarray, equity_usd: np.ndarray) -> np.ndarray:
    """Signed position value as a fraction of equity at the end of each bar:
    ``w_i = qty_i * close_{i+1} / equity_{i+1}`` (``qty`` has one entry per bar, ``close_usd``
    and ``equity_usd`` one more), so turnover is in units of equity."""
    qty = np.asarray(qty, dtype=np.float64)
    return qty * np.asarray(close_usd, dtype=np.float64)[1:] / np.asarray(equity_usd, dtype=np.float64)[1:]


def summary_table(equity_usd: Mapping[str, np.ndarray], position: Mapping[str, np.ndarray],
                  close_usd: Mapping[str, np.ndarray], index_close: np.ndarray | Mapping[str, np.ndarray],
                  *, periods_per_year: float, rng: stats.RngLike,
                  actions: Mapping[str, np.ndarray] | None = None,
                  action_names: Sequence[str] | None = None, n_boot: int = 1000,
                  level: float = 0.95, mean_block_bars: float | None = None,
                  cost: CostModel | None = None,
                  ts_ns: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Every metric for agent / buy-and-hold / index, per symbol, cross-section and portfolio.

    Per symbol ``s`` (``n + 1`` points, ``n`` bars): ``equity_usd[s]`` the agent's equity,
    ``position[s]`` its signed position per bar (weights, see :func:`position_weights`),
    ``close_usd[s]`` the symbol's closes on the same ``n + 1`` points, ``actions[s]`` its
    discrete actions per bar (optional), ``ts_ns[s]`` the points' timestamps (optional, to
    align symbols). ``index_close`` is one array on the same points as every symbol, or one per
    symbol. ``cost``: the env's cost model, charged to buy-and-hold and the index on entry and
    exit. ``mean_block_bars`` sets the stationary bootstrap's mean block (default
    ``round(T ** (1/3))`` of the ``T`` calendar bars); ``rng`` seeds every resample.
    """
    symbols = list(equity_usd)
    if not symbols:
        raise ValueError("summary_table: no symbols")
    clash = [s for s in symbols if s in (ALL_LABEL, PORTFOLIO_LABEL)]
    if clash:
        raise ValueError(f"summary_table: {clash} is an aggregate label, not a symbol")
    per_symbol: dict[str, dict[str, dict[str, float]]] = {k: {} for k in STRATEGIES}
    curves: dict[str, list[np.ndarray]] = {k: [] for k in STRATEGIES}
    weights: dict[str, list[np.ndarray]] = {k: [] for k in STRATEGIES}
    for sym in symbols:
        eq = np.asarray(equity_usd[sym], dtype=np.float64)
        close = np.asarray(close_usd[sym], dtype=np.float64)
        index = np.asarray(index_close if isinstance(index_close, np.ndarray) else index_close[sym],
                           dtype=np.float64)
        if not len(eq) == len(close) == len(index) == len(position[sym]) + 1:
            raise ValueError(f"summary_table: {sym}: need len(equity) == len(close) == len(index) "
                             f"== len(position) + 1, got {len(eq)}, {len(close)}, {len(index)}, "
                             f"{len(position[sym])}")
        acts = actions[sym] if actions is not None else None
        per_symbol["agent"][sym] = backtest_metrics(eq, position[sym], periods_per_year, acts, action_names)
        per_symbol["buy_and_hold"][sym] = buy_and_hold_metrics(close, periods_per_year, cost)
        per_symbol["index"][sym] = buy_and_hold_metrics(index, periods_per_year, cost)
        bars = np.ones(len(eq) - 1)
        for name, curve, w in zip(STRATEGIES, (eq / eq[0], buy_and_hold_equity(close, cost),
                                               buy_and_hold_equity(index, cost)),
                                  (np.asarray(position[sym], dtype=np.float64), bars, bars), strict=True):
            curves[name].append(curve)
            weights[name].append(w)

    gen = np.random.default_rng(rng)
    rows: list[tuple] = []
    for name in STRATEGIES:
        for sym in symbols:
            rows += [(name, SYMBOL, sym, k, v, np.nan, np.nan, 1, "")
                     for k, v in per_symbol[name][sym].items()]
    columns, n_cal = _calendar(symbols, curves["agent"], ts_ns)
    idx = (stats.joint_time_block_indices(n_cal, n_boot, gen, mean_block_bars)
           if n_cal >= m.MIN_BARS else None)
    block = mean_block_bars if mean_block_bars is not None else stats.default_block_bars(n_cal)
    method = f"stationary bootstrap over time, mean block {block:g} bars"
    no_ci = f"none: {n_cal} bars are too few for a time-block bootstrap (< {m.MIN_BARS})"
    rows += _cross_section_rows(per_symbol, curves, weights, symbols, columns, n_cal, idx,
                                periods_per_year, level, f"{method}, joint across symbols" if idx is not None
                                else no_ci)
    same_bars = len({tuple(c) for c in columns}) == 1
    if same_bars:
        rows += _portfolio_rows(curves, periods_per_year, idx, level, method if idx is not None else no_ci)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["caveats"] = list(CAVEATS)
    return table


def _calendar(symbols: list[str], curves: list[np.ndarray],
              ts_ns: Mapping[str, np.ndarray] | None) -> tuple[list[np.ndarray], int]:
    """Each symbol's bars as columns of one calendar, and the calendar's length."""
    if ts_ns is not None:
        keys = []
        for sym, curve in zip(symbols, curves, strict=True):
            ts = np.asarray(ts_ns[sym], dtype=np.int64)
            if len(ts) != len(curve):
                raise ValueError(f"summary_table: {sym}: ts_ns has {len(ts)} points, equity {len(curve)}")
            keys.append(ts[1:])
    else:
        longest = max(len(c) - 1 for c in curves)
        keys = [np.arange(longest - (len(c) - 1), longest) for c in curves]
    calendar = np.unique(np.concatenate(keys))
    return [np.searchsorted(calendar, k) for k in keys], len(calendar)


def _matrix(series: list[np.ndarray], columns: list[np.ndarray], n_cal: int) -> np.ndarray:
    out = np.full((len(series), n_cal), np.nan)
    for row, (values, cols) in enumerate(zip(series, columns, strict=True)):
        out[row, cols] = values
    return out


def _finite_mean(values: np.ndarray, axis: int) -> np.ndarray:
    values = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():  # an all-nan column is a legitimate nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _cross_section_rows(per_symbol: dict[str, dict[str, dict[str, float]]],
                        curves: dict[str, list[np.ndarray]], weights: dict[str, list[np.ndarray]],
                        symbols: list[str], columns: list[np.ndarray], n_cal: int,
                        idx: np.ndarray | None, ppy: float, level: float, method: str) -> list[tuple]:
    """Cross-section rows: mean of the finite per-symbol values (the profit factor pooled), CIs
    from the joint time-block bootstrap of every symbol's returns and positions."""
    rows = []
    for name in STRATEGIES:
        metrics = list(per_symbol[name][symbols[0]])
        values = np.array([[per_symbol[name][s].get(k, np.nan) for k in metrics] for s in symbols])
        point, count = _finite_mean(values, 0), np.isfinite(values).sum(axis=0)
        gains, losses = zip(*(gross_pnl(c, w) for c, w in zip(curves[name], weights[name], strict=True)),
                            strict=True)
        reps = (_replicate_means(curves[name], weights[name], columns, n_cal, idx, ppy)
                if idx is not None else {})
        for j, k in enumerate(metrics):
            value, n = float(point[j]), int(count[j])
            if k == "profit_factor":
                value, n = pooled_profit_factor(np.array(gains), np.array(losses)), len(symbols)
            if k in reps:
                ci = stats.percentile_ci(value, reps[k], level)
                rows.append((name, CROSS_SECTION, ALL_LABEL, k, value, ci.low, ci.high, n, method))
            else:
                why = method if idx is None else "none: a trade or action statistic (not resampled)"
                rows.append((name, CROSS_SECTION, ALL_LABEL, k, value, np.nan, np.nan, n, why))
    return rows


def _replicate_means(curves: list[np.ndarray], weights: list[np.ndarray], columns: list[np.ndarray],
                     n_cal: int, idx: np.ndarray, ppy: float) -> dict[str, np.ndarray]:
    """Per resample, the mean over symbols of each :data:`PATH_METRICS` entry."""
    rets = _matrix([c[1:] / c[:-1] - 1.0 for c in curves], columns, n_cal)
    pos = _matrix(weights, columns, n_cal)
    n_sym, n_boot = len(curves), len(idx)
    chunk = max(1, 4_000_000 // (n_sym * n_cal))
    out: dict[str, list[np.ndarray]] = {k: [] for k in PATH_METRICS}
    for lo in range(0, n_boot, chunk):
        cols = idx[lo:lo + chunk]
        r = rets[:, cols].reshape(-1, n_cal)  # (symbols * resamples, bars), symbol-major
        p = pos[:, cols].reshape(-1, n_cal)
        for k, v in path_metrics(r, p, ppy).items():
            out[k].append(_finite_mean(v.reshape(n_sym, len(cols)), 0))
    return {k: np.concatenate(v) for k, v in out.items()}


def _portfolio_rows(curves: dict[str, list[np.ndarray]], ppy: float, idx: np.ndarray | None,
                    level: float, method: str) -> list[tuple]:
    """Portfolio rows: return metrics of the equal-split account, CIs from the same resamples."""
    rows = []
    for name in STRATEGIES:
        equity = np.mean(curves[name], axis=0)
        point = return_metrics(equity, ppy)
        reps = (return_path_metrics((equity[1:] / equity[:-1] - 1.0)[idx], ppy)
                if idx is not None else {})
        for k, v in point.items():
            ci = stats.percentile_ci(v, reps[k], level) if k in reps else None
            rows.append((name, PORTFOLIO, PORTFOLIO_LABEL, k, v, ci.low if ci else np.nan,
                         ci.high if ci else np.nan, len(curves[name]), method))
    return rows


def combine_seed_tables(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Combine :func:`summary_table` outputs of several training seeds.

    One row per ``(strategy, scope, symbol, metric)`` with ``mean``, ``std`` (ddof=1) and ``n_seeds``
    over the seeds where the value is finite (as :func:`app.evaluation.stats.combine_seeds`),
    then one ``seed_<s>`` column per seed.
    """
    if not tables:
        raise ValueError("combine_seed_tables: no tables")
    long = pd.concat([t.assign(seed=s) for s, t in tables.items()], ignore_index=True)
    keys = [k for k in ("strategy", "scope", "symbol", "metric") if k in long]
    order = pd.MultiIndex.from_frame(long[keys].drop_duplicates())
    wide = long.set_index([*keys, "seed"])["value"].unstack("seed").reindex(order)
    wide.columns = [f"seed_{s}" for s in wide.columns]
    finite = wide.where(np.isfinite(wide))
    out = pd.DataFrame({"mean": finite.mean(axis=1), "std": finite.std(axis=1, ddof=1),
                        "n_seeds": finite.count(axis=1)}, index=wide.index)
    return pd.concat([out, wide], axis=1).reset_index()

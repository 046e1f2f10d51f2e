"""The backtest summary table: every metric for the agent, buy-and-hold of the same symbols and
the market index, per symbol and aggregated, with bootstrap confidence intervals.

Tidy (long) layout, one row per ``(strategy, symbol, metric)``:

========== ===================================================================================
strategy   ``agent``, ``buy_and_hold`` (the symbol itself, weight 1, no costs) or ``index``
           (the market index bought and held over the symbol's window)
symbol     a symbol; ``ALL``: the cross-sectional mean over symbols; ``PORTFOLIO``: one account
           split equally across the symbols at the start, never rebalanced (only when every
           symbol has the same number of bars), return metrics only
metric     see :mod:`app.evaluation.trade_stats` for the definitions
value      the metric (for ``ALL``: mean over the symbols where it is finite; ``inf`` profit
           factor or Calmar and ``nan`` win rate without trades are left out)
ci_low/    percentile bootstrap interval: for ``ALL`` a plain bootstrap across symbols, for
ci_high    ``PORTFOLIO`` a stationary bootstrap of its per-bar returns; ``nan`` per symbol
n          number of symbols behind the value (1 per symbol; finite ones for ``ALL``)
========== ===================================================================================

The same resample indices serve the three strategies, so their intervals are paired. A wide
view: ``table.pivot_table(index=["symbol", "metric"], columns="strategy", values="value")``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from app.evaluation import stats
from app.evaluation.trade_stats import backtest_metrics, buy_and_hold_metrics, return_metrics

STRATEGIES = ("agent", "buy_and_hold", "index")
COLUMNS = ["strategy", "symbol", "metric", "value", "ci_low", "ci_high", "n"]


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
                  level: float = 0.95, mean_block_bars: float | None = None) -> pd.DataFrame:
    """Every metric for agent / buy-and-hold / index, per symbol, ``ALL`` and ``PORTFOLIO``.

    Per symbol ``s`` (``n + 1`` points, ``n`` bars): ``equity_usd[s]`` the agent's equity,
    ``position[s]`` its signed position per bar (weights, see :func:`position_weights`),
    ``close_usd[s]`` the symbol's closes on the same ``n + 1`` points, ``actions[s]`` its
    discrete actions per bar (optional). ``index_close`` is one array on the same points as
    every symbol, or one per symbol. ``mean_block_bars`` sets the stationary bootstrap's mean
    block (default ``round(n ** (1/3))``); ``rng`` seeds every resample.
    """
    symbols = list(equity_usd)
    if not symbols:
        raise ValueError("summary_table: no symbols")
    per_symbol: dict[str, dict[str, dict[str, float]]] = {k: {} for k in STRATEGIES}
    curves: dict[str, list[np.ndarray]] = {k: [] for k in STRATEGIES}
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
        per_symbol["buy_and_hold"][sym] = buy_and_hold_metrics(close, periods_per_year)
        per_symbol["index"][sym] = buy_and_hold_metrics(index, periods_per_year)
        for name, curve in zip(STRATEGIES, (eq, close, index), strict=True):
            curves[name].append(curve / curve[0])

    gen = np.random.default_rng(rng)
    rows: list[tuple] = []
    for name in STRATEGIES:
        for sym in symbols:
            rows += [(name, sym, k, v, np.nan, np.nan, 1) for k, v in per_symbol[name][sym].items()]
    rows += _cross_section_rows(per_symbol, symbols, gen, n_boot, level)
    if len({len(c) for c in curves["agent"]}) == 1:
        rows += _portfolio_rows(curves, periods_per_year, gen, n_boot, level, mean_block_bars)
    return pd.DataFrame(rows, columns=COLUMNS)


def _cross_section_rows(per_symbol: dict[str, dict[str, dict[str, float]]], symbols: list[str],
                        gen: np.random.Generator, n_boot: int, level: float) -> list[tuple]:
    """``ALL`` rows: mean of the finite per-symbol values, plain bootstrap across symbols."""
    idx = stats.iid_bootstrap_indices(len(symbols), n_boot, gen)
    rows = []
    for name in STRATEGIES:
        metrics = list(per_symbol[name][symbols[0]])
        values = np.array([[per_symbol[name][s].get(k, np.nan) for k in metrics] for s in symbols])
        values[~np.isfinite(values)] = np.nan
        with warnings.catch_warnings():  # an all-nan column is a legitimate nan
            warnings.simplefilter("ignore", RuntimeWarning)
            point = np.nanmean(values, axis=0)
            reps = np.nanmean(values[idx], axis=1)  # (n_boot, n_metrics)
        count = np.sum(np.isfinite(values), axis=0)
        for j, k in enumerate(metrics):
            ci = stats.percentile_ci(point[j], reps[:, j], level)
            rows.append((name, "ALL", k, ci.point, ci.low, ci.high, int(count[j])))
    return rows


def _portfolio_rows(curves: dict[str, list[np.ndarray]], periods_per_year: float,
                    gen: np.random.Generator, n_boot: int, level: float,
                    mean_block_bars: float | None) -> list[tuple]:
    """``PORTFOLIO`` rows: return metrics of the equal-split account, stationary bootstrap CIs."""
    equity = {name: np.mean(curves[name], axis=0) for name in STRATEGIES}
    n_bars = len(equity["agent"]) - 1
    if n_bars < 2:
        return []
    idx = stats.bootstrap_indices(n_bars, n_boot, gen, "stationary", mean_block_bars)
    rows = []
    for name in STRATEGIES:
        point = return_metrics(equity[name], periods_per_year)
        rets = equity[name][1:] / equity[name][:-1] - 1.0
        reps = [return_metrics(np.cumprod(np.r_[1.0, 1.0 + rets[row]]), periods_per_year)
                for row in idx]
        for k, v in point.items():
            ci = stats.percentile_ci(v, np.array([r[k] for r in reps]), level)
            rows.append((name, "PORTFOLIO", k, ci.point, ci.low, ci.high, len(curves[name])))
    return rows


def combine_seed_tables(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Combine :func:`summary_table` outputs of several training seeds.

    One row per ``(strategy, symbol, metric)`` with ``mean``, ``std`` (ddof=1) and ``n_seeds``
    over the seeds where the value is finite (as :func:`app.evaluation.stats.combine_seeds`),
    then one ``seed_<s>`` column per seed.
    """
    if not tables:
        raise ValueError("combine_seed_tables: no tables")
    long = pd.concat([t.assign(seed=s) for s, t in tables.items()], ignore_index=True)
    keys = ["strategy", "symbol", "metric"]
    order = pd.MultiIndex.from_frame(long[keys].drop_duplicates())
    wide = long.set_index([*keys, "seed"])["value"].unstack("seed").reindex(order)
    wide.columns = [f"seed_{s}" for s in wide.columns]
    finite = wide.where(np.isfinite(wide))
    out = pd.DataFrame({"mean": finite.mean(axis=1), "std": finite.std(axis=1, ddof=1),
                        "n_seeds": finite.count(axis=1)}, index=wide.index)
    return pd.concat([out, wide], axis=1).reset_index()

"""Time-block bootstrap replicates for the studies' cross-symbol means and differences.

Symbols traded over the same period are correlated (a common market factor): a bootstrap that
resamples symbols as independent units under-covers (about 55 % for a nominal 95 % at a
cross-symbol correlation of 0.25, see ``tests/unit/evaluation/test_studies_intervals.py``).
Here every resample draws stationary-bootstrap blocks of **calendar bars**
(:func:`app.evaluation.stats.joint_time_block_indices`), the same bars for every symbol, sample
and group of a study, and recomputes each path's metric on its resampled bars with the whole-array
metrics of :mod:`app.evaluation.batch_metrics`. So the cross-symbol correlation is kept, and the
intervals of two groups traded over the same period (seen vs unseen symbols, greedy vs
stochastic, window k vs the full window) are joint, which is what their difference needs.

The intervals are conditional on the symbols traded: they say how much the mean could move with
another draw of the period's bars, not with another draw of symbols. Round-trip statistics
(``trades``) get no interval, since a block join cuts a trade in two.

A *path* is one ``(group, symbol, sample)``'s per-bar series (``nan`` where it has no bar); a
symbol's replicate is the mean over its samples' paths, as the point estimate pools them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from app.evaluation import metrics as m
from app.evaluation import stats
from app.evaluation.batch_metrics import PATH_METRICS, position_path_metrics, return_path_metrics

#: per-bar columns every bars frame has (besides ``symbol``, ``sample``, ``ts_ns`` and ``step``)
BAR_COLUMNS = ("agent_return", "bh_return", "position")
KEY_COLUMNS = ("symbol", "sample", "ts_ns", "step")
POSITION_KEYS = ("exposure", "pct_long", "pct_short", "pct_flat", "turnover")
RETURN_KEYS = tuple(k for k in PATH_METRICS if k not in POSITION_KEYS)
#: numbers per resampling chunk (bounds memory: paths x resamples x bars)
CHUNK_ELEMENTS = 4_000_000
SYMBOL_METHOD = ("bootstrap over symbols as independent units (no per-bar series; under-covers "
                 "when symbols are correlated)")
NO_TRADE_CI = "none: a trade statistic (a time-block resample cuts round trips)"


def finite_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite entries along ``axis`` (``nan`` where there is none)."""
    values = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():  # an all-nan slice is a legitimate nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _return_metric(metric: str) -> bool:
    return metric in RETURN_KEYS or metric == "excess_return"


def _bh_metric(metric: str) -> bool:
    return (metric.startswith("bh_") and metric[3:] in RETURN_KEYS) or metric == "excess_return"


@dataclass
class TimeBootstrap:
    """Joint time-block resamples of every path of a study's bars frame.

    ``bars``: one row per ``(by, symbol, sample, bar)`` with ``ts_ns`` and :data:`BAR_COLUMNS`
    (see :func:`app.evaluation.studies.symbol_frames`); any other numeric column is a per-bar
    quantity whose path mean is a metric of the same name (e.g. ``action_agreement``).
    Paths are aligned on one calendar (the sorted distinct ``ts_ns`` of all of them), and one
    set of resampled calendar bars serves every group."""

    periods_per_year: float
    paths: pd.DataFrame                      # by, symbol of each path (row of the matrices)
    values: dict[str, np.ndarray]            # column -> (paths, bars), nan = no bar
    idx: np.ndarray | None                   # (n_boot, bars) resampled calendar positions
    method: str
    metrics: frozenset[str] | None = None    # the metrics to compute (None: all)
    _cache: dict[Hashable, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, bars: pd.DataFrame, by: str, periods_per_year: float, rng: stats.RngLike, *,
           n_boot: int = 1000, mean_block_bars: float | None = None,
           metrics: Sequence[str] | None = None) -> TimeBootstrap:
        """Align ``bars`` and draw the resamples; ``metrics`` limits what is recomputed on them
        (faster; asking for another metric then raises)."""
        missing = [c for c in (by, *KEY_COLUMNS[:3], *BAR_COLUMNS) if c not in bars.columns]
        if missing:
            raise ValueError(f"time bootstrap: the bars frame lacks {missing}")
        calendar, col = np.unique(bars["ts_ns"].to_numpy(np.int64), return_inverse=True)
        grouped = bars.groupby([by, "symbol", "sample"], sort=False)
        row = grouped.ngroup().to_numpy()
        paths = grouped.size().index.to_frame(index=False)[[by, "symbol"]]
        extra = [c for c in bars.columns if c not in (by, *KEY_COLUMNS)
                 and pd.api.types.is_numeric_dtype(bars[c])]
        values = {}
        for name in extra:
            mat = np.full((len(paths), len(calendar)), np.nan)
            mat[row, col] = bars[name].to_numpy(np.float64)
            values[name] = mat
        n, wanted = len(calendar), None if metrics is None else frozenset(metrics)
        if n < m.MIN_BARS:
            return cls(periods_per_year, paths, values, None,
                       f"none: {n} bars are too few for a time-block bootstrap (< {m.MIN_BARS})", wanted)
        block = stats.default_block_bars(n) if mean_block_bars is None else mean_block_bars
        idx = stats.joint_time_block_indices(n, n_boot, rng, mean_block_bars)
        return cls(periods_per_year, paths, values, idx,
                   f"stationary bootstrap over time, mean block {block:g} bars, joint across "
                   "symbols and groups", wanted)

    def resampled(self, metric: str) -> bool:
        """Whether ``metric`` gets a time-bootstrap interval."""
        if self.idx is None:
            return False
        extra = metric in self.values and metric not in BAR_COLUMNS
        return extra or _return_metric(metric) or _bh_metric(metric) or metric in POSITION_KEYS

    def reason(self, metric: str) -> str:
        """The ``ci_method`` of ``metric``'s interval, or why it has none."""
        if self.idx is None or self.resampled(metric):
            return self.method
        return NO_TRADE_CI if metric == "trades" else f"none: {metric} has no per-bar series"

    def symbol_replicates(self, group: Hashable, symbols: Sequence[str], metric: str) -> np.ndarray:
        """``(len(symbols), n_boot)``: per resample, the mean over each symbol's paths (samples)
        of ``metric`` on the resampled bars (non-finite values ignored, as the point estimate)."""
        table = self._cache.get(group)
        if table is None:
            table = self._cache[group] = self._group_replicates(group)
        reps = table.get(metric)
        if reps is None:
            raise KeyError(f"time bootstrap: no replicates of {metric!r} (not resampled, or not in "
                           "the metrics it was built for)")
        missing = np.full(len(self.idx) if self.idx is not None else 0, np.nan)
        return np.stack([reps.get(s, missing) for s in symbols]).reshape(len(symbols), -1)

    def _group_replicates(self, group: Hashable) -> dict[str, dict[str, np.ndarray]]:
        """``metric -> {symbol: (n_boot,) replicates}`` for every resampled metric of a group."""
        by = self.paths.columns[0]
        rows = np.flatnonzero((self.paths[by] == group).to_numpy())
        symbols = self.paths["symbol"].to_numpy()[rows]
        names, codes = np.unique(symbols, return_inverse=True)
        member = np.zeros((len(names), len(rows)))
        member[codes, np.arange(len(rows))] = 1.0
        per_path = self._path_replicates(rows)
        out: dict[str, dict[str, np.ndarray]] = {}
        for metric, v in per_path.items():
            finite = np.isfinite(v)
            total, count = member @ np.where(finite, v, 0.0), member @ finite
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(count > 0, total / count, np.nan)
            out[metric] = dict(zip(names, mean, strict=True))
        return out

    def _path_replicates(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``metric -> (len(rows), n_boot)`` for every resampled metric."""
        assert self.idx is not None
        wanted = [k for k in (self.metrics or self._all_metrics()) if self.resampled(k)]
        sub = {k: v[rows] for k, v in self.values.items()}
        n_bars, n_boot = self.idx.shape[1], len(self.idx)
        chunk = max(1, CHUNK_ELEMENTS // max(1, len(rows) * n_bars))
        out: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
        for lo in range(0, n_boot, chunk):
            cols = self.idx[lo:lo + chunk]

            def take(name: str, cols: np.ndarray = cols) -> np.ndarray:
                return sub[name][:, cols].reshape(-1, n_bars)  # (paths * resamples, bars)

            values = self._chunk_metrics(take, wanted)
            for k in wanted:
                out[k].append(values[k].reshape(len(rows), len(cols)))
        return {k: np.concatenate(v, axis=1) for k, v in out.items()}

    def _all_metrics(self) -> list[str]:
        extra = [k for k in self.values if k not in BAR_COLUMNS]
        return [*RETURN_KEYS, *(f"bh_{k}" for k in RETURN_KEYS), "excess_return", *POSITION_KEYS, *extra]

    def _chunk_metrics(self, take: Callable[[str], np.ndarray],
                       wanted: Sequence[str]) -> dict[str, np.ndarray]:
        """The ``wanted`` metrics of every (path, resample) row of one chunk; only the families
        asked for are computed."""
        returns = take("agent_return")
        empty = ~np.isfinite(returns).any(axis=1)  # a path with no bar in this resample
        values: dict[str, np.ndarray] = {}
        if any(_return_metric(k) for k in wanted):
            values |= return_path_metrics(returns, self.periods_per_year)
        if any(_bh_metric(k) for k in wanted):
            bh = return_path_metrics(take("bh_return"), self.periods_per_year)
            values |= {f"bh_{k}": v for k, v in bh.items()}
        if any(k in POSITION_KEYS for k in wanted):
            values |= position_path_metrics(take("position"))
        if "excess_return" in wanted:
            values["excess_return"] = values["total_return"] - values["bh_total_return"]
        values = {k: np.where(empty, np.nan, v) for k, v in values.items()}
        return values | {k: finite_mean(take(k), 1) for k in wanted if k in self.values}


def mean_replicates(reps: np.ndarray) -> np.ndarray:
    """Per resample, the mean over symbols (rows) of the finite symbol replicates."""
    return finite_mean(reps, 0)


def diff_replicates(a: np.ndarray, b: np.ndarray, *, paired: bool) -> np.ndarray:
    """Per resample, ``mean(a) - mean(b)`` over symbols; ``paired``: rows are the same symbols
    and only those finite in both count (as the paired point estimate)."""
    if not paired:
        return finite_mean(a, 0) - finite_mean(b, 0)
    both = np.isfinite(a) & np.isfinite(b)
    return finite_mean(np.where(both, a - b, np.nan), 0)


# --- compounded returns over buckets of bars (future_distance) -------------------------------

def compound_replicates(returns: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(rows, n_boot)`` compounded return ``prod(1 + r) - 1`` of each row of ``returns``
    (``rows x bars``, ``nan`` = no bar) over each resample's bars (rows of ``idx``); ``nan``
    where a row has no bar in the resample."""
    r = np.asarray(returns, dtype=np.float64)
    finite = np.isfinite(r)
    growth = np.where(finite, 1.0 + np.where(finite, r, 0.0), 1.0)
    n_bars = r.shape[1]
    chunk = max(1, CHUNK_ELEMENTS // max(1, len(r) * n_bars))
    out = []
    for lo in range(0, len(idx), chunk):
        cols = idx[lo:lo + chunk]
        total = growth[:, cols].prod(axis=2) - 1.0
        out.append(np.where(finite[:, cols].any(axis=2), total, np.nan))
    return np.concatenate(out, axis=1) if out else np.empty((len(r), 0))


def slope_replicates(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y[:, j]`` on ``x`` for each column ``j`` (rows with a non-finite
    ``y`` left out; ``nan`` where fewer than two distinct ``x`` remain)."""
    x = np.asarray(x, dtype=np.float64)[:, None]
    w = np.isfinite(y)
    y0 = np.where(w, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (w * x).sum(axis=0) / w.sum(axis=0)
        dx = np.where(w, x - xm, 0.0)
        sxx = (dx**2).sum(axis=0)
        slope = (dx * y0).sum(axis=0) / sxx
    return np.where(sxx > 1e-12, slope, np.nan)

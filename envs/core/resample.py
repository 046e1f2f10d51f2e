"""Causal calendar resampling in numpy: partial 4-hour/daily/weekly/monthly bars built from bars seen so far.

At row ``t`` the bar of the current week (month) is *partial*: open of the period's first bar,
max high and min low up to ``t``, close at ``t``, volume summed up to ``t``. Completed periods
are the partial bar at their last row. Nothing after ``t`` is ever read, which is what the
look-ahead probe checks.

Everything works on CSR series (``offsets``): a period never spans two series. Running
aggregates are computed on a padded ``[groups, max_group_len]`` layout so that each period is
aggregated from its own first bar: the result for a row does not depend on how much history
precedes the period (the single-window observation builder gets bit-identical bars).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.core.market import CLOSE, HIGH, LOW, OPEN, VOLUME

NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 86_400 * 10**9
PERIODS = ("D", "W", "M", "H4")


def period_ids(ts_ns: np.ndarray, period: str) -> np.ndarray:
    """Calendar period of each timestamp (UTC): days, Monday-based weeks, months or 4-hour blocks
    (00:00, 04:00, ... UTC) since 1970."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    if period == "D":
        return ts_ns // NS_PER_DAY
    if period == "W":
        return (ts_ns // NS_PER_DAY + 3) // 7  # 1970-01-01 is a Thursday
    if period == "M":
        return ts_ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    if period == "H4":
        return ts_ns // (4 * NS_PER_HOUR)
    raise ValueError(f"period: expected one of {PERIODS}, got {period!r}")


@dataclass(frozen=True, eq=False)
class PartialBars:
    """Partial bars of one calendar period for every row.

    Attributes:
        ohlcv: float64 ``[R, 5]``: the row's period bar built from bars up to the row.
        group: int64 ``[R]``: global period number (increasing, never shared across series).
        last_row: int64 ``[G]``: row of each period's last bar (its completed bar).
        first_group: int64 ``[R]``: first period of the row's series.
    """

    ohlcv: np.ndarray
    group: np.ndarray
    last_row: np.ndarray
    first_group: np.ndarray


def series_index(offsets: np.ndarray) -> np.ndarray:
    """Series number of every row."""
    # int64; declared plainly because numpy's stubs type ``diff`` of an int64 array as timedelta64
    lengths: np.ndarray = np.diff(np.asarray(offsets, dtype=np.int64))
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def partial_bars(ts_ns: np.ndarray, ohlcv: np.ndarray, offsets: np.ndarray, period: str) -> PartialBars:
    """Causal partial bars of ``period`` for every row of every series."""
    n_rows = len(ts_ns)
    ids = period_ids(ts_ns, period)
    offsets = np.asarray(offsets, dtype=np.int64)
    new = np.ones(n_rows, dtype=bool)
    if n_rows:
        new[1:] = ids[1:] != ids[:-1]
    new[offsets[:-1][offsets[:-1] < n_rows]] = True  # a series always opens a new period
    group = np.cumsum(new, dtype=np.int64) - 1
    first_row = np.flatnonzero(new)
    n_groups = len(first_row)
    last_row = np.append(first_row[1:], n_rows) - 1
    pos = np.arange(n_rows, dtype=np.int64) - first_row[group]
    width = int(pos.max()) + 1 if n_rows else 1

    def running(values: np.ndarray, fill: float, accumulate) -> np.ndarray:
        grid = np.full((n_groups, width), fill, dtype=np.float64)
        grid[group, pos] = values
        return accumulate(grid, axis=1)[group, pos]

    out = np.empty((n_rows, 5), dtype=np.float64)
    out[:, OPEN] = ohlcv[first_row[group], OPEN]
    out[:, HIGH] = running(ohlcv[:, HIGH], -np.inf, np.maximum.accumulate)
    out[:, LOW] = running(ohlcv[:, LOW], np.inf, np.minimum.accumulate)
    out[:, CLOSE] = ohlcv[:, CLOSE]
    out[:, VOLUME] = running(ohlcv[:, VOLUME], 0.0, np.cumsum)
    first_group = group[offsets[:-1][series_index(offsets)]] if n_rows else group
    return PartialBars(out, group, last_row, first_group)


def window_rows(rows: np.ndarray, series_start: np.ndarray, window_bars: int,
                out: np.ndarray | None = None) -> np.ndarray:
    """``[n, window_bars]`` rows of the last bars up to each row, oldest first.

    Before the series start the oldest bar is repeated (edge padding), never a later one.
    """
    back = np.arange(window_bars - 1, -1, -1, dtype=np.int64)
    return np.maximum(rows[:, None] - back, series_start[rows][:, None], out=out)


def period_window_rows(rows: np.ndarray, bars: PartialBars, window_bars: int,
                       out: np.ndarray | None = None) -> np.ndarray:
    """``[n, window_bars]`` rows whose partial bars form the last periods up to each row.

    The newest slot is the row itself (the current, partial period); older slots are the last
    rows of completed periods. With fewer periods than slots the oldest completed period is
    repeated; in the very first period every slot is the row itself.
    """
    g = bars.group[rows]
    g0 = bars.first_group[rows]
    back = np.arange(window_bars - 1, 0, -1, dtype=np.int64)
    past = np.maximum(g[:, None] - back, g0[:, None])
    src = np.empty((len(rows), window_bars), dtype=np.int64) if out is None else out
    np.take(bars.last_row, past, out=src[:, :-1])
    src[:, -1] = rows
    first = g == g0
    src[first] = rows[first][:, None]
    return src


def align_to_calendar(ts_ns: np.ndarray, ref_ts_ns: np.ndarray, ref_ohlc: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Align a reference series (the market index) to the rows ``ts_ns``, causally.

    Returns ``(ohlc [R, 4] as O,H,L,C, covered [R])``: the reference bar with the same
    timestamp; a flat bar at the last known close where the reference has no bar; and, before
    the reference starts (``covered`` False), a flat bar at its first open. Rows that are not
    covered must not be observed: their value comes from a later bar.
    """
    ref_ts_ns = np.asarray(ref_ts_ns, dtype=np.int64)
    pos = np.searchsorted(ref_ts_ns, ts_ns, side="right") - 1
    covered = pos >= 0
    safe = np.maximum(pos, 0)
    exact = covered & (ref_ts_ns[safe] == ts_ns)
    src = ref_ohlc[safe, :4]
    flat = np.where(covered, src[:, CLOSE], ref_ohlc[0, OPEN])
    out = np.where(exact[:, None], src, flat[:, None])
    return np.ascontiguousarray(out, dtype=np.float64), covered

"""The one as-of join of the data layer: which reference row is in force at each query time.

Every join of a second series onto bars (index bars onto stock bars, funding events into the
bar that settles them, mark-price bars onto traded bars) is built on :func:`asof_positions`:
for a query time ``t`` the reference row is the **last one stamped at or before** ``t``, never a
later one, so nothing stamped after a bar can appear on it. The envs keep their own copy in
``envs.core.resample.align_to_calendar`` (envs import nothing from app); a test proves both agree.
"""

from __future__ import annotations

import numpy as np


def asof_positions(ref_ts_ns: np.ndarray, query_ts_ns: np.ndarray, *,
                   max_staleness_ns: int | None = None) -> np.ndarray:
    """Row of ``ref_ts_ns`` (sorted ascending) in force at each query time, ``-1`` where none.

    The row is the last one with ``ref_ts_ns[row] <= query``. With ``max_staleness_ns`` a row
    older than ``query - max_staleness_ns`` is not used either (``-1``): a stale value is worse
    than none.
    """
    ref = np.asarray(ref_ts_ns, dtype=np.int64)
    query = np.asarray(query_ts_ns, dtype=np.int64)
    if len(ref) > 1 and np.any(ref[1:] < ref[:-1]):
        raise ValueError("asof_positions: reference timestamps must be sorted ascending")
    pos = np.searchsorted(ref, query, side="right").astype(np.int64) - 1
    if max_staleness_ns is not None and len(ref):
        stale = (pos >= 0) & (query - ref[np.maximum(pos, 0)] > max_staleness_ns)
        pos[stale] = -1
    return pos


def exact_positions(ref_ts_ns: np.ndarray, query_ts_ns: np.ndarray) -> np.ndarray:
    """Row of ``ref_ts_ns`` stamped exactly at each query time, ``-1`` where there is none."""
    ref = np.asarray(ref_ts_ns, dtype=np.int64)
    pos = asof_positions(ref, query_ts_ns)
    hit = pos >= 0
    hit[hit] = ref[pos[hit]] == np.asarray(query_ts_ns, dtype=np.int64)[hit]
    return np.where(hit, pos, -1)


def events_in_bars(bar_ts_ns: np.ndarray, bar_ns: int, event_ts_ns: np.ndarray) -> np.ndarray:
    """Bar whose interval ``[bar_ts, bar_ts + bar_ns)`` holds each event, ``-1`` where none.

    The event is settled at the end of that bar, so it is known by the bar's close and never
    earlier. Events before the first bar, after the last or inside a data gap get ``-1``.
    """
    bars = np.asarray(bar_ts_ns, dtype=np.int64)
    events = np.asarray(event_ts_ns, dtype=np.int64)
    pos = asof_positions(bars, events)
    inside = pos >= 0
    inside[inside] = events[inside] < bars[pos[inside]] + bar_ns
    return np.where(inside, pos, -1)

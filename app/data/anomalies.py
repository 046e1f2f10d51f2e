"""Price anomalies that pass the row checks: one-bar spikes and unadjusted splits.

* **Spike** (an error: the data is wrong). A bar whose open or close is more than
  ``SPIKE_RATIO`` times away from the previous close (either way) while the next close is back
  within ``REVERT_RATIO`` of that previous close: a ×10 typo such as EIX on 2012-03-08 in the
  stooq data (close 3.6366 between closes of 36.61 and 36.48). No market moves ×5 and back in
  two bars; a vendor's decimal slip does. Repaired by dropping the bar
  (:func:`app.data.repair.repair`, ``drop_spikes``).
* **Probable split** (a warning: legal data, probably unadjusted). The open is close to
  ``1/k`` or ``k`` times the previous close (``k`` in :data:`SPLIT_FACTORS`) and the next closes
  stay at the new level (no reversal); a step that undoes the previous bar's (back from a spike
  or a one-day bad level) is not a split. Adjusted data has no such step; see
  :mod:`app.data.adjust` for files that carry their own adjustment columns.

Both work per symbol on rows sorted by time and report the input's row numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.data.schema import ts_ns

SPIKE_RATIO = 5.0
REVERT_RATIO = 1.25
#: Split (and reverse split) factors looked for: 2:1, 3:1, 4:1, 5:1, 10:1. Not 3:2: on the
#: stooq data (already adjusted) a one-third step flagged dozens of real earnings-day drops.
SPLIT_FACTORS: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 10.0)
SPLIT_TOLERANCE = 0.02
PERSIST_BARS = 5


def _neighbours(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, has_prev, has_next)``: rows sorted by (symbol, time), and whether the sorted row
    has a previous / next row of the same symbol."""
    symbols = pd.factorize(frame["symbol"])[0]
    order = np.lexsort((ts_ns(frame["timestamp"]), symbols))
    sym = symbols[order]
    has_prev = np.zeros(len(order), dtype=bool)
    has_prev[1:] = sym[1:] == sym[:-1]
    has_next = np.zeros(len(order), dtype=bool)
    has_next[:-1] = has_prev[1:]
    return order, has_prev, has_next


def find_spikes(frame: pd.DataFrame, spike_ratio: float = SPIKE_RATIO,
                revert_ratio: float = REVERT_RATIO) -> np.ndarray:
    """Input rows (sorted) that are one-bar spikes which revert; see the module docstring."""
    if len(frame) < 3:
        return np.zeros(0, dtype=np.int64)
    order, has_prev, has_next = _neighbours(frame)
    spike = _spikes_sorted(frame, order, has_prev, has_next, spike_ratio, revert_ratio)
    return np.sort(order[spike])


def _spikes_sorted(frame: pd.DataFrame, order: np.ndarray, has_prev: np.ndarray, has_next: np.ndarray,
                   spike_ratio: float = SPIKE_RATIO, revert_ratio: float = REVERT_RATIO) -> np.ndarray:
    close = frame["close"].to_numpy(np.float64)[order]
    opens = frame["open"].to_numpy(np.float64)[order]
    prev = np.where(has_prev, np.roll(close, 1), np.nan)
    nxt = np.where(has_next, np.roll(close, -1), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        away = np.maximum(np.abs(np.log(close / prev)), np.abs(np.log(opens / prev)))
        back = np.abs(np.log(nxt / prev))
        return has_prev & has_next & (away > np.log(spike_ratio)) & (back < np.log(revert_ratio))


def find_probable_splits(frame: pd.DataFrame, factors: tuple[float, ...] = SPLIT_FACTORS,
                         tolerance: float = SPLIT_TOLERANCE) -> list[tuple[int, float]]:
    """``(input row, ratio)`` of bars that open a split-sized step which persists.

    ``ratio`` is the matched ``open / previous close`` (0.5 for a 2:1 split, 2.0 for a 1:2
    reverse split). The step persists when the median of this and the next closes (up to
    :data:`PERSIST_BARS`) stays nearer the new level than the old one.
    """
    if len(frame) < 2:
        return []
    order, has_prev, _ = _neighbours(frame)
    close = frame["close"].to_numpy(np.float64)[order]
    opens = frame["open"].to_numpy(np.float64)[order]
    symbols = frame["symbol"].to_numpy()[order]
    prev = np.where(has_prev, np.roll(close, 1), np.nan)
    has_prev2 = has_prev & np.roll(has_prev, 1)
    ratios = np.array([r for f in factors for r in (1.0 / f, f)])
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.log(opens / prev)
        dist = np.abs(step[:, None] - np.log(ratios)[None, :])
        # the step undoes the previous bar's (a spike, or a one-day bad level): no split
        undoes = has_prev2 & (np.abs(np.log(opens / np.roll(close, 2))) < np.log(REVERT_RATIO))
    near = np.isfinite(dist) & (dist < np.log1p(tolerance)) & ~undoes[:, None]
    found = []
    for i in np.flatnonzero(near.any(axis=1)):
        ratio = float(ratios[int(np.argmin(np.where(near[i], dist[i], np.inf)))])
        end = i + 1
        while end < min(len(close), i + PERSIST_BARS) and symbols[end] == symbols[i]:
            end += 1
        level = np.log(np.median(close[i:end]) / prev[i])
        if abs(level - np.log(ratio)) < abs(level):
            found.append((int(order[i]), ratio))
    return sorted(found)

"""Window primitives of the observation builder: series padded once, windows read as blocks.

Each series is stored once with ``w - 1`` copies of its first entry in front of it (the
builder's edge padding: before a series has ``w`` bars its oldest one is repeated), so the
window ending at ANY row is ``w`` consecutive rows of the padded array (:func:`pad_series`,
:func:`padded_start`). A read-only sliding view (:func:`sliding`) makes a window one row of a
``[.., w, ...]`` view: rows anywhere are gathered with one block copy per window, consecutive
rows of one series are a slice of it, with no copy (:func:`gather`). Calendar periods are
windows of completed periods plus the row's partial one (:class:`PeriodWindows`). The kernels
turn windows into the observation's float32 fields (:func:`log_ratio`, :func:`relative_volume`,
:func:`period_log_ratio`, :func:`period_relative_volume`); :mod:`envs.core.features` uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import as_strided

from envs.core.market import VOLUME
from envs.core.resample import PartialBars


def pad_series(values: np.ndarray, offsets: np.ndarray, pad: int) -> np.ndarray:
    """``values`` (``[R, ...]``, CSR series ``offsets``) with ``pad`` copies of each non-empty
    series' first row in front of it: ``[R + pad * n_nonempty, ...]``, C-contiguous."""
    values = np.asarray(values, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    firsts = offsets[:-1][np.diff(offsets) > 0]
    src = np.insert(np.arange(len(values), dtype=np.int64), np.repeat(firsts, pad), np.repeat(firsts, pad))
    return np.take(np.ascontiguousarray(values), src, axis=0)


def padded_start(offsets: np.ndarray, pad: int) -> np.ndarray:
    """int64 ``[R]``: the padded row (:func:`pad_series`) of the oldest slot of the ``pad + 1``
    slot window ending at each row (the row itself is at ``start + pad``)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    # series k (counting non-empty ones from 0) is shifted right by pad * (k + 1) in the padded array
    shift = pad * np.cumsum(lengths > 0)
    return np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(shift - pad, lengths)


def sliding(padded: np.ndarray, width: int) -> np.ndarray:
    """Read-only view ``[len - width + 1, width, ...]`` of a C-contiguous array: row ``s`` is
    ``padded[s:s + width]`` (no copy)."""
    if not padded.flags.c_contiguous:
        raise ValueError("sliding: the array must be C-contiguous")
    n = max(len(padded) - width + 1, 0)
    return as_strided(padded, (n, width, *padded.shape[1:]), (padded.strides[0], *padded.strides),
                      writeable=False)


def gather(view: np.ndarray, start: np.ndarray, run: bool) -> np.ndarray:
    """Rows ``start`` of a sliding view: a slice (a read-only view) if ``run`` (``start`` is
    consecutive: ``start[0], start[0] + 1, ...``), else a fresh C-contiguous copy."""
    if run:
        s0 = int(start[0])
        return view[s0:s0 + len(start)]
    return view[start]


def is_run(start: np.ndarray) -> bool:
    """Whether ``start`` is ``start[0] + arange(n)`` (consecutive rows of one series), n > 1."""
    n = len(start)
    return n > 1 and int(start[-1]) - int(start[0]) == n - 1 and bool((np.diff(start) == 1).all())


class CachedViews:
    """Sliding views of a frozen dataclass's padded arrays, made on first use and never
    pickled (a pickled strided view would be a copy ``width`` times its array's size)."""

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_view")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True, eq=False)
class PeriodWindows(CachedViews):
    """One calendar period's arrays: a row's window is the ``slots`` last COMPLETED periods
    before its own (edge padded like the bars) plus its own partial period (see
    :mod:`envs.core.resample`).

    Attributes:
        slots: completed periods per window (``window_bars - 1``).
        completed_hloc: float64 ``[G', 4]`` log HLOC of every completed period (the partial
            bar at its last row), each series' run of periods padded (:func:`pad_series`).
        completed_volume: float64 ``[G']``, the same periods' volumes.
        start: int64 ``[R]``: row of :attr:`hloc_view` / :attr:`volume_view` holding the
            ``slots`` completed periods before the row's own.
        partial_hloc: float64 ``[R, 4]`` log HLOC of the row's partial period.
        partial_volume: float64 ``[R]``.
        first: bool ``[R]``: the row is in its series' first period: every slot of its window
            is its own partial bar (nothing is completed yet).
        volume_mean: float64 ``[R]``: mean volume of the row's window (:func:`window_means`);
            None where the period's volume is not observed.
    """

    slots: int
    completed_hloc: np.ndarray
    completed_volume: np.ndarray
    start: np.ndarray
    partial_hloc: np.ndarray
    partial_volume: np.ndarray
    first: np.ndarray
    volume_mean: np.ndarray | None = None

    @cached_property
    def hloc_view(self) -> np.ndarray:
        return sliding(self.completed_hloc, self.slots)

    @cached_property
    def volume_view(self) -> np.ndarray:
        return sliding(self.completed_volume, self.slots)

    def volume_windows(self, rows: np.ndarray) -> np.ndarray:
        """float64 ``[n, slots + 1]`` C-contiguous volume windows of ``rows`` (a new array)."""
        v = np.empty((len(rows), self.slots + 1))
        v[:, :-1] = self.volume_view[self.start[rows]]
        v[:, -1] = self.partial_volume[rows]
        first = self.first[rows]
        v[first] = v[first, -1:]
        return v


def period_windows(bars: PartialBars, log_hloc: np.ndarray, offsets: np.ndarray, window_bars: int,
                   with_volume: bool) -> PeriodWindows:
    """:class:`PeriodWindows` of one period's partial bars (``log_hloc`` ``[R, 4]`` their log
    HLOC) on CSR series ``offsets``; ``with_volume``: with the windows' mean volumes."""
    slots = window_bars - 1
    pad = max(slots - 1, 0)
    offsets = np.asarray(offsets, dtype=np.int64)
    n_rows = len(bars.group)
    # each non-empty series owns the periods group[its first row] .. group[its last row]
    group_offsets = np.append(bars.group[offsets[:-1][np.diff(offsets) > 0]], len(bars.last_row)).astype(np.int64)
    # the completed window before a row of period g > g0 (its series' first) ends at g - 1;
    # in the first period it is never read (every slot is the partial bar)
    group_start = padded_start(group_offsets, pad)
    first = bars.group == bars.first_group
    start = group_start[np.where(first, bars.group, bars.group - 1)] if n_rows else np.zeros(0, np.int64)
    pw = PeriodWindows(slots, pad_series(log_hloc[bars.last_row], group_offsets, pad),
                       pad_series(bars.ohlcv[bars.last_row, VOLUME], group_offsets, pad),
                       np.ascontiguousarray(start, dtype=np.int64), np.ascontiguousarray(log_hloc),
                       np.ascontiguousarray(bars.ohlcv[:, VOLUME]), np.ascontiguousarray(first))
    if with_volume:
        object.__setattr__(pw, "volume_mean", window_means(pw.volume_windows, n_rows))
    return pw


def window_means(windows: Callable[[np.ndarray], np.ndarray], n_rows: int, chunk: int = 1 << 15) -> np.ndarray:
    """float64 ``[R]``: each row's window mean exactly as ``windows(rows).mean(axis=1)``
    computes it (``windows`` returns C-contiguous ``[n, w]``), with ``+inf`` for a mean of 0
    (a window of zeros): ``v / inf`` is the 0 of the same sign that ``v`` already is."""
    out = np.empty(n_rows)
    for lo in range(0, n_rows, chunk):
        v = windows(np.arange(lo, min(lo + chunk, n_rows)))
        out[lo:lo + len(v)] = np.add.reduce(v, axis=1) / v.shape[1]
    out[out == 0.0] = np.inf
    return out


def log_ratio(windows: np.ndarray, ref: np.ndarray, clip: float | None, out: np.ndarray | None,
              tmp: np.ndarray | None = None) -> np.ndarray:
    """float32 ``clip(windows - ref, -clip, clip)`` of windows ``[n, ...]`` against one float64
    reference per row (``clip`` None: every value is known to be within the bound, the clip
    is skipped). Written into ``out`` if given, else a new array. The float64 work happens in
    ``windows`` if it is writable (a fresh gather), else in ``tmp`` (or a new array)."""
    work = windows if windows.flags.writeable else (np.empty(windows.shape) if tmp is None else tmp)
    np.subtract(windows, ref.reshape(-1, *(1,) * (windows.ndim - 1)), out=work)
    return to_float32(work, clip, out)


def to_float32(work: np.ndarray, clip: float | None, out: np.ndarray | None) -> np.ndarray:
    """float32 of float64 log ratios ``work`` clipped to ``+-clip`` in place (None: no clip),
    written into ``out`` if given, else a new array."""
    if clip is not None:
        np.clip(work, -clip, clip, out=work)
    if out is None:
        return work.astype(np.float32)
    out[...] = work
    return out


def relative_volume(windows: np.ndarray, mean: np.ndarray, out: np.ndarray | None,
                    tmp: np.ndarray | None = None) -> np.ndarray:
    """float32 volume windows ``[n, w]`` over their rows' window ``mean`` (:func:`window_means`),
    bounded by ``w``: ``v / mean`` (0 for a window of zeros), bounded in float32 after the cast,
    which equals casting the float64 bound (rounding is monotone and ``w`` is exact in float32);
    ``v >= 0`` needs no lower bound. Work arrays as in :func:`log_ratio`."""
    work = windows if windows.flags.writeable else (np.empty(windows.shape) if tmp is None else tmp)
    np.divide(windows, mean[:, None], out=work)
    if out is None:
        out = work.astype(np.float32)
    else:
        out[...] = work
    np.minimum(out, np.float32(windows.shape[1]), out=out)
    return out


def completed(view: np.ndarray, start: np.ndarray, memo: dict | None, key: str) -> tuple[np.ndarray, bool]:
    """``(windows, fresh)``: the completed-period windows ``view[start]`` (float64). With a
    ``memo`` (the caller's scratch dict) they are kept by position between calls and only the
    positions whose ``start`` changed are gathered again: an env's completed periods change
    once a period (a vector face steps every env one bar a call). ``fresh``: a new array the
    caller may overwrite (else it must not)."""
    if memo is None:
        return view[start], True
    of, known, windows = memo.get(key, (None, None, None))
    if of is not view or known is None or windows is None or known.shape != start.shape:
        known = np.full(start.shape, -1, dtype=np.int64)
        windows = np.empty((len(start), *view.shape[1:]))
        memo[key] = (view, known, windows)  # the view: a scratch dict reused on other arrays starts over
    stale = np.flatnonzero(start != known)
    if len(stale):
        windows[stale] = view[start[stale]]
        known[stale] = start[stale]
    return windows, False


def period_log_ratio(pw: PeriodWindows, rows: np.ndarray, first: np.ndarray | None, ref: np.ndarray,
                      clip: float | None, out: np.ndarray | None, memo: dict | None = None,
                      key: str = "") -> np.ndarray:
    """float32 log ratios ``[n, w, 4]`` of the rows' period windows to ``ref`` (see
    :func:`log_ratio`): completed periods, then the partial one (``first``: rows whose every
    slot is the partial period; None: no such row; ``memo``: see :func:`completed`)."""
    windows, fresh = completed(pw.hloc_view, pw.start[rows], memo, key)
    done = windows if fresh else np.empty(windows.shape)
    np.subtract(windows, ref[:, None, None], out=done)
    now = pw.partial_hloc[rows]
    np.subtract(now, ref[:, None], out=now)
    if clip is not None:
        np.clip(done, -clip, clip, out=done)
        np.clip(now, -clip, clip, out=now)
    if out is None:
        out = np.empty((len(rows), pw.slots + 1, 4), dtype=np.float32)
    out[:, :-1] = done
    out[:, -1] = now
    if first is not None:  # nothing completed yet: every slot is the partial period
        out[first] = out[first, -1:]
    return out


def period_relative_volume(pw: PeriodWindows, rows: np.ndarray, first: np.ndarray | None,
                            out: np.ndarray | None, memo: dict | None = None, key: str = "") -> np.ndarray:
    """:func:`relative_volume` of the rows' period volume windows (``first``, ``memo`` as above)."""
    assert pw.volume_mean is not None
    mean = pw.volume_mean[rows]
    windows, fresh = completed(pw.volume_view, pw.start[rows], memo, key)
    done = windows if fresh else np.empty(windows.shape)
    np.divide(windows, mean[:, None], out=done)
    if out is None:
        out = np.empty((len(rows), pw.slots + 1), dtype=np.float32)
    out[:, :-1] = done
    out[:, -1] = pw.partial_volume[rows] / mean
    if first is not None:
        out[first] = out[first, -1:]
    np.minimum(out, np.float32(pw.slots + 1), out=out)
    return out

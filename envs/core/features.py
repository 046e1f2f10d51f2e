"""Per-row feature arrays and the batched window gather of THE observation builder.

:func:`market_observation` (re-exported by :mod:`envs.core.observation`, which documents the
layout) builds, at each observed row, the windows of the last ``w`` bars (or calendar periods)
of the row's series. Gathered naively (an index array ``[n, w]`` and ``np.take``), every window
is ``w`` small copies plus the index arithmetic. Here each series is stored once with ``w - 1``
copies of its first entry in front of it (the builder's edge padding: before a series has ``w``
bars its oldest one is repeated), so the window ending at ANY row is ``w`` consecutive rows of
the padded array. A read-only sliding view (:func:`sliding`) makes a window one row of a
``[.., w, ...]`` view: rows anywhere are gathered with one block copy per window
(``view[start]``), consecutive rows of one series (a single env's next bars, the precompute) are
a plain slice of it, with no copy at all (:func:`gather`). What does not depend on the observed
row is computed once in :func:`prepare_features`: each window's mean volume
(:func:`window_means`), the clip of funding, and whether a series' prices span less than the
log-ratio clip (then the clip is skipped: a no-op). The floats are those of the plain gather,
bit for bit (``tests/unit/envs/test_layout.py`` keeps that gather as the reference).

Every array a per-step gather reads is C-contiguous. A row gather from a Fortran-ordered array
(``np.take(axis=0)``) copies the WHOLE array first: on the 93-stock sample that was 2-7 ms per
step instead of microseconds (issue 12); :meth:`FeatureBase.gathered_arrays` lists them for the
test that checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import as_strided

from envs.core.market import CLOSE, HIGH, LOW, OPEN, VOLUME
from envs.core.resample import PartialBars, align_to_calendar, partial_bars


class ObservationSpec(Protocol):
    """What the gather reads of an :class:`envs.core.observation.ObservationSpec` (a protocol:
    this module sits below the builder's API and does not import it)."""

    @property
    def window_bars(self) -> int: ...
    @property
    def bar_name(self) -> str: ...
    @property
    def periods(self) -> tuple[str, ...]: ...
    @property
    def volume_periods(self) -> tuple[str, ...]: ...
    @property
    def with_index(self) -> bool: ...
    @property
    def with_funding(self) -> bool: ...
    @property
    def clip_log_ratio(self) -> float: ...
    @property
    def funding_clip_bps(self) -> float: ...
    def fields(self) -> dict[str, tuple[tuple[int, ...], float, float]]: ...


HLOC = (HIGH, LOW, OPEN, CLOSE)
CLOSE_OF_HLOC = 3  # the close's column in an HLOC array
PERIOD_NAMES = {"D": "daily", "W": "weekly", "M": "monthly", "H4": "4h"}
#: batched gathers of at least this many rows read the index windows from a shared table
INDEX_TABLE_ROWS = 8


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


class _Views:
    """Sliding views of a frozen dataclass's padded arrays, made on first use and never
    pickled (a pickled strided view would be a copy ``width`` times its array's size)."""

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_view")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True, eq=False)
class PeriodWindows(_Views):
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


def _period_log_ratio(pw: PeriodWindows, rows: np.ndarray, first: np.ndarray | None, ref: np.ndarray,
                      clip: float | None, out: np.ndarray | None) -> np.ndarray:
    """float32 log ratios ``[n, w, 4]`` of the rows' period windows to ``ref`` (see
    :func:`log_ratio`): completed periods, then the partial one (``first``: rows whose every
    slot is the partial period; None: no such row)."""
    done = pw.hloc_view[pw.start[rows]]  # a fresh [n, w - 1, 4]
    np.subtract(done, ref[:, None, None], out=done)
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


def _period_relative_volume(pw: PeriodWindows, rows: np.ndarray, first: np.ndarray | None,
                            out: np.ndarray | None) -> np.ndarray:
    """:func:`relative_volume` of the rows' period volume windows (``first`` as above)."""
    assert pw.volume_mean is not None
    mean = pw.volume_mean[rows]
    done = pw.volume_view[pw.start[rows]]  # a fresh [n, w - 1]
    np.divide(done, mean[:, None], out=done)
    if out is None:
        out = np.empty((len(rows), pw.slots + 1), dtype=np.float32)
    out[:, :-1] = done
    out[:, -1] = pw.partial_volume[rows] / mean
    if first is not None:
        out[first] = out[first, -1:]
    np.minimum(out, np.float32(pw.slots + 1), out=out)
    return out


@dataclass(frozen=True, eq=False)
class FeatureBase(_Views):
    """Per-row arrays (O(rows) memory) from which any row's observation is gathered.

    The bar-calendar arrays (``bar_*``, ``index_log_hloc``, ``funding_bps``) are padded per
    series and read through sliding views (module docstring): the window ending at row ``r``
    is row ``start[r]`` of each view. Every array a gather reads is C-contiguous
    (:meth:`gathered_arrays`; a Fortran-ordered one makes every per-step gather copy it whole).
    """

    spec: ObservationSpec
    start: np.ndarray             # int64 [R]: row of the sliding views holding the row's window
    log_close: np.ndarray         # float64 [R]: the reference of the bar and period log ratios
    bar_log_hloc: np.ndarray      # float64 [R', 4] padded (pad_series)
    bar_volume: np.ndarray        # float64 [R'] padded
    bar_volume_mean: np.ndarray   # float64 [R]: each row's volume window mean (window_means)
    periods: dict[str, PeriodWindows]
    index_log_hloc: np.ndarray | None   # float64 [R', 4] padded, the index on the rows' calendar
    index_log_close: np.ndarray | None  # float64 [R]: the reference of the index log ratios
    index_covered: np.ndarray           # bool [R]: the index had started at the row
    clip_free: np.ndarray               # bool [R]: no log ratio of the row's observation reaches the clip
    funding_bps: np.ndarray | None = None  # float64 [R'] padded: funding settled at the row, bps, clipped
    # the index on its own calendar (float64 [T, 4] log HLOC) and, per row, the index bar k whose
    # own window IS the row's index window (the series traded on every index day of it), else -1
    index_own_log_hloc: np.ndarray | None = None
    index_k: np.ndarray | None = None

    @cached_property
    def hloc_view(self) -> np.ndarray:
        return sliding(self.bar_log_hloc, self.spec.window_bars)

    @cached_property
    def volume_view(self) -> np.ndarray:
        return sliding(self.bar_volume, self.spec.window_bars)

    @cached_property
    def index_view(self) -> np.ndarray | None:
        return None if self.index_log_hloc is None else sliding(self.index_log_hloc, self.spec.window_bars)

    @cached_property
    def index_table(self) -> np.ndarray:
        """float32 ``[T - w + 1, w, 4]``: the index window observation at each index bar ``k >=
        w - 1`` (row ``k - w + 1``), shared by every row whose ``index_k`` is ``k``. Made on the
        first batched gather (never for a single Serve observation)."""
        assert self.index_own_log_hloc is not None
        own, w = self.index_own_log_hloc, self.spec.window_bars
        return log_ratio(sliding(own, w), np.ascontiguousarray(own[w - 1:, CLOSE_OF_HLOC]),
                         self.spec.clip_log_ratio, None)

    @cached_property
    def funding_view(self) -> np.ndarray | None:
        return None if self.funding_bps is None else sliding(self.funding_bps, self.spec.window_bars)

    @cached_property
    def keys(self) -> tuple[tuple[str, ...], str, str, tuple[tuple[str, str, bool], ...]]:
        """``(field order, bar hloc key, bar volume key, per period (hloc key, volume key, observed))``."""
        spec = self.spec
        names = [(f"{PERIOD_NAMES[p]}_hloc", f"{PERIOD_NAMES[p]}_volume", p in spec.volume_periods)
                 for p in spec.periods]
        return tuple(spec.fields()), f"{spec.bar_name}_hloc", f"{spec.bar_name}_volume", tuple(names)

    def gathered_arrays(self) -> dict[str, np.ndarray]:
        """Every array a per-step gather reads, by name (all C-contiguous)."""
        out = {k: getattr(self, k) for k in ("start", "log_close", "bar_log_hloc", "bar_volume", "bar_volume_mean",
                                             "index_log_hloc", "index_log_close", "clip_free", "funding_bps",
                                             "index_own_log_hloc", "index_k")}
        for p, pw in self.periods.items():
            out |= {f"periods[{p}].{k}": getattr(pw, k) for k in ("completed_hloc", "completed_volume", "start",
                                                                  "partial_hloc", "partial_volume", "first",
                                                                  "volume_mean")}
        return {k: v for k, v in out.items() if v is not None}

    def nbytes(self) -> int:
        """Bytes held by the arrays (the gathered path's memory, besides the market's own)."""
        return sum(a.nbytes for a in (*self.gathered_arrays().values(), self.index_covered))


def index_rows(ts_ns: np.ndarray, offsets: np.ndarray, index_ts_ns: np.ndarray, window_bars: int) -> np.ndarray:
    """int64 ``[R]``: for each row, the index bar ``k`` such that the row's window of
    ``window_bars`` bars (within its series, no edge padding) has exactly the index's bars
    ``k - w + 1 .. k`` as timestamps (so the index aligned to the series IS the index's own
    window there), else -1."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    index_ts_ns = np.asarray(index_ts_ns, dtype=np.int64)
    n_rows, w = len(ts_ns), window_bars
    pos = np.searchsorted(index_ts_ns, ts_ns, "right") - 1
    exact = (pos >= 0) & (index_ts_ns[np.maximum(pos, 0)] == ts_ns) if len(index_ts_ns) else np.zeros(n_rows, bool)
    step = np.zeros(n_rows, dtype=bool)  # row j follows row j - 1 on the index calendar, same series
    step[1:] = exact[1:] & exact[:-1] & (pos[1:] == pos[:-1] + 1)
    step[offsets[:-1][offsets[:-1] < n_rows]] = False
    ok = exact.copy()
    if w > 1:
        ok[:w - 1] = False
        steps = np.cumsum(step)
        ok[w - 1:] &= steps[w - 1:] - steps[:n_rows - w + 1] == w - 1
    return np.where(ok, pos, -1).astype(np.int64)


def _series_range(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row: max - min of ``values`` (``[R, k]``) over the row's whole series."""
    lengths = np.diff(offsets)
    starts = offsets[:-1][lengths > 0]
    if not len(starts):
        return np.zeros(0)
    hi, lo = values[:, 0].copy(), values[:, 0].copy()
    for c in range(1, values.shape[1]):  # column by column: much faster than max(axis=1) on [R, 4]
        np.maximum(hi, values[:, c], out=hi)
        np.minimum(lo, values[:, c], out=lo)
    hi, lo = np.maximum.reduceat(hi, starts), np.minimum.reduceat(lo, starts)
    return np.repeat(hi - lo, lengths[lengths > 0])


def prepare_features(ts_ns: np.ndarray, ohlcv: np.ndarray, offsets: np.ndarray, spec: ObservationSpec,
                     index_ts_ns: np.ndarray | None = None, index_ohlc: np.ndarray | None = None,
                     funding_rate: np.ndarray | None = None) -> FeatureBase:
    """Per-row base arrays of a CSR market (validated upstream: finite, positive prices).

    ``index_ohlc`` has O,H,L,C(,V) columns on its own timestamps ``index_ts_ns``; it is aligned
    causally to every series' calendar. Without an index, the index is flat. ``funding_rate``
    (``[R]``, settled at each row; used when ``spec.with_funding``) defaults to 0.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    ohlcv = np.ascontiguousarray(ohlcv, dtype=np.float64)
    n_rows, w, pad = len(ts_ns), spec.window_bars, spec.window_bars - 1
    log_hloc = np.ascontiguousarray(np.log(ohlcv[:, :4])[:, HLOC])
    periods = {p: period_windows(bars, np.ascontiguousarray(np.log(bars.ohlcv[:, HLOC])), offsets, w,
                                 p in spec.volume_periods)
               for p, bars in ((p, partial_bars(ts_ns, ohlcv, offsets, p)) for p in spec.periods)}
    index_log_hloc, covered, index_own, index_k = None, np.ones(n_rows, dtype=bool), None, None
    span = _series_range(log_hloc, offsets)  # every bar and period price lies within its series' range
    if spec.with_index:
        if index_ohlc is None:
            index_log_hloc = np.zeros((n_rows, 4))
        elif index_ts_ns is None:
            raise ValueError("index_ts_ns: required with index_ohlc")
        else:
            index_ohlc = np.asarray(index_ohlc, dtype=np.float64)
            aligned, covered = align_to_calendar(ts_ns, index_ts_ns, index_ohlc)
            index_log_hloc = np.ascontiguousarray(np.log(aligned[:, HLOC]))
            index_own = np.ascontiguousarray(np.log(index_ohlc[:, HLOC]))
            if len(index_ts_ns) >= w:  # else no index bar has a window of its own
                index_k = index_rows(ts_ns, offsets, index_ts_ns, w)
        span = np.maximum(span, _series_range(index_log_hloc, offsets))
    funding = None
    if spec.with_funding:
        funding = np.zeros(n_rows) if funding_rate is None else np.asarray(funding_rate, np.float64) * 1e4
        funding = pad_series(np.clip(funding, -spec.funding_clip_bps, spec.funding_clip_bps), offsets, pad)
    start = padded_start(offsets, pad)
    volume = pad_series(ohlcv[:, VOLUME], offsets, pad)
    volume_view = sliding(volume, w)
    return FeatureBase(
        spec, start, np.ascontiguousarray(log_hloc[:, CLOSE_OF_HLOC]), pad_series(log_hloc, offsets, pad), volume,
        window_means(lambda rows: volume_view[start[rows]], n_rows), periods,
        None if index_log_hloc is None else pad_series(index_log_hloc, offsets, pad),
        None if index_log_hloc is None else np.ascontiguousarray(index_log_hloc[:, CLOSE_OF_HLOC]),
        covered, np.ascontiguousarray(span <= spec.clip_log_ratio), funding, index_own, index_k)


def _buffer(scratch: dict | None, key: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray | None:
    """A reusable work array from the caller's ``scratch`` dict (None: numpy allocates)."""
    if scratch is None:
        return None
    buf = scratch.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = scratch[key] = np.empty(shape, dtype=dtype)
    return buf


def _index_log_ratio(base: FeatureBase, rows: np.ndarray, start: np.ndarray, clip: float | None,
                     out: np.ndarray | None) -> np.ndarray:
    """``index_hloc`` of ``rows`` from :attr:`FeatureBase.index_table` where the row's index
    window is the index's own (the same floats: the same log prices, the same arithmetic), the
    rest computed (series with a missing day in the window, or on another calendar)."""
    view = base.index_view
    assert base.index_k is not None and base.index_log_close is not None and view is not None
    k = base.index_k[rows]
    # mode="clip": rows without a table row (k = -1) read row 0, then get their own windows
    out = np.take(base.index_table, k - (base.spec.window_bars - 1), axis=0, out=out, mode="clip")
    own = k < 0
    if own.any():
        bad = np.flatnonzero(own)
        out[bad] = log_ratio(view[start[bad]], base.index_log_close[rows[bad]], clip, None)
    return out


def market_observation(base: FeatureBase, rows: np.ndarray, out: dict[str, np.ndarray] | None = None,
                       scratch: dict | None = None) -> dict[str, np.ndarray]:
    """Market part of the observation at each of ``rows`` (int array ``[n]``), batched ``[n, ...]``.

    ``out`` (float32 arrays to fill, e.g. views of one block) and ``scratch`` (a dict the caller
    keeps between calls for float64 work arrays) avoid allocations; results are the same. Rows
    anywhere cost one block copy per window; consecutive rows of one series (``r, r + 1, ...``)
    are read in place (module docstring).
    """
    rows = np.asarray(rows, dtype=np.int64)
    n, w = len(rows), base.spec.window_bars
    dst = out if out is not None else {}
    order, hloc_key, volume_key, period_keys = base.keys
    start = base.start[rows]
    run = is_run(start)
    clip = None if base.clip_free[rows].all() else base.spec.clip_log_ratio
    log_close = base.log_close[rows]
    tmp = _buffer(scratch, "hloc", (n, w, 4)) if run else None  # fancy gathers are worked on in place
    result = {hloc_key: log_ratio(gather(base.hloc_view, start, run), log_close, clip, dst.get(hloc_key), tmp)}
    if base.index_view is not None and base.index_log_close is not None:
        if base.index_k is not None and n >= INDEX_TABLE_ROWS:
            result["index_hloc"] = _index_log_ratio(base, rows, start, clip, dst.get("index_hloc"))
        else:
            result["index_hloc"] = log_ratio(gather(base.index_view, start, run), base.index_log_close[rows], clip,
                                             dst.get("index_hloc"), tmp)
    result[volume_key] = relative_volume(gather(base.volume_view, start, run), base.bar_volume_mean[rows],
                                         dst.get(volume_key), _buffer(scratch, "volume", (n, w)) if run else None)
    if base.funding_view is not None:  # clipped once in prepare_features
        funding = gather(base.funding_view, start, run)
        if dst.get("funding_bps") is None:
            result["funding_bps"] = funding.astype(np.float32)
        else:
            dst["funding_bps"][...] = funding
            result["funding_bps"] = dst["funding_bps"]
    for pw, (key, vkey, with_volume) in zip(base.periods.values(), period_keys, strict=True):
        first = pw.first[rows]
        first = first if first.any() else None
        result[key] = _period_log_ratio(pw, rows, first, log_close, clip, dst.get(key))
        if with_volume:
            result[vkey] = _period_relative_volume(pw, rows, first, dst.get(vkey))
    return {k: result[k] for k in order if k in result}  # the spec's key order

"""Per-row feature arrays and the batched gather of THE observation builder.

:func:`prepare_features` and :func:`market_observation` (re-exported by
:mod:`envs.core.observation`, which documents the observation's layout) build, at each observed
row, the windows of the last ``w`` bars (or calendar periods) of the row's series. Gathered
naively (an index array ``[n, w]`` and ``np.take``), every window is ``w`` small copies plus the
index arithmetic; here every series is padded once so that a window is one block of a sliding
view (:mod:`envs.core.windows`): one copy per window for rows anywhere, none for consecutive
rows of one series (a single env's next bars, the precompute). What does not depend on the
observed row is computed once: each window's mean volume, the clip of funding, whether a
series' prices span less than the log-ratio clip (the clip is then skipped: a no-op), and the
index's own windows (:attr:`FeatureBase.index_table`: a series that traded on every index day of
a window shares the index's window). A kept ``scratch`` dict also remembers, by position, the
windows of completed periods (they change once a period). The floats are those of the plain
gather, bit for bit (``tests/unit/envs/test_layout.py`` keeps that gather as the reference).

Every array a per-step gather reads is C-contiguous (:meth:`FeatureBase.gathered_arrays`). A row
gather from a Fortran-ordered array (``np.take(axis=0)``) copies the WHOLE array first: on the
93-stock sample that was 2-7 ms per step instead of microseconds (issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from envs.core.market import CLOSE, HIGH, LOW, OPEN, VOLUME
from envs.core.resample import align_to_calendar, partial_bars
from envs.core.windows import (
    CachedViews,
    PeriodWindows,
    gather,
    is_run,
    log_ratio,
    pad_series,
    padded_start,
    period_log_ratio,
    period_relative_volume,
    period_windows,
    relative_volume,
    sliding,
    window_means,
)


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


@dataclass(frozen=True, eq=False)
class FeatureBase(CachedViews):
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
    keeps between calls: float64 work arrays and, by position, the windows of completed periods,
    :func:`~envs.core.windows.completed`) save work; results are the same. Rows anywhere cost one block copy per
    window; consecutive rows of one series (``r, r + 1, ...``) are read in place (module docstring).
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
    memo = None if run else scratch  # runs (one env's next rows) change positions every call
    for pw, (key, vkey, with_volume) in zip(base.periods.values(), period_keys, strict=True):
        first = pw.first[rows]
        first = first if first.any() else None
        result[key] = period_log_ratio(pw, rows, first, log_close, clip, dst.get(key), memo, "memo:" + key)
        if with_volume:
            result[vkey] = period_relative_volume(pw, rows, first, dst.get(vkey), memo, "memo:" + vkey)
    return {k: result[k] for k in order if k in result}  # the spec's key order

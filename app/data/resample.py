"""Resampling canonical bars: daily → weekly / monthly, intraday → coarser bars, index alignment.

Conventions (the same everywhere in raytrade, so a feature built here means the same in training,
backtest and live):

* **Weeks** are ISO weeks, Monday to Sunday in UTC; **months** are calendar months in UTC.
* A weekly or monthly bar is stamped with its **last trading day present in the data** (a week
  whose Friday is a holiday closes, and is stamped, on Thursday). A bar is therefore never stamped
  before the last daily bar it contains, so ``bar.timestamp <= t`` means "every day in it was
  known at the close of t". ``period_start`` (Monday / the 1st, 00:00 UTC) names the calendar
  period.
* Intraday buckets are aligned on the epoch (4h buckets open at 00/04/08/12/16/20 UTC, daily
  buckets at 00:00 UTC) and stamped with the bucket's *open* time, like every intraday bar.
* open = first open, high = max, low = min, close = last close, volume = sum; ``n_bars`` counts
  the source bars in the bucket.

A complete weekly bar *is* the as-of bar on the last day of its week: both come from one code
path (:func:`partial_bars_asof`), whose arithmetic is the envs' own
(:func:`envs.core.resample.partial_bars`), so the bar a policy sees on Friday equals, bit for bit,
the weekly bar the backtest stores (a property test compares the two on random daily series).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.data.asof import asof_positions
from app.data.schema import COLUMNS, DAY_NS, FLOAT_COLUMNS, TIMEFRAME_NS, Kind, canonicalize, ts_ns
from app.errors import DataValidationError
from envs.core.resample import partial_bars

#: Calendar timeframes built from daily bars.
CALENDAR_TIMEFRAMES: tuple[str, ...] = ("1w", "1mo")
#: Extra columns appended after the canonical ones by the resamplers.
EXTRA_COLUMNS: tuple[str, ...] = ("n_bars", "period_start")
_BAR_COLUMNS = COLUMNS[Kind.BARS]
_OHLCV = FLOAT_COLUMNS[Kind.BARS]
_ENV_PERIOD = {"1w": "W", "1mo": "M"}


def resample(bars: pd.DataFrame, timeframe: str, *, source_timeframe: str,
             drop_incomplete: bool = False) -> pd.DataFrame:
    """Resample ``bars`` of ``source_timeframe`` to ``timeframe`` (dispatches to the functions below).

    ``1d → 1w | 1mo`` uses :func:`resample_daily` (calendar periods, always complete data
    permitting); intraday → any multiple uses :func:`resample_intraday`.
    """
    if source_timeframe == "1d" and timeframe in CALENDAR_TIMEFRAMES:
        return resample_daily(bars, timeframe)
    if source_timeframe in TIMEFRAME_NS and timeframe in TIMEFRAME_NS:
        return resample_intraday(bars, timeframe, source_timeframe=source_timeframe,
                                 drop_incomplete=drop_incomplete)
    raise ValueError(
        f"cannot resample {source_timeframe!r} bars to {timeframe!r}: supported are '1d' → "
        f"{list(CALENDAR_TIMEFRAMES)} and any of {list(TIMEFRAME_NS)} to a whole multiple of it")


def resample_daily(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Weekly (``"1w"``) or monthly (``"1mo"``) bars from canonical daily bars, all symbols at once.

    Every period present in the data is returned, including the last one, which may still be in
    progress: use :func:`completed_bars` where only finished periods may be used. Columns: the
    canonical ones (timestamp = last trading day of the period in the data) plus ``n_bars`` and
    ``period_start``; rows sorted by symbol, then time.
    """
    frame = _prepare_daily(bars, where=f"resample_daily({timeframe!r})", timeframe=timeframe)
    return _last_of_period(frame, _asof(frame, timeframe)).drop(columns="_code")


def partial_bars_asof(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """For each daily bar t, the current weekly/monthly bar *as known at the close of t*.

    The bar is built from the days of t's period up to and including t only (first open so far,
    running high/low, close of t, volume so far), so nothing after t can leak into it. One row per
    input bar, sorted by symbol then time, stamped t; ``n_bars`` is the number of days seen so
    far in the period. On the last day of a period the row equals the complete bar.
    """
    frame = _prepare_daily(bars, where=f"partial_bars_asof({timeframe!r})", timeframe=timeframe)
    return _asof(frame, timeframe)


def completed_bars(bars: pd.DataFrame, timeframe: str,
                   *, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """Only the weekly/monthly bars known to be complete, using data at or before ``as_of``.

    Daily bars after ``as_of`` are ignored first (so the answer is what was knowable at the close
    of ``as_of``). A period is complete when the symbol has a bar in a later period, or when
    ``as_of`` has reached the period's last calendar day (Sunday / last day of the month). Without
    ``as_of`` only the first rule applies and each symbol's last period is left out, because
    nothing in the data proves it is over (no exchange calendar is consulted).
    """
    where = f"completed_bars({timeframe!r})"
    as_of_ts = None if as_of is None else _utc(as_of, where)
    frame = _prepare_daily(bars, where=where, timeframe=timeframe, as_of=as_of_ts)
    full = _last_of_period(frame, _asof(frame, timeframe))
    codes = full["_code"].to_numpy()
    done = np.zeros(len(codes), dtype=bool)
    done[:-1] = codes[1:] == codes[:-1]  # a later period of the same symbol exists
    if as_of is not None and len(full):
        last_day_ns = _next_period_start_ns(ts_ns(full["period_start"]), timeframe) - DAY_NS
        done = done | (last_day_ns <= as_of_ts.as_unit("ns").value)
    return full.loc[done].drop(columns="_code").reset_index(drop=True)


def completed_bars_asof(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """For each daily bar t, the latest *completed* weekly/monthly bar as known at the close of t.

    That is the symbol's bar of the most recent earlier period with data: t being in a later
    period proves it is over, and all of its days are before t. On the last day of a period the
    current (then complete) bar is not yet reported; it appears from the next period's first day,
    a deliberate one-bar delay that needs no exchange calendar. Rows without an earlier period
    hold NaN. Columns: ``timestamp`` (t), ``symbol``, the period bar's OHLCV, ``n_bars`` and
    ``period_start``, and ``bar_timestamp`` (the period bar's own stamp, always before t).
    """
    frame = _prepare_daily(bars, where=f"completed_bars_asof({timeframe!r})", timeframe=timeframe)
    full = _last_of_period(frame, _asof(frame, timeframe))
    # Period blocks are contiguous and numbered in the order of ``full`` (``_gid``): the previous
    # period of a row is block ``gid - 1`` when that block belongs to the same symbol.
    prev = frame["_gid"].to_numpy() - 1
    valid = prev >= 0
    valid[valid] = full["_code"].to_numpy()[prev[valid]] == frame["_code"].to_numpy()[valid]
    picked = full.iloc[np.where(valid, prev, 0)].reset_index(drop=True)
    out = pd.DataFrame({"timestamp": frame["timestamp"], "symbol": frame["symbol"]})
    for col in (*_OHLCV, "period_start"):
        out[col] = picked[col].where(valid)
    out["n_bars"] = picked["n_bars"].astype("Int64").where(valid)
    out["bar_timestamp"] = picked["timestamp"].where(valid)
    return out[["timestamp", "symbol", *_OHLCV, "n_bars", "period_start", "bar_timestamp"]]


def _asof(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Running period bars on a prepared frame (see :func:`partial_bars_asof`).

    The arithmetic is the envs' (:func:`envs.core.resample.partial_bars`), so a weekly bar here
    equals, bit for bit, the one a policy observes (``tests/unit/data/test_resample_parity.py``).
    """
    gid = frame["_gid"].to_numpy()
    starts = _segment_starts(gid)
    codes = frame["_code"].to_numpy()
    offsets = np.r_[np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else [],
                    len(codes)].astype(np.int64)
    ohlcv = partial_bars(ts_ns(frame["timestamp"]), frame[list(_OHLCV)].to_numpy(np.float64),
                         offsets, _ENV_PERIOD[timeframe]).ohlcv
    return pd.DataFrame({
        "timestamp": frame["timestamp"],
        "open": ohlcv[:, 0],
        "high": ohlcv[:, 1],
        "low": ohlcv[:, 2],
        "close": ohlcv[:, 3],
        "volume": ohlcv[:, 4],
        "symbol": frame["symbol"],
        "n_bars": np.arange(len(gid), dtype=np.int64) - starts[gid] + 1,
        "period_start": frame["period_start"],
    })


def _last_of_period(frame: pd.DataFrame, asof: pd.DataFrame) -> pd.DataFrame:
    """The complete bar of each period is its as-of bar on its last day (one code path).

    Keeps ``_code`` (the symbol's sort code) for the callers that reason about neighbours.
    """
    gid = frame["_gid"].to_numpy()
    last = np.r_[gid[1:] != gid[:-1], True] if len(gid) else np.zeros(0, dtype=bool)
    out = asof.loc[last].reset_index(drop=True)
    out["_code"] = frame["_code"].to_numpy()[last]
    return out


def resample_intraday(bars: pd.DataFrame, timeframe: str, *, source_timeframe: str = "1h",
                      drop_incomplete: bool = False) -> pd.DataFrame:
    """Coarser intraday (or UTC-daily) bars from finer ones, e.g. ``1h → 4h`` or ``1h → 1d``.

    Buckets are aligned on the epoch and stamped with their open time. A bucket is *incomplete*
    when it holds fewer source bars than ``timeframe / source_timeframe`` (exchange maintenance,
    a listing mid-bucket, or the bucket still in progress at the end of the data). With
    ``drop_incomplete`` such buckets are dropped, otherwise kept and visible through ``n_bars``.
    The expected count assumes a 24/7 market (crypto); session-based markets need their own.
    """
    for name, value in (("timeframe", timeframe), ("source_timeframe", source_timeframe)):
        if value not in TIMEFRAME_NS:
            raise ValueError(f"unknown {name} {value!r}; expected one of {list(TIMEFRAME_NS)}")
    target_ns, source_ns = TIMEFRAME_NS[timeframe], TIMEFRAME_NS[source_timeframe]
    if target_ns <= source_ns or target_ns % source_ns:
        raise ValueError(f"timeframe {timeframe!r} must be a whole multiple (> 1) of "
                         f"source_timeframe {source_timeframe!r}")
    where = f"resample_intraday({source_timeframe!r} → {timeframe!r})"
    frame, stamps_ns, codes = _prepare(bars, where)
    _require_grid(frame, stamps_ns, source_ns, where, f"the {source_timeframe} grid")
    bucket_ns = stamps_ns - np.mod(stamps_ns, target_ns)
    starts = np.flatnonzero(_new_segment(codes, bucket_ns))
    ends = np.r_[starts[1:], len(frame)] - 1
    out = pd.DataFrame({
        "timestamp": pd.to_datetime(bucket_ns[starts], unit="ns", utc=True),
        "open": frame["open"].to_numpy()[starts],
        "high": np.maximum.reduceat(frame["high"].to_numpy(), starts) if len(starts) else [],
        "low": np.minimum.reduceat(frame["low"].to_numpy(), starts) if len(starts) else [],
        "close": frame["close"].to_numpy()[ends],
        "volume": np.add.reduceat(frame["volume"].to_numpy(), starts) if len(starts) else [],
        "symbol": frame["symbol"].to_numpy()[starts],
        "n_bars": (ends - starts + 1).astype(np.int64),
    })
    if drop_incomplete:
        out = out.loc[out["n_bars"] == target_ns // source_ns]
    return out[[*_BAR_COLUMNS, "n_bars"]].reset_index(drop=True)


@dataclass(frozen=True)
class IndexAlignment:
    """Index bars on a stock's timestamps, and which stock dates had no same-day index bar.

    ``frame`` has one row per stock bar (sorted by symbol, then time): ``timestamp``, ``symbol``
    (the stock's), ``index_symbol``, ``index_timestamp`` (the index bar used, never after
    ``timestamp``), ``index_open … index_volume`` and ``same_day``. Rows with no usable index bar
    hold NaN/NaT. ``missing_dates`` are the distinct stock dates without a same-day index bar.
    """

    frame: pd.DataFrame
    missing_dates: tuple[pd.Timestamp, ...]

    @property
    def n_missing_dates(self) -> int:
        return len(self.missing_dates)


def align_to_index(bars: pd.DataFrame, index_bars: pd.DataFrame,
                   *, max_staleness_days: int | None = None) -> IndexAlignment:
    """The index bar in force at each stock bar: an as-of join *backward*, never forward.

    For a stock bar at t the index bar is the latest one stamped at or before t, so an index
    holiday carries the previous index bar (reported in ``missing_dates``) and no index value
    from after t is ever used. ``max_staleness_days`` leaves the row empty when the latest index
    bar is older than that many days (a stale benchmark is worse than none).
    """
    where = "align_to_index"
    stocks = _prepare_daily(bars, where=f"{where}: bars", timeframe=None)
    index = _prepare_daily(index_bars, where=f"{where}: index_bars", timeframe=None)
    index_symbols = index["symbol"].unique()
    if len(index_symbols) != 1:
        raise DataValidationError(f"{where}: index_bars must hold exactly one symbol, got "
                                  f"{sorted(map(str, index_symbols))[:10]}")
    if max_staleness_days is not None and max_staleness_days < 0:
        raise ValueError(f"max_staleness_days must be >= 0, got {max_staleness_days}")
    stocks_ns, index_ns = ts_ns(stocks["timestamp"]), ts_ns(index["timestamp"])
    staleness_ns = None if max_staleness_days is None else max_staleness_days * DAY_NS
    pos = asof_positions(index_ns, stocks_ns, max_staleness_ns=staleness_ns)
    found = pos >= 0
    picked = (index.iloc[np.maximum(pos, 0)] if len(index) else index.reindex(range(len(pos))))
    picked = picked.reset_index(drop=True)
    joined = stocks[["timestamp", "symbol"]].reset_index(drop=True)
    for col in _BAR_COLUMNS:
        joined[f"index_{col}"] = picked[col].where(found)
    joined["same_day"] = (joined["index_timestamp"] == joined["timestamp"]).to_numpy(bool)
    missing = pd.DatetimeIndex(joined.loc[~joined["same_day"], "timestamp"].unique()).sort_values()
    columns = ["timestamp", "symbol", "index_symbol", "index_timestamp",
               *(f"index_{c}" for c in _OHLCV), "same_day"]
    return IndexAlignment(frame=joined[columns], missing_dates=tuple(missing))


# ----------------------------------------------------------------------------- helpers


def _prepare(bars: pd.DataFrame, where: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Canonical, finite, duplicate-free bars sorted by symbol then time (a fresh copy), with
    their ``ts_ns`` and integer symbol codes (in symbol order) for fast segment arithmetic.

    Sorting here is safe (it changes no value); NaN and duplicates are refused rather than
    guessed around, because a resampled bar silently built on them would look valid.
    """
    if not isinstance(bars, pd.DataFrame):
        raise TypeError(f"{where}: expected a pandas DataFrame of canonical bars, got {type(bars).__name__}")
    frame = canonicalize(bars, Kind.BARS, where=where)
    values = frame[list(_OHLCV)].to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [c for c, b in zip(_OHLCV, bad.any(axis=0), strict=True) if b]
        raise DataValidationError(f"{where}: {int(bad.any(axis=1).sum())} rows have NaN or inf "
                                  f"in {cols}; repair or drop them before resampling")
    stamps_ns = ts_ns(frame["timestamp"])
    codes = pd.factorize(frame["symbol"], sort=True)[0].astype(np.int64)
    order = np.lexsort((stamps_ns, codes))
    frame, stamps_ns, codes = frame.take(order).reset_index(drop=True), stamps_ns[order], codes[order]
    dup = ~_new_segment(codes, stamps_ns)
    if dup.any():
        examples = [f"{s} {t.isoformat()}" for s, t in
                    frame.loc[dup, ["symbol", "timestamp"]].head(5).itertuples(index=False)]
        raise DataValidationError(f"{where}: {int(dup.sum())} duplicate (symbol, timestamp) rows, "
                                  f"e.g. {examples}", faults=examples)
    return frame, stamps_ns, codes


def _prepare_daily(bars: pd.DataFrame, *, where: str, timeframe: str | None,
                   as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """:func:`_prepare` plus the daily-grid check, the ``as_of`` cut and, for a calendar
    timeframe, ``period_start`` and contiguous period ids ``_gid`` (0, 1, ... in row order)."""
    if timeframe is not None and timeframe not in CALENDAR_TIMEFRAMES:
        raise ValueError(f"{where}: unknown calendar timeframe {timeframe!r}; expected one of "
                         f"{list(CALENDAR_TIMEFRAMES)} (use resample_intraday for {list(TIMEFRAME_NS)})")
    frame, stamps_ns, codes = _prepare(bars, where)
    _require_grid(frame, stamps_ns, DAY_NS, where, "00:00 UTC (daily bars)")
    if as_of is not None:
        seen = stamps_ns <= as_of.as_unit("ns").value
        frame, stamps_ns, codes = frame.loc[seen].reset_index(drop=True), stamps_ns[seen], codes[seen]
    frame["_code"] = codes
    if timeframe is not None:
        start_ns = _period_start_ns(stamps_ns, timeframe)
        frame["period_start"] = pd.to_datetime(start_ns, unit="ns", utc=True)
        frame["_gid"] = np.cumsum(_new_segment(codes, start_ns)) - 1
    return frame


def _new_segment(codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """True where a row starts a new (symbol, key) run in data sorted by symbol then key."""
    if not len(codes):
        return np.zeros(0, dtype=bool)
    return np.r_[True, (codes[1:] != codes[:-1]) | (keys[1:] != keys[:-1])]


def _segment_starts(gid: np.ndarray) -> np.ndarray:
    """First row of each contiguous group ``0..G-1`` (``starts[gid]`` maps rows to it)."""
    return np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]]) if len(gid) else np.zeros(0, np.int64)


def _require_grid(frame: pd.DataFrame, stamps_ns: np.ndarray, step_ns: int, where: str, what: str) -> None:
    off = np.mod(stamps_ns, step_ns) != 0
    if off.any():
        examples = [f"{s} {t.isoformat()}" for s, t in
                    frame.loc[off, ["symbol", "timestamp"]].head(5).itertuples(index=False)]
        raise DataValidationError(f"{where}: {int(off.sum())} timestamps are not on {what}, "
                                  f"e.g. {examples}", faults=examples)


def _period_start_ns(stamps_ns: np.ndarray, timeframe: str) -> np.ndarray:
    """Start (00:00 UTC) of the ISO week or calendar month of each daily timestamp."""
    days = stamps_ns // DAY_NS
    if timeframe == "1w":
        # 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        return (days - np.mod(days + 3, 7)) * DAY_NS
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    return months.astype("datetime64[ns]").astype(np.int64)


def _next_period_start_ns(start_ns: np.ndarray, timeframe: str) -> np.ndarray:
    if timeframe == "1w":
        return start_ns + 7 * DAY_NS
    months = start_ns.astype("datetime64[ns]").astype("datetime64[M]") + np.timedelta64(1, "M")
    return months.astype("datetime64[ns]").astype(np.int64)


def _utc(value: pd.Timestamp | str, where: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{where}: as_of {value!r} has no time zone; pass a UTC timestamp")
    return stamp.tz_convert("UTC")


"""Canonical schema of market data: bars, mark prices and funding rates.

Every source produces, and the store holds, frames in this shape:

* ``timestamp``: ``datetime64[ns, UTC]``; daily bars are stamped 00:00 UTC of the trading day,
  intraday bars with the bar's *open* time.
* ``open, high, low, close`` (and ``volume`` for bars): ``float64``.
* ``symbol``: ccxt (``BTC/USDT:USDT``) or Yahoo (``AAPL``, ``^GSPC``) conventions.
* funding: ``timestamp, symbol, funding_rate`` (rate per funding interval, e.g. 0.0001 = 1 bp).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from app.errors import DataValidationError

log = logging.getLogger("raytrade.data")


class Kind(StrEnum):
    BARS = "bars"
    MARK = "mark"
    FUNDING = "funding"


class MarketType(StrEnum):
    STOCK = "stock"
    INDEX = "index"
    SPOT = "spot"
    SWAP = "swap"


PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.BARS: ("timestamp", "open", "high", "low", "close", "volume", "symbol"),
    Kind.MARK: ("timestamp", "open", "high", "low", "close", "symbol"),
    Kind.FUNDING: ("timestamp", "symbol", "funding_rate"),
}
FLOAT_COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.BARS: ("open", "high", "low", "close", "volume"),
    Kind.MARK: PRICE_COLUMNS,
    Kind.FUNDING: ("funding_rate",),
}

HOUR_NS = 3_600 * 1_000_000_000
DAY_NS = 24 * HOUR_NS
#: Fixed bar lengths; weekly and monthly bars have calendar lengths and are built by resampling.
TIMEFRAME_NS: dict[str, int] = {"1m": HOUR_NS // 60, "5m": HOUR_NS // 12, "15m": HOUR_NS // 4,
                                "1h": HOUR_NS, "4h": 4 * HOUR_NS, "8h": 8 * HOUR_NS, "1d": DAY_NS}
#: ``events`` is for irregular series such as funding (8h, 4h or 1h intervals, changing over time).
TIMEFRAMES: tuple[str, ...] = (*TIMEFRAME_NS, "1w", "1mo", "events")
#: Funding rates are events whatever interval the venue uses: they are always stored (and looked
#: up by the envs' loader) under this timeframe.
FUNDING_TIMEFRAME = "events"


@dataclass(frozen=True)
class DatasetKey:
    """Where a dataset lives in the store: source / market type / timeframe / kind.

    A funding key always has timeframe :data:`FUNDING_TIMEFRAME`: another timeframe is
    replaced, with a warning, so funding is stored where :mod:`app.data.market` reads it.
    """

    source: str
    market_type: MarketType
    timeframe: str
    kind: Kind = Kind.BARS

    def __post_init__(self) -> None:
        object.__setattr__(self, "market_type", MarketType(self.market_type))
        object.__setattr__(self, "kind", Kind(self.kind))
        if self.kind is Kind.FUNDING and self.timeframe != FUNDING_TIMEFRAME:
            log.warning("funding rates are irregular events: stored under timeframe %r, not %r",
                        FUNDING_TIMEFRAME, self.timeframe)
            object.__setattr__(self, "timeframe", FUNDING_TIMEFRAME)
        if self.timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe {self.timeframe!r} is not one of {TIMEFRAMES}")
        if not self.source or "/" in self.source or "=" in self.source:
            raise ValueError(f"source {self.source!r} must be a non-empty name without '/' or '='")


def canonicalize(df: pd.DataFrame, kind: Kind = Kind.BARS, *, where: str = "<frame>") -> pd.DataFrame:
    """Return ``df`` with exactly the canonical columns and dtypes of ``kind``.

    Only casts (timestamps to UTC nanoseconds, numbers to float64); never sorts, drops or
    repairs rows, so validation still sees every fault. Missing columns or values that cannot be
    cast raise :class:`DataValidationError` naming ``where`` and the column.
    """
    kind = Kind(kind)
    wanted = COLUMNS[kind]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataValidationError(f"{where}: missing columns {missing}; expected {list(wanted)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["timestamp"] = _to_utc_ns(df["timestamp"], where)
    for col in FLOAT_COLUMNS[kind]:
        try:
            out[col] = pd.to_numeric(df[col].to_numpy(), errors="raise").astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(f"{where}: column {col!r} is not numeric ({exc})") from exc
    out["symbol"] = df["symbol"].astype(str).to_numpy()
    return out[list(wanted)]


def _to_utc_ns(ts: pd.Series, where: str) -> pd.Series:
    try:
        if pd.api.types.is_integer_dtype(ts):
            raise TypeError("integer timestamps are ambiguous; convert with an explicit unit")
        out = pd.to_datetime(ts.to_numpy() if not isinstance(ts.dtype, pd.DatetimeTZDtype) else ts)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"{where}: column 'timestamp' is not a timestamp ({exc})") from exc
    out = pd.Series(out)
    if out.dt.tz is None:
        raise DataValidationError(
            f"{where}: column 'timestamp' has no time zone; raytrade stores UTC only "
            "(localize it explicitly before import)")
    return out.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").reset_index(drop=True)


def empty(kind: Kind = Kind.BARS) -> pd.DataFrame:
    """An empty frame with the canonical columns and dtypes of ``kind``."""
    data: dict[str, pd.Series] = {"timestamp": pd.Series([], dtype="datetime64[ns, UTC]")}
    for col in FLOAT_COLUMNS[Kind(kind)]:
        data[col] = pd.Series([], dtype=np.float64)
    data["symbol"] = pd.Series([], dtype=object)
    return pd.DataFrame(data)[list(COLUMNS[Kind(kind)])]


def ts_ns(timestamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch (the envs' ``ts_ns``)."""
    index = pd.DatetimeIndex(timestamps)
    if index.tz is None:
        raise DataValidationError("timestamps have no time zone; raytrade uses UTC only")
    return index.tz_convert("UTC").as_unit("ns").asi8.copy()

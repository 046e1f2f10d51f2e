"""Daily stock and index bars from Yahoo Finance, through yfinance.

This is the only module of raytrade that imports :mod:`yfinance` (house rule 7). Prices are split-
and dividend-adjusted (``auto_adjust=True``: OHLC scaled by ``Adj Close / Close``).

Yahoo stamps a daily bar with the exchange's market-open instant (e.g. 13:30 UTC for New York in
summer) and yfinance turns that into exchange-local midnight. raytrade stamps daily bars at
**00:00 UTC of the trading date**, so the exchange-local *date* is kept and re-stamped at midnight
UTC; converting the instant to UTC instead would shift bars of exchanges east of UTC to the
previous day.

Process-wide effects (yfinance keeps global state; this module is its only user):

* ``yfinance.config.debug.hide_exceptions`` is set to ``False``: by default yfinance logs errors
  and returns an empty frame, which would hide unknown tickers and rate limits from us.
* yfinance memoizes responses process-wide (an ``lru_cache`` on ``YfData.cache_get``), error
  responses included; the memo is cleared before every attempt so a retry really asks again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import requests
import yfinance as yf
from yfinance.data import YfData
from yfinance.exceptions import (
    YFDataException,
    YFPricesMissingError,
    YFRateLimitError,
    YFTickerMissingError,
)

from app.data.schema import Kind, empty
from app.data.sources.base import RetryPolicy, TimeLike, call_with_retry, finish_frame, utc_range
from app.errors import (
    NetworkError,
    RateLimitError,
    RaytradeError,
    SymbolNotFoundError,
    VendorError,
)

try:  # yfinance's preferred HTTP backend; plain requests is its fallback
    from curl_cffi.requests import exceptions as _curl_exc
except ImportError:  # pragma: no cover - depends on the installation
    _curl_exc = None

logger = logging.getLogger(__name__)

_TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError, ConnectionError, requests.exceptions.ConnectionError,
    requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError)
if _curl_exc is not None:
    _TRANSIENT += (_curl_exc.ConnectionError, _curl_exc.Timeout, _curl_exc.ChunkedEncodingError,
                   _curl_exc.ProxyError)
_HTTP_ERRORS: tuple[type[BaseException], ...] = (requests.exceptions.HTTPError,)
if _curl_exc is not None:
    _HTTP_ERRORS += (_curl_exc.HTTPError,)

#: Yahoo's explanations that mean "this range has no bars" for a ticker it does know.
_EMPTY_RANGE_REASONS = ("data doesn't exist", "data doesn’t exist")
_UNKNOWN_SYMBOL_REASONS = ("delisted", "not found", "no data found")


def translate_yfinance_error(exc: BaseException, symbol: str) -> RaytradeError:
    """The :mod:`app.errors` class for an exception raised inside yfinance (raise it ``from exc``)."""
    where = f"yfinance {symbol!r}"
    if isinstance(exc, YFRateLimitError):
        return RateLimitError(f"{where}: Yahoo rate limit (HTTP 429): {exc}")
    if isinstance(exc, YFTickerMissingError):  # no timezone / no prices: Yahoo does not know it
        return SymbolNotFoundError(f"{where}: unknown or delisted ticker ({exc})")
    if isinstance(exc, _HTTP_ERRORS):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 429:
            return RateLimitError(f"{where}: HTTP 429 Too Many Requests")
        if status == 404:
            return SymbolNotFoundError(f"{where}: HTTP 404, unknown or delisted ticker")
        if status is not None and status >= 500:
            return NetworkError(f"{where}: Yahoo server error HTTP {status}")
        return VendorError(f"{where}: HTTP error {status}: {exc}")
    if isinstance(exc, _TRANSIENT):
        return NetworkError(f"{where}: network error {type(exc).__name__}: {exc}")
    if isinstance(exc, YFDataException) and "CURRENTLY DOWN" in str(exc).upper():
        return NetworkError(f"{where}: Yahoo Finance is down: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        return VendorError(f"{where}: Yahoo answered something that is not JSON ({exc})")
    return VendorError(f"{where}: {type(exc).__name__}: {exc}")


class YFinanceSource:
    """Daily adjusted bars of Yahoo tickers (``AAPL``, ``^GSPC``, ``BRK-B``, ``7203.T``, ...).

    ``session``: a ``curl_cffi`` or ``requests`` session for yfinance to use (proxies, tests);
    ``None`` lets yfinance create its own. ``cache_dir``: where yfinance keeps its ticker-timezone
    and cookie caches (default: yfinance's user cache folder); yfinance reads it once, so set it
    before the first fetch of the process. ``timeout_s``: per HTTP request.
    """

    TIMEFRAMES: tuple[str, ...] = ("1d",)

    def __init__(self, *, session: Any | None = None, retry: RetryPolicy | None = None,
                 timeout_s: float = 30.0, cache_dir: str | Path | None = None) -> None:
        self._session = session
        self._retry = retry or RetryPolicy()
        self._timeout_s = float(timeout_s)
        yf.config.debug.hide_exceptions = False
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            yf.set_tz_cache_location(str(cache_dir))

    @property
    def name(self) -> str:
        return "yfinance"

    def fetch_bars(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Adjusted daily bars of ``symbol`` stamped 00:00 UTC of each trading date in ``[start, end)``.

        Raises :class:`~app.errors.SymbolNotFoundError` for a ticker Yahoo does not know,
        :class:`~app.errors.NetworkError` / :class:`~app.errors.RateLimitError` after the retries,
        :class:`~app.errors.VendorError` for other vendor failures.
        """
        if timeframe not in self.TIMEFRAMES:
            raise ValueError(f"yfinance source serves timeframes {self.TIMEFRAMES}, not {timeframe!r}; "
                             "build weekly/monthly bars by resampling daily ones")
        if not symbol or symbol != symbol.strip():
            raise ValueError(f"invalid ticker {symbol!r}")
        start_utc, end_utc = utc_range(start, end)
        # Bars sit at 00:00 UTC: the first one in range is on start's date or the next date; the
        # last one on the date before end (end exclusive), or on end's date if end is after 00:00.
        first_day, end_day = start_utc.ceil("D"), end_utc.ceil("D")
        if first_day >= end_day:
            return empty(Kind.BARS)
        raw = call_with_retry(lambda: self._history(symbol, first_day, end_day), self._retry,
                              what=f"yfinance history {symbol}")
        if raw.empty:
            return empty(Kind.BARS)
        frame = self._to_canonical_input(raw, symbol)
        return finish_frame(frame, Kind.BARS, start_utc, end_utc, where=f"yfinance {symbol}")

    def fetch_many(self, symbols: Iterable[str], timeframe: str, start: TimeLike, end: TimeLike,
                   *, skip_missing: bool = False) -> pd.DataFrame:
        """Bars of several tickers in one canonical frame (sorted by symbol, then timestamp).

        With ``skip_missing`` an unknown ticker is logged and left out instead of raising.
        """
        frames = []
        for symbol in dict.fromkeys(symbols):
            try:
                frames.append(self.fetch_bars(symbol, timeframe, start, end))
            except SymbolNotFoundError:
                if not skip_missing:
                    raise
                logger.warning("yfinance: skipping unknown ticker %s", symbol)
        frames = [f for f in frames if not f.empty]
        if not frames:
            return empty(Kind.BARS)
        return pd.concat(frames, ignore_index=True)

    # ----------------------------------------------------------------------------------------

    def _history(self, symbol: str, first_day: pd.Timestamp, end_day: pd.Timestamp) -> pd.DataFrame:
        """One attempt: yfinance's ``Ticker.history``; vendor errors translated."""
        YfData.cache_get.cache_clear()
        try:
            ticker = yf.Ticker(symbol, session=self._session)
            return ticker.history(start=first_day.strftime("%Y-%m-%d"),
                                  end=end_day.strftime("%Y-%m-%d"), interval="1d",
                                  auto_adjust=True, actions=False, repair=False,
                                  timeout=self._timeout_s)
        except YFPricesMissingError as exc:
            reason = (exc.yahoo_reason or "").lower()
            if exc.yahoo_reason is None or any(r in reason for r in _EMPTY_RANGE_REASONS):
                logger.info("yfinance %s: no bars %s -> %s (%s)", symbol, first_day.date(),
                            end_day.date(), exc)
                return pd.DataFrame()
            if any(r in reason for r in _UNKNOWN_SYMBOL_REASONS):
                raise SymbolNotFoundError(f"yfinance {symbol!r}: {exc.yahoo_reason}") from exc
            raise VendorError(f"yfinance {symbol!r}: {exc.yahoo_reason}") from exc
        except Exception as exc:  # yfinance raises many types; each is translated
            raise translate_yfinance_error(exc, symbol) from exc

    @staticmethod
    def _to_canonical_input(raw: pd.DataFrame, symbol: str) -> pd.DataFrame:
        index = pd.DatetimeIndex(raw.index)
        if index.tz is not None:  # exchange-local midnight -> the same wall date, naive
            index = index.tz_localize(None)
        missing = [c for c in ("Open", "High", "Low", "Close", "Volume") if c not in raw.columns]
        if missing:
            raise VendorError(f"yfinance {symbol!r}: history lacks columns {missing}")
        return pd.DataFrame({
            "timestamp": index.normalize().tz_localize("UTC"),
            "open": raw["Open"].to_numpy(), "high": raw["High"].to_numpy(),
            "low": raw["Low"].to_numpy(), "close": raw["Close"].to_numpy(),
            "volume": raw["Volume"].to_numpy(), "symbol": symbol,
        })

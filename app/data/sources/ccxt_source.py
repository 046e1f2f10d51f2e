"""Bars, mark prices and funding rates from any ccxt exchange (spot and swap markets).

This is the only module of raytrade that imports :mod:`ccxt` for market data (house rule 7).

* Symbols are ccxt's unified ones: ``BTC/USDT`` (spot), ``BTC/USDT:USDT`` (USDT-margined swap).
* Markets are loaded lazily, on the first fetch, with the same retry as data requests.
* ``enableRateLimit`` is on unless the caller builds the exchange itself: ccxt then spaces
  requests by the exchange's ``rateLimit`` (milliseconds per request weight unit).
* History is paged with ``since``/``limit`` (milliseconds since the epoch / rows per request)
  until ``end``; overlapping pages are de-duplicated, and paging stops on an empty page or one
  that does not advance (an exchange that ignores ``since``), so it always terminates.
* ccxt errors are translated (:func:`translate_ccxt_error`) with the ccxt error as ``__cause__``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import ccxt
import pandas as pd

from app.data.schema import Kind, MarketType, empty
from app.data.sources.base import (
    RetryPolicy,
    TimeLike,
    call_with_retry,
    finish_frame,
    to_epoch_ms,
    utc_range,
)
from app.errors import (
    NetworkError,
    RateLimitError,
    RaytradeError,
    SymbolNotFoundError,
    VendorError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: raytrade timeframe names that ccxt spells differently.
_CCXT_TIMEFRAMES = {"1mo": "1M"}
#: Calendar-length timeframes: the next page starts 1 ms after the last bar, not one bar later.
_IRREGULAR = {"1M"}
_OHLCV_COLUMNS = ["timestamp_ms", "open", "high", "low", "close", "volume"]


def translate_ccxt_error(exc: BaseException, what: str) -> RaytradeError:
    """The :mod:`app.errors` class for a ccxt exception (raise it ``from exc``)."""
    if isinstance(exc, ccxt.DDoSProtection):  # includes RateLimitExceeded
        return RateLimitError(f"{what}: rate limited ({type(exc).__name__}: {exc})")
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, ...
        return NetworkError(f"{what}: network error ({type(exc).__name__}: {exc})")
    if isinstance(exc, ccxt.BadSymbol):
        return SymbolNotFoundError(f"{what}: unknown symbol ({exc})")
    return VendorError(f"{what}: {type(exc).__name__}: {exc}")


class CcxtSource:
    """Market data of one ccxt exchange.

    ``exchange_id``: a ccxt exchange id (``binanceusdm``, ``binance``, ``bybit``, ``okx``, ...).
    ``exchange``: an already-built ccxt exchange object to use instead (tests inject one whose
    HTTP layer replays recorded responses); its id then names the source. ``config``: extra
    options for the exchange constructor (never put API secrets in YAML; market data needs none).
    ``page_limit``: rows asked per request. ``max_pages``: safety cap per fetch.
    """

    def __init__(self, exchange_id: str = "binanceusdm", *, exchange: Any | None = None,
                 config: Mapping[str, Any] | None = None, page_limit: int = 1000,
                 max_pages: int = 10_000, retry: RetryPolicy | None = None) -> None:
        if page_limit < 1 or max_pages < 1:
            raise ValueError("page_limit and max_pages must be >= 1")
        if exchange is None:
            exchange_cls = getattr(ccxt, exchange_id, None)
            if exchange_id not in ccxt.exchanges or exchange_cls is None:
                raise ValueError(f"unknown ccxt exchange id {exchange_id!r}")
            exchange = exchange_cls({"enableRateLimit": True, **dict(config or {})})
        self._exchange = exchange
        self._page_limit = int(page_limit)
        self._max_pages = int(max_pages)
        self._retry = retry or RetryPolicy()
        self._markets_loaded = False

    @property
    def name(self) -> str:
        return str(self._exchange.id)

    @property
    def exchange(self) -> Any:
        """The underlying ccxt exchange object (for diagnostics; prefer this class's methods)."""
        return self._exchange

    # ---------------------------------------------------------------------------- public API

    def fetch_bars(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Canonical OHLCV bars (stamped with their open time) of ``symbol`` in ``[start, end)``."""
        return self._fetch_candles(symbol, timeframe, start, end, Kind.BARS, params={})

    def fetch_mark_prices(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Canonical mark-price OHLC bars of a swap ``symbol`` in ``[start, end)`` (``price=mark``)."""
        return self._fetch_candles(symbol, timeframe, start, end, Kind.MARK, params={"price": "mark"})

    def fetch_funding_rates(self, symbol: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Canonical funding-rate history of a swap ``symbol`` in ``[start, end)``.

        Paging stops only on an empty or non-advancing page: a short page is not taken as the
        end, because some exchanges cap ``limit`` below what was asked.
        """
        start_utc, end_utc = utc_range(start, end)
        unified = self._resolve(symbol)
        if not getattr(self._exchange, "has", {}).get("fetchFundingRateHistory"):
            raise VendorError(f"{self.name} has no funding-rate history (fetchFundingRateHistory)")
        what = f"{self.name} funding {unified}"
        rows: dict[int, float] = {}
        since_ms, end_ms = to_epoch_ms(start_utc), to_epoch_ms(end_utc)
        for _ in range(self._max_pages):
            page = self._call(lambda s=since_ms: self._exchange.fetch_funding_rate_history(
                unified, since=s, limit=self._page_limit), what=what)
            stamps = [int(r["timestamp"]) for r in page if r.get("timestamp") is not None]
            for record in page:
                if record.get("timestamp") is not None and record.get("fundingRate") is not None:
                    rows[int(record["timestamp"])] = float(record["fundingRate"])
            next_since = self._next_since(stamps, since_ms, step_ms=1, what=what)
            if next_since is None or next_since >= end_ms:
                break
            since_ms = next_since
        else:
            logger.warning("%s: stopped after max_pages=%d", what, self._max_pages)
        frame = pd.DataFrame({"timestamp": pd.to_datetime(list(rows), unit="ms", utc=True),
                              "symbol": unified, "funding_rate": list(rows.values())})
        return finish_frame(frame, Kind.FUNDING, start_utc, end_utc, where=what)

    def market_type(self, symbol: str) -> MarketType:
        """``SPOT`` or ``SWAP`` for a market of this exchange (futures/options are refused)."""
        market = self._market(symbol)
        if market.get("spot"):
            return MarketType.SPOT
        if market.get("swap"):
            return MarketType.SWAP
        raise VendorError(f"{self.name} {market['symbol']}: only spot and swap markets are supported")

    # ---------------------------------------------------------------------------- internals

    def _fetch_candles(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike,
                       kind: Kind, params: dict[str, Any]) -> pd.DataFrame:
        start_utc, end_utc = utc_range(start, end)
        unified = self._resolve(symbol)
        ccxt_tf = _CCXT_TIMEFRAMES.get(timeframe, timeframe)
        timeframes = getattr(self._exchange, "timeframes", None) or {}
        if timeframes and ccxt_tf not in timeframes:
            raise ValueError(f"{self.name} has no timeframe {timeframe!r}; it has {sorted(timeframes)}")
        bar_ms = int(self._exchange.parse_timeframe(ccxt_tf) * 1000)
        step_ms = 1 if ccxt_tf in _IRREGULAR else bar_ms
        what = f"{self.name} {kind.value} {unified} {timeframe}"
        rows: dict[int, list[float]] = {}
        since_ms, end_ms = to_epoch_ms(start_utc), to_epoch_ms(end_utc)
        pages = 0
        while since_ms < end_ms:
            if pages >= self._max_pages:
                logger.warning("%s: stopped after max_pages=%d", what, self._max_pages)
                break
            # Ask only for the bars still missing, so the last page does not overshoot `end`.
            limit_bars = min(self._page_limit, max(1, -(-(end_ms - since_ms) // bar_ms)))
            page = self._call(lambda s=since_ms, n=limit_bars: self._exchange.fetch_ohlcv(
                unified, ccxt_tf, since=s, limit=n, params=dict(params)), what=what)
            pages += 1
            for candle in page:
                rows[int(candle[0])] = list(candle[:6])  # a later page wins on overlap
            next_since = self._next_since([int(c[0]) for c in page], since_ms, step_ms, what)
            if next_since is None:
                break
            since_ms = next_since
        logger.debug("%s: %d page(s), %d rows", what, pages, len(rows))
        if not rows:
            return empty(kind)
        frame = pd.DataFrame(list(rows.values()), columns=_OHLCV_COLUMNS)
        frame["timestamp"] = pd.to_datetime(frame.pop("timestamp_ms"), unit="ms", utc=True)
        frame["symbol"] = unified
        return finish_frame(frame, kind, start_utc, end_utc, where=what)

    @staticmethod
    def _next_since(stamps_ms: list[int], since_ms: int, step_ms: int, what: str) -> int | None:
        """Where the next page starts, or ``None`` when paging must stop."""
        if not stamps_ms:
            return None
        last_ms = max(stamps_ms)
        if last_ms < since_ms:
            logger.warning("%s: page ends at %d ms, before since=%d ms (exchange ignores since?); "
                           "stopping", what, last_ms, since_ms)
            return None
        next_since = last_ms + step_ms
        return next_since if next_since > since_ms else None

    def _call(self, fn: Callable[[], T], *, what: str) -> T:
        """``fn()`` with ccxt errors translated and network errors retried."""
        def attempt() -> T:
            try:
                return fn()
            except ccxt.BaseError as exc:
                raise translate_ccxt_error(exc, what) from exc
        return call_with_retry(attempt, self._retry, what=what)

    def _ensure_markets(self) -> None:
        if not self._markets_loaded:
            self._call(self._exchange.load_markets, what=f"{self.name} load_markets")
            self._markets_loaded = True

    def _market(self, symbol: str) -> dict[str, Any]:
        self._ensure_markets()
        try:
            return self._exchange.market(symbol)
        except ccxt.BaseError as exc:
            raise translate_ccxt_error(exc, f"{self.name} {symbol}") from exc

    def _resolve(self, symbol: str) -> str:
        """The unified symbol of ``symbol`` (which may be an exchange id such as ``BTCUSDT``)."""
        if not symbol:
            raise ValueError(f"{self.name}: empty symbol")
        return str(self._market(symbol)["symbol"])

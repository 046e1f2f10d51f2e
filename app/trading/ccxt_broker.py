"""The live broker: one ccxt exchange account (USDⓈ-M style linear perpetuals, isolated margin).

The only module of :mod:`app.trading` that imports :mod:`ccxt` (house rule 7). What it does:

* :meth:`CcxtBroker.setup` refuses hedge mode (one-way positions only), sets the margin mode
  and the leverage of every symbol, then READS THEM BACK and refuses to trade
  (:class:`~app.trading.errors.ExchangeSetupError`) if the exchange reports anything else;
* :meth:`CcxtBroker.normalize` applies the market's amount precision (truncating, never
  rounding a position up) and minimums (amount, notional): an order below them is not sent;
* :meth:`CcxtBroker.submit` sends a market order with the client order id (and
  ``reduceOnly`` on closing legs). It is NEVER retried: a timeout or network failure after the
  request may have left it placed, so it becomes :class:`~app.trading.errors.AmbiguousOrderError`
  (the order is UNKNOWN until fetched by client id); a rate-limit refusal (HTTP 429) or an
  exchange refusal is :class:`~app.trading.errors.OrderRejectedError` (nothing placed);
* every read (markets, positions, orders, candles, funding) is retried with tenacity's
  exponential backoff on retryable errors only: network, timeout, rate limit, exchange not
  available (:func:`translate`).

:class:`CcxtFeed` gives the runner closed candles, funding and mark prices from the same
exchange object. API keys come from environment variables only (:func:`exchange_from_env`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ccxt
import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from app.data.market import funding_on_bars
from app.data.sources.base import RetryPolicy
from app.trading.broker import OrderAck, OrderRequest, OrderState, Position
from app.trading.errors import (
    AmbiguousOrderError,
    ExchangeSetupError,
    InsufficientMarginError,
    OrderNotFoundError,
    OrderRejectedError,
    RetryableError,
    TradingError,
)
from app.trading.paper import Bar
from envs.core.spec import Bars

log = logging.getLogger("raytrade.trading")
T = TypeVar("T")
TIMEFRAME_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
_STATES = {"open": OrderState.OPEN, "closed": OrderState.FILLED, "canceled": OrderState.CANCELED,
           "cancelled": OrderState.CANCELED, "expired": OrderState.CANCELED, "rejected": OrderState.REJECTED}


def translate(exc: BaseException, what: str) -> TradingError:
    """The trading error for a ccxt exception (raise it ``from exc``)."""
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundError(f"{what}: {exc}")
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientMarginError(f"{what}: insufficient margin ({exc})")
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, DDoSProtection, RateLimitExceeded
        return RetryableError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest, ccxt.PermissionDenied, ccxt.AccountSuspended)):
        return OrderRejectedError(f"{what}: {type(exc).__name__}: {exc}")
    return TradingError(f"{what}: {type(exc).__name__}: {exc}")


def exchange_from_env(exchange_id: str, *, live: bool, testnet: bool = False) -> Any:
    """A ccxt exchange; with ``live`` its keys come from ``RAYTRADE_<ID>_API_KEY`` and
    ``RAYTRADE_<ID>_API_SECRET`` (never from YAML, never logged)."""
    cls = getattr(ccxt, exchange_id, None)
    if cls is None or exchange_id not in ccxt.exchanges:
        raise ExchangeSetupError(f"exchange {exchange_id!r}: not a ccxt exchange id")
    config: dict[str, Any] = {"enableRateLimit": True}
    if live:
        prefix = f"RAYTRADE_{exchange_id.upper()}_"
        key, secret = os.environ.get(prefix + "API_KEY"), os.environ.get(prefix + "API_SECRET")
        if not key or not secret:
            raise ExchangeSetupError(f"live trading needs {prefix}API_KEY and {prefix}API_SECRET in the environment")
        config |= {"apiKey": key, "secret": secret}
    exchange = cls(config)
    if testnet:
        exchange.set_sandbox_mode(True)
    return exchange


@dataclass
class _Caller:
    retry: RetryPolicy

    def read(self, fn: Callable[[], T], what: str) -> T:
        """Call a READ with retries on retryable errors only; errors translated."""
        def attempt() -> T:
            try:
                return fn()
            except ccxt.BaseError as exc:
                raise translate(exc, what) from exc

        r = self.retry
        retrying = Retrying(stop=stop_after_attempt(r.attempts), reraise=True,
                            retry=retry_if_exception_type(RetryableError),
                            wait=wait_exponential_jitter(initial=r.initial_wait_s, max=r.max_wait_s, jitter=r.jitter_s),
                            before_sleep=lambda s: log.warning("%s: retry %d after %s", what, s.attempt_number,
                                                               s.outcome.exception() if s.outcome else "?"))
        return retrying(attempt)


class CcxtBroker:
    """Market orders on a ccxt exchange account (see the module docstring)."""

    paper = False

    def __init__(self, exchange: Any, *, leverage: float, margin_mode: str = "isolated",
                 retry: RetryPolicy | None = None) -> None:
        self.exchange = exchange
        self.leverage = leverage
        self.margin_mode = margin_mode
        self._call = _Caller(retry or RetryPolicy())
        self._markets_loaded = False

    def _markets(self) -> None:
        if not self._markets_loaded:
            self._call.read(self.exchange.load_markets, "load_markets")
            self._markets_loaded = True

    def setup(self, symbols: list[str]) -> None:
        """Refuse hedge mode; set margin mode and leverage, read them back, refuse on mismatch."""
        self._markets()
        ex = self.exchange
        for s in symbols:
            if s not in ex.markets:
                raise ExchangeSetupError(f"{s}: not a market of {ex.id}")
            if not ex.markets[s].get("linear") or not ex.markets[s].get("swap"):
                raise ExchangeSetupError(f"{s}: only linear perpetual swaps are traded")
        mode = self._call.read(lambda: ex.fetch_position_mode(symbols[0]), "fetch_position_mode")
        if mode.get("hedged"):
            raise ExchangeSetupError(f"{ex.id}: the account is in hedge (dual-side) position mode; "
                                     "switch it to one-way mode (the runner holds one net position per symbol)")
        for s in symbols:
            # each lambda is called at once, inside this iteration: ``s`` is the current symbol
            self._set(lambda: ex.set_margin_mode(self.margin_mode, s), f"{s}: set_margin_mode",  # noqa: B023
                      already=ccxt.MarginModeAlreadySet)
            self._set(lambda: ex.set_leverage(int(self.leverage), s), f"{s}: set_leverage")  # noqa: B023
            lev = self._call.read(lambda: ex.fetch_leverage(s), f"{s}: fetch_leverage")  # noqa: B023
            mm = self._call.read(lambda: ex.fetch_margin_mode(s), f"{s}: fetch_margin_mode")  # noqa: B023
            got_lev = {lev.get("longLeverage"), lev.get("shortLeverage")} - {None}
            if got_lev != {self.leverage} and got_lev != {int(self.leverage)}:
                raise ExchangeSetupError(f"{s}: leverage is {sorted(got_lev)} after setting {self.leverage}; "
                                         "refusing to trade")
            if (mm.get("marginMode") or "").lower() != self.margin_mode:
                raise ExchangeSetupError(f"{s}: margin mode is {mm.get('marginMode')!r} after setting "
                                         f"{self.margin_mode!r}; refusing to trade")

    def _set(self, fn: Callable[[], Any], what: str, already: type[BaseException] | None = None) -> None:
        try:
            self._call.read(fn, what)
        except TradingError as exc:
            if already is not None and isinstance(exc.__cause__, already):
                return
            raise ExchangeSetupError(str(exc)) from exc

    def normalize(self, order: OrderRequest, ref_price: float) -> OrderRequest | None:
        """``order`` with its amount truncated to the market's precision; None when it falls
        below the minimum amount or notional (nothing to send)."""
        self._markets()
        ex = self.exchange
        market = ex.markets[order.symbol]
        try:
            # nudged up by 1e-9 (relative) before ccxt truncates to the step, so that a float such
            # as 151.97899999999996 (a position of 151.979) is not cut to 151.978 and leaves dust
            amount = float(ex.amount_to_precision(order.symbol, abs(order.qty) * (1 + 1e-9)))
        except ccxt.BaseError:  # below the precision: rounds to 0 (ccxt raises InvalidOrder)
            return None
        limits = market.get("limits") or {}
        min_amount = (limits.get("amount") or {}).get("min") or 0.0
        min_cost = (limits.get("cost") or {}).get("min") or 0.0
        if amount <= 0 or amount < min_amount:
            return None
        if not order.reduce_only and amount * ref_price < min_cost:  # reduce-only closes are exempt
            return None
        return OrderRequest(order.client_id, order.symbol, float(np.copysign(amount, order.qty)), order.level,
                            order.reduce_only)

    def submit(self, order: OrderRequest) -> OrderAck:
        """Send once (see the module docstring): never retried here."""
        self._markets()
        params: dict[str, Any] = {"clientOrderId": order.client_id}
        if order.reduce_only:
            params["reduceOnly"] = True
        side = "buy" if order.qty > 0 else "sell"
        try:
            raw = self.exchange.create_order(order.symbol, "market", side, abs(order.qty), None, params)
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:  # refused before processing
            raise OrderRejectedError(f"{order.client_id}: rate limited, not placed ({exc})") from exc
        except ccxt.NetworkError as exc:  # timeouts, 5xx: it may have been placed
            raise AmbiguousOrderError(f"{order.client_id}: {type(exc).__name__}: {exc}") from exc
        except ccxt.BaseError as exc:
            err = translate(exc, f"create_order {order.client_id}")
            raise (err if isinstance(err, OrderRejectedError) else OrderRejectedError(str(err))) from exc
        return self._ack(raw, order.client_id)

    def fetch_order(self, symbol: str, client_id: str) -> OrderAck:
        raw = self._call.read(lambda: self.exchange.fetch_order(None, symbol, {"clientOrderId": client_id}),
                              f"fetch_order {client_id}")
        return self._ack(raw, client_id)

    def cancel(self, symbol: str, client_id: str) -> None:
        with contextlib.suppress(OrderNotFoundError):  # already gone: filled or canceled
            self._call.read(lambda: self.exchange.cancel_order(None, symbol, {"clientOrderId": client_id}),
                            f"cancel_order {client_id}")

    def open_orders(self, symbols: list[str]) -> list[OrderAck]:
        out = []
        for s in symbols:
            for raw in self._call.read(lambda: self.exchange.fetch_open_orders(s), f"{s}: fetch_open_orders"):  # noqa: B023
                out.append(self._ack(raw, raw.get("clientOrderId") or ""))
        return out

    def positions(self, symbols: list[str]) -> dict[str, Position]:
        raw = self._call.read(lambda: self.exchange.fetch_positions(symbols), "fetch_positions")
        out = {}
        for p in raw:
            contracts = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
            if not contracts or p.get("symbol") not in symbols:
                continue
            sign = -1.0 if p.get("side") == "short" else 1.0
            out[p["symbol"]] = Position(p["symbol"], sign * contracts, float(p.get("entryPrice") or 0.0),
                                        float(p.get("initialMargin") or p.get("collateral") or 0.0),
                                        p.get("leverage"), p.get("marginMode"), p.get("liquidationPrice"))
        return out

    def balance_usd(self, asset: str = "USDT") -> float:
        raw = self._call.read(self.exchange.fetch_balance, "fetch_balance")
        return float((raw.get("total") or {}).get(asset) or 0.0)

    @staticmethod
    def _ack(raw: dict[str, Any], client_id: str) -> OrderAck:
        state = _STATES.get(str(raw.get("status")), OrderState.OPEN)
        filled = float(raw.get("filled") or 0.0)
        side = -1.0 if raw.get("side") == "sell" else 1.0
        fee = raw.get("fee")
        fees = [fee] if fee else list(raw.get("fees") or [])
        fee_usd = sum(float(f.get("cost") or 0.0) for f in fees)  # quote currency (USDT) on linear swaps
        return OrderAck(raw.get("clientOrderId") or client_id, str(raw.get("id")) if raw.get("id") else None, state,
                        side * filled, raw.get("average"), fee_usd)


class CcxtFeed:
    """Closed candles, funding and mark prices of ccxt perpetuals (the live runner's feed)."""

    def __init__(self, exchange: Any, timeframe: str = "1h", retry: RetryPolicy | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        if timeframe not in TIMEFRAME_MS:
            raise ValueError(f"timeframe {timeframe!r}: one of {sorted(TIMEFRAME_MS)}")
        self.exchange, self.timeframe = exchange, timeframe
        self.bar_ms = TIMEFRAME_MS[timeframe]
        self._call = _Caller(retry or RetryPolicy())
        self._clock = clock_ms or (lambda: int(time.time() * 1000))
        self._open: dict[str, float] = {}

    def _candles(self, symbol: str, n: int, price: str | None = None) -> list[list[float]]:
        params = {"price": price} if price else {}
        now = self._clock()
        since = (now // self.bar_ms - n) * self.bar_ms  # n closed bars and the one in progress
        if price is None:
            self._open.pop(symbol, None)
        rows = self._call.read(lambda: self.exchange.fetch_ohlcv(symbol, self.timeframe, since, n + 1, params),
                               f"{symbol}: fetch_ohlcv")
        closed = [r for r in rows if r[0] + self.bar_ms <= now]
        if price is None and len(rows) > len(closed):
            self._open[symbol] = float(rows[-1][1])  # the bar in progress: the reference price
        return closed[-n:]

    def history(self, symbol: str, n_bars: int) -> Bars:
        rows = self._candles(symbol, n_bars)
        ts_ns = np.array([r[0] for r in rows], dtype=np.int64) * 1_000_000
        ohlcv = np.array([r[1:6] for r in rows], dtype=np.float64)
        since = int(ts_ns[0] // 1_000_000) if len(rows) else None
        events = self._call.read(lambda: self.exchange.fetch_funding_rate_history(symbol, since),
                                 f"{symbol}: fetch_funding_rate_history")
        ev_ts = np.array([e["timestamp"] for e in events], dtype=np.int64) * 1_000_000
        ev_rate = np.array([e["fundingRate"] for e in events], dtype=np.float64)
        return Bars(ts_ns, ohlcv, funding_on_bars(ts_ns, self.bar_ms * 1_000_000, ev_ts, ev_rate))

    def last_bar(self, symbol: str) -> Bar:
        bars = self.history(symbol, 2)
        marks = self._candles(symbol, 2, price="mark")
        o = bars.ohlcv[-1]
        m = marks[-1] if marks and marks[-1][0] * 1_000_000 == bars.ts_ns[-1] else list(o[:4])
        m = m[1:5] if len(m) > 4 else m
        funding = 0.0 if bars.funding_rate is None else float(bars.funding_rate[-1])
        return Bar(int(bars.ts_ns[-1]), float(o[0]), float(o[3]), float(min(m)), float(max(m)), float(m[3]), funding)

    def reference_price(self, symbol: str) -> float:
        if symbol not in self._open:  # set by the last candle fetch (the bar in progress)
            self._candles(symbol, 1)
        return self._open[symbol]

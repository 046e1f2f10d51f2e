"""A fake Binance USDⓈ-M account behind ccxt's real ``binanceusdm`` class.

Markets come from the recorded ``exchangeInfo`` (tests/fixtures/vendor) through ccxt's own
parser, so precision, minimums and ``amount_to_precision`` are ccxt's. The account methods the
broker calls are overridden with a small simulated account that answers in ccxt's unified
structures and fails with ccxt's real exception classes, as scheduled in ``faults``:

``faults[method]`` is a list consumed one per call; an entry is an exception instance (raised
before anything happens), or for ``create_order`` one of the strings ``"timeout_placed"``,
``"timeout_not_placed"``, ``"5xx_placed"``, ``"429"``, ``"reject"``, ``"insufficient_margin"``,
``"partial"``; ``None`` answers normally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ccxt
import requests

VENDOR = Path(__file__).resolve().parents[2] / "fixtures" / "vendor"


class _ExchangeInfoSession(requests.Session):
    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if "exchangeInfo" not in url:
            raise AssertionError(f"unexpected HTTP request {url}")
        envelope = json.loads((VENDOR / "binanceusdm" / "exchangeInfo.json").read_text())
        r = requests.Response()
        r.status_code, r._content, r.url = 200, json.dumps(envelope["body"]).encode(), url
        r.headers.update(envelope["headers"])
        return r


class FakeBinanceUsdm(ccxt.binanceusdm):  # type: ignore[misc,name-defined]
    def __init__(self, prices: dict[str, float] | None = None, hedged: bool = False, taker_fee: float = 5e-4) -> None:
        super().__init__({"enableRateLimit": False})
        self.session = _ExchangeInfoSession()
        self.prices = dict(prices or {"BTC/USDT:USDT": 30_000.0, "ETH/USDT:USDT": 2_000.0})
        self.hedged = hedged
        self.taker_fee = taker_fee
        self.faults: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}
        self.orders: dict[str, dict[str, Any]] = {}   # by client order id
        self.qty: dict[str, float] = {}
        self.entry: dict[str, float] = {}
        self.leverage_set: dict[str, int] = {}
        self.margin_mode_set: dict[str, str] = {}
        self.leverage_override: int | None = None   # what fetch_leverage reports instead (a stuck setting)
        self.margin_override: str | None = None

    # --- fault plumbing ----------------------------------------------------------------------
    def _fault(self, method: str) -> Any:
        self.calls[method] = self.calls.get(method, 0) + 1
        queue = self.faults.get(method) or []
        fault = queue.pop(0) if queue else None
        if isinstance(fault, BaseException):
            raise fault
        return fault

    # --- account -------------------------------------------------------------------------------
    def fetch_position_mode(self, symbol: str | None = None, params: dict | None = None) -> dict[str, Any]:
        self._fault("fetch_position_mode")
        return {"info": {}, "hedged": self.hedged}

    def set_margin_mode(self, marginMode: str, symbol: str | None = None, params: dict | None = None) -> dict:  # noqa: N803
        self._fault("set_margin_mode")
        if self.margin_mode_set.get(symbol or "") == marginMode.lower():
            raise ccxt.MarginModeAlreadySet("binanceusdm {\"code\":-4046,\"msg\":\"No need to change margin type.\"}")
        self.margin_mode_set[symbol or ""] = marginMode.lower()
        return {"code": 200}

    def set_leverage(self, leverage: int, symbol: str | None = None, params: dict | None = None) -> dict:
        self._fault("set_leverage")
        self.leverage_set[symbol or ""] = int(leverage)
        return {"leverage": leverage, "symbol": symbol}

    def fetch_leverage(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        self._fault("fetch_leverage")
        lev = self.leverage_override or self.leverage_set.get(symbol, 20)
        return {"symbol": symbol, "longLeverage": lev, "shortLeverage": lev, "marginMode": None}

    def fetch_margin_mode(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        self._fault("fetch_margin_mode")
        return {"symbol": symbol, "marginMode": self.margin_override or self.margin_mode_set.get(symbol, "cross")}

    def fetch_balance(self, params: dict | None = None) -> dict[str, Any]:
        self._fault("fetch_balance")
        return {"total": {"USDT": 10_000.0}, "free": {"USDT": 10_000.0}}

    # --- orders --------------------------------------------------------------------------------
    def _order(self, symbol: str, side: str, amount: float, client_id: str, filled: float,
               reduce_only: bool) -> dict[str, Any]:
        price = self.prices[symbol]
        signed = filled if side == "buy" else -filled
        q0 = self.qty.get(symbol, 0.0)
        q1 = round(q0 + signed, 9)  # the exchange keeps exact decimals
        if q1 and (q0 == 0 or (q0 > 0) != (q1 > 0)):
            self.entry[symbol] = price
        elif q1 and abs(q1) > abs(q0):
            self.entry[symbol] = (q0 * self.entry[symbol] + signed * price) / q1
        self.qty[symbol] = q1
        order = {"id": str(len(self.orders) + 1), "clientOrderId": client_id, "symbol": symbol, "type": "market",
                 "side": side, "amount": amount, "filled": filled, "remaining": amount - filled,
                 "average": price if filled else None, "status": "closed" if filled == amount else "open",
                 "reduceOnly": reduce_only, "fee": {"cost": filled * price * self.taker_fee, "currency": "USDT"}}
        self.orders[client_id] = order
        return order

    def create_order(self, symbol: str, type: str, side: str, amount: float, price: float | None = None,  # noqa: A002
                     params: dict | None = None) -> dict[str, Any]:
        params = params or {}
        fault = self._fault("create_order")
        client_id = params["clientOrderId"]
        if client_id in self.orders:
            raise ccxt.InvalidOrder('binanceusdm {"code":-4116,"msg":"ClientOrderId is duplicated."}')
        if type != "market":
            raise ccxt.NotSupported("fake: market orders only")
        amount = float(self.amount_to_precision(symbol, amount))
        reduce_only = bool(params.get("reduceOnly"))
        q0 = self.qty.get(symbol, 0.0)
        if reduce_only and (q0 == 0 or (q0 > 0) == (side == "buy") or amount > abs(q0) + 1e-12):
            raise ccxt.InvalidOrder('binanceusdm {"code":-2022,"msg":"ReduceOnly Order is rejected."}')
        if fault == "timeout_not_placed":
            raise ccxt.RequestTimeout("binanceusdm POST https://fapi.binance.com/fapi/v1/order timed out")
        if fault == "429":
            raise ccxt.RateLimitExceeded('binanceusdm {"code":-1003,"msg":"Too many requests."}')
        if fault == "reject":
            raise ccxt.InvalidOrder('binanceusdm {"code":-1111,"msg":"Precision is over the maximum."}')
        if fault == "insufficient_margin":
            raise ccxt.InsufficientFunds('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}')
        filled = float(self.amount_to_precision(symbol, amount / 2)) if fault == "partial" else amount
        order = self._order(symbol, side, amount, client_id, filled, reduce_only)
        if fault == "timeout_placed":
            raise ccxt.RequestTimeout("binanceusdm POST https://fapi.binance.com/fapi/v1/order timed out")
        if fault == "5xx_placed":
            raise ccxt.ExchangeNotAvailable("binanceusdm 503 Service Unavailable")
        return dict(order)

    def fetch_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> dict[str, Any]:  # noqa: A002
        self._fault("fetch_order")
        cid = (params or {}).get("clientOrderId")
        if cid not in self.orders:
            raise ccxt.OrderNotFound('binanceusdm {"code":-2013,"msg":"Order does not exist."}')
        return dict(self.orders[cid])

    def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                          params: dict | None = None) -> list[dict[str, Any]]:
        self._fault("fetch_open_orders")
        return [dict(o) for o in self.orders.values() if o["status"] == "open" and o["symbol"] == symbol]

    def cancel_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> dict:  # noqa: A002
        self._fault("cancel_order")
        cid = (params or {}).get("clientOrderId")
        if cid not in self.orders or self.orders[cid]["status"] != "open":
            raise ccxt.OrderNotFound('binanceusdm {"code":-2011,"msg":"Unknown order sent."}')
        self.orders[cid]["status"] = "canceled"
        return dict(self.orders[cid])

    def fetch_positions(self, symbols: list[str] | None = None, params: dict | None = None) -> list[dict[str, Any]]:
        self._fault("fetch_positions")
        out = []
        for s, q in self.qty.items():
            if q and (symbols is None or s in symbols):
                lev = self.leverage_set.get(s, 20)
                out.append({"symbol": s, "contracts": abs(q), "contractSize": 1.0, "side": "long" if q > 0 else "short",
                            "entryPrice": self.entry[s], "initialMargin": abs(q) * self.entry[s] / lev,
                            "leverage": lev, "marginMode": self.margin_mode_set.get(s, "cross")})
        return out

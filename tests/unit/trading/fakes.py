"""A scriptable in-memory broker for the crash-safety tests: its "exchange" side survives a
simulated crash of the runner (it is a separate object), and faults are injected per order."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.trading.broker import OrderAck, OrderRequest, OrderState, Position
from app.trading.errors import AmbiguousOrderError, OrderNotFoundError, OrderRejectedError


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the runner catches it)."""


@dataclass
class FakeBroker:
    paper: bool = False
    faults: list[str] = field(default_factory=list)   # one per submit: "", crash_before_send, ...
    placed: dict[str, OrderRequest] = field(default_factory=dict)   # the exchange's orders
    sends: int = 0
    qty: dict[str, float] = field(default_factory=dict)

    def setup(self, symbols: list[str]) -> None:
        pass

    def submit(self, order: OrderRequest) -> OrderAck:
        self.sends += 1
        fault = self.faults.pop(0) if self.faults else ""
        if fault == "crash_before_send":
            raise Crash
        if fault == "timeout_not_placed":
            raise AmbiguousOrderError("read timeout")
        if fault == "reject":
            raise OrderRejectedError("insufficient margin")
        if order.client_id in self.placed:
            raise AssertionError(f"duplicate client order id {order.client_id}")
        self.placed[order.client_id] = order
        self.qty[order.symbol] = self.qty.get(order.symbol, 0.0) + order.qty
        if fault == "crash_after_send":
            raise Crash
        if fault == "timeout_placed":
            raise AmbiguousOrderError("read timeout")
        return self._ack(order)

    def _ack(self, order: OrderRequest) -> OrderAck:
        return OrderAck(order.client_id, f"x{len(self.placed)}", OrderState.FILLED, order.qty, 100.0, 0.01)

    def fetch_order(self, symbol: str, client_id: str) -> OrderAck:
        if client_id not in self.placed:
            raise OrderNotFoundError(client_id)
        return self._ack(self.placed[client_id])

    def positions(self, symbols: list[str]) -> dict[str, Position]:
        return {s: Position(s, q, 100.0, 10.0) for s, q in self.qty.items() if q and s in symbols}

    def open_orders(self, symbols: list[str]) -> list[OrderAck]:
        return []

    def cancel(self, symbol: str, client_id: str) -> None:
        pass

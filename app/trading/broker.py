"""The broker protocol and the records that cross it.

A broker executes market orders on one account and reports positions. Two implement it:
:class:`app.trading.paper.PaperBroker` (fills with :mod:`envs.core.costs`, the env's own
maths) and :class:`app.trading.ccxt_broker.CcxtBroker` (a ccxt exchange; the only module that
imports ccxt here). The runner never knows which one it talks to.

An order carries both what the policy asked (``level``: the env's target level, so the paper
broker sizes it at the fill exactly as the env does) and the signed quantity the runner sized
from the reference price with the same maths (what a real exchange receives).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class OrderState(enum.StrEnum):
    """Life of an order in the state store.

    PENDING: written, not yet sent (a crash here: never sent, or sent without an answer, so it
    is resolved like UNKNOWN). UNKNOWN: sent, outcome unknown (timeout). OPEN: acknowledged,
    not (fully) filled. FILLED, CANCELED, REJECTED, NOT_FOUND (resolution found no order
    with this client id: it never reached the exchange), SKIPPED (below the exchange minimum)."""

    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    NOT_FOUND = "NOT_FOUND"
    SKIPPED = "SKIPPED"

    @property
    def final(self) -> bool:
        return self not in (OrderState.PENDING, OrderState.UNKNOWN, OrderState.OPEN)


@dataclass(frozen=True)
class OrderRequest:
    """One market order. ``qty`` is signed (> 0 buys); ``level`` the env's target level (the
    paper broker re-sizes at the fill from it); ``reduce_only`` for closing legs."""

    client_id: str
    symbol: str
    qty: float
    level: float
    reduce_only: bool = False


@dataclass(frozen=True)
class OrderAck:
    """What the exchange said about an order: its id, state and what has filled so far."""

    client_id: str
    exchange_id: str | None
    state: OrderState
    filled_qty: float = 0.0
    avg_price: float | None = None
    fee_usd: float = 0.0


@dataclass(frozen=True)
class Fill:
    """An execution: signed ``qty`` at ``price``; ``fee_usd`` paid; ``ts_ns`` UTC."""

    client_id: str
    symbol: str
    ts_ns: int
    qty: float
    price: float
    fee_usd: float
    liquidation: bool = False


@dataclass
class Position:
    """An isolated position as the exchange reports it (``qty`` signed)."""

    symbol: str
    qty: float = 0.0
    entry_price: float = 0.0
    margin_usd: float = 0.0
    leverage: float | None = None
    margin_mode: str | None = None
    liquidation_price: float | None = None
    extra: dict = field(default_factory=dict)


class Broker(Protocol):
    """What the runner needs from a market (paper or live)."""

    paper: bool

    def setup(self, symbols: list[str]) -> None:
        """Check the account can trade ``symbols`` as configured (raise ExchangeSetupError)."""

    def normalize(self, order: OrderRequest, ref_price: float) -> OrderRequest | None:
        """``order`` as the market accepts it (precision), None when below its minimums."""

    def submit(self, order: OrderRequest) -> OrderAck:
        """Send a market order. AmbiguousOrderError when the outcome is unknown; never retried."""

    def fetch_order(self, symbol: str, client_id: str) -> OrderAck:
        """The order with this client id (OrderNotFoundError if the exchange has none)."""

    def positions(self, symbols: list[str]) -> dict[str, Position]:
        """Open positions by symbol (flat symbols may be absent)."""

    def open_orders(self, symbols: list[str]) -> list[OrderAck]:
        """Orders not yet final."""

    def cancel(self, symbol: str, client_id: str) -> None:
        """Cancel an open order."""

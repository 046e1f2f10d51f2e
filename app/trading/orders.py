"""Placing and resolving orders so that none is lost or duplicated across crashes.

The rule (hummingbot's): the client order id is written (PENDING) before the order is sent.
After that, whatever happens, the order is only ever *looked up* by that id, never re-sent:

==============================  ===============================================================
send outcome                    state
==============================  ===============================================================
acknowledged                    OPEN or FILLED (fills recorded)
refused by the exchange         REJECTED (nothing placed, definite)
timeout / network after send    UNKNOWN (it may exist): :func:`resolve` fetches it by client id
process killed before/after     PENDING: :func:`resolve` fetches it; not found -> NOT_FOUND
==============================  ===============================================================

A later bar's decision re-sizes from the positions the exchange reports, so an order that
never reached the exchange is replaced by the next decision, not resent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.trading.broker import Broker, OrderAck, OrderRequest, OrderState
from app.trading.errors import (
    AmbiguousOrderError,
    OrderNotFoundError,
    OrderRejectedError,
    RetryableError,
)
from app.trading.store import StateStore

log = logging.getLogger("raytrade.trading")


def client_id(account: str, decision_id: int, leg: int = 0) -> str:
    """A deterministic client order id (Binance: at most 36 of ``[.A-Za-z0-9:/_-]``)."""
    return f"rt-{account[:12]}-{decision_id}-{leg}"


def place(store: StateStore, broker: Broker, order: OrderRequest, decision_id: int | None) -> OrderAck | None:
    """Persist then send ``order``; returns the ack (None when the outcome is not known)."""
    if store.order(order.client_id) is not None:  # already written (a replayed bar): look it up, never resend
        return None
    store.add_order(order, decision_id)
    try:
        ack = broker.submit(order)
    except AmbiguousOrderError as exc:
        store.set_order(order.client_id, OrderState.UNKNOWN, error=str(exc))
        log.warning("order %s: outcome unknown (%s); resolving by client id", order.client_id, exc)
        return None
    except OrderRejectedError as exc:
        store.set_order(order.client_id, OrderState.REJECTED, error=str(exc))
        log.warning("order %s rejected: %s", order.client_id, exc)
        return None
    store.set_order(order.client_id, ack.state, ack=ack)
    return ack


@dataclass
class Resolution:
    """What :func:`resolve` found: ``adopted`` (sent after all: now known), ``not_found``
    (never reached the exchange) and ``still_unknown`` (the exchange could not be asked)."""

    adopted: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    still_unknown: list[str] = field(default_factory=list)
    acks: dict[str, OrderAck] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{len(self.adopted)} adopted, {len(self.not_found)} never placed, "
                f"{len(self.still_unknown)} still unknown")


def resolve(store: StateStore, broker: Broker, symbols: Iterable[str] | None = None) -> Resolution:
    """Look up every PENDING, UNKNOWN or OPEN order by its client id and record the outcome."""
    out = Resolution()
    wanted = None if symbols is None else set(symbols)
    for row in store.unresolved():
        if wanted is not None and row.symbol not in wanted:
            continue
        try:
            ack = broker.fetch_order(row.symbol, row.client_id)
        except OrderNotFoundError:
            if row.state in (OrderState.PENDING, OrderState.UNKNOWN):
                store.set_order(row.client_id, OrderState.NOT_FOUND, error="not found on the exchange by client id")
                out.not_found.append(row.client_id)
            else:  # an OPEN order the exchange forgot: treat as canceled
                store.set_order(row.client_id, OrderState.CANCELED, error="open order no longer on the exchange")
                out.adopted.append(row.client_id)
            continue
        except RetryableError as exc:
            log.warning("order %s: cannot resolve now (%s)", row.client_id, exc)
            out.still_unknown.append(row.client_id)
            continue
        store.set_order(row.client_id, ack.state, ack=ack)
        out.acks[row.client_id] = ack
        if row.state is not ack.state or row.state is OrderState.PENDING:
            out.adopted.append(row.client_id)
    return out

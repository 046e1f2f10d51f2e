"""The paper broker: the CryptoFutures env's step, one symbol at a time, as a broker.

Each symbol trades an isolated sub-account (:class:`Book`) holding exactly the env engine's
state; :func:`step_book` is :meth:`envs.crypto_futures.CryptoFuturesEngine.step` for one
position, written with the same :mod:`envs.core.costs` calls in the same order, so the same
bars and actions give the same floats (``tests/unit/trading/test_paper_parity.py`` proves it,
bit for bit). An order submitted at bar ``t``'s close fills at bar ``t+1``'s open (moved by
slippage, paying the fee) when :meth:`PaperBroker.on_bar` settles bar ``t+1``; then funding,
liquidation on the mark range and the mark at its close, as the env documents.

:func:`plan_order` is the sizing both brokers use: the env's target (``level`` times the budget,
in margin plus opening fee) priced at a reference price, as the signed quantity to trade.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.trading.broker import Fill, OrderAck, OrderRequest, OrderState, Position
from app.trading.errors import OrderNotFoundError
from envs.core import costs

RUIN_FRACTION = 1e-6  # the env's: equity at or below this share of the initial cash ends it


@dataclass(frozen=True)
class FuturesTerms:
    """The env's trading terms (from its config): what sizing and costs need."""

    leverage: float
    fee_rate: float
    slippage_rate: float
    maintenance_margin_rate: float
    liquidation_fee_rate: float
    min_level_change: float
    equity_sizing: bool
    initial_cash_usd: float
    levels: tuple[float, ...] | None = None   # discrete action -> level (None: continuous)

    @classmethod
    def from_env_config(cls, config: Any, initial_cash_usd: float | None = None) -> FuturesTerms:
        """From a :class:`envs.crypto_futures.CryptoFuturesConfig` (``initial_cash_usd``: the
        sub-account's budget, default the config's)."""
        cost = config.cost_model
        discrete = config.action_mode == "discrete"
        return cls(float(config.leverage), cost.fee_rate, cost.slippage_rate, cost.maintenance_margin_rate,
                   config.liquidation_fee_bps * costs.BPS, 0.0 if discrete else float(config.min_level_change),
                   config.sizing == "equity",
                   float(config.initial_cash_usd if initial_cash_usd is None else initial_cash_usd),
                   tuple(config.levels) if discrete else None)

    def level_of(self, action: Any) -> float:
        """The env's ``convert_action``: a discrete index -> its level; a continuous one clipped."""
        if self.levels is not None:
            index = int(action)
            if not 0 <= index < len(self.levels):
                raise ValueError(f"action {action!r}: outside 0..{len(self.levels) - 1}")
            return self.levels[index]
        value = float(np.asarray(action, dtype=np.float64).ravel()[0])
        return min(max(value, -1.0), 1.0)

    def trades(self, level: float, held: float) -> bool:
        """The env's rule: a new level trades when it moves more than the dead band, or closes."""
        return bool((abs(level - held) > self.min_level_change) | ((level == 0.0) & (held != 0.0)))


@dataclass
class Book:
    """One symbol's isolated sub-account, field for field the env engine's state."""

    cash_usd: float              # wallet minus entry notional: equity = cash + qty * mark
    qty: float = 0.0
    entry_price: float = 0.0
    margin_usd: float = 0.0
    mark_usd: float = 0.0
    level: float = 0.0
    bars_held: int = 0
    fees_paid_usd: float = 0.0
    funding_paid_usd: float = 0.0
    liquidated: bool = False

    @property
    def wallet_usd(self) -> float:
        return self.cash_usd + self.qty * self.entry_price

    @property
    def equity_usd(self) -> float:
        return self.cash_usd + self.qty * self.mark_usd

    def position(self) -> dict[str, float]:
        """The position an env spec's ``build_observation`` takes (scalars; wrap in ``[1]``)."""
        return {"qty": self.qty, "entry_price_usd": self.entry_price, "margin_usd": self.margin_usd,
                "equity_usd": self.equity_usd, "mark_price_usd": self.mark_usd, "bars_held": self.bars_held}


@dataclass(frozen=True)
class Bar:
    """One closed bar as the paper broker settles it (mark range and funding of the bar)."""

    ts_ns: int
    open: float
    close: float
    mark_low: float
    mark_high: float
    mark_close: float
    funding_rate: float = 0.0


@dataclass(frozen=True)
class StepEvents:
    """What settling one bar did (the env's ``info`` for that step)."""

    trade_qty: float
    fill_price: float
    fee_usd: float
    funding_usd: float
    liquidated: bool
    liquidation_price: float
    liquidation_fee_usd: float
    cover_usd: float
    ruined: bool
    liquidated_qty: float = 0.0


def plan_order(book: Book, level: float, ref_price: float, terms: FuturesTerms) -> float:
    """The signed quantity that moves ``book`` to ``level`` at ``ref_price``, sized as the env
    sizes (:func:`envs.core.costs.isolated_rebalance`, slippage and the free-balance cap
    included); 0.0 when the level does not trade."""
    if not terms.trades(level, book.level):
        return 0.0
    budget = book.cash_usd + book.qty * ref_price if terms.equity_sizing else terms.initial_cash_usd
    free = book.cash_usd + book.qty * book.entry_price - book.margin_usd
    out = costs.isolated_rebalance(True, level * budget, book.qty, book.entry_price, book.margin_usd, free, ref_price,
                                   terms.leverage, terms.fee_rate, terms.slippage_rate)
    return float(out[1])


def step_book(book: Book, level: float | None, bar: Bar, terms: FuturesTerms) -> tuple[Book, StepEvents]:
    """Settle ``bar`` on ``book`` with an order for ``level`` (None: none) filled at its open:
    :meth:`CryptoFuturesEngine.step` for one position, the same operations in the same order."""
    o1, mark_low, mark_high, mark_close, rate = bar.open, bar.mark_low, bar.mark_high, bar.mark_close, bar.funding_rate
    qty0, cash0, held = book.qty, book.cash_usd, book.level
    margin0, entry0 = book.margin_usd, book.entry_price
    trade = level is not None and terms.trades(level, held)
    lev = 0.0 if level is None else level
    budget = cash0 + qty0 * o1 if terms.equity_sizing else terms.initial_cash_usd
    if trade:
        qty, dq, price, notional, fee, margin, entry, cover = costs.isolated_rebalance(
            trade, lev * budget, qty0, entry0, margin0, cash0 + qty0 * entry0 - margin0, o1, terms.leverage,
            terms.fee_rate, terms.slippage_rate)
    else:
        qty, dq, price, notional, fee, margin, entry, cover = qty0, 0.0, o1, 0.0, 0.0, margin0, entry0, 0.0
    funding = costs.funding_usd(qty, mark_close, rate)
    margin = margin - funding
    liq = costs.liquidation_price(entry, qty, margin, terms.maintenance_margin_rate)
    hit = costs.liquidated(qty, liq, mark_low, mark_high)
    liq_notional = liq_fee = 0.0
    if hit is not False:
        liq_notional, liq_fee, liq_cover = costs.liquidation_close(qty, entry, margin, liq, terms.liquidation_fee_rate)
        liq_fee = hit * liq_fee
        cover = cover + hit * liq_cover
    cash = cash0 - notional - fee - funding - hit * liq_notional - liq_fee + cover
    alive = 1 - hit
    liq_qty = qty
    qty = qty * alive
    equity = cash + qty * mark_close
    same_side = ((qty0 > 0.0) & (qty > 0.0)) | ((qty0 < 0.0) & (qty < 0.0))
    new = Book(cash_usd=cash, qty=qty, entry_price=entry * alive, margin_usd=margin * alive, mark_usd=mark_close,
               level=(trade * lev + (1 - trade) * held) * alive, bars_held=int((qty != 0.0) * (same_side * book.bars_held + 1)),
               fees_paid_usd=book.fees_paid_usd + fee + liq_fee, funding_paid_usd=book.funding_paid_usd + funding,
               liquidated=bool(hit))
    ruined = equity <= RUIN_FRACTION * terms.initial_cash_usd
    return new, StepEvents(dq, price, fee, funding, bool(hit), liq if hit else 0.0, liq_fee, cover, bool(ruined),
                           liq_qty if hit else 0.0)


@dataclass
class _Pending:
    order: OrderRequest
    state: OrderState = OrderState.OPEN


@dataclass
class PaperBroker:
    """A simulated exchange over per-symbol :class:`Book` s (see the module docstring).

    ``books`` start flat with ``terms.initial_cash_usd`` each. :meth:`submit` queues one order
    per symbol (the last one wins, as the env takes one action per bar); :meth:`on_bar` fills it
    at the bar's open and settles the bar, returning the fills it made."""

    terms: FuturesTerms
    books: dict[str, Book] = field(default_factory=dict)
    paper: bool = True
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _orders: dict[str, OrderAck] = field(default_factory=dict)

    def book(self, symbol: str) -> Book:
        if symbol not in self.books:
            self.books[symbol] = Book(cash_usd=self.terms.initial_cash_usd)
        return self.books[symbol]

    def setup(self, symbols: list[str]) -> None:
        for s in symbols:
            self.book(s)

    def normalize(self, order: OrderRequest, ref_price: float) -> OrderRequest | None:
        return order  # the env trades any quantity

    def submit(self, order: OrderRequest) -> OrderAck:
        if order.symbol in self._pending:  # one order per bar and symbol, as the env
            old = self._pending.pop(order.symbol).order
            self._orders[old.client_id] = OrderAck(old.client_id, old.client_id, OrderState.CANCELED)
        self.book(order.symbol)
        self._pending[order.symbol] = _Pending(order)
        ack = OrderAck(order.client_id, order.client_id, OrderState.OPEN)
        self._orders[order.client_id] = ack
        return ack

    def fetch_order(self, symbol: str, client_id: str) -> OrderAck:
        if client_id not in self._orders:
            raise OrderNotFoundError(f"{symbol}: no paper order {client_id!r}")
        return self._orders[client_id]

    def positions(self, symbols: list[str]) -> dict[str, Position]:
        return {s: Position(s, b.qty, b.entry_price, b.margin_usd, self.terms.leverage, "isolated")
                for s, b in self.books.items() if s in symbols and b.qty != 0.0}

    def open_orders(self, symbols: list[str]) -> list[OrderAck]:
        return [self._orders[p.order.client_id] for s, p in self._pending.items() if s in symbols]

    def cancel(self, symbol: str, client_id: str) -> None:
        pending = self._pending.get(symbol)
        if pending is not None and pending.order.client_id == client_id:
            del self._pending[symbol]
            self._orders[client_id] = OrderAck(client_id, client_id, OrderState.CANCELED)

    def on_bar(self, symbol: str, bar: Bar) -> tuple[list[Fill], StepEvents]:
        """Settle ``bar`` for ``symbol``: the queued order (if any) fills at its open."""
        pending = self._pending.pop(symbol, None)
        book = self.book(symbol)
        level = None if pending is None else pending.order.level
        new, events = step_book(book, level, bar, self.terms)
        fills: list[Fill] = []
        if pending is not None:
            cid = pending.order.client_id
            if events.trade_qty != 0.0:
                fills.append(Fill(cid, symbol, bar.ts_ns, events.trade_qty, events.fill_price, events.fee_usd))
                self._orders[cid] = OrderAck(cid, cid, OrderState.FILLED, events.trade_qty, events.fill_price,
                                             events.fee_usd)
            else:  # nothing to move at the fill price (the free-balance cap, or already there)
                self._orders[cid] = OrderAck(cid, cid, OrderState.CANCELED)
        if events.liquidated:
            fills.append(Fill(f"liq-{symbol}-{bar.ts_ns}", symbol, bar.ts_ns, -events.liquidated_qty,
                              events.liquidation_price, events.liquidation_fee_usd, liquidation=True))
        self.books[symbol] = new
        return fills, events

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The books as plain data (persisted by the runner)."""
        return {s: vars(b).copy() for s, b in self.books.items()}

    def restore(self, books: dict[str, dict[str, Any]]) -> None:
        self.books = {s: replace(Book(cash_usd=0.0), **b) for s, b in books.items()}


# --- stocks (StockSwing): the cash account of :meth:`envs.core.engine.Engine.step` -------------

@dataclass
class StockBook:
    """A cash stock account, field for field the StockSwing engine's state."""

    cash_usd: float
    qty: float = 0.0
    close_usd: float = 0.0
    bars_held: int = 0
    fees_paid_usd: float = 0.0

    @property
    def equity_usd(self) -> float:
        return self.cash_usd + self.qty * self.close_usd


def step_stock(book: StockBook, trade: bool, weight: float, open_usd: float, close_usd: float, fee_rate: float,
               slippage_rate: float) -> tuple[StockBook, float, float, float]:
    """Fill ``(trade, weight)`` (the env's ``interpret_action`` of the policy's action) at the bar's
    open and mark at its close: :meth:`Engine.step` for one account, the same
    :func:`envs.core.costs.rebalance` call. Returns the new book, ``qty_delta``, fill price, fee."""
    qty0, cash0 = book.qty, book.cash_usd
    dq, price, notional, fee = costs.rebalance(trade, weight, cash0 + qty0 * open_usd, qty0, open_usd, fee_rate,
                                               slippage_rate)
    qty = qty0 + dq
    new = StockBook(cash_usd=cash0 - notional - fee, qty=qty, close_usd=close_usd,
                    bars_held=int((qty != 0.0) * ((qty0 != 0.0) * book.bars_held + 1)),
                    fees_paid_usd=book.fees_paid_usd + fee)
    return new, dq, price, fee

"""The trading runner: every bar close, decide with the policy and trade the difference.

One :meth:`Runner.step` per closed bar, for every symbol together:

1. **settle**: the paper broker fills the last bar's orders at this bar's open and settles it
   (funding, liquidation on the mark range, mark: the env's step); a live broker's orders are
   resolved by client id, fills recorded, positions read back from the exchange (the truth),
   and the bar's funding booked;
2. **record & guard**: equity snapshots; the kill switch (drawdown, daily loss, errors, stale
   data) flattens and stops;
3. **decide**: observations from the closed bars and each symbol's position with the env
   spec's builder (THE observation builder, as Serve and backtests), one batched policy step
   (:class:`app.policy.batched.BatchedPolicy`, recurrent state per symbol persisted);
4. **trade**: the action's level through the env's sizing (:func:`app.trading.paper.plan_order`)
   priced at the open of the bar in progress, as market orders written before they are sent
   (:mod:`app.trading.orders`). Live, a flip is a reduce-only close and an opening order.

Every decision is stored once per bar and symbol, so a restarted runner never decides (or
sends) twice for one bar; :meth:`Runner.start` first resolves what a crash left open and
reports what it adopted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app.trading.broker import Broker, Fill, OrderRequest, OrderState
from app.trading.feed import Feed
from app.trading.notify import Notifiers
from app.trading.orders import client_id, place, resolve
from app.trading.paper import Bar, Book, FuturesTerms, PaperBroker, plan_order
from app.trading.risk import RiskGuard, RiskLimits
from app.trading.store import StateStore
from envs.core.spec import EnvSpec

log = logging.getLogger("raytrade.trading")


class Policy(Protocol):
    """What the runner needs of :class:`app.policy.batched.BatchedPolicy`."""

    stateful: bool

    def step(self, obs: dict[str, np.ndarray], state: Any = None) -> tuple[Any, Any]: ...
    def stack_states(self, rows: list[Any]) -> Any: ...
    def split_state(self, state: Any, batch: int) -> list[dict[str, Any]]: ...


@dataclass
class StepReport:
    ts_ns: int
    actions: dict[str, Any] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)
    equity_usd: float = 0.0
    stop_reason: str | None = None


def apply_fill(book: Book, qty: float, price: float, fee_usd: float, leverage: float) -> Book:
    """A live fill on a book: realized PnL of the closed part and the fee go to the wallet; the
    entry moves only when the position grows (or flips). A new position (from flat, or a flip)
    starts at ``bars_held`` 0: the next bar's settlement counts it as 1, as the env does."""
    q0, e0 = book.qty, book.entry_price
    wallet = book.wallet_usd
    closing = q0 != 0 and (qty > 0) != (q0 > 0)
    closed = -np.sign(q0) * min(abs(qty), abs(q0)) if closing else 0.0  # signed qty traded to close
    wallet += -closed * (price - e0) - fee_usd
    q1 = q0 + qty
    if abs(q1) <= 1e-9 * max(abs(q0), abs(qty)):  # a close that differs only by float noise
        q1 = 0.0
    if q1 == 0:
        entry = 0.0
    elif q0 == 0 or (q1 > 0) != (q0 > 0):
        entry = price
    elif abs(q1) > abs(q0):
        entry = (q0 * e0 + qty * price) / q1
    else:
        entry = e0
    same_side = q1 != 0 and q0 != 0 and (q1 > 0) == (q0 > 0)
    return Book(cash_usd=wallet - q1 * entry, qty=q1, entry_price=entry, margin_usd=abs(q1) * entry / leverage,
                mark_usd=book.mark_usd, level=book.level, bars_held=book.bars_held if same_side else 0,
                fees_paid_usd=book.fees_paid_usd + fee_usd, funding_paid_usd=book.funding_paid_usd)


class Runner:
    """Trades ``symbols`` with ``policy`` through ``broker`` (see the module docstring)."""

    def __init__(self, *, spec: EnvSpec, terms: FuturesTerms, policy: Policy, broker: Broker, feed: Feed,
                 store: StateStore, symbols: list[str], account: str, bar_ns: int,
                 limits: RiskLimits | None = None, notifier: Notifiers | None = None,
                 clock_ns: Callable[[], int] | None = None) -> None:
        self.spec, self.terms, self.policy, self.broker, self.feed = spec, terms, policy, broker, feed
        self.store, self.symbols, self.account, self.bar_ns = store, list(symbols), account, bar_ns
        self.notifier = notifier or Notifiers()
        self.guard = RiskGuard(limits or RiskLimits())
        self.clock_ns = clock_ns
        self.history_bars = max(spec.full_history_bars(), spec.min_history_bars)
        self.books: dict[str, Book] = {}
        if isinstance(broker, PaperBroker):
            broker.books = self.books
        self.stopped: str | None = None

    # --- start & state ----------------------------------------------------------------------
    def start(self) -> str:
        """Restore state, set up the account, resolve what a crash left open; a report line."""
        saved = self.store.get("books") or {}
        for s in self.symbols:
            self.books[s] = Book(**saved[s]) if s in saved else Book(cash_usd=self.terms.initial_cash_usd)
        self.guard.restore(self.store.get("risk"))
        self.broker.setup(self.symbols)
        if isinstance(self.broker, PaperBroker):  # the simulated exchange's memory is the store
            for row in self.store.unresolved():
                if row.symbol in self.books:
                    self.broker.submit(OrderRequest(row.client_id, row.symbol, row.qty, row.level, row.reduce_only))
        res = resolve(self.store, self.broker, self.symbols)
        for cid in res.adopted:
            self._record_fill(cid)
        report = f"start: {len(saved)} book(s) restored; orders {res.summary()}"
        if not self.broker.paper:
            report += "; " + self._sync_positions()
        self.store.add_event("start", report)
        self.notifier.send("started", f"{self.account}: {report}")
        return report

    def _save(self, **extra: Any) -> None:
        self.store.put(books={s: vars(b).copy() for s, b in self.books.items()}, risk=self.guard.state(), **extra)

    def _sync_positions(self) -> str:
        """Live: the exchange's positions replace the books' (the wallet is kept)."""
        pos = self.broker.positions(self.symbols)
        changed = []
        for s in self.symbols:
            b = self.books[s]
            p = pos.get(s)
            qty, entry, margin = (p.qty, p.entry_price, p.margin_usd) if p is not None else (0.0, 0.0, 0.0)
            if not np.isclose(qty, b.qty, rtol=1e-9, atol=1e-12):
                changed.append(f"{s} {b.qty:g} -> {qty:g}")
            wallet = b.wallet_usd
            b.qty, b.entry_price, b.margin_usd = qty, entry, margin
            b.cash_usd = wallet - qty * entry
            if qty == 0:
                b.level, b.bars_held = 0.0, 0
        msg = "positions match the exchange" if not changed else "adopted exchange positions: " + ", ".join(changed)
        if changed:
            self.store.add_event("reconcile", msg)
        return msg

    def _record_fill(self, cid: str) -> None:
        row = self.store.order(cid)
        if (row is None or self.broker.paper or row.filled_qty == 0
                or row.state not in (OrderState.FILLED, OrderState.CANCELED)):
            return  # an open order's fill is recorded once it is final (filled, or canceled part-filled)
        fill = Fill(cid, row.symbol, 0, row.filled_qty, float(row.avg_price or 0.0), row.fee_usd)
        if self.store.add_fill(fill):
            self.books[row.symbol] = apply_fill(self.books[row.symbol], fill.qty, fill.price, fill.fee_usd,
                                                self.terms.leverage)

    # --- one bar ------------------------------------------------------------------------------
    def step(self) -> StepReport:
        """Settle, guard, decide and trade at the newest closed bar."""
        bars = {s: self.feed.last_bar(s) for s in self.symbols}
        ts = max(b.ts_ns for b in bars.values())
        report = StepReport(ts)
        try:
            self._settle(bars)
            reason = self._guard(bars, ts)
            if reason is None:
                self._decide_and_trade(bars, ts, report)
            ok = True
        except Exception as exc:  # noqa: BLE001 - counted by the kill switch; the loop goes on
            log.exception("step at %d failed", ts)
            self.store.add_event("error", f"{type(exc).__name__}: {exc}", ts)
            reason, ok = None, False
        reason = reason or self.guard.on_step(ok)
        report.equity_usd = sum(b.equity_usd for b in self.books.values())
        self._save(last_ts=ts)
        if reason is not None:
            self.kill(reason)
            report.stop_reason = reason
        return report

    def _settle(self, bars: dict[str, Bar]) -> None:
        settled = self.store.get("settled") or {}
        for s, bar in bars.items():
            if settled.get(s, -1) >= bar.ts_ns:
                continue  # a restart replaying a settled bar
            if isinstance(self.broker, PaperBroker):
                if s not in settled:  # the first bar: nothing was ordered before it
                    self.books[s].mark_usd = bar.mark_close
                else:
                    fills, events = self.broker.on_bar(s, bar)
                    for f in fills:
                        self.store.add_fill(f)
                    resolve(self.store, self.broker, [s])
                    if events.funding_usd:
                        self.store.add_funding(s, bar.ts_ns, bar.funding_rate, events.funding_usd)
                    if events.liquidated:
                        self.store.add_event("liquidation", f"{s}: liquidated at {events.liquidation_price:.6g}",
                                             bar.ts_ns)
                        self.notifier.send("liquidation", f"{s} liquidated at {events.liquidation_price:.6g}")
            else:
                res = resolve(self.store, self.broker, [s])
                for row in self.store.unresolved():  # a market order still open a bar later is stale:
                    if row.symbol == s and row.state is OrderState.OPEN:  # cancel what did not fill
                        self.broker.cancel(s, row.client_id)
                        self.store.add_event("cancel", f"{row.client_id}: open a bar after it was sent")
                res2 = resolve(self.store, self.broker, [s])
                for cid in [*res.adopted, *res.acks, *res2.adopted, *res2.acks]:
                    self._record_fill(cid)
                b = self.books[s]
                funding = b.qty * bar.mark_close * bar.funding_rate
                if funding and s in settled:
                    b.cash_usd -= funding
                    b.funding_paid_usd += funding
                    self.store.add_funding(s, bar.ts_ns, bar.funding_rate, funding)
                b.mark_usd = bar.mark_close
            settled[s] = bar.ts_ns
        if not self.broker.paper:
            self._sync_positions()
            for b in self.books.values():
                b.bars_held = int((b.qty != 0.0) * (b.bars_held + 1))
        self._save(settled=settled)

    def _guard(self, bars: dict[str, Bar], ts: int) -> str | None:
        total = 0.0
        for s, b in self.books.items():
            self.store.add_equity(bars[s].ts_ns, s, b.equity_usd, b.qty, b.mark_usd)
            total += b.equity_usd
        reason = self.guard.on_equity(ts, total)
        if reason is None and self.clock_ns is not None:
            reason = self.guard.on_data(min(b.ts_ns for b in bars.values()), self.clock_ns(), self.bar_ns)
        return reason

    def _observations(self) -> dict[str, np.ndarray]:
        rows = []
        for s in self.symbols:
            position = {k: np.array([v]) for k, v in self.books[s].position().items()}
            rows.append(self.spec.build_observation(self.feed.history(s, self.history_bars), position, None))
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}

    def _decide_and_trade(self, bars: dict[str, Bar], ts: int, report: StepReport) -> None:
        todo = [s for s in self.symbols if self.store.decision_id(bars[s].ts_ns, s) is None]
        if not todo:
            return
        obs = self._observations()
        saved = self.store.policy_state()
        state = self.policy.stack_states([saved.get(s) for s in self.symbols]) if self.policy.stateful else None
        out, new_state = self.policy.step(obs, state)
        if self.policy.stateful:
            rows = self.policy.split_state(new_state, len(self.symbols))
            self.store.put_policy_state({s: {k: np.asarray(v) for k, v in r.items()} for s, r in zip(self.symbols, rows,
                                                                                                      strict=True)})
        blocked = {r.symbol for r in self.store.unresolved() if r.state in (OrderState.PENDING, OrderState.UNKNOWN)}
        for i, s in enumerate(self.symbols):
            if s not in todo:
                continue
            action = out.actions[i]
            level = self.terms.level_of(action)
            book = self.books[s]
            ref = self.feed.reference_price(s)
            qty = plan_order(book, level, ref, self.terms)
            probs = out.action_probs[i] if getattr(out, "action_probs", None) is not None else None
            value = float(out.values[i]) if getattr(out, "values", None) is not None else None
            decision = self.store.add_decision(bars[s].ts_ns, s, action, level, probs, value, ref, qty)
            report.actions[s] = np.asarray(action).tolist()
            dust = not self.broker.paper and level == 0.0 and book.qty != 0.0  # a live residue to close
            if not (self.terms.trades(level, book.level) or dust):
                continue
            if s in blocked:  # an order whose fate is unknown may still fill: never stack another on it
                self.store.add_event("blocked", f"{s}: an earlier order is still unresolved; not trading this bar",
                                     bars[s].ts_ns)
                continue
            placed = False
            for order in self._legs(s, decision, qty, level, ref):
                report.orders.append(order.client_id)
                ack = place(self.store, self.broker, order, decision)
                row = self.store.order(order.client_id)
                placed |= row is not None and row.state is not OrderState.REJECTED
                if ack is not None and not self.broker.paper:
                    self._record_fill(order.client_id)
            if placed and not self.broker.paper:  # held level: a refused order is decided again next bar
                self.books[s].level = level

    def _legs(self, symbol: str, decision: int, qty: float, level: float, ref: float) -> list[OrderRequest]:
        """Paper: one order (sized again at the fill). Live: a reduce-only close of the part
        that reduces, then the opening part, each normalized to the market's precision."""
        if self.broker.paper:
            return [OrderRequest(client_id(self.account, decision), symbol, qty, level)]
        q0 = self.books[symbol].qty
        legs: list[tuple[float, bool]] = []
        if level == 0.0 and q0 != 0:  # a close is the whole position, whatever the rounding
            legs.append((-q0, True))
        elif q0 != 0 and (q0 + qty == 0 or (q0 + qty > 0) != (q0 > 0)):  # close (and maybe flip)
            legs.append((-q0, True))
            if q0 + qty != 0:
                legs.append((q0 + qty, False))
        elif q0 != 0 and abs(q0 + qty) < abs(q0):
            legs.append((qty, True))
        elif qty != 0:
            legs.append((qty, False))
        out = []
        for k, (q, reduce_only) in enumerate(legs):
            o = self.broker.normalize(OrderRequest(client_id(self.account, decision, k), symbol, q, level, reduce_only),
                                      ref)
            if o is not None:
                out.append(o)
        return out

    # --- stopping -----------------------------------------------------------------------------
    def close_all(self, reason: str, deadline_s: float = 60.0) -> bool:
        """Cancel open orders and flatten every position (live: reduce-only market orders, again
        until flat or ``deadline_s``; paper: closed at the reference price). True when flat."""
        for ack in self.broker.open_orders(self.symbols):
            self.broker.cancel(next((r.symbol for r in self.store.orders() if r.client_id == ack.client_id),
                                    self.symbols[0]), ack.client_id)
        n = len(list(self.store.events("close_all")))
        if isinstance(self.broker, PaperBroker):
            for s, b in self.books.items():
                if b.qty == 0:
                    continue
                ref = self.feed.reference_price(s)
                self.broker.submit(OrderRequest(f"rt-{self.account[:12]}-close{n}-{s[:8]}", s, -b.qty, 0.0, True))
                at = int(self.feed.last_bar(s).ts_ns) + self.bar_ns  # the open of the bar in progress
                fills, _ = self.broker.on_bar(s, Bar(at, ref, ref, ref, ref, ref, 0.0))
                for f in fills:
                    self.store.add_fill(f)
            flat = all(b.qty == 0 for b in self.books.values())
        else:
            end = time.monotonic() + deadline_s
            attempt = 0
            while True:
                self._sync_positions()
                open_ = {s: b.qty for s, b in self.books.items() if b.qty != 0}
                if not open_ or time.monotonic() > end:
                    break
                for s, q in open_.items():
                    o = OrderRequest(f"rt-{self.account[:12]}-x{n}-{attempt}-{s[:6]}", s, -q, 0.0, True)
                    place(self.store, self.broker, o, None)
                    self._record_fill(o.client_id)
                resolve(self.store, self.broker, self.symbols)
                attempt += 1
            flat = not open_
        for b in self.books.values():
            b.level, b.bars_held = 0.0, 0
        self._save()
        self.store.add_event("close_all", f"{reason}: {'flat' if flat else 'NOT flat at the deadline'}")
        return flat

    def kill(self, reason: str) -> None:
        """The kill switch: flatten, persist, notify, stop."""
        flat = self.close_all(f"kill switch: {reason}")
        self.stopped = reason
        self.store.add_event("kill", reason)
        self.notifier.send("kill switch", f"{self.account}: {reason}; {'flat' if flat else 'NOT FLAT'}")

    def stop(self, close: bool) -> None:
        if close:
            self.close_all("stop")
        self._save()
        self.store.add_event("stop", "closed all" if close else "positions left open")
        self.notifier.send("stopped", f"{self.account}: stopped ({'flat' if close else 'positions left open'})")

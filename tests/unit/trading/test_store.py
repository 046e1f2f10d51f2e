"""Crash safety of the state store: the client order id is written before sending; crashes
and ambiguous timeouts are resolved by client id, never by resending; one runner per database."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from app.trading.broker import Fill, OrderRequest, OrderState
from app.trading.errors import RunnerLockedError
from app.trading.orders import client_id, place, resolve
from app.trading.store import StateStore
from tests.unit.trading.fakes import Crash, FakeBroker

SYM = "BTC/USDT:USDT"


def order(decision: int, qty: float = 0.5) -> OrderRequest:
    return OrderRequest(client_id("acct", decision), SYM, qty, 1.0)


@pytest.mark.parametrize(("fault", "placed", "after_send", "after_resolve"), [
    ("crash_before_send", False, OrderState.PENDING, OrderState.NOT_FOUND),
    ("crash_after_send", True, OrderState.PENDING, OrderState.FILLED),
    ("timeout_placed", True, OrderState.UNKNOWN, OrderState.FILLED),
    ("timeout_not_placed", False, OrderState.UNKNOWN, OrderState.NOT_FOUND),
    ("reject", False, OrderState.REJECTED, OrderState.REJECTED),
    ("", True, OrderState.FILLED, OrderState.FILLED),
])
def test_faults_resolve_without_duplicates(tmp_path, fault, placed, after_send, after_resolve):
    exchange = FakeBroker(faults=[fault])
    db = tmp_path / "state.sqlite"
    store = StateStore(db, durable=False)
    decision = store.add_decision(1, SYM, 4, 1.0)
    o = order(decision)
    with contextlib.suppress(Crash):  # the process dies in the send
        place(store, exchange, o, decision)
    row = store.order(o.client_id)
    assert row is not None and row.state is after_send  # written before the send, whatever happened
    store.close()  # the process is gone; its lock goes with it
    store = StateStore(db, durable=False)  # restart
    # the restarted runner replays the same bar: the same decision id, and the order is not resent
    assert store.add_decision(1, SYM, 4, 1.0) == decision
    assert place(store, exchange, o, decision) is None
    res = resolve(store, exchange)
    assert store.order(o.client_id).state is after_resolve
    assert (o.client_id in exchange.placed) is placed
    assert exchange.sends == 1  # never sent twice
    assert not store.unresolved()
    assert (o.client_id in res.adopted) == (placed and after_send is not OrderState.FILLED)
    store.close()


def test_random_fault_sequences_never_duplicate_or_lose(tmp_path):
    rng = np.random.default_rng(7)
    kinds = ["", "", "crash_before_send", "crash_after_send", "timeout_placed", "timeout_not_placed", "reject"]
    exchange = FakeBroker()
    db = tmp_path / "s.sqlite"
    store = StateStore(db, durable=False)
    for bar in range(60):
        exchange.faults = [kinds[rng.integers(len(kinds))]]
        decision = store.add_decision(bar, SYM, 0, 0.0)
        try:
            place(store, exchange, order(decision, float(rng.normal())), decision)
        except Crash:
            store.close()
            store = StateStore(db, durable=False)
        if rng.random() < 0.3 or bar == 59:
            resolve(store, exchange)
    rows = store.orders()
    assert len(rows) == 60 and not store.unresolved()
    on_exchange = {r.client_id for r in rows if r.state is OrderState.FILLED}
    assert on_exchange == set(exchange.placed)  # 0 lost: every placed order is known as placed
    assert exchange.sends == 60  # 0 duplicates: one send per order
    store.close()


def test_second_runner_is_locked_out(tmp_path):
    with StateStore(tmp_path / "a.sqlite"):
        with pytest.raises(RunnerLockedError):
            StateStore(tmp_path / "a.sqlite")
        reader = StateStore(tmp_path / "a.sqlite", lock=False)  # reports read without the lock
        reader.close()


def test_state_round_trips(tmp_path):
    with StateStore(tmp_path / "a.sqlite") as store:
        store.put(last_ts={"X": 5}, books={"X": {"qty": 1.5}})
        store.put_policy_state({"X": {"h": np.arange(4.0)}, "Y/Z:W": {"h": np.ones(2)}})
        assert store.add_fill(Fill("c1", "X", 10, 1.0, 2.0, 0.1))
        assert not store.add_fill(Fill("c1", "X", 10, 1.0, 2.0, 0.1))  # seen again on reconciliation
    with StateStore(tmp_path / "a.sqlite") as store:
        assert store.get("last_ts") == {"X": 5} and store.get("books")["X"]["qty"] == 1.5
        state = store.policy_state()
        np.testing.assert_array_equal(state["X"]["h"], np.arange(4.0))
        assert set(state) == {"X", "Y/Z:W"} and len(store.fills()) == 1

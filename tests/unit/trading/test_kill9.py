"""kill -9 of a real runner process between persisting an order and sending it, then of the next
one between the exchange placing an order and the answer; a third process on the same database
resolves both: 0 duplicate and 0 lost orders, and the books equal the exchange's positions.
(Three Python processes: a few seconds of CPU, more on a loaded machine.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.trading.broker import OrderState
from app.trading.store import StateStore

ROOT = Path(__file__).resolve().parents[3]


def run(db: Path, state: Path, fault: str, steps: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.unit.trading.kill_runner", str(db), str(state), fault,
                           str(steps)], cwd=ROOT, capture_output=True, text=True, timeout=180)


def pending(db: Path) -> str:
    with StateStore(db, lock=False) as s:
        rows = [r for r in s.orders() if r.state is OrderState.PENDING]
    assert len(rows) == 1  # written before the send, then the process died
    return rows[0].client_id


@pytest.mark.slow
def test_kill9_between_persist_and_send_and_between_send_and_ack(tmp_path):
    db, state = tmp_path / "s.sqlite", tmp_path / "exchange.json"
    first = run(db, state, "kill_before_send", 3)
    assert first.returncode == -9, first.stderr[-2000:]
    never_sent = pending(db)
    assert never_sent not in json.loads(state.read_text())["orders"]
    second = run(db, state, "kill_after_send", 3)  # the lock died with the first process
    assert second.returncode == -9, second.stderr[-2000:]
    assert "1 never placed" in second.stdout
    sent = pending(db)
    assert sent in json.loads(state.read_text())["orders"]
    third = run(db, state, "none", 4)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "1 adopted" in third.stdout
    exchange = json.loads(state.read_text())
    with StateStore(db, lock=False) as s:
        rows = s.orders()
        books = s.get("books")
        assert s.order(never_sent).state is OrderState.NOT_FOUND and s.order(sent).state is OrderState.FILLED
    assert not [r for r in rows if r.state in (OrderState.PENDING, OrderState.UNKNOWN)]
    assert not any("duplicated" in (r.error or "") for r in rows)  # 0 duplicates
    known = {r.client_id for r in rows if r.state in (OrderState.FILLED, OrderState.OPEN)}
    assert known == set(exchange["orders"]) and len(known) >= 3  # 0 lost
    for symbol, qty in exchange["qty"].items():
        assert books[symbol]["qty"] == pytest.approx(qty, abs=1e-9)

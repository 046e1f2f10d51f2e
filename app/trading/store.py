"""The trader's state: one SQLite database per account (WAL journal, one writer, a file lock).

What is persisted, and when:

* every decision (bar, symbol, action, level, probabilities, value) before any order for it;
* every order, with its client order id, BEFORE it is sent (state PENDING), then its outcome:
  OPEN / FILLED / REJECTED, or UNKNOWN when the send failed ambiguously (a timeout after the
  request left); PENDING and UNKNOWN orders are resolved by fetching them by client id
  (:meth:`StateStore.unresolved`), never by sending again;
* fills, funding payments, equity snapshots, and events (reconciliation, kill switch, stop);
* the runner's state: per-symbol books, last bar, and the policy's recurrent state (numpy
  arrays in an ``.npz`` blob), so a restart continues where it stopped.

Every write is its own transaction (``with self._db``), committed before the call returns, so
a process killed at any point leaves the database consistent. :class:`StateStore` takes a
:class:`filelock.FileLock` on ``<db>.lock`` for its whole life: a second runner on the same
database fails at once (:class:`~app.trading.errors.RunnerLockedError`).
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from app.trading.broker import Fill, OrderAck, OrderRequest, OrderState
from app.trading.errors import RunnerLockedError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL, action TEXT NOT NULL,
  level REAL NOT NULL, probs TEXT, value REAL, ref_price REAL, planned_qty REAL, created_ns INTEGER NOT NULL,
  UNIQUE (ts_ns, symbol));
CREATE TABLE IF NOT EXISTS orders (
  client_id TEXT PRIMARY KEY, decision_id INTEGER, symbol TEXT NOT NULL, qty REAL NOT NULL, level REAL NOT NULL,
  reduce_only INTEGER NOT NULL, state TEXT NOT NULL, exchange_id TEXT, filled_qty REAL DEFAULT 0,
  avg_price REAL, fee_usd REAL DEFAULT 0, error TEXT, created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
  id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL, symbol TEXT NOT NULL, ts_ns INTEGER NOT NULL,
  qty REAL NOT NULL, price REAL NOT NULL, fee_usd REAL NOT NULL, liquidation INTEGER NOT NULL,
  UNIQUE (client_id, ts_ns, liquidation));
CREATE TABLE IF NOT EXISTS funding (
  symbol TEXT NOT NULL, ts_ns INTEGER NOT NULL, rate REAL NOT NULL, amount_usd REAL NOT NULL,
  PRIMARY KEY (symbol, ts_ns));
CREATE TABLE IF NOT EXISTS equity (
  ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL, equity_usd REAL NOT NULL, qty REAL NOT NULL,
  mark_usd REAL NOT NULL, PRIMARY KEY (ts_ns, symbol));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
"""
UNRESOLVED = (OrderState.PENDING.value, OrderState.UNKNOWN.value, OrderState.OPEN.value)


@dataclass(frozen=True)
class OrderRow:
    client_id: str
    decision_id: int | None
    symbol: str
    qty: float
    level: float
    reduce_only: bool
    state: OrderState
    exchange_id: str | None
    filled_qty: float
    error: str | None
    avg_price: float | None = None
    fee_usd: float = 0.0


def _now_ns() -> int:
    return time.time_ns()


class StateStore:
    """The state database of one account (see the module docstring). Use as a context manager
    or call :meth:`close`; ``lock=False`` opens it for reports (no lock taken).

    ``durable`` (live trading): every commit is synced to disk (``synchronous=FULL``), so a
    written order survives a power cut. Without it (paper, tests) WAL's ``NORMAL``: commits
    survive a killed process, the last ones may not survive a power cut; about 10x faster."""

    def __init__(self, path: Path | str, *, lock: bool = True, durable: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: FileLock | None = None
        if lock:
            self._lock = FileLock(str(self.path) + ".lock")
            try:
                self._lock.acquire(timeout=0)
            except Timeout as exc:
                raise RunnerLockedError(f"{self.path}: another runner holds {self._lock.lock_file}") from exc
        self._db = sqlite3.connect(str(self.path), isolation_level="DEFERRED", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        with self._db:
            self._db.executescript(SCHEMA)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()

    # --- meta & runner state ---------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def put(self, **values: Any) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in values.items()])

    def put_policy_state(self, states: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Recurrent state per symbol (numpy arrays) as one ``.npz`` blob."""
        buf = io.BytesIO()
        arrays = {f"{s}\x1f{k}": np.asarray(v) for s, st in states.items() for k, v in st.items()}
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types the first ** as allow_pickle
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('policy_state', ?)",
                             (json.dumps(buf.getvalue().hex()),))

    def policy_state(self) -> dict[str, dict[str, np.ndarray]]:
        raw = self.get("policy_state")
        if raw is None:
            return {}
        out: dict[str, dict[str, np.ndarray]] = {}
        with np.load(io.BytesIO(bytes.fromhex(raw))) as z:
            for name in z.files:
                symbol, key = name.split("\x1f")
                out.setdefault(symbol, {})[key] = z[name]
        return out

    # --- decisions & orders --------------------------------------------------------------------
    def add_decision(self, ts_ns: int, symbol: str, action: Any, level: float, probs: Any = None,
                     value: float | None = None, ref_price: float | None = None, planned_qty: float | None = None) -> int:
        """Record a decision (one per bar and symbol); returns its id (the existing one on a
        replayed bar, so a restart never decides twice for one bar)."""
        with self._db:
            row = self._db.execute("SELECT id FROM decisions WHERE ts_ns = ? AND symbol = ?", (ts_ns, symbol)).fetchone()
            if row is not None:
                return int(row["id"])
            cur = self._db.execute(
                "INSERT INTO decisions (ts_ns, symbol, action, level, probs, value, ref_price, planned_qty, created_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ts_ns, symbol, json.dumps(np.asarray(action).tolist()), float(level),
                 None if probs is None else json.dumps(np.asarray(probs).tolist()), value, ref_price, planned_qty,
                 _now_ns()))
            return int(cur.lastrowid or 0)

    def decision_id(self, ts_ns: int, symbol: str) -> int | None:
        row = self._db.execute("SELECT id FROM decisions WHERE ts_ns = ? AND symbol = ?", (ts_ns, symbol)).fetchone()
        return None if row is None else int(row["id"])

    def add_order(self, order: OrderRequest, decision_id: int | None) -> None:
        """Write the order as PENDING: call this BEFORE sending it."""
        now = _now_ns()
        with self._db:
            self._db.execute(
                "INSERT INTO orders (client_id, decision_id, symbol, qty, level, reduce_only, state, created_ns,"
                " updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order.client_id, decision_id, order.symbol, float(order.qty), float(order.level),
                 int(order.reduce_only), OrderState.PENDING.value, now, now))

    def set_order(self, client_id: str, state: OrderState, *, ack: OrderAck | None = None, error: str | None = None) -> None:
        with self._db:
            if ack is not None:
                self._db.execute(
                    "UPDATE orders SET state = ?, exchange_id = ?, filled_qty = ?, avg_price = ?, fee_usd = ?,"
                    " error = COALESCE(?, error), updated_ns = ? WHERE client_id = ?",
                    (state.value, ack.exchange_id, ack.filled_qty, ack.avg_price, ack.fee_usd, error, _now_ns(),
                     client_id))
            else:
                self._db.execute("UPDATE orders SET state = ?, error = COALESCE(?, error), updated_ns = ?"
                                 " WHERE client_id = ?", (state.value, error, _now_ns(), client_id))

    def order(self, client_id: str) -> OrderRow | None:
        row = self._db.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,)).fetchone()
        return None if row is None else _order_row(row)

    def orders(self, symbol: str | None = None) -> list[OrderRow]:
        return [_order_row(r) for r in self._select("orders", symbol, "created_ns, client_id")]

    def unresolved(self) -> list[OrderRow]:
        """Orders whose outcome is not final (PENDING, UNKNOWN, OPEN)."""
        marks = ",".join("?" * len(UNRESOLVED))
        return [_order_row(r) for r in self._db.execute(
            f"SELECT * FROM orders WHERE state IN ({marks}) ORDER BY created_ns", UNRESOLVED)]

    def orders_of_decision(self, decision_id: int) -> list[OrderRow]:
        return [_order_row(r) for r in self._db.execute(
            "SELECT * FROM orders WHERE decision_id = ? ORDER BY client_id", (decision_id,))]

    # --- fills, funding, equity, events ---------------------------------------------------------
    def add_fill(self, fill: Fill) -> bool:
        """Record a fill once (a fill seen again on reconciliation is ignored); True if new."""
        with self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO fills (client_id, symbol, ts_ns, qty, price, fee_usd, liquidation)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (fill.client_id, fill.symbol, fill.ts_ns, fill.qty, fill.price, fill.fee_usd, int(fill.liquidation)))
            return cur.rowcount == 1

    def fills(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._select("fills", symbol, "ts_ns, id")]

    def add_funding(self, symbol: str, ts_ns: int, rate: float, amount_usd: float) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO funding VALUES (?, ?, ?, ?)", (symbol, ts_ns, rate, amount_usd))

    def funding(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._select("funding", symbol, "ts_ns")]

    def add_equity(self, ts_ns: int, symbol: str, equity_usd: float, qty: float, mark_usd: float) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO equity VALUES (?, ?, ?, ?, ?)",
                             (ts_ns, symbol, equity_usd, qty, mark_usd))

    def equity(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._select("equity", symbol, "ts_ns, symbol")]

    def decisions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._select("decisions", symbol, "ts_ns, symbol")]

    def add_event(self, kind: str, message: str, ts_ns: int | None = None) -> None:
        with self._db:
            self._db.execute("INSERT INTO events (ts_ns, kind, message) VALUES (?, ?, ?)",
                             (_now_ns() if ts_ns is None else ts_ns, kind, message))

    def events(self, kind: str | None = None) -> Iterator[dict[str, Any]]:
        q, args = "SELECT * FROM events", []
        if kind is not None:
            q, args = q + " WHERE kind = ?", [kind]
        yield from (dict(r) for r in self._db.execute(q + " ORDER BY id", args).fetchall())

    def _select(self, table: str, symbol: str | None, order: str) -> list[sqlite3.Row]:
        q, args = f"SELECT * FROM {table}", []
        if symbol is not None:
            q, args = q + " WHERE symbol = ?", [symbol]
        return self._db.execute(f"{q} ORDER BY {order}", args).fetchall()


def _order_row(r: sqlite3.Row) -> OrderRow:
    return OrderRow(r["client_id"], r["decision_id"], r["symbol"], r["qty"], r["level"], bool(r["reduce_only"]),
                    OrderState(r["state"]), r["exchange_id"], r["filled_qty"] or 0.0, r["error"], r["avg_price"],
                    r["fee_usd"] or 0.0)

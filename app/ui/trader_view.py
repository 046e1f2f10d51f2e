"""The live trader's state for the dashboard, read from its SQLite database, read-only.

``app.ui`` may not import ``app.trading``, so this module reads the trader's tables directly
(the schema of ``app/trading/store.py``: ``meta``, ``decisions``, ``orders``, ``fills``,
``equity`` per symbol book, ``events``) through a ``mode=ro`` connection: the dashboard can
never write to, lock or corrupt a running trader's state (WAL lets it read while the trader
writes). A table or column this version does not know reads as absent, with a note, rather
than failing the page. Databases are ``<state dir>/<account>.sqlite`` (the trader's default).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from app.ui.dashboard_data import NotFound, json_ready

DEFAULT_STATE_DIR = Path("trading_state")
LIMIT = 50
EQUITY_POINTS = 5000


def accounts(state_dir: Path) -> list[str]:
    return sorted(p.stem for p in state_dir.glob("*.sqlite")) if state_dir.is_dir() else []


def _query(con: sqlite3.Connection, sql: str, args: tuple = (), notes: list[str] | None = None) -> list[dict]:
    try:
        return [dict(r) for r in con.execute(sql, args).fetchall()]
    except sqlite3.OperationalError as exc:  # a table or column this reader does not know
        if notes is not None:
            notes.append(f"{exc}")
        return []


def snapshot(state_dir: Path, account: str, limit: int = LIMIT) -> dict[str, Any]:
    """Positions and equity per symbol book, the account's equity curve, the latest orders (with
    their states), decisions and events, and whether the kill switch has tripped."""
    path = state_dir / f"{account}.sqlite"
    if account not in accounts(state_dir):
        raise NotFound(f"no trader state {path} (accounts: {accounts(state_dir)})")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
    con.row_factory = sqlite3.Row
    notes: list[str] = []
    try:
        books = _query(con, "SELECT e.symbol, e.ts_ns, e.equity_usd, e.qty, e.mark_usd FROM equity e JOIN "
                            "(SELECT symbol, MAX(ts_ns) AS ts FROM equity GROUP BY symbol) m "
                            "ON e.symbol = m.symbol AND e.ts_ns = m.ts ORDER BY e.symbol", (), notes)
        curve = _query(con, "SELECT ts_ns, SUM(equity_usd) AS equity_usd FROM equity GROUP BY ts_ns "
                            "ORDER BY ts_ns DESC LIMIT ?", (EQUITY_POINTS,), notes)[::-1]
        orders = _query(con, "SELECT client_id, symbol, qty, level, reduce_only, state, filled_qty, avg_price, "
                             "fee_usd, error, created_ns, updated_ns FROM orders ORDER BY updated_ns DESC LIMIT ?",
                        (limit,), notes)
        states = {r["state"]: r["n"] for r in _query(con, "SELECT state, COUNT(*) AS n FROM orders GROUP BY state",
                                                     (), notes)}
        decisions = _query(con, "SELECT ts_ns, symbol, action, level, probs, value, ref_price FROM decisions "
                                "ORDER BY ts_ns DESC, id DESC LIMIT ?", (limit,), notes)
        for d in decisions:
            with contextlib.suppress(ValueError):  # not JSON: shown as stored
                d["probs"] = json.loads(d["probs"]) if d.get("probs") else None
        events = _query(con, "SELECT ts_ns, kind, message FROM events ORDER BY id DESC LIMIT ?", (limit,), notes)
        kills = _query(con, "SELECT ts_ns, message FROM events WHERE kind = 'kill' ORDER BY id DESC LIMIT 1",
                       (), notes)
        meta = {r["key"]: r["value"] for r in _query(con, "SELECT key, value FROM meta WHERE key != 'policy_state'",
                                                     (), notes)}
    finally:
        con.close()
    return json_ready({"account": account, "path": str(path), "positions": books, "equity_curve": curve,
                   "equity_usd": sum(b["equity_usd"] for b in books) if books else None,
                   "orders": orders, "order_states": states, "decisions": decisions, "events": events,
                   "kill_switch": {"tripped": bool(kills), "ts_ns": kills[0]["ts_ns"] if kills else None,
                                   "reason": kills[0]["message"] if kills else None},
                   "meta": meta, "notes": notes})

"""The game's leaderboard: one SQLite file, one row per finished game (WAL, so a dashboard may
read it while a game writes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(".raytrade") / "leaderboard.sqlite"
COLUMNS = ("played_at", "player", "market", "symbol", "start", "end", "bars", "player_return",
           "agent_return", "buy_hold_return", "index_return", "player_trades", "run", "seed", "png")
_SCHEMA = """CREATE TABLE IF NOT EXISTS games (
  id INTEGER PRIMARY KEY AUTOINCREMENT, played_at TEXT NOT NULL, player TEXT NOT NULL, market TEXT NOT NULL,
  symbol TEXT NOT NULL, start TEXT NOT NULL, "end" TEXT NOT NULL, bars INTEGER NOT NULL,
  player_return REAL NOT NULL, agent_return REAL, buy_hold_return REAL NOT NULL, index_return REAL,
  player_trades INTEGER NOT NULL, run TEXT, seed INTEGER, png TEXT)"""


class Leaderboard:
    def __init__(self, path: Path | str = DEFAULT_PATH) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(_SCHEMA)
        return con

    def add(self, result: Mapping[str, Any], *, player: str = "player", run: str | None = None,
            png: str | None = None) -> int:
        """Store a finished game's :meth:`~app.ui.game.GameSession.result`; returns its id."""
        row = {"played_at": datetime.now(UTC).isoformat(timespec="seconds"), "player": player, "run": run,
               "png": png} | {k: result.get(k) for k in COLUMNS if k in result}
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        con = self._connect()
        try:
            with con:
                cur = con.execute(f"INSERT INTO games ({names}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                  [row.get(c) for c in COLUMNS])
            return int(cur.lastrowid or 0)
        finally:
            con.close()

    def top(self, n: int = 10) -> list[dict[str, Any]]:
        """The best ``n`` games by the player's excess over buy-and-hold."""
        if not self.path.is_file():
            return []
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute("SELECT * FROM games ORDER BY player_return - buy_hold_return DESC, id LIMIT ?",
                               (int(n),)).fetchall()
        finally:
            con.close()
        return [dict(r) for r in rows]

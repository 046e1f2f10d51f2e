from __future__ import annotations

import sqlite3

from app.ui.leaderboard import Leaderboard


def _result(player: float, bh: float, symbol: str = "AAA") -> dict:
    return {"symbol": symbol, "market": "stock", "start": "2010-01-04", "end": "2010-06-01", "bars": 100,
            "player_return": player, "agent_return": None, "buy_hold_return": bh, "index_return": 0.01,
            "player_trades": 3, "seed": 1}


def test_games_are_ranked_by_excess_over_buy_and_hold(tmp_path):
    board = Leaderboard(tmp_path / "lb" / "board.sqlite")
    assert board.top() == []
    board.add(_result(0.10, 0.20, "AAA"), player="ann")
    best = board.add(_result(0.05, -0.10, "BBB"), player="bob", run="demo-1", png="x.png")
    board.add(_result(0.00, 0.00, "CCC"))
    top = board.top(2)
    assert [r["symbol"] for r in top] == ["BBB", "CCC"] and top[0]["id"] == best
    assert top[0]["run"] == "demo-1" and top[0]["player"] == "bob" and top[0]["agent_return"] is None
    with sqlite3.connect(board.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT COUNT(*) FROM games").fetchone()[0] == 3

"""``raytrade play --script``: a game on a small store without a window; leaderboard and PNG."""

from __future__ import annotations

from typer.testing import CliRunner

from app.cli import app
from app.data.schema import DatasetKey
from app.data.store import ParquetStore
from app.ui.leaderboard import Leaderboard
from tests.unit.ui.helpers import frame


def test_play_a_scripted_game_on_a_store(tmp_path):
    store = ParquetStore(tmp_path / "store")
    store.write(DatasetKey("stooq", "index", "1d"), frame(("^GSPC",), n_bars=260, seed=9))
    store.write(DatasetKey("stooq", "stock", "1d"), frame(("AAA", "BBB"), n_bars=260))
    board = tmp_path / "board.sqlite"
    result = CliRunner().invoke(app, [
        "play", "--store", str(store.root), "--seed", "1", "--bars", "20", "--view", "30",
        "--leaderboard", str(board), "--out", str(tmp_path / "games"), "--player", "tester",
        "--script", "buy,week,sell,next,end"])
    assert result.exit_code == 0, result.output
    assert "you " in result.output and "buy & hold" in result.output
    rows = Leaderboard(board).top()
    assert len(rows) == 1 and rows[0]["player"] == "tester" and rows[0]["bars"] == 20
    assert rows[0]["player_trades"] == 2 and rows[0]["symbol"] in ("AAA", "BBB")
    pngs = list((tmp_path / "games").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 20_000 and str(pngs[0]) == rows[0]["png"]


def test_an_unknown_move_is_refused_before_any_data_is_read(tmp_path):
    result = CliRunner().invoke(app, ["play", "--store", str(tmp_path / "no-store"), "--script", "buy,jump",
                                      "--leaderboard", str(tmp_path / "b.sqlite"), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "jump" in result.output and "no store" not in result.output

"""The game window driven by matplotlib key events on the Agg backend (no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.backend_bases import KeyEvent  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from app.ui.game import GameSession  # noqa: E402
from app.ui.game_view import GameView  # noqa: E402
from tests.unit.ui.helpers import ScriptedPolicy, market_and_index  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return market_and_index()


def _press(view: GameView, key: str) -> None:
    canvas = view.fig.canvas
    canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", canvas, key=key))


def _view(data, ended: list, **kw) -> GameView:
    market, index = data
    kw.setdefault("env_config", {})
    game = GameSession(market, index, env_id="raytrade/StockSwing-v0", seed=2,
                       play_bars=kw.pop("play_bars", 15), view_bars=30, **kw)
    return GameView(game, figure=Figure(figsize=(10, 7)), on_end=ended.append)


def test_keys_play_the_game_and_the_end_screen_reveals_the_symbol(data, tmp_path):
    ended: list = []
    view = _view(data, ended)
    g = view.game
    assert "???" in view.fig._suptitle.get_text() and g.symbol not in view.fig._suptitle.get_text()
    _press(view, "b")
    assert g.position_label == "long" and g.step_count == 1
    _press(view, "right")
    _press(view, "up")  # a week: 5 bars
    assert g.step_count == 7
    _press(view, "s")
    assert g.position_label == "flat" and [m.side for m in g.player.marks] == ["buy", "sell"]
    _press(view, "x")  # not a game key
    assert g.step_count == 8 and not ended
    # the price axis shows the player's entry and exit as scatter marks
    labels = {c.get_label() for c in view.ax_price.collections}
    assert {"player buy", "player sell"} <= labels
    _press(view, "e")
    assert g.done and g.step_count == 15 and ended == [view]
    title = view.fig._suptitle.get_text()
    assert g.symbol in title and g.result()["start"] in title and "buy & hold" in title
    _press(view, "b")  # after the end: nothing moves, on_end is not called again
    assert len(ended) == 1 and len(g.player.marks) == 2
    png = view.save_png(tmp_path / "end.png")
    with Image.open(png) as img:
        assert img.size == (900, 630)
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 50  # drawn, not blank


def test_the_agent_is_shown_live_or_only_at_the_end(data):
    def factory(space):
        return ScriptedPolicy(int(space.n), buy_steps={1})

    for reveal, shown_while_playing in (("live", True), ("end", False)):
        view = _view(data, [], policy_factory=factory, agent_env_id="raytrade/StockSwing-v0", reveal=reveal,
                     env_config={"mode": "swing"})
        for _ in range(4):
            _press(view, "right")
        score_lines = {line.get_label() for line in view.ax_score.get_lines()}
        assert ("agent" in score_lines) is shown_while_playing
        assert any(c.get_label() == "agent buy" for c in view.ax_price.collections) is shown_while_playing
        _press(view, "e")
        assert "agent" in {line.get_label() for line in view.ax_score.get_lines()}
        assert "agent" in view.fig._suptitle.get_text()


def test_q_closes_the_window_and_the_save_shortcut_is_off(data):
    import matplotlib.pyplot as plt

    market, index = data
    game = GameSession(market, index, env_id="raytrade/StockSwing-v0", env_config={}, seed=3, play_bars=10,
                       view_bars=20)
    fig = plt.figure()
    view = GameView(game, figure=fig, render=False)
    assert plt.rcParams["keymap.save"] == [] and "s" not in plt.rcParams["keymap.save"]
    _press(view, "s")  # a sell (ignored while flat), not "save the figure"
    assert game.step_count == 1
    _press(view, "q")
    assert not plt.fignum_exists(fig.number)

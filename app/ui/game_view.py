"""The backtrading game's window: matplotlib candles, volume, the index and the score panel.

Keys (matplotlib's default shortcuts that clash, e.g. ``s`` = save and the arrows = back and
forward, are turned off for this figure):

=====================  ===========================================================
right, 6, n, space     next bar (hold)
up, 9, w               hold for a week (5 daily bars; 24 hourly bars for crypto)
b, +                   buy (crypto: one level up: short -> flat -> long)
s, -                   sell (crypto: one level down)
e, end                 end the game now (the position is held to the last bar)
q                      close the window
=====================  ===========================================================

The symbol and the dates are hidden (bars are numbered from the game's first decision) until the
game ends; then the title shows them with player vs agent vs buy-and-hold, ``on_end`` is called
(the CLI saves the leaderboard row and a PNG) and further keys do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from app.ui.game import GameSession, Mark, Track
from envs.core.market import CLOSE, HIGH, LOW, OPEN, VOLUME

KEYS: dict[str, str] = {
    "right": "step", "6": "step", "n": "step", " ": "step",
    "up": "week", "9": "week", "w": "week",
    "b": "buy", "B": "buy", "+": "buy",
    "s": "sell", "S": "sell", "-": "sell",
    "e": "finish", "end": "finish",
}
#: matplotlib rcParams keymaps that would steal the game's keys ("s" saves, the arrows go back and
#: forth in the view history) where pyplot's key handler cannot be disconnected
_CLASHING_KEYMAPS: tuple[Any, ...] = ("keymap.save", "keymap.forward", "keymap.back")
UP, DOWN = "#26a69a", "#ef5350"


class GameView:
    """Draws a :class:`GameSession` on a figure and plays it from key presses."""

    def __init__(self, game: GameSession, figure: Any = None,
                 on_end: Callable[[GameView], None] | None = None, *, render: bool = True) -> None:
        """``render=False``: update the artists but leave painting to ``save_png`` (a scripted
        game on Agg, where every ``draw_idle`` would paint the whole figure at once)."""
        import matplotlib.pyplot as plt

        self.game = game
        self.render = render
        self.on_end = on_end
        self.fig = figure if figure is not None else plt.figure(figsize=(12, 8))
        manager = getattr(self.fig.canvas, "manager", None)
        handler = getattr(manager, "key_press_handler_id", None)
        if handler is not None:  # pyplot's default shortcuts ("s" saves, arrows navigate)
            self.fig.canvas.mpl_disconnect(handler)
        plt.rcParams.update(dict.fromkeys(_CLASHING_KEYMAPS, []))
        grid = self.fig.add_gridspec(3, 1, height_ratios=(3.2, 0.9, 1.6), hspace=0.35)
        self.ax_price = self.fig.add_subplot(grid[0])
        self.ax_volume = self.fig.add_subplot(grid[1], sharex=self.ax_price)
        self.ax_score = self.fig.add_subplot(grid[2])
        self.ax_index = self.ax_price.twinx()
        self._ended = False
        self._cid = self.fig.canvas.mpl_connect("key_press_event", self.on_key)
        self.draw()

    # --- input ----------------------------------------------------------------------------
    def on_key(self, event: Any) -> None:
        if event.key == "q":  # pyplot's own handler is off, so the window closes here
            import matplotlib.pyplot as plt

            plt.close(self.fig)
            return
        move = KEYS.get(event.key or "")
        if move is None or self.game.done:
            return
        getattr(self.game, move)()
        self.draw()
        if self.game.done and not self._ended:
            self._ended = True
            if self.on_end is not None:
                self.on_end(self)

    # --- drawing --------------------------------------------------------------------------
    def draw(self) -> None:
        g = self.game
        # while playing: the last view_bars bars; at the end: the whole game and some history
        lo = max(0, (g.start_row - 10) if g.done else (g.row - g.view_bars + 1))
        rows = np.arange(lo, g.row + 1)
        x = rows - g.start_row
        bars = g.market.ohlcv[rows]
        for ax in (self.ax_price, self.ax_volume, self.ax_score, self.ax_index):
            _wipe(ax)
        self._candles(x, bars)
        self._index(x, rows)
        self._marks(g.player, lo, "player", filled=True)
        if g.agent_visible and g.agent is not None:
            self._marks(g.agent, lo, "agent", filled=False, upto=g.step_count)
        up = bars[:, CLOSE] >= bars[:, OPEN]
        self.ax_volume.vlines(x, 0.0, bars[:, VOLUME], colors=np.where(up, UP, DOWN).tolist(), alpha=0.6,
                              linewidth=self._bar_width_pt(len(x)))
        self.ax_volume.set_ylim(0.0, max(float(bars[:, VOLUME].max()), 1.0) * 1.05)
        self.ax_volume.set_ylabel("volume")
        self.ax_volume.set_xlabel("bar (0 = the game's first decision)")
        self.ax_price.tick_params(labelbottom=False)
        self._score()
        self.fig.suptitle(self._title(), fontsize=11)
        if self.render:
            self.fig.canvas.draw_idle()

    def _bar_width_pt(self, n_bars: int) -> float:
        """Line width (points) of one bar's body: 70 % of its share of the axes' width. One
        LineCollection per layer draws far faster than a Rectangle per bar."""
        width_in = self.fig.get_figwidth() * self.ax_price.get_position().width
        return max(1.0, 0.7 * width_in * 72.0 / max(n_bars + 1, 1))

    def _candles(self, x: np.ndarray, bars: np.ndarray) -> None:
        ax = self.ax_price
        up = bars[:, CLOSE] >= bars[:, OPEN]
        colors = np.where(up, UP, DOWN).tolist()
        ax.vlines(x, bars[:, LOW], bars[:, HIGH], colors=colors, linewidth=0.8)
        top = np.maximum(bars[:, OPEN], bars[:, CLOSE])
        bottom = np.minimum(bars[:, OPEN], bars[:, CLOSE])
        top = np.maximum(top, bottom + 1e-4 * bars[:, CLOSE])  # a doji is still visible
        ax.vlines(x, bottom, top, colors=colors, linewidth=self._bar_width_pt(len(x)))
        ax.set_xlim(x[0] - 1, x[-1] + 1)
        ax.axvline(x[-1] + 0.5, color="#999999", linestyle=":", linewidth=0.8)
        ax.set_ylabel("price")
        ax.grid(alpha=0.2)

    def _index(self, x: np.ndarray, rows: np.ndarray) -> None:
        idx = self.game.index_close[rows]
        self.ax_index.yaxis.tick_right()  # clear() puts a twin's axis back on the left
        self.ax_index.yaxis.set_label_position("right")
        self.ax_index.plot(x, idx / idx[0] - 1.0, color="#5c6bc0", linewidth=1.0, alpha=0.7, label="index")
        self.ax_index.set_ylabel("index (return over the window)", color="#5c6bc0")
        self.ax_index.yaxis.set_major_formatter(_percent())

    def _marks(self, track: Track, lo: int, who: str, *, filled: bool, upto: int | None = None) -> None:
        shown = [m for m in track.marks if m.row >= lo and (upto is None or m.step < upto)]
        for side, marker, color in (("buy", "^", UP), ("sell", "v", DOWN)):
            pts: list[Mark] = [m for m in shown if m.side == side]
            if not pts:
                continue
            xs = [m.row - self.game.start_row for m in pts]
            ys = [m.price for m in pts]
            self.ax_price.scatter(xs, ys, marker=marker, s=90 if filled else 140, zorder=5,
                                  facecolors=color if filled else "none", edgecolors=color if not filled else "black",
                                  linewidths=1.5, label=f"{who} {side}")
        handles = [c for c in self.ax_price.collections if str(c.get_label()).endswith(("buy", "sell"))]
        if handles:  # above the axes: inside, it would hide the marks near the window's corner
            self.ax_price.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=8,
                                 frameon=False)

    def _score(self) -> None:
        g, ax = self.game, self.ax_score
        steps = np.arange(g.step_count + 1)
        ax.plot(steps, np.asarray(g.player.equity) / g.player.equity[0] - 1.0, color="black", linewidth=1.6, zorder=3, label="you")
        bh = np.asarray(g.buy_hold.equity[: g.step_count + 1])
        ax.plot(np.arange(len(bh)), bh / bh[0] - 1.0, color="#888888", linestyle="--", label="buy & hold")
        if g.agent_visible and g.agent is not None:
            ag = np.asarray(g.agent.equity[: g.step_count + 1])
            ax.plot(np.arange(len(ag)), ag / ag[0] - 1.0, color="#ff9800", label="agent")
        ax.axhline(0.0, color="#cccccc", linewidth=0.8)
        ax.set_xlim(0, max(g.play_bars, 1))
        ax.set_xlabel("bars played")
        ax.yaxis.set_major_formatter(_percent())
        ax.set_ylabel("return")
        ax.legend(loc="upper left", fontsize=8, ncol=3)
        ax.text(0.99, 0.05, self._status(), transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
                family="monospace")

    def _status(self) -> str:
        g = self.game
        text = (f"bar {g.step_count}/{g.play_bars}  position {g.position_label}  you {g.player.ret():+.2%}  "
                f"market {g.market_return():+.2%}")
        if g.agent_visible and g.agent is not None:
            text += f"  agent {g.agent.ret(g.step_count):+.2%}"
            k = g.step_count if not g.done else None
            if k is not None and k < len(g.agent.probs):
                probs = " ".join(f"{p:.2f}" for p in g.agent.probs[k])
                value = f" value {g.agent.values[k]:+.3f}" if k < len(g.agent.values) else ""
                text += f"\nagent on this bar: p=[{probs}]{value}"
        return text

    def _title(self) -> str:
        g = self.game
        if not g.done:
            return ("symbol ???  dates ???   keys: -> next bar, up = a week, B buy, S sell, E end   "
                    f"({g.kind})")
        r = g.result()
        agent = f"  agent {r['agent_return']:+.2%}" if r["agent_return"] is not None else ""
        return (f"{r['symbol']}  {r['start']} -> {r['end']}   you {r['player_return']:+.2%}{agent}  "
                f"buy & hold {r['buy_hold_return']:+.2%}  index {r['index_return']:+.2%}   (q closes)")

    def save_png(self, path: Any) -> Any:
        self.fig.savefig(path, dpi=90)
        return path


def _wipe(ax: Any) -> None:
    """Remove what the last frame drew, keeping the axes' settings (``Axes.clear`` rebuilds the
    ticks and spines too: 90 % of a frame's time)."""
    for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
        artist.remove()
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    ax.relim()
    ax.autoscale()


def _percent() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)

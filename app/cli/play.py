"""``raytrade play``: the backtrading game (a matplotlib window; keys in :mod:`app.ui.game_view`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

KEY_NAMES = {"next": "right", "week": "up", "buy": "b", "sell": "s", "end": "e"}


def play_command(
    symbol: str = typer.Option("random", "--symbol", help="A symbol to trade, or 'random' (hidden either way)."),
    run: str = typer.Option(None, "--run", help="Play against this run's policy on its unseen split."),
    market: str = typer.Option("stocks", "--market", help="stocks (daily, StockSwing) or crypto (hourly "
                                                          "perpetuals, CryptoFutures); without --run."),
    seed: int = typer.Option(None, "--seed", help="Seed of the symbol and period (default: a random one)."),
    store: Path = typer.Option(None, "--store", envvar="RAYTRADE_STORE", help="Parquet store (default ./store; "
                                                                             "with --run: the run's own)."),
    bars: int = typer.Option(None, "--bars", min=5, help="Bars to play (default 120 daily, 240 hourly)."),
    view: int = typer.Option(60, "--view", min=10, help="Bars shown on screen."),
    reveal: str = typer.Option("live", "--reveal", help="live: show the agent as you go; end: only at the end."),
    split: str = typer.Option("test", "--split", help="With --run: the split to play on."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="With --run: final, best or latest."),
    player: str = typer.Option(os.environ.get("USER", "player"), "--player", help="Name on the leaderboard."),
    leaderboard: Path = typer.Option(Path(".raytrade/leaderboard.sqlite"), "--leaderboard"),
    out: Path = typer.Option(Path(".raytrade/games"), "--out", help="Where the end screen's PNG goes."),
    script: str = typer.Option(None, "--script", help="Play these moves without a window and save the end "
                                                      "screen (comma-separated: next, week, buy, sell, end)."),
) -> None:
    """Trade a hidden stock (or perpetual) bar by bar: -> next bar, up a week, B buy, S sell, E end.
    At the end: symbol, dates, you vs the agent vs buy-and-hold, saved to a leaderboard and a PNG."""
    moves = [m.strip() for m in (script or "").split(",") if m.strip()]
    unknown = [m for m in moves if m not in KEY_NAMES]
    if unknown:
        raise typer.BadParameter(f"--script: unknown move(s) {unknown} (use {', '.join(KEY_NAMES)})")
    import matplotlib

    if script is not None or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import KeyEvent

    from app.ui import game_setup
    from app.ui.game import GameSession
    from app.ui.game_view import GameView
    from app.ui.leaderboard import Leaderboard

    if run is not None:
        import torch

        torch.set_num_threads(1)
        inputs = game_setup.from_run(run, part=split, which=checkpoint, store=store)
    else:
        inputs = game_setup.from_store(store or Path("store"), market)
    hourly = "CryptoFutures" in inputs.env_id
    try:
        game = GameSession(inputs.market, inputs.index, env_id=inputs.env_id, env_config=inputs.env_config,
                           seed=seed if seed is not None else secrets.randbelow(2**31),
                           symbol=None if symbol == "random" else symbol,
                           play_bars=bars or (240 if hourly else 120), view_bars=view,
                           policy_factory=inputs.policy_factory,
                           agent_env_id=inputs.env_id if inputs.policy_factory else None, reveal=reveal)
    except ValueError as exc:  # an unknown or too short symbol, a bad --reveal: the env says which
        raise typer.BadParameter(str(exc)) from None

    def on_end(view_: GameView) -> None:
        result = game.result()
        out.mkdir(parents=True, exist_ok=True)
        name = f"game-{result['symbol']}-{result['start']}-seed{game.seed}"
        png = out / ("".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".png")
        view_.save_png(png)
        row = Leaderboard(leaderboard).add(result, player=player, run=inputs.run_name, png=str(png))
        agent = f", agent {result['agent_return']:+.2%}" if result["agent_return"] is not None else ""
        typer.echo(f"{result['symbol']} {result['start']} -> {result['end']}: you {result['player_return']:+.2%}"
                   f"{agent}, buy & hold {result['buy_hold_return']:+.2%}, index {result['index_return']:+.2%}")
        typer.echo(f"saved: {png} (leaderboard {leaderboard}, game #{row})")

    view_ = GameView(game, on_end=on_end, render=script is None)
    if script is not None:
        for move in moves:
            view_.on_key(KeyEvent("key_press_event", view_.fig.canvas, key=KEY_NAMES[move]))
        if not game.done:
            view_.on_key(KeyEvent("key_press_event", view_.fig.canvas, key="e"))
        plt.close(view_.fig)
        return
    if matplotlib.get_backend().lower() == "agg":
        raise typer.BadParameter("no display for the game window (set DISPLAY, or play with --script)")
    plt.show()


"""``raytrade trade``: run a trained futures policy on a market, paper by default.

    raytrade trade CONFIG                      paper trading on live exchange bars
    raytrade trade CONFIG --replay FROM TO     paper trading over stored bars on a fast clock
    raytrade trade CONFIG --live [--yes]       real orders (keys from the environment)
    raytrade trade close-all CONFIG [--live]   cancel open orders and flatten, then exit
    raytrade trade report CONFIG               the traded period replayed by the backtester, compared
"""

from __future__ import annotations

from pathlib import Path

import typer


def trade_command(
    target: str = typer.Argument(..., help="A trading config (YAML), or 'close-all' / 'report' followed by one."),
    config: Path = typer.Argument(None, help="The trading config after 'close-all' or 'report'."),
    live: bool = typer.Option(False, "--live", help="Send real orders (default: paper trading)."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask to confirm the live startup summary."),
    replay: tuple[str, str] | None = typer.Option(None, "--replay", help="FROM TO (UTC dates): replay stored bars "
                                           "on a fast clock (paper)."),
    max_bars: int = typer.Option(None, "--max-bars", help="Stop after this many bars (replay)."),
    close_on_exit: bool = typer.Option(None, "--close-on-exit/--keep-on-exit",
                                       help="Flatten on stop (default: the config's close_on_exit)."),
    state_dir: Path = typer.Option(None, "--state-dir", help="Where state databases go (default trading_state/)."),
) -> None:
    """Trade a policy: decide at every bar close, place the difference; crash-safe SQLite state."""
    from app.errors import ConfigError
    from app.trading.config import load_trade_config
    from app.trading.session import BAR_NS, StopFlag, build_runner, run_live, run_replay

    closing = target == "close-all"
    if target in ("close-all", "report") and config is None:
        raise ConfigError(f"{target}: give the trading config: raytrade trade {target} CONFIG")
    if target == "report":
        from app.trading.session import report

        path, rows = report(load_trade_config(config), state_dir)
        for r in rows:
            typer.echo(f"{r.symbol}: {r.compared} decisions compared, mismatch {r.mismatch_rate:.1%}; PnL trader "
                       f"{r.trader_pnl_usd:,.2f} vs backtest {r.backtest_pnl_usd:,.2f}; fees {r.trader_fees_usd:,.2f} vs "
                       f"{r.backtest_fees_usd:,.2f}")
        typer.echo(f"report: {path}")
        return
    cfg = load_trade_config(config if closing else Path(target))
    if replay is not None and live:
        raise ConfigError("--replay trades on paper; it cannot be combined with --live")
    mode = "live" if live else "replay" if (replay is not None or cfg.replay is not None) else "paper"
    if live and not yes:
        typer.echo(_summary(cfg))
        if not typer.confirm("Trade with real money?", default=False):
            raise typer.Exit(1)
    runner, feed = build_runner(cfg, mode=mode, replay=replay, state_dir=state_dir)
    try:
        typer.echo(runner.start())
        if closing:
            flat = runner.close_all("close-all command")
            typer.echo("flat" if flat else "NOT flat: see the events table")
            raise typer.Exit(0 if flat else 1)
        stop = StopFlag()
        stop.install()
        close = cfg.close_on_exit if close_on_exit is None else close_on_exit

        def show(report) -> None:
            typer.echo(f"{report.ts_ns}: equity {report.equity_usd:,.2f} actions {report.actions} "
                       f"orders {len(report.orders)}" + (f" STOP: {report.stop_reason}" if report.stop_reason else ""))

        if mode == "replay":
            end = replay[1] if replay is not None else cfg.replay.end  # type: ignore[union-attr]
            limit = max_bars or (cfg.replay.max_bars if cfg.replay else None)
            n = run_replay(runner, feed, end, limit, stop, close, show)
        else:
            n = run_live(runner, BAR_NS[cfg.timeframe], cfg.bar_delay_s, stop, close, show)
        fills = len(runner.store.fills())
        typer.echo(f"{n} bars, {fills} fills, equity {sum(b.equity_usd for b in runner.books.values()):,.2f} "
                   f"(budget {cfg.budget_usd:,.2f}); state: {runner.store.path}"
                   + (f"; stopped: {runner.stopped}" if runner.stopped else ""))
    finally:
        runner.store.close()


def _summary(cfg) -> str:
    return (f"LIVE trading on {cfg.exchange.id}{' (testnet)' if cfg.exchange.testnet else ''}\n"
            f"  policy    {cfg.policy} ({cfg.checkpoint})\n  symbols   {', '.join(cfg.symbols)}\n"
            f"  budget    {cfg.budget_usd:,.2f} USD ({cfg.per_symbol_usd:,.2f} per symbol), {cfg.margin_mode} margin\n"
            f"  limits    drawdown {cfg.risk.max_drawdown:.0%}, daily loss {cfg.risk.max_daily_loss:.0%}\n"
            f"  state     {cfg.state_path()}")

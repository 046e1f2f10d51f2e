"""The ``raytrade`` command. Heavy imports (pandas, ray, torch) live inside the commands, so
``raytrade --help`` answers at once."""

from __future__ import annotations

import logging

import typer

from app.cli.backtest import backtest_command
from app.cli.dashboard import dashboard_command
from app.cli.data import data_app
from app.cli.demo import demo_command
from app.cli.evaluate import evaluate_app
from app.cli.inspect import inspect_command
from app.cli.play import play_command
from app.cli.runs import runs_app
from app.cli.serve import serve_command
from app.cli.trade import trade_command
from app.cli.train import train_command
from app.cli.tune import tune_command

app = typer.Typer(
    name="raytrade",
    help="Train, evaluate and deploy reinforcement-learning trading agents on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(runs_app, name="runs")
app.command("train")(train_command)
app.command("tune")(tune_command)
app.command("backtest")(backtest_command)
app.command("serve")(serve_command)
app.command("demo")(demo_command)
app.command("trade")(trade_command)
app.command("play")(play_command)
app.command("dashboard")(dashboard_command)
app.command("inspect")(inspect_command)

@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every repair and step.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    from app.errors import RaytradeError

    try:
        app()
    except RaytradeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

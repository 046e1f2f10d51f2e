"""The ``raytrade`` command. Heavy imports (pandas, ray, torch) live inside the commands, so
``raytrade --help`` answers at once."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from app.cli_data import data_app
from app.cli_eval import backtest_command, evaluate_app
from app.cli_runs import runs_app
from app.cli_serve import serve_command
from app.cli_train import train_command
from app.cli_tune import tune_command

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

STORE_OPTION = typer.Option(Path("store"), "--store", envvar="RAYTRADE_STORE",
                            help="Parquet store directory.")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every repair and step.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
def demo(store: Path = STORE_OPTION,
         sample: Path = typer.Option(Path("data/sample"), help="Directory with the embedded sample."),
         train: bool = typer.Option(True, help="Train and backtest (--no-train: data part only)."),
         env_steps: int = typer.Option(None, help="Training budget (default: the demo experiment's).")) -> None:
    """The pipeline on the embedded sample: import, split, train PPO+GRU, backtest, report."""
    from app.demo import run_demo

    run_demo(store_dir=store, sample_dir=sample, train=train, env_steps=env_steps)


def main() -> None:
    from app.errors import RaytradeError

    try:
        app()
    except RaytradeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

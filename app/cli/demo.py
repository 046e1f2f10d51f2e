"""``raytrade demo``: the whole pipeline on the embedded sample (the steps are in
:mod:`app.cli.demo_pipeline`, imported only when the command runs)."""

from __future__ import annotations

from pathlib import Path

import typer

STORE_OPTION = typer.Option(Path("store"), "--store", envvar="RAYTRADE_STORE",
                            help="Parquet store directory.")


def demo_command(store: Path = STORE_OPTION,
         sample: Path = typer.Option(None, help="Directory with the embedded sample (default: the "
                                                    "checkout's data/sample)."),
         train: bool = typer.Option(True, help="Train and backtest (--no-train: data part only)."),
         env_steps: int = typer.Option(None, help="Training budget (default: the demo experiment's).")) -> None:
    """The pipeline on the embedded sample: import, split, train PPO+GRU, backtest, report."""
    from app.cli.demo_pipeline import run_demo
    from app.config.schema import PROJECT_ROOT

    sample = sample if sample is not None else PROJECT_ROOT / "data" / "sample"

    run_demo(store_dir=store, sample_dir=sample, train=train, env_steps=env_steps)

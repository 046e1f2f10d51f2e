"""``raytrade tune``: a hyperparameter sweep (ASHA / PBT) scored on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def tune_command(
    config: Path = typer.Argument(..., help="Experiment YAML with a tune: section (tune_configs/...)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set tune.num_samples=50, "
                                   "--set stopping.iterations=20 (repeatable)."),
    init_from: Path = typer.Option(None, "--init-from", help="Start every trial from another run's policy "
                                   "(a run directory or an RLModule checkpoint)."),
) -> None:
    """Search hyperparameters with Ray Tune; every trial is an MLflow child run of the sweep.

    The objective is a validation metric (tune.metric, e.g. val_greedy/sharpe); the test split is never read. At the end the best trial's policy is exported and registered, and PBO and the deflated Sharpe ratio say how much its score is worth.
    """
    from rich.console import Console

    from app.cli.train import _policy_path
    from app.config.loader import load_experiment
    from app.training.quiet import quiet_ray
    from app.tuning.runner import run_sweep

    quiet_ray()
    console = Console()
    exp = load_experiment(config, set_)

    def on_event(kind: str, trial_id: str, info: dict[str, Any]) -> None:
        if kind == "start":
            console.print(f"[dim]trial {trial_id} started: {_params(info)}[/]")
        else:
            value = info.get(exp.tune.metric) if exp.tune else None
            text = "-" if not isinstance(value, (int, float)) else f"{value:+.4g}"
            console.print(f"[dim]trial {trial_id} {kind} after {info.get('training_iteration', 0)} iterations, "
                          f"{exp.tune.metric if exp.tune else 'metric'} {text}[/]")

    outcome = run_sweep(exp, init_from=_policy_path(init_from) if init_from else None, on_event=on_event,
                        where=str(config))
    print_summary(console, outcome, exp.tracking.mlflow_uri)
    if outcome.best is None:
        raise typer.Exit(1)


def print_summary(console: Any, outcome: Any, mlflow_uri: str = "<tracking.mlflow_uri>") -> None:
    """The trials table, then the best policy, PBO and DSR lines."""
    from rich.table import Table

    table = Table(title=f"sweep {outcome.name}: {outcome.metric} ({outcome.mode})")
    for column in ("trial", "params", outcome.metric, "iterations", "status"):
        table.add_column(column, justify="right" if column in (outcome.metric, "iterations") else "left")
    for t in outcome.trials:
        mark = " *" if outcome.best is not None and t is outcome.best else ""
        table.add_row(t.trial_id + mark, _params(t.params, sep="\n"), "-" if t.score is None else f"{t.score:+.4f}",
                      str(t.iterations), t.status if not t.error else f"error: {t.error[:60]}")
    console.print(table)
    if outcome.target_reached_by:
        console.print(f"sweep stopped early: trial {outcome.target_reached_by} reached the target")
    if outcome.best is None:
        console.print("[red]no trial produced a scored checkpoint: nothing exported[/]")
    else:
        console.print(f"best trial [bold]{outcome.best.trial_id}[/]: {outcome.metric} {outcome.best.score:+.4f}")
        console.print(f"best policy: {outcome.best_policy} (registered version {outcome.registered_version})")
    pbo, dsr = outcome.statistics.get("pbo"), outcome.statistics.get("dsr")
    if pbo is not None:
        extra = ""
        if pbo.details:
            extra = (f" (CSCV: {int(pbo.details['n_blocks'])} blocks, {int(pbo.details['n_splits'])} splits, "
                     f"{int(pbo.details['trials'])} trials x {int(pbo.details['bars'])} validation bars)")
        console.print(f"PBO {pbo.text()}{extra}: chance that the in-sample best configuration is at or below "
                      "the median out of sample")
    if dsr is not None:
        extra = ""
        if dsr.details:
            extra = (f" (per-bar Sharpe {dsr.details['sharpe_per_bar']:+.4f} vs {dsr.details['sr0']:.4f} "
                     f"expected from the best of {int(dsr.details['n_trials'])} skill-less trials)")
        console.print(f"DSR {dsr.text()}{extra}: probability that the best trial's true Sharpe beats selection luck")
    console.print(f"Tune results: {outcome.path} (tensorboard --logdir {outcome.path}, or "
                  f"ray.tune.ExperimentAnalysis)\nMLflow: parent run {outcome.parent_run_id} "
                  f"(mlflow ui --backend-store-uri {mlflow_uri})")


def _params(params: dict[str, Any], sep: str = ", ") -> str:
    """``lr=0.000341`` rather than ``algorithm.lr=...`` where the last part of the key is unique."""
    tails = [key.split(".")[-1] for key in params]
    parts = []
    for key, value in sorted(params.items()):
        tail = key.split(".")[-1]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{tail if tails.count(tail) == 1 else key}={text}")
    return sep.join(parts) or "-"

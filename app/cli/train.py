"""``raytrade train``: one experiment, with a live progress bar; resumable."""

from __future__ import annotations

from pathlib import Path

import typer


def train_command(
    config: Path = typer.Argument(None, help="Experiment YAML (tune_configs/...). Not needed with --resume."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set algorithm.lr=1e-4 (repeatable; "
                                   "with --resume, e.g. a larger stopping.iterations)."),
    resume: str = typer.Option(None, "--resume", help="Continue a run (its directory or name under runs/)."),
    init_from: Path = typer.Option(None, "--init-from", help="Start from another run's policy weights "
                                   "(a run directory or an RLModule checkpoint)."),
) -> None:
    """Train an agent with RLlib (PPO/APPO, MLP/GRU/attention) and track it in MLflow."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from app.config.loader import load_experiment
    from app.errors import ConfigError
    from app.runs import resume_experiment
    from app.runs.run_dir import RunDir
    from app.training.run import train

    console = Console()
    if resume:
        run = RunDir.find(resume)
        exp, resume_run = resume_experiment(run, set_), run
    elif config is not None:
        exp, resume_run = load_experiment(config, set_), None
    else:
        raise ConfigError("give an experiment file, or --resume RUN")
    init_path = _policy_path(init_from) if init_from else None
    columns = [TextColumn("[bold]{task.fields[name]}"), BarColumn(), TextColumn("it {task.fields[it]}"),
               TextColumn("steps {task.fields[steps]}"), TextColumn("return {task.fields[ret]}"),
               TextColumn("val {task.fields[val]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=1.0, name=exp.name, it=0, steps=0, ret="-", val="-")

        def on_iteration(state, metrics, seconds):
            ret = metrics.get("env_runners/episode_return_mean")
            val = metrics.get(f"val_greedy/{exp.evaluation.metric}")
            bar.update(task, completed=metrics["progress"], it=state.iteration, steps=f"{state.env_steps:,}",
                       ret="-" if ret is None else f"{ret:+.4f}",
                       val=bar.tasks[task].fields["val"] if val is None else f"{val:+.3f}")

        outcome = train(exp, resume=resume_run, init_from=init_path, progress=on_iteration)
    state = outcome.state
    console.print(f"run [bold]{outcome.run.name}[/] {state.status} after {state.iteration} iterations, "
                  f"{state.env_steps:,} env steps (stopped by {outcome.stopped_by})")
    if state.best_metric is not None:
        console.print(f"best validation {exp.evaluation.metric}: {state.best_metric:+.3f} at iteration {state.best_iteration}")
    console.print(f"run directory: {outcome.run.path}\npolicy: {outcome.run.policy_dir('final')}\n"
                  f"MLflow: mlflow ui --backend-store-uri {exp.tracking.mlflow_uri} (run {state.mlflow_run_id})")
    for alert in state.alerts[-5:]:
        console.print(f"[yellow]alert[/] {alert}")


def _policy_path(ref: Path) -> Path:
    from app.runs.run_dir import RunDir

    if (ref / "experiment.yaml").exists():
        return RunDir(ref).policy_dir("final")
    return ref

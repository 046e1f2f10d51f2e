"""``raytrade train``: one experiment, with a live progress bar (or plain lines when the output
is not a terminal); resumable."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import typer

#: seconds between plain progress lines (output that is not a terminal: logs, pipes, CI)
PLAIN_EVERY_S = 10.0
RETURN_KEY = "env_runners/episode_return_mean"


def train_command(
    config: Path = typer.Argument(None, help="Experiment YAML (tune_configs/...). Not needed with --resume."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set algorithm.lr=1e-4 (repeatable; "
                                   "with --resume, e.g. a larger stopping.iterations)."),
    resume: str = typer.Option(None, "--resume", help="Continue a run (its directory or name under runs/)."),
    init_from: Path = typer.Option(None, "--init-from", help="Start from another run's policy weights "
                                   "(a run directory or an RLModule checkpoint)."),
    store: Path = typer.Option(None, "--store", help="Train on this Parquet store instead of the "
                               "experiment's data.store (which defaults to $RAYTRADE_STORE or ./store)."),
    register: bool = typer.Option(False, "--register", help="Register the final policy in MLflow even if the "
                                  "run is stopped by a signal (a run that completes is always registered)."),
) -> None:
    """Train an agent with RLlib (PPO/APPO, MLP/GRU/attention) and track it in MLflow."""
    from rich.console import Console

    from app.config.loader import check_inputs, load_experiment, require_store, with_store
    from app.errors import ConfigError
    from app.runs import resume_experiment
    from app.runs.run_dir import RunDir
    from app.training.quiet import quiet_ray
    from app.training.run import train

    quiet_ray()
    console = Console(width=None if sys.stdout.isatty() else 140)
    if resume:
        run = RunDir.find(resume)
        exp, resume_run = resume_experiment(run, set_), run
    elif config is not None:
        exp, resume_run = load_experiment(config, set_), None
    else:
        raise ConfigError("give an experiment file, or --resume RUN")
    exp = with_store(exp, store)
    check_inputs(exp, where=str(config or resume))  # before Ray starts: bounds file, metadata, store
    if exp.data is not None:
        require_store(exp.data.store)
    init_path = _policy_path(init_from) if init_from else None
    lines = IterationText(exp.evaluation.metric)
    if console.is_terminal:
        with _bar(console, exp.name) as on_iteration:
            outcome = train(exp, resume=resume_run, init_from=init_path, register=register,
                            progress=lambda s, m, t: on_iteration(s, m, lines))
    else:
        plain = PlainProgress(lines, lambda text: console.print(text, highlight=False, soft_wrap=True))
        outcome = train(exp, resume=resume_run, init_from=init_path, register=register, progress=plain)
    _summary(console, exp, outcome)


def _summary(console: Any, exp: Any, outcome: Any) -> None:
    state = outcome.state
    console.print(f"run [bold]{outcome.run.name}[/] {state.status} after {state.iteration} iterations, "
                  f"{state.env_steps:,} env steps (stopped by {outcome.stopped_by})")
    if state.best_metric is not None:
        console.print(f"best validation {exp.evaluation.metric}: {state.best_metric:+.3f} "
                      f"at iteration {state.best_iteration}")
    console.print(f"run directory: {outcome.run.path}\npolicy: {outcome.run.policy_dir('final')}\n"
                  f"MLflow: mlflow ui --backend-store-uri {exp.tracking.mlflow_uri} (run {state.mlflow_run_id})")
    if outcome.registered_version is not None:
        console.print(f"registered as model version {outcome.registered_version}")
    elif outcome.final_checkpoint is not None:
        console.print("not registered (the run was stopped; resume it, or train with --register)")
    for alert in state.alerts[-5:]:
        console.print(f"[yellow]alert[/] {alert}")


class IterationText:
    """Progress numbers as text. An iteration in which no episode ended has no return of its
    own: the last known one is shown, marked as such, never ``nan``."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.last_return: float | None = None
        self.last_val: float | None = None

    def update(self, metrics: Mapping[str, float]) -> tuple[str, str]:
        """(return text, validation text) after this iteration's metrics."""
        ret = metrics.get(RETURN_KEY)
        fresh = ret is not None and math.isfinite(ret)
        if fresh:
            self.last_return = float(ret)
        val = metrics.get(f"val_greedy/{self.metric}")
        if val is not None and math.isfinite(val):
            self.last_val = float(val)
        if self.last_return is None:
            ret_text = "no episode ended yet"
        else:
            ret_text = f"{self.last_return:+.4f}" + ("" if fresh else " (no episode ended)")
        return ret_text, "-" if self.last_val is None else f"{self.last_val:+.3f}"


class PlainProgress:
    """One plain line per iteration at most every ``every_s`` seconds (and the first and last)."""

    def __init__(self, text: IterationText, emit: Callable[[str], None], every_s: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.text, self.emit, self.every_s, self.clock = text, emit, every_s, clock
        self.last_emit: float | None = None

    def __call__(self, state: Any, metrics: Mapping[str, float], seconds: float) -> None:
        ret, val = self.text.update(metrics)
        now = self.clock()
        done = metrics.get("progress", 0.0) >= 1.0
        if self.last_emit is not None and now - self.last_emit < self.every_s and not done:
            return
        self.last_emit = now
        self.emit(f"iteration {state.iteration:5d}  env steps {state.env_steps:>11,}  "
                  f"progress {metrics.get('progress', 0.0):6.1%}  episode return {ret}  "
                  f"val {self.text.metric} {val}  ({seconds:.1f} s/it)")


@contextlib.contextmanager
def _bar(console: Any, name: str) -> Iterator[Callable[[Any, Mapping[str, float], IterationText], None]]:
    """A rich progress bar; yields ``on_iteration(state, metrics, text)``."""
    from rich import progress as rp

    columns = [rp.TextColumn("[bold]{task.fields[name]}"), rp.BarColumn(), rp.TextColumn("it {task.fields[it]}"),
               rp.TextColumn("steps {task.fields[steps]}"), rp.TextColumn("return {task.fields[ret]}"),
               rp.TextColumn("val {task.fields[val]}"), rp.TimeElapsedColumn(), rp.TimeRemainingColumn()]
    with rp.Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=1.0, name=name, it=0, steps=0, ret="-", val="-")

        def on_iteration(state: Any, metrics: Mapping[str, float], text: IterationText) -> None:
            ret, val = text.update(metrics)
            bar.update(task, completed=metrics["progress"], it=state.iteration, steps=f"{state.env_steps:,}",
                       ret=ret, val=val)

        yield on_iteration


def _policy_path(ref: Path) -> Path:
    from app.runs.run_dir import RunDir

    if (ref / "experiment.yaml").exists():
        return RunDir(ref).policy_dir("final")
    return ref

"""The suite's loop: for each cell, train, evaluate the final and best policies on held-out
markets, record the validation curve's first crossings of 50 % / 70 % of the oracle, and log
a child MLflow run under the suite's parent run.

The trainer, the evaluator and the tracker factory are injected, so the loop, the config
building and the aggregation are tested without Ray (``tests/unit/benchmarks``); the real ones
(:func:`real_trainer`, :func:`real_evaluator`, ``MlflowTracker``) are wired by ``run_suite.py``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from app.config.schema import Experiment
from benchmarks.learning.aggregate import aggregate, thresholds_reached
from benchmarks.learning.cells import Budget, Cell, build_experiment

log = logging.getLogger("raytrade.bench.learning")

#: the validation metric whose history times the 50 % / 70 % crossings
CURVE_METRIC = "val_greedy/oracle_fraction"
CHECKPOINTS = ("final", "best")


@dataclass
class TrainResult:
    """What the suite needs of a training run."""

    policy_dirs: dict[str, Path]                 # "final" / "best" -> RLModule directory
    env_steps: int
    wall_s: float
    #: ``(env_steps, wall_s since the start, oracle fraction)`` at each validation evaluation
    history: list[tuple[int, float, float]] = field(default_factory=list)
    run_id: str | None = None                    # the training run's MLflow id


Trainer = Callable[[Experiment], TrainResult]
Evaluator = Callable[[Path, Experiment], dict[str, float]]
TrackerFactory = Callable[..., Any]


@dataclass
class Suite:
    cells: Sequence[Cell]
    budget: Budget
    out_dir: Path
    mlflow_uri: str
    trainer: Trainer
    evaluator: Evaluator
    tracker: TrackerFactory | None = None    # (uri, experiment, run_name, parent_run_id=...)
    experiment_name: str = "learning_suite"
    params: dict[str, Any] = field(default_factory=dict)

    def run(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every cell (a failing cell is logged and recorded with its error; the others go
        on); returns the per-cell rows and the aggregate."""
        parent = self._open(f"suite-{self.out_dir.name}", None)
        if parent is not None:
            parent.log_params(self.params)
        rows: list[dict[str, Any]] = []
        try:
            for i, cell in enumerate(self.cells, 1):
                log.info("[%d/%d] %s", i, len(self.cells), cell.name)
                rows += self.run_cell(cell, parent)
        finally:
            cells = pd.DataFrame(rows)
            agg = aggregate(cells) if not cells.empty and "checkpoint" in cells else pd.DataFrame()
            if parent is not None:
                parent.log_metrics(_summary_metrics(agg), step=0)
                parent.end("FINISHED")
        return cells, agg

    def run_cell(self, cell: Cell, parent: Any) -> list[dict[str, Any]]:
        base = {"class": cell.klass, "form": cell.form, "algo": cell.algo, "seed": cell.seed}
        child = self._open(cell.name, parent.run_id if parent is not None else None)
        try:
            exp = build_experiment(cell, self.budget, out_dir=self.out_dir, mlflow_uri=self.mlflow_uri)
            result = self.trainer(exp)
            reached = thresholds_reached(result.history)
            rows = []
            for ckpt in CHECKPOINTS:
                policy = result.policy_dirs.get(ckpt)
                measured = self.evaluator(policy, exp) if policy is not None else {}
                rows.append(base | {"checkpoint": ckpt, "env_steps": result.env_steps,
                                    "train_wall_s": result.wall_s, "train_run_id": result.run_id}
                            | reached | measured)
            if child is not None:
                _log_cell(child, exp, cell, result, rows)
            return rows
        except Exception as exc:  # noqa: BLE001 - one failing cell must not end the suite
            log.error("cell %s failed: %s", cell.name, exc)
            if child is not None:
                child.set_tags({"error": str(exc)[:4000]})
                child.end("FAILED")
                child = None
            return [base | {"checkpoint": "final", "error": str(exc)}]
        finally:
            if child is not None:
                child.end("FINISHED")

    def _open(self, name: str, parent_run_id: str | None) -> Any:
        if self.tracker is None:
            return None
        return self.tracker(self.mlflow_uri, self.experiment_name, name, parent_run_id=parent_run_id)


def _log_cell(child: Any, exp: Experiment, cell: Cell, result: TrainResult,
              rows: list[dict[str, Any]]) -> None:
    child.log_params({"class": cell.klass, "form": cell.form, "algo": cell.algo, "seed": cell.seed,
                      "experiment": exp.model_dump(mode="json")})
    if result.run_id:
        child.set_tags({"raytrade.train_run_id": result.run_id})
    for steps, _, fraction in result.history:
        child.log_metrics({CURVE_METRIC: fraction}, step=steps)
    for row in rows:
        numbers = {f"{row['checkpoint']}/{k}": float(v) for k, v in row.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and k != "seed"}
        child.log_metrics(numbers, step=result.env_steps)


def _summary_metrics(agg: pd.DataFrame) -> dict[str, float]:
    """``<class>.<form>.<algo>.<checkpoint>/<measure>_mean`` for the parent run."""
    out: dict[str, float] = {}
    for _, row in agg.iterrows():
        prefix = f"{row['class']}.{row['form']}.{row['algo']}.{row['checkpoint']}"
        for key, value in row.items():
            if str(key).endswith(("_mean", "_ci")) and isinstance(value, float) and math.isfinite(value):
                out[f"{prefix}/{key}"] = value
    return out


# --- the real trainer and evaluator (Ray, torch) ---------------------------------------------

def real_trainer(exp: Experiment) -> TrainResult:
    """:func:`app.training.run.train` with a progress hook that records the validation curve
    (Ray must be initialized once by the caller)."""
    from app.training.run import train

    history: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def progress(state: Any, metrics: dict[str, float], seconds: float) -> None:
        value = metrics.get(CURVE_METRIC)
        if value is not None:
            history.append((int(state.env_steps), time.perf_counter() - t0, float(value)))

    outcome = train(exp, progress=progress)
    dirs = {name: outcome.run.policy_dir(name) for name in CHECKPOINTS}
    return TrainResult({k: v for k, v in dirs.items() if v.is_dir()}, int(outcome.state.env_steps),
                       time.perf_counter() - t0, history, outcome.state.mlflow_run_id)


def real_evaluator(heldout_seeds: list[int], episodes: int) -> Evaluator:
    from benchmarks.learning.heldout import evaluate_heldout, load_policy

    def evaluate(policy_dir: Path, exp: Experiment) -> dict[str, float]:
        return evaluate_heldout(load_policy(policy_dir), exp, heldout_seeds, episodes=episodes)

    return evaluate

"""The ONE training loop, shared by ``raytrade train`` and Tune trials.

Every iteration, in this order: train one iteration -> evaluate on the validation split when
due -> best score (in the metric's own direction) and patience -> alerts (NaN guard only when
the iteration sampled env steps) -> MLflow (only steps not logged before, so a resumed run
never writes two values for one step) -> the host's end of iteration (checkpoint, state,
progress; or Tune's report) -> stop checks (the host's signal, the budget, patience).

What differs between a plain run and a trial lives in a small :class:`LoopHost` adapter:
:mod:`app.training.run` (run directory: best/latest checkpoints, state.json, signals,
progress) and :mod:`app.tuning.trainable` (``tune.report`` with a checkpoint at decision
points). The loop itself needs no Ray: ``tests/unit/training/test_loop.py`` drives it with a
fake session.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.errors import RaytradeError

log = logging.getLogger("raytrade.train")

Mode = Literal["max", "min"]

#: metrics where smaller is better (the last part of the key: ``val_greedy/max_drawdown``)
LOWER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration_bars", "volatility",
                             "turnover"})
#: consecutive iterations without a single sampled env step before the run gives up
MAX_EMPTY_ITERATIONS = 5


class NoSamplesError(RaytradeError):
    """The env runners produced no env steps for several iterations in a row."""


def metric_mode(metric: str) -> Mode:
    """``min`` for drawdown-like metrics, ``max`` for everything else (sharpe, return, ...)."""
    return "min" if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


@dataclass(frozen=True)
class Objective:
    """The validation metric that picks the best checkpoint, and its direction."""

    key: str                # e.g. ``val_greedy/sharpe``
    mode: Mode = "max"

    @classmethod
    def of(cls, key: str, mode: Mode | None = None) -> Objective:
        return cls(key, mode or metric_mode(key))

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.mode == "max" else value < best)

    @property
    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf


@dataclass(frozen=True)
class Schedule:
    """When to evaluate: at multiples of any of ``periods``, at the iterations ``at`` (a
    scheduler's decision points) and, with ``at_end``, at the last iteration."""

    periods: tuple[int, ...]
    at: tuple[int, ...] = ()
    at_end: bool = False

    def due(self, iteration: int, last: bool) -> bool:
        return ((last and self.at_end) or iteration in self.at
                or any(iteration % p == 0 for p in self.periods))


class LoopState(Protocol):
    """What the loop reads and updates (``RunState`` and ``TrialState`` both have it)."""

    iteration: int
    env_steps: int
    best_metric: float | None
    best_iteration: int | None
    evaluations_since_best: int


def record_evaluation(state: LoopState, value: float | None, objective: Objective) -> bool:
    """Update best score and patience with an evaluation's ``value``; True for a new best.
    A missing or non-finite value changes nothing."""
    if value is None or not math.isfinite(value):
        return False
    if objective.better(value, state.best_metric):
        state.best_metric, state.best_iteration = float(value), state.iteration
        state.evaluations_since_best = 0
        return True
    state.evaluations_since_best += 1
    return False


@dataclass
class Iteration:
    """One iteration as the host sees it at its end."""

    metrics: dict[str, float]
    sampled: bool               # the iteration sampled env steps (else nothing was learned)
    due: bool                   # an evaluation/checkpoint point of the schedule
    evaluated: bool = False
    improved: bool = False
    stop: str | None = None     # why the loop stops after this iteration (None: it goes on)
    seconds: float = 0.0
    breaches: list[Any] = field(default_factory=list)


class LoopHost(Protocol):
    def stop_requested(self) -> str | None: ...          # e.g. "signal"
    def on_new_best(self, it: Iteration) -> None: ...
    def on_alert(self, breach: Any) -> None: ...
    def end_iteration(self, it: Iteration) -> None: ...  # checkpoint, state, report, progress


class TrainingLoop:
    """Drives a :class:`~app.training.session.TrainingSession` (or anything with its
    ``step/evaluate/can_evaluate/check_alerts/budget_stop`` face) until a stop reason."""

    def __init__(self, session: Any, state: LoopState, host: LoopHost, tracker: Any,
                 objective: Objective, schedule: Schedule, *, patience: int | None = None,
                 logged_until: int | None = None, curriculum: Any = None) -> None:
        self.session, self.state, self.host, self.tracker = session, state, host, tracker
        self.objective, self.schedule, self.patience = objective, schedule, patience
        self.logged_until = -1 if logged_until is None else logged_until
        self.curriculum = curriculum
        self.empty_streak = 0

    def run(self) -> str:
        """Iterate until a stop reason; returns it."""
        while True:
            it = self.iteration()
            if it.stop is not None:
                log.info("stopping after iteration %d: %s", self.state.iteration, it.stop)
                return it.stop

    def iteration(self) -> Iteration:
        t0 = time.perf_counter()
        session, state = self.session, self.state
        metrics = session.step()
        state.iteration, state.env_steps = session.iteration, session.env_steps
        sampled = self._sampled(metrics)
        budget = session.budget_stop(metrics)
        due = self.schedule.due(state.iteration, last=budget is not None)
        it = Iteration(metrics, sampled, due=due)
        if self.curriculum is not None:
            from app.training.curriculum import stage_tags  # local: it pulls in ray

            self.tracker.set_tags(stage_tags(self.curriculum, metrics))
        if it.due and session.can_evaluate:
            metrics |= session.evaluate()
            it.evaluated = True
            it.improved = record_evaluation(state, metrics.get(self.objective.key), self.objective)
            if it.improved:
                self.host.on_new_best(it)
        self._alerts(it)
        self._track(metrics)
        it.stop = self.host.stop_requested() or budget or self._patience_stop()
        it.seconds = time.perf_counter() - t0
        self.host.end_iteration(it)
        return it

    def _sampled(self, metrics: Mapping[str, float]) -> bool:
        """False (logged, counted) for an iteration without env steps; raises after
        :data:`MAX_EMPTY_ITERATIONS` in a row."""
        if metrics.get("env_steps_sampled", 1.0) > 0:
            self.empty_streak = 0
            return True
        self.empty_streak += 1
        log.warning("iteration %d sampled no env steps (an env runner was lost and is being "
                    "restarted?): skipped, its losses are not checked", self.state.iteration)
        if self.empty_streak >= MAX_EMPTY_ITERATIONS:
            raise NoSamplesError(
                f"iteration {self.state.iteration}: no env steps sampled for {self.empty_streak} "
                "iterations in a row; the env runners keep failing (see the Ray worker logs under "
                "/tmp/ray/session_latest/logs)")
        return False

    def _alerts(self, it: Iteration) -> None:
        it.breaches = list(self.session.check_alerts(it.metrics, sampled=it.sampled))
        for breach in it.breaches:
            log.warning("ALERT %s", breach)
            self.tracker.alert(str(breach), self.state.iteration)
            self.host.on_alert(breach)

    def _track(self, metrics: Mapping[str, float]) -> None:
        """Log at the env-step count, once per step: steps a resumed run already logged (before
        a SIGKILL) and iterations that sampled nothing (same step again) are skipped."""
        step = int(self.state.env_steps)
        if step <= self.logged_until:
            return
        self.tracker.log_metrics(metrics, step=step)
        self.logged_until = step

    def _patience_stop(self) -> str | None:
        if self.patience and self.state.evaluations_since_best >= self.patience:
            return "no_improvement"
        return None

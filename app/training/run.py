"""The training loop: build, train, evaluate, alert, track, checkpoint, stop, resume.

One run = one RLlib Algorithm built from the experiment (:mod:`app.training.algo`), one run
directory (:mod:`app.runs.run_dir`) and one MLflow run. Metrics are keyed by env steps;
vector steps (``env.step()`` calls of the vector envs) and progress (0-1 of the budget) are
logged beside them so runs with different numbers of envs compare fairly.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config.schema import Experiment
from app.runs.data import resolve_run_data
from app.runs.run_dir import RunDir, RunState

if TYPE_CHECKING:
    from app.training.session import TrainingSession

log = logging.getLogger("raytrade.train")


@dataclass
class TrainOutcome:
    run: RunDir
    state: RunState
    final_checkpoint: Path
    stopped_by: str


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes the iteration, checkpoints and exits."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: finishing this iteration, then writing a final checkpoint", self.signal_name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(exp: Experiment, *, resume: RunDir | None = None, init_from: Path | None = None,
          progress: Any = None) -> TrainOutcome:
    """Train ``exp`` (or resume the run ``resume``); see the module docstring."""
    import ray

    from app.tracking.mlflow_tracker import MlflowTracker
    from app.training.session import TrainingSession

    run = resume or RunDir.create(exp)
    state = run.state()
    file_log = _attach_file_log(run.path / "run.log")
    data = resolve_run_data(exp)
    for kind, split in data.splits.items():
        split.save(run.path / f"split_{kind}.json")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    session = TrainingSession(exp, data)
    session.iteration, session.env_steps = state.iteration, state.env_steps
    tracker = MlflowTracker(exp.tracking.mlflow_uri, exp.tracking.experiment, run.name, run_id=state.mlflow_run_id)
    try:
        if resume is not None and (ckpt := run.latest_checkpoint()) is not None:
            session.restore(ckpt)
            log.info("resumed %s from %s at iteration %d", run.name, ckpt, state.iteration)
        elif init_from is not None:
            session.load_weights(init_from)
        if state.mlflow_run_id is None:
            state.mlflow_run_id = tracker.run_id
            tracker.log_params(exp.model_dump(mode="json"))
            tracker.set_tags({"raytrade.run_dir": str(run.path.resolve()), "raytrade.env": exp.env.id})
            for path in run.path.glob("split_*.json"):
                tracker.log_artifact(path, "data")
            tracker.log_artifact(run.path / "experiment.yaml", "config")
        with _StopFlag() as stop:
            stopped_by = _loop(session, run, state, tracker, stop, progress)
        final = run.save_checkpoint(session.algo, "final")
        state.status = "finished" if stopped_by != "signal" else "stopped"
        run.save_state(state)
        version = tracker.register_policy(run.policy_dir("final"), exp.tracking.registered_model or exp.name)
        tracker.set_tags({"raytrade.registered_version": str(version)})
        tracker.log_artifact(run.path / "run.log", "logs")
        tracker.end("FINISHED" if stopped_by != "signal" else "KILLED")
        return TrainOutcome(run, state, final, stopped_by)
    except BaseException:
        state.status = "failed"
        run.save_state(state)
        tracker.end("FAILED")
        raise
    finally:
        session.close()
        logging.getLogger("raytrade").removeHandler(file_log)


def _loop(session: TrainingSession, run: RunDir, state: RunState, tracker: Any, stop: _StopFlag,
          progress: Any) -> str:
    exp = session.exp
    while True:
        t0 = time.perf_counter()
        metrics = session.step()
        state.iteration, state.env_steps = session.iteration, session.env_steps
        if exp.curriculum is not None:
            from app.training.curriculum import stage_tags  # local: it pulls in ray

            tracker.set_tags(stage_tags(exp.curriculum, metrics))
        if session.evaluation_due():
            metrics |= session.evaluate()
            _track_best(exp, session.algo, run, state, metrics)
        for breach in session.check_alerts(metrics):
            log.warning("ALERT %s", breach)
            tracker.alert(str(breach), state.iteration)
            state.alerts.append(str(breach))
        tracker.log_metrics(metrics, step=state.env_steps)
        if state.iteration % exp.checkpoint.every_iterations == 0:
            run.save_checkpoint(session.algo, "latest")
        run.save_state(state)
        if progress is not None:
            progress(state, metrics, time.perf_counter() - t0)
        reason = _should_stop(session, state, metrics, stop)
        if reason:
            log.info("stopping after iteration %d: %s", state.iteration, reason)
            return reason


def _track_best(exp: Experiment, algo: Any, run: RunDir, state: RunState, metrics: dict[str, float]) -> None:
    value = metrics.get(f"val_greedy/{exp.evaluation.metric}")
    if value is None or not math.isfinite(value):
        return
    if state.best_metric is None or value > state.best_metric:
        state.best_metric, state.best_iteration, state.evaluations_since_best = value, state.iteration, 0
        run.save_checkpoint(algo, "best")
    else:
        state.evaluations_since_best += 1


def _should_stop(session: TrainingSession, state: RunState, metrics: dict[str, float],
                 stop: _StopFlag) -> str | None:
    if stop.signal_name:
        return "signal"
    reason = session.budget_stop(metrics)
    if reason:
        return reason
    patience = session.exp.stopping.patience_evaluations
    if patience and state.evaluations_since_best >= patience:
        return "no_improvement"
    return None


def _attach_file_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("raytrade")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler

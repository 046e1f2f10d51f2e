"""``raytrade train``: one run = one RLlib Algorithm, one run directory, one MLflow run.

The iteration itself is :class:`app.training.loop.TrainingLoop` (shared with Tune trials);
this module is its plain-run host: the run directory (:mod:`app.runs.run_dir`: best, latest
and final checkpoints, ``state.json``), signals, the lock, resume and registration. Metrics are
keyed by env steps; vector steps and progress (0-1 of the budget) are logged beside them.

Life cycle and failure paths:

* SIGINT/SIGTERM are caught from the very start (before Ray starts, whose driver handler would
  otherwise exit mid-startup): the current iteration finishes, a final checkpoint is written
  and the run is ``stopped``. A second signal interrupts at once (still marked ``stopped``).
* Any other error marks the run ``failed`` in ``state.json`` and MLflow, best effort: a failure
  to record the failure is logged and never hides the original error.
* ``<run>/.lock`` admits one trainer per run; temp files a killed writer left are removed.
* ``--resume`` continues from the newest checkpoint's own state (counters, best score,
  patience), and MLflow gets only steps it does not have yet.
* Only a run that finished its budget (or stopped by patience / reward threshold) is registered
  as a model version, unless ``register=True``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.config.schema import Experiment
from app.runs.data import resolve_run_data
from app.runs.run_dir import RunDir, RunState
from app.training.loop import Iteration, Objective, Schedule, TrainingLoop

log = logging.getLogger("raytrade.train")

Progress = Callable[[RunState, dict[str, float], float], None]


@dataclass
class TrainOutcome:
    run: RunDir
    state: RunState
    final_checkpoint: Path | None
    stopped_by: str
    registered_version: str | None = None


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes the iteration, checkpoints and exits.
    A second signal raises KeyboardInterrupt. :meth:`install` again after ``ray.init``
    (which replaces the SIGTERM handler with its own ``sys.exit``)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        return self.install()

    def install(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: finishing this iteration, then writing a final checkpoint "
                    "(send it again to stop at once)", self.signal_name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(exp: Experiment, *, resume: RunDir | None = None, init_from: Path | None = None,
          progress: Progress | None = None, register: bool = False) -> TrainOutcome:
    """Train ``exp`` (or resume the run ``resume``); see the module docstring."""
    run = resume or RunDir.create(exp)
    with StopFlag() as stop, run.lock(), _file_log(run.path / "run.log"):
        stray = run.clean_temp()
        if stray:
            log.info("removed %d temp files left by an interrupted writer", len(stray))
        tracker = None
        try:
            session, tracker = _start(exp, run, stop)
            try:
                return _train(exp, run, session, tracker, stop, resume is not None, init_from,
                              progress, register)
            finally:
                session.close()
        except BaseException as exc:
            _record_failure(run, tracker, exc)
            raise


def _start(exp: Experiment, run: RunDir, stop: StopFlag) -> tuple[Any, Any]:
    """Data, Ray, the algorithm and the MLflow run (the signal handler is re-installed after
    each step that may replace it)."""
    from app.training.quiet import quiet_ray, ray_logging_level
    from app.training.session import TrainingSession

    data = resolve_run_data(exp)
    for kind, split in data.splits.items():
        split.save(run.path / f"split_{kind}.json")
    quiet_ray()
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=ray_logging_level(),
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    stop.install()
    session = TrainingSession(exp, data)
    stop.install()
    try:
        return session, _tracker(exp, run)
    except BaseException:
        session.close()
        raise


def _tracker(exp: Experiment, run: RunDir) -> Any:
    from app.tracking.mlflow_tracker import MlflowTracker

    state = run.state()
    tracker = MlflowTracker(exp.tracking.mlflow_uri, exp.tracking.experiment, run.name,
                            run_id=state.mlflow_run_id)
    if state.mlflow_run_id is None:
        state.mlflow_run_id = tracker.run_id
        run.save_state(state)
        tracker.log_params(exp.model_dump(mode="json"))
        tracker.set_tags({"raytrade.run_dir": str(run.path.resolve()), "raytrade.env": exp.env.id})
        for path in run.path.glob("split_*.json"):
            tracker.log_artifact(path, "data")
        tracker.log_artifact(run.path / "experiment.yaml", "config")
    return tracker


def _train(exp: Experiment, run: RunDir, session: Any, tracker: Any, stop: StopFlag, resuming: bool,
           init_from: Path | None, progress: Progress | None, register: bool) -> TrainOutcome:
    state = run.state()
    logged_until = None
    if resuming and (ckpt := run.latest_checkpoint()) is not None:
        session.restore(ckpt)
        state = resumed_state(run, state, ckpt, session.iteration, session.env_steps,
                              _objective(exp))
        logged_until = tracker.last_step("iteration")
        log.info("resumed %s from %s at iteration %d (%d env steps)", run.name, ckpt.name,
                 state.iteration, state.env_steps)
    elif init_from is not None:
        session.load_weights(init_from)
    state.status = "running"
    run.save_state(state)
    if stop.signal_name:  # during startup: nothing trained, nothing to checkpoint
        stopped_by, final = "signal", None
    else:
        host = RunHost(exp, run, state, session, stop, progress)
        loop = TrainingLoop(session, state, host, tracker, _objective(exp),
                            Schedule((exp.evaluation.interval_iterations,)),
                            patience=exp.stopping.patience_evaluations, logged_until=logged_until,
                            curriculum=exp.curriculum)
        stopped_by = loop.run()
        final = run.save_checkpoint(session.algo, "final", state)
    state.status = "stopped" if stopped_by == "signal" else "finished"
    run.save_state(state)
    version = None
    if final is not None and (state.status == "finished" or register):
        name = exp.tracking.registered_model or exp.name
        version = tracker.register_policy(run.policy_dir("final"), name)
        tracker.set_tags({"raytrade.registered_version": str(version)})
    elif final is not None:
        log.info("run %s was stopped: its policy is not registered (--register registers it)",
                 run.name)
    tracker.log_artifact(run.path / "run.log", "logs")
    tracker.end("FINISHED" if state.status == "finished" else "KILLED")
    return TrainOutcome(run, state, final, stopped_by, version)


def _objective(exp: Experiment) -> Objective:
    return Objective.of(f"val_greedy/{exp.evaluation.metric}")


def resumed_state(run: RunDir, current: RunState, ckpt: Path, iteration: int, env_steps: int,
                  objective: Objective) -> RunState:
    """The state to continue from: the one saved WITH the checkpoint (a SIGKILL may have left
    a newer ``state.json`` whose evaluations the resumed run will redo), the session's
    restored counters, and the best score of the ``best`` checkpoint if that one is better
    (it may come from iterations after the resumed checkpoint)."""
    saved = run.checkpoint_state(ckpt)
    state = saved if saved is not None else replace(current, alerts=list(current.alerts))
    state.iteration, state.env_steps = iteration, env_steps
    state.mlflow_run_id, state.status = current.mlflow_run_id, "running"
    state.alerts = list(dict.fromkeys([*state.alerts, *current.alerts]))
    best = run.checkpoint_state("best")
    if best is not None and best.best_metric is not None \
            and objective.better(best.best_metric, state.best_metric):
        state.best_metric, state.best_iteration = best.best_metric, best.best_iteration
    return state


class RunHost:
    """The plain run's side of the loop: run directory, signals, progress."""

    def __init__(self, exp: Experiment, run: RunDir, state: RunState, session: Any, stop: StopFlag,
                 progress: Progress | None) -> None:
        self.exp, self.run, self.state, self.session = exp, run, state, session
        self.stop, self.progress = stop, progress

    def stop_requested(self) -> str | None:
        return "signal" if self.stop.signal_name else None

    def on_new_best(self, it: Iteration) -> None:
        self.run.save_checkpoint(self.session.algo, "best", self.state)

    def on_alert(self, breach: Any) -> None:
        if str(breach) not in self.state.alerts:  # a resumed run may redo an iteration
            self.state.alerts.append(str(breach))

    def end_iteration(self, it: Iteration) -> None:
        ckpt = self.exp.checkpoint
        if self.state.iteration % ckpt.every_iterations == 0:
            self.run.save_checkpoint(self.session.algo, "latest", self.state, keep=ckpt.keep)
        self.run.save_state(self.state)
        if self.progress is not None:
            self.progress(self.state, it.metrics, it.seconds)


def _record_failure(run: RunDir, tracker: Any, exc: BaseException) -> None:
    """Mark the run ``stopped`` (interrupt) or ``failed``, in state.json and MLflow, without
    ever raising: the caller re-raises ``exc``."""
    stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))
    run.mark("stopped" if stopped else "failed")
    if tracker is not None:
        try:
            tracker.end("KILLED" if stopped else "FAILED")
        except Exception as end_exc:  # noqa: BLE001 - never mask the original error
            log.warning("could not mark the MLflow run failed: %s", end_exc)
    if not stopped:
        log.error("run %s failed: %s", run.name, exc)


@contextlib.contextmanager
def _file_log(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("raytrade")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()

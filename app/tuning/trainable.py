"""The Tune trial: the sweep's base experiment plus the sampled values, trained by the same
:class:`~app.training.session.TrainingSession` as ``raytrade train``, reported to Tune and
tracked as an MLflow child run of the sweep.

Evaluation and checkpoints go together in a trial: every ``evaluation.interval_iterations``,
every ``checkpoint.every_iterations``, at the scheduler's decision points (ASHA's rungs, PBT's
perturbation interval) and at its last iteration, the policy is evaluated on the validation
split and checkpointed. So every checkpoint carries a fresh score (the best checkpoint of a
trial is the one whose score is reported), every decision compares fresh scores, and PBT always
has a checkpoint to clone. Between evaluations the objective is carried forward (Tune needs it
in every result; ``eval_age_iterations`` says how stale it is); before the first evaluation it
is the worst possible (``-inf`` when maximizing). There is deliberately no evaluation at
iteration 1: an untrained policy that happens to be always long would otherwise be a candidate
for "best" in a rising market.

The iteration itself is :class:`app.training.loop.TrainingLoop`, the same loop as ``raytrade
train``; :class:`TrialHost` is the trial's adapter (``tune.report``, with a checkpoint at the
decision points).

Only :func:`prepare_trial` touches data, through :func:`app.runs.data.resolve_run_data`
(train and validation parts only); ``tests/unit/tuning/test_trial_data.py`` proves that the
test symbols are never read.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from app.config.schema import Experiment
from app.runs.data import RunData, resolve_run_data
from app.runs.run_dir import POLICY_SUBDIR
from app.training.loop import Iteration, Objective, Schedule, TrainingLoop
from app.tuning.space import plain, trial_experiment

log = logging.getLogger("raytrade.tune")

ALGO_SUBDIR = "algorithm"
TRIAL_STATE_FILE = "raytrade_trial.json"
RUN_ID_FILE = "mlflow_run_id"


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs from the sweep (sent once through Ray's object store)."""

    base: dict[str, Any]            # the resolved base experiment (absolute paths)
    sweep_name: str
    parent_run_id: str | None
    metric: str
    mode: str
    #: evaluate and checkpoint at multiples of any of these, at these iterations (the
    #: scheduler's decision points), and at the last iteration
    checkpoint_periods: tuple[int, ...]
    checkpoint_at: tuple[int, ...] = ()
    init_from: str | None = None


@dataclass
class TrialState:
    """Saved in every checkpoint; after a PBT exploit it is the donor's (its policy too)."""

    trial_id: str = ""
    iteration: int = 0
    env_steps: int = 0
    best_metric: float | None = None
    best_iteration: int | None = None
    evaluations_since_best: int = 0
    objective: float | None = None
    evaluated_at: int = 0
    exploited_from: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str) -> TrialState:
        raw = json.loads(text)
        if "best" in raw:  # written before the loop was shared
            raw.setdefault("best_metric", raw.pop("best"))
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


def policy_dir(checkpoint_dir: Path) -> Path:
    """The RLModule inside a trial checkpoint (``RLModule.from_checkpoint`` loads it)."""
    return Path(checkpoint_dir) / ALGO_SUBDIR / POLICY_SUBDIR


def prepare_trial(ctx: SweepContext, config: Mapping[str, Any]) -> tuple[Experiment, RunData]:
    """A trial's experiment and the data it may see: train and validation env configs only."""
    exp = trial_experiment(ctx.base, config, where=f"{ctx.sweep_name} trial")
    return exp, resolve_run_data(exp)


def start_session(ctx: SweepContext, config: Mapping[str, Any]):
    """The trial's training session (Ray must be running); the setup path a trial takes."""
    from app.training.session import TrainingSession

    exp, data = prepare_trial(ctx, config)
    return exp, TrainingSession(exp, data)


def run_trial(config: dict[str, Any], ctx: SweepContext) -> None:
    """The Tune function trainable (bind ``ctx`` with ``tune.with_parameters``)."""
    from ray import tune

    context = tune.get_context()
    trial_id = context.get_trial_id()
    exp, session = start_session(ctx, config)
    try:
        tracker = _tracker(ctx, exp, config, trial_id, Path(context.get_trial_dir()))
        try:
            _start(ctx, config, session, tracker, trial_id, tune)
            tracker.end("FINISHED")
        except Exception as exc:
            try:
                tracker.end("FAILED")
            except Exception as end_exc:  # noqa: BLE001 - never mask the trial's own error
                log.warning("trial %s: could not mark its MLflow run failed: %s (after: %s)", trial_id,
                            end_exc, exc)
            raise
    finally:
        session.close()


def _start(ctx: SweepContext, config: Mapping[str, Any], session: Any, tracker: Any, trial_id: str,
           tune: Any) -> None:
    """Restore (PBT exploit, retry) or initialize, then train to the end of the budget."""
    state = TrialState(trial_id=trial_id)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt:
            session.restore(Path(ckpt) / ALGO_SUBDIR)
            state = TrialState.from_json((Path(ckpt) / TRIAL_STATE_FILE).read_text())
        state.iteration, state.env_steps = session.iteration, session.env_steps
        if state.trial_id != trial_id:  # PBT exploit: this trial continues from a better one
            tracker.set_tags({f"raytrade.pbt.exploit.{state.iteration}": state.trial_id})
            state.exploited_from.append(state.trial_id)
            state.trial_id = trial_id
        if session.budget_stop({}):  # restored at the end of its budget: nothing left to do
            return
    elif ctx.init_from:
        session.load_weights(Path(ctx.init_from))
    tracker.log_metrics({f"config/{k}": v for k, v in plain(dict(config)).items() if isinstance(v, (int, float))},
                        step=int(session.env_steps))
    exp = session.exp
    host = TrialHost(ctx, session, state, tracker, tune)
    TrainingLoop(session, state, host, tracker, Objective.of(ctx.metric, ctx.mode),  # type: ignore[arg-type]
                 Schedule(ctx.checkpoint_periods, ctx.checkpoint_at, at_end=True),
                 patience=exp.stopping.patience_evaluations,
                 logged_until=tracker.last_step("iteration") if checkpoint is not None else None,
                 curriculum=exp.curriculum).run()


class TrialHost:
    """The trial's side of the loop: every iteration is reported to Tune (with the objective
    carried forward between evaluations), with a checkpoint at the schedule's points."""

    def __init__(self, ctx: SweepContext, session: Any, state: TrialState, tracker: Any, tune: Any) -> None:
        self.ctx, self.session, self.state, self.tracker, self.tune = ctx, session, state, tracker, tune
        self.objective = Objective.of(ctx.metric, ctx.mode)  # type: ignore[arg-type]

    def stop_requested(self) -> str | None:
        return None  # Tune stops trials itself (schedulers, the sweep's stopper)

    def on_new_best(self, it: Iteration) -> None:
        pass  # Tune keeps the best checkpoints by the reported score

    def on_alert(self, breach: Any) -> None:
        pass

    def end_iteration(self, it: Iteration) -> None:
        ctx, state = self.ctx, self.state
        value = it.metrics.get(ctx.metric)
        if it.evaluated and value is not None and math.isfinite(value):
            state.objective, state.evaluated_at = float(value), state.iteration
        report = {k: v for k, v in it.metrics.items() if math.isfinite(v)}
        report |= {ctx.metric: state.objective if state.objective is not None else self.objective.worst,
                   "eval_age_iterations": state.iteration - state.evaluated_at, "env_steps": state.env_steps,
                   "mlflow_run_id": self.tracker.run_id}
        if it.stop is not None:
            report["stopped_by"] = it.stop
            log.info("trial %s stops after iteration %d: %s", state.trial_id, state.iteration, it.stop)
        if not it.due:
            self.tune.report(report)
            return
        with tempfile.TemporaryDirectory(prefix="raytrade-trial-") as tmp:
            self.session.save(Path(tmp) / ALGO_SUBDIR)
            (Path(tmp) / TRIAL_STATE_FILE).write_text(json.dumps(asdict(state)))
            self.tune.report(report, checkpoint=self.tune.Checkpoint.from_directory(tmp))


def _tracker(ctx: SweepContext, exp: Experiment, config: Mapping[str, Any], trial_id: str, trial_dir: Path):
    """The trial's MLflow child run; a restarted trial (PBT, failure retry) continues its own
    run, found through a file in its trial directory (a checkpoint may be another trial's)."""
    from app.tracking.mlflow_tracker import MlflowTracker

    uri, experiment = exp.tracking.mlflow_uri, exp.tracking.experiment
    id_file = trial_dir / RUN_ID_FILE
    if id_file.exists():
        return MlflowTracker(uri, experiment, trial_id, run_id=id_file.read_text().strip())
    tracker = MlflowTracker(uri, experiment, f"{ctx.sweep_name}/{trial_id}", parent_run_id=ctx.parent_run_id)
    trial_dir.mkdir(parents=True, exist_ok=True)
    id_file.write_text(tracker.run_id)
    tracker.log_params(exp.model_dump(mode="json"))
    tracker.set_tags({"raytrade.kind": "trial", "raytrade.sweep": ctx.sweep_name, "raytrade.trial_id": trial_id,
                      "raytrade.env": exp.env.id,
                      "raytrade.sampled": json.dumps(plain(dict(config)), sort_keys=True)[:5000]})
    return tracker

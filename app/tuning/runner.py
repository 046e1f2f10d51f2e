"""``raytrade tune``: a Ray Tune sweep over an experiment, tracked as one MLflow parent run.

One sweep = one Tune experiment under ``<runs_dir>/<name>-tune-<UTC time>/`` (Tune's own
results, browsable with ``tune.ExperimentAnalysis`` or TensorBoard), one MLflow parent run
(the sweep config as params; at the end the best score, PBO and DSR) with one child run per
trial (:mod:`app.tuning.trainable`), and at the end:

* the best trial (by its best checkpointed validation score) has its policy copied to
  ``<sweep>/best_policy/`` (an RLModule checkpoint: ``raytrade backtest``, Serve and
  ``raytrade train --init-from`` take it) and registered in MLflow;
* PBO and the deflated Sharpe ratio (:mod:`app.tuning.overfitting`) are logged and returned,
  ``n/a`` with the reason when they cannot be computed;
* ``<sweep>/summary.json`` holds the trials table and those numbers.

The same YAML scales from 2 tiny trials here to hundreds on a cluster: samples, concurrency,
scheduler and per-trial resources (RLlib's own placement-group request for the experiment's
``resources``) all come from it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.config.loader import parse_experiment
from app.config.schema import Experiment, TuneConfig
from app.errors import ConfigError
from app.runs.data import resolve_run_data
from app.training import alerts
from app.training.quiet import quiet_ray, ray_logging_level
from app.tuning import overfitting
from app.tuning.overfitting import Statistic
from app.tuning.space import check_space, clamp_explore, param_space, pbt_mutations, plain
from app.tuning.trainable import SweepContext, policy_dir, run_trial

log = logging.getLogger("raytrade.tune")

OBJECTIVE_PREFIXES = ("val_greedy", "val_stochastic")


@dataclass
class TrialSummary:
    trial_id: str
    params: dict[str, Any]
    score: float | None             # best checkpointed validation score
    iterations: int
    status: str
    mlflow_run_id: str | None = None
    checkpoint: Any = None          # the trial's best checkpoint (a tune.Checkpoint)
    error: str | None = None


@dataclass
class SweepOutcome:
    name: str
    path: Path
    metric: str
    mode: str
    parent_run_id: str
    trials: list[TrialSummary]
    best: TrialSummary | None = None
    best_policy: Path | None = None
    registered_version: str | None = None
    statistics: dict[str, Statistic] = field(default_factory=dict)
    target_reached_by: str | None = None


def objective_names() -> set[str]:
    """The metric names the validation evaluation produces (``val_greedy/sharpe`` ...)."""
    from app.evaluation.metrics import episode_metrics

    keys = [*episode_metrics(np.array([1.0, 1.01, 1.0]), np.array([1.0, 0.0]), 252.0), "episode_reward"]
    return {f"{p}/{k}" for p in OBJECTIVE_PREFIXES for k in keys}


def check_objective(exp: Experiment, cfg: TuneConfig, where: str) -> None:
    """The objective must come from the validation evaluation (never test, never training)."""
    if cfg.metric not in objective_names():
        raise ConfigError(f"{where}: tune.metric {cfg.metric!r} is not a validation metric; choose one of "
                          f"{', '.join(sorted(objective_names()))}")
    if cfg.metric.startswith("val_stochastic/") and not exp.evaluation.stochastic_too:
        raise ConfigError(f"{where}: tune.metric {cfg.metric!r} needs evaluation.stochastic_too: true")


def absolutize(raw: dict[str, Any]) -> dict[str, Any]:
    """Paths made absolute: Tune runs each trial in its own working directory."""
    out = json.loads(json.dumps(raw))
    data, tracking = out.get("data") or {}, out.setdefault("tracking", {})
    if data.get("store"):
        data["store"] = str(Path(data["store"]).resolve())
    if (data.get("by_symbol") or {}).get("metadata"):
        data["by_symbol"]["metadata"] = str(Path(data["by_symbol"]["metadata"]).resolve())
    for key in ("runs_dir", "bounds_file"):
        if tracking.get(key):
            tracking[key] = str(Path(tracking[key]).resolve())
    uri = tracking.get("mlflow_uri", "")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        tracking["mlflow_uri"] = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return out


def run_sweep(exp: Experiment, *, init_from: Path | None = None,
              on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
              where: str = "<sweep>") -> SweepOutcome:
    """Run the sweep described by ``exp.tune``; see the module docstring."""
    import ray

    from app.tracking.mlflow_tracker import MlflowTracker

    cfg = exp.tune
    if cfg is None:
        raise ConfigError(f"{where}: no tune section (search space, scheduler, objective)")
    check_objective(exp, cfg, where)
    base = absolutize(exp.model_dump(mode="json"))
    check_space(base, cfg, where)
    base_exp = parse_experiment(base, where=where)
    if base_exp.tracking.bounds_file:  # fail here, not in every trial
        alerts.load_rules(base_exp.tracking.bounds_file)
    if resolve_run_data(base_exp).validation_env_config is None:
        raise ConfigError(f"{where}: the validation split is empty; tuning needs one to score trials")
    name = f"{exp.name}-tune-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = base_exp.tracking.runs_dir / name
    sweep_dir.mkdir(parents=True, exist_ok=False)
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    if not ray.is_initialized():
        quiet_ray()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=ray_logging_level(),
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    tracking = base_exp.tracking
    parent = MlflowTracker(tracking.mlflow_uri, tracking.experiment, name)
    outcome = SweepOutcome(name, sweep_dir, cfg.metric, cfg.mode, parent.run_id, [])
    try:
        parent.log_params(base)
        parent.set_tags({"raytrade.kind": "sweep", "raytrade.sweep_dir": str(sweep_dir),
                         "raytrade.scheduler": cfg.scheduler.name, "raytrade.metric": cfg.metric,
                         "raytrade.env": exp.env.id})
        parent.log_artifact(sweep_dir / "sweep.yaml", "config")
        ctx = SweepContext(base, name, parent.run_id, cfg.metric, cfg.mode, _periods(base_exp),
                           _asha_rungs(base_exp), str(Path(init_from).resolve()) if init_from else None)
        stopper = _target_stopper(cfg)
        results = _tuner(base_exp, cfg, ctx, sweep_dir, stopper, on_event).fit()
        outcome.target_reached_by = getattr(stopper, "reached_by", None)
        outcome.trials = _summaries(results, cfg, outcome.target_reached_by)
        _finish(outcome, base, parent, tracking.registered_model or exp.name)
        parent.end("FINISHED")
    except BaseException:
        parent.end("FAILED")
        raise
    return outcome


def _periods(exp: Experiment) -> tuple[int, ...]:
    periods = {exp.evaluation.interval_iterations, exp.checkpoint.every_iterations}
    if exp.tune and exp.tune.scheduler.name == "pbt":
        periods.add(exp.tune.scheduler.perturbation_interval_iterations)
    return tuple(sorted(periods))


def _asha_rungs(exp: Experiment) -> tuple[int, ...]:
    """The iterations where ASHA compares trials (``grace * rf**k < max_t``; a trial is judged
    at its first result at or past a rung), so trials evaluate there."""
    if exp.tune is None or exp.tune.scheduler.name != "asha":
        return ()
    sch, max_t = exp.tune.scheduler, _max_iterations(exp)
    rungs, t = [], float(sch.grace_period_iterations)
    while t < max_t:
        rungs.append(math.ceil(t))
        t *= sch.reduction_factor
    return tuple(rungs)


def _max_iterations(exp: Experiment) -> int:
    """ASHA's ``max_t``: the iteration budget, or the env-step budget in (base) iterations."""
    if exp.stopping.iterations:
        return exp.stopping.iterations
    return max(1, math.ceil(exp.stopping.env_steps / exp.algorithm.train_batch_size))


def _scheduler(exp: Experiment, cfg: TuneConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    sch = cfg.scheduler
    if sch.name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=_max_iterations(exp),
                             grace_period=sch.grace_period_iterations, reduction_factor=sch.reduction_factor)
    if sch.name == "pbt":
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=sch.perturbation_interval_iterations,
                                       hyperparam_mutations=pbt_mutations(sch), custom_explore_fn=clamp_explore(sch))
    return FIFOScheduler()


def _target_stopper(cfg: TuneConfig):
    """Stops the whole sweep once any trial reaches ``tune.stop_sweep_at`` (None: never), and
    each trial at its own last result."""
    from ray import tune

    class TargetStopper(tune.Stopper):
        def __init__(self) -> None:
            self.reached_by: str | None = None

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            value, target = result.get(cfg.metric), cfg.stop_sweep_at
            if target is not None and value is not None and math.isfinite(value) and self.reached_by is None \
                    and (value >= target if cfg.mode == "max" else value <= target):
                self.reached_by = trial_id
                log.info("sweep target %s %s %.4g reached by trial %s", cfg.metric, cfg.mode, target, trial_id)
            # a trial's own last result (budget, patience) stops it here, before the scheduler sees
            # it: PBT would otherwise pause it at a perturbation point and train it once more
            return bool(result.get("stopped_by"))

        def stop_all(self) -> bool:
            return self.reached_by is not None

    return TargetStopper()


def _tuner(exp: Experiment, cfg: TuneConfig, ctx: SweepContext, sweep_dir: Path, stopper: Any,
           on_event: Callable[[str, str, dict[str, Any]], None] | None):
    from ray import tune

    from app.training.algo import trial_resources
    from app.training.rllib_env import rllib_env_name

    data = resolve_run_data(exp)
    resources = trial_resources(exp, env_name=rllib_env_name(exp.env.id), env_config=data.train_env_config)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)
    pbt = cfg.scheduler.name == "pbt"
    checkpoints = tune.CheckpointConfig(num_to_keep=None if pbt else exp.checkpoint.keep,
                                        checkpoint_score_attribute=cfg.metric, checkpoint_score_order=cfg.mode)
    return tune.Tuner(
        trainable,
        param_space=param_space(cfg),
        tune_config=tune.TuneConfig(metric=cfg.metric, mode=cfg.mode, num_samples=cfg.num_samples,
                                    max_concurrent_trials=cfg.max_concurrent_trials, scheduler=_scheduler(exp, cfg),
                                    trial_dirname_creator=_trial_dirname, reuse_actors=False),
        run_config=tune.RunConfig(name=sweep_dir.name, storage_path=str(sweep_dir.parent.resolve()), stop=stopper,
                                  verbose=0, checkpoint_config=checkpoints,
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  callbacks=[_events(on_event)] if on_event else None),
    )


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _events(on_event: Callable[[str, str, dict[str, Any]], None]):
    """Trial start/end as ``on_event(kind, trial_id, last_result)`` for the CLI's live lines."""
    from ray import tune

    class Events(tune.Callback):
        def __init__(self, fn: Callable[[str, str, dict[str, Any]], None]) -> None:
            self.on_event: Callable[[str, str, dict[str, Any]], None] | None = fn

        def __getstate__(self) -> dict[str, Any]:
            return {"on_event": None}  # Tune pickles its callbacks; a console is not picklable

        def _emit(self, kind: str, trial: Any, info: dict[str, Any]) -> None:
            if self.on_event is not None:
                self.on_event(kind, trial.trial_id, info)

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._emit("start", trial, dict(trial.config))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._emit("complete", trial, dict(trial.last_result or {}))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._emit("error", trial, dict(trial.last_result or {}))

    return Events(on_event)


def _summaries(results: Any, cfg: TuneConfig, target_reached_by: str | None) -> list[TrialSummary]:
    out = []
    for result in results:
        last = result.metrics or {}
        trial_id = last.get("trial_id") or Path(result.path).name.removeprefix("trial_")
        scored = [(m[cfg.metric], c) for c, m in (result.best_checkpoints or [])
                  if isinstance(m.get(cfg.metric), (int, float)) and math.isfinite(m[cfg.metric])]
        best = (max if cfg.mode == "max" else min)(scored, key=lambda s: s[0]) if scored else None
        if result.error is not None:
            status = "error"
        elif last.get("stopped_by"):
            status = f"done ({last['stopped_by']})"
        else:
            status = "stopped (sweep target)" if target_reached_by else "stopped early (scheduler)"
        out.append(TrialSummary(trial_id, plain(dict(result.config or {})), float(best[0]) if best else None,
                                int(last.get("training_iteration", 0)), status, last.get("mlflow_run_id"),
                                best[1] if best else None,
                                _error_line(result.error)))
    return sorted(out, key=lambda t: t.trial_id)


def _error_line(error: BaseException | None) -> str | None:
    """The exception line of a trial's error (Ray wraps it in a colored remote traceback)."""
    if error is None:
        return None
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _finish(outcome: SweepOutcome, base: dict[str, Any], parent: Any, model_name: str) -> None:
    """Close the children, export and register the best policy, compute PBO / DSR, log all."""
    from app.tracking.mlflow_tracker import MlflowTracker

    tracking = base["tracking"]
    scored = [t for t in outcome.trials if t.score is not None and t.checkpoint is not None]
    sign = 1.0 if outcome.mode == "max" else -1.0
    outcome.best = max(scored, key=lambda t: sign * t.score) if scored else None
    for trial in outcome.trials:
        if trial.mlflow_run_id is None:
            continue
        child = MlflowTracker(tracking["mlflow_uri"], tracking["experiment"], trial.trial_id, run_id=trial.mlflow_run_id)
        tags = {"raytrade.status": trial.status, "raytrade.best": str(trial is outcome.best).lower()}
        if trial.checkpoint is not None:
            tags["raytrade.checkpoint"] = str(trial.checkpoint.path)
            with trial.checkpoint.as_directory() as ckpt:
                child.log_artifact(policy_dir(Path(ckpt)), "policy")
        child.set_tags(tags)
        if trial.score is not None:
            child.log_metrics({"selection/score": trial.score}, step=0)
        child.end("FAILED" if trial.status == "error" else "FINISHED")
    if outcome.best is not None:
        outcome.best_policy = outcome.path / "best_policy"
        shutil.rmtree(outcome.best_policy, ignore_errors=True)
        with outcome.best.checkpoint.as_directory() as ckpt:
            shutil.copytree(policy_dir(Path(ckpt)), outcome.best_policy)
        outcome.registered_version = parent.register_policy(outcome.best_policy, model_name)
        parent.log_metrics({f"best/{outcome.metric}": outcome.best.score}, step=0)
        parent.set_tags({"raytrade.best_trial": outcome.best.trial_id,
                         "raytrade.best_run_id": str(outcome.best.mlflow_run_id),
                         "raytrade.registered_version": str(outcome.registered_version)})
    outcome.statistics = _statistics(outcome, base)
    metrics: dict[str, float] = {"sweep/trials": len(outcome.trials), "sweep/trials_with_policy": len(scored)}
    for key, stat in outcome.statistics.items():
        parent.set_tags({f"overfitting.{key}": stat.text()})
        if stat.value is not None:
            metrics[f"overfitting/{key}"] = stat.value
            metrics |= {f"overfitting/{key}_{k}": v for k, v in (stat.details or {}).items()}
    parent.log_metrics(metrics, step=0)
    summary = _summary_json(outcome)
    (outcome.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    parent.log_artifact(outcome.path / "summary.json", "sweep")


def _statistics(outcome: SweepOutcome, base: dict[str, Any]) -> dict[str, Statistic]:
    """PBO and DSR over the trials' selected policies (validation rollouts as Ray tasks)."""
    jobs = []
    for trial in outcome.trials:
        if trial.checkpoint is None:
            continue
        raw = _trial_raw(base, trial.params)
        jobs.append((trial.trial_id, raw, trial.checkpoint))
    try:
        greedy = not outcome.metric.startswith("val_stochastic/")
        returns = overfitting.collect_returns(jobs, greedy=greedy) if jobs else {}
    except Exception as exc:  # noqa: BLE001 - the sweep is done; report why the statistics are missing
        log.warning("validation rollouts for PBO/DSR failed: %s", exc)
        reason = f"validation rollouts failed: {str(exc).splitlines()[0][:200]}"
        return {"pbo": Statistic(None, reason), "dsr": Statistic(None, reason)}
    return overfitting.sweep_statistics(returns, outcome.best.trial_id if outcome.best else None,
                                        n_trials=len(outcome.trials))


def _trial_raw(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    from app.tuning.space import trial_experiment

    return trial_experiment(base, params).model_dump(mode="json")


def _summary_json(outcome: SweepOutcome) -> dict[str, Any]:
    return {
        "name": outcome.name, "metric": outcome.metric, "mode": outcome.mode,
        "mlflow_parent_run_id": outcome.parent_run_id, "target_reached_by": outcome.target_reached_by,
        "best_trial": outcome.best.trial_id if outcome.best else None,
        "best_score": outcome.best.score if outcome.best else None,
        "best_policy": str(outcome.best_policy) if outcome.best_policy else None,
        "registered_version": outcome.registered_version,
        "statistics": {k: {"value": s.value, "reason": s.reason, **(s.details or {})}
                       for k, s in outcome.statistics.items()},
        "trials": [{"trial_id": t.trial_id, "params": t.params, "score": t.score, "iterations": t.iterations,
                    "status": t.status, "mlflow_run_id": t.mlflow_run_id, "error": t.error} for t in outcome.trials],
    }

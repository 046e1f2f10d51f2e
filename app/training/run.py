"""The training loop: build, train, evaluate, alert, track, checkpoint, stop, resume.

One run = one RLlib Algorithm built from the experiment (:mod:`app.training.algo`), one run
directory (:mod:`app.training.run_dir`) and one MLflow run. Metrics are keyed by env steps;
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
from typing import Any

from app.config.loader import parse_experiment
from app.config.schema import Experiment
from app.training import alerts
from app.training.data import RunData, resolve_run_data
from app.training.run_dir import RunDir, RunState

log = logging.getLogger("raytrade.train")

LEARNER_KEYS = ("total_loss", "policy_loss", "vf_loss", "entropy", "mean_kl_loss",
                "gradients_default_optimizer_global_norm", "vf_explained_var",
                "default_optimizer_learning_rate", "curr_entropy_coeff")


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


def flatten_result(result: dict[str, Any]) -> dict[str, float]:
    """The metrics we log, flattened to ``a/b/c`` keys."""
    out: dict[str, float] = {}
    runners = result.get("env_runners", {})
    for key in ("episode_return_mean", "episode_len_mean", "num_episodes"):
        if key in runners:
            out[f"env_runners/{key}"] = float(runners[key])
    for group in ("trading", "actions"):
        for key, value in runners.get(group, {}).items():
            out[f"{group}/{key}"] = float(value)
    for key, value in result.get("curriculum", {}).items():  # set by the curriculum callback
        if isinstance(value, (int, float)):
            out[f"curriculum/{key}"] = float(value)
    learner = result.get("learners", {}).get("default_policy", {})
    for key in LEARNER_KEYS:
        if key in learner:
            out[f"learners/default_policy/{key}"] = float(learner[key])
    out["time/iteration_s"] = float(result.get("time_this_iter_s", math.nan))
    return out


def train(exp: Experiment, *, resume: RunDir | None = None, init_from: Path | None = None,
          progress: Any = None) -> TrainOutcome:
    """Train ``exp`` (or resume the run ``resume``); see the module docstring."""
    import ray
    import torch

    from app.models import max_entropy_nats
    from app.training.algo import build_algorithm_config
    from app.training.callbacks import make_callbacks
    from app.training.env_factory import rllib_env_name
    from app.training.tracking import MlflowTracker

    torch.set_num_threads(1)
    run = resume or RunDir.create(exp)
    state = run.state()
    file_log = _attach_file_log(run.path / "run.log")
    data = resolve_run_data(exp)
    for kind, split in data.splits.items():
        split.save(run.path / f"split_{kind}.json")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    config = build_algorithm_config(exp, env_name=rllib_env_name(exp.env.id), env_config=data.train_env_config,
                                    callbacks=make_callbacks(data.periods_per_year))
    algo = config.build_algo()
    tracker = MlflowTracker(exp.tracking.mlflow_uri, exp.tracking.experiment, run.name, run_id=state.mlflow_run_id)
    try:
        if resume is not None and (ckpt := run.latest_checkpoint()) is not None:
            algo.restore_from_path(str(ckpt))
            log.info("resumed %s from %s at iteration %d", run.name, ckpt, state.iteration)
        elif init_from is not None:
            _load_weights(algo, init_from)
        if state.mlflow_run_id is None:
            state.mlflow_run_id = tracker.run_id
            tracker.log_params(exp.model_dump(mode="json"))
            tracker.set_tags({"raytrade.run_dir": str(run.path.resolve()), "raytrade.env": exp.env.id})
            for path in run.path.glob("split_*.json"):
                tracker.log_artifact(path, "data")
            tracker.log_artifact(run.path / "experiment.yaml", "config")
        action_space = algo.env_runner_group.get_spaces()["__env_single__"][1]  # local runner: no env if remote ones
        constants = _constants(action_space, max_entropy_nats)
        rules = alerts.load_rules(exp.tracking.bounds_file) if exp.tracking.bounds_file else []
        total_envs = max(exp.resources.num_env_runners, 1) * exp.resources.num_envs_per_env_runner
        with _StopFlag() as stop:
            stopped_by = _loop(exp, algo, run, state, tracker, data, rules, constants, total_envs, stop, progress)
        final = run.save_checkpoint(algo, "final")
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
        algo.stop()
        logging.getLogger("raytrade").removeHandler(file_log)


def _loop(exp: Experiment, algo: Any, run: RunDir, state: RunState, tracker: Any, data: RunData,
          rules: list, constants: dict[str, float], total_envs: int, stop: _StopFlag, progress: Any) -> str:
    from app.training.evaluate import evaluate_policy

    budget = exp.stopping
    while True:
        t0 = time.perf_counter()
        result = algo.train()
        state.iteration = int(result.get("training_iteration", state.iteration + 1))
        state.env_steps = int(result.get("num_env_steps_sampled_lifetime", state.env_steps))
        metrics = flatten_result(result)
        metrics["progress"] = _progress(budget, state)
        metrics["vector_steps"] = state.env_steps / total_envs
        metrics["iteration"] = state.iteration
        if state.iteration % exp.evaluation.interval_iterations == 0 and data.validation_env_config is not None:
            metrics |= evaluate_policy(algo.get_module(), exp.env.id, data.validation_env_config,
                                       num_envs=exp.evaluation.episodes, seed=exp.seed + 10_000,
                                       periods_per_year=data.periods_per_year,
                                       stochastic_too=exp.evaluation.stochastic_too)
            _track_best(exp, algo, run, state, metrics)
        for breach in alerts.check(rules, metrics, state.iteration, constants):
            log.warning("ALERT %s", breach)
            tracker.alert(str(breach), state.iteration)
            state.alerts.append(str(breach))
        tracker.log_metrics(metrics, step=state.env_steps)
        if state.iteration % exp.checkpoint.every_iterations == 0:
            run.save_checkpoint(algo, "latest")
        run.save_state(state)
        if progress is not None:
            progress(state, metrics, time.perf_counter() - t0)
        reason = _should_stop(exp, state, metrics, stop)
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


def _progress(budget: Any, state: RunState) -> float:
    parts = []
    if budget.iterations:
        parts.append(state.iteration / budget.iterations)
    if budget.env_steps:
        parts.append(state.env_steps / budget.env_steps)
    return min(1.0, max(parts)) if parts else 0.0


def _should_stop(exp: Experiment, state: RunState, metrics: dict[str, float], stop: _StopFlag) -> str | None:
    budget = exp.stopping
    if stop.signal_name:
        return "signal"
    if budget.iterations and state.iteration >= budget.iterations:
        return "iterations"
    if budget.env_steps and state.env_steps >= budget.env_steps:
        return "env_steps"
    reward = metrics.get("env_runners/episode_return_mean")
    if budget.reward_threshold is not None and reward is not None and reward >= budget.reward_threshold:
        return "reward_threshold"
    if budget.patience_evaluations and state.evaluations_since_best >= budget.patience_evaluations:
        return "no_improvement"
    return None


def _constants(action_space: Any, max_entropy_nats: Any) -> dict[str, float]:
    import gymnasium as gym

    if action_space is None:
        return {"max_entropy": math.inf, "uniform": 0.0}
    n = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else 0
    return {"max_entropy": float(max_entropy_nats(action_space)), "uniform": 1.0 / n if n else 0.0}


def _load_weights(algo: Any, init_from: Path) -> None:
    """Start from another run's policy weights (pretrain -> fine-tune)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    source = RLModule.from_checkpoint(str(init_from))
    state = source.get_state()
    algo.learner_group.foreach_learner(lambda learner: learner.module["default_policy"].set_state(state))
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group)
    log.info("initialized weights from %s", init_from)


def _attach_file_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("raytrade")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def resume_experiment(run: RunDir, overrides: list[str] | None = None) -> Experiment:
    """The run's saved experiment, with ``overrides`` (e.g. a larger budget) applied."""
    from app.config.loader import apply_overrides

    where = str(run.path / "experiment.yaml")
    return parse_experiment(apply_overrides(run.experiment_raw(), overrides or [], where), where=where)

"""One RLlib Algorithm built from an experiment, advanced one iteration at a time.

Shared by the plain run loop (:func:`app.training.run.train`: run directory, signals, MLflow,
best/latest/final checkpoints) and by Tune trials (:mod:`app.tuning.trainable`: Tune owns the
checkpoints and the stopping decisions). Both therefore build the algorithm, flatten the
metrics, evaluate on the validation split and apply the budget the same way, so a trial's
numbers mean what a plain run's numbers mean.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

from app.config.schema import Experiment, StoppingConfig
from app.runs.data import RunData, resolve_run_data
from app.training import alerts
from app.training.results import flatten_result

log = logging.getLogger("raytrade.train")


def budget_progress(budget: StoppingConfig, iteration: int, env_steps: int) -> float:
    """0-1 of the budget (the larger of the iteration and env-step fractions)."""
    parts = []
    if budget.iterations:
        parts.append(iteration / budget.iterations)
    if budget.env_steps:
        parts.append(env_steps / budget.env_steps)
    return min(1.0, max(parts)) if parts else 0.0


class TrainingSession:
    """The algorithm of ``exp`` on its train split, with validation evaluation and alerts.

    Ray must be initialized by the caller (a plain run starts a local one; a Tune trial runs
    inside one). ``data`` defaults to :func:`resolve_run_data`, which hands over the train
    and validation parts only: nothing here can reach the test split.
    """

    def __init__(self, exp: Experiment, data: RunData | None = None) -> None:
        import torch

        from app.training.algo import build_algorithm_config
        from app.training.curriculum import make_callbacks
        from app.training.rllib_env import rllib_env_name

        torch.set_num_threads(1)
        self.exp = exp
        self.data = data if data is not None else resolve_run_data(exp)
        callbacks = make_callbacks(self.data.periods_per_year, curriculum=exp.curriculum,
                                   exploration=exp.exploration)
        config = build_algorithm_config(exp, env_name=rllib_env_name(exp.env.id),
                                        env_config=self.data.train_env_config, callbacks=callbacks)
        self.algo = config.build_algo()
        self.iteration = 0
        self.env_steps = 0
        self.total_envs = max(exp.resources.num_env_runners, 1) * exp.resources.num_envs_per_env_runner

    def step(self) -> dict[str, float]:
        """One ``algo.train()``; counters follow the algorithm's own (so a restore continues them).

        ``env_steps_sampled`` is what this iteration sampled: 0 when RLlib had no healthy env
        runner (it restarts a lost one and the iteration trains on nothing)."""
        before = self.env_steps
        result = self.algo.train()
        self.iteration = int(result.get("training_iteration", self.iteration + 1))
        self.env_steps = int(result.get("num_env_steps_sampled_lifetime", self.env_steps))
        metrics = flatten_result(result)
        metrics["env_steps_sampled"] = float(max(self.env_steps - before, 0))
        metrics["progress"] = budget_progress(self.exp.stopping, self.iteration, self.env_steps)
        metrics["vector_steps"] = self.env_steps / self.total_envs
        metrics["iteration"] = self.iteration
        return metrics

    @property
    def can_evaluate(self) -> bool:
        return self.data.validation_env_config is not None

    def evaluation_due(self) -> bool:
        return self.can_evaluate and self.iteration % self.exp.evaluation.interval_iterations == 0

    def evaluate(self) -> dict[str, float]:
        """``val_greedy/*`` (and ``val_stochastic/*``) of the current policy on the validation split."""
        from app.training.evaluate import evaluate_policy

        if not self.can_evaluate:
            return {}
        exp = self.exp
        return evaluate_policy(self.algo.get_module(), exp.env.id, self.data.validation_env_config,
                               num_envs=exp.evaluation.episodes, seed=exp.seed + 10_000,
                               periods_per_year=self.data.periods_per_year,
                               stochastic_too=exp.evaluation.stochastic_too)

    @functools.cached_property
    def constants(self) -> dict[str, float]:
        """``max_entropy`` and ``uniform`` of the action space, for the alert expressions."""
        from app.models import max_entropy_nats

        # the local runner's spaces: it has no env when there are remote ones
        action_space = self.algo.env_runner_group.get_spaces()["__env_single__"][1]
        return _constants(action_space, max_entropy_nats)

    @functools.cached_property
    def rules(self) -> list[alerts.Rule]:
        bounds = self.exp.tracking.bounds_file
        return alerts.load_rules(bounds) if bounds else []

    def check_alerts(self, metrics: dict[str, float], *, sampled: bool = True) -> list[alerts.Breach]:
        return alerts.check(self.rules, metrics, self.iteration, self.constants, sampled=sampled)

    def budget_stop(self, metrics: dict[str, float]) -> str | None:
        """The budget part of stopping: iterations, env steps, reward threshold (patience and
        signals belong to the caller, which tracks evaluations and owns the process)."""
        budget = self.exp.stopping
        if budget.iterations and self.iteration >= budget.iterations:
            return "iterations"
        if budget.env_steps and self.env_steps >= budget.env_steps:
            return "env_steps"
        reward = metrics.get("env_runners/episode_return_mean")
        if budget.reward_threshold is not None and reward is not None and reward >= budget.reward_threshold:
            return "reward_threshold"
        return None

    def save(self, path: Path) -> Path:
        self.algo.save_to_path(str(Path(path).resolve()))
        return Path(path)

    def restore(self, path: Path) -> None:
        """Weights, optimizer and counters from an algorithm checkpoint (the session's
        ``iteration`` and ``env_steps`` become the checkpoint's); the session's config (e.g. a
        PBT-mutated learning rate) stays in force."""
        self.algo.restore_from_path(str(Path(path).resolve()))
        self.iteration = int(self.algo.iteration)
        self.env_steps = int(self.algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"),
                                                    default=self.env_steps))

    def load_weights(self, policy_dir: Path) -> None:
        """Start from another run's policy weights (pretrain -> fine-tune)."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        state = RLModule.from_checkpoint(str(policy_dir)).get_state()
        self.algo.learner_group.foreach_learner(lambda learner: learner.module["default_policy"].set_state(state))
        self.algo.env_runner_group.sync_weights(from_worker_or_learner_group=self.algo.learner_group)
        log.info("initialized weights from %s", policy_dir)

    def close(self) -> None:
        self.algo.stop()


def _constants(action_space: Any, max_entropy_nats: Any) -> dict[str, float]:
    import gymnasium as gym

    if action_space is None:
        return {"max_entropy": math.inf, "uniform": 0.0}
    n = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else 0
    return {"max_entropy": float(max_entropy_nats(action_space)), "uniform": 1.0 / n if n else 0.0}

"""Validation evaluation during training: the current policy on the validation split, greedy
and (reported apart) stochastic, through the same rollout the backtest uses."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.evaluation.rollout import rollout, summarize
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env


def evaluate_policy(module: Any, env_id: str, env_config: dict[str, Any], *, num_envs: int, seed: int,
                    periods_per_year: float, stochastic_too: bool = True) -> dict[str, float]:
    """``val_greedy/<metric>`` (and ``val_stochastic/<metric>``): one episode per env, fixed seed,
    so successive evaluations of the same policy give the same numbers. Also
    ``model/dead_relu_fraction``: ReLU units that never fired over the greedy episodes."""
    from app.models import ReluMonitor

    env = create_env(env_id, env_config | {"num_envs": num_envs, "vector_info": True})
    out: dict[str, float] = {}
    modes = [("val_greedy", True)] + ([("val_stochastic", False)] if stochastic_too else [])
    try:
        for prefix, greedy in modes:
            policy = BatchedPolicy(module, env.single_action_space, num_envs, greedy=greedy, seed=seed)
            with ReluMonitor(module) as relus:
                summary = summarize(rollout(env, policy, seed=seed), periods_per_year)
            out |= {f"{prefix}/{k}": v for k, v in summary.items() if np.isfinite(v)}
            dead = relus.dead_fraction()
            if greedy and dead is not None:
                out["model/dead_relu_fraction"] = dead
    finally:
        env.close()
    return out

"""RLlib's env creator: registers an env id with Ray and wraps the vector face for curriculum.

RLlib (``gym_env_vectorize_mode="vector_entry_point"``) calls the registered creator on every
env runner with ``env_config | {"num_envs": N}``; the vector env is wrapped in a
:class:`~app.training.task_env.TaskableVectorEnv` so curriculum stages can change its config
between iterations. Envs themselves are built by :func:`app.runs.env_factory.create_env`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from app.runs.env_factory import create_env
from app.training.task_env import TaskableVectorEnv

RLLIB_PREFIX = "raytrade-rllib:"
#: the env-config key the AlgorithmConfig builder adds for ``env.skip_forced_steps`` (training
#: only: the creator removes it before building the env, so it never reaches an env config)
SKIP_FORCED_KEY = "skip_forced_steps"


def rllib_env_name(env_id: str) -> str:
    """Register ``env_id`` with Ray's registry (idempotent) and return the name to use."""
    from ray.tune.registry import register_env

    name = RLLIB_PREFIX + env_id
    register_env(name, functools.partial(_rllib_creator, env_id))
    return name


def _rllib_creator(env_id: str, env_config: Mapping[str, Any]):
    """RLlib's creator: the vector face is a :class:`~app.training.task_env.TaskableVectorEnv`
    (curriculum stages: ``env.unwrapped.call("set_task", changes)``)."""
    import torch

    torch.set_num_threads(1)  # every env runner process: 2 threads on 2 cores ran PPO 13.6x slower
    config = dict(env_config)
    skip = bool(config.pop(SKIP_FORCED_KEY, False))
    build = functools.partial(_create_skipping, env_id, skip)
    if "num_envs" not in config:
        return build(config)
    return TaskableVectorEnv(build, config, int(config["num_envs"]))


def _create_skipping(env_id: str, skip_forced: bool, env_config: Mapping[str, Any]):
    """:func:`create_env`, with the face's ``skip_forced`` switched on if asked
    (:mod:`envs.vector`: one step per decision, the skipped bars' rewards summed)."""
    from envs.vector import check_skip_forced

    env = create_env(env_id, env_config)
    if skip_forced:
        face = env.unwrapped if hasattr(env, "unwrapped") else env
        face.skip_forced = check_skip_forced(face.engine, True)
    return env

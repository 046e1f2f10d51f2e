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
    if "num_envs" not in env_config:
        return create_env(env_id, env_config)
    return TaskableVectorEnv(functools.partial(create_env, env_id), dict(env_config), int(env_config["num_envs"]))

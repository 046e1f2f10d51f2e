"""What Serve knows about the env a policy was trained on: the env's own spec, nothing more.

:func:`env_view` asks the env for its :class:`~envs.core.spec.EnvSpec` (``envs.env_spec``):
config (from the run's ``experiment.yaml``), observation spec reconciled with the module's own
observation space (``max_bars_held`` and funding depend on the training market) and checked
against it, action labels, the position fields a client describes, and the callable that builds
observations from raw bars with the envs' ONE observation builder (single bar:
:func:`~envs.core.observation.build_observation`; a recurrent replay: the batched path the envs
use, same floats; ``tests/unit/serve`` proves both against the env). Serve never switches on
env ids. Pure numpy + envs: no torch, no pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from envs import env_spec
from envs.core.spec import Bars, EnvSpec

__all__ = ["APP_KEYS", "Bars", "EnvSpec", "env_view"]

APP_KEYS = ("data",)  # env_config keys the app adds (its data spec): not env arguments


def env_view(env_id: str, env_config: Mapping[str, Any], space: gym.spaces.Dict) -> EnvSpec:
    """The spec of ``env_id`` with the training ``env_config``, checked against ``space`` (the
    module's observation space). Raises ``ValueError`` naming what does not match."""
    return env_spec(env_id, {k: v for k, v in env_config.items() if k not in APP_KEYS}, space)

"""Policy/value RLModules for the trading envs' Dict observations (RLlib 2.60, new API stack).

Three models share one observation encoder (:class:`~app.models.encoders.DictObsEncoder`) and
the same heads: ``"mlp"`` (baseline), ``"gru"`` (stateful across env steps) and ``"attention"``
(a transformer over each observation window, stateless). Build one for RLlib with::

    spec = module_spec("gru", {"gru_hidden": 64, "max_seq_len": 20})
    config.rl_module(rl_module_spec=spec)   # spaces are filled in by RLlib from the env

DQN uses Q-modules on the same encoder (:mod:`app.models.q_modules`: double + dueling heads,
action masking; ``"mlp"`` and ``"attention"`` only): ``q_module_spec("mlp", {...})``.

``module_spec`` validates ``model_config`` immediately (``ValueError`` naming the bad key) and
stores the fully resolved settings in the spec. Importing this package imports torch and ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from app.models.attention import AttentionModule
from app.models.common import TradingRLModule
from app.models.config import (
    MODEL_CONFIG_KEYS,
    MODEL_NAMES,
    ModelConfig,
    default_model_config,
    parse_model_config,
)
from app.models.encoders import DictObsEncoder
from app.models.gru import GRUModule
from app.models.heads import action_dist_cls, max_entropy_nats
from app.models.metrics import ReluMonitor, count_parameters, dead_relu_fraction
from app.models.mlp import MLPModule
from app.models.q_modules import (
    Q_MODEL_CLASSES,
    QAttentionModule,
    QMLPModule,
    QRLModule,
    split_dqn_keys,
)

MODEL_CLASSES: dict[str, type[TradingRLModule]] = {
    "mlp": MLPModule,
    "gru": GRUModule,
    "attention": AttentionModule,
}

__all__ = [
    "MODEL_CLASSES",
    "MODEL_CONFIG_KEYS",
    "MODEL_NAMES",
    "AttentionModule",
    "DictObsEncoder",
    "GRUModule",
    "MLPModule",
    "ModelConfig",
    "QAttentionModule",
    "QMLPModule",
    "QRLModule",
    "Q_MODEL_CLASSES",
    "ReluMonitor",
    "TradingRLModule",
    "action_dist_cls",
    "count_parameters",
    "dead_relu_fraction",
    "default_model_config",
    "max_entropy_nats",
    "module_spec",
    "parse_model_config",
    "q_module_spec",
]


def module_spec(
    name: str,
    model_config: Mapping[str, Any] | None = None,
    *,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    inference_only: bool = False,
) -> RLModuleSpec:
    """An ``RLModuleSpec`` for model ``name`` (``"mlp"``, ``"gru"`` or ``"attention"``).

    Spaces may be left ``None`` for RLlib to fill in from the env; pass them to ``.build()``
    the module directly (tests, tools).

    Raises:
        ValueError: unknown ``name`` or a bad ``model_config`` key/value (named).
    """
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_CLASSES)}")
    cfg = parse_model_config(name, model_config)
    return RLModuleSpec(
        module_class=MODEL_CLASSES[name],
        observation_space=observation_space,
        action_space=action_space,
        inference_only=inference_only,
        model_config=cfg.as_model_config(),
    )


def q_module_spec(
    name: str,
    model_config: Mapping[str, Any] | None = None,
    *,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    inference_only: bool = False,
    dueling: bool | None = None,
    double_q: bool | None = None,
    epsilon: float | list[list[float]] | None = None,
) -> RLModuleSpec:
    """An ``RLModuleSpec`` for DQN's Q-module on model ``name`` (``"mlp"`` or ``"attention"``).

    ``dueling``, ``double_q`` and ``epsilon`` (a value or ``[[env_steps, value], ...]``) go into
    the spec's ``model_config`` when given (they win over the keys ``DQNConfig`` adds, so the
    module and the learner read the same settings from the experiment).

    Raises:
        ValueError: ``"gru"`` (see :data:`app.models.q_modules.GRU_REASON`), an unknown name or a
            bad ``model_config`` key/value (named).
    """
    cfg, _ = split_dqn_keys(name, model_config)
    extra = {k: v for k, v in (("dueling", dueling), ("double_q", double_q), ("epsilon", epsilon))
             if v is not None}
    return RLModuleSpec(
        module_class=Q_MODEL_CLASSES[name],
        observation_space=observation_space,
        action_space=action_space,
        inference_only=inference_only,
        model_config=cfg.as_model_config() | extra,
    )

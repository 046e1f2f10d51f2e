"""The base policy/value RLModule shared by the MLP, GRU and attention models.

Layout: ``DictObsEncoder`` -> model core (identity, or a GRU) -> embeddings -> separate policy
and value heads. The encoder is SHARED by policy and value (one forward pass per batch);
``_forward_train`` returns the embeddings under ``Columns.EMBEDDINGS`` so PPO's loss can call
``compute_values(batch, embeddings=...)`` without a second encoder pass, as RLlib's default PPO
module does.

Action masking: when the observation batch holds ``action_mask`` (discrete action spaces, see
:mod:`envs.core.observation`), every forward pass (``_forward``, which RLlib's inference and
exploration passes run, and ``_forward_train``) masks the policy logits with it
(:func:`~app.models.heads.mask_logits`). Sampling, backtests and Serve therefore never pick an
action the env would ignore, and PPO's log-probs, entropy and KL on forced steps (a buy_only hold)
are those of a one-action distribution: 0, with no gradient. A batch without a mask (modules
trained before masks, ``action_mask: false``) is not masked.

Subclasses set ``MODEL_NAME`` and ``TEMPORAL`` and may override ``_build_core`` / ``_embed``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.distribution import Distribution
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override

from app.models.config import ModelConfig, parse_model_config
from app.models.encoders import DictObsEncoder, Temporal
from app.models.heads import (
    PolicyHead,
    ValueHead,
    action_dist_cls,
    check_action_space,
    mask_components,
    mask_logits,
)
from envs.core.observation import ACTION_MASK_KEY

Batch = dict[str, Any]


class TradingRLModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """Policy + value RLModule over a Dict observation (abstract: use a subclass).

    Built by RLlib from ``RLModuleSpec(module_class=..., model_config={...})``; see
    :mod:`app.models.config` for the keys. After ``setup`` the module's ``model_config`` holds
    the FULL resolved settings, so a checkpoint rebuilds the same network even if defaults
    change later (and RLlib's connectors find ``max_seq_len`` for the GRU).

    Inference-only copies (RLlib's EnvRunners) drop the value head (``InferenceOnlyAPI``);
    ``compute_values`` is only available on full modules (the Learner, checkpoints).
    """

    MODEL_NAME: ClassVar[str] = ""
    TEMPORAL: ClassVar[Temporal] = "flatten"

    @override(RLModule)
    def setup(self) -> None:
        if not self.MODEL_NAME:
            raise TypeError("TradingRLModule is abstract; use MLPModule, GRUModule, ...")
        raw = self.model_config
        self.cfg: ModelConfig = parse_model_config(self.MODEL_NAME, raw)
        raw_dict = dict(raw) if isinstance(raw, dict) else {}
        self.model_config = {**raw_dict, **self.cfg.as_model_config()}
        check_action_space(self.action_space)
        self.encoder = DictObsEncoder(self.observation_space, self.cfg, self.TEMPORAL)
        embed_dim = self._build_core(self.encoder.out_dim)
        self.pi_head = PolicyHead(embed_dim, self.action_space, self.cfg)
        self.vf_head = ValueHead(embed_dim, self.cfg)
        self._mask_components = mask_components(self.action_space)

    @override(TorchRLModule)
    def train(self, mode: bool = True) -> TradingRLModule:
        """RLlib switches modes around *every* forward call; ``nn.Module.train`` walks every
        submodule each time. Skip the walk when the mode is already set (submodule modes only
        change through this method)."""
        if getattr(self, "_mode_synced", None) is mode:
            return self
        super().train(mode)
        self._mode_synced = mode
        return self

    def _build_core(self, in_dim: int) -> int:
        """Build layers between encoder and heads; return the embedding width."""
        return in_dim

    def _embed(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """``batch`` -> (embeddings ``[*lead, D]``, STATE_OUT or None for stateless models)."""
        return self.encoder(batch[Columns.OBS]), None

    def _policy_logits(self, batch: Batch, embeddings: torch.Tensor) -> torch.Tensor:
        """``ACTION_DIST_INPUTS``, masked by the batch's ``action_mask`` if it has one."""
        logits = self.pi_head(embeddings)
        obs = batch[Columns.OBS]
        components = self._mask_components  # None: continuous actions
        if components is not None and isinstance(obs, dict) and ACTION_MASK_KEY in obs:
            logits = mask_logits(logits, obs[ACTION_MASK_KEY], components)
        return logits

    # -- forward passes -------------------------------------------------------------------

    @override(RLModule)
    def _forward(self, batch: Batch, **kwargs: Any) -> Batch:
        embeddings, state_out = self._embed(batch)
        out: Batch = {Columns.ACTION_DIST_INPUTS: self._policy_logits(batch, embeddings)}
        if state_out is not None:
            out[Columns.STATE_OUT] = state_out
        return out

    @override(RLModule)
    def _forward_train(self, batch: Batch, **kwargs: Any) -> Batch:
        embeddings, state_out = self._embed(batch)
        out: Batch = {
            Columns.ACTION_DIST_INPUTS: self._policy_logits(batch, embeddings),
            Columns.EMBEDDINGS: embeddings,
        }
        if state_out is not None:
            out[Columns.STATE_OUT] = state_out
        return out

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Batch, embeddings: Any | None = None) -> torch.Tensor:
        """Values ``[B]`` (or ``[B, T]`` for the GRU's time-major batches).

        PPO's loss passes ``embeddings`` from ``_forward_train``; the GAE connector passes none
        (then the encoder runs, with ``STATE_IN`` for the GRU).
        """
        if embeddings is None:
            embeddings, _ = self._embed(batch)
        return self.vf_head(embeddings)

    # -- action distributions -------------------------------------------------------------

    @override(RLModule)
    def get_inference_action_dist_cls(self) -> type[Distribution]:
        return action_dist_cls(self.action_space)

    @override(RLModule)
    def get_exploration_action_dist_cls(self) -> type[Distribution]:
        return action_dist_cls(self.action_space)

    @override(RLModule)
    def get_train_action_dist_cls(self) -> type[Distribution]:
        return action_dist_cls(self.action_space)

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["vf_head"]

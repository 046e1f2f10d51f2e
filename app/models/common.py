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

Exploration temperature (:attr:`TradingRLModule.exploration_temperature`, set on the env
runners' copies by the exploration bandit, :mod:`app.training.exploration`): ``forward_exploration``
samples actions from the tempered policy ``pi_T ~ pi^(1/T)`` (logits / T for discrete spaces, masked
actions staying masked; std * sqrt(T) for the Gaussian), one temperature per batch row (= per
sub-env) or one for all. At the default T = 1 it is exactly ``_forward`` (RLlib samples). Otherwise
the module samples itself and returns:

* ``ACTIONS`` ~ pi_T and ``ACTION_LOGP = log pi_T(a)``: the log-prob of the distribution that
  actually sampled the action (the behaviour policy). PPO's ratio is then
  ``pi_theta(a) / pi_T(a)``: an importance-sampling correction for the off-policy data, clipped
  to ``[1 - clip, 1 + clip]`` like any ratio. At the start of an update the ratio is not 1: for
  T > 1, greedy actions have ratio > 1 (clipped when their advantage is positive: no push
  further up) and exploratory ones < 1 (a positive advantage still pulls them up, weighted by
  the ratio). APPO's V-trace reads the same behaviour log-prob, as it should.
* ``ACTION_DIST_INPUTS``: the *untempered* masked logits of pi. The learner's KL penalty compares
  the new policy with these; recording the tempered ones would make the KL term pull the policy
  towards pi_T (more entropy for T > 1) and inflate the adaptive KL coefficient.

``_forward`` (inference: backtests, Serve, validation) and ``_forward_train`` never temper.

Subclasses set ``MODEL_NAME`` and ``TEMPORAL`` and may override ``_build_core`` / ``_embed``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
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
#: a temperature for all rows, or one per batch row (a 1-D tensor of the batch's leading size)
Temperature = float | torch.Tensor


def temper_dist_inputs(inputs: torch.Tensor, temperature: Temperature, action_space: gym.Space) -> torch.Tensor:
    """``ACTION_DIST_INPUTS`` of ``pi^(1/T)`` (renormalized): discrete logits / T, with masked
    logits (``finfo.min``) left exactly as they are (T < 1 would overflow them to -inf); for a
    ``Box`` space the Gaussian's log std + log(T) / 2 (N(mu, s^2)^(1/T) ~ N(mu, T s^2)).

    ``temperature`` is a positive number or a tensor ``[B]`` for inputs ``[B, ..., D]``."""
    t = torch.as_tensor(temperature, dtype=inputs.dtype, device=inputs.device)
    if t.ndim == 1:
        if t.shape[0] != inputs.shape[0]:
            raise ValueError(f"exploration_temperature has {t.shape[0]} entries for a batch of {inputs.shape[0]} rows")
        t = t.reshape(-1, *([1] * (inputs.ndim - 1)))
    elif t.ndim != 0:
        raise ValueError(f"exploration_temperature must be a number or a 1-D tensor, got shape {tuple(t.shape)}")
    if not bool(torch.all(torch.isfinite(t) & (t > 0))):
        raise ValueError(f"exploration_temperature must be finite and > 0, got {temperature}")
    if isinstance(action_space, gym.spaces.Box):
        mean, log_std = inputs.chunk(2, dim=-1)
        return torch.cat([mean, log_std + 0.5 * torch.log(t).expand_as(log_std)], dim=-1)
    masked = inputs == torch.finfo(inputs.dtype).min
    return torch.where(masked, inputs, inputs / t)


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
    #: sampling temperature of ``forward_exploration`` only (see the module docstring): a number,
    #: or a tensor ``[B]`` with one per batch row (per sub-env). A plain attribute, not a buffer:
    #: it is no part of the weights, the state or the checkpoints.
    exploration_temperature: Temperature = 1.0

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
        # a separate critic encoder (share_encoder: false; stateless models: embed_dim == out_dim)
        self.vf_encoder = (None if self.cfg.share_encoder
                           else DictObsEncoder(self.observation_space, self.cfg, self.TEMPORAL))
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

    @override(TorchRLModule)
    def forward_exploration(self, batch: Batch, **kwargs: Any) -> Batch:
        """RLlib's ``forward_exploration`` switches to eval mode and BACK to train mode around every
        call; on an env runner that is two walks over every submodule per env step (profiled: a
        third of the MLP's sampling forward). Stay in eval mode instead: the next call finds it
        set (:meth:`train` is then a no-op), and ``forward_train`` switches to train mode itself."""
        self.eval()
        return self._forward_exploration(batch, **kwargs)

    @override(TorchRLModule)
    def forward_inference(self, batch: Batch, **kwargs: Any) -> Batch:
        """As :meth:`forward_exploration`: eval mode, left set."""
        self.eval()
        return self._forward_inference(batch, **kwargs)

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

    @override(TorchRLModule)
    def _forward_exploration(self, batch: Batch, **kwargs: Any) -> Batch:
        """``_forward`` at temperature 1; otherwise actions sampled from the tempered policy (see
        the module docstring: behaviour log-probs, untempered ``ACTION_DIST_INPUTS``)."""
        with torch.no_grad():
            out = self._forward(batch, **kwargs)
            temperature = self.exploration_temperature
            if not isinstance(temperature, torch.Tensor) and float(temperature) == 1.0:
                return out
            inputs = out[Columns.ACTION_DIST_INPUTS]
            dist = self.get_exploration_action_dist_cls().from_logits(
                temper_dist_inputs(inputs, temperature, self.action_space))
            actions = dist.sample()
            out[Columns.ACTIONS] = actions
            out[Columns.ACTION_LOGP] = dist.logp(actions)
        return out

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Batch, embeddings: Any | None = None) -> torch.Tensor:
        """Values ``[B]`` (or ``[B, T]`` for the GRU's time-major batches).

        PPO's loss passes ``embeddings`` from ``_forward_train``; the GAE connector passes none
        (then the encoder runs, with ``STATE_IN`` for the GRU).
        """
        if self.vf_encoder is not None:  # its own encoder: the policy's embeddings do not apply
            return self.vf_head(self.vf_encoder(batch[Columns.OBS]))
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
        return ["vf_head", "vf_encoder"]

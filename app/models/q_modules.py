"""Q-value RLModules for DQN (RLlib 2.60, new API stack): double + dueling heads on the SAME
Dict-observation encoder as the PPO modules (:class:`~app.models.encoders.DictObsEncoder`).

Layout: ``DictObsEncoder -> advantage stream A(s, .)`` and, with ``dueling``, a value stream
``V(s)``; ``Q = V + A - mean_valid(A)`` (Wang et al. 2016, the mean taken over the actions the
mask allows, as RLlib's own dueling module does with its ``-inf`` entries). The streams use
``head_hiddens`` like the PPO heads. The whole network (encoder and streams) has one target
copy (``TargetNetworkAPI``), built on the Learner only and synced by RLlib's ``DQNLearner``
every ``target_network_update_freq`` env steps.

Action masking (``action_mask`` in the observation, :mod:`envs.core.observation`): masked
Q-values are set to the dtype's most negative finite value (:func:`~app.models.heads.mask_logits`),
so a masked action is never

* the greedy action (inference and exploitation: argmax of the masked Q-values),
* the epsilon-exploration action (drawn uniformly among the VALID actions, unlike RLlib's
  default module, which draws among the non-zero Q-values),
* the argmax of the bootstrap target (``QF_NEXT_PREDS`` and ``QF_TARGET_NEXT_PREDS`` are masked
  with the NEXT observation's mask, so double and plain DQN both bootstrap from a valid action).

``QF_PREDS`` for the current observation stays unmasked: the loss only gathers the taken action,
which the env allowed. A row with no valid action (padding) is left unmasked, as for PPO.

Inference (``forward_inference``) returns the greedy ``ACTIONS`` and the masked Q-values under
``ACTION_DIST_INPUTS``, so :class:`app.policy.batched.BatchedPolicy` (backtests, Serve) runs a
DQN checkpoint unchanged: its greedy action is the argmax; its "probabilities" are softmax(Q).

Models: ``"mlp"`` and ``"attention"`` (the same encoders as the PPO models). No ``"gru"``:
RLlib 2.60's ``PrioritizedEpisodeReplayBuffer.sample`` returns single transitions only
(``batch_length_T`` is ignored, ``len_lookback_buffer=0``, no ``STATE_IN``), so a recurrent
Q-module cannot be trained with prioritized replay; :func:`check_q_model` refuses it. Only
expected-value DQN (``num_atoms == 1``) and ``Discrete`` action spaces are supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import gymnasium as gym
import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchDistribution
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.schedules.scheduler import Scheduler
from torch import nn

from app.models.config import ModelConfig, parse_model_config
from app.models.encoders import DictObsEncoder, Temporal, build_mlp
from app.models.heads import mask_logits
from envs.core.observation import ACTION_MASK_KEY

Batch = dict[str, Any]

#: models a Q-module can use, and their window embedding
Q_MODEL_TEMPORAL: dict[str, Temporal] = {"mlp": "flatten", "attention": "attention"}
#: the keys RLlib's ``DQNConfig`` auto-includes in ``model_config`` (not ModelConfig keys)
DQN_MODEL_KEYS = frozenset({"double_q", "dueling", "epsilon", "num_atoms", "std_init", "v_min", "v_max"})
#: epsilon schedule when ``model_config`` has none (a module built outside DQN, e.g. in tests)
DEFAULT_EPSILON: list[list[float]] = [[0, 1.0], [10_000, 0.02]]
GRU_REASON = (
    "DQN cannot use model 'gru': RLlib 2.60's PrioritizedEpisodeReplayBuffer samples single "
    "transitions only (no sequences, no recurrent state), so a recurrent Q-module cannot be "
    "trained with prioritized replay; use model 'mlp' or 'attention' (windows of past bars are "
    "in every observation)"
)


def check_q_model(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a model a DQN Q-module can use."""
    if name == "gru":
        raise ValueError(GRU_REASON)
    if name not in Q_MODEL_TEMPORAL:
        raise ValueError(f"unknown Q model {name!r}; expected one of {sorted(Q_MODEL_TEMPORAL)}")


def split_dqn_keys(name: str, raw: Mapping[str, Any] | None) -> tuple[ModelConfig, dict[str, Any]]:
    """``model_config`` -> (the encoder/head settings, the DQN settings). Raises ``ValueError``
    for a bad key, a GRU, or distributional DQN (``num_atoms > 1``)."""
    check_q_model(name)
    raw = dict(raw or {})
    dqn = {k: raw.pop(k) for k in list(raw) if k in DQN_MODEL_KEYS}
    if int(dqn.get("num_atoms", 1)) != 1:
        raise ValueError(f"model_config['num_atoms']: distributional DQN is not supported "
                         f"(num_atoms must be 1, got {dqn['num_atoms']!r})")
    settings = {
        "double_q": bool(dqn.get("double_q", True)),
        "dueling": bool(dqn.get("dueling", True)),
        "epsilon": dqn.get("epsilon", DEFAULT_EPSILON),
    }
    return parse_model_config(name, raw), settings


def valid_actions(mask: torch.Tensor | None, lead: tuple[int, ...], n: int) -> torch.Tensor | None:
    """Bool ``[*lead, n]``: the actions ``mask`` allows (a row allowing none allows all, as
    :func:`~app.models.heads.mask_logits` leaves it); None without a mask."""
    if mask is None:
        return None
    valid = mask.reshape(*lead, -1) > 0.5
    if valid.shape[-1] != n:
        raise ValueError(f"action_mask: {valid.shape[-1]} entries per row for {n} actions")
    return valid | ~valid.any(dim=-1, keepdim=True)


def dueling_q(value: torch.Tensor, advantages: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``Q = V + A - mean(A)``: ``value`` ``[*lead]``, ``advantages`` ``[*lead, n]``; the mean is
    over the valid actions (all without a mask), so masked advantages get no gradient."""
    if valid is None:
        mean = advantages.mean(dim=-1, keepdim=True)
    else:
        w = valid.to(advantages.dtype)
        mean = (advantages * w).sum(dim=-1, keepdim=True) / w.sum(dim=-1, keepdim=True)
    return value.unsqueeze(-1) + advantages - mean


class QNetwork(nn.Module):
    """Dict observation -> Q-values ``[*lead, n]`` (unmasked; see :meth:`forward`)."""

    def __init__(self, observation_space: gym.Space, n_actions: int, cfg: ModelConfig,
                 temporal: Temporal, dueling: bool) -> None:
        super().__init__()
        self.n_actions, self.dueling = n_actions, dueling
        self.encoder = DictObsEncoder(observation_space, cfg, temporal)
        width = self.encoder.out_dim
        self.adv_trunk, adv_width = build_mlp(width, cfg.head_hiddens, cfg.activation, cfg.dropout)
        self.adv_out = nn.Linear(adv_width, n_actions)
        if dueling:
            self.value_trunk, value_width = build_mlp(width, cfg.head_hiddens, cfg.activation, cfg.dropout)
            self.value_out = nn.Linear(value_width, 1)

    def forward(self, obs: Any, valid: torch.Tensor | None) -> torch.Tensor:
        """Q-values of every action (``valid`` only shapes the dueling mean)."""
        z = self.encoder(obs)
        advantages = self.adv_out(self.adv_trunk(z))
        if not self.dueling:
            return advantages
        value = self.value_out(self.value_trunk(z)).squeeze(-1)
        return dueling_q(value, advantages, valid)


class QRLModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    """DQN module over a Dict observation (abstract: use :class:`QMLPModule` or
    :class:`QAttentionModule`). ``model_config``: the model's keys (:mod:`app.models.config`)
    plus ``double_q``, ``dueling`` and ``epsilon`` (RLlib's ``DQNConfig`` adds them)."""

    MODEL_NAME: ClassVar[str] = ""

    @override(RLModule)
    def setup(self) -> None:
        if not self.MODEL_NAME:
            raise TypeError("QRLModule is abstract; use QMLPModule or QAttentionModule")
        if not isinstance(self.action_space, gym.spaces.Discrete) or int(self.action_space.start) != 0:
            raise ValueError(f"DQN needs a Discrete action space starting at 0, got {self.action_space}")
        raw = dict(self.model_config) if isinstance(self.model_config, dict) else {}
        self.cfg, settings = split_dqn_keys(self.MODEL_NAME, raw)
        self.model_config = {**raw, **self.cfg.as_model_config(), **settings}
        self.uses_double_q, self.uses_dueling = settings["double_q"], settings["dueling"]
        self.n_actions = int(self.action_space.n)
        self.epsilon_schedule = Scheduler(fixed_value_or_schedule=settings["epsilon"], framework="torch")
        if self.observation_space is None:
            raise ValueError("a Q-module needs its observation space (RLlib fills it in from the env)")
        self.q_net = QNetwork(self.observation_space, self.n_actions, self.cfg,
                              Q_MODEL_TEMPORAL[self.MODEL_NAME], self.uses_dueling)

    @override(TorchRLModule)
    def train(self, mode: bool = True) -> QRLModule:
        """Skip ``nn.Module``'s walk over every submodule when the mode is already set (RLlib
        switches modes around every forward call), as the PPO modules do."""
        if getattr(self, "_mode_synced", None) is mode:
            return self
        super().train(mode)
        self._mode_synced = mode
        return self

    # -- Q-values ---------------------------------------------------------------------------

    def _q(self, net: QNetwork, obs: Any, *, masked: bool) -> torch.Tensor:
        """Q-values of ``net`` on ``obs``; masked actions at ``finfo.min`` when ``masked``."""
        lead = net.encoder.lead_shape(obs)
        mask = obs.get(ACTION_MASK_KEY) if isinstance(obs, dict) else None
        valid = valid_actions(mask, lead, self.n_actions)
        q = net(obs, valid)
        if masked and mask is not None:
            q = mask_logits(q, mask, (self.n_actions,))
        return q

    @override(QNetAPI)
    def compute_q_values(self, batch: Batch) -> Batch:
        """``{"qf_preds": masked Q-values [B, n]}`` of the online network."""
        return {QF_PREDS: self._q(self.q_net, batch[Columns.OBS], masked=True)}

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        self._target_q_net = cast(QNetwork, make_target_network(self.q_net))

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.q_net, self._target_q_net)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: Batch) -> Batch:
        """Masked target Q-values. Without gradients, so the target's observation statistics
        (``obs_norm``) change only when RLlib syncs it from the online network."""
        with torch.no_grad():
            return {QF_PREDS: self._q(self._target_q_net, batch[Columns.OBS], masked=True)}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_q_net"]

    # -- forward passes ----------------------------------------------------------------------

    @override(RLModule)
    def _forward_inference(self, batch: Batch, **kwargs: Any) -> Batch:
        with torch.no_grad():
            q = self.compute_q_values(batch)[QF_PREDS]
        return {Columns.ACTIONS: q.argmax(dim=-1), Columns.ACTION_DIST_INPUTS: q}

    @override(RLModule)
    def _forward_exploration(self, batch: Batch, t: int = 0, **kwargs: Any) -> Batch:
        """Epsilon-greedy over the valid actions; epsilon follows the schedule in env steps."""
        with torch.no_grad():
            obs = batch[Columns.OBS]
            q = self.compute_q_values(batch)[QF_PREDS]
            greedy = q.argmax(dim=-1)
            lead = tuple(q.shape[:-1])
            mask = obs.get(ACTION_MASK_KEY) if isinstance(obs, dict) else None
            valid = valid_actions(mask, lead, self.n_actions)
            if valid is None:
                valid = torch.ones_like(q, dtype=torch.bool)
            random = torch.multinomial(valid.reshape(-1, self.n_actions).float(), 1).reshape(lead)
            self.epsilon_schedule.update(t)
            epsilon = float(self.epsilon_schedule.get_current_value())
            explore = torch.rand(lead, device=q.device) < epsilon
        return {Columns.ACTIONS: torch.where(explore, random, greedy)}

    @override(RLModule)
    def _forward(self, batch: Batch, **kwargs: Any) -> Batch:
        return self._forward_inference(batch)

    @override(RLModule)
    def _forward_train(self, batch: Batch, **kwargs: Any) -> Batch:
        """``qf_preds`` (current obs, unmasked: the loss gathers the taken action), and for the
        target: ``qf_next_preds`` (online, double Q) and ``qf_target_next_preds``, both masked
        with the next observation's mask. Online current and next observations go through the
        network in one pass, as in RLlib's module."""
        if self.inference_only:
            raise RuntimeError("an inference-only Q module cannot be trained")
        obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
        out: Batch = {}
        if self.uses_double_q:
            both = _concat(obs, next_obs)
            n = self.q_net.encoder.lead_shape(obs)[0]
            q_both = self._q(self.q_net, both, masked=False)
            out[QF_PREDS] = q_both[:n]
            next_mask = next_obs.get(ACTION_MASK_KEY) if isinstance(next_obs, dict) else None
            q_next = q_both[n:]
            out[QF_NEXT_PREDS] = (mask_logits(q_next, next_mask, (self.n_actions,))
                                  if next_mask is not None else q_next)
        else:
            out[QF_PREDS] = self._q(self.q_net, obs, masked=False)
        out[QF_TARGET_NEXT_PREDS] = self.forward_target({Columns.OBS: next_obs})[QF_PREDS]
        return out

    # -- distributions ----------------------------------------------------------------------

    @override(RLModule)
    def get_inference_action_dist_cls(self) -> type[TorchDistribution]:
        return TorchCategorical

    @override(RLModule)
    def get_exploration_action_dist_cls(self) -> type[TorchDistribution]:
        return TorchCategorical

    @override(RLModule)
    def get_train_action_dist_cls(self) -> type[TorchDistribution]:
        return TorchCategorical


def _concat(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k]], dim=0) for k in a}
    return torch.cat([a, b], dim=0)


class QMLPModule(QRLModule):
    """Q-module on the MLP model's encoder (every window flattened)."""

    MODEL_NAME: ClassVar[str] = "mlp"


class QAttentionModule(QRLModule):
    """Q-module on the attention model's encoder (a transformer per observation window)."""

    MODEL_NAME: ClassVar[str] = "attention"


Q_MODEL_CLASSES: dict[str, type[QRLModule]] = {"mlp": QMLPModule, "attention": QAttentionModule}

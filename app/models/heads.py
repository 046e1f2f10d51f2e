"""Policy and value heads, and the RLlib action distribution for each action space.

Action spaces (what the envs use):

* ``Discrete(n)`` -> ``TorchCategorical`` over ``n`` logits (StockSwing hold/buy/sell, buy-only);
* ``MultiDiscrete(nvec)`` (1-D) -> ``TorchMultiCategorical`` over ``sum(nvec)`` logits
  (Portfolio: per-asset long/flat/short);
* ``Box(shape=(k,))`` float -> ``TorchDiagGaussian`` over ``2k`` inputs: a state-dependent mean
  and a state-INDEPENDENT log std parameter (PPO's usual choice: exploration noise is learned
  but not conditioned on the market, which is stabler early on). Actions are in RLlib's
  normalized [-1, 1] space (``normalize_actions=True`` rescales to the env's bounds).

Action masks: where the observation holds ``action_mask`` (0 = the env ignores the action there),
:func:`mask_logits` sets the logits of masked actions to the dtype's most negative finite value,
so their probability is exactly 0 (never sampled, never the argmax) and a step with one valid
action is a one-action distribution: log-prob 0, entropy 0, KL 0 and zero gradients, all finite.

The final policy layer starts with small weights (``pi_init_std``), so initial logits are ~0 and
the initial policy is near-uniform: entropy ~ log|A| for discrete spaces, and
``k * (0.5 * log(2 pi e) + initial_log_std)`` for the Gaussian.
"""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import torch
from ray.rllib.core.distribution.distribution import Distribution
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
    TorchMultiCategorical,
)
from torch import nn

from app.models.config import LOG_STD_MAX, LOG_STD_MIN, ModelConfig
from app.models.encoders import build_mlp


def check_action_space(action_space: gym.Space) -> None:
    """Raise ``ValueError`` for action spaces the heads do not support."""
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise ValueError(f"Discrete action space must start at 0 (RLlib), got {action_space}")
        return
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        if action_space.nvec.ndim != 1 or bool((action_space.start != 0).any()):
            raise ValueError(
                f"MultiDiscrete action space must be 1-D and start at 0, got {action_space}"
            )
        return
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1 or not (
            action_space.dtype is not None and action_space.dtype.kind == "f"
        ):
            raise ValueError(f"Box action space must be float and 1-D, got {action_space}")
        return
    raise ValueError(
        f"unsupported action space {action_space}; expected Discrete, MultiDiscrete or Box"
    )


@functools.lru_cache(maxsize=64)
def _multi_categorical(nvec: tuple[int, ...]) -> type[Distribution]:
    # One partial class per nvec, so repeated calls return the same class object.
    return TorchMultiCategorical.get_partial_dist_cls(
        space=gym.spaces.MultiDiscrete(list(nvec)), input_lens=list(nvec)
    )


def action_dist_cls(action_space: gym.Space) -> type[Distribution]:
    """RLlib's distribution class for ``action_space`` (``from_logits`` ready)."""
    check_action_space(action_space)
    if isinstance(action_space, gym.spaces.Discrete):
        return TorchCategorical
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return _multi_categorical(tuple(int(n) for n in action_space.nvec))
    return TorchDiagGaussian


def action_dist_input_dim(action_space: gym.Space) -> int:
    """Width of ``ACTION_DIST_INPUTS`` for ``action_space``."""
    check_action_space(action_space)
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(action_space.nvec.sum())
    return 2 * int(action_space.shape[0])


def max_entropy_nats(action_space: gym.Space) -> float:
    """Entropy of the uniform policy over a discrete action space, in nats."""
    if isinstance(action_space, gym.spaces.Discrete):
        return math.log(int(action_space.n))
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return float(sum(math.log(int(n)) for n in action_space.nvec))
    raise ValueError(f"max entropy is defined for discrete action spaces, not {action_space}")


def mask_components(action_space: gym.Space) -> tuple[int, ...] | None:
    """Logit widths of the independent choices a mask applies to (``(n,)`` for ``Discrete(n)``,
    ``nvec`` for ``MultiDiscrete``); None for continuous spaces (no mask)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return tuple(int(n) for n in action_space.nvec)
    return None


def mask_logits(logits: torch.Tensor, mask: torch.Tensor, components: tuple[int, ...]) -> torch.Tensor:
    """``logits`` ``[*lead, sum(components)]`` with masked actions (``mask`` ``[*lead, ...]``,
    0/1, flattened to the logits' width) set to ``finfo(dtype).min``. A choice with no valid
    action at all (a zero-padded time step of a GRU batch) is left unmasked rather than made
    degenerate."""
    valid = mask.reshape(*logits.shape[:-1], -1) > 0.5
    if valid.shape[-1] != logits.shape[-1]:
        raise ValueError(f"action_mask: {valid.shape[-1]} entries per row for {logits.shape[-1]} logits")
    parts = valid.split(list(components), dim=-1)
    valid = torch.cat([p | ~p.any(dim=-1, keepdim=True) for p in parts], dim=-1)
    return logits.masked_fill(~valid, torch.finfo(logits.dtype).min)


class PolicyHead(nn.Module):
    """Embedding ``[..., in_dim]`` -> ``ACTION_DIST_INPUTS`` ``[..., action_dist_input_dim]``."""

    def __init__(self, in_dim: int, action_space: gym.Space, cfg: ModelConfig) -> None:
        super().__init__()
        check_action_space(action_space)
        self.trunk, width = build_mlp(in_dim, cfg.head_hiddens, cfg.activation, cfg.dropout)
        self.gaussian = isinstance(action_space, gym.spaces.Box)
        n_out = action_dist_input_dim(action_space) // (2 if self.gaussian else 1)
        self.out = nn.Linear(width, n_out)
        nn.init.normal_(self.out.weight, std=cfg.pi_init_std)
        nn.init.zeros_(self.out.bias)
        if self.gaussian:
            self.log_std = nn.Parameter(torch.full((n_out,), cfg.initial_log_std))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        z = self.out(self.trunk(embeddings))
        if not self.gaussian:
            return z
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(z)
        return torch.cat([z, log_std], dim=-1)


class ValueHead(nn.Module):
    """Embedding ``[..., in_dim]`` -> value ``[...]`` (last dim squeezed, as RLlib expects)."""

    def __init__(self, in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk, width = build_mlp(in_dim, cfg.head_hiddens, cfg.activation, cfg.dropout)
        self.out = nn.Linear(width, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(embeddings)).squeeze(-1)

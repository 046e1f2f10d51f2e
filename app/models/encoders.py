"""Encoder for the envs' Dict observations, shared by the MLP, GRU and attention modules.

The envs emit a ``spaces.Dict`` of float32 Boxes whose keys differ per env, so the encoder is
built from the observation space, entry by entry (in the space's key order):

* rank 0/1 ``(k,)`` -- position state, funding, ...: all such entries are concatenated into one
  flat vector and embedded by ONE ``Linear -> act`` (a per-entry Linear on a 1-wide ``owned`` flag
  would waste a whole ``embed_dim`` slot of the fusion input);
* rank 2 ``(window_bars, n_features)`` -- a window of bars, oldest first: a temporal embedding,
  ``"flatten"`` (flatten + ``Linear -> act``) or ``"attention"`` (per-bar projection + learned
  positional embedding + pre-norm ``TransformerEncoder``, pooled by the newest bar's token or the
  mean, then ``Linear -> act``). Every key has its own window length and weights;
* rank 3 ``(n_assets, window_bars, n_features)`` -- per-asset windows: ``asset_axis="batch"``
  (default) folds assets into the batch, embeds each asset's window with shared weights and
  concatenates the ``n_assets`` embeddings; ``asset_axis="features"`` folds assets into the
  feature axis, ``(window_bars, n_assets * n_features)``;
* rank-1 entries named in ``sequence_keys`` are treated as ``(window_bars, 1)`` windows;
* ``action_mask`` (:data:`~envs.core.observation.ACTION_MASK_KEY`) is NOT encoded: the policy
  head applies it to the logits (:func:`app.models.heads.mask_logits`), and it is a function of
  the position entries the encoder already sees. A module trained with or without a mask
  therefore has the same encoder, weight for weight.

The embeddings are concatenated, layer-normed and fused by an MLP. Inputs may carry any leading
batch dims (``[B, ...]`` or ``[B, T, ...]``); they are flattened and restored around the layers.
A plain Box observation space is accepted as a one-entry Dict (key ``"obs"``).
"""

from __future__ import annotations

import math
from typing import Literal

import gymnasium as gym
import torch
from torch import nn

from app.models.config import ModelConfig
from envs.core.observation import ACTION_MASK_KEY

Temporal = Literal["flatten", "attention"]
SINGLE_KEY = "obs"


def make_activation(name: str) -> nn.Module:
    """A fresh activation module (fresh per layer, so forward hooks see each layer)."""
    table: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(table)}")
    return table[name]()


def build_mlp(in_dim: int, hiddens: tuple[int, ...], activation: str,
              dropout: float) -> tuple[nn.Sequential, int]:
    """``[Linear -> act (-> Dropout)] * len(hiddens)``; returns the stack and its output width."""
    layers: list[nn.Module] = []
    for width in hiddens:
        layers += [nn.Linear(in_dim, width), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers), in_dim


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log1p(|x|)``: identity near 0, logarithmic for large magnitudes."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


class RunningNorm(nn.Module):
    """Per-element running standardization of one observation entry.

    Buffers (saved with the module, so every consumer of a checkpoint applies the same
    statistics): ``mean``, ``var`` and ``count``, merged batch by batch with Chan et al.'s
    parallel update. Statistics change only in :meth:`update`, which the encoder calls in
    training passes with gradients enabled (the learner); sampling, backtests and Serve run
    without gradients and only read them. Outputs are clipped to ``[-clip, clip]``.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(0.0))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of ``x`` ``[N, *shape]`` into the running ones."""
        n = float(x.shape[0])
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.fill_(float(total))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


class FlattenWindowEmbed(nn.Module):
    """``[N, window_bars, n_features] -> [N, embed_dim]`` by flatten + Linear + act; with
    ``cfg.bar_embed > 0`` a shared per-bar ``Linear -> act`` first (see ModelConfig)."""

    def __init__(self, window_bars: int, n_features: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.bar: nn.Module | None = None
        if cfg.bar_embed > 0:
            self.bar, n_features = build_mlp(n_features, (cfg.bar_embed,), cfg.activation, 0.0)
        self.net, self.out_dim = build_mlp(window_bars * n_features, (cfg.embed_dim,),
                                           cfg.activation, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bar is not None:
            x = self.bar(x)
        return self.net(x.flatten(1))


class TransformerWindowEmbed(nn.Module):
    """``[N, window_bars, n_features] -> [N, embed_dim]`` with a transformer over the window.

    Stateless: attention runs over the bars of one observation, so nothing is carried between
    env steps (simple to serve, no ``max_seq_len`` chunking).
    """

    def __init__(self, window_bars: int, n_features: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.pool = cfg.attn_pool
        self.project = nn.Linear(n_features, cfg.attn_dim)
        # Learned positions: windows are short (tens of bars) and of fixed length per key.
        self.position = nn.Parameter(torch.randn(window_bars, cfg.attn_dim) * 0.02)
        # The activation is wrapped in a Sequential so torch never takes its fused inference
        # "fast path" (only taken for a bare ReLU/GELU): sampling (eval, no grad) and the PPO
        # loss (train) then run the same kernels, and the ReLU forward hooks see the FFN.
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.attn_dim, nhead=cfg.attn_heads, dim_feedforward=cfg.attn_ff_dim,
            dropout=cfg.dropout, activation=nn.Sequential(make_activation(cfg.activation)),
            batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=cfg.attn_layers, norm=nn.LayerNorm(cfg.attn_dim),
            enable_nested_tensor=False,
        )
        self.out, self.out_dim = build_mlp(cfg.attn_dim, (cfg.embed_dim,), cfg.activation,
                                           cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.transformer(self.project(x) + self.position)
        pooled = tokens[:, -1] if self.pool == "last" else tokens.mean(dim=1)
        return self.out(pooled)


def _window_embed(temporal: Temporal, window_bars: int, n_features: int,
                  cfg: ModelConfig) -> nn.Module:
    if temporal == "flatten":
        return FlattenWindowEmbed(window_bars, n_features, cfg)
    if temporal == "attention":
        return TransformerWindowEmbed(window_bars, n_features, cfg)
    raise ValueError(f"unknown temporal embedding {temporal!r}")


def _module_name(key: str, taken: set[str]) -> str:
    """A ModuleDict-safe, unique, readable name for observation key ``key``."""
    base = "obs_" + "".join(c if c.isalnum() or c == "_" else "_" for c in key)
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


class DictObsEncoder(nn.Module):
    """Embeds every entry of a Dict observation and fuses them into one vector.

    Attributes:
        out_dim: width of the fused embedding.
        flat_keys / window_keys / asset_keys: the entries by how they are embedded.
    """

    def __init__(self, observation_space: gym.Space, cfg: ModelConfig,
                 temporal: Temporal) -> None:
        super().__init__()
        self.single = isinstance(observation_space, gym.spaces.Box)
        if self.single:
            observation_space = gym.spaces.Dict({SINGLE_KEY: observation_space})
        if not isinstance(observation_space, gym.spaces.Dict):
            raise ValueError(
                f"observation space must be a Dict of Boxes (or a Box), got {observation_space}"
            )
        self.symlog = cfg.input_symlog
        self.obs_norm = nn.ModuleDict() if cfg.obs_norm else None
        self._norm_names: dict[str, str] = {}
        self.asset_axis = cfg.asset_axis
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.flat_keys: list[str] = []
        self.window_keys: list[str] = []
        self.asset_keys: list[str] = []
        self.embed = nn.ModuleDict()
        self._names: dict[str, str] = {}
        taken = {"flat"}
        missing = set(cfg.sequence_keys) - set(observation_space.spaces)
        if missing:
            raise ValueError(f"model_config['sequence_keys']: not in the observation: {sorted(missing)}")

        concat_dim = 0
        for key, space in observation_space.spaces.items():
            if key == ACTION_MASK_KEY:  # applied to the logits, not encoded (module docstring)
                continue
            if not isinstance(space, gym.spaces.Box):
                raise ValueError(f"observation entry {key!r}: expected a Box, got {space}")
            shape = tuple(int(s) for s in space.shape)
            self.shapes[key] = shape
            if self.obs_norm is not None:
                norm_name = self._norm_names[key] = _module_name(key, set(self.obs_norm.keys()))
                self.obs_norm[norm_name] = RunningNorm(shape)
            if len(shape) <= 1 and key not in cfg.sequence_keys:
                self.flat_keys.append(key)
                continue
            if len(shape) == 0 or len(shape) > 3:
                raise ValueError(
                    f"observation entry {key!r}: shape {shape} not supported (rank 1: flat "
                    "features, rank 2: (window_bars, n_features), rank 3: (n_assets, "
                    "window_bars, n_features))"
                )
            name = self._names[key] = _module_name(key, taken)
            if len(shape) <= 2:
                window_bars, n_features = (shape[0], 1) if len(shape) == 1 else shape
                self.window_keys.append(key)
                module = _window_embed(temporal, window_bars, n_features, cfg)
                concat_dim += module.out_dim
            else:
                n_assets, window_bars, n_features = shape
                self.asset_keys.append(key)
                if cfg.asset_axis == "batch":
                    module = _window_embed(temporal, window_bars, n_features, cfg)
                    concat_dim += n_assets * module.out_dim
                else:
                    module = _window_embed(temporal, window_bars, n_assets * n_features, cfg)
                    concat_dim += module.out_dim
            self.embed[name] = module

        if self.flat_keys:
            flat_dim = sum(math.prod(self.shapes[k]) for k in self.flat_keys)
            self.flat, width = build_mlp(flat_dim, (cfg.embed_dim,), cfg.activation, cfg.dropout)
            concat_dim += width
        if concat_dim == 0:
            raise ValueError("observation space has no entries to encode")
        self.norm = nn.LayerNorm(concat_dim) if cfg.layer_norm else nn.Identity()
        self.fusion, self.out_dim = build_mlp(concat_dim, cfg.fusion_hiddens, cfg.activation,
                                              cfg.dropout)

    def lead_shape(self, obs: dict[str, torch.Tensor] | torch.Tensor) -> tuple[int, ...]:
        """The leading (batch, or batch and time) dims of ``obs``."""
        if not isinstance(obs, dict):
            obs = {SINGLE_KEY: obs}
        key = next(iter(self.shapes))
        if key not in obs:
            raise KeyError(f"observation batch lacks entry {key!r}; has {sorted(obs)}")
        x, rank = obs[key], len(self.shapes[key])
        return tuple(x.shape[: x.dim() - rank])

    def _entry(self, obs: dict[str, torch.Tensor], key: str, lead: tuple[int, ...]) -> torch.Tensor:
        """Entry ``key`` as float ``[N, *shape]`` with ``N = prod(lead)`` (shape checked)."""
        if key not in obs:
            raise KeyError(f"observation batch lacks entry {key!r}; has {sorted(obs)}")
        x, shape = obs[key], self.shapes[key]
        if tuple(x.shape) != (*lead, *shape):
            raise ValueError(
                f"observation entry {key!r}: expected shape {(*lead, *shape)} "
                f"(leading dims {lead}), got {tuple(x.shape)}"
            )
        x = x.float().reshape(-1, *shape)
        x = symlog(x) if self.symlog else x
        if self.obs_norm is not None:
            norm = self.obs_norm[self._norm_names[key]]
            if self.training and torch.is_grad_enabled():  # the learner's training pass
                norm.update(x)
            x = norm(x)
        return x

    def forward(self, obs: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``obs`` entries ``[*lead, *shape]`` -> fused embedding ``[*lead, out_dim]``."""
        if not isinstance(obs, dict):
            obs = {SINGLE_KEY: obs}
        lead = self.lead_shape(obs)
        parts: list[torch.Tensor] = []
        for key in self.window_keys:
            x = self._entry(obs, key, lead)
            if x.dim() == 2:  # a sequence_keys entry: (window_bars,) -> (window_bars, 1)
                x = x.unsqueeze(-1)
            parts.append(self.embed[self._names[key]](x))
        for key in self.asset_keys:
            x = self._entry(obs, key, lead)  # [N, A, W, F]
            n, n_assets, window_bars, n_features = x.shape
            module = self.embed[self._names[key]]
            if self.asset_axis == "batch":
                z = module(x.reshape(n * n_assets, window_bars, n_features))
                parts.append(z.reshape(n, -1))
            else:
                x = x.permute(0, 2, 1, 3).reshape(n, window_bars, n_assets * n_features)
                parts.append(module(x))
        if self.flat_keys:
            flat = torch.cat([self._entry(obs, k, lead).reshape(-1, math.prod(self.shapes[k]))
                              for k in self.flat_keys], dim=-1)
            parts.append(self.flat(flat))
        fused = self.fusion(self.norm(torch.cat(parts, dim=-1)))
        return fused.reshape(*lead, self.out_dim)

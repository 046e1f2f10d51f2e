"""Encoder for the envs' Dict observations, shared by the MLP, GRU and attention modules.

The envs emit a ``spaces.Dict`` of float32 Boxes whose keys differ per env, so the encoder is
built from the observation space, entry by entry (in the space's key order):

* rank 0/1 ``(k,)`` -- position state, funding, ...: all such entries are concatenated into one
  flat vector and embedded by ONE ``Linear -> act`` (a per-entry Linear on a 1-wide ``owned`` flag
  would waste a whole ``embed_dim`` slot of the fusion input);
* rank 2 ``(window_bars, n_features)`` -- a window of bars, oldest first: a temporal embedding,
  ``"flatten"`` (flatten + ``Linear -> act``; every key its own weights) or ``"attention"``:
  every window is cut into patches of ``attn_patch_bars`` bars, each patch one token (a
  ``Linear`` per key, plus a learned position per token and key); the tokens of ALL of a row's
  windows form one sequence for ONE shared pre-norm transformer (:class:`WindowAttention`, fused
  QKV and ``scaled_dot_product_attention``), so a daily token can attend to a weekly one, and
  every window is pooled from its own tokens (newest token or mean) before ``Linear -> act``;
* rank 3 ``(n_assets, window_bars, n_features)`` -- per-asset windows: ``asset_axis="batch"``
  (default) folds assets into the batch, embeds each asset's window with shared weights and
  concatenates the ``n_assets`` embeddings (attention: one sequence per asset, all assets and
  rows in one batch); ``asset_axis="features"`` folds assets into the feature axis,
  ``(window_bars, n_assets * n_features)``;
* rank-1 entries named in ``sequence_keys`` are treated as ``(window_bars, 1)`` windows;
* ``action_mask`` (:data:`~envs.core.observation.ACTION_MASK_KEY`) is NOT encoded: the policy
  head applies it to the logits (:func:`app.models.heads.mask_logits`), and it is a function of
  the position entries the encoder already sees. A module trained with or without a mask
  therefore has the same encoder, weight for weight.

No Python loop runs over bars, tokens, heads or assets: the loops are over observation keys
(a handful), and ``symlog`` runs once over all entries. The embeddings are concatenated,
layer-normed and fused by an MLP. Inputs may carry any leading
batch dims (``[B, ...]`` or ``[B, T, ...]``); they are flattened and restored around the layers.
A plain Box observation space is accepted as a one-entry Dict (key ``"obs"``).
"""

from __future__ import annotations

import math
from typing import Literal

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

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


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder layer over ``[M, L, dim]``: ``x + Attn(LN(x))``, then
    ``x + FFN(LN(x))``.

    One fused QKV ``Linear`` and torch's ``scaled_dot_product_attention`` over all heads at once:
    no Python loop over tokens, heads or windows. Written out rather than
    ``nn.TransformerEncoderLayer`` (whose argument checks and fast-path dispatch cost more than
    the maths at these sizes); the FFN activation is a module, so forward hooks (the dead-ReLU
    metric) see it, and training and inference run the same kernels.
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        ff: list[nn.Module] = [nn.Linear(dim, ff_dim), make_activation(activation)]
        if dropout > 0:
            ff.append(nn.Dropout(dropout))
        self.ff = nn.Sequential(*ff, nn.Linear(ff_dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[M, L, dim]`` -> ``[M, L, dim]``; with ``keep`` (token indices ``[K]``) only
        those tokens' outputs, ``[M, K, dim]``: they still attend to all ``L`` tokens, but the
        queries, the output projection and the FFN run for ``K`` tokens only (a last layer
        whose other outputs nobody reads)."""
        m, length, dim = x.shape
        h = self.norm1(x)
        if keep is None:
            qkv = self.qkv(h).view(m, length, 3, self.heads, dim // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [M, heads, L, head_dim]
        else:
            kv = F.linear(h, self.qkv.weight[dim:], self.qkv.bias[dim:])
            k, v = kv.view(m, length, 2, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
            x = x[:, keep]
            q = F.linear(h[:, keep], self.qkv.weight[:dim], self.qkv.bias[:dim])
            q = q.view(m, len(keep), self.heads, dim // self.heads).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v,
                                             dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(att.transpose(1, 2).reshape(m, x.shape[1], dim))
        return x + self.ff(self.norm2(x))


class PatchTokens(nn.Module):
    """``[M, window_bars, n_features] -> [M, n_tokens, attn_dim]``: consecutive bars grouped into
    patches of ``patch_bars`` (oldest first; the oldest patch is zero-padded at its old end when
    the window does not divide), each patch projected by one ``Linear``, plus a learned position
    per token. Patches are what keep attention cheap: a 50-bar window at 5 bars per patch is 10
    tokens, and attention's cost grows with tokens squared. ``patch_bars=1``: one token per bar.
    """

    def __init__(self, window_bars: int, n_features: int, patch_bars: int, dim: int) -> None:
        super().__init__()
        self.patch = min(patch_bars, window_bars)
        self.n_tokens = -(-window_bars // self.patch)
        self.pad = self.n_tokens * self.patch - window_bars
        self.project = nn.Linear(self.patch * n_features, dim)
        # Learned positions: windows are short and of fixed length per key. Per key, so they
        # also tell the shared transformer which window (timeframe) a token comes from.
        self.position = nn.Parameter(torch.randn(self.n_tokens, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (0, 0, self.pad, 0))
        return self.project(x.reshape(x.shape[0], self.n_tokens, -1)) + self.position


class WindowAttention(nn.Module):
    """One transformer over a group of windows, batched: the patch tokens of every window of a
    row are concatenated into ONE sequence (so a token of the daily window can attend to the
    weekly one), the sequences of all rows (samples, or samples x assets) run as one batch, and
    each window is pooled from its own tokens (its newest token, or their mean), layer-normed,
    concatenated and projected: ``[M, sum(n_tokens)] tokens -> [M, n_windows * embed_dim]``.
    """

    def __init__(self, n_tokens: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        dim = cfg.attn_dim
        self.blocks = nn.ModuleList([
            TransformerBlock(dim, cfg.attn_heads, cfg.attn_ff_dim, cfg.activation, cfg.dropout)
            for _ in range(cfg.attn_layers)
        ])
        self.norm = nn.LayerNorm(dim)
        ends = torch.tensor(n_tokens).cumsum(0)
        if cfg.attn_pool == "last":
            self.register_buffer("last", ends - 1, persistent=False)
            self.pool: torch.Tensor | None = None
        else:  # [n_windows, L]: row k averages window k's tokens
            pool = torch.zeros(len(n_tokens), int(ends[-1]))
            for k, (end, n) in enumerate(zip(ends.tolist(), n_tokens, strict=True)):
                pool[k, end - n:end] = 1.0 / n
            self.register_buffer("pool", pool, persistent=False)
        self.out, self.out_dim = build_mlp(len(n_tokens) * dim, (len(n_tokens) * cfg.embed_dim,),
                                           cfg.activation, cfg.dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool is None:  # "last": the last layer computes the pooled tokens only
            *first, last = self.blocks
            for block in first:
                tokens = block(tokens)
            pooled = last(tokens, keep=self.last)  # [M, n_windows, dim]
        else:
            for block in self.blocks:
                tokens = block(tokens)
            pooled = torch.matmul(self.pool, tokens)
        return self.out(self.norm(pooled).flatten(1))


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
        row_tokens: list[int] = []  # attention: tokens per window, in forward's order
        asset_tokens: list[int] = []
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
            else:
                self.asset_keys.append(key)
                n_assets, window_bars, n_features = shape
                if cfg.asset_axis == "features":
                    n_features *= n_assets
            if temporal == "flatten":
                flatten = FlattenWindowEmbed(window_bars, n_features, cfg)
                concat_dim += flatten.out_dim * (shape[0] if self._per_asset(key) else 1)
                module: nn.Module = flatten
            elif temporal == "attention":
                module = PatchTokens(window_bars, n_features, cfg.attn_patch_bars, cfg.attn_dim)
                (asset_tokens if self._per_asset(key) else row_tokens).append(module.n_tokens)
            else:
                raise ValueError(f"unknown temporal embedding {temporal!r}")
            self.embed[name] = module

        # attention: one transformer per group of windows (WindowAttention): the per-sample
        # windows (rank 2, and rank 3 with asset_axis="features"), and the per-asset ones
        self.row_attn = WindowAttention(row_tokens, cfg) if row_tokens else None
        self.asset_attn = WindowAttention(asset_tokens, cfg) if asset_tokens else None
        if self.row_attn is not None:
            concat_dim += self.row_attn.out_dim
        if self.asset_attn is not None:
            asset_counts = {self.shapes[k][0] for k in self.asset_keys}
            if len(asset_counts) > 1:
                raise ValueError(
                    "attention with asset_axis='batch' needs the same n_assets in every rank-3 "
                    f"entry, got {dict((k, self.shapes[k][0]) for k in self.asset_keys)}")
            concat_dim += asset_counts.pop() * self.asset_attn.out_dim
        if self.flat_keys:
            flat_dim = sum(math.prod(self.shapes[k]) for k in self.flat_keys)
            self.flat, width = build_mlp(flat_dim, (cfg.embed_dim,), cfg.activation, cfg.dropout)
            concat_dim += width
        if concat_dim == 0:
            raise ValueError("observation space has no entries to encode")
        self._order = self.flat_keys + self.window_keys + self.asset_keys
        self._sizes = [math.prod(self.shapes[k]) for k in self._order]
        self.norm = nn.LayerNorm(concat_dim) if cfg.layer_norm else nn.Identity()
        self.fusion, self.out_dim = build_mlp(concat_dim, cfg.fusion_hiddens, cfg.activation,
                                              cfg.dropout)

    def _per_asset(self, key: str) -> bool:
        """A rank-3 entry whose assets are folded into the batch (embedded per asset)."""
        return len(self.shapes[key]) == 3 and self.asset_axis == "batch"

    def lead_shape(self, obs: dict[str, torch.Tensor] | torch.Tensor) -> tuple[int, ...]:
        """The leading (batch, or batch and time) dims of ``obs``."""
        if not isinstance(obs, dict):
            obs = {SINGLE_KEY: obs}
        key = next(iter(self.shapes))
        if key not in obs:
            raise KeyError(f"observation batch lacks entry {key!r}; has {sorted(obs)}")
        x, rank = obs[key], len(self.shapes[key])
        return tuple(x.shape[: x.dim() - rank])

    def _entries(self, obs: dict[str, torch.Tensor], lead: tuple[int, ...]) -> list[torch.Tensor]:
        """Every encoded entry as float ``[N, prod(shape)]`` (``N = prod(lead)``), in the order
        flat keys, window keys, asset keys (shapes checked). ``symlog`` runs ONCE over all of
        them concatenated (one op instead of four per entry: at sampling batch sizes the cost is
        the number of ops, not their size)."""
        n = math.prod(lead)
        xs = []
        for key in self._order:
            if key not in obs:
                raise KeyError(f"observation batch lacks entry {key!r}; has {sorted(obs)}")
            x, shape = obs[key], self.shapes[key]
            if tuple(x.shape) != (*lead, *shape):
                raise ValueError(
                    f"observation entry {key!r}: expected shape {(*lead, *shape)} "
                    f"(leading dims {lead}), got {tuple(x.shape)}"
                )
            xs.append(x.reshape(n, -1))
        if self.symlog:
            xs = list(symlog((torch.cat(xs, dim=1) if len(xs) > 1 else xs[0]).float())
                      .split(self._sizes, dim=1))
        else:
            xs = [x.float() for x in xs]
        if self.obs_norm is not None:
            update = self.training and torch.is_grad_enabled()  # the learner's training pass
            for i, key in enumerate(self._order):
                norm = self.obs_norm[self._norm_names[key]]
                x = xs[i].reshape(n, *self.shapes[key])
                if update:
                    norm.update(x)
                xs[i] = norm(x).reshape(n, -1)
        return xs

    def forward(self, obs: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``obs`` entries ``[*lead, *shape]`` -> fused embedding ``[*lead, out_dim]``."""
        if not isinstance(obs, dict):
            obs = {SINGLE_KEY: obs}
        lead = self.lead_shape(obs)
        n = math.prod(lead)
        xs = iter(self._entries(obs, lead))
        flat = [next(xs) for _ in self.flat_keys]
        parts: list[torch.Tensor] = []
        row_tokens: list[torch.Tensor] = []  # attention: token groups (see WindowAttention)
        asset_tokens: list[torch.Tensor] = []
        attention = self.row_attn is not None or self.asset_attn is not None
        for key in self.window_keys:
            shape = self.shapes[key]
            x = next(xs).reshape(n, shape[0], -1)  # a rank-1 sequence_keys entry: (W,) -> (W, 1)
            (row_tokens if attention else parts).append(self.embed[self._names[key]](x))
        for key in self.asset_keys:
            n_assets, window_bars, n_features = self.shapes[key]
            x = next(xs).reshape(n, n_assets, window_bars, n_features)
            module = self.embed[self._names[key]]
            if self.asset_axis == "batch":
                z = module(x.reshape(n * n_assets, window_bars, n_features))
                (asset_tokens if attention else parts).append(z if attention else z.reshape(n, -1))
            else:
                x = x.permute(0, 2, 1, 3).reshape(n, window_bars, n_assets * n_features)
                (row_tokens if attention else parts).append(module(x))
        if self.row_attn is not None:
            parts.append(self.row_attn(torch.cat(row_tokens, dim=1)))
        if self.asset_attn is not None:
            parts.append(self.asset_attn(torch.cat(asset_tokens, dim=1)).reshape(n, -1))
        if flat:
            parts.append(self.flat(torch.cat(flat, dim=-1) if len(flat) > 1 else flat[0]))
        fused = self.fusion(self.norm(torch.cat(parts, dim=-1)))
        return fused.reshape(*lead, self.out_dim)

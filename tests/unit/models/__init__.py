"""Unit tests of app.models (no Ray cluster) and their shared fixtures-as-functions.

Spaces mirror the envs' observations at a small scale: StockSwing-like windows of DIFFERENT
lengths per key, rank-1 volume windows and position state, and a portfolio observation with a
rank-3 ``(n_assets, window_bars, n_features)`` entry.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns

torch.set_num_threads(1)

WINDOW_BARS = 10
N_ASSETS = 3


def box(shape: tuple[int, ...], low: float = -10.0, high: float = 10.0) -> gym.spaces.Box:
    return gym.spaces.Box(np.float32(low), np.float32(high), shape, np.float32)


def stock_obs_space(window_bars: int = WINDOW_BARS) -> gym.spaces.Dict:
    """StockSwing-like: daily/weekly/index windows, a shorter monthly one, volumes, position."""
    return gym.spaces.Dict({
        "daily_hloc": box((window_bars, 4)),
        "weekly_hloc": box((window_bars, 4)),
        "monthly_hloc": box((6, 4)),
        "index_hloc": box((window_bars, 4)),
        "daily_volume": box((window_bars,), 0.0, float(window_bars)),
        "weekly_volume": box((window_bars,), 0.0, float(window_bars)),
        "owned": box((1,), 0.0, 1.0),
        "bars_held": box((1,), 0.0, 1e5),
    })


def portfolio_obs_space(n_assets: int = N_ASSETS, window_bars: int = WINDOW_BARS) -> gym.spaces.Dict:
    """Portfolio-like: per-asset windows (rank 3), an index window, per-asset positions."""
    return gym.spaces.Dict({
        "assets_hloc": box((n_assets, window_bars, 4)),
        "index_hloc": box((window_bars, 4)),
        "positions": box((n_assets,), -1.0, 1.0),
    })


# (id, observation space, action space): the cases the issue asks for.
CASES: list[tuple[str, gym.spaces.Dict, gym.Space]] = [
    ("discrete3", stock_obs_space(), gym.spaces.Discrete(3)),
    ("multidiscrete", portfolio_obs_space(), gym.spaces.MultiDiscrete([3] * N_ASSETS)),
    ("box", stock_obs_space(), gym.spaces.Box(-1.0, 1.0, (1,), np.float32)),
]

# Small widths so every test builds and runs in milliseconds.
SMALL: dict[str, Any] = {
    "embed_dim": 16, "fusion_hiddens": [32], "head_hiddens": [16],
    "gru_hidden": 16, "max_seq_len": 4,
    "attn_dim": 16, "attn_heads": 2, "attn_layers": 1, "attn_ff_dim": 32,
}


def small_config(name: str, **overrides: Any) -> dict[str, Any]:
    """SMALL restricted to the keys model ``name`` accepts, plus ``overrides``."""
    from app.models import MODEL_CONFIG_KEYS

    return {k: v for k, v in {**SMALL, **overrides}.items() if k in MODEL_CONFIG_KEYS[name]}


def random_obs(space: gym.spaces.Dict, lead: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform samples over each Box's bounds (extreme scales included), shape ``[*lead, *shape]``."""
    rng = np.random.default_rng(seed)
    return {
        key: torch.from_numpy(rng.uniform(s.low, s.high, (*lead, *s.shape)).astype(np.float32))
        for key, s in space.spaces.items()
    }


def make_batch(module: Any, space: gym.spaces.Dict, batch_size: int = 4, seq_len: int = 3,
               seed: int = 0) -> dict[str, Any]:
    """An RLlib-shaped batch: ``[B, T, ...]`` plus ``STATE_IN`` for stateful modules."""
    if module.is_stateful():
        batch: dict[str, Any] = {Columns.OBS: random_obs(space, (batch_size, seq_len), seed)}
        gen = torch.Generator().manual_seed(seed)
        batch[Columns.STATE_IN] = {
            k: torch.randn((batch_size, *v.shape), generator=gen) * 0.5
            for k, v in module.get_initial_state().items()
        }
        return batch
    return {Columns.OBS: random_obs(space, (batch_size,), seed)}

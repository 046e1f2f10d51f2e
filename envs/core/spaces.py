"""Space helpers: float32 boxes with finite bounds, and batching for the vector face.

Finite bounds make "observations always lie in the observation space" a real check (a NaN or an
out-of-range value fails ``Box.contains``) and tell a model what to expect.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

__all__ = ["batch_space", "box", "dict_space", "discrete"]


def box(low: float, high: float, shape: tuple[int, ...]) -> spaces.Box:
    """A float32 Box with scalar bounds."""
    if not low < high:
        raise ValueError(f"box: need low < high, got low={low}, high={high}")
    return spaces.Box(low=np.float32(low), high=np.float32(high), shape=shape, dtype=np.float32)


def dict_space(fields: Mapping[str, tuple[tuple[int, ...], float, float]]) -> spaces.Dict:
    """``{name: (shape, low, high)}`` -> a Dict of float32 boxes (keys in the given order)."""
    return spaces.Dict({name: box(low, high, shape) for name, (shape, low, high) in fields.items()})


def discrete(n: int) -> spaces.Discrete:
    """A Discrete action space of ``n`` actions."""
    if n < 1:
        raise ValueError(f"discrete: need n >= 1, got {n}")
    return spaces.Discrete(n)

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


# --- action checks (cheap: O(1) per single step, vectorized per batch) -------------------------

def _as_int(action, n: int) -> int:
    if isinstance(action, (int, np.integer)) or (
            isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"):
        return int(action)
    raise ValueError(f"action: expected an int in [0, {n}) (Discrete({n})), got {action!r}")


def discrete_action(n: int, values: tuple | None = None):
    """``action -> int`` (or ``values[action]``) for a single env's ``Discrete(n)``: a ValueError
    for anything outside the space (out of range, a float, an array with a shape), O(1); plain
    ints take the fast path."""

    def convert(action):
        if type(action) is not int:
            action = _as_int(action, n)
        if 0 <= action < n:
            return action if values is None else values[action]
        raise ValueError(f"action: {action} is not in Discrete({n}) (an int in [0, {n}))")

    return convert


def discrete_actions(actions, num_envs: int, n: int) -> np.ndarray:
    """``[num_envs]`` ints in ``[0, n)`` for a vector env (its ``batch_space(Discrete(n))``),
    checked vectorized; a ValueError names the first bad env."""
    a = np.asarray(actions)
    if a.shape != (num_envs,) or a.dtype.kind not in "iu":
        raise ValueError(f"actions: expected {num_envs} ints in [0, {n}) (shape ({num_envs},)), "
                         f"got {a.dtype} {a.shape}")
    unsigned = a.view(f"u{a.itemsize}") if a.dtype.kind == "i" else a  # negatives wrap to >= n
    if (unsigned >= n).any():  # one comparison and one reduction per batch
        bad = int(np.flatnonzero((a < 0) | (a >= n))[0])
        raise ValueError(f"actions: env {bad} has {a[bad]}, not in Discrete({n})")
    return a


def box_actions(actions, shape: tuple[int, ...]) -> np.ndarray:
    """float64 actions of exactly ``shape`` with no NaN (values beyond the bounds are the env's to
    clip, as gymnasium's ClipAction and Gaussian policies expect); else a ValueError."""
    a = np.asarray(actions, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"actions: expected shape {shape}, got {a.shape}")
    if np.isnan(a).any():
        raise ValueError("actions: NaN")
    return a

"""Discretised actions: a continuous ``Box`` action space as N levels per dimension.

So DQN and discrete PPO can trade an env whose native action is a continuous target
(Portfolio's ``action_mode="continuous"`` weights, CryptoFutures' ``action_mode="continuous"``
level, or any other ``Box``). The wrapped env does all the stepping, so the cost maths is the
env's own: a discrete action ``i`` is exactly the continuous env stepped with ``grid[i]``.

* one dimension (``Box(shape=(1,))``): ``Discrete(N)``, action ``i`` -> ``[grid[0][i]]``;
* ``k`` dimensions: ``MultiDiscrete([N] * k)``, action ``(i_1..i_k)`` -> ``[grid[d][i_d]]``.

The grid (``levels=``) is either an int ``N >= 2`` (``N`` evenly spaced values from each
dimension's ``low`` to ``high``; odd ``N`` over a symmetric box includes 0 = flat) or an
increasing sequence of values used for every dimension (each within the box's bounds).

CryptoFutures already has native discrete levels (``action_mode="discrete"``, ``size_levels``:
``Discrete(2k+1)`` with an action mask), and Portfolio a native 3-level ``MultiDiscrete``
(short/flat/long at ``max_leverage / n_assets``). These wrappers give a configurable grid over
the continuous faces instead, for both the single env (:class:`DiscretizeAction`) and the
vector env (:class:`DiscretizeVectorAction`); :func:`discretize` picks the right one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorActionWrapper, VectorEnv
from gymnasium.vector.utils import batch_space

Levels = int | Sequence[float]


def action_grid(box: spaces.Space, levels: Levels) -> np.ndarray:
    """``[k, N]`` values: row ``d`` holds dimension ``d``'s levels, in increasing order."""
    if not isinstance(box, spaces.Box) or len(box.shape) != 1 or box.shape[0] < 1:
        raise ValueError(f"discretize: needs a 1-D Box action space, got {box}")
    low, high = box.low.astype(np.float64), box.high.astype(np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"discretize: the action box must be bounded, got {box}")
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        if levels < 2:
            raise ValueError(f"discretize: levels must be >= 2, got {levels}")
        return np.linspace(low, high, int(levels), axis=1)
    values = np.asarray(levels, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2 or not np.isfinite(values).all() or np.any(np.diff(values) <= 0):
        raise ValueError(f"discretize: levels must be an int >= 2 or an increasing sequence of "
                         f"at least 2 finite numbers, got {levels!r}")
    if values[0] < low.max() - 1e-9 or values[-1] > high.min() + 1e-9:
        raise ValueError(f"discretize: levels {values.tolist()} leave the action box "
                         f"[{low.tolist()}, {high.tolist()}]")
    return np.tile(values, (box.shape[0], 1))


def discrete_space(grid: np.ndarray, seed: Any = None) -> spaces.Space:
    """``Discrete(N)`` for one dimension, ``MultiDiscrete([N] * k)`` for ``k``."""
    k, n = grid.shape
    return spaces.Discrete(n, seed=seed) if k == 1 else spaces.MultiDiscrete([n] * k, seed=seed)


def to_continuous(grid: np.ndarray, action: Any, dtype: Any, batch: int | None = None) -> np.ndarray:
    """Discrete action(s) -> the continuous target(s): ``[k]`` (``batch=None``) or ``[batch, k]``.
    Indices outside ``[0, N)`` raise (an agent bug, not something to clip silently)."""
    k, n = grid.shape
    idx = np.asarray(action)
    if not np.issubdtype(idx.dtype, np.integer):
        if not np.all(np.equal(np.mod(idx, 1), 0)):
            raise ValueError(f"discretize: action {action!r} is not an integer index")
        idx = idx.astype(np.int64)
    shape = (k,) if batch is None else (batch, k)
    if k == 1 and idx.shape == (shape[:-1]):  # Discrete: a scalar (or [batch]) index
        idx = idx[..., None]
    if idx.shape != shape:
        raise ValueError(f"discretize: action shape {idx.shape}, expected {shape if k > 1 else shape[:-1]}")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"discretize: action {action!r} outside [0, {n})")
    return grid[np.arange(k), idx].astype(dtype, copy=False)


class DiscretizeAction(gym.ActionWrapper):
    """Single face: the wrapped env's ``Box`` action as ``Discrete``/``MultiDiscrete`` levels."""

    def __init__(self, env: gym.Env, levels: Levels = 5) -> None:
        super().__init__(env)
        self.grid = action_grid(env.action_space, levels)
        self._dtype = env.action_space.dtype
        self.action_space = discrete_space(self.grid)

    def action(self, action: Any) -> np.ndarray:
        return to_continuous(self.grid, action, self._dtype)


class DiscretizeVectorAction(VectorActionWrapper):
    """Vector face: each env's ``Box`` action as levels; ``actions`` is ``[num_envs]``
    (one dimension) or ``[num_envs, k]``."""

    def __init__(self, env: VectorEnv, levels: Levels = 5) -> None:
        super().__init__(env)
        self.grid = action_grid(env.single_action_space, levels)
        self._dtype = env.single_action_space.dtype
        self.single_action_space = discrete_space(self.grid)
        self.action_space = batch_space(self.single_action_space, env.num_envs)

    def actions(self, actions: Any) -> Any:
        return to_continuous(self.grid, actions, self._dtype, batch=self.num_envs)


def discretize(env: gym.Env | VectorEnv, levels: Levels = 5) -> gym.Env | VectorEnv:
    """``env`` with discretised actions (the vector wrapper for a VectorEnv)."""
    if isinstance(env, VectorEnv):
        return DiscretizeVectorAction(env, levels)
    return DiscretizeAction(env, levels)

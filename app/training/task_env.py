"""A vector env whose task (env config) can change mid-training: curriculum stages.

:class:`TaskableVectorEnv` is what RLlib's env runners hold (the registered creator in
:mod:`app.runs.env_factory` returns it; RLlib wraps it in ``DictInfoToList``, so callers
reach it with ``env.unwrapped``). It delegates to an inner native vector env built by
``build(config)`` (:func:`~app.runs.env_factory.create_env`: the ``data`` spec is loaded
here, in the app layer, which is why this lives outside the ``envs/`` leaf).

``set_task(changes)`` rebuilds the inner env from the run's *base* env config plus ``changes``
(not cumulative: every task is described relative to the base, so a demotion or a restore is
one call). Keys are env-config fields (``fee_bps``, ``leverage``, ``symbols`` ...) or ``data``:
``data: None`` drops the data spec (the env generates its synthetic market from
``synthetic``/``market_seed``), a partial ``data`` dict is merged into the base spec. A task may
narrow the run's data, never widen it on the same dataset (no validation/test symbols or
bars can reach training through a curriculum): see :func:`check_no_widening`.

Switching is clean for RLlib (gymnasium ``NEXT_STEP`` autoreset semantics):

1. ``set_task``: build and reset the new env (seeded from this env's generator); check that
   its spaces have the same structure (keys, shapes, dtypes; bounds may differ).
2. Next ``step``: the actions are ignored; every running episode ends **truncated** with
   reward 0 and its last observation (a no-op transition of the old task). Envs whose episode
   had just ended (waiting for their autoreset) get the new task's first observation instead.
3. The step after: the truncated envs return the new task's first observation (reward 0,
   the ``NEXT_STEP`` autoreset), the others step normally.

So no episode mixes two tasks, and the truncated ones bootstrap on an observation of their own
task. ``get_task()`` returns the current changes; ``call(name)`` reaches this env first, then
the inner env (``call("set_task", ...)`` through ``env.unwrapped``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

#: env-config keys that restrict the data inside a data spec (checked against the base)
WINDOW_KEYS = ("start_ts_ns", "end_ts_ns")
_DATASET_FIELDS = ("store", "source", "market_type", "timeframe")


def task_config(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The env config of a task: ``base | changes``, with ``data`` merged one level deep
    (``data: None`` removes the spec)."""
    config = dict(base)
    for key, value in changes.items():
        if key == "data" and isinstance(value, Mapping) and isinstance(base.get("data"), Mapping):
            config["data"] = dict(base["data"]) | dict(value)
        elif key == "data" and value is None:
            config.pop("data", None)
        else:
            config[key] = value
    return config


def check_no_widening(base: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if ``config`` trades the base's dataset beyond the base: symbols the
    base data spec does not hold, or bars outside the base's time window. A different dataset
    (pretraining on a broad universe) or no data (synthetic) is allowed."""
    old, new = base.get("data"), config.get("data")
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return
    if any(old.get(k) != new.get(k) for k in _DATASET_FIELDS):
        return
    extra = sorted(set(new.get("symbols") or ()) - set(old.get("symbols") or ()))
    if extra:
        raise ValueError(f"task: data symbols {extra} are not in the run's training data")
    low, high = base.get("start_ts_ns"), base.get("end_ts_ns")
    start, end = config.get("start_ts_ns"), config.get("end_ts_ns")
    if (low is not None and (start is None or start < low)) or (high is not None and (end is None or end > high)):
        raise ValueError(f"task: time window [{start}, {end}] is wider than the run's training window "
                         f"[{low}, {high}] on the same dataset")


def same_structure(a: gym.Space, b: gym.Space) -> bool:
    """Same space up to Box bounds: Dict keys, shapes and dtypes (what an RLModule is built on)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, gym.spaces.Dict):
        return a.spaces.keys() == b.spaces.keys() and all(same_structure(a[k], b[k]) for k in a.spaces)
    if isinstance(a, gym.spaces.Box):
        return a.shape == b.shape and a.dtype == b.dtype
    return a == b


def _mix(mask: np.ndarray, a: Any, b: Any) -> Any:
    """Per env: ``a`` where ``mask``, else ``b`` (dicts of ``[B, ...]`` arrays, nested)."""
    if isinstance(a, Mapping):
        return {k: _mix(mask, a[k], b[k]) for k in a if k in b}
    a, b = np.asarray(a), np.asarray(b)
    return np.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


class TaskableVectorEnv(VectorEnv):
    """A native vector env over a rebuildable inner env; see the module docstring."""

    def __init__(self, build: Callable[[dict[str, Any]], VectorEnv], base_config: Mapping[str, Any],
                 num_envs: int) -> None:
        self._build, self._base = build, {k: v for k, v in base_config.items() if k != "num_envs"}
        self._task: dict[str, Any] = {}
        self.env = self._make(self._base, int(num_envs))
        if self.env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) != AutoresetMode.NEXT_STEP:
            raise ValueError("TaskableVectorEnv: the inner env must use NEXT_STEP autoreset")
        self.num_envs = self.env.num_envs
        self.metadata = dict(self.env.metadata)
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self._last: tuple[Any, dict] | None = None  # the last (obs, info) this env returned
        self._done = np.zeros(self.num_envs, dtype=bool)  # episodes that ended at the last step
        self._fresh: tuple[Any, dict] | None = None  # the new task's first (obs, info): phase 2
        self._reset_next: np.ndarray | None = None  # envs to reset at the next step: phase 3

    def _make(self, config: dict[str, Any], num_envs: int) -> VectorEnv:
        env = self._build(config | {"num_envs": num_envs})
        if not isinstance(env, VectorEnv):
            raise TypeError(f"TaskableVectorEnv: build() must return a VectorEnv, got {type(env).__name__}")
        return env

    # --- tasks ----------------------------------------------------------------------------
    def get_task(self) -> dict[str, Any]:
        """The current task: env-config changes relative to the base config."""
        return dict(self._task)

    def set_task(self, changes: Mapping[str, Any] | None) -> None:
        """Move every env to the task ``changes`` (see the module docstring); a no-op if it is
        the current task. Raises ``ValueError`` (the env keeps its task) on a bad task."""
        changes = dict(changes or {})
        if "num_envs" in changes:
            raise ValueError("task: num_envs cannot change")
        if changes == self._task:
            return
        config = task_config(self._base, changes)
        check_no_widening(self._base, config)
        new = self._make(config, self.num_envs)
        if not (same_structure(new.single_observation_space, self.single_observation_space)
                and new.single_action_space == self.single_action_space):
            new.close()
            raise ValueError(f"task {changes}: the observation or action space changes "
                             f"({new.single_observation_space} / {new.single_action_space}, was "
                             f"{self.single_observation_space} / {self.single_action_space})")
        if self._last is not None:  # mid-run: phase 2 at the next step
            self._fresh = new.reset(seed=int(self.np_random.integers(2**31 - 1)))
            self._reset_next = None
        self.env.close()
        self.env, self._task = new, changes

    # --- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(
                seed if isinstance(seed, int) else int(np.random.SeedSequence(list(seed)).generate_state(1)[0]))
        obs, info = self.env.reset(seed=seed, options=options)
        if options and "reset_mask" in options and self._last is not None:
            self._done = self._done & ~np.asarray(options["reset_mask"])
        else:
            self._done = np.zeros(self.num_envs, dtype=bool)
            self._fresh = self._reset_next = None
        self._last = (obs, info)
        return obs, info

    def step(self, actions):
        if self._fresh is not None:
            out = self._truncate_step()
        elif self._reset_next is not None:
            out = self._reset_step(actions)
        else:
            out = self.env.step(actions)
        obs, _, terminated, truncated, info = out
        self._last, self._done = (obs, info), np.asarray(terminated) | np.asarray(truncated)
        return out

    def _truncate_step(self):
        """Phase 2: running episodes end truncated (reward 0, their last observation); envs
        waiting for an autoreset start the new task now."""
        running = ~self._done
        (old_obs, old_info), (new_obs, new_info) = self._last, self._fresh
        self._fresh = None
        self._reset_next = running if running.any() else None
        zeros = np.zeros(self.num_envs, dtype=bool)
        return (_mix(running, old_obs, new_obs), np.zeros(self.num_envs), zeros, running.copy(),
                _mix(running, old_info, new_info))

    def _reset_step(self, actions):
        """Phase 3: the truncated envs return the new task's first observation (autoreset)."""
        mask, self._reset_next = self._reset_next, None
        _, reward, terminated, truncated, _ = self.env.step(actions)
        obs, info = self.env.reset(options={"reset_mask": mask})
        keep = ~mask
        return obs, np.where(keep, reward, 0.0), np.asarray(terminated) & keep, np.asarray(truncated) & keep, info

    def call(self, name: str, *args, **kwargs):
        """``VectorEnv.call``: an attribute or method of this env, else of the inner env."""
        if hasattr(type(self), name) or name in self.__dict__:
            target = getattr(self, name)
        elif hasattr(self.env, "call"):
            return self.env.call(name, *args, **kwargs)
        else:
            target = getattr(self.env, name)
        return target(*args, **kwargs) if callable(target) else target

    def close_extras(self, **kwargs: Any) -> None:
        env = self.__dict__.get("env")
        if env is not None:
            env.close(**kwargs)

    def __getattr__(self, name: str) -> Any:
        """Other attributes (``engine``, ``config`` ...) are those of the current inner env."""
        if name.startswith("__") or name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

"""The two faces of an :class:`~envs.core.engine.Engine`.

* :class:`EngineVectorEnv` -- a native ``gymnasium.vector.VectorEnv`` over a batched engine
  (what RLlib's ``gym_env_vectorize_mode="vector_entry_point"`` wants). Autoreset mode is
  ``NEXT_STEP`` (gymnasium's default, the one RLlib handles): the step after an episode ends
  returns the first observation of the next episode with reward 0, and ignores that env's action.
  ``reset(options={"reset_mask": m})`` restarts only the masked envs (a curriculum task switch).
* :class:`EngineEnv` -- a ``gymnasium.Env`` over a B = 1 scalar engine (same ``step`` code).

Both faces take ``render_mode`` (:mod:`envs.core.render`: ``"rgb_array"``, ``"ansi"`` or None).

``skip_forced`` (both faces; off by default; discrete envs that observe ``action_mask``): a step
whose next observation allows exactly one action (a ``buy_only`` hold) is not returned: the env
takes that action itself, bar after bar, until the next real decision or the episode's end, and
returns the SUM of the skipped bars' rewards (so the episode's total reward, its PnL, is
unchanged). One step is then one decision: what RLlib trains on when the experiment sets
``env.skip_forced_steps`` (app/training). Backtests, validation and Serve step every bar.

Both draw randomness only from the generator seeded by ``reset(seed=...)``; with the same seed a
vector face of one env and the single face produce the same episodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from envs.core.engine import Engine
from envs.core.market import MarketArrays
from envs.core.render import RENDER_FPS, RENDER_MODES, check_render_mode, render_frame
from envs.core.spaces import batch_space


class EngineEnv(gym.Env):
    """Single-env face over a scalar engine (observations are read-only views of precomputed
    tables), or over a batched engine of one env (unbatched here; e.g. a portfolio engine)."""

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "render_fps": RENDER_FPS}

    def __init__(self, engine: Engine, render_mode: str | None = None, skip_forced: bool = False) -> None:
        if engine.num_envs != 1:
            raise ValueError(f"EngineEnv: needs an engine of 1 env, got {engine.num_envs}")
        self.render_mode = check_render_mode(type(self).__name__, render_mode)
        self.engine = engine
        self.skip_forced = check_skip_forced(engine, skip_forced)
        self.observation_space = engine.single_observation_space
        self.action_space = engine.single_action_space
        self._needs_reset = True
        if engine.batched:  # bound per instance (mypy still checks the signatures)
            self.step = self._step_unbatched  # type: ignore[method-assign]
            self._observe = self._observe_unbatched  # type: ignore[method-assign]

    def _observe(self) -> tuple[dict, dict]:
        return self.engine.observe(), self.engine.info()

    def render(self):
        """The current state as ``render_mode`` says (:mod:`envs.core.render`); None without one."""
        return render_frame(self.engine, 0, self.render_mode)

    def _observe_unbatched(self) -> tuple[dict, dict]:
        obs, info = self.engine.observe(), self.engine.info()
        return {k: v[0] for k, v in obs.items()}, {k: v[0].item() for k, v in info.items()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.engine.reset(self.np_random, None, options)
        self._needs_reset = False
        return self._observe()

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended")
        engine = self.engine
        reward, terminated, truncated = engine.step(engine.convert_action(action))
        while self.skip_forced and not (terminated or truncated):
            mask = np.asarray(engine.mask_observation())
            if np.count_nonzero(mask) != 1:
                break
            r, terminated, truncated = engine.step(engine.convert_action(int(np.argmax(mask))))
            reward += r
        self._needs_reset = terminated or truncated
        return engine.observe(), reward, terminated, truncated, engine.info()

    def _step_unbatched(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended")
        reward, terminated, truncated = self.engine.step(self.engine.convert_action(np.asarray(action)[None]))
        if self.skip_forced:
            reward, terminated, truncated = advance_forced(self.engine, reward, terminated, truncated,
                                                           np.zeros(1, dtype=bool))
        self._needs_reset = bool(terminated[0] or truncated[0])
        obs, info = self._observe_unbatched()
        return obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info


class EngineVectorEnv(VectorEnv):
    """Vector face: ``num_envs`` envs stepped by one numpy engine, NEXT_STEP autoreset."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": list(RENDER_MODES),
                                "render_fps": RENDER_FPS}

    def __init__(self, engine: Engine, render_mode: str | None = None, skip_forced: bool = False) -> None:
        if not engine.batched:
            raise ValueError("EngineVectorEnv: needs a batched engine")
        self.render_mode = check_render_mode(type(self).__name__, render_mode)
        self.engine = engine
        self.skip_forced = check_skip_forced(engine, skip_forced)
        self.num_envs = engine.num_envs
        self.single_observation_space = engine.single_observation_space
        self.single_action_space = engine.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._with_info = engine.config.vector_info
        self._needs_reset = True

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Reset every env, or only those where ``options["reset_mask"]`` (a bool ``[num_envs]``
        array, gymnasium's convention) is True: they start new episodes now, the others carry on
        (a pending autoreset of a masked env is cancelled). The returned observation and info
        cover every env."""
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(
                seed if isinstance(seed, int) else int(np.random.SeedSequence(list(seed)).generate_state(1)[0]))
        if options and "reset_mask" in options:
            options = dict(options)
            mask = np.asarray(options.pop("reset_mask"))
            if mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask']: need a bool array of shape ({self.num_envs},), "
                                 f"got {mask.dtype} {mask.shape}")
            if self._needs_reset:
                raise RuntimeError("options['reset_mask']: needs a full reset() first")
            if mask.any():
                engine = self.engine
                for name in engine.STATE:  # arrays handed out in infos are never written again
                    setattr(engine, name, getattr(engine, name).copy())
                engine.reset(self.np_random, mask, options or None)
                self._autoreset = self._autoreset & ~mask
            return self.engine.observe(), self._info()
        self.engine.reset(self.np_random, None, options)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._needs_reset = False
        return self.engine.observe(), self._info()

    def step(self, actions):
        if self._needs_reset:
            raise RuntimeError("step() called before reset()")
        engine = self.engine
        reward, terminated, truncated = engine.step(engine.convert_action(actions))
        if self._autoreset.any():
            fresh = self._autoreset
            engine.reset(self.np_random, fresh)
            keep = ~fresh
            reward = reward * keep
            terminated = terminated & keep
            truncated = truncated & keep
            if self.skip_forced:
                reward, terminated, truncated = advance_forced(engine, reward, terminated, truncated, fresh)
        elif self.skip_forced:
            reward, terminated, truncated = advance_forced(engine, reward, terminated, truncated,
                                                           self._autoreset)
        self._autoreset = terminated | truncated
        return engine.observe(), reward, terminated, truncated, self._info()

    def _info(self) -> dict:
        return self.engine.info() if self._with_info else {}

    def render(self):
        """One frame per env (:mod:`envs.core.render`), a tuple; None without a render mode."""
        if self.render_mode is None:
            return None
        return tuple(render_frame(self.engine, i, self.render_mode) for i in range(self.num_envs))

    def call(self, name: str, *args, **kwargs):
        """``VectorEnv.call`` for curriculum hooks (``set_task``): the engine or env attribute."""
        target = getattr(self, name) if hasattr(self, name) else getattr(self.engine, name)
        return target(*args, **kwargs) if callable(target) else target


def check_skip_forced(engine: Engine, skip_forced: bool) -> bool:
    """``skip_forced`` if the engine observes an action mask (else a ValueError)."""
    if skip_forced and getattr(engine, "_mask_table", None) is None:
        raise ValueError("skip_forced: needs a discrete env that observes action_mask")
    return bool(skip_forced)


def advance_forced(engine: Engine, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                   fresh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step every env whose only allowed action is forced, bar by bar, until each reaches a
    decision or its episode's end (``fresh``: envs that just started a new episode, left alone);
    the skipped bars' rewards are added to ``reward``. Returns new arrays."""
    reward, terminated, truncated = reward.copy(), terminated.copy(), truncated.copy()
    while True:
        mask = engine.mask_observation()
        forced = (np.count_nonzero(mask, axis=1) == 1) & ~(terminated | truncated | fresh)
        if not forced.any():
            return reward, terminated, truncated
        idx = np.flatnonzero(forced)
        r, term, trunc = engine.step_subset(idx, mask[idx].argmax(axis=1))
        reward[idx] += r
        terminated[idx] = term
        truncated[idx] = trunc


class SyntheticMarketConfig(Protocol):
    """What :func:`resolve_inputs` needs of an env config (``EngineConfig`` subclasses with a
    synthetic market: ``StockSwingConfig``, ``PortfolioConfig``)."""

    @property
    def synthetic(self) -> str: ...

    @property
    def market_seed(self) -> int: ...

    def with_overrides(self, **overrides: Any) -> Self: ...

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **overrides: Any) -> Self: ...


ConfigT = TypeVar("ConfigT", bound=SyntheticMarketConfig)


def resolve_inputs(config_cls: type[ConfigT], market: MarketArrays | None,
                   index: MarketArrays | None, config: ConfigT | None,
                   overrides: Mapping[str, Any]) -> tuple[MarketArrays, MarketArrays | None, ConfigT]:
    """What every face's constructor does first: a validated config (from ``overrides`` or a
    given config plus overrides) and, without a market, the seeded synthetic market the config
    names (``config.synthetic``, ``config.market_seed``, ``config.synthetic_params`` if any:
    :func:`envs.synthetic.generate_for`), so ``gym.make(id)`` needs no data."""
    if config is None:
        config = config_cls.from_mapping(dict(overrides))
    elif overrides:
        config = config.with_overrides(**overrides)
    if market is None:
        from envs import synthetic  # lazy: only when no market is given

        generated = synthetic.generate_for(config)
        market, index = generated.market, generated.index if index is None else index
    return market, index, config

"""Each env's ONE spec: what code outside the env loop needs to know about an env.

Serve, backtests, the trader and the UI ask an :class:`EnvSpec` (``envs.env_spec(env_id,
config, observation_space)``) instead of switching on env ids or config classes:

* ``action_labels``: one label per discrete action (per asset's choice for a portfolio), None
  for continuous actions;
* the position a client must describe to get an observation: ``position_keys`` (per asset,
  ``size_key`` among them: non-zero means a position is open), ``open_keys`` (also required when
  a position is open) and ``account_keys`` (once per account, e.g. a portfolio's cash);
* ``min_history_bars`` (bars that make one observation) and :meth:`EnvSpec.full_history_bars`
  (bars that make it exact on a regular calendar, every observed period complete);
* ``action_mask(position)``: which actions do something in that position (None for continuous
  action spaces), see each env's ``action_mask``; when ``fields`` holds ``action_mask`` (the
  env observes it, :func:`action_mask_fields`) ``build_observation`` adds it from the position;
* ``build_observation(bars, position, index=None, initial_cash_usd=None)``: the env's
  observation at the last ``T`` bars from raw bars and ``T`` positions, through THE observation
  builder (:mod:`envs.core.observation`, via :mod:`envs.core.from_bars`);
* ``kind`` ("stock" | "futures" | "portfolio") and ``n_assets`` for display and request schemas.

The market-dependent parts of an env's observation (``bars_held`` bounds, a portfolio's asset
count and funding window) come from the trained module's observation space when one is given
(and the spec is checked against it); without one they are the config's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np
from gymnasium import spaces as gym_spaces

from envs.core.config import EngineConfig
from envs.core.observation import (
    ACTION_MASK_KEY,
    MaskRule,
    ObservationSpec,
    action_mask_observation,
)
from envs.core.resample import period_ids

KINDS = ("stock", "futures", "portfolio")
#: bars per calendar period on a regular calendar (business days / 24h markets), upper bounds
BARS_PER_PERIOD = {"daily": {"D": 1, "W": 5, "M": 23}, "hourly": {"H4": 4, "D": 24, "W": 168, "M": 744}}
#: env constructor arguments that are not config fields (dropped from an ``env_config``)
CONSTRUCTOR_KEYS = ("market", "index", "num_envs", "render_mode", "config")
#: ``bars_held`` bound without an observation space (the envs' bound is the longest series)
DEFAULT_MAX_BARS_HELD = ObservationSpec().max_bars_held

Position = Mapping[str, Any]  # position key -> array [T] ([T, n_assets] per asset in a portfolio)
ConfigT = TypeVar("ConfigT", bound=EngineConfig)


@dataclass(frozen=True)
class Bars:
    """One series of raw bars, oldest first: ``ts_ns`` ``[n]`` (bar open, UTC ns), ``ohlcv``
    ``[n, 5]`` (or ``[n, 4]``: zero volume) and, for perpetuals, ``funding_rate`` ``[n]``."""

    ts_ns: np.ndarray
    ohlcv: np.ndarray
    funding_rate: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class EnvSpec:
    """What an env publishes about itself (see the module docstring)."""

    env_id: str
    kind: str
    config: EngineConfig
    observation: ObservationSpec
    fields: Mapping[str, tuple[int, ...]]
    action_labels: tuple[str, ...] | None
    position_keys: tuple[str, ...]
    size_key: str
    build_observation: Callable[..., dict[str, np.ndarray]]
    action_mask: Callable[[Position], np.ndarray] | None
    open_keys: tuple[str, ...] = ()
    account_keys: tuple[str, ...] = ()
    n_assets: int | None = None
    position_defaults: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"EnvSpec.kind: must be one of {KINDS}, got {self.kind!r}")
        if self.size_key not in self.position_keys or "bars_held" not in self.position_keys:
            raise ValueError("EnvSpec.position_keys: must hold size_key and 'bars_held'")
        if ACTION_MASK_KEY in self.fields:  # the mask is the rule on the client's position
            if self.action_mask is None:
                raise ValueError(f"EnvSpec.fields: {ACTION_MASK_KEY!r} needs an action_mask rule")
            masked = partial(_build_with_mask, self.build_observation, self.action_mask,
                             tuple(self.fields[ACTION_MASK_KEY]))
            object.__setattr__(self, "build_observation", masked)  # frozen: set once, here

    @property
    def multi_asset(self) -> bool:
        """One decision over ``n_assets`` series (a portfolio) rather than one per series."""
        return self.n_assets is not None

    @property
    def min_history_bars(self) -> int:
        """Fewest bars that make an observation (one window)."""
        return self.observation.window_bars

    def full_history_bars(self) -> int:
        """Bars that make every observed period complete on a regular calendar (an upper bound)."""
        return full_history_bars(self.observation)

    def flat_position(self, steps: int = 1, cash_usd: float | None = None) -> dict[str, np.ndarray]:
        """``steps`` flat positions (no asset held); the account holds ``cash_usd`` (default
        ``initial_cash_usd``)."""
        shape = (steps,) if self.n_assets is None else (steps, self.n_assets)  # multi_asset
        out: dict[str, np.ndarray] = {
            k: np.full(shape, self.position_defaults.get(k, 0),
                       dtype=np.int64 if k == "bars_held" else np.float64)
            for k in self.position_keys}
        cash = float(self.config.initial_cash_usd if cash_usd is None else cash_usd)
        out.update({k: np.full(steps, cash) for k in self.account_keys})
        return out

    def history_gap(self, bars: Bars, index: Bars | None, steps: int) -> str | None:
        """Why observations at the last ``steps`` of ``bars`` may differ from the env's over a
        longer history; None when they are exact (see :func:`history_gap`)."""
        return history_gap(self.observation, bars, index, steps)


def _build_with_mask(build: Callable[..., dict[str, np.ndarray]], rule: MaskRule, shape: tuple[int, ...],
                     bars: Any, position: Position, index: Bars | None = None,
                     initial_cash_usd: float | None = None) -> dict[str, np.ndarray]:
    """``build``'s observation plus ``action_mask`` ``[T, *shape]`` from ``rule(position)``."""
    obs = build(bars, position, index, initial_cash_usd)
    steps = len(next(iter(obs.values())))
    obs.update(action_mask_observation(rule, position, steps, shape))
    return obs


def action_mask_fields(config: EngineConfig, shapes: Mapping[str, tuple[int, ...]] | None,
                       mask_shape: tuple[int, ...] | None) -> dict[str, tuple[int, ...]]:
    """The ``action_mask`` field of an env's observation, ``{}`` without one: as the trained
    module's observation space says when one is given (a module trained without a mask has
    none), else as ``config.action_mask`` says. ``mask_shape`` None: continuous actions."""
    on = ACTION_MASK_KEY in shapes if shapes is not None else config.observes_action_mask(mask_shape is not None)
    return {ACTION_MASK_KEY: tuple(mask_shape)} if on and mask_shape is not None else {}


def full_history_bars(spec: ObservationSpec) -> int:
    """Bars that make every observed period of ``spec`` complete on a regular calendar."""
    per = BARS_PER_PERIOD.get(spec.bar_name, {})
    need = [(spec.window_bars + 1) * per.get(p, 1) for p in spec.periods]
    return max([spec.window_bars, *need])


def history_gap(spec: ObservationSpec, bars: Bars, index: Bars | None, steps: int) -> str | None:
    """Why the observations at the last ``steps`` bars may differ from the env's over a longer
    history (an observed calendar period truncated at the window's start, or an index that
    starts inside the window); None when they are exact."""
    ts = np.asarray(bars.ts_ns)
    n, w = len(ts), spec.window_bars
    first = n - steps  # the earliest observed row
    for p in spec.periods:
        ids = period_ids(ts[:first + 1], p)
        periods = int(np.count_nonzero(np.diff(ids))) + 1
        if periods < w + 1:
            return (f"the bars up to row {first} span {periods} '{p}' periods; {w + 1} are needed so that "
                    f"the {w} observed ones are complete")
    if spec.with_index and index is not None and index.ts_ns[0] > ts[max(first - w + 1, 0)]:
        return "the index starts after the first bar of the observed window"
    return None


def config_from(config_cls: type[ConfigT], registered: Mapping[str, Any], config: Any) -> ConfigT:
    """A validated ``config_cls`` from a config object, or from the registration kwargs plus an
    ``env_config`` mapping (constructor-only keys such as ``market`` dropped)."""
    if isinstance(config, config_cls):
        return config
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config: expected {config_cls.__name__} or a mapping, got {type(config).__name__}")
    raw = {**registered, **dict(config or {})}
    return config_cls.from_mapping({k: v for k, v in raw.items() if k not in CONSTRUCTOR_KEYS})


def space_shapes(space: gym_spaces.Space | None) -> dict[str, tuple[int, ...]] | None:
    """``{key: shape}`` of a raytrade Dict observation space (None passes through)."""
    if space is None:
        return None
    if not isinstance(space, gym_spaces.Dict) or not ({"bars_held", "positions"} & set(space.spaces)):
        raise ValueError(f"observation space {space}: not a raytrade env's Dict observation")
    shapes = {}
    for k, sub in space.spaces.items():
        if sub.shape is None:
            raise ValueError(f"observation space {space}: {k!r} has no fixed shape")
        shapes[k] = tuple(sub.shape)
    return shapes


def box(space: gym_spaces.Dict, key: str) -> gym_spaces.Box:
    """The ``key`` Box of a raytrade Dict observation space (a ValueError if it is not a Box)."""
    sub = space[key]
    if not isinstance(sub, gym_spaces.Box):
        raise ValueError(f"observation space {space}: {key!r} is not a Box")
    return sub


def bars_held_bound(space: gym_spaces.Dict | None, default: int = DEFAULT_MAX_BARS_HELD) -> int:
    """``bars_held``'s upper bound in a single-asset observation space (``default`` without one)."""
    return default if space is None else int(box(space, "bars_held").high[0])


def check_fields(env_id: str, expected: Mapping[str, tuple[int, ...]],
                 shapes: Mapping[str, tuple[int, ...]] | None) -> None:
    """ValueError naming the differences when ``shapes`` (an observation space's) differ."""
    if shapes is not None and dict(expected) != dict(shapes):
        diff = sorted(set(expected.items()) ^ set(shapes.items()))
        raise ValueError(f"{env_id} with this config observes {dict(expected)}, but the observation space "
                         f"is {dict(shapes)} (differences: {diff}); is env_config the one it was trained with?")

"""StockSwing-v0: a swing-trading bot on daily stock bars, long only, one position per symbol.

Execution semantics
    The action is chosen on bar t's close and fills at bar t+1's open, at the open moved against
    the trader by ``slippage_bps``, paying ``fee_bps`` of the notional
    (:func:`envs.core.costs.fill`). A buy spends ``buy_fraction`` of equity including its fee;
    a sell closes the whole position. The position is marked at bar t+1's close.

Actions
    * ``mode="buy_only"`` (the original design), ``Discrete(2)``: 0 = stay out, 1 = buy. A bought
      position is held for ``horizon_bars`` bars (entry open to exit open) and then closed by the
      env; actions while holding are ignored.
    * ``mode="swing"``, ``Discrete(3)``: 0 = hold, 1 = buy (if flat), 2 = sell (if owned).

Observation (Dict of float32, see :mod:`envs.core.observation`)
    ``daily_hloc``, ``weekly_hloc``, ``monthly_hloc`` (the newest week/month PARTIAL, from days up
    to t only), ``index_hloc`` ``[50, 4]`` as log ratios to the latest close; ``daily_volume``,
    ``weekly_volume`` ``[50]`` over their window mean; ``owned`` and ``bars_held`` ``[1]``;
    ``action_mask`` ``[n_actions]`` (unless ``action_mask=False``): 0 for the actions the
    env would ignore (:func:`action_mask`; in buy_only mode every step of a hold is forced).

Rewards (``reward=``): ``excess_horizon`` (default: stock % gain minus index % gain over the hold,
    minus ``buy_penalty`` per buy, delivered per bar), ``log_return``, ``linear_return`` (PnL over
    initial equity), ``excess_log_return`` (over the index), ``differential_sharpe``.

Episodes
    Each reset samples a symbol of the universe and a start bar (seeded) and runs
    ``episode_bars`` steps (truncation); ``episode_bars=None, random_start=False`` with
    ``symbols``/``start_ts_ns``/``end_ts_ns`` runs a fixed backtest range;
    ``reset(options={"symbol": ...})`` forces the symbol. Never terminates.

Inputs
    ``market`` (:class:`~envs.core.market.MarketArrays`, daily bars) and ``index`` (one series,
    aligned causally to each symbol's calendar; flat if omitted). Without a market a synthetic one
    is generated (``synthetic``, ``market_seed``, ``synthetic_params``: :mod:`envs.synthetic`)
    so ``gym.make`` works with no arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from gymnasium import spaces as gym_spaces

from envs import synthetic as synthetic_markets
from envs.core import from_bars, spaces
from envs.core.engine import Engine, EngineConfig
from envs.core.market import MarketArrays
from envs.core.observation import ObservationSpec, observation_space
from envs.core.render import check_render_mode
from envs.core.spec import (
    EnvSpec,
    Position,
    action_mask_fields,
    bars_held_bound,
    check_fields,
    config_from,
    space_shapes,
)
from envs.vector import EngineEnv, EngineVectorEnv, resolve_inputs

MODES = ("buy_only", "swing")
HOLD, BUY, SELL = 0, 1, 2


@dataclass(frozen=True, kw_only=True)
class StockSwingConfig(EngineConfig):
    """StockSwing settings (plus every :class:`~envs.core.engine.EngineConfig` field).

    Attributes:
        mode: "buy_only" or "swing".
        horizon_bars: holding period of a buy in buy_only mode.
        buy_fraction: share of equity a buy spends (fee included).
        clip_log_ratio: bound of the price log ratios in the observation.
        synthetic: market generated when none is given (:data:`envs.synthetic.KINDS`: "gbm",
            "mean_reversion", "trend", "rare_event", "regime", "noise", "relative_momentum").
        market_seed: seed of that synthetic market.
        synthetic_params: its knobs (e.g. ``event_rate``) and ``n_symbols``/``n_bars``; None:
            the kind's defaults (:func:`envs.synthetic.check_synthetic` validates them).
    """

    reward: str = "excess_horizon"
    mode: str = "buy_only"
    horizon_bars: int = 20
    buy_fraction: float = 1.0
    clip_log_ratio: float = 10.0
    synthetic: str = "gbm"
    market_seed: int = 0
    synthetic_params: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            self._fail("mode", f"must be one of {MODES}")
        if isinstance(self.horizon_bars, bool) or not isinstance(self.horizon_bars, int) or self.horizon_bars < 1:
            self._fail("horizon_bars", "must be an int >= 1")
        if not isinstance(self.buy_fraction, (int, float)) or not 0 < self.buy_fraction <= 1:
            self._fail("buy_fraction", "must be in (0, 1]")
        if not isinstance(self.clip_log_ratio, (int, float)) or not math.isfinite(self.clip_log_ratio) \
                or self.clip_log_ratio <= 0:
            self._fail("clip_log_ratio", "must be a finite number > 0")
        if self.synthetic not in synthetic_markets.KINDS:
            self._fail("synthetic", f"must be one of {synthetic_markets.KINDS}")
        if isinstance(self.market_seed, bool) or not isinstance(self.market_seed, int) or self.market_seed < 0:
            self._fail("market_seed", "must be an int >= 0")
        synthetic_markets.check_config_params(self, perpetual=False)

    def observation_spec(self, max_bars_held: int) -> ObservationSpec:
        return ObservationSpec(window_bars=self.window_bars, clip_log_ratio=float(self.clip_log_ratio),
                               max_bars_held=max_bars_held)


class StockSwingEngine(Engine):
    """The engine with StockSwing's action semantics (both modes share one ``step``)."""

    config: StockSwingConfig

    def __init__(self, market: MarketArrays, config: StockSwingConfig, **kwargs: Any) -> None:
        spec = config.observation_spec(max(int(market.lengths.max(initial=0)), config.horizon_bars))
        super().__init__(market, config, spec, **kwargs)
        self.single_observation_space = observation_space(spec)
        n = 2 if config.mode == "buy_only" else 3
        self.single_action_space = spaces.discrete(n)
        self.observe_action_mask(partial(action_mask, mode=config.mode), "owned")
        self._swing = config.mode == "swing"
        self._horizon = config.horizon_bars
        self._fraction = float(config.buy_fraction)
        # a ValueError for actions outside the space: O(1) per single step, vectorized per batch;
        # bound per instance (mypy still checks the signatures; it only flags assigning methods)
        self.convert_action = (  # type: ignore[method-assign]
            partial(spaces.discrete_actions, num_envs=self.num_envs, n=n) if self.batched
            else spaces.discrete_action(n))
        if type(self).interpret_action is StockSwingEngine.interpret_action:
            self.interpret_action = (  # type: ignore[method-assign]  # hot path: skip the dispatch
                self._swing_action if self._swing else self._buy_only_action)

    def interpret_action(self, action):
        """Action -> ``(trade, target_weight)`` in the configured mode (bound directly in
        ``__init__`` to skip this dispatch on the hot path)."""
        return self._swing_action(action) if self._swing else self._buy_only_action(action)

    def _buy_only_action(self, action):
        """Buy if flat; a position is closed by the env once held ``horizon_bars`` bars."""
        qty = self.qty
        buy = (action == BUY) & (qty <= 0.0)
        return buy | ((qty > 0.0) & (self.bars_held >= self._horizon)), buy * self._fraction

    def _swing_action(self, action):
        """Buy if flat, sell if owned, else hold."""
        qty = self.qty
        buy = (action == BUY) & (qty <= 0.0)
        return buy | ((action == SELL) & (qty > 0.0)), buy * self._fraction


def action_mask(position: Position, *, mode: str) -> np.ndarray:
    """Which actions do something in ``position`` (``owned`` ``[...]``): bool ``[..., n_actions]``.

    The no-op (0: stay out / hold) is always valid. ``buy_only``: buy only when flat (a bought
    position is held for ``horizon_bars`` and then closed by the env; every action while holding
    is ignored). ``swing``: buy only when flat, sell only when owned. A masked action is exactly
    one the env ignores: stepping it has the no-op's effect (``tests/unit/envs/test_spec.py``).
    """
    owned = np.asarray(position["owned"]) != 0
    always = np.ones_like(owned)
    return np.stack((always, ~owned) if mode == "buy_only" else (always, ~owned, owned), axis=-1)


def env_spec(config: StockSwingConfig | dict | None = None, observation_space: gym_spaces.Dict | None = None,
             env_id: str = "raytrade/StockSwing-v0") -> EnvSpec:
    """StockSwing's :class:`~envs.core.spec.EnvSpec` (``bars_held`` bound from ``observation_space``)."""
    cfg = config_from(StockSwingConfig, {}, config)
    shapes = space_shapes(observation_space)
    obs_spec = cfg.observation_spec(bars_held_bound(observation_space))
    labels = ("stay_out", "buy") if cfg.mode == "buy_only" else ("hold", "buy", "sell")
    fields = {k: shape for k, (shape, _, _) in obs_spec.fields().items()}
    fields |= action_mask_fields(cfg, shapes, (len(labels),))
    check_fields(env_id, fields, shapes)
    return EnvSpec(env_id, "stock", cfg, obs_spec, fields, labels, position_keys=("owned", "bars_held"),
                   size_key="owned", build_observation=partial(from_bars.stock, obs_spec),
                   action_mask=partial(action_mask, mode=cfg.mode))


class StockSwingEnv(EngineEnv):
    env_spec = staticmethod(env_spec)

    def __init__(self, market: MarketArrays | None = None, index: MarketArrays | None = None,
                 config: StockSwingConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        check_render_mode("StockSwingEnv", render_mode)
        market, index, config = resolve_inputs(StockSwingConfig, market, index, config, overrides)
        super().__init__(StockSwingEngine(market, config, index=index, num_envs=1, batched=False), render_mode)
        self.config = config


class StockSwingVectorEnv(EngineVectorEnv):
    """StockSwing-v0 as a native VectorEnv of ``num_envs`` envs (one numpy engine)."""

    def __init__(self, num_envs: int = 1, market: MarketArrays | None = None, index: MarketArrays | None = None,
                 config: StockSwingConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        check_render_mode("StockSwingVectorEnv", render_mode)
        market, index, config = resolve_inputs(StockSwingConfig, market, index, config, overrides)
        super().__init__(StockSwingEngine(market, config, index=index, num_envs=num_envs, batched=True), render_mode)
        self.config = config


StockSwingEnv.__doc__ = __doc__  # the env documents its semantics (gymnasium convention)

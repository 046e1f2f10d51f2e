"""Portfolio-v0's settings (the env is :mod:`envs.portfolio`, its engine
:mod:`envs.core.portfolio_engine`).

The config sits in ``envs.core`` so that the engine can name its type: ``envs.core`` never
imports an env module. ``envs.portfolio`` re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from envs.core.config import EngineConfig
from envs.core.observation import ObservationSpec

ACTION_MODES = ("discrete", "continuous")
REWARDS = ("log_return", "linear_return", "excess_log_return", "differential_sharpe")


@dataclass(frozen=True, kw_only=True)
class PortfolioConfig(EngineConfig):
    """Portfolio settings (plus every :class:`~envs.core.engine.EngineConfig` field).

    Attributes:
        n_assets: assets per episode; None trades every symbol of the universe.
        action_mode: "discrete" (per-asset short/flat/long) or "continuous" (target weights).
        max_leverage: cap on gross exposure, ``sum(|position value|) / equity`` after a fill.
        allow_short: False for spot markets (long/flat only).
        maintenance_margin_bps: cross-margin maintenance margin, bps of the gross notional
            (0: liquidated only when equity reaches 0).
        rebalance_band: continuous mode: an asset trades only where its target weight differs
            from its current weight by more than this (0: always rebalance).
        with_index: observe the market index window (``index_hloc``).
        clip_log_ratio: bound of the price log ratios and of ``log(equity / initial)``.
        synthetic: market generated when none is given ("gbm", "mean_reversion", "trend").
        market_seed: seed of that synthetic market.
    """

    reward: str = "log_return"
    n_assets: int | None = None
    action_mode: str = "discrete"
    max_leverage: float = 1.0
    allow_short: bool = True
    maintenance_margin_bps: float = 50.0
    rebalance_band: float = 0.0
    with_index: bool = True
    clip_log_ratio: float = 10.0
    synthetic: str = "gbm"
    market_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward not in REWARDS:
            self._fail("reward", f"must be one of {REWARDS} (excess_horizon is single-asset)")
        if self.symbol_order != "random":
            self._fail("symbol_order", "must be 'random' (portfolios sample asset subsets; fix the set "
                                       "with symbols and n_assets=None, or reset(options={'symbols': ...}))")
        if self.n_assets is not None and (isinstance(self.n_assets, bool) or not isinstance(self.n_assets, int)
                                          or self.n_assets < 1):
            self._fail("n_assets", "must be an int >= 1 or None")
        if self.symbols is not None and len(set(self.symbols)) != len(self.symbols):
            self._fail("symbols", "must not repeat a symbol")
        if self.symbols is not None and self.n_assets is not None and self.n_assets > len(self.symbols):
            self._fail("n_assets", f"must be <= len(symbols) ({len(self.symbols)})")
        if self.action_mode not in ACTION_MODES:
            self._fail("action_mode", f"must be one of {ACTION_MODES}")
        for name, low, high, open_low in (("max_leverage", 0.0, 100.0, True), ("clip_log_ratio", 0.0, 1e3, True),
                                          ("maintenance_margin_bps", 0.0, 9_999.0, False),
                                          ("rebalance_band", 0.0, 100.0, False)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not (low < v if open_low else low <= v) or v > high:
                self._fail(name, f"must be a finite number in {'(' if open_low else '['}{low:g}, {high:g}]")
        if self.maintenance_margin_bps * 1e-4 * self.max_leverage >= 1.0:
            self._fail("maintenance_margin_bps", "times max_leverage must be < 10000 (a full book would "
                                                 "be liquidated at once)")
        for name in ("allow_short", "with_index"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "must be a bool")
        if self.synthetic not in ("gbm", "mean_reversion", "trend"):
            self._fail("synthetic", "must be 'gbm', 'mean_reversion' or 'trend'")
        if isinstance(self.market_seed, bool) or not isinstance(self.market_seed, int) or self.market_seed < 0:
            self._fail("market_seed", "must be an int >= 0")


    def observation_spec(self, max_bars_held: int, with_funding: bool) -> ObservationSpec:
        """The per-asset windows' spec (``with_funding``: the market carries funding rates)."""
        return ObservationSpec(window_bars=self.window_bars, with_index=self.with_index,
                               clip_log_ratio=float(self.clip_log_ratio), max_bars_held=max_bars_held,
                               with_funding=with_funding)

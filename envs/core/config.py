"""Settings shared by every env: a frozen dataclass validated once, at construction.

Env configs (``StockSwingConfig``, later ``CryptoFuturesConfig``, ``PortfolioConfig``) subclass
:class:`EngineConfig`; a bad value is a ``ValueError`` naming ``<Config>.<field>``; a mapping
from YAML or RLlib's ``env_config`` goes through :meth:`EngineConfig.from_mapping`, which rejects
unknown keys by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Self

import numpy as np

from envs.core import costs, rewards


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Settings every env shares; env configs subclass it. Frozen, validated on construction.

    Attributes:
        initial_cash_usd: equity at the start of every episode.
        fee_bps, slippage_bps: see :class:`envs.core.costs.CostModel`.
        reward: one of :data:`envs.core.rewards.REWARDS`.
        dsr_eta: adaptation rate of the differential Sharpe ratio.
        buy_penalty: the ``excess_horizon`` penalty per buy (0.02 = 2 %).
        window_bars: bars per observation window.
        episode_bars: steps per episode; None runs to the end of the data (backtests).
        warmup_bars: bars of history before the first observation (default: window_bars).
        symbols: the universe (default: every symbol of the market).
        start_ts_ns, end_ts_ns: restrict observed bars to this time range (UTC ns, inclusive).
        random_start: sample the start bar (seeded); False starts at the first eligible bar.
        symbol_order: "random" (seeded) or "sequential" (round robin: batched backtests).
        precompute_max_mb: memory budget (MB) of the precomputed observation tables: every
            row's market observation is precomputed if the tables fit, else windows are
            gathered per step (same function and floats; slower per step, cheaper to build:
            ``benchmarks/bench_env_gather.py``). None (default): a share of the memory available
            when the env is built (:mod:`envs.core.memory`); the choice is logged
            (``envs.core.tables``, INFO).
        vector_info: the vector face returns per-env info arrays (RLlib converts them to B
            dicts each step; turn off for training throughput).
        action_mask: observe ``action_mask`` (float32 0/1 per action: 0 where the env would
            ignore the action, see each env's ``action_mask``). None (default): on for discrete
            action spaces, off for continuous ones (which have no mask; True there is an error).
    """

    initial_cash_usd: float = 10_000.0
    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    reward: str = "log_return"
    dsr_eta: float = 0.01
    buy_penalty: float = 0.02
    window_bars: int = 50
    episode_bars: int | None = 252
    warmup_bars: int | None = None
    symbols: tuple[str, ...] | None = None
    start_ts_ns: int | None = None
    end_ts_ns: int | None = None
    random_start: bool = True
    symbol_order: str = "random"
    precompute_max_mb: float | None = None
    vector_info: bool = True
    action_mask: bool | None = None

    def _fail(self, name: str, why: str) -> None:
        raise ValueError(f"{type(self).__name__}.{name}: {why}, got {getattr(self, name)!r}")

    def __post_init__(self) -> None:
        def number(name: str, low: float, high: float = math.inf) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v < high or not math.isfinite(v):
                self._fail(name, f"must be a finite number in [{low}, {high})")

        def integer(name: str, low: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                self._fail(name, f"must be an int >= {low}" + (" or None" if optional else ""))

        number("initial_cash_usd", 1e-6)
        number("fee_bps", 0.0, 10_000.0)
        number("slippage_bps", 0.0, 10_000.0)
        number("dsr_eta", 1e-9, 1.0)
        number("buy_penalty", 0.0)
        if self.precompute_max_mb is not None:
            number("precompute_max_mb", 0.0)
        if self.reward not in rewards.REWARDS:
            self._fail("reward", f"must be one of {rewards.REWARDS}")
        integer("window_bars", 1)
        integer("episode_bars", 1, optional=True)
        integer("warmup_bars", 1, optional=True)
        if self.warmup_bars is not None and self.warmup_bars < self.window_bars:
            self._fail("warmup_bars", f"must be >= window_bars ({self.window_bars})")
        integer("start_ts_ns", -(2**62), optional=True)
        integer("end_ts_ns", -(2**62), optional=True)
        if self.start_ts_ns is not None and self.end_ts_ns is not None and self.end_ts_ns < self.start_ts_ns:
            self._fail("end_ts_ns", "must be >= start_ts_ns")
        if self.symbol_order not in ("random", "sequential"):
            self._fail("symbol_order", "must be 'random' or 'sequential'")
        if self.action_mask is not None and not isinstance(self.action_mask, bool):
            self._fail("action_mask", "must be true, false or null (on for discrete action spaces)")
        if self.symbols is not None:
            if isinstance(self.symbols, str) or not all(isinstance(s, str) for s in self.symbols):
                self._fail("symbols", "must be a tuple of symbol names")
            if len(self.symbols) == 0:
                self._fail("symbols", "must not be empty")

    def observes_action_mask(self, discrete: bool) -> bool:
        """Whether the observation holds ``action_mask`` for an env whose action space is
        ``discrete`` (or not): ``action_mask``, None meaning "when discrete"; True for a
        continuous action space is a ValueError naming the field."""
        if self.action_mask and not discrete:
            self._fail("action_mask", "continuous action spaces have no action mask (use null or false)")
        return discrete if self.action_mask is None else self.action_mask

    @property
    def cost_model(self) -> costs.CostModel:
        return costs.CostModel(fee_bps=self.fee_bps, slippage_bps=self.slippage_bps)

    def with_overrides(self, **overrides: Any) -> Self:
        """A copy with ``overrides`` applied (validated; unknown names are a ValueError)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown field(s) {unknown}")
        return replace(self, **overrides)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **overrides: Any) -> Self:
        """Build from a plain mapping (env_config, YAML): unknown keys are a ValueError."""
        values = {**(mapping or {}), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        if isinstance(values.get("symbols"), list):
            values["symbols"] = tuple(values["symbols"])
        return cls(**values)

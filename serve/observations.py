"""Observations for a served policy, built by the envs' ONE observation builder.

:mod:`envs.core.observation` is the only place observations are computed: a single decision
(one bar) calls :func:`~envs.core.observation.build_observation` /
:func:`~envs.core.observation.build_portfolio_observation` exactly as the guide prescribes; a
recurrent replay over the last ``T`` bars calls the batched entry points the envs themselves
use (:func:`~envs.core.observation.prepare_features` + ``market_observation``, then the
position functions), which give the same floats row by row (``tests/unit/serve`` proves both
against the env).

:class:`EnvView` is what Serve knows about the env a policy was trained on: its config (from the
run's ``experiment.yaml``), the observation spec, reconciled with the module's own observation
space (``max_bars_held`` and funding depend on the training market) and checked against it.
Pure numpy + envs: no torch, no pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import spec as registered_spec

import envs
from envs.core.config import EngineConfig
from envs.core.observation import (
    POSITION_KEYS,
    ObservationSpec,
    build_observation,
    build_portfolio_observation,
    futures_position_observation,
    market_observation,
    portfolio_position_observation,
    position_observation,
    prepare_features,
    validate_bars,
)
from envs.core.resample import period_ids
from envs.crypto_futures import CryptoFuturesConfig
from envs.portfolio import PortfolioConfig
from envs.stock_swing import StockSwingConfig

#: bars per calendar period on a regular calendar (business days / 24h markets), upper bounds
BARS_PER_PERIOD = {"daily": {"D": 1, "W": 5, "M": 23}, "hourly": {"H4": 4, "D": 24, "W": 168, "M": 744}}
CONFIG_DROP = ("data", "market", "index", "num_envs")  # env_config keys that are not config fields


@dataclass(frozen=True)
class Series:
    """One validated series: ``ts_ns`` ``[n]``, ``ohlcv`` ``[n, 5]``, ``funding`` ``[n]`` or None."""

    ts: np.ndarray
    ohlcv: np.ndarray
    funding: np.ndarray | None = None


@dataclass(frozen=True)
class EnvView:
    """The env a policy was trained on, as far as observations and actions go."""

    env_id: str
    kind: str                    # "stock" | "futures" | "portfolio"
    config: EngineConfig
    spec: ObservationSpec
    fields: dict[str, tuple[int, ...]]
    action_labels: tuple[str, ...] | None
    n_assets: int | None = None

    @property
    def window_bars(self) -> int:
        return self.spec.window_bars

    def full_history_bars(self) -> int:
        """Bars that make every observed period complete on a regular calendar (an upper bound)."""
        per = BARS_PER_PERIOD.get(self.spec.bar_name, {})
        need = [(self.window_bars + 1) * per.get(p, 1) for p in self.spec.periods]
        return max([self.window_bars, *need])


def env_kind(env_id: str) -> str:
    if env_id == envs.CRYPTO_FUTURES:
        return "futures"
    if env_id == envs.PORTFOLIO:
        return "portfolio"
    if env_id == envs.STOCK_SWING or env_id in envs.SYNTHETIC_IDS:
        return "stock"
    raise ValueError(f"env {env_id!r}: Serve knows {list(envs.ENV_IDS)}")


def env_view(env_id: str, env_config: Mapping[str, Any], space: gym.spaces.Dict) -> EnvView:
    """Config and observation spec of ``env_id``, reconciled with and checked against ``space``
    (the module's observation space). Raises ``ValueError`` naming what does not match."""
    kind = env_kind(env_id)
    raw = {**registered_spec(env_id).kwargs, **{k: v for k, v in env_config.items() if k not in CONFIG_DROP}}
    if not isinstance(space, gym.spaces.Dict) or "bars_held" not in space.spaces and "positions" not in space.spaces:
        raise ValueError(f"observation space {space}: not a raytrade env's Dict observation")
    shapes = {k: tuple(s.shape) for k, s in space.spaces.items()}
    if kind == "portfolio":
        cfg = PortfolioConfig.from_mapping(raw)
        positions = space.spaces["positions"]
        n_assets = int(positions.shape[0])
        spec = ObservationSpec(window_bars=cfg.window_bars, with_index=cfg.with_index,
                               clip_log_ratio=float(cfg.clip_log_ratio),
                               max_bars_held=int(positions.high[0, 1]), with_funding="funding_bps" in shapes)
        labels = ("short", "flat", "long") if cfg.allow_short else ("flat", "long")
        view = EnvView(env_id, kind, cfg, spec, shapes, None if cfg.action_mode == "continuous" else labels,
                       n_assets)
        expected = {k: (n_assets, spec.window_bars, 4 if "hloc" in k else 1)
                    for k in spec.fields() if k not in POSITION_KEYS}
        expected |= {"positions": (n_assets, 2), "portfolio": (3,)}
    else:
        held = int(space.spaces["bars_held"].high[0])
        if kind == "futures":
            cfg = CryptoFuturesConfig.from_mapping(raw)
            spec = cfg.observation_spec(held)
            labels = tuple(f"level {v:+g}" for v in cfg.levels) if cfg.action_mode == "discrete" else None
        else:
            cfg = StockSwingConfig.from_mapping(raw)
            spec = cfg.observation_spec(held)
            labels = ("stay_out", "buy") if cfg.mode == "buy_only" else ("hold", "buy", "sell")
        view = EnvView(env_id, kind, cfg, spec, shapes, labels)
        expected = {k: s for k, (s, _, _) in spec.fields().items()}
        if kind == "futures":
            expected = {k: s for k, s in expected.items() if k != "owned"}
            expected |= dict.fromkeys(("side", "size", "entry_distance", "unrealized_pnl", "margin_ratio"), (1,))
    if expected != shapes:
        diff = sorted(set(expected.items()) ^ set(shapes.items()))
        raise ValueError(f"{env_id} with this config observes {expected}, but the module was trained on "
                         f"{shapes} (differences: {diff}); is env_config the one it was trained with?")
    return view


# --- market part ---------------------------------------------------------------------------------

def _market_rows(view: EnvView, s: Series, index: Series | None, steps: int) -> dict[str, np.ndarray]:
    """Market part at the last ``steps`` rows of ``s``, batched ``[steps, ...]`` (the envs' path)."""
    spec, n = view.spec, len(s.ts)
    validate_bars("bars", s.ts, s.ohlcv)
    idx_ts = idx_ohlc = None
    if spec.with_index and index is not None:
        validate_bars("index", index.ts, index.ohlcv)
        idx_ts, idx_ohlc = index.ts, index.ohlcv
    base = prepare_features(s.ts, s.ohlcv, np.array([0, n]), spec, idx_ts, idx_ohlc,
                            s.funding if spec.with_funding else None)
    return market_observation(base, np.arange(n - steps, n))


def _market_last(view: EnvView, s: Series, index: Series | None) -> dict[str, np.ndarray]:
    """Market part at the last row through :func:`build_observation`, ``[1, ...]``."""
    use_index = view.spec.with_index and index is not None
    obs = build_observation(s.ts, s.ohlcv, spec=view.spec, index_ts_ns=index.ts if use_index else None,
                            index_ohlc=index.ohlcv if use_index else None,
                            funding_rate=s.funding if view.spec.with_funding else None)
    return {k: v[None] for k, v in obs.items() if k not in POSITION_KEYS}


def stock_observation(view: EnvView, s: Series, index: Series | None, owned: np.ndarray,
                      bars_held: np.ndarray) -> dict[str, np.ndarray]:
    """StockSwing observations at the last ``T = len(owned)`` bars, ``[T, ...]``."""
    steps = len(owned)
    if steps == 1:
        use_index = view.spec.with_index and index is not None
        obs = build_observation(s.ts, s.ohlcv, spec=view.spec, index_ts_ns=index.ts if use_index else None,
                                index_ohlc=index.ohlcv if use_index else None, owned=bool(owned[0]),
                                bars_held=int(bars_held[0]))
        return {k: v[None] for k, v in obs.items()}
    obs = _market_rows(view, s, index, steps)
    obs.update(position_observation(owned, bars_held, view.spec))
    return obs


def futures_observation(view: EnvView, s: Series, qty: np.ndarray, mark_usd: np.ndarray, entry_usd: np.ndarray,
                        margin_usd: np.ndarray, equity_usd: np.ndarray, bars_held: np.ndarray
                        ) -> dict[str, np.ndarray]:
    """CryptoFutures observations at the last ``T = len(qty)`` bars, ``[T, ...]``."""
    cfg: CryptoFuturesConfig = view.config  # type: ignore[assignment]
    obs = _market_last(view, s, None) if len(qty) == 1 else _market_rows(view, s, None, len(qty))
    obs.update(futures_position_observation(qty, mark_usd, entry_usd, margin_usd, equity_usd, bars_held,
                                            leverage=float(cfg.leverage),
                                            maintenance_margin_rate=cfg.cost_model.maintenance_margin_rate,
                                            spec=view.spec))
    return obs


def portfolio_observation(view: EnvView, assets: list[Series], index: Series | None, qty: np.ndarray,
                          bars_held: np.ndarray, cash_usd: np.ndarray, initial_cash_usd: float
                          ) -> dict[str, np.ndarray]:
    """Portfolio observations at the last ``T = len(cash_usd)`` bars, ``[T, ...]``; ``qty`` and
    ``bars_held`` are ``[T, n_assets]``. Every asset's series must end at the same bar."""
    cfg: PortfolioConfig = view.config  # type: ignore[assignment]
    steps, lev = len(cash_usd), float(cfg.max_leverage)
    if steps == 1:
        use_index = view.spec.with_index and index is not None
        obs = build_portfolio_observation(
            [(a.ts, a.ohlcv) for a in assets], spec=view.spec, qty=qty[0], cash_usd=float(cash_usd[0]),
            bars_held=bars_held[0], initial_cash_usd=initial_cash_usd, max_leverage=lev,
            index_ts_ns=index.ts if use_index else None, index_ohlc=index.ohlcv if use_index else None,
            funding_rates=[a.funding for a in assets] if view.spec.with_funding else None)
        return {k: v[None] for k, v in obs.items()}
    per_asset = [_market_rows(view, a, index, steps) for a in assets]
    obs = {k: np.stack([o[k] if o[k].ndim == 3 else o[k][..., None] for o in per_asset], axis=1)
           for k in per_asset[0]}
    close = np.stack([a.ohlcv[len(a.ts) - steps:, 3] for a in assets], axis=1)  # [T, A]
    equity = cash_usd + np.add.reduce(qty * close, -1)
    obs.update(portfolio_position_observation(qty, close, cash_usd, equity, bars_held,
                                              initial_cash_usd=initial_cash_usd, max_leverage=lev,
                                              spec=view.spec))
    return obs


# --- history ---------------------------------------------------------------------------------------

def history_gap(view: EnvView, s: Series, index: Series | None, steps: int) -> str | None:
    """Why the observations at the last ``steps`` bars may differ from the env's over a longer
    history (an observed calendar period truncated at the window's start, or an index that
    starts inside the window); None when they are exact."""
    n, w = len(s.ts), view.window_bars
    first = n - steps  # the earliest observed row
    for p in view.spec.periods:
        ids = period_ids(s.ts[:first + 1], p)
        periods = int(np.count_nonzero(np.diff(ids))) + 1
        if periods < w + 1:
            return (f"the bars up to row {first} span {periods} '{p}' periods; {w + 1} are needed so that "
                    f"the {w} observed ones are complete")
    if view.spec.with_index and index is not None and index.ts[0] > s.ts[max(first - w + 1, 0)]:
        return "the index starts after the first bar of the observed window"
    return None

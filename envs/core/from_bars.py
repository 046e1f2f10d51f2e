"""Observations from raw bars and client-side positions, through THE observation builder.

What an :class:`~envs.core.spec.EnvSpec`'s ``build_observation`` calls (Serve, the trader): the
observation at the last ``T`` bars of a series, ``T`` = the length of the position arrays. One
bar (``T = 1``) goes through :func:`~envs.core.observation.build_observation` /
:func:`~envs.core.observation.build_portfolio_observation`; a recurrent replay (``T > 1``)
through the batched entry points the envs themselves use
(:func:`~envs.core.observation.prepare_features` + ``market_observation``, then the position
functions), which give the same floats row by row (``tests/unit/serve`` proves both against the
env). Every result is batched ``[T, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.core.market import CLOSE
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
from envs.core.spec import Bars, Position


def _steps(position: Position, key: str) -> int:
    steps = len(np.asarray(position[key]))
    if steps < 1:
        raise ValueError(f"position[{key!r}]: need at least one step")
    return steps


def _index_arrays(spec: ObservationSpec, index: Bars | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not spec.with_index or index is None:
        return None, None
    return index.ts_ns, index.ohlcv


def market_rows(spec: ObservationSpec, bars: Bars, index: Bars | None, steps: int) -> dict[str, np.ndarray]:
    """Market part at the last ``steps`` rows of ``bars``, ``[steps, ...]`` (the envs' path)."""
    n = len(bars.ts_ns)
    if not 1 <= steps <= n:
        raise ValueError(f"bars: {n} bars cannot make observations at the last {steps}")
    validate_bars("bars", bars.ts_ns, bars.ohlcv)
    idx_ts, idx_ohlc = _index_arrays(spec, index)
    if idx_ts is not None and idx_ohlc is not None:  # both or neither
        validate_bars("index", idx_ts, idx_ohlc)
    base = prepare_features(bars.ts_ns, bars.ohlcv, np.array([0, n]), spec, idx_ts, idx_ohlc,
                            bars.funding_rate if spec.with_funding else None)
    return market_observation(base, np.arange(n - steps, n))


def market_last(spec: ObservationSpec, bars: Bars, index: Bars | None, owned: bool = False,
                bars_held: int = 0) -> dict[str, np.ndarray]:
    """The observation at the last bar through :func:`build_observation`, ``[1, ...]``."""
    idx_ts, idx_ohlc = _index_arrays(spec, index)
    obs = build_observation(bars.ts_ns, bars.ohlcv, spec=spec, index_ts_ns=idx_ts, index_ohlc=idx_ohlc,
                            owned=owned, bars_held=bars_held,
                            funding_rate=bars.funding_rate if spec.with_funding else None)
    return {k: v[None] for k, v in obs.items()}


def stock(spec: ObservationSpec, bars: Bars, position: Position, index: Bars | None = None,
          initial_cash_usd: float | None = None) -> dict[str, np.ndarray]:
    """StockSwing: ``position`` holds ``owned`` and ``bars_held`` ``[T]``."""
    steps = _steps(position, "owned")
    owned = np.asarray(position["owned"]) != 0
    held = np.asarray(position["bars_held"], dtype=np.int64)
    if steps == 1:
        return market_last(spec, bars, index, bool(owned[0]), int(held[0]))
    obs = market_rows(spec, bars, index, steps)
    obs.update(position_observation(owned, held, spec))
    return obs


def futures(spec: ObservationSpec, bars: Bars, position: Position, index: Bars | None = None,
            initial_cash_usd: float | None = None, *, leverage: float,
            maintenance_margin_rate: float) -> dict[str, np.ndarray]:
    """CryptoFutures: ``position`` holds ``qty``, ``entry_price_usd``, ``margin_usd``,
    ``equity_usd``, ``mark_price_usd`` (NaN or absent: the bar's close) and ``bars_held`` ``[T]``.
    ``index`` is not observed."""
    steps = _steps(position, "qty")
    if steps == 1:
        obs = {k: v for k, v in market_last(spec, bars, None).items() if k not in POSITION_KEYS}
    else:
        obs = market_rows(spec, bars, None, steps)
    close = np.asarray(bars.ohlcv, dtype=np.float64)[-steps:, CLOSE]
    mark = np.asarray(position.get("mark_price_usd", np.full(steps, np.nan)), dtype=np.float64)
    mark = np.where(np.isnan(mark), close, mark)
    obs.update(futures_position_observation(
        position["qty"], mark, position["entry_price_usd"], position["margin_usd"], position["equity_usd"],
        position["bars_held"], leverage=leverage, maintenance_margin_rate=maintenance_margin_rate, spec=spec))
    return obs


def portfolio(spec: ObservationSpec, bars: Sequence[Bars], position: Position, index: Bars | None = None,
              initial_cash_usd: float | None = None, *, max_leverage: float,
              default_initial_cash_usd: float) -> dict[str, np.ndarray]:
    """Portfolio: ``bars`` one series per asset, all ending at the same bar; ``position`` holds
    ``qty`` and ``bars_held`` ``[T, n_assets]`` and ``cash_usd`` ``[T]``."""
    if isinstance(bars, Bars):
        raise ValueError("bars: a portfolio needs one series per asset (a list of Bars)")
    steps = _steps(position, "cash_usd")
    qty = np.asarray(position["qty"], dtype=np.float64).reshape(steps, len(bars))
    held = np.asarray(position["bars_held"], dtype=np.int64).reshape(steps, len(bars))
    cash = np.asarray(position["cash_usd"], dtype=np.float64)
    initial = float(default_initial_cash_usd if initial_cash_usd is None else initial_cash_usd)
    idx_ts, idx_ohlc = _index_arrays(spec, index)
    if steps == 1:
        obs = build_portfolio_observation(
            [(a.ts_ns, a.ohlcv) for a in bars], spec=spec, qty=qty[0], cash_usd=float(cash[0]),
            bars_held=held[0], initial_cash_usd=initial, max_leverage=max_leverage, index_ts_ns=idx_ts,
            index_ohlc=idx_ohlc, funding_rates=[a.funding_rate for a in bars] if spec.with_funding else None)
        return {k: v[None] for k, v in obs.items()}
    per_asset = [market_rows(spec, a, index, steps) for a in bars]
    obs = {k: np.stack([o[k] if o[k].ndim == 3 else o[k][..., None] for o in per_asset], axis=1)
           for k in per_asset[0]}
    close = np.stack([np.asarray(a.ohlcv)[len(a.ts_ns) - steps:, CLOSE] for a in bars], axis=1)  # [T, A]
    equity = cash + np.add.reduce(qty * close, -1)
    obs.update(portfolio_position_observation(qty, close, cash, equity, held, initial_cash_usd=initial,
                                              max_leverage=max_leverage, spec=spec))
    return obs

"""Synthetic hourly perpetuals with planted edges of both signs (CryptoFutures form).

The event classes of :mod:`envs.synthetic_edges` on 24/7 hourly bars with a funding series and
a mark price (as :func:`envs.synthetic.generate_perpetual`), for long/short and leverage:

* ``rare_event`` -- events at ``event_rate`` of bars, half bullish (the bar closes near its high
  on a volume spike, then the price drifts up by ``event_excess`` in log over ``horizon_bars``
  bars), half bearish (the mirror image: closes near its low, then drifts down). The oracle goes
  long after bullish events and short after bearish ones, at full size, for ``horizon_bars``.
* ``regime`` -- the same, with a hidden two-state volatility chain (``vol_low``, ``vol_high``,
  ``p_switch``): events pay ``event_excess`` in the low-volatility regime and
  ``high_vol_excess`` (default 0) in the high one, where the oracle stays flat.
* ``noise`` -- the same patterns and decoys, no drift at all: the oracle never trades.

No drift offset is needed: the two signs cancel, always-long and always-short earn nothing.
The pattern, the decoys and the time-major seeding are those of :mod:`envs.synthetic_edges`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from envs.core.market import MarketArrays
from envs.synthetic_base import SyntheticMarket, funding_series, hourly_ts_ns
from envs.synthetic_edges import (
    base_bars,
    check_knobs,
    flat,
    pattern_days,
    plant_patterns,
    planted_drift,
    sample_events,
    streams,
    to_prices,
    trailing_sum,
    vol_regimes,
)

PERP_EDGE_KINDS = ("rare_event", "regime", "noise")
_PATTERN = {"event_rate": 0.015, "horizon_bars": 24.0, "volume_mult": 3.0, "range_mult": 4.0,
            "pattern_noise": 0.1, "decoy_rate": 0.015, "basis_bps": 2.0}
PERP_DEFAULTS: dict[str, dict[str, float]] = {
    "rare_event": {**_PATTERN, "event_excess": 0.015, "vol": 0.006},
    "regime": {**_PATTERN, "event_excess": 0.015, "high_vol_excess": 0.0, "vol_low": 0.005,
               "vol_high": 0.0125, "p_switch": 0.005},
    "noise": {**_PATTERN, "vol": 0.006},
}


def generate_perp_edge(kind: str, seed: int, n_symbols: int, n_bars: int, zero_volume_prob: float,
                       params: Mapping[str, float]) -> SyntheticMarket:
    """A seeded market of hourly perpetuals (``BTC{i}/USDT:USDT``) of ``kind`` (module docstring).
    ``oracle_position`` is the oracle's signed side (-1, 0, 1) after each row's close."""
    p = check_knobs(kind, params, PERP_DEFAULTS[kind])
    n, s = n_bars, n_symbols
    rs = streams(seed, 11)
    horizon = int(p["horizon_bars"])
    high_vol, sigma = vol_regimes(kind, rs[6], n, s, p)
    events = sample_events(rs[2].random((n, s)), p["event_rate"], horizon)
    side = np.where(rs[10].random((n, s)) < 0.5, 1.0, -1.0)  # the pattern's direction, every bar
    if kind == "noise":
        move = np.zeros((n, s))
    elif kind == "regime":
        move = np.where(high_vol, p["high_vol_excess"], p["event_excess"])
    else:
        move = np.full((n, s), p["event_excess"])
    amount = side * move
    drift, _ = planted_drift(events, amount, horizon)
    entries = events & (amount != 0)
    position = np.rint(trailing_sum(entries * np.sign(amount), horizon, 0)).astype(np.int8)
    log_close = np.cumsum(sigma * rs[1].standard_normal((n, s)) + drift, axis=0)
    bars = base_bars(log_close, sigma, rs[4].standard_normal((n, s, 4)))
    shape, spike = pattern_days(events, rs[3].random((n, s)), p["decoy_rate"])
    bars = plant_patterns(bars, shape, spike, side, sigma, rs[5].standard_normal((n, s, 3)),
                          rs[7].random((n, s, 2)), p)
    if zero_volume_prob > 0:
        bars[..., 4] *= (rs[8].random((n, s)) >= zero_volume_prob) | events
    ts = hourly_ts_ns(n)
    ohlcv = to_prices(bars)
    basis = _basis(rs[9].standard_normal((n, s)), p["basis_bps"])
    funding_rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(12)[11].spawn(s)]
    funding = np.concatenate([funding_series(ts, log_close[:, i], funding_rngs[i]) for i in range(s)])
    mark = ohlcv[:, :4] * flat(np.exp(basis))[:, None]
    market = MarketArrays(tuple(f"BTC{i}/USDT:USDT" for i in range(s)),
                          np.arange(0, (s + 1) * n, n, dtype=np.int64), np.tile(ts, s), ohlcv, funding, mark)
    index_ohlcv = np.column_stack([np.full((n, 4), 100.0), np.full(n, 1e6)])
    index = MarketArrays(("INDEX",), np.array([0, n], dtype=np.int64), ts, index_ohlcv)
    expected = float((position[:-1] * drift[1:]).sum() / (n * s))
    return SyntheticMarket(kind, market, index, p, flat(position), expected, events=flat(events),
                           oracle_entry=flat(entries))


def _basis(z: np.ndarray, basis_bps: float) -> np.ndarray:
    """AR(1) log basis ``[n, S]`` (coefficient 0.9, stationary sd ``basis_bps``), time-major."""
    shocks = basis_bps * 1e-4 * np.sqrt(1 - 0.9**2) * z
    basis = np.zeros_like(z)
    for t in range(1, len(z)):
        basis[t] = 0.9 * basis[t - 1] + shocks[t]
    return basis

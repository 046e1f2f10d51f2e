"""Synthetic markets with a known answer: curriculum stages and learning tests.

An agent that cannot beat these cannot be trusted on real data. Each generator is seeded and
returns a :class:`SyntheticMarket`: daily bars (business days, UTC) as
:class:`~envs.core.market.MarketArrays`, a market index, the oracle's position at every bar
(decided on that bar's close from information available then) and the oracle's expected log
return per bar, gross of costs:

* ``gbm`` -- geometric Brownian motion, no edge. The optimal policy is buy-and-hold (drift > 0);
  every other causal policy expects less, by its costs. Expected: ``drift``.
* ``mean_reversion`` -- Ornstein-Uhlenbeck log price around a known mean. Oracle: buy when the
  log price is ``entry_z`` stationary deviations below the mean, sell when it is back at the mean.
  Expected: Monte-Carlo estimate on a long independent path.
* ``trend`` -- two hidden regimes (up/down drift) switching with probability ``p_switch`` per bar.
  Oracle: long while the hidden regime is up. Expected: ``pi_up * ((1-p) mu_up + p mu_down)``.

Log prices are generated in log space, so ``drift`` is the mean log return per bar. Opens gap
from the previous close by zero-mean noise, so filling at the next open keeps the edge on
average. Registered as ``raytrade/SyntheticGBM-v0``, ``raytrade/SyntheticMeanReversion-v0`` and
``raytrade/SyntheticTrend-v0`` (StockSwing in swing mode with ``log_return``).

Classes of edge for the learning benchmark (:data:`EDGE_KINDS`, :mod:`envs.synthetic_edges`):
``rare_event``, ``regime``, ``noise`` and ``relative_momentum``, each with difficulty knobs and
``events``/``oracle_entry`` rows; hourly perpetual forms of ``rare_event``, ``regime`` and
``noise`` with events of both signs: :func:`generate_perpetual_market`
(:mod:`envs.synthetic_perps`). An env config reaches every kind through ``synthetic``,
``market_seed`` and ``synthetic_params`` (:func:`generate_for`, :func:`check_synthetic`);
:mod:`envs.synthetic_oracle` plays the oracle through the real env.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from envs import synthetic_edges, synthetic_perps
from envs.core.market import MarketArrays
from envs.synthetic_base import (  # re-exported: the public face of every synthetic market
    NS_PER_HOUR,  # noqa: F401
    PERP_START_TS_NS,  # noqa: F401
    START_TS_NS,  # noqa: F401
    SyntheticMarket,
    bars_from_log_close,
    business_days_ts_ns,
    funding_series,
    hourly_ts_ns,
)

BASE_KINDS = ("gbm", "mean_reversion", "trend")
EDGE_KINDS = ("rare_event", "regime", "noise", "relative_momentum")
KINDS = (*BASE_KINDS, *EDGE_KINDS)
PERP_KINDS = ("gbm", "rare_event", "regime", "noise")
#: market-shape keys a ``synthetic_params`` mapping may hold besides a kind's knobs
SHAPE_KEYS = ("n_symbols", "n_bars", "zero_volume_prob")
DEFAULTS: dict[str, dict[str, float]] = {
    "gbm": {"drift": 0.0003, "vol": 0.012},
    "mean_reversion": {"theta": 0.05, "vol": 0.01, "entry_z": 1.0},
    "trend": {"mu_up": 0.002, "mu_down": -0.002, "vol": 0.01, "p_switch": 0.02},
}
def _gbm_paths(rng, n_symbols, n_bars, drift, vol):
    return np.cumsum(rng.normal(drift, vol, (n_symbols, n_bars)), axis=1), None


def _ou_paths(rng, n_symbols, n_bars, theta, vol):
    x = np.zeros((n_symbols, n_bars))
    shocks = rng.normal(0.0, vol, (n_symbols, n_bars))
    x[:, 0] = shocks[:, 0]
    for t in range(1, n_bars):
        x[:, t] = x[:, t - 1] * (1.0 - theta) + shocks[:, t]
    return x, None


def _ou_oracle(x: np.ndarray, theta: float, vol: float, entry_z: float) -> np.ndarray:
    """Hysteresis: enter below ``-entry_z`` stationary sd, exit at the mean (0)."""
    sd = vol / np.sqrt(1.0 - (1.0 - theta) ** 2)
    pos = np.zeros(x.shape, dtype=np.int8)
    long = np.zeros(x.shape[0], dtype=bool)
    for t in range(x.shape[1]):
        long = np.where(long, x[:, t] < 0.0, x[:, t] < -entry_z * sd)
        pos[:, t] = long
    return pos


def _trend_paths(rng, n_symbols, n_bars, mu_up, mu_down, vol, p_switch):
    switches = rng.random((n_symbols, n_bars)) < p_switch
    start_up = rng.random((n_symbols, 1)) < 0.5
    up = start_up ^ (np.cumsum(switches, axis=1) % 2 == 1)
    # the return of bar t follows bar t's regime; the oracle sees regime t after bar t's close
    steps = np.where(up, mu_up, mu_down) + rng.normal(0.0, vol, (n_symbols, n_bars))
    return np.cumsum(steps, axis=1), up.astype(np.int8)


@lru_cache(maxsize=16)
def _ou_expected(theta: float, vol: float, entry_z: float, n_bars: int = 100_000) -> float:
    """Oracle's mean log return per bar on a long independent path (plain floats: fast loop)."""
    shocks = np.random.default_rng(12345).normal(0.0, vol, n_bars).tolist()
    sd = vol / (1.0 - (1.0 - theta) ** 2) ** 0.5
    x, long, total = 0.0, False, 0.0
    for eps in shocks:
        x_next = x * (1.0 - theta) + eps
        total += long * (x_next - x)
        x = x_next
        long = x < 0.0 if long else x < -entry_z * sd
    return total / n_bars


def generate(kind: str, seed: int = 0, n_symbols: int = 4, n_bars: int = 1500,
             zero_volume_prob: float = 0.0, **params: float) -> SyntheticMarket:
    """Generate a seeded synthetic market of ``kind`` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if kind in EDGE_KINDS:
        _check_shape(n_symbols, n_bars, zero_volume_prob)
        return synthetic_edges.generate_edge(kind, seed, n_symbols, n_bars, zero_volume_prob, params)
    unknown = set(params) - set(DEFAULTS[kind])
    if unknown:
        raise ValueError(f"params: unknown for {kind!r}: {sorted(unknown)}; known {sorted(DEFAULTS[kind])}")
    if n_symbols < 1 or n_bars < 2:
        raise ValueError(f"n_symbols/n_bars: need >= 1 symbol and >= 2 bars, got {n_symbols}, {n_bars}")
    p = {**DEFAULTS[kind], **params}
    rng = np.random.default_rng(seed)
    if kind == "gbm":
        x, _ = _gbm_paths(rng, n_symbols, n_bars, p["drift"], p["vol"])
        oracle = np.full(x.shape, int(p["drift"] > 0), dtype=np.int8)
        expected = max(p["drift"], 0.0)
    elif kind == "mean_reversion":
        x, _ = _ou_paths(rng, n_symbols, n_bars, p["theta"], p["vol"])
        oracle = _ou_oracle(x, p["theta"], p["vol"], p["entry_z"])
        expected = _ou_expected(p["theta"], p["vol"], p["entry_z"])
    else:
        x, oracle = _trend_paths(rng, n_symbols, n_bars, p["mu_up"], p["mu_down"], p["vol"], p["p_switch"])
        expected = 0.5 * ((1 - p["p_switch"]) * p["mu_up"] + p["p_switch"] * p["mu_down"])
    ts = business_days_ts_ns(n_bars)
    ohlcv = np.concatenate([bars_from_log_close(x[i], p["vol"], rng, zero_volume_prob)
                            for i in range(n_symbols)])
    market = MarketArrays(tuple(f"SYN{i}" for i in range(n_symbols)),
                          np.arange(0, (n_symbols + 1) * n_bars, n_bars, dtype=np.int64),
                          np.tile(ts, n_symbols), ohlcv)
    idx_path = np.cumsum(rng.normal(0.0002, 0.008, n_bars))
    index = MarketArrays(("INDEX",), np.array([0, n_bars], dtype=np.int64), ts,
                         bars_from_log_close(idx_path, 0.008, rng))
    return SyntheticMarket(kind, market, index, p, oracle.reshape(-1), float(expected))


# --- Perpetual futures: hourly bars around the clock, funding every 8 hours, a mark price ---

def generate_perpetual(seed: int = 0, n_symbols: int = 2, n_bars: int = 4000, drift: float = 0.0,
                       vol: float = 0.006, basis_bps: float = 2.0, zero_volume_prob: float = 0.0,
                       ) -> MarketArrays:
    """A seeded market of hourly perpetuals (``BTC{i}/USDT:USDT``): GBM bars, a funding series
    (:func:`funding_series`) and a mark price = traded prices times a small AR(1) basis
    (``basis_bps`` stationary sd), constant within a bar."""
    if n_symbols < 1 or n_bars < 2:
        raise ValueError(f"n_symbols/n_bars: need >= 1 symbol and >= 2 bars, got {n_symbols}, {n_bars}")
    rng = np.random.default_rng(seed)
    ts = hourly_ts_ns(n_bars)
    ohlcv, funding, mark = [], [], []
    for _ in range(n_symbols):
        x = np.cumsum(rng.normal(drift, vol, n_bars))
        bars = bars_from_log_close(x, vol, rng, zero_volume_prob)
        basis = np.zeros(n_bars)
        shocks = rng.normal(0.0, basis_bps * 1e-4 * np.sqrt(1 - 0.9**2), n_bars)
        for t in range(1, n_bars):
            basis[t] = 0.9 * basis[t - 1] + shocks[t]
        ohlcv.append(bars)
        funding.append(funding_series(ts, x, rng))
        mark.append(bars[:, :4] * np.exp(basis)[:, None])
    return MarketArrays(tuple(f"BTC{i}/USDT:USDT" for i in range(n_symbols)),
                        np.arange(0, (n_symbols + 1) * n_bars, n_bars, dtype=np.int64), np.tile(ts, n_symbols),
                        np.concatenate(ohlcv), np.concatenate(funding), np.concatenate(mark))


PERP_GBM_DEFAULTS = {"drift": 0.0, "vol": 0.006, "basis_bps": 2.0}


def generate_perpetual_market(kind: str = "gbm", seed: int = 0, n_symbols: int = 2, n_bars: int = 4000,
                              zero_volume_prob: float = 0.0, **params: float) -> SyntheticMarket:
    """Hourly perpetuals of ``kind`` (:data:`PERP_KINDS`) with their oracle: ``gbm`` is
    :func:`generate_perpetual` (no edge: the oracle stays flat), the others
    :mod:`envs.synthetic_perps` (events of both signs)."""
    if kind not in PERP_KINDS:
        raise ValueError(f"kind: expected one of {PERP_KINDS} for perpetuals, got {kind!r}")
    _check_shape(n_symbols, n_bars, zero_volume_prob)
    if kind != "gbm":
        return synthetic_perps.generate_perp_edge(kind, seed, n_symbols, n_bars, zero_volume_prob, params)
    unknown = sorted(set(params) - set(PERP_GBM_DEFAULTS))
    if unknown:
        raise ValueError(f"params: unknown for perpetual 'gbm': {unknown}; known {sorted(PERP_GBM_DEFAULTS)}")
    p = {**PERP_GBM_DEFAULTS, **params}
    market = generate_perpetual(seed, n_symbols, n_bars, p["drift"], p["vol"], p["basis_bps"],
                                zero_volume_prob)
    ts = market.ts_ns[:n_bars]
    index = MarketArrays(("INDEX",), np.array([0, n_bars], dtype=np.int64), ts,
                         np.column_stack([np.full((n_bars, 4), 100.0), np.full(n_bars, 1e6)]))
    return SyntheticMarket("gbm", market, index, p, np.zeros(len(market.ts_ns), np.int8), 0.0)


def _check_shape(n_symbols: Any, n_bars: Any, zero_volume_prob: Any) -> None:
    def integer(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, np.integer, float)) and float(v) == int(v)

    if not integer(n_symbols) or not 1 <= n_symbols <= 100_000:
        raise ValueError(f"n_symbols: must be an integer in [1, 100000], got {n_symbols!r}")
    if not integer(n_bars) or not 2 <= n_bars <= 10_000_000:
        raise ValueError(f"n_bars: must be an integer in [2, 10000000], got {n_bars!r}")
    if (isinstance(zero_volume_prob, bool) or not isinstance(zero_volume_prob, (int, float))
            or not math.isfinite(zero_volume_prob) or not 0 <= zero_volume_prob < 1):
        raise ValueError(f"zero_volume_prob: must be a number in [0, 1), got {zero_volume_prob!r}")


def _shape_args(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``synthetic_params`` split into market-shape arguments (ints) and the kind's knobs."""
    shape = {k: params[k] for k in SHAPE_KEYS if k in params}
    for k in ("n_symbols", "n_bars"):
        if k in shape and isinstance(shape[k], float) and shape[k].is_integer():
            shape[k] = int(shape[k])
    return shape, {k: v for k, v in params.items() if k not in SHAPE_KEYS}


def check_synthetic(kind: str, params: Mapping[str, Any] | None = None, *, perpetual: bool = False) -> None:
    """ValueError unless ``kind`` and ``params`` (knobs and :data:`SHAPE_KEYS`) make a valid
    market: what env configs call at validation (cheap: nothing is generated)."""
    kinds = PERP_KINDS if perpetual else KINDS
    if kind not in kinds:
        raise ValueError(f"must be one of {kinds}")
    if params is None:
        return
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ValueError("synthetic_params: must be a mapping of knob names to numbers")
    shape, knobs = _shape_args(params)
    _check_shape(shape.get("n_symbols", 1), shape.get("n_bars", 2), shape.get("zero_volume_prob", 0.0))
    if kind in EDGE_KINDS:
        defaults = (synthetic_perps.PERP_DEFAULTS if perpetual else synthetic_edges.DEFAULTS)[kind]
        synthetic_edges.check_knobs(kind, knobs, defaults)
        return
    defaults = PERP_GBM_DEFAULTS if perpetual else DEFAULTS[kind]
    unknown = sorted(set(knobs) - set(defaults))
    if unknown:
        raise ValueError(f"params: unknown for {kind!r}: {unknown}; known {sorted(defaults)}")
    bad = [k for k, v in knobs.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
    if bad:
        raise ValueError(f"params: {bad} must be finite numbers")


def generate_for(config: Any) -> SyntheticMarket:
    """The synthetic market an env config names: ``config.synthetic``, ``config.market_seed``
    and ``config.synthetic_params`` (knobs plus ``n_symbols``/``n_bars``; optional)."""
    shape, knobs = _shape_args(getattr(config, "synthetic_params", None) or {})
    return generate(config.synthetic, config.market_seed, **shape, **knobs)


def generate_perpetual_for(config: Any) -> SyntheticMarket:
    """:func:`generate_for` for perpetuals (CryptoFutures configs)."""
    shape, knobs = _shape_args(getattr(config, "synthetic_params", None) or {})
    return generate_perpetual_market(getattr(config, "synthetic", "gbm"), seed=config.market_seed,
                                     **shape, **knobs)


def check_config_params(config: Any, *, perpetual: bool) -> None:
    """An env config's ``synthetic_params`` (copied into a plain dict) are valid for its
    ``synthetic`` kind; else the config's own ``ValueError`` naming ``synthetic_params``."""
    params = config.synthetic_params
    if params is None:
        return
    if isinstance(params, Mapping):
        object.__setattr__(config, "synthetic_params", dict(params))
    try:
        check_synthetic(config.synthetic, params, perpetual=perpetual)
    except ValueError as exc:
        config._fail("synthetic_params", str(exc))

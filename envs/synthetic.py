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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from envs.core.market import MarketArrays
from envs.core.resample import NS_PER_DAY

KINDS = ("gbm", "mean_reversion", "trend")
DEFAULTS: dict[str, dict[str, float]] = {
    "gbm": {"drift": 0.0003, "vol": 0.012},
    "mean_reversion": {"theta": 0.05, "vol": 0.01, "entry_z": 1.0},
    "trend": {"mu_up": 0.002, "mu_down": -0.002, "vol": 0.01, "p_switch": 0.02},
}
START_TS_NS = 946_857_600 * 10**9  # 2000-01-03, a Monday


@dataclass(frozen=True, eq=False)
class SyntheticMarket:
    """A generated market and its known answer.

    Attributes:
        kind: one of :data:`KINDS`.
        market: the symbols' daily bars; ``index``: a market index (one GBM series).
        params: generator parameters.
        oracle_position: ``[R]`` 0/1 target position after each row's close (causal).
        expected_log_return_per_bar: the oracle's expected log return per bar, gross of costs.
    """

    kind: str
    market: MarketArrays
    index: MarketArrays
    params: dict[str, float] = field(default_factory=dict)
    oracle_position: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    expected_log_return_per_bar: float = 0.0

    def oracle_action(self, row: int, owned: bool) -> int:
        """StockSwing swing-mode action (0 hold, 1 buy, 2 sell) that follows the oracle."""
        want = bool(self.oracle_position[row])
        return 1 if want and not owned else 2 if owned and not want else 0


def business_days_ts_ns(n_bars: int, start_ts_ns: int = START_TS_NS) -> np.ndarray:
    """``n_bars`` consecutive Monday-Friday midnights (UTC) from ``start_ts_ns`` (a weekday)."""
    day0 = start_ts_ns // NS_PER_DAY
    n_days = n_bars * 7 // 5 + 7
    days = day0 + np.arange(n_days)
    weekday = (days + 3) % 7  # 0 = Monday
    return (days[weekday < 5][:n_bars] * NS_PER_DAY).astype(np.int64)


def bars_from_log_close(log_close: np.ndarray, vol: float, rng: np.random.Generator,
                        zero_volume_prob: float = 0.0) -> np.ndarray:
    """OHLCV ``[n, 5]`` around a log close path: gapped opens, ranges, lognormal volumes."""
    n = len(log_close)
    close = 100.0 * np.exp(log_close)
    prev = np.concatenate([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.2 * vol, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * vol, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * vol, n)))
    volume = np.exp(rng.normal(13.8, 0.3, n)) * (rng.random(n) >= zero_volume_prob)
    return np.column_stack([open_, high, low, close, volume])


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

PERP_START_TS_NS = 1_609_459_200 * 10**9  # 2021-01-01 00:00 UTC
NS_PER_HOUR = 3_600 * 10**9


def hourly_ts_ns(n_bars: int, start_ts_ns: int = PERP_START_TS_NS) -> np.ndarray:
    """``n_bars`` consecutive hourly bar opens (UTC, 24/7) from ``start_ts_ns``."""
    return start_ts_ns + NS_PER_HOUR * np.arange(n_bars, dtype=np.int64)


def funding_series(ts_ns: np.ndarray, log_close: np.ndarray, rng: np.random.Generator, *,
                   base_rate: float = 1e-4, premium_k: float = 0.02, noise: float = 5e-5,
                   every_hours: int = 8, cap: float = 0.0075) -> np.ndarray:
    """Funding rates on hourly bars: an event every ``every_hours`` (00:00, 08:00, 16:00 UTC),
    ``base_rate`` plus a premium that follows the last ``every_hours`` bars' return (longs pay
    more after a rally) plus noise, capped at ``+-cap``; 0 on bars without an event. Causal:
    the rate settled at a bar depends on closes up to the previous bar only."""
    event = (ts_ns // NS_PER_HOUR) % every_hours == 0
    prev = np.concatenate([log_close[:1], log_close[:-1]])
    lagged = np.concatenate([np.full(every_hours, prev[0]), prev[:-every_hours]])[:len(prev)]
    rate = base_rate + premium_k * (prev - lagged) + rng.normal(0.0, noise, len(ts_ns))
    return np.where(event, np.clip(rate, -cap, cap), 0.0)


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

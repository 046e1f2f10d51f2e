"""Synthetic stock markets with planted edges of several classes, for the learning benchmark.

Each generator returns a :class:`~envs.synthetic.SyntheticMarket` of daily bars (business days,
UTC) with the oracle's target position after each row's close, the rows where a ``buy_only``
oracle buys (``oracle_entry``) and, where events are planted, the event rows (``events``):

* ``rare_event`` -- on rare event days (``event_rate`` of days, 1.5 % by default) the day's bar
  and volume show a pattern, followed by an excess log drift over the index of ``event_excess``
  spread evenly over the next ``horizon_bars`` bars. Nothing before the event bar announces it.
* ``regime`` -- the same events, but the symbol's volatility follows a hidden two-state Markov
  chain (``vol_low``/``vol_high``, ``p_switch`` per bar; visible through realised volatility):
  an event pays ``event_excess`` in the low-volatility regime and ``high_vol_excess`` (zero or
  negative) in the high one. The oracle buys low-volatility events only.
* ``noise`` -- the same event patterns and decoys, no drift after them, an index without drift:
  no edge at all (the oracle never trades; every trade only pays costs).
* ``relative_momentum`` -- the stock's excess over the index is its shock plus a drift equal to
  ``strength / lookback_bars`` times the sum of its last ``lookback_bars`` shocks, so the excess
  of the last bars predicts the excess of the next ``horizon_bars`` bars. The oracle knows the
  expected excess over the next ``horizon_bars`` bars from bars up to t and buys above
  ``entry_excess`` (swing: holds until it turns negative).

The event pattern (documented contract; :func:`event_features` measures it causally):

* event bar: its log range (high/low) is ``range_mult`` (4) times the bar volatility (a typical
  bar's is about 1.6 times: the event's range is ~2.3x its recent mean), the close sits in the
  top 5-15 % of the range (close-location value 0.85-0.95, lowered by noise), the open in the
  lower half (a long green bar closing near its high), and the volume is ``volume_mult`` (3)
  times a normal day's. ``pattern_noise`` (0.1) blurs all three: lognormal noise of that sd on
  the range and the volume, and ``pattern_noise * |N(0, 1)|`` off the close location. At the
  defaults a rule on :func:`event_features` (volume ratio > 1.8, range ratio > 1.5, close
  location > 0.6) finds ~90 % of events at ~80 % precision; the bar before an event shows
  nothing (``tests/unit/envs/test_synthetic_edges.py``).
* decoys (``decoy_rate`` of the other days, no drift): half have the volume spike on a normal
  bar, half the bar shape on a normal volume. Only both together mark an event.

The stock's log return is ``index return + shock + planted drift``; outside the drift windows
a small negative excess drift offsets ``drift_offset`` (default all) of the planted drift's
mean, so always-long earns the index and no excess: only timing earns the edge. The index is a
GBM (``index_drift``, ``index_vol``). Events are at least ``horizon_bars + 1`` bars apart, so
a ``buy_only`` oracle (hold ``horizon_bars``) can take every one: at defaults it earns about
``252 * event_rate * (exp(event_excess) - 1)`` ~ 0.25 excess per 252 bars
(:func:`expected_event_excess_per_252`).

Every random stream is drawn time-major from its own child seed, so bars, events and oracle
decisions up to bar t do not depend on anything after t (a market of ``n_bars`` is a prefix of
a longer one with the same seed: the look-ahead test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from envs.core.market import MarketArrays
from envs.synthetic_base import SyntheticMarket, business_days_ts_ns

EVENT_KINDS = ("rare_event", "regime", "noise")
STOCK_EDGE_KINDS = (*EVENT_KINDS, "relative_momentum")

_PATTERN = {"event_rate": 0.015, "horizon_bars": 20.0, "volume_mult": 3.0, "range_mult": 4.0,
            "pattern_noise": 0.1, "decoy_rate": 0.015, "index_vol": 0.008}
DEFAULTS: dict[str, dict[str, float]] = {
    "rare_event": {**_PATTERN, "event_excess": 0.065, "vol": 0.012, "index_drift": 0.0002,
                   "drift_offset": 1.0},
    "regime": {**_PATTERN, "event_excess": 0.065, "high_vol_excess": -0.02, "vol_low": 0.01,
               "vol_high": 0.025, "p_switch": 0.01, "index_drift": 0.0002, "drift_offset": 1.0},
    "noise": {**_PATTERN, "vol": 0.012, "index_drift": 0.0},
    "relative_momentum": {"strength": 1.0, "lookback_bars": 20.0, "horizon_bars": 20.0,
                          "entry_excess": 0.03, "vol": 0.012, "index_drift": 0.0002,
                          "index_vol": 0.008},
}
#: (low, high, integer): the accepted range of each knob (inclusive)
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "event_rate": (1e-6, 0.5, False), "horizon_bars": (1, 500, True), "volume_mult": (1.0, 100.0, False),
    "range_mult": (0.1, 100.0, False), "pattern_noise": (0.0, 5.0, False), "decoy_rate": (0.0, 0.5, False),
    "event_excess": (-1.0, 1.0, False), "high_vol_excess": (-1.0, 1.0, False), "vol": (1e-6, 0.5, False),
    "vol_low": (1e-6, 0.5, False), "vol_high": (1e-6, 0.5, False), "p_switch": (0.0, 1.0, False),
    "index_drift": (-0.01, 0.01, False), "index_vol": (0.0, 0.5, False), "drift_offset": (0.0, 1.0, False),
    "strength": (0.0, 5.0, False), "lookback_bars": (1, 500, True), "entry_excess": (0.0, 1.0, False),
    "basis_bps": (0.0, 1000.0, False),
}


def check_knobs(kind: str, params: Mapping[str, float], defaults: Mapping[str, float]) -> dict[str, float]:
    """``defaults`` with ``params`` applied, each checked against :data:`BOUNDS` (ValueError
    naming the knob); event rates must leave room for the refractory gap."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"params: unknown for {kind!r}: {unknown}; known {sorted(defaults)}")
    p = dict(defaults)
    for name, value in params.items():
        low, high, integer = BOUNDS[name]
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not ok or not low <= value <= high or (integer and float(value) != int(value)):
            what = "an integer" if integer else "a finite number"
            raise ValueError(f"params.{name}: must be {what} in [{low:g}, {high:g}] for {kind!r}, "
                             f"got {value!r}")
        p[name] = float(value)
    if "event_rate" in p and p["event_rate"] * (p["horizon_bars"] + 1) >= 0.8:
        raise ValueError(f"params.event_rate: event_rate * (horizon_bars + 1) must be < 0.8 for {kind!r} "
                         f"(events are at least horizon_bars + 1 bars apart), "
                         f"got {p['event_rate']} * {p['horizon_bars'] + 1:g}")
    return p


def expected_event_excess_per_252(params: Mapping[str, float]) -> float:
    """The ``buy_only`` oracle's expected excess (stock % gain minus index % gain over the holds,
    gross of costs) per 252 bars on a ``rare_event`` market: ``252 * rate * (exp(excess) - 1)``
    (small convexity terms of the noise left out: measured values run ~3 % higher)."""
    return 252.0 * params["event_rate"] * math.expm1(params["event_excess"])


# --- shared machinery (also used by the perpetual forms) -------------------------------------

def streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators from ``seed``: each draws one quantity, time-major."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def sample_events(u: np.ndarray, rate: float, gap_bars: int) -> np.ndarray:
    """Events ``[n, S]`` from uniforms ``u``: a Bernoulli draw per bar, no event within
    ``gap_bars`` bars after one; the per-bar probability makes the long-run rate ``rate``."""
    q = rate / (1.0 - rate * gap_bars)
    events = np.zeros(u.shape, dtype=bool)
    next_ok = np.zeros(u.shape[1], dtype=np.int64)
    for t in range(u.shape[0]):
        e = (u[t] < q) & (t >= next_ok)
        events[t] = e
        next_ok = np.where(e, t + gap_bars + 1, next_ok)
    return events


def trailing_sum(x: np.ndarray, bars: int, lag: int) -> np.ndarray:
    """``out[t] = sum(x[t - lag - bars + 1 .. t - lag])`` along axis 0 (zeros before the start)."""
    c = np.concatenate([np.zeros((bars + lag, *x.shape[1:])), np.cumsum(x, axis=0)])
    n = len(x)
    return c[bars:bars + n] - c[:n]


def planted_drift(events: np.ndarray, amount: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar drift ``amount / horizon`` on the ``horizon`` bars after each event, and the
    window indicator (both ``[n, S]``; causal: bar t's drift depends on events before t)."""
    drift = trailing_sum(events * amount / horizon, horizon, 1)
    window = trailing_sum(events.astype(np.float64), horizon, 1) > 0
    return drift, window


def base_bars(log_close: np.ndarray, sigma: np.ndarray, z: np.ndarray) -> np.ndarray:
    """OHLCV ``[n, S, 5]`` around log closes ``[n, S]``: opens gapped from the previous close by
    ``0.2 sigma`` noise, wicks of ``0.5 sigma``, lognormal volumes (``z``: ``[n, S, 4]`` normals)."""
    prev = np.concatenate([log_close[:1], log_close[:-1]])
    lo_ = prev + 0.2 * sigma * z[..., 0]
    hi = np.maximum(lo_, log_close) + 0.5 * sigma * np.abs(z[..., 1])
    lo = np.minimum(lo_, log_close) - 0.5 * sigma * np.abs(z[..., 2])
    volume = np.exp(13.8 + 0.3 * z[..., 3])
    return np.stack([lo_, hi, lo, log_close, volume], axis=-1)


def plant_patterns(bars: np.ndarray, shape: np.ndarray, spike: np.ndarray, side: np.ndarray,
                   sigma: np.ndarray, zp: np.ndarray, up: np.ndarray, p: Mapping[str, float]) -> np.ndarray:
    """Event bar shape where ``shape`` (side +1: close near the high, open in the lower half;
    -1: the mirror image) and volume spike where ``spike``; see the module docstring.
    ``bars`` hold LOG prices; ``zp`` ``[n, S, 3]`` normals, ``up`` ``[n, S, 2]`` uniforms."""
    noise = p["pattern_noise"]
    c = bars[..., 3]
    rng_log = p["range_mult"] * sigma * np.exp(noise * zp[..., 0])
    clv = np.clip(0.95 - 0.1 * up[..., 0] - noise * np.abs(zp[..., 1]), 0.0, 1.0)
    bull = side > 0
    hi = c + np.where(bull, 1.0 - clv, clv) * rng_log
    lo = c - np.where(bull, clv, 1.0 - clv) * rng_log
    op = c - side * clv * rng_log * (0.3 + 0.4 * up[..., 1])
    out = bars.copy()
    out[..., 0] = np.where(shape, op, bars[..., 0])
    out[..., 1] = np.where(shape, hi, bars[..., 1])
    out[..., 2] = np.where(shape, lo, bars[..., 2])
    out[..., 4] = np.where(spike, bars[..., 4] * p["volume_mult"] * np.exp(noise * zp[..., 2]), bars[..., 4])
    return out


def pattern_days(events: np.ndarray, d: np.ndarray, decoy_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(bar shape, volume spike) masks: every event has both; decoys (uniforms ``d`` below
    ``decoy_rate`` on non-event days) have one of them."""
    decoy = (d < decoy_rate) & ~events
    volume_only = decoy & (d < 0.5 * decoy_rate)
    return events | (decoy & ~volume_only), events | volume_only


def to_prices(bars: np.ndarray) -> np.ndarray:
    """Log-price OHLC plus volume ``[n, S, 5]`` -> prices around 100, one ``[n * S, 5]`` block
    per symbol (symbol-major, the :class:`MarketArrays` layout)."""
    out = bars.copy()
    out[..., :4] = 100.0 * np.exp(bars[..., :4])
    return out.transpose(1, 0, 2).reshape(-1, 5)


def event_features(market: MarketArrays, lookback_bars: int = 20) -> dict[str, np.ndarray]:
    """Causal features of each row's bar (bars up to the row only, per symbol): the volume over
    the mean of the previous ``lookback_bars`` volumes, the log range over the mean previous log
    range, and the close location ``(close - low) / (high - low)`` (1 = at the high)."""
    o = market.ohlcv
    volume_ratio, range_ratio = np.ones(len(o)), np.ones(len(o))
    log_range = np.log(o[:, 1] / o[:, 2])
    for i in range(market.n_symbols):
        s = market.rows(i)
        for src, dst in ((o[s, 4], volume_ratio), (log_range[s], range_ratio)):
            prev = trailing_sum(src[:, None], lookback_bars, 1)[:, 0] / lookback_bars
            dst[s] = np.where(prev > 0, src / np.where(prev > 0, prev, 1.0), 1.0)
    span = o[:, 1] - o[:, 2]
    clv = np.where(span > 0, (o[:, 3] - o[:, 2]) / np.where(span > 0, span, 1.0), 0.5)
    return {"volume_ratio": volume_ratio, "range_ratio": range_ratio, "close_location": clv}


# --- stock generators ------------------------------------------------------------------------

def regimes(u: np.ndarray, p_switch: float) -> np.ndarray:
    """Hidden high-volatility regime ``[n, S]`` (bool): starts 50/50, switches w.p. ``p_switch``."""
    switches = u < p_switch
    switches[0] = False
    return (u[:1] < 0.5) ^ (np.cumsum(switches, axis=0) % 2 == 1)


def vol_regimes(kind: str, stream: np.random.Generator, n: int, s: int,
                p: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(high_vol, sigma)`` ``[n, s]``: the hidden volatility regime of a ``regime`` market (calm
    elsewhere) and each bar's volatility."""
    if kind != "regime":
        return np.zeros((n, s), dtype=bool), np.full((n, s), p["vol"])
    high_vol = regimes(stream.random((n, s)), p["p_switch"])
    return high_vol, np.where(high_vol, p["vol_high"], p["vol_low"])


def _event_stock(kind: str, rs: list[np.random.Generator], n: int, s: int, p: dict[str, float]):
    """Log closes, bar sigma, expected per-bar log return, events, entries, oracle position."""
    horizon = int(p["horizon_bars"])
    high_vol, sigma = vol_regimes(kind, rs[6], n, s, p)
    events = sample_events(rs[2].random((n, s)), p["event_rate"], horizon)
    if kind == "noise":
        amount, mean_amount = np.zeros((n, s)), 0.0
    elif kind == "regime":
        amount = np.where(high_vol, p["high_vol_excess"], p["event_excess"])
        mean_amount = 0.5 * (p["high_vol_excess"] + p["event_excess"])
    else:
        amount, mean_amount = np.full((n, s), p["event_excess"]), p["event_excess"]
    drift, window = planted_drift(events, amount, horizon)
    offset = p.get("drift_offset", 0.0) * p["event_rate"] * mean_amount / (1.0 - p["event_rate"] * horizon)
    excess = drift - offset * ~window
    entries = events & (amount > 0)
    position = trailing_sum(entries.astype(np.float64), horizon, 0) > 0
    return sigma * rs[1].standard_normal((n, s)) + excess, sigma, excess, events, entries, position


def _momentum_stock(rs: list[np.random.Generator], n: int, s: int, p: dict[str, float]):
    """Excess = shock + (strength / k) * sum of the previous k shocks; the oracle's signal is
    the part of the next h bars' drift already known at t (shocks up to t)."""
    k, h = int(p["lookback_bars"]), int(p["horizon_bars"])
    sigma = np.full((n, s), p["vol"])
    shocks = sigma * rs[1].standard_normal((n, s))
    excess = p["strength"] / k * trailing_sum(shocks, k, 1)  # drift of bar t: shocks t-k .. t-1
    known = np.zeros((n, s))
    for i in range(1, h + 1):  # bar t+i's drift: shocks t+i-k .. t+i-1, known up to t
        if k - i + 1 > 0:
            known += p["strength"] / k * trailing_sum(shocks, k - i + 1, 0)
    entries = known > p["entry_excess"]
    position = np.zeros((n, s), dtype=bool)
    long = np.zeros(s, dtype=bool)
    for t in range(n):  # hysteresis: in above entry_excess, out once the expectation turns < 0
        long = np.where(long, known[t] > 0.0, entries[t])
        position[t] = long
    return shocks + excess, sigma, excess, np.zeros((n, s), dtype=bool), entries, position


def generate_edge(kind: str, seed: int, n_symbols: int, n_bars: int, zero_volume_prob: float,
                  params: Mapping[str, float]) -> SyntheticMarket:
    """A seeded stock market of ``kind`` (:data:`STOCK_EDGE_KINDS`, see the module docstring)."""
    p = check_knobs(kind, params, DEFAULTS[kind])
    n, s = n_bars, n_symbols
    rs = streams(seed, 10)
    index_ret = p["index_drift"] + p["index_vol"] * rs[0].standard_normal(n)
    if kind == "relative_momentum":
        idio, sigma, excess, events, entries, position = _momentum_stock(rs, n, s, p)
    else:
        idio, sigma, excess, events, entries, position = _event_stock(kind, rs, n, s, p)
    log_close = np.cumsum(index_ret[:, None] + idio, axis=0)
    bars = base_bars(log_close, sigma, rs[4].standard_normal((n, s, 4)))
    if kind != "relative_momentum":
        shape, spike = pattern_days(events, rs[3].random((n, s)), p["decoy_rate"])
        bars = plant_patterns(bars, shape, spike, np.ones((n, s)), sigma, rs[5].standard_normal((n, s, 3)),
                              rs[7].random((n, s, 2)), p)
    if zero_volume_prob > 0:
        bars[..., 4] *= (rs[8].random((n, s)) >= zero_volume_prob) | events
    ts = business_days_ts_ns(n)
    market = MarketArrays(tuple(f"SYN{i}" for i in range(s)), np.arange(0, (s + 1) * n, n, dtype=np.int64),
                          np.tile(ts, s), to_prices(bars))
    index_bars = base_bars(np.cumsum(index_ret)[:, None], np.full((n, 1), p["index_vol"]),
                           rs[9].standard_normal((n, 1, 4)))
    index = MarketArrays(("INDEX",), np.array([0, n], dtype=np.int64), ts, to_prices(index_bars))
    mu_next = p["index_drift"] + excess[1:]  # expected log return of bar t+1, known at t
    expected = float((position[:-1] * mu_next).sum() / (n * s))
    return SyntheticMarket(kind, market, index, p, flat(position).astype(np.int8), expected,
                           events=flat(events), oracle_entry=flat(entries))


def flat(a: np.ndarray) -> np.ndarray:
    """``[n, S]`` time-major -> ``[S * n]`` symbol-major rows (the :class:`MarketArrays` layout)."""
    return np.ascontiguousarray(a.T).reshape(-1)

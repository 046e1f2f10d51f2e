"""What every synthetic market shares: the market-and-oracle record, calendars, bars, funding.

Split from :mod:`envs.synthetic` (which re-exports all of it) so the generators of
:mod:`envs.synthetic_edges` and :mod:`envs.synthetic_perps` build on it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.core.market import MarketArrays
from envs.core.resample import NS_PER_DAY

START_TS_NS = 946_857_600 * 10**9  # 2000-01-03, a Monday


@dataclass(frozen=True, eq=False)
class SyntheticMarket:
    """A generated market and its known answer.

    Attributes:
        kind: one of :data:`KINDS` (or :data:`PERP_KINDS` for perpetuals).
        market: the symbols' bars; ``index``: a market index (one series).
        params: generator parameters.
        oracle_position: ``[R]`` target position after each row's close (causal): 0/1 for
            stocks, the signed side -1/0/1 for perpetuals.
        expected_log_return_per_bar: the oracle's expected log return per bar, gross of costs.
        events: ``[R]`` bool, the rows with a planted event pattern (empty where none are planted).
        oracle_entry: ``[R]`` bool, the rows where the oracle opens a position in ``buy_only``
            mode (the events that pay); empty: wherever ``oracle_position`` is held.
    """

    kind: str
    market: MarketArrays
    index: MarketArrays
    params: dict[str, float] = field(default_factory=dict)
    oracle_position: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    expected_log_return_per_bar: float = 0.0
    events: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    oracle_entry: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def oracle_action(self, row: int, owned: bool, mode: str = "swing") -> int:
        """StockSwing action that follows the oracle: ``swing`` (0 hold, 1 buy, 2 sell) or
        ``buy_only`` (1 = buy on an entry row when flat; the env holds ``horizon_bars``)."""
        if mode == "buy_only":
            entry = self.oracle_entry[row] if len(self.oracle_entry) else self.oracle_position[row] > 0
            return int(bool(entry) and not owned)
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

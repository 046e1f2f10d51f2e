"""Market feeds: closed bars (+ funding, mark) for the runner, and the reference price now.

:class:`ReplayFeed` serves a :class:`~envs.core.market.MarketArrays` (the Parquet store's
bars through :func:`app.data.market.load_market`, or a synthetic market) on a fast clock: the
"exchange" of replay mode and of the paper demo. Bars are given exactly as the env sees them
(the env's mark range is the min and max of the bar's mark OHLC; funding is the sum of the
events inside the bar), so a replay and a backtest see the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.trading.paper import Bar
from envs.core.market import CLOSE, OPEN, MarketArrays
from envs.core.spec import Bars


class Feed(Protocol):
    """Closed bars up to now and the price of the bar in progress."""

    def history(self, symbol: str, n_bars: int) -> Bars:
        """The last ``n_bars`` CLOSED bars of ``symbol`` (oldest first), with funding."""

    def last_bar(self, symbol: str) -> Bar:
        """The last closed bar with its mark range and funding (what the paper broker settles)."""

    def reference_price(self, symbol: str) -> float:
        """The price to size orders at now: the open of the bar in progress."""


@dataclass
class ReplayFeed:
    """A market replayed bar by bar: ``now_row[symbol]`` is the last closed bar's row.

    ``advance()`` closes one more bar of every symbol (False when one has no next bar: the
    reference price of the next open must exist, as the env fills there)."""

    market: MarketArrays
    start_row: dict[str, int]

    def __post_init__(self) -> None:
        m = self.market
        self._index = {s: i for i, s in enumerate(m.symbols)}
        mark = m.ohlcv[:, :4] if m.mark_ohlc is None else np.asarray(m.mark_ohlc, np.float64)
        self._mark_low, self._mark_high, self._mark_close = mark.min(axis=1), mark.max(axis=1), mark[:, CLOSE]
        self._funding = np.zeros(len(m.ts_ns)) if m.funding_rate is None else np.asarray(m.funding_rate)
        self.now_row = dict(self.start_row)

    @classmethod
    def from_time(cls, market: MarketArrays, symbols: list[str], start_ts_ns: int) -> ReplayFeed:
        """Start at each symbol's last bar opening at or before ``start_ts_ns``."""
        rows = {}
        for s in symbols:
            i = list(market.symbols).index(s)
            lo, hi = int(market.offsets[i]), int(market.offsets[i + 1])
            k = int(np.searchsorted(market.ts_ns[lo:hi], start_ts_ns, side="right")) - 1
            if k < 0:
                raise ValueError(f"{s}: no bar at or before the replay start")
            rows[s] = lo + k
        return cls(market, rows)

    def _bounds(self, symbol: str) -> tuple[int, int]:
        i = self._index[symbol]
        return int(self.market.offsets[i]), int(self.market.offsets[i + 1])

    def now_ts_ns(self, symbol: str) -> int:
        return int(self.market.ts_ns[self.now_row[symbol]])

    def history(self, symbol: str, n_bars: int) -> Bars:
        lo, _ = self._bounds(symbol)
        r = self.now_row[symbol] + 1
        a = max(lo, r - n_bars)
        m = self.market
        return Bars(m.ts_ns[a:r], m.ohlcv[a:r], self._funding[a:r])

    def last_bar(self, symbol: str) -> Bar:
        r = self.now_row[symbol]
        o = self.market.ohlcv[r]
        return Bar(int(self.market.ts_ns[r]), float(o[OPEN]), float(o[CLOSE]), float(self._mark_low[r]),
                   float(self._mark_high[r]), float(self._mark_close[r]), float(self._funding[r]))

    def reference_price(self, symbol: str) -> float:
        r = self.now_row[symbol] + 1
        _, hi = self._bounds(symbol)
        if r >= hi:
            raise IndexError(f"{symbol}: no bar after the last one")
        return float(self.market.ohlcv[r, OPEN])

    def can_advance(self) -> bool:
        return all(self.now_row[s] + 1 < self._bounds(s)[1] for s in self.now_row)

    def advance(self) -> bool:
        if not self.can_advance():
            return False
        for s in self.now_row:
            self.now_row[s] += 1
        return True

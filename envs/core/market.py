"""Market data as the envs receive it: ragged multi-symbol arrays, never files.

Series of different lengths are stored back to back (CSR layout): symbol ``i`` owns rows
``offsets[i]:offsets[i+1]`` of every per-row array. This holds 1,500 stocks x 50 years in one
contiguous block with no NaN padding, and a symbol's series is a zero-copy view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OHLCV = ("open", "high", "low", "close", "volume")
OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)


@dataclass(frozen=True, eq=False)
class MarketArrays:
    """Bars of many symbols, each sorted by time, concatenated.

    Attributes:
        symbols: one name per series.
        offsets: int64 ``[N+1]``, series ``i`` is rows ``offsets[i]:offsets[i+1]``.
        ts_ns: int64 ``[R]``, bar open time in ns since the epoch (UTC).
        ohlcv: float64 ``[R, 5]``, columns :data:`OHLCV`.
        funding_rate: optional float64 ``[R]``: funding rate settled at that bar's timestamp
            (0 where no funding event falls in the bar). Perpetual futures only.
        mark_ohlc: optional float64 ``[R, 4]``: mark-price OHLC on the same bars (liquidation).
    """

    symbols: tuple[str, ...]
    offsets: np.ndarray
    ts_ns: np.ndarray
    ohlcv: np.ndarray
    funding_rate: np.ndarray | None = None
    mark_ohlc: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_rows = len(self.ts_ns)
        if len(self.offsets) != len(self.symbols) + 1:
            raise ValueError("offsets: need len(symbols) + 1 entries, "
                             f"got {len(self.offsets)} for {len(self.symbols)} symbols")
        if self.offsets[0] != 0 or self.offsets[-1] != n_rows or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets: must start at 0, end at len(ts_ns) and never decrease")
        if self.ohlcv.shape != (n_rows, 5):
            raise ValueError(f"ohlcv: expected shape ({n_rows}, 5), got {self.ohlcv.shape}")
        for name, arr, shape in (("funding_rate", self.funding_rate, (n_rows,)),
                                 ("mark_ohlc", self.mark_ohlc, (n_rows, 4))):
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def require_bars(self, name: str = "market") -> None:
        """ValueError naming what is empty: no symbols, or no bar in any series."""
        if self.n_symbols == 0:
            raise ValueError(f"{name}: empty market (no symbols)")
        if len(self.ts_ns) == 0:
            shown = list(self.symbols[:5]) + (["..."] if self.n_symbols > 5 else [])
            raise ValueError(f"{name}: empty market (0 bars in each of its {self.n_symbols} symbols {shown})")

    def index_of(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(f"symbol {symbol!r} not in market ({self.n_symbols} symbols)") from None

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def series(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ts_ns, ohlcv)`` views of one symbol's bars."""
        rows = self.rows(self.index_of(symbol))
        return self.ts_ns[rows], self.ohlcv[rows]

    def select(self, symbols: list[str] | tuple[str, ...]) -> MarketArrays:
        """A new MarketArrays holding only ``symbols`` (copies), in the given order."""
        idx = [self.index_of(s) for s in symbols]
        parts = [self.rows(i) for i in idx]
        lengths = np.array([p.stop - p.start for p in parts], dtype=np.int64)

        def take(arr: np.ndarray) -> np.ndarray:
            if not parts:
                return arr[:0].copy()
            return np.concatenate([arr[p] for p in parts])

        def take_optional(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else take(arr)

        return MarketArrays(tuple(symbols), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                            take(self.ts_ns), take(self.ohlcv), take_optional(self.funding_rate),
                            take_optional(self.mark_ohlc))

"""From the store to the envs: MarketArrays with funding, mark prices and an index, aligned.

Everything here is causal by construction: a funding event is attached to the bar whose
interval contains it (settled at the end of that bar, as the env documents), and index bars
are joined as of each bar's timestamp, never from later bars.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from app.data.asof import asof_positions, events_in_bars, exact_positions
from app.data.schema import TIMEFRAME_NS, DatasetKey, Kind, ts_ns
from app.data.store import ParquetStore
from envs.core.market import MarketArrays

log = logging.getLogger("raytrade.data")


def funding_on_bars(bar_ts_ns: np.ndarray, bar_ns: int, event_ts_ns: np.ndarray,
                    event_rate: np.ndarray) -> np.ndarray:
    """Sum of funding rates whose event time falls in ``[bar_ts, bar_ts + bar_ns)``, per bar.

    Events outside every bar (before the first, after the last, or inside a data gap) are
    dropped; the caller logs how many.
    """
    out = np.zeros(len(bar_ts_ns), dtype=np.float64)
    if len(bar_ts_ns) == 0 or len(event_ts_ns) == 0:
        return out
    pos = events_in_bars(bar_ts_ns, bar_ns, event_ts_ns)
    inside = pos >= 0
    np.add.at(out, pos[inside], np.asarray(event_rate, dtype=np.float64)[inside])
    return out


def mark_on_bars(bar_ts_ns: np.ndarray, bar_ohlc: np.ndarray, mark_ts_ns: np.ndarray,
                 mark_ohlc: np.ndarray) -> tuple[np.ndarray, int]:
    """Mark-price OHLC on the bars' timestamps; bars without a mark bar fall back to the
    traded price (returned count tells how many), which is what a venue without a separate
    mark price would use."""
    out = bar_ohlc.copy()
    pos = exact_positions(mark_ts_ns, bar_ts_ns)
    hit = pos >= 0
    out[hit] = mark_ohlc[pos[hit]]
    return out, int((~hit).sum())


def load_market(store: ParquetStore, key: DatasetKey, symbols: Iterable[str] | None = None, *,
                with_funding: bool = True, with_mark: bool = True) -> MarketArrays:
    """Bars of ``key`` as MarketArrays; for swaps, funding and mark prices joined on the bars."""
    market = store.load_arrays(key, symbols)
    if key.market_type.value != "swap" or not (with_funding or with_mark):
        return market
    bar_ns = TIMEFRAME_NS[key.timeframe]
    funding = np.zeros(len(market.ts_ns)) if with_funding else None
    mark = market.ohlcv[:, :4].copy() if with_mark else None
    fund_key = DatasetKey(key.source, key.market_type, "events", Kind.FUNDING)
    mark_key = DatasetKey(key.source, key.market_type, key.timeframe, Kind.MARK)
    have_funding, have_mark = set(store.symbols(fund_key)), set(store.symbols(mark_key))
    for i, symbol in enumerate(market.symbols):
        rows = market.rows(i)
        bar_ts = market.ts_ns[rows]
        if funding is not None and symbol in have_funding:
            events = store.read(fund_key, [symbol])
            funding[rows] = funding_on_bars(bar_ts, bar_ns, ts_ns(events["timestamp"]),
                                            events["funding_rate"].to_numpy())
        elif funding is not None:
            log.warning("%s: no funding rates stored%s; funding is 0 for this symbol", symbol,
                        _elsewhere(store, fund_key, symbol))
        if mark is not None and symbol in have_mark:
            marks = store.read(mark_key, [symbol])
            mark[rows], n_fallback = mark_on_bars(bar_ts, market.ohlcv[rows, :4], ts_ns(marks["timestamp"]),
                                                  marks[["open", "high", "low", "close"]].to_numpy())
            if n_fallback:
                log.info("%s: %d bar(s) without a mark price use the traded price", symbol, n_fallback)
        elif mark is not None:
            log.warning("%s: no %s mark prices stored%s; liquidation uses the traded price", symbol,
                        key.timeframe, _elsewhere(store, mark_key, symbol))
    return MarketArrays(market.symbols, market.offsets, market.ts_ns, market.ohlcv, funding, mark)


def _elsewhere(store: ParquetStore, key: DatasetKey, symbol: str) -> str:
    """Explain a miss caused by data stored under another timeframe (e.g. mark prices pulled
    with ``--timeframe 4h`` for 1h bars, or funding written under ``1h`` by an older raytrade)."""
    others = [tf for tf in store.timeframes_holding(key.kind, key.source, key.market_type, symbol)
              if tf != key.timeframe]
    if not others:
        return ""
    return (f" under timeframe {key.timeframe!r} ({key.kind.value} for it found under {others}: "
            f"pull or import it again with --timeframe {key.timeframe})")


def align_index(market: MarketArrays, index_ts_ns: np.ndarray, index_ohlcv: np.ndarray) -> np.ndarray:
    """Index OHLCV as of each bar of ``market`` (the last index bar at or before it), ``[R, 5]``.

    Bars before the index's first bar get NaN; callers decide whether to cut them.
    """
    pos = asof_positions(index_ts_ns, market.ts_ns)
    out = np.full((len(market.ts_ns), index_ohlcv.shape[1]), np.nan)
    ok = pos >= 0
    out[ok] = index_ohlcv[pos[ok]]
    return out

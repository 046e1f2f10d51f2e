"""The one as-of join: never a value stamped after the bar, and every join built on it agrees."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from app.data.asof import asof_positions, events_in_bars, exact_positions
from app.data.market import align_index, funding_on_bars, mark_on_bars
from app.data.resample import align_to_index
from envs.core.market import MarketArrays
from envs.core.resample import align_to_calendar

DAY = 86_400 * 10**9
stamps = st.lists(st.integers(0, 200), min_size=0, max_size=40, unique=True).map(
    lambda xs: np.array(sorted(xs), dtype=np.int64))


@settings(max_examples=200, deadline=None)
@given(ref=stamps, query=st.lists(st.integers(-10, 210), max_size=40).map(np.array),
       staleness=st.none() | st.integers(0, 30))
def test_asof_is_the_last_reference_at_or_before_never_after(ref, query, staleness) -> None:
    pos = asof_positions(ref, query, max_staleness_ns=staleness)
    for q, p in zip(query, pos, strict=True):
        before = ref[ref <= q]
        if staleness is not None:
            before = before[q - before <= staleness]
        if len(before):
            assert ref[p] == before[-1] <= q  # the latest at or before, so nothing after q
        else:
            assert p == -1


@settings(max_examples=100, deadline=None)
@given(bars=stamps.filter(lambda b: len(b) > 0), events=stamps, bar_ns=st.integers(1, 10))
def test_an_event_lands_only_in_the_bar_that_contains_it(bars, events, bar_ns) -> None:
    pos = events_in_bars(bars, bar_ns, events)
    for e, p in zip(events, pos, strict=True):
        holders = np.flatnonzero((bars <= e) & (e < bars + bar_ns))
        assert p == (holders[-1] if len(holders) else -1)
        if p >= 0:
            assert e < bars[p] + bar_ns  # settled by that bar's close, never later
    rates = np.arange(1, len(events) + 1, dtype=np.float64)
    got = funding_on_bars(bars, bar_ns, events, rates)
    assert got.sum() == rates[pos >= 0].sum()


def test_exact_positions_and_mark_fallback() -> None:
    assert list(exact_positions(np.array([10, 20, 30]), np.array([5, 10, 25, 30]))) == [-1, 0, -1, 2]
    traded = np.ones((3, 4))
    out, n = mark_on_bars(np.array([10, 20, 30]), traded, np.array([20]), np.full((1, 4), 7.0))
    assert n == 2 and out[1].tolist() == [7.0] * 4 and out[0].tolist() == [1.0] * 4


@settings(max_examples=60, deadline=None)
@given(bar_days=stamps.filter(lambda b: len(b) > 0), index_days=stamps.filter(lambda b: len(b) > 0))
def test_the_data_layer_joins_and_the_envs_join_agree(bar_days, index_days) -> None:
    bar_ts, index_ts = bar_days * DAY, index_days * DAY
    index_ohlcv = np.column_stack([index_days + k for k in (0.1, 0.4, 0.0, 0.2, 1000.0)]).astype(float)
    market = MarketArrays(("AAA",), np.array([0, len(bar_ts)]), bar_ts,
                          np.ones((len(bar_ts), 5)))
    numpy_join = align_index(market, index_ts, index_ohlcv)
    env_ohlc, covered = align_to_calendar(bar_ts, index_ts, index_ohlcv)
    np.testing.assert_array_equal(covered, ~np.isnan(numpy_join[:, 0]))
    np.testing.assert_array_equal(env_ohlc[covered, 3], numpy_join[covered, 3])  # the close
    frame = lambda ts, sym, ohlcv: pd.DataFrame({  # noqa: E731
        "timestamp": pd.to_datetime(ts, unit="ns", utc=True), "open": ohlcv[:, 0],
        "high": ohlcv[:, 1], "low": ohlcv[:, 2], "close": ohlcv[:, 3], "volume": ohlcv[:, 4],
        "symbol": sym})
    pandas_join = align_to_index(frame(bar_ts, "AAA", market.ohlcv), frame(index_ts, "^I", index_ohlcv))
    np.testing.assert_array_equal(pandas_join.frame["index_close"].to_numpy(), numpy_join[:, 3])

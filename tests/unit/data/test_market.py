"""From the store to env arrays: funding and mark prices land on the right bars, causally."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.data.market import align_index, funding_on_bars, load_market, mark_on_bars
from app.data.schema import HOUR_NS, DatasetKey, Kind
from app.data.store import ParquetStore
from tests.unit.data.conftest import make_bars

T0 = pd.Timestamp("2024-01-01", tz="UTC").value


def test_funding_event_lands_on_the_bar_whose_hour_contains_it():
    bars = T0 + HOUR_NS * np.arange(10)
    events = np.array([T0 + 0 * HOUR_NS, T0 + 8 * HOUR_NS, T0 + 8 * HOUR_NS + 1, T0 + 30 * HOUR_NS])
    rates = np.array([1e-4, -2e-4, 5e-5, 9.0])
    got = funding_on_bars(bars, HOUR_NS, events, rates)
    want = np.zeros(10)
    want[0], want[8] = 1e-4, -2e-4 + 5e-5  # the event past the last bar is dropped
    np.testing.assert_allclose(got, want)


def test_funding_inside_a_data_gap_is_not_moved_to_another_bar():
    bars = T0 + HOUR_NS * np.array([0, 1, 5])
    got = funding_on_bars(bars, HOUR_NS, np.array([T0 + 3 * HOUR_NS]), np.array([1e-4]))
    assert not got.any()


def test_mark_price_falls_back_to_traded_price_where_missing():
    bars = T0 + HOUR_NS * np.arange(4)
    traded = np.arange(16, dtype=float).reshape(4, 4) + 100
    marks = np.full((2, 4), 7.0)
    got, n_fallback = mark_on_bars(bars, traded, bars[[1, 3]], marks)
    assert n_fallback == 2
    np.testing.assert_array_equal(got[[1, 3]], marks)
    np.testing.assert_array_equal(got[[0, 2]], traded[[0, 2]])


def test_index_alignment_never_uses_a_later_index_bar():
    market_bars = make_bars(n=5, start="2021-01-04")
    from envs.core.market import MarketArrays

    ts = market_bars["timestamp"].astype("int64").to_numpy()
    market = MarketArrays(("A",), np.array([0, 5]), ts, market_bars[["open", "high", "low", "close", "volume"]].to_numpy())
    index_ts = ts[[0, 2, 4]] + 1  # index bars stamped just after
    index_ohlcv = np.arange(15, dtype=float).reshape(3, 5)
    got = align_index(market, index_ts, index_ohlcv)
    assert np.isnan(got[0]).all()
    np.testing.assert_array_equal(got[1], index_ohlcv[0])
    np.testing.assert_array_equal(got[3], index_ohlcv[1])


@pytest.fixture
def swap_store(tmp_path) -> ParquetStore:
    store = ParquetStore(tmp_path)
    bars = make_bars(n=24, symbol="BTC/USDT:USDT", start="2024-01-01", freq="1h")
    store.write(DatasetKey("ex", "swap", "1h"), bars)
    funding = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 08:00",
                                                         "2024-01-01 16:00"], utc=True),
                            "symbol": "BTC/USDT:USDT", "funding_rate": [1e-4, 2e-4, -3e-4]})
    store.write(DatasetKey("ex", "swap", "events", Kind.FUNDING), funding)
    mark = bars.drop(columns=["volume"]).iloc[:20].copy()
    mark[["open", "high", "low", "close"]] *= 1.001
    store.write(DatasetKey("ex", "swap", "1h", Kind.MARK), mark)
    return store


def test_load_market_joins_funding_and_mark(swap_store):
    market = load_market(swap_store, DatasetKey("ex", "swap", "1h"))
    assert market.funding_rate is not None and market.mark_ohlc is not None
    assert list(np.flatnonzero(market.funding_rate)) == [0, 8, 16]
    np.testing.assert_allclose(market.mark_ohlc[:20], market.ohlcv[:20, :4] * 1.001)
    np.testing.assert_array_equal(market.mark_ohlc[20:], market.ohlcv[20:, :4])

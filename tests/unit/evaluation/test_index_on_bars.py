"""The backtest's index line: the one as-of join, no value from after a bar, flat before it exists."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from app.evaluation.pipeline import _index_on


def _index(ts, closes):
    ohlcv = np.column_stack([closes, closes, closes, closes, np.ones(len(closes))]).astype(float)
    return SimpleNamespace(ts_ns=np.asarray(ts, np.int64), ohlcv=ohlcv)


def test_each_bar_sees_the_last_index_close_at_or_before_it():
    index = _index([10, 20, 30], [100.0, 110.0, 121.0])
    got = _index_on(index, np.array([10, 15, 20, 25, 30, 35]), fallback=np.zeros(6))
    np.testing.assert_array_equal(got, [100, 100, 110, 110, 121, 121])


def test_before_the_index_exists_its_returns_are_zero_and_later_closes_never_leak():
    bars = np.array([1, 2, 3, 10, 20])
    a = _index_on(_index([10, 20], [100.0, 110.0]), bars, fallback=np.zeros(5))
    b = _index_on(_index([10, 20], [100.0, 999.0]), bars, fallback=np.zeros(5))  # a different future
    np.testing.assert_array_equal(a[:4], b[:4])  # bars up to ts 10 never see the close of ts 20
    returns = a[1:] / a[:-1] - 1.0
    np.testing.assert_array_equal(returns[:3], 0.0)
    assert returns[3] == pytest.approx(0.1)


def test_no_index_falls_back_to_the_symbols_own_price():
    own = np.array([5.0, 6.0])
    np.testing.assert_array_equal(_index_on(None, np.array([1, 2]), own), own)

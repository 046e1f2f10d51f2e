"""Causal partial weekly/monthly bars and window rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core.resample import (
    NS_PER_DAY,
    align_to_calendar,
    partial_bars,
    period_ids,
    period_window_rows,
    window_rows,
)


def _ts(dates: list[str]) -> np.ndarray:
    return np.array(dates, dtype="datetime64[ns]").astype(np.int64)


def test_period_ids_week_starts_monday_and_months_follow_the_calendar():
    ts = _ts(["2024-01-28", "2024-01-29", "2024-02-04", "2024-02-05", "2024-02-29", "2024-03-01"])
    weeks = period_ids(ts, "W")  # Sun, Mon, Sun, Mon, Thu, Fri
    assert weeks[0] != weeks[1] and weeks[1] == weeks[2] and weeks[2] != weeks[3] and weeks[4] == weeks[5]
    months = period_ids(ts, "M")
    assert list(np.diff(months)) == [0, 1, 0, 0, 1]
    assert list(period_ids(ts, "D") - ts // NS_PER_DAY) == [0] * 6


def _naive_partial(ts, ohlcv, offsets, period):
    ids = period_ids(ts, period)
    out = np.empty_like(ohlcv)
    for s in range(len(offsets) - 1):
        for r in range(offsets[s], offsets[s + 1]):
            first = r
            while first > offsets[s] and ids[first - 1] == ids[r]:
                first -= 1
            seg = ohlcv[first:r + 1]
            out[r] = [seg[0, 0], seg[:, 1].max(), seg[:, 2].min(), seg[-1, 3], seg[:, 4].sum()]
    return out


@st.composite
def ragged_series(draw):
    lengths = draw(st.lists(st.integers(1, 40), min_size=1, max_size=3))
    ts, rows = [], []
    for n in lengths:
        gaps = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))  # gap days, weekends
        start = draw(st.integers(19_000, 19_400))
        ts.append((start + np.cumsum(gaps)) * NS_PER_DAY)
        px = draw(st.lists(st.floats(1.0, 100.0), min_size=4 * n, max_size=4 * n))
        vol = draw(st.lists(st.sampled_from([0.0, 1.0, 250.0]), min_size=n, max_size=n))
        rows.append(np.column_stack([np.array(px).reshape(n, 4), vol]))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.concatenate(ts).astype(np.int64), np.concatenate(rows), offsets


@given(ragged_series(), st.sampled_from(["D", "W", "M"]))
@settings(max_examples=40, deadline=None)
def test_partial_bars_match_a_naive_causal_loop(data, period):
    ts, ohlcv, offsets = data
    bars = partial_bars(ts, ohlcv, offsets, period)
    np.testing.assert_array_equal(bars.ohlcv, _naive_partial(ts, ohlcv, offsets, period))
    # completed bars are partial bars at the period's last row, and never cross a series
    assert np.all(np.diff(bars.group) >= 0)
    rows = np.arange(len(ts))
    src = period_window_rows(rows, bars, 6)
    assert np.all(src <= rows[:, None])                # never a later row
    assert np.all(src[:, -1] == rows)                  # the newest slot is the partial bar
    series_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    assert np.all(series_of[src] == series_of[:, None])


def test_window_rows_edge_pad_with_the_oldest_bar_of_the_series():
    rows = np.array([0, 1, 5, 6])
    start = np.array([0, 0, 0, 0, 0, 5, 5])
    np.testing.assert_array_equal(window_rows(rows, start, 3), [[0, 0, 0], [0, 0, 1], [5, 5, 5], [5, 5, 6]])


def test_align_to_calendar_is_causal_and_flat_where_missing():
    ref_ts = np.array([10, 20, 40])
    ref = np.array([[1.0, 2.0, 0.5, 1.5], [2.0, 3.0, 1.5, 2.5], [4.0, 5.0, 3.5, 4.5]])
    out, covered = align_to_calendar(np.array([5, 10, 30, 40]), ref_ts, ref)
    assert covered.tolist() == [False, True, True, True]
    np.testing.assert_array_equal(out[1], ref[0])
    np.testing.assert_array_equal(out[2], [2.5] * 4)       # no bar at 30: flat at the last close
    np.testing.assert_array_equal(out[0], [1.0] * 4)       # before the start: not observable

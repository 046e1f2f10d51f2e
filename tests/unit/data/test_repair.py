"""Repairs are explicit: each one is recorded and logged, and nothing is dropped silently."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from app.data.repair import RepairPolicy, find_redenominations, repair
from app.data.validate import validate
from tests.unit.data.conftest import make_bars


def test_clean_data_needs_no_repair(bars):
    fixed, log = repair(bars)
    pd.testing.assert_frame_equal(fixed, bars)
    assert len(log) == 0


def test_inconsistent_ohlc_is_clipped_and_logged(bars, caplog):
    bars.loc[2, "high"] = bars.loc[2, "low"] * 0.5  # high < low
    bars.loc[5, "open"] = bars.loc[5, "high"] * 1.2  # open above high
    with caplog.at_level(logging.INFO, logger="raytrade.data"):
        fixed, log = repair(bars)
    assert validate(fixed).ok
    row = fixed.loc[5]
    assert row["high"] == row["open"] == bars.loc[5, "open"]
    assert [(a.action, a.n_rows) for a in log.actions] == [("clip_ohlc", 2)]
    assert "clip_ohlc" in caplog.text


@pytest.mark.parametrize(("col", "value", "action"), [("close", np.nan, "drop_non_finite"),
                                                       ("low", -3.0, "drop_non_positive")])
def test_bad_rows_are_dropped_with_a_record(bars, col, value, action):
    bars.loc[4, col] = value
    fixed, log = repair(bars)
    assert len(fixed) == len(bars) - 1
    assert [(a.action, a.symbol, a.n_rows) for a in log.actions] == [(action, "AAA", 1)]


def test_duplicates_keep_the_last_row_and_sorting_is_recorded(bars):
    dup = bars.iloc[[3]].assign(close=bars.loc[3, "close"] * 1.001)
    messy = pd.concat([bars.iloc[::-1], dup], ignore_index=True)
    fixed, log = repair(messy)
    assert len(fixed) == len(bars)
    assert fixed["timestamp"].is_monotonic_increasing
    assert fixed.loc[3, "close"] == dup["close"].iloc[0]
    assert {a.action for a in log.actions} == {"sort", "drop_duplicates"}


def _listing(symbol: str, start: str, n: int, spike: float) -> pd.DataFrame:
    df = make_bars(n=n, symbol=symbol, start=start, freq="1h")
    df.loc[:2, ["open", "high", "low", "close"]] *= spike
    return df


def test_listing_hours_dropped_only_for_symbols_listed_inside_the_data():
    old = make_bars(n=72, symbol="OLD", start="2021-01-01", freq="1h")
    new = _listing("NEW", "2021-01-02", 48, spike=30.0)
    fixed, log = repair(pd.concat([new, old]), policy=RepairPolicy(listing_hours_to_drop=24))
    assert (fixed["symbol"] == "OLD").sum() == 72
    assert (fixed["symbol"] == "NEW").sum() == 24
    assert [(a.action, a.symbol, a.n_rows) for a in log.actions] == [("drop_listing_hours", "NEW", 24)]


def _redenominated(ratio: float, at: int = 40, n: int = 80) -> pd.DataFrame:
    df = make_bars(n=n, symbol="COCOS/USDT", freq="1h", start="2021-01-20")
    df.loc[at:, ["open", "high", "low", "close"]] *= ratio
    df.loc[at:, "volume"] /= ratio
    return df


@pytest.mark.parametrize("ratio", [1000.0, 0.1])
def test_redenomination_is_found_with_its_power_of_ten(ratio):
    assert find_redenominations(_redenominated(ratio), jump_ratio=8.0) == [("COCOS/USDT", 40, ratio)]


def test_redenomination_adjust_makes_the_series_continuous():
    df = _redenominated(1000.0)
    fixed, log = repair(df, policy=RepairPolicy(redenomination="adjust"))
    returns = np.abs(np.diff(np.log(fixed["close"].to_numpy())))
    assert returns.max() < 0.1
    np.testing.assert_allclose(fixed.loc[40:, "close"], df.loc[40:, "close"])
    assert log.actions[0].action == "redenomination_adjust" and log.actions[0].n_rows == 40


def test_redenomination_cut_keeps_only_the_new_unit():
    fixed, log = repair(_redenominated(0.1), policy=RepairPolicy(redenomination="cut"))
    assert len(fixed) == 40 and log.actions[0].action == "redenomination_cut"


def test_a_one_bar_wick_is_not_a_redenomination():
    df = make_bars(n=60, freq="1h")
    df.loc[30, ["open", "high", "close"]] *= 20
    assert find_redenominations(df, jump_ratio=8.0) == []

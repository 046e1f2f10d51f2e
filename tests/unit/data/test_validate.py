"""Every fault the data layer knows, planted in a real file, is reported with file, symbol and row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.data.schema import Kind, ts_ns
from app.data.sources.file_source import FileSource
from app.data.validate import validate
from app.errors import DataValidationError
from tests.unit.data.conftest import make_bars


def _set(col: str, row: int, value: float):
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[row, col] = value
        return df
    return mutate


def _swap_rows(a: int, b: int):
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        idx = list(range(len(df)))
        idx[a], idx[b] = idx[b], idx[a]
        return df.iloc[idx].reset_index(drop=True)
    return mutate


def _duplicate_row(row: int):
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([df.iloc[: row + 1], df.iloc[[row]], df.iloc[row + 1:]], ignore_index=True)
    return mutate


# (name, mutation, fault code, row reported)
SCENARIOS = [
    ("nan close", _set("close", 3, np.nan), "non_finite", 3),
    ("inf high", _set("high", 4, np.inf), "non_finite", 4),
    ("zero price", _set("low", 2, 0.0), "non_positive_price", 2),
    ("negative open", _set("open", 5, -1.0), "non_positive_price", 5),
    ("high below low", _set("high", 6, 1.0), "high_below_low", 6),
    ("open above high", _set("open", 7, 1e6), "open_outside_range", 7),
    ("close below low", _set("close", 8, 1e-3), "close_outside_range", 8),
    ("duplicate timestamp", _duplicate_row(4), "duplicate_timestamp", 5),
    ("unsorted timestamps", _swap_rows(2, 3), "unsorted_timestamp", 3),
    ("zero volume", _set("volume", 1, 0.0), "zero_volume", 1),
]


@pytest.mark.parametrize(("name", "mutate", "code", "row"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_each_fault_in_a_file_is_reported_with_file_symbol_and_row(tmp_path, name, mutate, code, row):
    path = tmp_path / "bars.parquet"
    mutate(make_bars(n=10, symbol="XYZ")).to_parquet(path)
    report = validate(FileSource(path).read(), file=str(path))
    hits = [f for f in report.faults if f.code == code]
    assert len(hits) == 1, report.summary()
    assert (hits[0].file, hits[0].symbol, hits[0].row) == (str(path), "XYZ", row)
    assert str(path) in str(hits[0]) and "XYZ" in str(hits[0])


def test_clean_bars_have_no_fault(bars):
    report = validate(bars, timeframe="1d")
    assert report.faults == [] and report.ok


def test_gap_against_regular_timeframe_counts_missing_bars():
    df = make_bars(n=48, freq="1h", symbol="BTC/USDT")
    df = df.drop(index=[10, 11, 12]).reset_index(drop=True)
    report = validate(df, timeframe="1h")
    gaps = [f for f in report.faults if f.code == "gap"]
    assert len(gaps) == 1 and "3 1h bar(s) missing" in gaps[0].message
    assert gaps[0].timestamp == pd.Timestamp("2021-01-04 10:00", tz="UTC")
    assert report.ok  # a gap is a warning: real markets halt


def test_gap_against_trading_calendar_names_each_missing_day(bars):
    calendar = ts_ns(bars["timestamp"])
    report = validate(bars.drop(index=[4, 6]), calendar_ts_ns=calendar)
    missing = sorted(f.timestamp for f in report.faults if f.code == "gap")
    assert missing == [bars["timestamp"][4], bars["timestamp"][6]]


def test_wrong_columns_are_a_schema_error_naming_the_file(tmp_path, bars):
    path = tmp_path / "bad.csv"
    bars.drop(columns=["volume"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="bad.csv"):
        FileSource(path).read()
    report = validate(bars.drop(columns=["volume"]), file="bad.csv")
    assert [f.code for f in report.errors] == ["schema"] and "volume" in report.errors[0].message


def test_wrong_dtype_is_reported(bars):
    bars["close"] = bars["close"].astype(str)
    report = validate(bars, file="f")
    assert any(f.code == "schema" and "close" in f.message for f in report.errors)


def test_naive_timestamps_are_refused(bars):
    bars["timestamp"] = bars["timestamp"].dt.tz_localize(None)
    report = validate(bars, file="naive.parquet")
    assert report.errors[0].code == "schema" and "time zone" in report.errors[0].message


def test_empty_input_is_an_error():
    report = validate(make_bars().iloc[:0], file="empty.parquet")
    assert [f.code for f in report.errors] == ["empty"]
    with pytest.raises(DataValidationError, match="empty.parquet"):
        report.raise_for_errors()


def test_funding_rates_validate_without_price_checks():
    funding = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC"),
                            "symbol": "BTC/USDT:USDT", "funding_rate": [0.0001, -0.0002, np.nan]})
    report = validate(funding, Kind.FUNDING, file="f")
    assert [(f.code, f.row) for f in report.faults] == [("non_finite", 2)]


def test_every_fault_is_kept_not_just_the_first():
    df = make_bars(n=30)
    df.loc[[3, 9, 20], "close"] = np.nan
    df.loc[[5, 25], "volume"] = 0
    report = validate(df, file="f")
    assert report.counts() == {"non_finite": 3, "zero_volume": 2}
    with pytest.raises(DataValidationError) as err:
        report.raise_for_errors()
    assert len(err.value.faults) == 3

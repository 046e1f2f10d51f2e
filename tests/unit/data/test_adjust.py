"""Corporate-action columns of imported files are applied (documented rules) or warned about."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from app.data.sources.file_source import FileSource
from app.data.validate import validate

DAYS = pd.bdate_range("2021-03-01", periods=6, tz="UTC")
# A raw 2:1 split effective 2021-03-04 (the 4th row): prices halve, volume doubles.
RAW = pd.DataFrame({
    "Date": DAYS, "Open": [100.0, 102, 104, 52, 53, 54], "High": [103.0, 105, 106, 54, 55, 56],
    "Low": [99.0, 101, 103, 51, 52, 53], "Close": [102.0, 104, 105, 53, 54, 55],
    "Volume": [1000.0, 1100, 1200, 2400, 2500, 2600], "Symbol": "AAA",
})


def read(tmp_path, frame: pd.DataFrame, **kw) -> pd.DataFrame:
    path = tmp_path / "aaa.parquet"
    frame.to_parquet(path)
    return FileSource(path, **kw).read()


def test_adj_close_adjusts_every_price_and_volume_inversely(tmp_path, caplog) -> None:
    adj = np.array([51.0, 52, 52.5, 53, 54, 55])  # Yahoo-style: split (and dividends) applied
    with caplog.at_level(logging.WARNING, logger="raytrade.data"):
        got = read(tmp_path, RAW.assign(**{"Adj Close": adj}))
    factor = adj / RAW["Close"].to_numpy()
    np.testing.assert_allclose(got["close"], adj)
    np.testing.assert_allclose(got["open"], RAW["Open"] * factor)
    np.testing.assert_allclose(got["low"], RAW["Low"] * factor)
    np.testing.assert_allclose(got["volume"], RAW["Volume"] / factor)
    np.testing.assert_allclose(got["close"] * got["volume"], RAW["Close"] * RAW["Volume"])
    assert "adjusted by adj_close/close" in caplog.text
    assert not [f for f in validate(got, market="stock").faults if f.code == "probable_split"]


def test_split_coefficient_divides_earlier_prices(tmp_path) -> None:
    got = read(tmp_path, RAW.assign(split_coefficient=[1.0, 1, 1, 2, 1, 1]))
    np.testing.assert_allclose(got["close"], [51.0, 52, 52.5, 53, 54, 55])
    np.testing.assert_allclose(got["volume"], [2000.0, 2200, 2400, 2400, 2500, 2600])


def test_dividends_alone_are_not_applied_but_said(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="raytrade.data"):
        got = read(tmp_path, RAW.assign(dividend=[0, 0, 0.5, 0, 0, 0]))
    np.testing.assert_allclose(got["close"], RAW["Close"])
    assert "price-return" in caplog.text


def test_adjustment_off_warns_that_columns_are_ignored(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="raytrade.data"):
        got = read(tmp_path, RAW.assign(adj_close=RAW["Close"] / 2), adjust=False)
    np.testing.assert_allclose(got["close"], RAW["Close"])
    assert "['adj_close'] ignored" in caplog.text


def test_the_raw_split_without_action_columns_is_a_probable_split(tmp_path) -> None:
    report = validate(read(tmp_path, RAW), market="stock", timeframe="1d", file="aaa")
    faults = [(f.symbol, f.timestamp) for f in report.faults if f.code == "probable_split"]
    assert faults == [("AAA", DAYS[3])]


@pytest.mark.parametrize("name", ["Adj Close", "adjusted_close", "adj_close"])
def test_vendor_spellings_of_adj_close(tmp_path, name) -> None:
    got = read(tmp_path, RAW.assign(**{name: RAW["Close"] / 2}))
    np.testing.assert_allclose(got["close"], RAW["Close"] / 2)

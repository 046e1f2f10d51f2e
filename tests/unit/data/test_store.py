"""Round trips through the real Parquet store: appends, atomicity, catalog, corruption."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.data.schema import DatasetKey, Kind
from app.data.store import ParquetStore, filename_to_symbol, symbol_to_filename
from app.errors import CorruptFileError, DataValidationError, StoreError
from tests.unit.data.conftest import make_bars

KEY = DatasetKey("test", "stock", "1d")


@pytest.fixture
def store(tmp_path) -> ParquetStore:
    return ParquetStore(tmp_path / "store")


def test_round_trip_is_exact(store):
    frame = pd.concat([make_bars(symbol="AAA"), make_bars(symbol="BBB", seed=1)], ignore_index=True)
    assert store.write(KEY, frame) == {"AAA": 10, "BBB": 10}
    pd.testing.assert_frame_equal(store.read(KEY), frame)
    assert store.symbols(KEY) == ["AAA", "BBB"]
    assert store.keys() == [KEY]


def test_layout_is_kind_source_market_timeframe_symbol(store):
    store.write(DatasetKey("binanceusdm", "swap", "1h"), make_bars(symbol="BTC/USDT:USDT", freq="1h"))
    path = store.root / "bars" / "binanceusdm" / "swap" / "1h" / "BTC%2FUSDT%3AUSDT.parquet"
    assert path.exists()


def test_append_deduplicates_new_rows_win_and_sorts(store):
    first = make_bars(n=10)
    store.write(KEY, first.iloc[:6])
    update = first.iloc[4:].copy()
    update.loc[4, "close"] = update.loc[4, "high"]  # a revised bar
    store.write(KEY, update.iloc[::-1])
    got = store.read(KEY)
    assert len(got) == 10 and got["timestamp"].is_monotonic_increasing
    assert got.loc[4, "close"] == update.loc[4, "close"]


def test_replace_mode_overwrites_only_the_symbols_given(store):
    store.write(KEY, pd.concat([make_bars(symbol="AAA"), make_bars(symbol="BBB")]))
    store.write(KEY, make_bars(n=3, symbol="AAA"), mode="replace")
    counts = store.read(KEY).groupby("symbol").size().to_dict()
    assert counts == {"AAA": 3, "BBB": 10}


def test_read_filters_by_time_start_inclusive_end_exclusive(store):
    store.write(KEY, make_bars(n=10))
    got = store.read(KEY, start="2021-01-06", end=pd.Timestamp("2021-01-09", tz="UTC"))
    assert list(got["timestamp"].dt.day) == [6, 7, 8]


def test_invalid_rows_are_refused_and_nothing_is_written(store):
    bad = make_bars(symbol="BBB")
    bad.loc[3, "high"] = 0.5 * bad.loc[3, "low"]
    with pytest.raises(DataValidationError, match="high_below_low"):
        store.write(KEY, pd.concat([make_bars(symbol="AAA"), bad]))
    assert not store.root.exists()  # nothing written, not even the store directory


def test_a_crash_mid_write_leaves_the_old_file_and_no_debris(store, monkeypatch):
    store.write(KEY, make_bars(n=5))
    before = store.read(KEY)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write(KEY, make_bars(n=10))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read(KEY), before)
    assert [p.name for p in store.dataset_dir(KEY).iterdir()] == ["AAA.parquet"]


def test_corrupt_file_error_names_the_file(store):
    store.write(KEY, make_bars())
    path = store.path_for(KEY, "AAA")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CorruptFileError, match="AAA.parquet"):
        store.read(KEY)
    with pytest.raises(CorruptFileError, match="AAA.parquet"):
        store.catalog()


def test_unknown_symbol_is_a_clear_error(store):
    store.write(KEY, make_bars())
    with pytest.raises(StoreError, match="ZZZ"):
        store.read(KEY, ["ZZZ"])


def test_catalog_from_footers(store):
    store.write(KEY, pd.concat([make_bars(n=7, symbol="AAA"), make_bars(n=3, symbol="BBB", start="2022-02-01")]))
    cat = store.catalog_frame().set_index("symbol")
    assert cat.loc["AAA", "rows"] == 7 and cat.loc["BBB", "rows"] == 3
    assert cat.loc["BBB", "start"] == pd.Timestamp("2022-02-01", tz="UTC")
    assert cat.loc["BBB", "end"] == pd.Timestamp("2022-02-03", tz="UTC")


def test_load_arrays_matches_read(store):
    frames = [make_bars(n=n, symbol=s, seed=n) for s, n in [("CCC", 4), ("AAA", 9), ("BBB", 1)]]
    store.write(KEY, pd.concat(frames))
    market = store.load_arrays(KEY, ["CCC", "AAA", "BBB"])
    assert market.symbols == ("CCC", "AAA", "BBB")
    assert list(market.lengths) == [4, 9, 1]
    for frame in frames:
        ts, ohlcv = market.series(frame["symbol"][0])
        np.testing.assert_array_equal(ts, frame["timestamp"].astype("int64").to_numpy())
        np.testing.assert_array_equal(ohlcv, frame[["open", "high", "low", "close", "volume"]].to_numpy())


def test_load_arrays_refuses_other_kinds(store):
    with pytest.raises(StoreError):
        store.load_arrays(DatasetKey("x", "swap", "events", Kind.FUNDING))


@given(st.text(min_size=1, max_size=30).filter(lambda s: s not in (".", "..")))
def test_symbol_filenames_round_trip(symbol):
    name = symbol_to_filename(symbol)
    assert "/" not in name and filename_to_symbol(name) == symbol

"""FileSource: Parquet and CSV import, symbols, ranges, and faults that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.data.schema import COLUMNS, Kind, canonicalize
from app.data.sources import FileSource, make_source
from app.errors import CorruptFileError, DataValidationError, SourceError


def bars(symbol: str = "AAPL", n: int = 5, start: str = "2014-05-01", freq: str = "1D") -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    close = 100.0 + np.arange(n)
    return canonicalize(pd.DataFrame({
        "timestamp": ts, "open": close - 0.5, "high": close + 1.0, "low": close - 1.0,
        "close": close, "volume": np.arange(n) * 1000.0, "symbol": symbol}), Kind.BARS)


def test_csv_round_trip(tmp_path: Path) -> None:
    original = pd.concat([bars("AAPL"), bars("MSFT")], ignore_index=True)
    path = tmp_path / "stocks.csv"
    original.to_csv(path, index=False)
    source = FileSource(path)
    pd.testing.assert_frame_equal(source.read(), original)
    assert source.symbols() == ["AAPL", "MSFT"]
    got = source.fetch_bars("MSFT", "1d", "2014-05-02", "2014-05-04")
    pd.testing.assert_frame_equal(got, original.iloc[6:8].reset_index(drop=True))


def test_parquet_many_symbols_reads_only_the_one_asked(tmp_path: Path) -> None:
    original = pd.concat([bars("BTC/USDT:USDT", 48, "2021-05-18", "1h"),
                          bars("ETH/USDT:USDT", 48, "2021-05-18", "1h")], ignore_index=True)
    path = tmp_path / "perp.parquet"
    original.to_parquet(path)
    df = make_source("file", paths=path, timeframe="1h").fetch_bars(
        "ETH/USDT:USDT", "1h", "2021-05-18 10:00", "2021-05-18 12:00")
    assert list(df["timestamp"].dt.hour) == [10, 11] and (df["symbol"] == "ETH/USDT:USDT").all()
    assert list(df.columns) == list(COLUMNS[Kind.BARS])


def test_symbol_from_caller_stem_or_request(tmp_path: Path) -> None:
    frame = bars("X").drop(columns="symbol").rename(columns={"timestamp": "Date", "close": "Close"})
    frame.to_csv(tmp_path / "SPY.csv", index=False)
    frame.to_csv(tmp_path / "QQQ.csv", index=False)
    assert FileSource(tmp_path, symbol_from_stem=True).symbols() == ["QQQ", "SPY"]
    assert FileSource(tmp_path / "SPY.csv", symbol="SPY").symbols() == ["SPY"]
    one = FileSource(tmp_path / "QQQ.csv").fetch_bars("QQQ", "1d", "2014-01-01", "2015-01-01")
    assert len(one) == 5 and (one["symbol"] == "QQQ").all()
    with pytest.raises(DataValidationError, match="symbol"):
        FileSource(tmp_path).fetch_bars("QQQ", "1d", "2014-01-01", "2015-01-01")


def test_naive_or_offset_timestamps(tmp_path: Path) -> None:
    frame = bars().assign(timestamp=lambda d: d["timestamp"].dt.tz_localize(None))
    path = tmp_path / "naive.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"naive\.csv.*time zone"):
        FileSource(path).read()
    local = FileSource(path, naive_tz="America/New_York").read()
    assert local["timestamp"].iloc[0] == pd.Timestamp("2014-05-01 04:00", tz="UTC")
    offsets = tmp_path / "offsets.csv"  # New York times across a DST change
    pd.DataFrame({"timestamp": ["2014-03-07T16:00:00-05:00", "2014-03-10T16:00:00-04:00"],
                  "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0,
                  "symbol": "A"}).to_csv(offsets, index=False)
    assert list(FileSource(offsets).read()["timestamp"].dt.hour) == [21, 20]


def test_epoch_timestamps_need_a_unit(tmp_path: Path) -> None:
    frame = bars().assign(timestamp=lambda d: d["timestamp"].astype("int64") // 10**6)
    path = tmp_path / "epoch_ms.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataValidationError, match="epoch_ms.parquet"):
        FileSource(path).read()
    pd.testing.assert_frame_equal(FileSource(path, timestamp_unit="ms").read(), bars())


def test_funding_files(tmp_path: Path) -> None:
    ts = pd.date_range("2021-04-01", periods=6, freq="8h", tz="UTC")
    path = tmp_path / "funding.parquet"
    pd.DataFrame({"timestamp": ts, "symbol": "BTC/USDT:USDT", "funding_rate": 1e-4}).to_parquet(path)
    source = FileSource(path, kind=Kind.FUNDING)
    df = source.fetch_funding_rates("BTC/USDT:USDT", ts[0], ts[3])
    assert list(df.columns) == list(COLUMNS[Kind.FUNDING]) and len(df) == 3
    with pytest.raises(ValueError, match="funding"):
        source.fetch_bars("BTC/USDT:USDT", "1h", ts[0], ts[3])


def test_read_keeps_file_order_and_duplicates_for_validation(tmp_path: Path) -> None:
    frame = pd.concat([bars().iloc[[0, 2, 1, 3, 4]], bars().iloc[[2]]], ignore_index=True)
    path = tmp_path / "dups.parquet"
    frame.to_parquet(path)
    source = FileSource(path)
    pd.testing.assert_frame_equal(source.read(), frame)  # row i of the frame is row i of the file
    fetched = source.fetch_bars("AAPL", "1d", "2014-01-01", "2015-01-01")
    assert len(fetched) == 6 and fetched["timestamp"].duplicated().sum() == 1
    assert fetched["timestamp"].is_monotonic_increasing


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    bars().to_parquet(path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated download
    with pytest.raises(CorruptFileError, match=r"broken\.parquet") as info:
        FileSource(path).fetch_bars("AAPL", "1d", "2014-01-01", "2015-01-01")
    assert info.value.__cause__ is not None
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(CorruptFileError, match=r"garbage\.parquet"):
        FileSource(garbage).read()


def test_corrupt_csv_names_the_file(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("timestamp,open,high,low,close,volume,symbol\n"
                      "2014-05-01T00:00:00Z,1,2,0.5,1.5,10,A\n"
                      "2014-05-02T00:00:00Z,1,2,0.5,1.5,10,A,extra,fields\n")
    with pytest.raises(CorruptFileError, match=r"ragged\.csv"):
        FileSource(ragged).read()
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x82 not text")
    with pytest.raises(CorruptFileError, match=r"binary\.csv"):
        FileSource(binary).read()


def test_missing_columns_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "no_volume.csv"
    bars().drop(columns="volume").to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"no_volume\.csv.*volume"):
        FileSource(path).read()
    assert FileSource(path, kind=Kind.MARK).read().shape == (5, 6)


def test_bad_values_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "text_price.csv"
    bars().assign(close="abc").to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"text_price\.csv.*close"):
        FileSource(path).read()


def test_missing_paths_and_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="nowhere"):
        FileSource(tmp_path / "nowhere.csv").read()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match="unknown file type"):
        FileSource(tmp_path / "notes.txt").read()
    with pytest.raises(SourceError, match="no Parquet or CSV"):
        FileSource(tmp_path).read()
    assert FileSource(tmp_path / "notes.txt", file_format="csv", symbol="X").name == "file"

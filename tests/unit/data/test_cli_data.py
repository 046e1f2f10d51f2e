"""``raytrade data ...`` end to end through typer, on recorded Binance answers (no network, no Ray)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import app.data.sources as sources
from app.cli.data import data_app
from app.data.market import load_market
from app.data.schema import DatasetKey, Kind
from app.data.store import ParquetStore
from app.errors import DataValidationError, StoreError
from tests.unit.data.test_sources_ccxt import exchange, load, source

PERP = "BTC/USDT:USDT"
BARS_1H = DatasetKey("binanceusdm", "swap", "1h")


@pytest.fixture
def recorded_binance(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make_source`` answers with a CcxtSource over the recorded Binance responses."""
    monkeypatch.setattr(sources, "make_source", lambda name, **kw: source(exchange()))


def _pull(store, *args: str):
    return CliRunner().invoke(data_app, ["pull", "--source", "ccxt:binanceusdm", "--symbols", PERP,
                                         "--market", "swap", "--store", str(store), "--local", *args])


def test_pull_without_end_pulls_up_to_now(tmp_path, recorded_binance) -> None:
    result = _pull(tmp_path, "--timeframe", "1h", "--start", "2021-05-18")
    assert result.exit_code == 0, result.output + repr(result.exception)
    stored = ParquetStore(tmp_path).read(BARS_1H, [PERP])
    assert len(stored) == len(load("binanceusdm/klines_BTCUSDT_1h.json")["body"]) == 250


def test_pull_with_an_aware_end_is_accepted(tmp_path, recorded_binance) -> None:
    result = _pull(tmp_path, "--timeframe", "1h", "--start", "2021-05-18", "--end", "2021-05-19T00:00Z")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert len(ParquetStore(tmp_path).read(BARS_1H, [PERP])) == 24


def test_funding_pulled_with_an_hourly_timeframe_reaches_the_envs(tmp_path, recorded_binance) -> None:
    window = ["--start", "2021-05-18", "--end", "2021-05-29"]
    assert _pull(tmp_path, "--timeframe", "1h", *window).exit_code == 0
    result = _pull(tmp_path, "--kind", "funding", "--timeframe", "1h", *window)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "stored under timeframe 'events'" in result.output
    market = load_market(ParquetStore(tmp_path), BARS_1H, with_mark=False)
    records = load("binanceusdm/fundingRate_BTCUSDT.json")["body"]
    first, last = market.ts_ns[0] // 10**6, market.ts_ns[-1] // 10**6 + 3_600_000
    expected = sum(float(r["fundingRate"]) for r in records if first <= r["fundingTime"] < last)
    assert np.count_nonzero(market.funding_rate) > 20
    assert market.funding_rate.sum() == pytest.approx(expected)


def test_a_funding_key_is_always_stored_as_events(tmp_path) -> None:
    key = DatasetKey("x", "swap", "1h", Kind.FUNDING)
    assert key.timeframe == "events"
    assert ParquetStore(tmp_path).dataset_dir(key).name == "events"


def test_mark_prices_under_another_timeframe_are_named_in_the_warning(tmp_path, caplog) -> None:
    store = ParquetStore(tmp_path)
    ts = pd.date_range("2021-01-01", periods=8, freq="1h", tz="UTC")
    bars = pd.DataFrame({"timestamp": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                         "volume": 1.0, "symbol": PERP})
    store.write(BARS_1H, bars)
    store.write(DatasetKey("binanceusdm", "swap", "4h", Kind.MARK), bars.drop(columns="volume"))
    with caplog.at_level(logging.WARNING, logger="raytrade.data"):
        load_market(store, BARS_1H, with_funding=False)
    assert "found under ['4h']" in caplog.text and "--timeframe 1h" in caplog.text


def test_info_and_loading_skip_a_temp_file_left_by_a_crash(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    key = DatasetKey("stooq", "stock", "1d")
    bars = pd.DataFrame({"timestamp": pd.date_range("2021-01-04", periods=3, freq="1D", tz="UTC"),
                         "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
                         "symbol": "AAA"})
    store.write(key, bars)
    (store.dataset_dir(key) / ".tmp-XYZ.parquet").write_bytes(b"\x00garbage, not parquet")
    (store.dataset_dir(key) / ".tmp-AAA.parquet-k2j3").write_bytes(b"half a file")
    assert store.symbols(key) == ["AAA"] and store.keys() == [key]
    assert [e.symbol for e in store.catalog()] == ["AAA"]
    assert len(store.load_arrays(key).ts_ns) == 3
    result = CliRunner().invoke(data_app, ["info", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_a_symbol_starting_with_a_dot_is_not_hidden(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    key = DatasetKey("x", "index", "1d")
    bars = pd.DataFrame({"timestamp": pd.date_range("2021-01-04", periods=2, freq="1D", tz="UTC"),
                         "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
                         "symbol": ".DJI"})
    store.write(key, bars)
    assert store.symbols(key) == [".DJI"]


def test_a_missing_store_is_said_as_such(tmp_path) -> None:
    store = ParquetStore(tmp_path / "no-such-store")
    for read in (store.catalog_frame, store.keys, lambda: store.load_arrays(BARS_1H),
                 lambda: store.read(BARS_1H)):
        with pytest.raises(StoreError, match=r"store .*no-such-store does not exist \(run `raytrade data import"):
            read()
    result = CliRunner().invoke(data_app, ["info", "--store", str(store.root)])
    assert isinstance(result.exception, StoreError)


NAIVE_CSV = "timestamp,open,high,low,close,volume,symbol\n" + "\n".join(
    f"2021-03-{d:02d} 09:30,10,11,9,10.5,100,AAA" for d in (1, 2, 3))


def test_tz_localizes_naive_timestamps_then_converts_to_utc(tmp_path) -> None:
    path = tmp_path / "aaa.csv"
    path.write_text(NAIVE_CSV)
    result = CliRunner().invoke(data_app, ["import", str(path), "--store", str(tmp_path / "s"),
                                           "--timeframe", "1h", "--tz", "America/New_York"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    stored = ParquetStore(tmp_path / "s").read(DatasetKey("file", "stock", "1h"))
    assert list(stored["timestamp"]) == [pd.Timestamp(f"2021-03-{d:02d} 14:30", tz="UTC") for d in (1, 2, 3)]


@pytest.mark.parametrize("command", ["import", "validate"])
def test_naive_timestamps_without_tz_are_an_error_naming_the_option(tmp_path, command) -> None:
    path = tmp_path / "aaa.csv"
    path.write_text(NAIVE_CSV)
    store = ["--store", str(tmp_path / "s")] if command == "import" else []
    result = CliRunner().invoke(data_app, [command, str(path), *store])
    assert isinstance(result.exception, DataValidationError)
    assert "no time zone" in str(result.exception) and "--tz" in str(result.exception)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    store = ParquetStore(tmp_path)
    key = DatasetKey("stooq", "stock", "1d")
    bars = pd.DataFrame({"timestamp": pd.date_range("2021-01-04", periods=3, freq="1D", tz="UTC"),
                         "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
                         "symbol": "AAA"})
    store.write(key, bars)
    real_write = pq.write_table

    def crash(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)  # half written, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write(key, bars.assign(timestamp=bars["timestamp"] + pd.Timedelta(days=7)))
    assert [p.name for p in store.dataset_dir(key).iterdir()] == ["AAA.parquet"]
    assert len(store.read(key)) == 3

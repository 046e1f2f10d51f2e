"""The one ingest path: validate -> repair -> validate -> store; failures stay per symbol."""

from __future__ import annotations

import pandas as pd
import pytest

from app.data.ingest import PullRequest, _store_result, fetch_symbol, ingest_frame, summarize
from app.data.repair import RepairPolicy
from app.data.schema import DatasetKey, Kind
from app.data.store import ParquetStore
from app.errors import DataValidationError, SymbolNotFoundError
from tests.unit.data.conftest import make_bars

KEY = DatasetKey("test", "stock", "1d")


def test_repairable_faults_are_repaired_recorded_and_stored(tmp_path):
    store = ParquetStore(tmp_path)
    raw = make_bars(n=20)
    raw.loc[5, "high"] = raw.loc[5, "low"] * 0.9
    raw.loc[7, "close"] = float("nan")
    result = ingest_frame(store, KEY, raw, name="raw.parquet")
    assert result.found.counts() == {"high_below_low": 1, "open_outside_range": 1,
                                     "close_outside_range": 1, "non_finite": 1}
    assert {a.action for a in result.repairs.actions} == {"clip_ohlc", "drop_non_finite"}
    assert result.remaining.ok and result.written == {"AAA": 19}
    assert len(store.read(KEY)) == 19


def test_unrepairable_faults_write_nothing(tmp_path):
    store = ParquetStore(tmp_path)
    raw = make_bars(n=5)
    raw.loc[2, "low"] = -1.0
    with pytest.raises(DataValidationError, match="non_positive_price"):
        ingest_frame(store, KEY, raw, name="raw", policy=RepairPolicy(drop_non_positive=False))
    assert store.symbols(KEY) == []


class _Source:
    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames
        self.calls: list[tuple] = []

    def fetch_bars(self, symbol, timeframe, start, end):
        self.calls.append(("bars", symbol, timeframe, start, end))
        if symbol not in self.frames:
            raise SymbolNotFoundError(f"{symbol}: unknown")
        return self.frames[symbol]

    def fetch_funding_rates(self, symbol, start, end):
        self.calls.append(("funding", symbol, start, end))
        return pd.DataFrame()


def test_fetch_symbol_dispatches_on_kind():
    source = _Source({"AAA": make_bars()})
    start, end = pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2021-02-01", tz="UTC")
    fetch_symbol(lambda: source, PullRequest(KEY, ("AAA",), start, end), "AAA")
    fetch_symbol(lambda: source, PullRequest(DatasetKey("t", "swap", "events", Kind.FUNDING), ("X",), start, end), "X")
    assert [c[:2] for c in source.calls] == [("bars", "AAA"), ("funding", "X")]
    assert source.calls[0][2:] == ("1d", start, end)


def test_one_bad_symbol_is_reported_and_the_rest_are_stored(tmp_path):
    store = ParquetStore(tmp_path)
    request = PullRequest(KEY, ("AAA", "BAD", "EMPTY"), pd.Timestamp("2021-01-01", tz="UTC"),
                          pd.Timestamp("2021-02-01", tz="UTC"))
    outcomes = [_store_result(store, request, "AAA", make_bars(), None),
                _store_result(store, request, "BAD", "SymbolNotFoundError: BAD: unknown", None),
                _store_result(store, request, "EMPTY", make_bars().iloc[:0], None)]
    assert [o.ok for o in outcomes] == [True, False, False]
    assert store.symbols(KEY) == ["AAA"]
    text = summarize(outcomes)
    assert "1/3 symbols stored, 10 rows" in text and "FAILED BAD: SymbolNotFoundError" in text

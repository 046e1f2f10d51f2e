"""`pull` fans symbols out as real Ray tasks and stores them from the driver."""

from __future__ import annotations

import pandas as pd

from app.data.ingest import PullRequest, pull
from app.data.schema import DatasetKey
from app.data.store import ParquetStore
from app.errors import SymbolNotFoundError
from tests.unit.data.conftest import make_bars


class RecordedSource:
    """A source that serves fixed frames; pickled into each Ray worker by the factory."""

    def fetch_bars(self, symbol, timeframe, start, end):
        if symbol == "DELISTED":
            raise SymbolNotFoundError(f"{symbol}: no such ticker")
        if symbol == "CRASHES":
            raise RuntimeError("vendor library bug")
        frame = make_bars(n=30, symbol=symbol, seed=len(symbol))
        return frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]


def test_pull_stores_good_symbols_and_reports_bad_ones(ray_session, tmp_path):
    store = ParquetStore(tmp_path)
    request = PullRequest(DatasetKey("rec", "stock", "1d"), ("AAA", "DELISTED", "BB", "CRASHES", "CCCC"),
                          pd.Timestamp("2021-01-04", tz="UTC"), pd.Timestamp("2021-01-24", tz="UTC"))
    seen = []
    outcomes = pull(store, RecordedSource, request, max_in_flight=2, on_done=lambda o: seen.append(o.symbol))
    assert [o.symbol for o in outcomes] == list(request.symbols)
    assert sorted(seen) == sorted(request.symbols)
    by_symbol = {o.symbol: o for o in outcomes}
    assert by_symbol["DELISTED"].error.startswith("SymbolNotFoundError")
    assert "vendor library bug" in by_symbol["CRASHES"].error
    assert store.symbols(request.key) == ["AAA", "BB", "CCCC"]
    assert all(by_symbol[s].rows == 20 for s in ("AAA", "BB", "CCCC"))

"""YFinanceSource against recorded Yahoo v8 chart responses, through yfinance's real code.

The fake is the HTTP session yfinance is given (``YFinanceSource(session=...)``, a
``requests.Session`` whose ``request`` answers offline): yfinance's cookie and crumb dance
(fc.yahoo.com, getcrumb, the consent page), its timezone lookup, JSON parsing, dividend/split
handling and ``auto_adjust`` all run for real. Like Yahoo, the fake answers a chart request with
the recorded bars whose timestamps lie in ``[period1, period2)``, or the last bar for ``range``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests

from app.data.schema import COLUMNS, Kind
from app.data.sources import RetryPolicy, YFinanceSource
from app.errors import NetworkError, RateLimitError, SymbolNotFoundError

VENDOR = Path(__file__).resolve().parents[2] / "fixtures" / "vendor" / "yahoo"
SHARED_STOCKS = Path("/work/shared/data/us_stocks_daily_1500_stooq_1962_2017.parquet")
START, END = pd.Timestamp("2014-05-01", tz="UTC"), pd.Timestamp("2014-07-26", tz="UTC")
TICKERS = ("AAPL", "MSFT", "XOM")


def load(name: str) -> dict[str, Any]:
    return json.loads((VENDOR / name).read_text())


def slice_chart(body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """What Yahoo would answer for these params, cut from the recorded (longer) response."""
    body = json.loads(json.dumps(body))
    result = body["chart"]["result"][0]
    ts = result["timestamp"]
    if "period1" in params:
        keep = [i for i, t in enumerate(ts) if int(params["period1"]) <= t < int(params["period2"])]
    else:  # range=1d: the latest bar only
        keep = [len(ts) - 1]
    lo, hi = (keep[0], keep[-1] + 1) if keep else (0, 0)
    result["timestamp"] = ts[lo:hi]
    quote = result["indicators"]["quote"][0]
    for key in quote:
        quote[key] = quote[key][lo:hi]
    adj = result["indicators"]["adjclose"][0]
    adj["adjclose"] = adj["adjclose"][lo:hi]
    first, last = (ts[lo], ts[hi - 1]) if keep else (0, -1)
    for kind, events in result.get("events", {}).items():
        result["events"][kind] = {k: v for k, v in events.items() if first <= v["date"] <= last}
    if not keep:  # Yahoo's shape for a range without bars: no timestamps, empty indicators
        del result["timestamp"], result["events"]
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    return body


class FakeYahoo(requests.Session):
    """Offline Yahoo. ``history_failures``: exceptions raised by, or HTTP status codes answered
    to, the next chart-history requests (those with ``period1``), in order."""

    def __init__(self, history_failures: list[BaseException | int] | None = None) -> None:
        super().__init__()
        self.history_failures = list(history_failures or [])
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def history_calls(self, ticker: str) -> list[dict[str, Any]]:
        return [q for p, q in self.calls if p == f"/v8/finance/chart/{ticker}" and "period1" in q]

    def request(self, method: str, url: str, params: Any = None, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(url)
        query = dict(params or {})
        self.calls.append((parts.path, query))
        if parts.hostname == "query1.finance.yahoo.com" and parts.path == "/v1/test/getcrumb":
            return self._answer(url, 200, "Xb7gYTp3hQa", "text/plain")
        if parts.path.startswith("/v8/finance/chart/"):
            ticker = parts.path.rsplit("/", 1)[1]
            if "period1" in query and self.history_failures:
                failure = self.history_failures.pop(0)
                if isinstance(failure, BaseException):
                    raise failure
                return self._answer(url, failure, "Too Many Requests", "text/plain")
            if (VENDOR / f"chart_{ticker}.json").exists():
                return self._answer(url, 200, slice_chart(load(f"chart_{ticker}.json")["body"], query))
            return self._answer(url, 404, load("chart_not_found.json")["body"])
        if parts.path.startswith("/v10/finance/quoteSummary/"):
            return self._answer(url, 404, load("quote_summary_not_found.json")["body"])
        return self._answer(url, 404, "<html><body>not here</body></html>", "text/html")

    @staticmethod
    def _answer(url: str, status: int, body: Any, content_type: str = "application/json") -> requests.Response:
        r = requests.Response()
        r.status_code, r.url, r.encoding = status, url, "utf-8"
        r.headers["Content-Type"] = content_type
        r._content = (body if isinstance(body, str) else json.dumps(body)).encode()
        return r


@pytest.fixture(scope="module")
def yf_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yfinance's timezone/cookie caches go to a temporary folder, never the user's."""
    return tmp_path_factory.mktemp("yfinance-cache")


def make(fake: FakeYahoo, cache_dir: Path, attempts: int = 3) -> YFinanceSource:
    return YFinanceSource(session=fake, retry=RetryPolicy.no_wait(attempts), cache_dir=cache_dir)


def expected_bars(ticker: str) -> pd.DataFrame:
    """Adjusted bars as the recording defines them (Yahoo's adjclose and its ratio)."""
    result = load(f"chart_{ticker}.json")["body"]["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    adj = np.array(result["indicators"]["adjclose"][0]["adjclose"])
    ratio = adj / np.array(quote["close"])
    days = pd.to_datetime(result["timestamp"], unit="s", utc=True).tz_convert("America/New_York")
    return pd.DataFrame({
        "timestamp": pd.DatetimeIndex(days.date).tz_localize("UTC"),
        "open": np.array(quote["open"]) * ratio, "high": np.array(quote["high"]) * ratio,
        "low": np.array(quote["low"]) * ratio, "close": adj,
        "volume": np.array(quote["volume"], dtype=float), "symbol": ticker})


def test_daily_bars_are_adjusted_and_stamped_at_utc_midnight(yf_cache_dir: Path) -> None:
    fake = FakeYahoo()
    df = make(fake, yf_cache_dir).fetch_bars("AAPL", "1d", START, END)

    assert list(df.columns) == list(COLUMNS[Kind.BARS])
    assert len(df) == 60 and not df["timestamp"].duplicated().any()
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (df["timestamp"] == df["timestamp"].dt.normalize()).all()  # 00:00 UTC, not 13:30 or 04:00
    raw_first = load("chart_AAPL.json")["body"]["chart"]["result"][0]["timestamp"][0]
    assert pd.Timestamp(raw_first, unit="s", tz="UTC") == pd.Timestamp("2014-05-01 13:30", tz="UTC")
    assert df["timestamp"].iloc[0] == pd.Timestamp("2014-05-01", tz="UTC")
    assert df["timestamp"].iloc[-1] == pd.Timestamp("2014-07-25", tz="UTC")
    pd.testing.assert_frame_equal(df, expected_bars("AAPL"), check_dtype=False, rtol=1e-12)
    # The source data (stooq, split- and dividend-adjusted): before the 0.47 dividend of 05-08,
    # on the 7:1 split day and after it, the adjusted prices come back.
    first = df.iloc[0]
    assert (first["open"], first["close"]) == pytest.approx((78.877, 78.806), rel=1e-12)
    split_day = df.set_index("timestamp").loc[pd.Timestamp("2014-06-09", tz="UTC")]
    assert (split_day["open"], split_day["high"], split_day["close"]) == pytest.approx(
        (86.938, 88.048, 87.879), rel=1e-12)
    assert len(fake.history_calls("AAPL")) == 1


@pytest.mark.skipif(not SHARED_STOCKS.exists(), reason="shared market data not mounted")
def test_bars_equal_the_shared_source_data(yf_cache_dir: Path) -> None:
    source = make(FakeYahoo(), yf_cache_dir)
    got = source.fetch_many(TICKERS, "1d", START, END)
    stooq = pd.read_parquet(SHARED_STOCKS, filters=[("symbol", "in", list(TICKERS)),
                                                    ("timestamp", ">=", START), ("timestamp", "<", END)])
    stooq = stooq.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    assert len(got) == 180
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(got[col], stooq[col].astype(float), rtol=1e-12, err_msg=col)
    assert (got["timestamp"].to_numpy() == stooq["timestamp"].astype("datetime64[ns, UTC]").to_numpy()).all()


def test_sub_range_is_start_inclusive_end_exclusive(yf_cache_dir: Path) -> None:
    fake = FakeYahoo()
    source = make(fake, yf_cache_dir)
    df = source.fetch_bars("MSFT", "1d", "2014-06-02", "2014-06-09")
    assert list(df["timestamp"].dt.strftime("%Y-%m-%d")) == [
        "2014-06-02", "2014-06-03", "2014-06-04", "2014-06-05", "2014-06-06"]
    # A start after midnight excludes that day's bar (it is stamped 00:00); an end after
    # midnight includes the bar of its day.
    df = source.fetch_bars("MSFT", "1d", pd.Timestamp("2014-06-02 12:00", tz="UTC"),
                           pd.Timestamp("2014-06-09 00:01", tz="UTC"))
    assert list(df["timestamp"].dt.strftime("%Y-%m-%d")) == [
        "2014-06-03", "2014-06-04", "2014-06-05", "2014-06-06", "2014-06-09"]
    # A weekend has no bars and no request.
    calls = len(fake.history_calls("MSFT"))
    assert source.fetch_bars("MSFT", "1d", "2014-06-07 01:00", "2014-06-08").empty
    assert len(fake.history_calls("MSFT")) == calls


def test_a_range_without_trading_days_is_empty(yf_cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeYahoo()
    with caplog.at_level(logging.INFO, logger="app.data.sources.yfinance_source"):
        df = make(fake, yf_cache_dir).fetch_bars("XOM", "1d", "2014-07-04", "2014-07-05")  # holiday
    assert "no bars" in caplog.text  # yfinance raised YFPricesMissingError; we return empty
    assert df.empty and list(df.columns) == list(COLUMNS[Kind.BARS])
    assert len(fake.history_calls("XOM")) == 1


def test_many_tickers_in_one_frame(yf_cache_dir: Path) -> None:
    source = make(FakeYahoo(), yf_cache_dir)
    df = source.fetch_many(["XOM", "AAPL", "MSFT", "ZZZNOTREAL"], "1d", START, END, skip_missing=True)
    assert df.groupby("symbol").size().to_dict() == {"AAPL": 60, "MSFT": 60, "XOM": 60}
    pd.testing.assert_frame_equal(df[df["symbol"] == "XOM"].reset_index(drop=True),
                                  expected_bars("XOM"), check_dtype=False, rtol=1e-12)
    with pytest.raises(SymbolNotFoundError):
        source.fetch_many(["AAPL", "ZZZNOTREAL"], "1d", START, END)


def test_unknown_ticker_is_symbol_not_found(yf_cache_dir: Path) -> None:
    fake = FakeYahoo()
    source = make(fake, yf_cache_dir)
    for _ in range(3):  # yfinance's answer changes after two info look-ups; both paths map
        with pytest.raises(SymbolNotFoundError, match="ZZZNOTREAL") as info:
            source.fetch_bars("ZZZNOTREAL", "1d", START, END)
        assert info.value.__cause__ is not None
    assert not fake.history_calls("ZZZNOTREAL")


def test_network_errors_are_retried_then_succeed(yf_cache_dir: Path) -> None:
    fake = FakeYahoo(history_failures=[requests.exceptions.ConnectionError("reset"),
                                       requests.exceptions.ConnectionError("reset")])
    df = make(fake, yf_cache_dir, attempts=3).fetch_bars("AAPL", "1d", START, END)
    assert len(fake.history_calls("AAPL")) == 3
    assert len(df) == 60


def test_persistent_timeout_is_a_network_error_after_all_attempts(yf_cache_dir: Path) -> None:
    fake = FakeYahoo(history_failures=[requests.exceptions.ReadTimeout("slow")] * 10)
    with pytest.raises(NetworkError) as info:
        make(fake, yf_cache_dir, attempts=4).fetch_bars("AAPL", "1d", START, END)
    assert type(info.value) is NetworkError
    assert isinstance(info.value.__cause__, requests.exceptions.Timeout)
    assert len(fake.history_calls("AAPL")) == 4


def test_http_429_is_a_rate_limit_error(yf_cache_dir: Path) -> None:
    fake = FakeYahoo(history_failures=[429] * 10)
    with pytest.raises(RateLimitError) as info:
        make(fake, yf_cache_dir, attempts=2).fetch_bars("AAPL", "1d", START, END)
    assert type(info.value.__cause__).__name__ == "YFRateLimitError"
    # yfinance itself asks twice per attempt (once more with its other cookie strategy).
    assert len(fake.history_calls("AAPL")) == 4


def test_only_daily_bars(yf_cache_dir: Path) -> None:
    source = make(FakeYahoo(), yf_cache_dir)
    assert source.name == "yfinance"
    with pytest.raises(ValueError, match="resampling"):
        source.fetch_bars("AAPL", "1h", START, END)

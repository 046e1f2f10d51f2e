"""CcxtSource against recorded Binance responses, through ccxt's real request and parsing code.

The fake sits one level *below* ``exchange.fetch``: it replaces ``exchange.session`` (the
``requests.Session`` that ccxt's ``fetch`` calls), so ccxt's own URL signing, JSON decoding,
HTTP-status and Binance error-code mapping (HTTP 429 -> RateLimitExceeded, -1121 -> BadSymbol,
requests' ConnectionError -> ccxt.NetworkError) run for real. It answers like Binance: klines and
funding records with ``time >= startTime`` (and ``<= endTime``), at most ``limit`` rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pandas as pd
import pytest
import requests

from app.data.schema import COLUMNS, Kind, MarketType
from app.data.sources import CcxtSource, RetryPolicy, make_source
from app.errors import NetworkError, RateLimitError, SymbolNotFoundError, VendorError

VENDOR = Path(__file__).resolve().parents[2] / "fixtures" / "vendor"
HOUR = pd.Timedelta(hours=1)
KLINES_START = pd.Timestamp("2021-05-18", tz="UTC")  # 250 recorded hourly rows from here

ROUTES = {  # path -> (fixture, Binance's default limit, its maximum)
    "/fapi/v1/exchangeInfo": ("binanceusdm/exchangeInfo.json", None, None),
    "/fapi/v1/klines": ("binanceusdm/klines_BTCUSDT_1h.json", 500, 1500),
    "/fapi/v1/markPriceKlines": ("binanceusdm/markPriceKlines_BTCUSDT_1h.json", 500, 1500),
    "/fapi/v1/fundingRate": ("binanceusdm/fundingRate_BTCUSDT.json", 100, 1000),
    "/api/v3/exchangeInfo": ("binance/exchangeInfo.json", None, None),
    "/api/v3/klines": ("binance/klines_BTCUSDT_1h.json", 500, 1000),
}


def load(name: str) -> dict[str, Any]:
    return json.loads((VENDOR / name).read_text())


def response(url: str, envelope: dict[str, Any], body: Any = None) -> requests.Response:
    r = requests.Response()
    r.status_code = envelope["status"]
    r.reason = {200: "OK", 400: "Bad Request", 429: "Too Many Requests"}.get(r.status_code, "")
    r.headers.update(envelope["headers"])
    r._content = json.dumps(envelope["body"] if body is None else body).encode()
    r.url = url
    return r


class FakeBinance(requests.Session):
    """Replays the recorded responses; ``failures`` (exceptions, error-fixture names, or
    ``None`` for a normal answer) are served, in order, to the data requests first."""

    def __init__(self, failures: list[BaseException | str | None] | None = None) -> None:
        super().__init__()
        self.failures = list(failures or [])
        self.calls: list[tuple[str, dict[str, str]]] = []

    def data_calls(self, path: str) -> list[dict[str, str]]:
        return [q for p, q in self.calls if p == path]

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.calls.append((parts.path, query))
        fixture, default_limit, max_limit = ROUTES[parts.path]
        if default_limit is None:  # exchangeInfo
            return response(url, load(fixture))
        failure = self.failures.pop(0) if self.failures else None
        if isinstance(failure, BaseException):
            raise failure
        if failure is not None:
            return response(url, load(failure))
        envelope = load(fixture)
        if query.get("symbol") != "BTCUSDT":
            return response(url, load("binanceusdm/error_invalid_symbol.json"))
        limit = min(int(query.get("limit", default_limit)), max_limit)
        start_ms, end_ms = int(query.get("startTime", 0)), int(query.get("endTime", 2**62))
        stamp = (lambda row: row["fundingTime"]) if "funding" in parts.path else (lambda row: row[0])
        rows = [row for row in envelope["body"] if start_ms <= stamp(row) <= end_ms][:limit]
        return response(url, envelope, rows)


def exchange(exchange_id: str = "binanceusdm", **fake: Any) -> Any:
    ex = getattr(ccxt, exchange_id)({"enableRateLimit": False})
    if exchange_id == "binance":
        ex.options["fetchMarkets"] = {"types": ["spot"]}
    ex.session = FakeBinance(**fake)
    return ex


def source(ex: Any, page_limit: int = 100, attempts: int = 3) -> CcxtSource:
    return CcxtSource(exchange=ex, page_limit=page_limit, retry=RetryPolicy.no_wait(attempts))


def recorded_bars(name: str) -> pd.DataFrame:
    """The fixture's rows decoded independently of ccxt (what the source data said)."""
    rows = load(name)["body"]
    return pd.DataFrame({
        "timestamp": pd.to_datetime([r[0] for r in rows], unit="ms", utc=True),
        **{c: [float(r[i]) for r in rows] for i, c in enumerate(("open", "high", "low", "close", "volume"), 1)},
    })


# ------------------------------------------------------------------------------- bars & marks

def test_bars_paginate_over_exactly_the_requested_range() -> None:
    ex = exchange()
    end = KLINES_START + 250 * HOUR
    df = source(ex, page_limit=100).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, end)

    calls = ex.session.data_calls("/fapi/v1/klines")
    assert [int(q["limit"]) for q in calls] == [100, 100, 50]
    assert [int(q["startTime"]) for q in calls] == [
        int((KLINES_START + k * HOUR).value // 10**6) for k in (0, 100, 200)]
    assert list(df.columns) == list(COLUMNS[Kind.BARS])
    assert len(df) == 250 and not df["timestamp"].duplicated().any()
    assert df["timestamp"].iloc[0] == KLINES_START and df["timestamp"].iloc[-1] == end - HOUR
    assert (df["timestamp"].diff().dropna() == HOUR).all()
    assert (df["symbol"] == "BTC/USDT:USDT").all()
    expected = recorded_bars("binanceusdm/klines_BTCUSDT_1h.json")
    pd.testing.assert_frame_equal(df.drop(columns="symbol"), expected, check_dtype=False)
    # Spot-check against the source data: the first bar of 2021-05-18 opened at 43565.11.
    assert df.loc[0, "open"] == 43565.11 and df.loc[0, "high"] == 44666.0


def test_unaligned_range_keeps_bars_opening_inside_it() -> None:
    ex = exchange()
    start, end = KLINES_START + pd.Timedelta(minutes=30), KLINES_START + pd.Timedelta(hours=5, minutes=1)
    df = source(ex).fetch_bars("BTC/USDT:USDT", "1h", start, end)
    assert list(df["timestamp"]) == [KLINES_START + k * HOUR for k in range(1, 6)]
    assert len(ex.session.data_calls("/fapi/v1/klines")) == 1


def test_paging_stops_on_an_empty_page_after_the_data_ends() -> None:
    ex = exchange()
    df = source(ex, page_limit=200).fetch_bars(
        "BTC/USDT:USDT", "1h", KLINES_START + 100 * HOUR, KLINES_START + 400 * HOUR)
    assert len(df) == 150  # the recording ends at row 250
    assert [int(q["limit"]) for q in ex.session.data_calls("/fapi/v1/klines")] == [200, 150]


def test_mark_prices_use_the_mark_price_endpoint() -> None:
    ex = exchange()
    df = source(ex, page_limit=120).fetch_mark_prices(
        "BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + 250 * HOUR)
    assert len(ex.session.data_calls("/fapi/v1/markPriceKlines")) == 3
    assert not ex.session.data_calls("/fapi/v1/klines")
    assert list(df.columns) == list(COLUMNS[Kind.MARK])
    expected = recorded_bars("binanceusdm/markPriceKlines_BTCUSDT_1h.json").drop(columns="volume")
    pd.testing.assert_frame_equal(df.drop(columns="symbol"), expected, check_dtype=False)


def test_spot_market_of_binance() -> None:
    ex = exchange("binance")
    src = source(ex, page_limit=1000)
    start = pd.Timestamp("2021-05-19", tz="UTC")
    df = src.fetch_bars("BTC/USDT", "1h", start, start + 48 * HOUR)
    assert len(df) == 48 and (df["symbol"] == "BTC/USDT").all()
    pd.testing.assert_frame_equal(df.drop(columns="symbol"),
                                  recorded_bars("binance/klines_BTCUSDT_1h.json"), check_dtype=False)
    assert src.market_type("BTC/USDT") is MarketType.SPOT
    assert src.name == "binance"


def test_exchange_ids_resolve_to_unified_symbols() -> None:
    ex = exchange()
    src = source(ex)
    df = src.fetch_bars("BTCUSDT", "1h", KLINES_START, KLINES_START + 2 * HOUR)
    assert (df["symbol"] == "BTC/USDT:USDT").all()
    assert src.market_type("BTC/USDT:USDT") is MarketType.SWAP


# ------------------------------------------------------------------------------- funding

def test_funding_rates_paginate_until_an_empty_page() -> None:
    ex = exchange()
    start, end = pd.Timestamp("2021-04-01", tz="UTC"), pd.Timestamp("2021-06-01", tz="UTC")
    df = source(ex, page_limit=50).fetch_funding_rates("BTC/USDT:USDT", start, end)

    records = load("binanceusdm/fundingRate_BTCUSDT.json")["body"]
    assert len(records) == 183
    calls = ex.session.data_calls("/fapi/v1/fundingRate")
    assert [int(q["limit"]) for q in calls] == [50] * 5  # 50+50+50+33, then an empty page
    assert list(df.columns) == list(COLUMNS[Kind.FUNDING])
    assert len(df) == 183 and not df["timestamp"].duplicated().any()
    assert list(df["timestamp"]) == list(pd.to_datetime([r["fundingTime"] for r in records], unit="ms", utc=True))
    assert list(df["funding_rate"]) == [float(r["fundingRate"]) for r in records]
    assert (df["timestamp"].diff().dropna() == pd.Timedelta(hours=8)).all()


def test_funding_range_is_end_exclusive() -> None:
    ex = exchange()
    start = pd.Timestamp("2021-04-01", tz="UTC")
    df = source(ex).fetch_funding_rates("BTC/USDT:USDT", start, start + pd.Timedelta(days=1))
    assert list(df["timestamp"]) == [start + k * pd.Timedelta(hours=8) for k in range(3)]
    assert len(ex.session.data_calls("/fapi/v1/fundingRate")) == 1


# ------------------------------------------------------------------------------- errors & retry

def test_network_errors_are_retried_then_succeed() -> None:
    ex = exchange(failures=[requests.exceptions.ConnectionError("reset"),
                            requests.exceptions.ReadTimeout("slow")])
    df = source(ex, attempts=3).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + 10 * HOUR)
    assert len(ex.session.data_calls("/fapi/v1/klines")) == 3
    assert len(df) == 10


def test_a_failed_page_is_retried_alone() -> None:
    ex = exchange(failures=[None, requests.exceptions.ConnectionError("reset")])
    df = source(ex, page_limit=100).fetch_bars(
        "BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + 250 * HOUR)
    starts = [int(q["startTime"]) for q in ex.session.data_calls("/fapi/v1/klines")]
    assert starts == [int((KLINES_START + k * HOUR).value // 10**6) for k in (0, 100, 100, 200)]
    assert len(df) == 250


def test_persistent_network_error_surfaces_after_all_attempts() -> None:
    ex = exchange(failures=[requests.exceptions.ConnectionError("down")] * 10)
    with pytest.raises(NetworkError) as info:
        source(ex, attempts=4).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    assert type(info.value) is NetworkError
    assert isinstance(info.value.__cause__, ccxt.NetworkError)
    assert len(ex.session.data_calls("/fapi/v1/klines")) == 4


def test_http_429_is_a_rate_limit_error() -> None:
    ex = exchange(failures=["binanceusdm/error_rate_limited.json"] * 10)
    with pytest.raises(RateLimitError) as info:
        source(ex, attempts=2).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    assert isinstance(info.value.__cause__, ccxt.DDoSProtection)
    assert len(ex.session.data_calls("/fapi/v1/klines")) == 2


def test_rate_limit_then_success_is_retried() -> None:
    ex = exchange(failures=["binanceusdm/error_rate_limited.json"])
    df = source(ex).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + 3 * HOUR)
    assert len(df) == 3 and len(ex.session.data_calls("/fapi/v1/klines")) == 2


def test_symbol_unknown_to_ccxt_markets() -> None:
    ex = exchange()
    with pytest.raises(SymbolNotFoundError) as info:
        source(ex).fetch_bars("FOO/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    assert isinstance(info.value.__cause__, ccxt.BadSymbol)
    assert not ex.session.data_calls("/fapi/v1/klines")


def test_symbol_refused_by_the_exchange_is_not_retried() -> None:
    ex = exchange()  # ETHUSDT is listed in exchangeInfo, but the server answers -1121
    with pytest.raises(SymbolNotFoundError) as info:
        source(ex).fetch_bars("ETH/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    assert isinstance(info.value.__cause__, ccxt.BadSymbol)
    assert "Invalid symbol" in str(info.value.__cause__)
    assert len(ex.session.data_calls("/fapi/v1/klines")) == 1


def test_other_exchange_errors_are_vendor_errors() -> None:
    ex = exchange()
    ex.session.failures = [ccxt.ExchangeError("maintenance")]
    with pytest.raises(VendorError) as info:
        source(ex).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    assert not isinstance(info.value, SymbolNotFoundError)
    assert isinstance(info.value.__cause__, ccxt.ExchangeError)


def test_markets_load_lazily_and_once() -> None:
    ex = exchange()
    src = source(ex)
    assert ex.session.calls == []
    src.fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    src.fetch_funding_rates("BTC/USDT:USDT", KLINES_START, KLINES_START + HOUR)
    assert len(ex.session.data_calls("/fapi/v1/exchangeInfo")) == 1


def test_market_load_is_retried() -> None:
    ex = exchange()
    real = ex.session.request
    failures = [requests.exceptions.ConnectionError("dns")]

    def flaky(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if failures:
            raise failures.pop()
        return real(method, url, *args, **kwargs)

    ex.session.request = flaky
    df = source(ex).fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START + HOUR)
    assert len(df) == 1


# ------------------------------------------------------------------------------- construction

def test_default_exchange_respects_rate_limits_without_network() -> None:
    src = CcxtSource()
    assert src.name == "binanceusdm" and src.exchange.enableRateLimit is True
    assert make_source("ccxt:bybit").name == "bybit"
    with pytest.raises(ValueError, match="unknown ccxt exchange"):
        CcxtSource("not-an-exchange")


def test_unknown_timeframe_and_bad_range_are_refused() -> None:
    src = source(exchange())
    with pytest.raises(ValueError, match="timeframe"):
        src.fetch_bars("BTC/USDT:USDT", "7m", KLINES_START, KLINES_START + HOUR)
    with pytest.raises(ValueError, match="empty range"):
        src.fetch_bars("BTC/USDT:USDT", "1h", KLINES_START, KLINES_START)


# ------------------------------------------------------------------------------- paging logic

class ScriptedExchange:
    """A duck-typed exchange whose pages are scripted, for the paging edge cases."""

    id = "scripted"
    has = {"fetchFundingRateHistory": True}
    timeframes = {"1h": "1h"}

    def __init__(self, pages: list[list[list[float]]]) -> None:
        self.pages, self.requests = pages, []

    def load_markets(self) -> dict:
        return {}

    def market(self, symbol: str) -> dict:
        return {"symbol": symbol, "swap": True}

    @staticmethod
    def parse_timeframe(timeframe: str) -> int:
        return 3600

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int, limit: int, params: dict) -> list:
        self.requests.append((since, limit))
        return self.pages.pop(0) if self.pages else []


def candle(k: int, price: float = 1.0) -> list[float]:
    return [int((KLINES_START + k * HOUR).value // 10**6), price, price, price, price, 1.0]


def test_overlapping_pages_are_deduplicated_keeping_the_later_page() -> None:
    ex = ScriptedExchange([[candle(0), candle(1), candle(2)],
                           [candle(2, 9.0), candle(3), candle(4)],  # the exchange overlaps one bar
                           [candle(4), candle(5)]])
    df = CcxtSource(exchange=ex, page_limit=3, retry=RetryPolicy.no_wait()).fetch_bars(
        "X/USDT:USDT", "1h", KLINES_START, KLINES_START + 6 * HOUR)
    assert list(df["timestamp"]) == [KLINES_START + k * HOUR for k in range(6)]
    assert df.loc[2, "close"] == 9.0
    assert len(ex.requests) == 3


def test_a_page_that_does_not_advance_stops_paging() -> None:
    stale = [candle(0), candle(1)]
    ex = ScriptedExchange([stale, stale, stale, stale])  # ignores `since`
    df = CcxtSource(exchange=ex, page_limit=2, retry=RetryPolicy.no_wait()).fetch_bars(
        "X/USDT:USDT", "1h", KLINES_START, KLINES_START + 10 * HOUR)
    assert len(ex.requests) == 2 and len(df) == 2

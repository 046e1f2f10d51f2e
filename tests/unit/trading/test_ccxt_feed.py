"""CcxtFeed through ccxt's real binanceusdm request and parsing code, on the recorded Binance
klines, mark-price klines and funding history (the session-level fake of the data tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import requests

from app.data.sources.base import RetryPolicy
from app.trading.ccxt_broker import CcxtFeed
from tests.unit.data.test_sources_ccxt import exchange

VENDOR = Path(__file__).resolve().parents[2] / "fixtures" / "vendor" / "binanceusdm"
BTC = "BTC/USDT:USDT"
HOUR_MS = 3_600_000


def rows(name: str) -> list:
    return json.loads((VENDOR / name).read_text())["body"]


def test_closed_bars_funding_mark_and_reference_price():
    klines, marks, funding = rows("klines_BTCUSDT_1h.json"), rows("markPriceKlines_BTCUSDT_1h.json"), rows(
        "fundingRate_BTCUSDT.json")
    now = klines[100][0] + HOUR_MS // 2  # half way through bar 100: bars up to 99 are closed
    feed = CcxtFeed(exchange(), "1h", retry=RetryPolicy.no_wait(3), clock_ms=lambda: now)
    bars = feed.history(BTC, 48)
    assert len(bars.ts_ns) == 48 and bars.ts_ns[-1] == klines[99][0] * 1_000_000
    np.testing.assert_array_equal(bars.ohlcv, np.array([[float(v) for v in r[1:6]] for r in klines[52:100]]))
    events = {f["fundingTime"]: float(f["fundingRate"]) for f in funding}
    expected = [events.get(int(t // 1_000_000), 0.0) for t in bars.ts_ns]  # 8-hourly events at bar opens
    np.testing.assert_array_equal(bars.funding_rate, expected)
    assert np.count_nonzero(bars.funding_rate) == 6
    bar = feed.last_bar(BTC)
    mark = [float(v) for v in marks[99][1:5]]
    assert (bar.open, bar.close) == (float(klines[99][1]), float(klines[99][4]))
    assert (bar.mark_low, bar.mark_high, bar.mark_close) == (min(mark), max(mark), mark[3])
    assert feed.reference_price(BTC) == float(klines[100][1])  # the open of the bar in progress


def test_feed_reads_are_retried():
    klines = rows("klines_BTCUSDT_1h.json")
    ex = exchange(failures=[requests.ConnectionError("reset"), None, None])
    feed = CcxtFeed(ex, "1h", retry=RetryPolicy.no_wait(3), clock_ms=lambda: klines[60][0] + 1)
    assert len(feed.history(BTC, 10).ts_ns) == 10
    assert len(ex.session.data_calls("/fapi/v1/klines")) == 2

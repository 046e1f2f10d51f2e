"""Build the recorded vendor responses that the data-source tests replay offline.

No machine that builds or tests raytrade can reach Yahoo or Binance, so the tests of
``app/data/sources`` serve these files through the real yfinance and ccxt HTTP/parsing code.
This script writes them from the real market data in the shared data folder, in the exact wire
formats of the vendors:

* ``yahoo/chart_<TICKER>.json``: Yahoo v8 chart responses (``/v8/finance/chart/<TICKER>``, daily,
  ``period1``/``period2``) for ~60 trading days of 2014, with a dividend in the window (and
  Apple's 7:1 split of 2014-06-09). ``adjclose`` is the split- and dividend-adjusted close of the
  source; the quote ``open/high/low/close`` are the *unadjusted-for-dividends* prices Yahoo sends,
  reconstructed by undoing the recorded dividend, so yfinance's ``auto_adjust`` must give back the
  source prices. Timestamps are the exchange's market-open instants (09:30 New York, 13:30 UTC in
  summer), as Yahoo sends them.
* ``yahoo/chart_not_found.json`` and ``yahoo/quote_summary_not_found.json``: Yahoo's HTTP 404
  answers for an unknown ticker.
* ``binanceusdm/``: ``exchangeInfo`` (BTCUSDT and ETHUSDT perpetuals), 1h ``klines`` and
  ``markPriceKlines`` of BTCUSDT (250 rows: several pages) and ``fundingRate`` history of BTCUSDT.
* ``binance/``: spot ``exchangeInfo`` (BTCUSDT) and 48 rows of 1h spot ``klines``.
* ``binanceusdm/error_invalid_symbol.json`` and ``error_rate_limited.json``: Binance error bodies.

Each file is an envelope ``{"request": {...}, "status": int, "headers": {...}, "body": ...}``.
Kline fields the source data lacks (quote volume, trade count, taker volumes) are approximated or
zero; ccxt reads only open time, OHLC and volume. Fixtures are small (well under 300 KB in all).

Run from the repository root (re-running rewrites the same files)::

    .venv/bin/python scripts/build_vendor_fixtures.py [--data-dir /work/shared/data] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

logger = logging.getLogger("build_vendor_fixtures")

NEW_YORK = ZoneInfo("America/New_York")
HOUR_MS = 3_600_000
DEFAULT_DATA_DIR = Path(os.environ.get("RAYTRADE_SHARED_DATA", "/work/shared/data"))
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vendor"

# --- Yahoo ----------------------------------------------------------------------------------
STOCKS_FILE = "us_stocks_daily_1500_stooq_1962_2017.parquet"
STOCKS_META_FILE = "stocks_metadata.parquet"
YAHOO_START, YAHOO_END = "2014-05-01", "2014-07-26"  # [start, end): 60 trading days
#: Dividends per share (already split-adjusted, as Yahoo reports them) with their ex-dates.
YAHOO_DIVIDENDS: dict[str, list[tuple[str, float]]] = {
    "AAPL": [("2014-05-08", 0.47)], "MSFT": [("2014-05-13", 0.28)], "XOM": [("2014-05-09", 0.69)]}
YAHOO_SPLITS: dict[str, list[tuple[str, int, int]]] = {"AAPL": [("2014-06-09", 7, 1)]}
YAHOO_EXCHANGES = {"NASDAQ": ("NMS", "NasdaqGS"), "NYSE": ("NYQ", "NYSE")}
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
UNKNOWN_TICKER = "ZZZNOTREAL"

# --- Binance --------------------------------------------------------------------------------
PERP_FILE = "crypto_perp_1h_binance_usdm.parquet"
MARK_FILE = "crypto_perp_mark_price_1h_binance_usdm.parquet"
FUNDING_FILE = "crypto_funding_rates_binance_usdm.parquet"
SPOT_FILE = "crypto_spot_1h_binance_16pairs_2018_2025.parquet"
KLINES_START, KLINES_ROWS = pd.Timestamp("2021-05-18", tz="UTC"), 250  # spans the May-19 crash
FUNDING_START, FUNDING_END = pd.Timestamp("2021-04-01", tz="UTC"), pd.Timestamp("2021-06-01", tz="UTC")
SPOT_START, SPOT_ROWS = pd.Timestamp("2021-05-19", tz="UTC"), 48


def num(x: float) -> str:
    """Binance-style decimal string that parses back to exactly ``x``."""
    return np.format_float_positional(float(x), trim="-")


def envelope(url: str, body: Any, status: int = 200) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}, "status": status,
            "headers": {"Content-Type": "application/json;charset=UTF-8"}, "body": body}


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write an envelope; a list body gets one element per line (small, diff-friendly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = obj["body"]
    head = json.dumps({k: v for k, v in obj.items() if k != "body"}, indent=1)[:-2]
    if isinstance(body, list):
        rows = ",\n  ".join(json.dumps(row, separators=(",", ":")) for row in body)
        text = f'{head},\n "body": [\n  {rows}\n ]\n}}\n'
    else:
        text = f'{head},\n "body": {json.dumps(body, indent=1)}\n}}\n'
    path.write_text(text)
    logger.info("wrote %s (%.1f KB)", path, path.stat().st_size / 1024)


def read(data_dir: Path, name: str, symbols: list[str], start: pd.Timestamp | None = None,
         end: pd.Timestamp | None = None) -> pd.DataFrame:
    filters: list[tuple[str, str, Any]] = [("symbol", "in", symbols)]
    if start is not None:
        filters.append(("timestamp", ">=", start))
    if end is not None:
        filters.append(("timestamp", "<", end))
    df = pd.read_parquet(data_dir / name, filters=filters)
    return df.sort_values(["symbol", "timestamp"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Yahoo
# --------------------------------------------------------------------------------------------

def market_open_epoch_s(day: pd.Timestamp | str, hour: int = 9, minute: int = 30) -> int:
    """Epoch seconds of ``hour:minute`` New York time on the calendar date of ``day``."""
    d = pd.Timestamp(day).date()
    return int(pd.Timestamp(d.year, d.month, d.day, hour, minute, tzinfo=NEW_YORK).timestamp())


def dividend_factors(bars: pd.DataFrame, dividends: list[tuple[str, float]]) -> np.ndarray:
    """Per-row factor ``adjusted / raw`` implied by ``dividends`` (Yahoo's CRSP-style method).

    For a dividend ``D`` with ex-date ``t`` every earlier row is scaled by
    ``f = 1 - D / raw_close[t-1]``; with ``raw = adj / f`` this gives ``f = adj / (adj + D)``.
    """
    dates = bars["timestamp"].dt.strftime("%Y-%m-%d").to_numpy()
    factor = np.ones(len(bars))
    for ex_date, amount in sorted(dividends, reverse=True):
        i = int(np.searchsorted(dates, ex_date))
        if not 0 < i < len(bars) or dates[i] != ex_date:
            raise ValueError(f"ex-date {ex_date} is not a trading day inside the window")
        prev_raw_close = bars["close"].iloc[i - 1] / factor[i - 1]
        factor[:i] *= 1.0 - amount / prev_raw_close
    return factor


def yahoo_chart(symbol: str, bars: pd.DataFrame, history: pd.DataFrame, meta_row: pd.Series) -> dict:
    """A v8 chart response for daily ``bars`` (adjusted source prices) of ``symbol``."""
    factor = dividend_factors(bars, YAHOO_DIVIDENDS.get(symbol, []))
    raw = {c: (bars[c].to_numpy() / factor).tolist() for c in ("open", "high", "low", "close")}
    ts = [market_open_epoch_s(t) for t in bars["timestamp"]]
    last_day = bars["timestamp"].iloc[-1]
    before = history[history["timestamp"] < bars["timestamp"].iloc[0]]
    prev_close = float(before["close"].iloc[-1] / factor[0])
    exchange_name, full_name = YAHOO_EXCHANGES[str(meta_row["exchange"])]
    offset_s = int(pd.Timestamp(last_day.date()).tz_localize(NEW_YORK).utcoffset().total_seconds())
    tz_abbr = "EDT" if offset_s == -4 * 3600 else "EST"

    def period(h0: int, m0: int, h1: int, m1: int) -> dict[str, Any]:
        return {"timezone": tz_abbr, "start": market_open_epoch_s(last_day, h0, m0),
                "end": market_open_epoch_s(last_day, h1, m1), "gmtoffset": offset_s}

    meta = {
        "currency": "USD", "symbol": symbol, "exchangeName": exchange_name,
        "fullExchangeName": full_name, "instrumentType": "EQUITY",
        "firstTradeDate": market_open_epoch_s(history["timestamp"].iloc[0]),
        "regularMarketTime": market_open_epoch_s(last_day, 16, 0),
        "hasPrePostMarketData": True, "gmtoffset": offset_s, "timezone": tz_abbr,
        "exchangeTimezoneName": "America/New_York", "regularMarketPrice": raw["close"][-1],
        "fiftyTwoWeekHigh": max(raw["high"]), "fiftyTwoWeekLow": min(raw["low"]),
        "regularMarketDayHigh": raw["high"][-1], "regularMarketDayLow": raw["low"][-1],
        "regularMarketVolume": int(bars["volume"].iloc[-1]),
        "longName": str(meta_row["name"]), "shortName": str(meta_row["name"]),
        "chartPreviousClose": prev_close, "priceHint": 2,
        "currentTradingPeriod": {"pre": period(4, 0, 9, 30), "regular": period(9, 30, 16, 0),
                                 "post": period(16, 0, 20, 0)},
        "dataGranularity": "1d", "range": "", "validRanges": VALID_RANGES,
    }
    events: dict[str, dict[str, Any]] = {}
    for ex_date, amount in YAHOO_DIVIDENDS.get(symbol, []):
        t = market_open_epoch_s(ex_date)
        events.setdefault("dividends", {})[str(t)] = {"amount": amount, "date": t}
    for day, numerator, denominator in YAHOO_SPLITS.get(symbol, []):
        t = market_open_epoch_s(day)
        events.setdefault("splits", {})[str(t)] = {
            "date": t, "numerator": numerator, "denominator": denominator,
            "splitRatio": f"{numerator}:{denominator}"}
    result = {"meta": meta, "timestamp": ts, "events": events, "indicators": {
        "quote": [{"open": raw["open"], "high": raw["high"], "low": raw["low"],
                   "close": raw["close"], "volume": bars["volume"].astype(int).tolist()}],
        "adjclose": [{"adjclose": bars["close"].tolist()}]}}
    return {"chart": {"result": [result], "error": None}}


def build_yahoo(data_dir: Path, out: Path) -> None:
    symbols = sorted(YAHOO_DIVIDENDS)
    history = read(data_dir, STOCKS_FILE, symbols, end=pd.Timestamp(YAHOO_END, tz="UTC"))
    meta = pd.read_parquet(data_dir / STOCKS_META_FILE).set_index("symbol")
    start = pd.Timestamp(YAHOO_START, tz="UTC")
    for symbol in symbols:
        hist = history[history["symbol"] == symbol]
        bars = hist[hist["timestamp"] >= start].reset_index(drop=True)
        period1 = market_open_epoch_s(YAHOO_START, 0, 0)
        period2 = market_open_epoch_s(YAHOO_END, 0, 0)
        url = (f"https://query2.finance.yahoo.com/v8/finance/chart/{symbol}?period1={period1}"
               f"&period2={period2}&interval=1d&includePrePost=False&events=div%2Csplits%2CcapitalGains")
        write_json(out / "yahoo" / f"chart_{symbol}.json",
                   envelope(url, yahoo_chart(symbol, bars, hist, meta.loc[symbol])))
    url = f"https://query2.finance.yahoo.com/v8/finance/chart/{UNKNOWN_TICKER}?range=1d&interval=1d"
    body = {"chart": {"result": None, "error": {
        "code": "Not Found", "description": "No data found, symbol may be delisted"}}}
    write_json(out / "yahoo" / "chart_not_found.json", envelope(url, body, status=404))
    url = f"https://query2.finance.yahoo.com/v10/finance/quoteSummary/{UNKNOWN_TICKER}"
    body = {"quoteSummary": {"result": None, "error": {
        "code": "Not Found", "description": f"Quote not found for symbol: {UNKNOWN_TICKER}"}}}
    write_json(out / "yahoo" / "quote_summary_not_found.json", envelope(url, body, status=404))


# --------------------------------------------------------------------------------------------
# Binance
# --------------------------------------------------------------------------------------------

def kline_rows(bars: pd.DataFrame, *, mark: bool = False) -> list[list[Any]]:
    rows = []
    for r in bars.itertuples(index=False):
        open_ms = int(r.timestamp.value // 1_000_000)
        volume = 0.0 if mark else float(r.volume)
        quote_volume = volume * (r.high + r.low + r.close) / 3.0
        rows.append([open_ms, num(r.open), num(r.high), num(r.low), num(r.close), num(volume),
                     open_ms + HOUR_MS - 1, f"{quote_volume:.8f}", 0, "0", "0", "0"])
    return rows


def perp_symbol_info(base: str, price_precision: int, tick: str, onboard_ms: int) -> dict[str, Any]:
    return {
        "symbol": f"{base}USDT", "pair": f"{base}USDT", "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": onboard_ms, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "baseAsset": base,
        "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": price_precision,
        "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": ["PoW"], "settlePlan": 0,
        "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "4529764", "tickSize": tick},
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "100"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"}],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]}


def spot_symbol_info() -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
        "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
             "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
             "stepSize": "0.00001000"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}],
        "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]}


def build_binance(data_dir: Path, out: Path) -> None:
    perp = ["BTC/USDT:USDT"]
    server_ms = int((KLINES_START + pd.Timedelta(hours=KLINES_ROWS)).value // 1_000_000)
    info = {"timezone": "UTC", "serverTime": server_ms, "futuresType": "U_MARGINED",
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": 2400}],
            "exchangeFilters": [], "assets": [],
            "symbols": [perp_symbol_info("BTC", 2, "0.10", 1569398400000),
                        perp_symbol_info("ETH", 2, "0.01", 1569398400000)]}
    write_json(out / "binanceusdm" / "exchangeInfo.json",
               envelope("https://fapi.binance.com/fapi/v1/exchangeInfo", info))

    end = KLINES_START + pd.Timedelta(hours=KLINES_ROWS)
    start_ms, end_ms = KLINES_START.value // 1_000_000, end.value // 1_000_000
    bars = read(data_dir, PERP_FILE, perp, KLINES_START, end)
    marks = read(data_dir, MARK_FILE, perp, KLINES_START, end)
    if len(bars) != KLINES_ROWS or len(marks) != KLINES_ROWS:
        raise ValueError(f"expected {KLINES_ROWS} rows, got {len(bars)} bars, {len(marks)} marks")
    for name, frame, mark in (("klines", bars, False), ("markPriceKlines", marks, True)):
        url = (f"https://fapi.binance.com/fapi/v1/{name}?interval=1h&symbol=BTCUSDT"
               f"&startTime={start_ms}&endTime={end_ms - 1}&limit=1500")
        write_json(out / "binanceusdm" / f"{name}_BTCUSDT_1h.json",
                   envelope(url, kline_rows(frame, mark=mark)))

    funding = read(data_dir, FUNDING_FILE, perp, FUNDING_START, FUNDING_END)
    mark_at = read(data_dir, MARK_FILE, perp, FUNDING_START, FUNDING_END).set_index("timestamp")["open"]
    records = []
    for r in funding.itertuples(index=False):
        rate = f"{r.funding_rate:.8f}"
        if float(rate) != r.funding_rate:
            rate = num(r.funding_rate)
        mark_price = f"{mark_at[r.timestamp]:.8f}" if r.timestamp in mark_at.index else ""
        records.append({"symbol": "BTCUSDT", "fundingTime": int(r.timestamp.value // 1_000_000),
                        "fundingRate": rate, "markPrice": mark_price})
    url = (f"https://fapi.binance.com/fapi/v1/fundingRate?symbol=BTCUSDT"
           f"&startTime={FUNDING_START.value // 1_000_000}&limit=1000")
    write_json(out / "binanceusdm" / "fundingRate_BTCUSDT.json", envelope(url, records))

    write_json(out / "binanceusdm" / "error_invalid_symbol.json", envelope(
        "https://fapi.binance.com/fapi/v1/klines?interval=1h&symbol=ETHUSDT",
        {"code": -1121, "msg": "Invalid symbol."}, status=400))
    write_json(out / "binanceusdm" / "error_rate_limited.json", envelope(
        "https://fapi.binance.com/fapi/v1/klines?interval=1h&symbol=BTCUSDT",
        {"code": -1003, "msg": "Too many requests; current limit of IP(203.0.113.7) is 2400 "
                               "requests per minute. Please use the websocket for live updates "
                               "to avoid polling the API."}, status=429))

    spot_end = SPOT_START + pd.Timedelta(hours=SPOT_ROWS)
    spot = read(data_dir, SPOT_FILE, ["BTC/USDT"], SPOT_START, spot_end)
    spot_info = {"timezone": "UTC", "serverTime": int(spot_end.value // 1_000_000),
                 "rateLimits": [], "exchangeFilters": [], "symbols": [spot_symbol_info()]}
    write_json(out / "binance" / "exchangeInfo.json",
               envelope("https://api.binance.com/api/v3/exchangeInfo", spot_info))
    url = (f"https://api.binance.com/api/v3/klines?interval=1h&symbol=BTCUSDT"
           f"&startTime={SPOT_START.value // 1_000_000}&limit={SPOT_ROWS}")
    write_json(out / "binance" / "klines_BTCUSDT_1h.json", envelope(url, kline_rows(spot)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder with the shared Parquet files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="fixture folder to (re)write (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_yahoo(args.data_dir, args.out)
    build_binance(args.data_dir, args.out)
    total_kb = sum(p.stat().st_size for p in args.out.rglob("*.json")) / 1024
    logger.info("fixtures in %s: %.1f KB in all", args.out, total_kb)


if __name__ == "__main__":
    main()

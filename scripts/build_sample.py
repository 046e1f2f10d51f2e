"""Build the embedded sample in data/sample/ from the real data in ../shared/data/.

Run from the repository root:  .venv/bin/python scripts/build_sample.py [--shared ../shared/data]

The selection is deterministic (no randomness): stocks are the most traded names of each sector
with full 1995-2017 history, so the sample is re-buildable bit for bit. Data is copied as is
(faults included): the import path validates and repairs it, which is part of what the demo
shows. Files are zstd-19 Parquet to stay near 15 MB in all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

STOCKS_START, STOCKS_END = "1995-01-01", "2017-12-31"
STOCKS_PER_SECTOR = 9
PERPS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT", "ADA/USDT:USDT", "LTC/USDT:USDT",
         "BCH/USDT:USDT", "SOL/USDT:USDT", "DOGE/USDT:USDT", "1000PEPE/USDT:USDT", "LINK/USDT:USDT"]
PERPS_START, PERPS_END = "2024-04-01", "2026-01-01"
# majors, plus the data faults a loader must handle: LUNA (later collapsed), BTT (old token),
# COCOS (x1000 redenomination), BTCST (1/10 token split), ALICE and TKO (listing-hour spikes).
SPOT = ["BTC/USDT", "ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LUNA/USDT",
        "BTT/USDT", "COCOS/USDT", "BTCST/USDT", "ALICE/USDT", "TKO/USDT"]
INDEX = ["^GSPC", "SPY"]


def write(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, path, compression="zstd", compression_level=19)
    print(f"{path}: {len(frame):,} rows, {path.stat().st_size / 1e6:.2f} MB")


def utc(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def pick_stocks(shared: Path) -> pd.DataFrame:
    meta = pd.read_parquet(shared / "stocks_metadata.parquet")
    bars = pd.read_parquet(shared / "us_stocks_daily_1500_stooq_1962_2017.parquet",
                           columns=["timestamp", "close", "volume", "symbol"])
    span = bars.groupby("symbol")["timestamp"].agg(["min", "max"])
    full = span[(span["min"] <= utc(STOCKS_START)) & (span["max"] >= utc("2017-11-01"))].index
    recent = bars[(bars["timestamp"] >= utc(STOCKS_START)) & bars["symbol"].isin(full)]
    dollar_volume = (recent["close"] * recent["volume"]).groupby(recent["symbol"]).median()
    meta = meta[meta["symbol"].isin(full)].assign(dollar_volume=meta["symbol"].map(dollar_volume))
    known = meta[meta["sector_harmonized"] != "Unknown"]
    chosen = (known.sort_values(["sector_harmonized", "dollar_volume", "symbol"], ascending=[True, False, True])
              .groupby("sector_harmonized").head(STOCKS_PER_SECTOR))
    unknown = meta[meta["sector_harmonized"] == "Unknown"].nlargest(1, "dollar_volume")
    return pd.concat([chosen, unknown]).sort_values("symbol")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("data/sample"))
    args = parser.parse_args()
    shared, out = args.shared, args.out
    out.mkdir(parents=True, exist_ok=True)

    meta = pick_stocks(shared)
    keep_meta = ["symbol", "name", "sector_harmonized", "exchange", "in_sp500_2017", "in_sp400_2017", "license"]
    write(meta[keep_meta].rename(columns={"sector_harmonized": "sector"}), out / "stocks_metadata.parquet")
    stock_filter = [("symbol", "in", list(meta["symbol"])), ("timestamp", ">=", utc(STOCKS_START))]
    stocks = pd.read_parquet(shared / "us_stocks_daily_1500_stooq_1962_2017.parquet", filters=stock_filter)
    write(stocks.sort_values(["symbol", "timestamp"]), out / "stocks_daily.parquet")

    index = pd.read_parquet(shared / "market_index_daily.parquet",
                            filters=[("symbol", "in", INDEX), ("timestamp", ">=", utc(STOCKS_START))])
    write(index.drop(columns=["adj_close"]).sort_values(["symbol", "timestamp"]), out / "index_daily.parquet")

    window = [("symbol", "in", PERPS), ("timestamp", ">=", utc(PERPS_START)), ("timestamp", "<", utc(PERPS_END))]
    for name, file in [("perp_1h", "crypto_perp_1h_binance_usdm.parquet"),
                       ("perp_mark_1h", "crypto_perp_mark_price_1h_binance_usdm.parquet"),
                       ("perp_funding", "crypto_funding_rates_binance_usdm.parquet")]:
        frame = pd.read_parquet(shared / file, filters=window)
        write(frame.sort_values(["symbol", "timestamp"]), out / f"{name}.parquet")

    spot = pd.read_parquet(shared / "crypto_spot_1h_binance_126pairs_2020_2021.parquet",
                           filters=[("symbol", "in", SPOT)])
    write(spot.sort_values(["symbol", "timestamp"]), out / "spot_1h.parquet")
    crypto_meta = pd.read_parquet(shared / "crypto_metadata.parquet")
    crypto_meta = crypto_meta[crypto_meta["symbol"].isin(PERPS + SPOT)]
    write(crypto_meta[["symbol", "base", "quote", "market_type", "exchange", "note", "license"]],
          out / "crypto_metadata.parquet")
    total = sum(p.stat().st_size for p in out.glob("*.parquet"))
    print(f"total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

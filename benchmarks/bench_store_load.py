"""Load the whole stored stock universe into numpy: raytrade's store vs the obvious pandas way.

Target (issue 2): 1,500 daily stock series in under 2 s on the 2-core dev machine.
Peer measured in the same run: ``pd.read_parquet`` per symbol file + ``to_numpy`` (what most
projects do), on the very same files.

Needs the full data set (``../shared/data``); builds a store from it once under ``/tmp``:
    .venv/bin/python benchmarks/bench_store_load.py [--shared ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.data.repair import repair  # noqa: E402
from app.data.schema import DatasetKey, canonicalize  # noqa: E402
from app.data.store import ParquetStore  # noqa: E402

KEY = DatasetKey("stooq", "stock", "1d")


def build_store(shared: Path, root: Path) -> ParquetStore:
    store = ParquetStore(root)
    if len(store.symbols(KEY)) >= 1500:
        return store
    print(f"building a store of the 1,500-stock universe under {root} (once) ...", flush=True)
    raw = pd.read_parquet(shared / "us_stocks_daily_1500_stooq_1962_2017.parquet")
    fixed, _ = repair(canonicalize(raw))
    store.write(KEY, fixed, mode="replace")
    return store


def pandas_per_file(store: ParquetStore) -> int:
    rows = 0
    for symbol in store.symbols(KEY):
        frame = pd.read_parquet(store.path_for(KEY, symbol))
        arr = frame[["open", "high", "low", "close", "volume"]].to_numpy()
        ts = frame["timestamp"].to_numpy()
        assert len(ts) == len(arr)
        rows += len(arr)
    return rows


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--root", type=Path, default=Path("/tmp/raytrade-bench-store"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (args.shared / "us_stocks_daily_1500_stooq_1962_2017.parquet").exists():
        print(f"skipped: {args.shared} has no full stock data set")
        return
    store = build_store(args.shared, args.root)
    market = store.load_arrays(KEY)
    assert market.n_symbols == 1500 and np.isfinite(market.ohlcv).all()
    ours_med, ours_min = timed(lambda: store.load_arrays(KEY), args.repeats)
    peer_med, peer_min = timed(lambda: pandas_per_file(store), args.repeats)
    print(f"\nload {market.n_symbols:,} daily series, {len(market.ts_ns):,} bars, into numpy")
    print(f"{'method':<34}{'median s':>10}{'best s':>10}")
    print(f"{'raytrade ParquetStore.load_arrays':<34}{ours_med:>10.3f}{ours_min:>10.3f}")
    print(f"{'pandas read_parquet per file':<34}{peer_med:>10.3f}{peer_min:>10.3f}")
    print(f"speed-up vs pandas: {peer_med / ours_med:.1f}x; target < 2 s: "
          f"{'met' if ours_med < 2.0 else 'NOT met'} ({ours_med:.2f} s)")


if __name__ == "__main__":
    main()

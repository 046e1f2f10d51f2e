"""StockSwing-v0 single face on the REAL embedded sample (93 stocks, store-backed), not a slice.

    .venv/bin/python benchmarks/bench_envs_full_sample.py [--store DIR] [--seconds 3]

Imports ``data/sample`` into ``--store`` if that store has no stooq daily stocks yet, builds the
env from the whole stock universe with the S&P 500 index (exactly as a training run does, through
:func:`app.runs.env_factory.create_env`) and times ``env.step(0)`` with resets at episode ends.
This is the per-step gathered path that issue 12 measures; the synthetic benchmarks in
``bench_envs.py`` precompute and do not show it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.data.sample import import_directory  # noqa: E402
from app.data.schema import DatasetKey, MarketType  # noqa: E402
from app.data.store import ParquetStore  # noqa: E402
from app.runs.env_factory import DataSpec, create_env  # noqa: E402

STOCKS = DatasetKey("stooq", MarketType("stock"), "1d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/raytrade-bench-store"))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    store = ParquetStore(args.store)
    if not args.store.is_dir() or STOCKS not in set(store.keys()):
        import_directory(store, ROOT / "data" / "sample")
    symbols = tuple(store.symbols(STOCKS))
    spec = DataSpec(str(args.store), "stooq", "stock", "1d", symbols, "stooq", "index", "^GSPC")
    env = create_env("raytrade/StockSwing-v0", {"data": spec.to_dict()})
    env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - t0)
    print(f"StockSwing-v0 single face, {len(symbols)} real stocks (store-backed): {rate:,.0f} steps/s")


if __name__ == "__main__":
    main()

"""Gathered vs precomputed observations, per env, on real data, with gym-anytrading as the peer.

    .venv/bin/python benchmarks/bench_env_gather.py [--quick] [--datasets sample,large]
        [--envs stock_swing,crypto_futures,portfolio] [--rounds 3] [--seconds 0.5] [--shared ../shared/data]

An env either precomputes every row's market observation (tables: ~3.8 kB a row for StockSwing,
so 2 GB for the 93-stock sample and 23 GB for 1,500 stocks) or gathers the windows per step
(:mod:`envs.core.features`). For StockSwing-v0, CryptoFutures-v0 and Portfolio-v0 (4 assets),
single face and vector face (B=256), this times both paths, interleaved round by round (machine
noise hits both alike; the median is reported), and prints the ratio precomputed / gathered
(issue 12's target: at most 2). The peer, gym-anytrading's ``StocksEnv`` (window 50, random
actions), runs on the longest series of the same data in the same rounds.

Datasets: ``sample`` is ``data/sample`` imported into a store (93 stocks with the S&P 500 index,
10 perpetuals with funding and mark prices), loaded through the store as a training run does;
``large`` is ``../shared/data`` (1,500 stocks 1962-2017, 32 perpetuals), imported once into its
own store (symbols whose faults no repair fixes are left out, and named). ``--quick`` keeps its
first 150 stocks and 8 perpetuals. Where the tables do not fit the memory budget an env would
choose (``precompute_max_mb`` unset: a share of the available memory), the precomputed side runs
on the first symbols that fit, and the row says so. Memory: what each env's engine holds
besides the market (per-row gather arrays + precomputed tables), the process's resident memory
(RSS) with both envs of the row alive, and its peak at the end.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from envbench import Bench, single_bench, vector_bench  # noqa: E402

from envs.core.market import MarketArrays  # noqa: E402
from envs.core.memory import precompute_budget_mb  # noqa: E402

STOCK_FILE = "us_stocks_daily_1500_stooq_1962_2017.parquet"
LARGE_FILES = {  # file in ../shared/data -> (source, market type, timeframe, kind)
    "market_index_daily.parquet": ("stooq", "index", "1d", "bars"),
    STOCK_FILE: ("stooq", "stock", "1d", "bars"),
    "crypto_perp_1h_binance_usdm.parquet": ("binanceusdm", "swap", "1h", "bars"),
    "crypto_perp_mark_price_1h_binance_usdm.parquet": ("binanceusdm", "swap", "1h", "mark"),
    "crypto_funding_rates_binance_usdm.parquet": ("binanceusdm", "swap", "events", "funding"),
}
QUICK_STOCKS, QUICK_PERPS = 150, 8
B = 256
ENVS = ("stock_swing", "crypto_futures", "portfolio")


def rss_mb() -> tuple[float, float]:
    """``(now, peak)``: resident memory of this process in MB (Linux ``/proc``; else the peak
    from ``resource`` for both)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024, peak
    except OSError:
        pass
    return peak, peak


def env_mb(env) -> str:
    """What the env's engine holds besides the market: its per-row gather arrays and its
    precomputed tables (plus the single face's row caches, estimated)."""
    from envs.core.tables import ROW_VIEWS_BYTES

    engine = env.engine
    tables = 0.0
    if engine._table is not None:
        tables = engine._table.nbytes
    elif engine._tables is not None:
        tables = sum(t.nbytes for t in engine._tables.values())
        tables += ROW_VIEWS_BYTES * len(engine.market.ts_ns) if engine._row_views is not None else 0
    return f"{engine._base.nbytes() / 2**20:,.0f}+{tables / 2**20:,.0f} MB"


# --- data -----------------------------------------------------------------------------------
def _key(source: str, market_type: str, timeframe: str, kind: str = "bars"):
    from app.data.schema import DatasetKey, Kind, MarketType

    return DatasetKey(source, MarketType(market_type), timeframe, Kind(kind))


def sample_store(store_dir: Path):
    from app.data.sample import import_directory
    from app.data.store import ParquetStore

    store = ParquetStore(store_dir)
    if not store_dir.is_dir() or _key("stooq", "stock", "1d") not in set(store.keys()):
        print(f"importing data/sample into {store_dir} ...", flush=True)
        import_directory(store, ROOT / "data" / "sample")
    return store


def large_store(store_dir: Path, shared: Path):
    """Import ``LARGE_FILES`` from ``shared`` into ``store_dir`` once (minutes for 6M stock rows).
    Symbols with faults that no enabled repair fixes are dropped and named."""
    from app.data.ingest import ingest_frame
    from app.data.sources.file_source import FileSource
    from app.data.store import ParquetStore
    from app.errors import DataValidationError

    store = ParquetStore(store_dir)
    have = set(store.keys()) if store_dir.is_dir() else set()
    for name, (source, market_type, timeframe, kind) in LARGE_FILES.items():
        key = _key(source, market_type, timeframe, kind)
        if key in have:
            continue
        print(f"importing {name} into {store_dir} (once) ...", flush=True)
        frame = FileSource(shared / name, kind=key.kind).read()
        calendar = None
        if market_type == "stock":
            from app.data.schema import ts_ns

            calendar = ts_ns(store.read(_key("stooq", "index", "1d"), ["^GSPC"])["timestamp"])
        for _ in range(3):
            try:
                ingest_frame(store, key, frame, name=name, calendar_ts_ns=calendar, mode="replace")
                break
            except DataValidationError as exc:
                bad = sorted({f.symbol for f in exc.faults if f.severity == "error"})
                print(f"  {name}: leaving out {bad} (faults no repair fixes)", flush=True)
                frame = frame[~frame["symbol"].isin(bad)]
    return store


def load(store, stock_symbols: int | None, perp_symbols: int | None):
    """``{"stock": (market, index), "perp": (market, None)}`` through the store (as training does)."""
    from app.data.market import load_market

    stock_key, perp_key = _key("stooq", "stock", "1d"), _key("binanceusdm", "swap", "1h")
    stocks = store.symbols(stock_key)[:stock_symbols]
    perps = store.symbols(perp_key)[:perp_symbols]
    market = store.load_arrays(stock_key, stocks)
    index = store.load_arrays(_key("stooq", "index", "1d"), ["^GSPC"])
    return {"stock": (market, index), "perp": (load_market(store, perp_key, perps), None)}


# --- envs -----------------------------------------------------------------------------------
def make_env(name: str, data: dict, *, vector: bool, precompute_mb: float | None, symbols: int | None = None):
    """``name``'s single (or vector, B=256) face on ``data``, its first ``symbols`` symbols."""
    from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv
    from envs.portfolio import PortfolioEnv, PortfolioVectorEnv
    from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv

    market, index = data["perp" if name == "crypto_futures" else "stock"]
    if symbols is not None:
        market = market.select(list(market.symbols[:symbols]))
    kw: dict = {"market": market, "index": index, "precompute_max_mb": precompute_mb}
    if name == "portfolio":
        kw["n_assets"] = 4
    single, vec = {"stock_swing": (StockSwingEnv, StockSwingVectorEnv),
                   "crypto_futures": (CryptoFuturesEnv, CryptoFuturesVectorEnv),
                   "portfolio": (PortfolioEnv, PortfolioVectorEnv)}[name]
    return vec(B, **kw) if vector else single(**kw)


def table_mb(env) -> float:
    """MB of precomputed tables (plus the single face's row caches) the env needs for its rows."""
    from envs.core.tables import ROW_VIEWS_BYTES

    engine = env.engine
    extra = 0 if engine.batched else ROW_VIEWS_BYTES
    return len(engine.market.ts_ns) * (engine.spec.market_bytes_per_row() + extra) / 2**20


def build(factory: Callable[[], object]) -> tuple[object, float]:
    """``(env, build seconds)``."""
    gc.collect()
    t0 = time.perf_counter()
    env = factory()
    return env, time.perf_counter() - t0


def precomputed_symbols(name: str, data: dict, need_mb: float, budget_mb: float) -> int | None:
    """None if the whole market's tables fit ``budget_mb``, else the symbols (from the first)
    whose rows fit, with a margin for the portfolio's gap-filled calendar."""
    if need_mb <= budget_mb:
        return None
    market = data["perp" if name == "crypto_futures" else "stock"][0]
    share = 0.8 * budget_mb / need_mb
    rows = np.cumsum(market.lengths)
    return max(int(np.searchsorted(rows, share * rows[-1], "right")), 4)


def peer_bench(data: dict, name: str) -> tuple[Bench | None, str]:
    """gym-anytrading ``StocksEnv`` on the longest series of the env's data (closes only)."""
    try:
        import pandas as pd
        from gym_anytrading.envs import StocksEnv
    except ImportError:
        return None, "gym-anytrading not installed (pip install -e .[bench]): peer skipped"
    market: MarketArrays = data["perp" if name == "crypto_futures" else "stock"][0]
    i = int(np.argmax(market.lengths))
    close = market.ohlcv[market.rows(i), 3]
    env = StocksEnv(df=pd.DataFrame({"Close": close}), window_size=50, frame_bound=(50, len(close)))
    return single_bench(env), f"{market.symbols[i]}, {len(close):,} bars"


def run_env(dataset: str, name: str, data: dict, rounds: int, seconds: float) -> list[str]:
    """Both faces of env ``name``, one face at a time (its gathered and precomputed envs and the
    peer interleaved round by round), so that at most two envs are alive at once."""
    budget_mb, _ = precompute_budget_mb(None)
    lines: list[str] = []
    peer, peer_note = peer_bench(data, name)
    peer_rates: list[float] = []
    for face, vector in (("single", False), (f"vector {B}", True)):
        gathered, g_s = build(lambda v=vector: make_env(name, data, vector=v, precompute_mb=0.0))
        need = table_mb(gathered)
        k = precomputed_symbols(name, data, need, budget_mb)
        pre, p_s = build(lambda v=vector, k=k: make_env(name, data, vector=v, precompute_mb=budget_mb, symbols=k))
        assert not gathered.engine.precomputed and pre.engine.precomputed, "modes not as asked"
        bench = single_bench if not vector else (lambda e: vector_bench(e, n_actions=32))
        benches = {"gathered": bench(gathered), "precomputed": bench(pre)} | ({"peer": peer} if peer else {})
        results: dict[str, list[float]] = {k: [] for k in benches}
        for _ in range(rounds):
            for key, b in benches.items():
                results[key].append(b(seconds))
        peer_rates += results.get("peer", [])
        g, p = statistics.median(results["gathered"]), statistics.median(results["precomputed"])
        vs_peer = f"{g / statistics.median(results['peer']):.2f}x" if peer and not vector else ""
        rows_g, rows_p = len(gathered.engine.market.ts_ns), len(pre.engine.market.ts_ns)
        where = "" if k is None else f"; precomputed: first {k} symbols, {rows_p:,} rows (all: {need:,.0f} MB)"
        lines.append(f"{dataset:7s} {name:15s} {face:11s} {g:>12,.0f} {p:>12,.0f} {p / g:>7.2f} "
                     f"{'yes' if p / g <= 2.0 else 'NO':>4s} {vs_peer:>8s}  {rows_g:,} rows; arrays+tables "
                     f"{env_mb(gathered)} / {env_mb(pre)}; build {g_s:.1f} / {p_s:.1f} s; RSS "
                     f"{rss_mb()[0]:,.0f} MB{where}")
        print(lines[-1], flush=True)
        del gathered, pre, benches
        gc.collect()
    if peer_rates:
        lines.append(f"{dataset:7s} {'gym-anytrading':15s} {'single':11s} {statistics.median(peer_rates):>12,.0f} "
                     f"{'':>12s} {'':>7s} {'':>4s} {'1.00x':>8s}  StocksEnv w=50 on {peer_note}")
    else:
        lines.append(f"{dataset:7s} {peer_note}")
    print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sample,large")
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--quick", action="store_true", help=f"large: the first {QUICK_STOCKS} stocks, {QUICK_PERPS} perps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement and round")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sample-store", type=Path, default=Path("/tmp/raytrade-bench-store"))
    parser.add_argument("--large-store", type=Path, default=Path("/tmp/raytrade-bench-large-store"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log each env's precompute decision")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    budget_mb, why = precompute_budget_mb(None)
    print(f"precompute budget an env would choose here: {budget_mb:,.0f} MB ({why})")
    print(f"median of {args.rounds} interleaved rounds of {args.seconds}s; env-steps/s; ratio = precomputed / "
          "gathered (target <= 2); vs peer = gathered single / gym-anytrading single\n")
    header = (f"{'data':7s} {'env':15s} {'face':11s} {'gathered':>12s} {'precomputed':>12s} {'ratio':>7s} "
              f"{'<=2':>4s} {'vs peer':>8s}  rows; memory, build: gathered / precomputed; RSS with both")
    print(header + "\n" + "-" * len(header), flush=True)
    out: list[str] = []
    for dataset in args.datasets.split(","):
        if dataset == "sample":
            data = load(sample_store(args.sample_store), None, None)
        elif dataset == "large":
            if not (args.shared / STOCK_FILE).is_file():
                print(f"large: {args.shared / STOCK_FILE} not found: skipped")
                continue
            store = large_store(args.large_store, args.shared)
            data = load(store, QUICK_STOCKS if args.quick else None, QUICK_PERPS if args.quick else None)
            dataset = "quick" if args.quick else "large"
        else:
            raise SystemExit(f"--datasets: unknown {dataset!r} (sample, large)")
        for name in args.envs.split(","):
            out += run_env(dataset, name, data, args.rounds, args.seconds)
        del data
        gc.collect()
    print("\n" + header + "\n" + "-" * len(header) + "\n" + "\n".join(out))
    print(f"\npeak RSS of this process: {rss_mb()[1]:,.0f} MB")


if __name__ == "__main__":
    main()

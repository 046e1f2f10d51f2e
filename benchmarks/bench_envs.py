"""Env throughput: StockSwing-v0 (single and vector faces) vs gym-anytrading, in the same run.

    .venv/bin/python benchmarks/bench_envs.py [--rounds 5] [--seconds 0.4]

Every measurement runs ``--rounds`` times, interleaved with the others (so machine noise hits all
of them alike), and the median is reported. Steps include resets at episode ends. The peer is
gym-anytrading's ``StocksEnv`` (window 50, its GOOGL sample, random actions); if it is not
installed (``pip install gym-anytrading``), its rows are skipped and ratios are not computed.

Targets from the envs issue: the single env with its full Dict observation at least as fast as
the peer's single env; the vector face at B=256 at least 20x the peer's single env (env-steps/s).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from envbench import Bench, arguments, peer_benches, run_table, single_bench, vector_bench  # noqa: E402

import envs  # noqa: E402  (registers the ids)
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv  # noqa: E402


def main() -> None:
    args = arguments(__doc__)
    t0 = time.perf_counter()
    single_default = StockSwingEnv()  # buy_only + excess_horizon, synthetic market, Dict obs
    build_s = time.perf_counter() - t0
    benches: dict[str, tuple[Bench, str, float | None]] = {
        name: (bench, "single", None) for name, bench in peer_benches().items()}
    benches["StockSwing-v0 single (buy_only, excess_horizon)"] = (single_bench(single_default), "single", 1.0)
    benches["StockSwing-v0 single (swing, log_return)"] = (
        single_bench(StockSwingEnv(mode="swing", reward="log_return")), "single", 1.0)
    benches["StockSwing-v0 via gym.make"] = (single_bench(gym.make(envs.STOCK_SWING)), "single", None)
    for b in (256, 1024):
        benches[f"StockSwing-v0 vector B={b}"] = (vector_bench(StockSwingVectorEnv(b)), f"vector {b}",
                                                  20.0 if b == 256 else None)
    benches["StockSwing-v0 vector B=256, no info"] = (
        vector_bench(StockSwingVectorEnv(256, vector_info=False)), "vector 256", None)
    benches["StockSwing-v0 vector B=256, on-the-fly windows"] = (
        vector_bench(StockSwingVectorEnv(256, precompute_max_mb=0.0)), "vector 256", None)
    run_table(benches, rounds=args.rounds, seconds=args.seconds,
              note=f"StockSwing-v0 construction (synthetic market, 4 x 1500 bars, tables): {build_s * 1e3:.0f} ms")


if __name__ == "__main__":
    main()

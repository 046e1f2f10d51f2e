"""Env throughput: CryptoFutures-v0 (single and vector faces) vs gym-anytrading, in the same run.

    .venv/bin/python benchmarks/bench_envs_crypto.py [--rounds 5] [--seconds 0.4]

Same method as ``bench_envs.py`` (the shared harness is ``envbench.py``): every measurement
runs ``--rounds`` times, interleaved with the others (so machine noise hits all of them alike),
and the median is reported. Steps include resets at episode ends (liquidations included). The
peer is gym-anytrading's ``StocksEnv`` (window 50, its GOOGL sample, random actions); if it is
not installed (``pip install gym-anytrading``), its rows are skipped and ratios are not computed.

CryptoFutures-v0 does more per step than the peer (isolated margin, funding, a liquidation
check on the mark range, a Dict observation with 4h/daily context and a funding window); the
single face is the scalar engine (Python floats), the vector face one numpy engine over B envs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from envbench import Bench, arguments, peer_benches, run_table, single_bench, vector_bench  # noqa: E402

import envs  # noqa: E402
from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv  # noqa: E402


def main() -> None:
    args = arguments(__doc__)
    t0 = time.perf_counter()
    single = CryptoFuturesEnv()  # discrete levels, log_return, synthetic 2 x 4000 hourly bars, tables
    build_s = time.perf_counter() - t0
    benches: dict[str, tuple[Bench, str, float | None]] = {
        name: (bench, "single", None) for name, bench in peer_benches().items()}
    benches["CryptoFutures-v0 single (discrete)"] = (single_bench(single), "single", None)
    benches["CryptoFutures-v0 single (continuous)"] = (
        single_bench(CryptoFuturesEnv(action_mode="continuous")), "single", None)
    benches["CryptoFutures-v0 via gym.make"] = (single_bench(gym.make(envs.CRYPTO_FUTURES)), "single", None)
    benches["CryptoFutures-v0 vector B=256"] = (vector_bench(CryptoFuturesVectorEnv(256)), "vector 256", 20.0)
    benches["CryptoFutures-v0 vector B=256, no info"] = (
        vector_bench(CryptoFuturesVectorEnv(256, vector_info=False)), "vector 256", None)
    benches["CryptoFutures-v0 vector B=256, 20x (liquidations)"] = (
        vector_bench(CryptoFuturesVectorEnv(256, leverage=20.0)), "vector 256", None)
    benches["CryptoFutures-v0 vector B=256, on-the-fly windows"] = (
        vector_bench(CryptoFuturesVectorEnv(256, precompute_max_mb=0.0)), "vector 256", None)
    run_table(benches, rounds=args.rounds, seconds=args.seconds,
              note=f"CryptoFutures-v0 construction (synthetic perpetuals, 2 x 4000 hourly bars): {build_s * 1e3:.0f} ms")


if __name__ == "__main__":
    main()

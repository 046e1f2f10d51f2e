"""Env throughput: CryptoFutures-v0 (single and vector faces) vs gym-anytrading, in the same run.

    .venv/bin/python benchmarks/bench_envs_crypto.py [--rounds 5] [--seconds 0.4]

Same method as ``bench_envs.py`` (whose peer and bench helpers it reuses): every measurement
runs ``--rounds`` times, interleaved with the others (so machine noise hits all of them alike),
and the median is reported. Steps include resets at episode ends (liquidations included). The
peer is gym-anytrading's ``StocksEnv`` (window 50, its GOOGL sample, random actions); if it is
not installed (``pip install gym-anytrading``), its rows are skipped and ratios are not computed.

CryptoFutures-v0 does more per step than the peer (isolated margin, funding, a liquidation
check on the mark range, a Dict observation with 4h/daily context and a funding window); the
single face is the scalar engine (Python floats), the vector face one numpy engine over B envs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_envs import Bench, peer_benches, single_bench, vector_bench  # noqa: E402

import envs  # noqa: E402
from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv  # noqa: E402


def sampled_single_bench(env: gym.Env, seed: int = 0, n_actions: int = 4096) -> Bench:
    """``single_bench`` with actions sampled from the env's space (continuous Box actions)."""
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_actions)]
    env.reset(seed=seed)

    def run(seconds: float) -> float:
        steps, start = 0, time.perf_counter()
        while True:
            for a in actions:
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
            steps += len(actions)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps / elapsed

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4, help="per measurement and round")
    args = parser.parse_args()

    t0 = time.perf_counter()
    single = CryptoFuturesEnv()  # discrete levels, log_return, synthetic 2 x 4000 hourly bars, tables
    build_s = time.perf_counter() - t0
    n = single.action_space.n
    benches: dict[str, tuple[Bench, str]] = {name: (bench, "single") for name, bench in peer_benches().items()}
    benches["CryptoFutures-v0 single (discrete)"] = (single_bench(single, n), "single")
    benches["CryptoFutures-v0 single (continuous)"] = (
        sampled_single_bench(CryptoFuturesEnv(action_mode="continuous")), "single")
    benches["CryptoFutures-v0 via gym.make"] = (single_bench(gym.make(envs.CRYPTO_FUTURES), n), "single")
    benches["CryptoFutures-v0 vector B=256"] = (vector_bench(CryptoFuturesVectorEnv(256), n), "vector 256")
    benches["CryptoFutures-v0 vector B=256, no info"] = (
        vector_bench(CryptoFuturesVectorEnv(256, vector_info=False), n), "vector 256")
    benches["CryptoFutures-v0 vector B=256, 20x (liquidations)"] = (
        vector_bench(CryptoFuturesVectorEnv(256, leverage=20.0), n), "vector 256")
    benches["CryptoFutures-v0 vector B=256, on-the-fly windows"] = (
        vector_bench(CryptoFuturesVectorEnv(256, precompute_max_mb=0.0), n), "vector 256")

    results: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(args.rounds):
        for name, (bench, _) in benches.items():
            results[name].append(bench(args.seconds))
    median = {name: statistics.median(v) for name, v in results.items()}

    peer = median.get("gym-anytrading StocksEnv (w=50)")
    print(f"CryptoFutures-v0 construction (synthetic perpetuals, 2 x 4000 hourly bars, tables): {build_s * 1e3:.0f} ms")
    print(f"median of {args.rounds} interleaved rounds of {args.seconds}s; ratio = steps/s over the "
          f"peer's raw single env\n")
    header = f"{'env':52s} {'face':>11s} {'steps/s':>12s} {'ratio':>8s}"
    print(header)
    print("-" * len(header))
    for name, (_, face) in benches.items():
        ratio = median[name] / peer if peer else None
        print(f"{name:52s} {face:>11s} {median[name]:>12,.0f} {'' if ratio is None else f'{ratio:.2f}x':>8s}")


if __name__ == "__main__":
    main()

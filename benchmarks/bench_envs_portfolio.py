"""Env throughput: Portfolio-v0 (single and vector faces) vs gym-anytrading, in the same run.

    .venv/bin/python benchmarks/bench_envs_portfolio.py [--rounds 5] [--seconds 0.4]

Same method as ``bench_envs.py``: every measurement runs ``--rounds`` times, interleaved with the
others (so machine noise hits all of them alike), and the median is reported. Steps are
env-steps (one step of one portfolio of 4 assets = one step) and include resets at episode ends.
The peer is gym-anytrading's ``StocksEnv`` (window 50, its GOOGL sample, random actions); if it
is not installed (``pip install gym-anytrading``), its rows are skipped and ratios are not computed.

Portfolio-v0's single face is a B = 1 view of the batched numpy engine (one implementation of
the maths): it pays numpy's per-call overhead on every one of the step's array operations, so it
is expected to be slower per step than a single-asset pure-Python env; the vector face is where
throughput comes from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402,F401  (registers the ids)
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv  # noqa: E402

Bench = Callable[[float], float]  # seconds budget -> env-steps per second


def single_bench(env: gym.Env, seed: int = 0, n_actions: int = 4096) -> Bench:
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


def vector_bench(env: gym.vector.VectorEnv, seed: int = 0, n_actions: int = 256) -> Bench:
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_actions)]
    env.reset(seed=seed)

    def run(seconds: float) -> float:
        steps, start = 0, time.perf_counter()
        while True:
            for a in actions:
                env.step(a)  # autoreset inside
            steps += len(actions) * env.num_envs
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps / elapsed

    return run


def peer_benches() -> dict[str, Bench]:
    try:
        from gym_anytrading.datasets import STOCKS_GOOGL
        from gym_anytrading.envs import StocksEnv
    except ImportError:
        print("gym-anytrading is not installed: peer rows and ratios skipped "
              "(pip install gym-anytrading)\n")
        return {}
    raw = StocksEnv(df=STOCKS_GOOGL, window_size=50, frame_bound=(50, len(STOCKS_GOOGL)))
    return {"gym-anytrading StocksEnv (w=50)": single_bench(raw)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4, help="per measurement and round")
    args = parser.parse_args()

    t0 = time.perf_counter()
    single_default = PortfolioEnv()  # 4 synthetic assets, discrete long/flat/short, Dict obs
    build_s = time.perf_counter() - t0
    benches: dict[str, tuple[Bench, str]] = {name: (bench, "single") for name, bench in peer_benches().items()}
    benches["Portfolio-v0 single (discrete, 4 assets)"] = (single_bench(single_default), "single")
    benches["Portfolio-v0 single (continuous, 4 assets)"] = (
        single_bench(PortfolioEnv(action_mode="continuous")), "single")
    benches["Portfolio-v0 via gym.make"] = (single_bench(gym.make(envs.PORTFOLIO)), "single")
    benches["Portfolio-v0 vector B=256 (discrete)"] = (vector_bench(PortfolioVectorEnv(256)), "vector 256")
    benches["Portfolio-v0 vector B=256 (continuous)"] = (
        vector_bench(PortfolioVectorEnv(256, action_mode="continuous")), "vector 256")
    benches["Portfolio-v0 vector B=256, no info"] = (
        vector_bench(PortfolioVectorEnv(256, vector_info=False)), "vector 256")
    benches["Portfolio-v0 vector B=1024"] = (vector_bench(PortfolioVectorEnv(1024), n_actions=64), "vector 1024")

    results: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(args.rounds):
        for name, (bench, _) in benches.items():
            results[name].append(bench(args.seconds))
    median = {name: statistics.median(v) for name, v in results.items()}

    peer = median.get("gym-anytrading StocksEnv (w=50)")
    print(f"Portfolio-v0 construction (synthetic market, 4 x 1500 bars, tables): {build_s * 1e3:.0f} ms")
    print(f"median of {args.rounds} interleaved rounds of {args.seconds}s; ratio = env-steps/s over the "
          f"peer's raw single env\n")
    header = f"{'env':46s} {'face':>11s} {'env-steps/s':>12s} {'us/step':>9s} {'ratio':>8s}"
    print(header)
    print("-" * len(header))
    for name, (_, face) in benches.items():
        ratio = median[name] / peer if peer else None
        print(f"{name:46s} {face:>11s} {median[name]:>12,.0f} {1e6 / median[name]:>9.2f} "
              f"{'' if ratio is None else f'{ratio:.2f}x':>8s}")


if __name__ == "__main__":
    main()

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

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402,F401  (registers the ids)
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv  # noqa: E402

Bench = Callable[[float], float]  # seconds budget -> steps per second


def single_bench(env: gym.Env, n_actions: int, seed: int = 0) -> Bench:
    actions = np.random.default_rng(seed).integers(0, n_actions, 1_000_000).tolist()
    env.reset(seed=seed)

    def run(seconds: float) -> float:
        steps, start, i = 0, time.perf_counter(), 0
        while True:
            for a in actions[i:i + 20_000]:
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
            steps += 20_000
            i = (i + 20_000) % 900_000
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps / elapsed

    return run


def vector_bench(env: gym.vector.VectorEnv, n_actions: int, seed: int = 0) -> Bench:
    actions = np.random.default_rng(seed).integers(0, n_actions, (512, env.num_envs))
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
    frame = (50, len(STOCKS_GOOGL))
    raw = StocksEnv(df=STOCKS_GOOGL, window_size=50, frame_bound=frame)
    made = gym.make("stocks-v0", df=STOCKS_GOOGL, window_size=50, frame_bound=frame)
    return {"gym-anytrading StocksEnv (w=50)": single_bench(raw, 2),
            "gym-anytrading via gym.make": single_bench(made, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4, help="per measurement and round")
    args = parser.parse_args()

    t0 = time.perf_counter()
    single_default = StockSwingEnv()  # buy_only + excess_horizon, synthetic market, Dict obs
    build_s = time.perf_counter() - t0
    benches: dict[str, tuple[Bench, str, float | None]] = {}
    for name, bench in peer_benches().items():
        benches[name] = (bench, "single", None)
    benches["StockSwing-v0 single (buy_only, excess_horizon)"] = (single_bench(single_default, 2), "single", 1.0)
    benches["StockSwing-v0 single (swing, log_return)"] = (
        single_bench(StockSwingEnv(mode="swing", reward="log_return"), 3), "single", 1.0)
    benches["StockSwing-v0 via gym.make"] = (single_bench(gym.make(envs.STOCK_SWING), 2), "single", None)
    for b in (256, 1024):
        venv = StockSwingVectorEnv(b)
        benches[f"StockSwing-v0 vector B={b}"] = (vector_bench(venv, 2), f"vector {b}", 20.0 if b == 256 else None)
    benches["StockSwing-v0 vector B=256, no info"] = (vector_bench(StockSwingVectorEnv(256, vector_info=False), 2),
                                                     "vector 256", None)
    benches["StockSwing-v0 vector B=256, on-the-fly windows"] = (
        vector_bench(StockSwingVectorEnv(256, precompute_max_mb=0.0), 2), "vector 256", None)

    results: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(args.rounds):
        for name, (bench, _, _) in benches.items():
            results[name].append(bench(args.seconds))
    median = {name: statistics.median(v) for name, v in results.items()}

    peer = median.get("gym-anytrading StocksEnv (w=50)")
    print(f"StockSwing-v0 construction (synthetic market, 4 x 1500 bars, tables): {build_s * 1e3:.0f} ms")
    print(f"median of {args.rounds} interleaved rounds of {args.seconds}s; ratio = steps/s over the "
          f"peer's raw single env\n")
    header = f"{'env':50s} {'face':>11s} {'steps/s':>12s} {'ratio':>8s} {'target':>8s} {'ok':>4s}"
    print(header)
    print("-" * len(header))
    for name, (_, face, target) in benches.items():
        ratio = median[name] / peer if peer else None
        ok = "" if target is None or ratio is None else ("yes" if ratio >= target else "NO")
        print(f"{name:50s} {face:>11s} {median[name]:>12,.0f} "
              f"{'' if ratio is None else f'{ratio:.2f}x':>8s} {'' if target is None else f'>={target:g}x':>8s} {ok:>4s}")


if __name__ == "__main__":
    main()

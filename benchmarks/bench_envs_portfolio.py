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

import sys
import time
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from envbench import Bench, arguments, peer_benches, run_table, single_bench, vector_bench  # noqa: E402

import envs  # noqa: E402  (registers the ids)
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv  # noqa: E402


def main() -> None:
    args = arguments(__doc__)
    t0 = time.perf_counter()
    single_default = PortfolioEnv()  # 4 synthetic assets, discrete long/flat/short, Dict obs
    build_s = time.perf_counter() - t0
    benches: dict[str, tuple[Bench, str, float | None]] = {
        name: (bench, "single", None) for name, bench in peer_benches(with_make=False).items()}
    benches["Portfolio-v0 single (discrete, 4 assets)"] = (single_bench(single_default), "single", None)
    benches["Portfolio-v0 single (continuous, 4 assets)"] = (
        single_bench(PortfolioEnv(action_mode="continuous")), "single", None)
    benches["Portfolio-v0 via gym.make"] = (single_bench(gym.make(envs.PORTFOLIO)), "single", None)
    benches["Portfolio-v0 vector B=256 (discrete)"] = (vector_bench(PortfolioVectorEnv(256)), "vector 256", 20.0)
    benches["Portfolio-v0 vector B=256 (continuous)"] = (
        vector_bench(PortfolioVectorEnv(256, action_mode="continuous")), "vector 256", None)
    benches["Portfolio-v0 vector B=256, no info"] = (
        vector_bench(PortfolioVectorEnv(256, vector_info=False)), "vector 256", None)
    benches["Portfolio-v0 vector B=1024"] = (vector_bench(PortfolioVectorEnv(1024), n_actions=64), "vector 1024", None)
    run_table(benches, rounds=args.rounds, seconds=args.seconds,
              note=f"Portfolio-v0 construction (synthetic market, 4 x 1500 bars, tables): {build_s * 1e3:.0f} ms")


if __name__ == "__main__":
    main()

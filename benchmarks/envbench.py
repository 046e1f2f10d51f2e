"""Shared harness of the env benchmarks (bench_envs*.py): timed loops, the gym-anytrading peer,
interleaved rounds and the result table. Not a benchmark itself (run_all runs bench_*.py)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

Bench = Callable[[float], float]  # seconds budget -> env-steps per second
PEER = "gym-anytrading StocksEnv (w=50)"


def _timed(step_batch: Callable[[], int]) -> Bench:
    def run(seconds: float) -> float:
        steps, start = 0, time.perf_counter()
        while True:
            steps += step_batch()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps / elapsed

    return run


def single_bench(env: gym.Env, seed: int = 0, n_actions: int = 20_000) -> Bench:
    """Steps/s of one env under actions sampled from its own space (resets included)."""
    env.action_space.seed(seed)
    if isinstance(env.action_space, gym.spaces.Discrete):  # plain ints: what a simple agent passes
        actions = np.random.default_rng(seed).integers(0, env.action_space.n, n_actions).tolist()
    else:
        actions = [env.action_space.sample() for _ in range(min(n_actions, 4096))]
    env.reset(seed=seed)

    def batch() -> int:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return len(actions)

    return _timed(batch)


def vector_bench(env: gym.vector.VectorEnv, seed: int = 0, n_actions: int = 256) -> Bench:
    """Env-steps/s of a vector env (B env-steps per ``step()``; autoreset inside)."""
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_actions)]
    env.reset(seed=seed)

    def batch() -> int:
        for a in actions:
            env.step(a)
        return len(actions) * env.num_envs

    return _timed(batch)


def peer_benches(with_make: bool = True) -> dict[str, Bench]:
    try:
        from gym_anytrading.datasets import STOCKS_GOOGL
        from gym_anytrading.envs import StocksEnv
    except ImportError:
        print("gym-anytrading is not installed: peer rows and ratios skipped (pip install -e .[bench])\n")
        return {}
    frame = (50, len(STOCKS_GOOGL))
    out = {PEER: single_bench(StocksEnv(df=STOCKS_GOOGL, window_size=50, frame_bound=frame))}
    if with_make:
        out["gym-anytrading via gym.make"] = single_bench(
            gym.make("stocks-v0", df=STOCKS_GOOGL, window_size=50, frame_bound=frame))
    return out


def arguments(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4, help="per measurement and round")
    return parser.parse_args()


def run_table(benches: dict[str, tuple[Bench, str, float | None]], *, rounds: int, seconds: float,
              note: str) -> None:
    """Run every bench ``rounds`` times, interleaved (noise hits all alike); print medians,
    ratios over the peer's raw single env and, where a target is given, whether it is met."""
    results: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(rounds):
        for name, (bench, _, _) in benches.items():
            results[name].append(bench(seconds))
    median = {name: statistics.median(v) for name, v in results.items()}
    peer = median.get(PEER)
    print(note)
    print(f"median of {rounds} interleaved rounds of {seconds}s; ratio = env-steps/s over the peer's raw single env\n")
    header = f"{'env':52s} {'face':>11s} {'env-steps/s':>12s} {'us/step':>8s} {'ratio':>8s} {'target':>8s} {'ok':>3s}"
    print(header)
    print("-" * len(header))
    for name, (_, face, target) in benches.items():
        ratio = median[name] / peer if peer else None
        ok = "" if target is None or ratio is None else ("yes" if ratio >= target else "NO")
        print(f"{name:52s} {face:>11s} {median[name]:>12,.0f} {1e6 / median[name]:>8.2f} "
              f"{'' if ratio is None else f'{ratio:.2f}x':>8s} {'' if target is None else f'>={target:g}x':>8s} {ok:>3s}")

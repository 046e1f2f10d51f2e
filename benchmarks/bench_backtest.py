"""Backtest throughput in policy decisions per second: raytrade's batched backtest vs a
step-by-step single-env loop with one forward call per step (how SB3-based anchors backtest).

Targets (issue 5, 2 cores): >= 1M decisions/s with the MLP, >= 200k/s with the GRU.
Both sides run the same randomly initialized module on the same synthetic market.

    .venv/bin/python benchmarks/bench_backtest.py [--symbols 256] [--bars 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_ID = "raytrade/StockSwing-v0"


def single_env_loop(module, market, index, n_decisions: int) -> float:
    """decisions/s of the classic loop: one env, one forward pass per step."""
    import torch

    from envs.stock_swing import StockSwingEnv

    env = StockSwingEnv(market=market, index=index, mode="swing", reward="log_return", episode_bars=None)
    state = {k: torch.as_tensor(np.asarray(v))[None] for k, v in module.get_initial_state().items()}
    obs, _ = env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(n_decisions):
        batch = {"obs": {k: torch.from_numpy(np.array(v)[None]) for k, v in obs.items()}}
        if state:
            batch["state_in"] = state
        with torch.no_grad():
            out = module.forward_inference(batch)
        state = out.get("state_out", state)
        action = int(out["action_dist_inputs"].argmax(-1)[0])
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    return n_decisions / (time.perf_counter() - t0)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from app.evaluation.backtest import backtest
    from app.models import module_spec
    from envs import synthetic

    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=256)
    parser.add_argument("--bars", type=int, default=600)
    parser.add_argument("--peer-decisions", type=int, default=3000)
    args = parser.parse_args()
    generated = synthetic.generate("gbm", seed=0, n_symbols=args.symbols, n_bars=args.bars)
    env_config = {"market": generated.market, "index": generated.index, "mode": "swing", "reward": "log_return"}
    probe = __import__("envs").make_creator(ENV_ID)(env_config | {"num_envs": 1})
    spaces = probe.single_observation_space, probe.single_action_space
    targets = {"mlp": 1_000_000, "gru": 200_000}
    print(f"market: {args.symbols} synthetic symbols x {args.bars} daily bars; StockSwing-v0 swing mode")
    print("decisions/s = policy decisions recorded / wall time of the stepping loop; 'with env build' adds\n"
          "building the vector env (observation tables precomputed when they fit in precompute_max_mb)")
    print(f"{'model':<12}{'raytrade':>16}{'single-env loop':>18}{'ratio':>8}{'target':>12}  met")
    for name, target in targets.items():
        module = module_spec(name, {}, observation_space=spaces[0], action_space=spaces[1]).build()
        module.eval()
        backtest(module, ENV_ID, env_config, symbols=list(generated.market.symbols[:8]))  # warm-up
        peer = single_env_loop(module, generated.market, generated.index, args.peer_decisions)
        for with_values in (False, True):
            result = backtest(module, ENV_ID, env_config, greedy=True, with_values=with_values)
            ours = result.decisions_per_s
            label = f"{name}{'+values' if with_values else ''}"
            end_to_end = result.decisions / (result.seconds + result.build_seconds)
            print(f"{label:<12}{ours:>16,.0f}{peer:>18,.0f}{ours / peer:>7.1f}x{target:>12,}  "
                  f"{'yes' if ours >= target else 'NO'}   ({result.decisions:,} decisions in {result.seconds:.2f} s; "
                  f"with env build {end_to_end:,.0f}/s)")


if __name__ == "__main__":
    main()

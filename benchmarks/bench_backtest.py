"""Backtest throughput in policy decisions per second against its floor: the model's own
forward-only rate at the same batch size (issue 12, item 5).

For each model (MLP, GRU; same randomly initialized module on both sides) and each way the env
gets its observations (``tables``: precomputed observation tables, the default when they fit in
memory; ``gathered``: windows gathered per step for every env at once, ``precompute_max_mb=0``,
what a universe too large for the tables gets), one run prints:

* ``backtest``: decisions recorded / wall time of :func:`app.evaluation.backtest.backtest`'s
  stepping loop (every symbol at once, greedy, no values; building the env is reported apart);
* ``floor``: decisions per second of the module's forward pass alone (``_forward_inference``
  under ``torch.inference_mode``) on a batch of real observations already in tensors, at the
  backtest's batch size (one env per symbol);
* ``ratio``: backtest / floor, the median of the per-round ratios (each round measures the
  floor just before and just after its backtest, so machine load hits both alike). Target:
  >= 0.70 for MLP and GRU.
* ``cpu ratio``: the same from this process's CPU time instead of wall time (on a shared,
  overloaded machine wall time also counts the time other processes hold the cores; CPU time
  is the loop's own cost, the steadier figure there).

    .venv/bin/python benchmarks/bench_backtest.py [--symbols 256] [--bars 600] [--rounds 3]
                                                  [--models mlp,gru] [--modes tables,gathered]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_ID = "raytrade/StockSwing-v0"
TARGET = 0.70
MODES = {"tables": {}, "gathered": {"precompute_max_mb": 0.0}}


def forward_floor(module: Any, obs: dict[str, np.ndarray], min_s: float = 0.5) -> tuple[float, float]:
    """Decisions per second of wall and of CPU time of the module's forward pass alone on the
    batch ``obs`` (tensors made once)."""
    import torch

    batch: dict[str, Any] = {"obs": {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in obs.items()}}
    rows = len(next(iter(obs.values())))
    initial = module.get_initial_state() if hasattr(module, "get_initial_state") else {}
    if initial:
        batch["state_in"] = {k: torch.as_tensor(np.asarray(v))[None].repeat(rows, *([1] * np.ndim(v)))
                             for k, v in initial.items()}
    with torch.inference_mode():
        module._forward_inference(batch)  # warm-up
        calls, t0, cpu0 = 0, time.perf_counter(), time.process_time()
        while (elapsed := time.perf_counter() - t0) < min_s or calls < 5:
            module._forward_inference(batch)
            calls += 1
        cpu = time.process_time() - cpu0
    return rows * calls / elapsed, rows * calls / cpu


def first_observations(env_config: dict[str, Any], symbols: list[str]) -> dict[str, np.ndarray]:
    """The backtest's first batch of observations (one env per symbol)."""
    from app.runs.env_factory import create_env

    env = create_env(ENV_ID, env_config | {"num_envs": len(symbols), "episode_bars": None,
                                           "random_start": False})
    obs, _ = env.reset(seed=0, options={"symbol": symbols})
    env.close()
    return obs


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from app.evaluation.backtest import backtest
    from app.models import module_spec
    from envs import synthetic

    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=256)
    parser.add_argument("--bars", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="mlp,gru")
    parser.add_argument("--modes", default="tables,gathered")
    args = parser.parse_args()
    models, modes = args.models.split(","), args.modes.split(",")
    generated = synthetic.generate("gbm", seed=0, n_symbols=args.symbols, n_bars=args.bars)
    env_config = {"market": generated.market, "index": generated.index, "mode": "swing", "reward": "log_return"}
    symbols = list(generated.market.symbols)
    obs = first_observations(env_config, symbols)
    spaces = __import__("envs").make_creator(ENV_ID)(env_config | {"num_envs": 1})
    modules = {}
    for name in models:
        torch.manual_seed(0)
        modules[name] = module_spec(name, {}, observation_space=spaces.single_observation_space,
                                    action_space=spaces.single_action_space).build().eval()
        backtest(modules[name], ENV_ID, env_config, symbols=symbols[:8], with_values=False)  # warm-up
    print(f"market: {args.symbols} synthetic symbols x {args.bars} daily bars; StockSwing-v0 swing mode; "
          f"batch = {len(symbols)} envs (one per symbol); torch threads 1; {args.rounds} interleaved rounds, medians")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            for name in models:
                before = forward_floor(modules[name], obs)  # the floor on both sides of the backtest:
                result = backtest(modules[name], ENV_ID, env_config | MODES[mode], greedy=True, with_values=False)
                after = forward_floor(modules[name], obs)  # load drifting during it hits both alike
                floor, floor_cpu = (2 / (1 / before[j] + 1 / after[j]) for j in (0, 1))
                runs.setdefault((name, mode), []).append({
                    "ours": result.decisions_per_s, "floor": floor, "ours_cpu": result.decisions / result.cpu_seconds,
                    "floor_cpu": floor_cpu, "build": result.build_seconds, "decisions": result.decisions})
    print(f"{'model':<6}{'observations':<14}{'backtest/s':>12}{'floor/s':>12}{'ratio':>8}{'cpu ratio':>11}"
          f"{'target':>8}  met   (per decision: backtest, forward, CPU time; env build)")
    for (name, mode), rows in runs.items():
        def med(key: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(r[key] for r in rows)

        ratio = statistics.median(r["ours"] / r["floor"] for r in rows)
        cpu_ratio = statistics.median(r["ours_cpu"] / r["floor_cpu"] for r in rows)
        print(f"{name:<6}{mode:<14}{med('ours'):>12,.0f}{med('floor'):>12,.0f}{ratio:>8.2f}{cpu_ratio:>11.2f}"
              f"{TARGET:>8.2f}  {'yes' if ratio >= TARGET else 'NO '}   ({1e6 / med('ours_cpu'):.1f} us, "
              f"{1e6 / med('floor_cpu'):.1f} us; {med('build'):.1f} s for {int(rows[0]['decisions']):,} decisions)")


if __name__ == "__main__":
    main()

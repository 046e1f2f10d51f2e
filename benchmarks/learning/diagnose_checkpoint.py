"""Does a checkpoint see the planted events? P(buy) and V on event vs other flat days.

    .venv/bin/python benchmarks/learning/diagnose_checkpoint.py RUN_DIR [final|best]

Walks a held-out rare-event market (seed 777) never buying, so every day is a flat decision,
and prints the policy's buy probability and the value estimate on planted event days vs the
others. A value function whose spread over ordinary days is the size of the realised 20-day
noise has memorised the training paths.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.config.loader import load_experiment  # noqa: E402
from app.evaluation.oracle import market_events, synthetic_market_of  # noqa: E402
from app.policy.loader import load_module  # noqa: E402
from app.runs.env_factory import create_env  # noqa: E402
from app.runs.run_dir import RunDir  # noqa: E402

HELD_OUT_SEED, N_ENVS, STEPS = 777, 64, 300


def main(run_path: str, which: str = "final") -> None:
    from ray.rllib.core.columns import Columns

    torch.set_num_threads(1)
    run = RunDir(Path(run_path))
    exp = load_experiment(str(run.path / "experiment.yaml"))
    module = load_module(run.policy_dir(which))
    env = create_env(exp.env.id, dict(exp.env.config) | {"market_seed": HELD_OUT_SEED, "num_envs": N_ENVS})
    events = market_events(synthetic_market_of(env))
    obs, info = env.reset(seed=3)
    p_buy: dict[bool, list[float]] = {True: [], False: []}
    value: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(STEPS):
        flat = obs["action_mask"][:, 1] > 0
        batch = {Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}}
        with torch.no_grad():
            probs = torch.softmax(module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS], -1).numpy()
            v = module.compute_values(batch).numpy() if hasattr(module, "vf_head") else np.full(N_ENVS, np.nan)
        is_event = events[np.asarray(info["bar_row"])]
        for e in (True, False):
            rows = flat & (is_event == e)
            p_buy[e] += list(probs[rows, 1])
            value[e] += list(v[rows])
        obs, _, _, _, info = env.step(np.zeros(N_ENVS, np.int64))  # never buy: every day is flat
    for e, name in ((True, "event"), (False, "other")):
        p = np.array(p_buy[e])
        print(f"{name}: {len(p)} days, P(buy) mean {p.mean():.3f} median {np.median(p):.3f}, "
              f"share > 0.5 {np.mean(p > 0.5):.3f}; V mean {np.mean(value[e]):+.4f} sd {np.std(value[e]):.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

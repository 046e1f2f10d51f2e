"""Is the planted edge visible in the observation at all? A supervised probe.

    .venv/bin/python benchmarks/learning/probe_features.py [--steps 600] [--envs 64]

Collects observations of StockSwing-v0 on the ``rare_event`` market (train: market seed 0,
held-out: seed 1), labels each with "this bar is a planted event", fits a small MLP classifier
on the daily bar window and volume (raw, and standardized per element as ``obs_norm`` does) and
prints held-out precision and recall next to the blind rate. If a supervised probe finds the
events but an RL agent does not, the agent's problem is credit assignment or exploration, not
the features.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.evaluation.oracle import market_events, synthetic_market_of  # noqa: E402
from app.runs.env_factory import create_env  # noqa: E402

KEYS = ("daily_hloc", "daily_volume")


def collect(seed: int, steps: int, n_envs: int) -> tuple[np.ndarray, np.ndarray]:
    """(features ``[steps * n_envs, F]``, event labels) from a never-buying walk."""
    config = {"synthetic": "rare_event", "market_seed": seed, "mode": "buy_only", "episode_bars": 252}
    env = create_env("raytrade/StockSwing-v0", config | {"num_envs": n_envs})
    events = market_events(synthetic_market_of(env))
    obs, info = env.reset(seed=seed)
    xs, ys = [], []
    for _ in range(steps):
        xs.append(np.concatenate([obs[k].reshape(n_envs, -1) for k in KEYS], axis=1))
        ys.append(events[np.asarray(info["bar_row"])])
        obs, _, _, _, info = env.step(np.zeros(n_envs, np.int64))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def fit_and_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, epochs: int = 30) -> tuple[float, float]:
    """Class-balanced logistic loss on a 64-unit MLP; held-out (precision, recall) at p > 0.5."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.as_tensor(x_train), torch.as_tensor(y_train, dtype=torch.float32)
    weight = torch.where(y > 0, (1 - y.mean()) / y.mean(), torch.tensor(1.0))
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 512):
            idx = perm[i:i + 512]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(x[idx]).squeeze(-1), y[idx], weight=weight[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = torch.sigmoid(net(torch.as_tensor(x_test)).squeeze(-1)).numpy() > 0.5
    hits = int((pred & y_test).sum())
    return hits / max(int(pred.sum()), 1), hits / max(int(y_test.sum()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--envs", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x_train, y_train = collect(0, args.steps, args.envs)
    x_test, y_test = collect(1, args.steps, args.envs)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    print(f"{len(x_train):,} training bars, event rate {y_train.mean():.3%}; held-out blind precision {y_test.mean():.3%}")
    for name, (a, b) in {"raw": (x_train, x_test),
                         "standardized": ((x_train - mean) / std, (x_test - mean) / std)}.items():
        precision, recall = fit_and_score(a, y_train, b, y_test)
        print(f"{name:13s} held-out precision {precision:.3f}  recall {recall:.3f}")


if __name__ == "__main__":
    main()

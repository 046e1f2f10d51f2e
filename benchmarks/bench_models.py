"""Model cost per sample: MLP, GRU and attention RLModules at PPO's batch sizes (one CPU thread).

    .venv/bin/python benchmarks/bench_models.py [--env raytrade/StockSwing-v0] [--rounds 5]
        [--n-envs 8] [--value-batch 1024] [--minibatch 256] [--epochs 4] [--no-legacy]

What one PPO env step costs each model, measured outside RLlib on the env's real observation
space, with the networks of ``bench_training.py`` (embed 64, fusion 128-128, ReLU; attention and
GRU widths at their defaults):

* ``infer``: ``forward_exploration`` without grad on ``--n-envs`` rows (the env runner's pass),
  per call;
* ``value``: ``compute_values`` without grad over ``--value-batch`` rows (the GAE connector's
  pass over the whole train batch; per sample, which at these sizes does not depend on the batch);
* ``train``: ``forward_train`` + ``compute_values(embeddings=...)`` + a PPO-like loss, backward
  and an Adam step on one minibatch (the learner's pass), per sample;
* ``per step``: the model's share of one env step of PPO, ``infer / n_envs + value + epochs *
  train``, and its ratio over the MLP's.

The GRU runs time-major batches as RLlib gives them, ``[B, max_seq_len, ...]`` with ``B * T`` about
the batch size (sampling: ``[n_envs, 1, ...]`` with a state). The ``attention (legacy)`` row is
the design this benchmark replaced, rebuilt here for the before/after ratio in one run: one
``nn.TransformerEncoder`` per window over every bar (width 64, 4 heads, 2 layers, FFN 128).

Each phase is timed as the fastest of four chunks of calls, rounds are interleaved (every model
per round) and the medians over rounds reported: the machine is shared.
Times are this process's CPU time by default (``--clock cpu``; one torch thread, so CPU time is
the work done): on a loaded 2-core machine wall time mostly measures the other tenants.
Target from issue 12: the attention model trains at >= 1,000 env-steps/s and the GRU at >= 0.7x
the MLP in ``bench_training.py``; this table shows what the networks leave for the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import envs  # noqa: E402,F401  (registers the ids)

HIDDENS = [128, 128]
EMBED_DIM = 64


class LegacyTransformerWindowEmbed(nn.Module):
    """The attention window embedding before issue 12: per-bar tokens, one TransformerEncoder
    per window (kept here only as the benchmark's "before" row)."""

    def __init__(self, window_bars: int, n_features: int) -> None:
        super().__init__()
        dim = 64
        self.project = nn.Linear(n_features, dim)
        self.position = nn.Parameter(torch.randn(window_bars, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model=dim, nhead=4, dim_feedforward=128, dropout=0.0,
                                           activation=nn.Sequential(nn.ReLU()), batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(dim),
                                                 enable_nested_tensor=False)
        self.out = nn.Sequential(nn.Linear(dim, EMBED_DIM), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.transformer(self.project(x) + self.position)[:, -1])


def build(name: str, space: gym.Space, action_space: gym.Space,
          extra: dict[str, Any] | None = None) -> Any:
    from app.models import module_spec

    config = {"embed_dim": EMBED_DIM, "fusion_hiddens": HIDDENS, "activation": "relu"}
    if name != "attention (legacy)":
        return module_spec(name, config | (extra or {}), observation_space=space,
                           action_space=action_space).build()
    module = module_spec("mlp", config, observation_space=space, action_space=action_space).build()
    enc = module.encoder  # swap every flatten window embedding for the legacy transformer
    for key in enc.window_keys + enc.asset_keys:
        shape = enc.shapes[key]
        window_bars, n_features = (shape[0], 1) if len(shape) == 1 else shape[-2:]
        enc.embed[enc._names[key]] = LegacyTransformerWindowEmbed(window_bars, n_features)
    return module


def random_obs(space: gym.spaces.Dict, lead: tuple[int, ...], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Observations in a realistic range (log-ratio-like values; masks all valid)."""
    out = {}
    for key, s in space.spaces.items():
        if key == "action_mask":
            out[key] = torch.ones((*lead, *s.shape))
        else:
            out[key] = torch.randn((*lead, *s.shape), generator=gen) * 0.05
    return out


def cases(name: str, module: Any, space: gym.spaces.Dict, args: argparse.Namespace,
          ) -> dict[str, tuple[Callable[[], None], int]]:
    """``phase -> (fn, samples per call)`` for one model."""
    from ray.rllib.core.columns import Columns

    gen = torch.Generator().manual_seed(0)
    stateful = module.is_stateful()
    seq = int(module.model_config.get("max_seq_len", 1)) if stateful else 1

    def lead(n: int) -> tuple[int, ...]:
        return (math.ceil(n / seq), seq) if stateful else (n,)

    def batch(n: int, time_axis: bool = True) -> dict[str, Any]:
        shape = lead(n) if time_axis else (n, 1) if stateful else (n,)
        b: dict[str, Any] = {Columns.OBS: random_obs(space, shape, gen)}
        if stateful:
            b[Columns.STATE_IN] = {k: torch.zeros((shape[0], *v.shape))
                                   for k, v in module.get_initial_state().items()}
        return b

    infer_batch = batch(args.n_envs, time_axis=False)
    value_batch = batch(args.value_batch)
    train_batch = batch(args.minibatch)
    n_train = math.prod(lead(args.minibatch))
    n_value = math.prod(lead(args.value_batch))
    opt = torch.optim.Adam(module.parameters(), 3e-4)
    n_actions = module.pi_head.out.out_features

    def infer() -> None:
        module.eval()
        with torch.no_grad():
            module.forward_exploration(infer_batch)

    def value() -> None:
        module.eval()
        with torch.no_grad():
            module.compute_values(value_batch)

    actions = torch.randint(0, n_actions, lead(args.minibatch), generator=gen)

    def train() -> None:
        module.train()
        out = module.forward_train(train_batch)
        logp = torch.log_softmax(out[Columns.ACTION_DIST_INPUTS], -1)
        values = module.compute_values(train_batch, embeddings=out[Columns.EMBEDDINGS])
        loss = (-logp.gather(-1, actions[..., None]).mean() + values.pow(2).mean()
                + (logp.exp() * logp).sum(-1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return {"infer": (infer, args.n_envs), "value": (value, n_value), "train": (train, n_train)}


def timed(fn: Callable[[], None], min_s: float, clock: Callable[[], float], chunks: int = 4) -> float:
    """Seconds per call: the fastest of up to ``chunks`` chunks of calls, each at least ``min_s /
    chunks`` long on ``clock`` (the minimum filters out the time slices lost to other tenants;
    slow calls stop after two chunks)."""
    fn()  # warm-up
    best, total = math.inf, 0.0
    for i in range(chunks):
        calls, start = 0, clock()
        while True:
            fn()
            calls += 1
            elapsed = clock() - start
            if elapsed >= min_s / chunks:
                break
        best, total = min(best, elapsed / calls), total + elapsed
        if i >= 1 and total >= 2 * min_s:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="raytrade/StockSwing-v0")
    parser.add_argument("--models", default="mlp,gru,attention")
    parser.add_argument("--attention-config", default="{}",
                        help='JSON model_config overrides for the attention row, e.g. \'{"attn_patch_bars": 1}\'')
    parser.add_argument("--no-legacy", action="store_true", help="skip the 'attention (legacy)' row")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--value-batch", type=int, default=1024,
                        help="rows of the value pass (per-sample cost; PPO's 4096 costs the same per row)")
    parser.add_argument("--minibatch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-s", type=float, default=0.3, help="seconds per timed phase")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: this process's CPU time (robust on a shared, loaded machine); wall")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    env = gym.make(args.env)
    space, action_space = env.observation_space, env.action_space
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.no_legacy:
        names.append("attention (legacy)")
    from app.models import count_parameters

    torch.manual_seed(0)
    attention_config = json.loads(args.attention_config)
    modules = {n: build(n, space, action_space, attention_config if n == "attention" else None)
               for n in names}
    runs = {n: cases(n, m, space, args) for n, m in modules.items()}
    times: dict[str, dict[str, list[float]]] = {n: {p: [] for p in runs[n]} for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            for phase, (fn, samples) in runs[n].items():
                times[n][phase].append(timed(fn, args.min_s, clock) / samples * 1e6)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    def per_step(n: str) -> float:
        med = {p: statistics.median(v) for p, v in times[n].items()}
        return med["infer"] + med["value"] + args.epochs * med["train"]

    base = per_step("mlp") if "mlp" in names else None
    print(f"\n{args.env}, one torch thread, {args.clock} time, median of {args.rounds} interleaved "
          f"rounds; us per sample "
          f"(infer: batch {args.n_envs}; value: {args.value_batch}; train: fwd+bwd+Adam, minibatch "
          f"{args.minibatch}); per step = infer + value + {args.epochs} x train; ratio over the MLP")
    header = (f"{'model':20s} {'params':>9s} {'infer us':>9s} {'value us':>9s} {'train us':>9s} "
              f"{'per step us':>11s} {'ratio':>7s} {'model-bound steps/s':>19s}")
    print(header)
    print("-" * len(header))
    for n in names:
        med = {p: statistics.median(v) for p, v in times[n].items()}
        step = per_step(n)
        ratio = f"{step / base:.2f}x" if base else ""
        print(f"{n:20s} {count_parameters(modules[n]):>9,d} {med['infer']:>9.1f} {med['value']:>9.1f} "
              f"{med['train']:>9.1f} {step:>11.1f} {ratio:>7s} {1e6 / step:>19,.0f}")
    print("\nmodel-bound steps/s = 1e6 / per step: the PPO env-steps/s ceiling the network alone "
          "allows (sampling, connectors and the env come on top; see bench_training.py).")


if __name__ == "__main__":
    main()

"""Training throughput: raytrade PPO (RLlib) vs stable-baselines3 PPO on StockSwing-v0, same run.

    .venv/bin/python benchmarks/bench_training.py [--n-envs 8] [--n-steps 512] [--minibatch 256]
        [--epochs 4] [--iterations 2] [--rounds 5] [--models mlp,gru,attention] [--no-sb3]
        [--best-envs 32,64] [--best-envs-sb3 16,32]

Prints two ratios from one run (both targets of issue 12):

* ``RATIO matched setting``: raytrade PPO-MLP / SB3 PPO (matched network), both with ``--n-envs``
  envs and ``--n-steps`` steps per env per iteration (today's setting; target >= 1x).
* ``RATIO best configurations``: the fastest raytrade PPO-MLP row / the fastest SB3 matched-network
  row, each framework over its own candidates of envs per runner (``--best-envs`` for raytrade's
  native vector env, ``--best-envs-sb3`` for SB3's DummyVecEnv, plus ``--n-envs``), all with the
  SAME train batch (``n_steps * n_envs`` of the matched setting; ``n_steps`` = batch / envs),
  minibatch, epochs and network (target >= 1.5x). Candidates are rows of the same interleaved
  rounds, so "best" is picked from the same measurements that give the ratio. One env runner
  and one local learner on raytrade's side (``num_env_runners=0``: on 2 cores a remote runner
  only adds a process hop, PPO samples and learns in turn).

Measures wall env-steps/s of whole PPO iterations (sampling + learning) with the same algorithm
settings on both sides, taken from one :class:`~app.config.schema.Experiment`:

* raytrade: ``build_algorithm_config`` (the one AlgorithmConfig builder) with the MLP, GRU and
  attention RLModules, ``num_env_runners=0, num_learners=0`` (a 2-core machine), the native
  vector env with ``num_envs_per_env_runner = --n-envs``; timed ``algo.train()`` calls after a
  warm-up iteration; env steps from RLlib's lifetime counter.
* SB3: ``PPO("MultiInputPolicy", ...)`` on ``gym.make("raytrade/StockSwing-v0")`` x ``--n-envs``
  in a ``DummyVecEnv`` (each in SB3's ``Monitor``, as ``make_vec_env`` does); timed
  ``model.learn(n, reset_num_timesteps=False)`` after a warm-up learn.

Same on both sides: train batch = n_steps * n_envs, minibatch, epochs, lr, gamma, lambda, clip,
entropy and value coefficients, grad-norm clip 0.5, ReLU, hidden sizes (128, 128), one torch
thread. RLlib's KL penalty is switched off (``use_kl_loss=False``) because SB3's PPO has none.

The networks differ where the frameworks differ (parameter counts are printed):

* raytrade MLP: every observation entry embedded (four 50x4 windows by their own
  ``Linear(200, 64)``, the flat entries by one ``Linear(102, 64)``; symlog inputs, LayerNorm), then
  a SHARED trunk 320 -> 128 -> 128 feeding a policy ``Linear`` and a value ``Linear``.
* SB3 "matched" (the baseline for the ratio): SB3's ``CombinedExtractor`` flattens the Dict to
  902 features, then the same SHARED trunk 902 -> 128 -> 128 (a features extractor, since SB3 2.x
  has no shared layers in ``net_arch``) and the same two heads. Same hidden sizes; the parameter
  difference is the encoders (ours: 1002 -> 320 -> 128, SB3's: 902 -> 128).
* SB3 "default" (reference row): ``net_arch=[128, 128]``, which in SB3 2.x builds SEPARATE
  policy and value MLPs 902 -> 128 -> 128 (about 2.3x the parameters, two trunks per pass).

GRU and attention rows use the same settings; ``--attention-n-steps`` (default: the MLP's
``--n-steps``) can shrink the attention row's batch (same minibatch and epochs, so the same
learner work per env step). The attention model is a transformer over 10-bar patch tokens of
all windows (``attn_patch_bars``): about 4x the MLP's cost per sample (``bench_models.py``).

Every measurement runs ``--rounds`` times, interleaved (rotating order), so machine noise hits all
rows alike; env-steps/s is the median over rounds; the ``ratio`` column is over SB3 matched at
the matched setting. If SB3 is missing, its rows are skipped (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402  (registers the ids)

ENV_ID = envs.STOCK_SWING
HIDDENS = (128, 128)
EMBED_DIM = 64
TARGET_MATCHED = 1.0  # raytrade PPO-MLP / SB3 matched, at the matched setting
TARGET_BEST = 1.5  # best raytrade configuration / best SB3 configuration


@dataclass
class Runner:
    """One row: ``step()`` runs one timed unit and returns env steps done."""

    name: str
    params: int
    batch: int
    step: Callable[[], int]
    phases: dict[str, float]  # seconds accumulated in sampling / learning (wrapped methods)
    baseline: bool = False
    target: float | None = None
    #: "ours" / "sb3" rows of the same network, per-sample work and batch compete for "best";
    #: None: a reference row outside the best-configuration comparison
    side: str | None = None
    n_envs: int = 0
    iterations: int = 1
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)  # env steps per CPU second of this process
    steps: int = 0
    wall: float = 0.0
    updates: int = 0  # learner iterations timed (for per-iteration phase times)


def _timed(obj: Any, attr: str, phases: dict[str, float], key: str) -> None:
    """Wrap ``obj.attr`` (an instance attribute shadows the method) to add its wall time."""
    original = getattr(obj, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[key] += time.perf_counter() - start

    setattr(obj, attr, wrapper)


def experiment(model: str, args: argparse.Namespace, n_steps: int, n_envs: int | None = None):
    from app.config.loader import parse_experiment

    n_envs = n_envs or args.n_envs
    model_config: dict[str, Any] = {"embed_dim": EMBED_DIM, "fusion_hiddens": list(HIDDENS),
                                    "activation": "relu"}
    return parse_experiment({
        "name": f"bench-{model}", "seed": 0,
        "env": {"id": ENV_ID},
        "model": {"name": model, "config": model_config},
        "algorithm": {
            "name": "PPO", "lr": 3e-4, "gamma": 0.99, "lambda_": 0.95, "clip_param": 0.2,
            "entropy_coeff": 0.01, "vf_loss_coeff": 0.5, "grad_clip": 0.5,
            "train_batch_size": n_steps * n_envs, "minibatch_size": args.minibatch,
            "num_epochs": args.epochs, "extra": {"use_kl_loss": False},
        },
        "resources": {"num_env_runners": 0, "num_learners": 0,
                      "num_envs_per_env_runner": n_envs},
    }, where="bench_training")


def rllib_runner(model: str, args: argparse.Namespace, n_envs: int | None = None) -> Runner:
    """One raytrade row; ``n_envs`` other than ``--n-envs``: a best-configuration candidate with
    the same train batch (``n_steps = batch / n_envs``)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    from app.models import count_parameters, module_spec
    from app.training.algo import build_algorithm_config
    from app.training.rllib_env import rllib_env_name

    n_steps = (args.attention_n_steps or args.n_steps) if model == "attention" else args.n_steps
    candidate = n_envs is not None and n_envs != args.n_envs
    if n_envs is not None:
        n_steps = n_steps * args.n_envs // n_envs
    n_envs = n_envs or args.n_envs
    exp = experiment(model, args, n_steps, n_envs)
    config = build_algorithm_config(exp, env_name=rllib_env_name(ENV_ID), env_config={})
    algo = config.build_algo()
    probe = gym.make(ENV_ID)
    params = count_parameters(module_spec(exp.model.name, exp.model.config,
                                          observation_space=probe.observation_space,
                                          action_space=probe.action_space).build())
    phases = {"sample": 0.0, "learn": 0.0}
    _timed(algo.env_runner_group.local_env_runner, "sample", phases, "sample")
    _timed(algo.learner_group, "update", phases, "learn")
    iterations = {"mlp": args.iterations, "gru": args.gru_iterations}.get(model, 1)

    def lifetime(result: dict[str, Any]) -> int:
        return int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])

    state = {"last": lifetime(algo.train())}  # warm-up iteration (not timed)
    phases.update(sample=0.0, learn=0.0)

    def step() -> int:
        result = None
        for _ in range(iterations):
            result = algo.train()
        done = lifetime(result) - state["last"]
        state["last"] += done
        return done

    label = {"mlp": "raytrade PPO-MLP (RLlib)", "gru": "raytrade PPO-GRU (RLlib)",
             "attention": "raytrade PPO-attention (RLlib)"}[model]
    if candidate:
        label = f"raytrade PPO-MLP {n_envs} envs x {n_steps}"
    return Runner(label, params, n_steps * n_envs, step, phases,
                  target=TARGET_MATCHED if model == "mlp" and not candidate else None,
                  iterations=iterations, side="ours" if model == "mlp" else None, n_envs=n_envs)


def shared_trunk_cls() -> type:
    """SB3 features extractor: SB3's CombinedExtractor (flatten every entry, concat) + a ReLU MLP
    ``HIDDENS`` shared by policy and value (SB3 2.x's way to share layers between the two)."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor

    class SharedTrunk(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Dict) -> None:
            super().__init__(observation_space, features_dim=HIDDENS[-1])
            self.flatten = CombinedExtractor(observation_space)
            layers: list[torch.nn.Module] = []
            width = self.flatten.features_dim
            for hidden in HIDDENS:
                layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
                width = hidden
            self.trunk = torch.nn.Sequential(*layers)

        def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.trunk(self.flatten(observations))

    return SharedTrunk


def sb3_runners(args: argparse.Namespace, best_envs: list[int]) -> list[Runner]:
    """SB3 matched (the baseline) and default rows at ``--n-envs``, plus matched-network rows
    with each of ``best_envs`` envs in the DummyVecEnv (best-configuration candidates, same
    train batch)."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        print("skipped SB3: stable-baselines3 is not installed (pip install -e .[bench]); "
              "raytrade rows only, no ratios\n")
        return []
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    spec = experiment("mlp", args, args.n_steps).algorithm
    variants = {
        "SB3 PPO matched (shared 128-128)": dict(
            net_arch=dict(pi=[], vf=[]), features_extractor_class=shared_trunk_cls(),
            activation_fn=torch.nn.ReLU),
        "SB3 PPO default (separate pi/vf 128-128)": dict(
            net_arch=list(HIDDENS), activation_fn=torch.nn.ReLU),
    }
    rows = [(name, kwargs, args.n_envs) for name, kwargs in variants.items()]
    matched = variants["SB3 PPO matched (shared 128-128)"]
    rows += [(f"SB3 PPO matched {n} envs x {args.n_steps * args.n_envs // n}", matched, n)
             for n in best_envs if n != args.n_envs]
    runners = []
    for i, (name, policy_kwargs, n_envs) in enumerate(rows):
        n_steps = args.n_steps * args.n_envs // n_envs
        venv = make_vec_env(lambda: gym.make(ENV_ID), n_envs=n_envs, seed=0, vec_env_cls=DummyVecEnv)
        model = PPO(
            "MultiInputPolicy", venv, learning_rate=spec.lr, n_steps=n_steps,
            batch_size=args.minibatch, n_epochs=args.epochs, gamma=spec.gamma,
            gae_lambda=spec.lambda_, clip_range=spec.clip_param, ent_coef=spec.entropy_coeff,
            vf_coef=spec.vf_loss_coeff, max_grad_norm=spec.grad_clip, policy_kwargs=policy_kwargs,
            seed=0, device="cpu", verbose=0,
        )
        params = sum(p.numel() for p in model.policy.parameters() if p.requires_grad)
        batch = n_steps * n_envs
        model.learn(batch)  # warm-up iteration (not timed)
        phases = {"sample": 0.0, "learn": 0.0}
        _timed(model, "collect_rollouts", phases, "sample")
        _timed(model, "train", phases, "learn")

        def step(model: Any = model, batch: int = batch) -> int:
            before = model.num_timesteps
            model.learn(args.iterations * batch, reset_num_timesteps=False)
            return model.num_timesteps - before

        runners.append(Runner(name, params, batch, step, phases, baseline=i == 0,
                              iterations=args.iterations, side=None if i == 1 else "sb3", n_envs=n_envs))
    return runners


def network_check(args: argparse.Namespace, rounds: int = 5) -> None:
    """Network only, outside both frameworks: one minibatch forward + backward + Adam step of
    the raytrade MLP module vs SB3's matched policy (the same toy loss), to separate the cost of
    the networks from the frameworks' own overhead."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError:
        return
    from ray.rllib.core.columns import Columns

    from app.models import module_spec

    env = gym.make(ENV_ID)
    space = env.observation_space
    gen = torch.Generator().manual_seed(0)
    obs = {k: torch.rand((args.minibatch, *s.shape), generator=gen) for k, s in space.spaces.items()}
    actions = torch.randint(0, int(env.action_space.n), (args.minibatch,), generator=gen)
    ours = module_spec("mlp", {"embed_dim": EMBED_DIM, "fusion_hiddens": list(HIDDENS)},
                       observation_space=space, action_space=env.action_space).build()
    ours_opt = torch.optim.Adam(ours.parameters(), 3e-4)
    policies = {}
    for name, kwargs in (
        ("SB3 matched", dict(net_arch=dict(pi=[], vf=[]), features_extractor_class=shared_trunk_cls())),
        ("SB3 default", dict(net_arch=list(HIDDENS))),
    ):
        policies[name] = PPO("MultiInputPolicy", DummyVecEnv([lambda: gym.make(ENV_ID)]), device="cpu",
                             policy_kwargs=kwargs | {"activation_fn": torch.nn.ReLU}).policy
        policies[name].set_training_mode(True)

    def ours_update() -> None:
        out = ours.forward_train({Columns.OBS: obs})
        logits = out[Columns.ACTION_DIST_INPUTS]
        values = ours.compute_values({}, embeddings=out[Columns.EMBEDDINGS])
        logp = torch.log_softmax(logits, -1)
        loss = (-logp.gather(1, actions[:, None]).mean() + values.pow(2).mean()
                + (logp.exp() * logp).sum(-1).mean())
        ours_opt.zero_grad()
        loss.backward()
        ours_opt.step()

    def sb3_update(policy: Any) -> Callable[[], None]:
        def update() -> None:
            values, logp, entropy = policy.evaluate_actions(obs, actions)
            loss = -logp.mean() + values.pow(2).mean() - entropy.mean()
            policy.optimizer.zero_grad()
            loss.backward()
            policy.optimizer.step()
        return update

    fns = {"raytrade MLP": ours_update} | {k: sb3_update(p) for k, p in policies.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - start) / 20 * 1e3)
    print(f"\nnetwork only, one minibatch of {args.minibatch} fwd+bwd+Adam (median of {rounds}): "
          + ", ".join(f"{k} {statistics.median(v):.1f} ms" for k, v in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-envs", type=int, default=8, help="envs per runner / DummyVecEnv size")
    parser.add_argument("--n-steps", type=int, default=512, help="env steps per env per iteration")
    parser.add_argument("--minibatch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=2,
                        help="PPO iterations per timed measurement (MLP and SB3)")
    parser.add_argument("--gru-iterations", type=int, default=1)
    parser.add_argument("--attention-n-steps", type=int, default=None,
                        help="n_steps of the attention row (1 iteration per measurement)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--models", default="mlp,gru,attention",
                        help="raytrade models, comma-separated (mlp is needed for the ratio)")
    parser.add_argument("--best-envs", default="32,64",
                        help="best configuration: raytrade PPO-MLP rows with these envs per runner "
                             "(same train batch); '' for none")
    parser.add_argument("--best-envs-sb3", default="16,32",
                        help="best configuration: SB3 matched rows with these DummyVecEnv sizes; '' for none")
    parser.add_argument("--no-sb3", action="store_true", help="skip the SB3 rows")
    parser.add_argument("--no-network-check", action="store_true")
    args = parser.parse_args()
    if (args.n_steps * args.n_envs) % args.minibatch:
        parser.error("n_steps * n_envs must be a multiple of --minibatch (SB3 drops the rest)")
    best_ours, best_sb3 = _ints(args.best_envs), _ints(args.best_envs_sb3)
    for n in best_ours + best_sb3:
        if (args.n_steps * args.n_envs) % n:
            parser.error(f"best-configuration envs {n} must divide the train batch {args.n_steps * args.n_envs}")

    torch.set_num_threads(1)
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        runners = [] if args.no_sb3 else sb3_runners(args, best_sb3)
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            print(f"building raytrade {model} ...", flush=True)
            runners.append(rllib_runner(model, args))
            if model == "mlp":
                runners += [rllib_runner(model, args, n) for n in best_ours if n != args.n_envs]
        setup_s = time.perf_counter() - started

        for r in runners:  # phases measured from here on
            r.phases.update(sample=0.0, learn=0.0)
        for i in range(args.rounds):
            order = runners[i % len(runners):] + runners[:i % len(runners)]
            for r in order:
                start, cpu = time.perf_counter(), time.process_time()
                done = r.step()
                elapsed = time.perf_counter() - start
                r.cpu_rates.append(done / max(time.process_time() - cpu, 1e-9))
                r.steps += done
                r.wall += elapsed
                r.updates += r.iterations
                r.rates.append(done / elapsed)
            print(f"round {i + 1}/{args.rounds} done", flush=True)
        report(runners, args, setup_s, time.perf_counter() - started)
    finally:
        ray.shutdown()
    if not args.no_network_check:
        network_check(args)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def best_ratio(runners: list[Runner]) -> tuple[Runner, Runner] | None:
    """The fastest raytrade PPO-MLP row and the fastest SB3 matched-network row (any envs)."""
    ours = [r for r in runners if r.side == "ours"]
    sb3 = [r for r in runners if r.side == "sb3"]
    if not ours or not sb3:
        return None
    rate = lambda r: statistics.median(r.rates)  # noqa: E731
    return max(ours, key=rate), max(sb3, key=rate)


def report(runners: list[Runner], args: argparse.Namespace, setup_s: float, total_s: float) -> None:
    base = next((r for r in runners if r.baseline), None)
    base_rate = statistics.median(base.rates) if base else None
    print(f"\nStockSwing-v0 (synthetic market), {args.n_envs} envs, minibatch {args.minibatch}, "
          f"{args.epochs} epochs, torch threads 1; median of {args.rounds} interleaved rounds; "
          f"ratio = env-steps/s over '{base.name if base else 'SB3 (skipped)'}'")
    header = (f"{'framework / model':42s} {'params':>8s} {'batch':>6s} {'env steps':>10s} "
              f"{'wall s':>7s} {'env-steps/s':>12s} {'range':>13s} {'per CPU-s':>9s} {'sample s/it':>11s} "
              f"{'learn s/it':>10s} {'ratio':>7s} {'target':>14s}")
    print(header)
    print("-" * len(header))
    for r in runners:
        rate = statistics.median(r.rates)
        ratio = rate / base_rate if base_rate else None
        if r.target is None:
            verdict = ""
        elif ratio is None:
            verdict = "n/a (no SB3)"
        else:
            verdict = f">={r.target:g}x {'met' if ratio >= r.target else 'NOT met'}"
        spread = f"{min(r.rates):,.0f}-{max(r.rates):,.0f}"
        print(f"{r.name:42s} {r.params:>8,d} {r.batch:>6d} {r.steps:>10,d} {r.wall:>7.1f} "
              f"{rate:>12,.0f} {spread:>13s} {statistics.median(r.cpu_rates):>9,.0f} "
              f"{r.phases['sample'] / r.updates:>11.3f} "
              f"{r.phases['learn'] / r.updates:>10.3f} "
              f"{'' if ratio is None else f'{ratio:.2f}x':>7s} {verdict:>14s}")
    ours = next((r for r in runners if r.side == "ours" and r.n_envs == args.n_envs), None)
    print()
    if ours is not None and base_rate:
        ratio = statistics.median(ours.rates) / base_rate
        print(f"RATIO matched setting ({args.n_envs} envs x {args.n_steps} steps, both sides): "
              f"{ratio:.2f}x SB3 (target >= {TARGET_MATCHED:g}x: {'met' if ratio >= TARGET_MATCHED else 'NOT met'})")
    best = best_ratio(runners)
    if best is not None:
        a, b = best
        ratio = statistics.median(a.rates) / statistics.median(b.rates)
        print(f"RATIO best configurations (raytrade {a.n_envs} envs per runner vs SB3 {b.n_envs} envs, "
              f"batch {a.batch}): {ratio:.2f}x SB3 (target >= {TARGET_BEST:g}x: "
              f"{'met' if ratio >= TARGET_BEST else 'NOT met'})")
    print("per CPU-s: env steps per CPU second of this process (all its threads), a cross-check "
          "of env-steps/s on a loaded machine; ratios use wall time.")
    print(f"\nsetup (ray.init, builds, warm-ups) {setup_s:.0f} s, total {total_s:.0f} s. "
          "sample s/it: RLlib EnvRunner.sample / SB3 collect_rollouts (incl. its GAE); learn s/it: "
          "RLlib LearnerGroup.update (incl. its GAE connector, value pass over the batch) / SB3 train.")


if __name__ == "__main__":
    main()

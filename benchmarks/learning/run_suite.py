"""The learning benchmark suite: does an agent find a planted edge, and how fast?

    python benchmarks/learning/run_suite.py --classes rare_event,mean_reversion \\
        --algos ppo_mlp,ppo_gru --seeds 3 --env-steps 2000000 [--forms template,crypto] [--quick]

For each class (``tune_configs/learning/<class>.yaml``) x form (``forms.yaml``) x algorithm
preset (``algos.yaml``) x seed: train through :func:`app.training.run.train` (one local Ray,
started once; ``num_env_runners: 0``), then play the final and best policies and the oracle on
held-out markets (seeds no cell trains or validates on) and print one table with means and
95 % intervals over seeds. Files: ``benchmarks/results/learning/<stamp>/`` (cells and summary,
CSV and Parquet, plus the runs); MLflow: one parent run per invocation, one child per cell
(experiment ``learning_suite``). ``--quick``: 1 class, 1 algorithm, 1 seed, 20k env steps.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

QUICK_ENV_STEPS = 20_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", default="rare_event,mean_reversion,relative_momentum,regime,noise")
    p.add_argument("--algos", default="ppo_mlp")
    p.add_argument("--forms", default="template", help="template (the class file's env) or forms.yaml keys")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--env-steps", type=int, default=2_000_000)
    p.add_argument("--heldout-markets", type=int, default=4, help="held-out market seeds")
    p.add_argument("--episodes", type=int, default=32, help="episodes per held-out market")
    p.add_argument("--eval-interval", type=int, default=None, help="iterations between validations")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "learning")
    p.add_argument("--mlflow-uri", default="sqlite:///mlruns.db")
    p.add_argument("--no-mlflow", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 class, 1 algo, 1 seed, 20k env steps")
    return p.parse_args(argv)


def plan(args: argparse.Namespace):
    """The cells and the budget the arguments ask for (``--quick`` shrinks both)."""
    from benchmarks.learning.cells import Budget, Cell

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    seeds, budget = args.seeds, Budget(args.env_steps, args.eval_interval)
    if args.quick:
        classes, algos, forms, seeds = classes[:1], algos[:1], forms[:1], 1
        budget = Budget(min(args.env_steps, QUICK_ENV_STEPS), args.eval_interval or 2,
                        train_batch_size=1024, episodes=8)
    cells = [Cell(k, a, s, f) for k in classes for f in forms for a in algos for s in range(seeds)]
    return cells, budget


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from rich.console import Console

    from benchmarks.learning.cells import heldout_market_seeds
    from benchmarks.learning.report import suite_table, write_results
    from benchmarks.learning.suite import Suite, real_evaluator, real_trainer

    cells, budget = plan(args)
    out_dir = args.out / time.strftime("%Y%m%d-%H%M%S")
    tracker = None
    if not args.no_mlflow:
        from app.tracking.mlflow_tracker import MlflowTracker as tracker  # noqa: N813
    import torch

    torch.set_num_threads(1)
    ray = _start_ray()
    try:
        suite = Suite(cells, budget, out_dir, args.mlflow_uri, real_trainer,
                      real_evaluator(heldout_market_seeds(args.heldout_markets), args.episodes),
                      tracker, params=vars(args) | {"cells": len(cells)})
        rows, agg = suite.run()
    finally:
        ray.shutdown()  # only the instance this process started, nothing else on the machine
    console = Console(width=200)
    if agg.empty:
        console.print("[red]no cell finished[/red]")
    else:
        console.print(suite_table(agg, f"learning suite ({budget.env_steps:,} env steps per cell)"))
    if "error" in rows:
        for _, row in rows[rows["error"].notna()].iterrows():
            console.print(f"[red]{row['class']}/{row['algo']}/s{row['seed']}: {row['error']}[/red]")
    for path in write_results(rows, agg, out_dir):
        console.print(f"wrote {path}")
    return 0 if "error" not in rows or rows["error"].isna().all() else 1


def _start_ray():
    from app.training.quiet import quiet_ray, ray_logging_level

    quiet_ray()
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=ray_logging_level(),
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}})
    return ray


if __name__ == "__main__":
    raise SystemExit(main())

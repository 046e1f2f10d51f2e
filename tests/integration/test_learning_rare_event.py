"""It learns class (a): PPO finds rare events visible in the bar and volume, on held-out markets.

A smaller, stronger version of the learning suite's rare-event market (tune_configs/learning/
ci_rare_event.yaml: more frequent and larger events) so it fits CI. The asserted capture
fraction and buy precision are out of reach for a policy that does not look at the bar: a
blind policy's precision is the event rate among its decisions (checked on the same episodes),
and a random one captures nothing (its excess is negative after costs).
"""

from __future__ import annotations

import numpy as np
import pytest

from app.config.loader import load_experiment
from app.evaluation.oracle import (
    IndexPath,
    capture_metrics,
    market_events,
    play_oracle,
    synthetic_market_of,
)
from app.evaluation.rollout import rollout
from app.policy.batched import BatchedPolicy
from app.policy.loader import load_module
from app.runs.env_factory import create_env
from app.training.run import train

CONFIG = "tune_configs/learning/ci_rare_event.yaml"
HELD_OUT_MARKET_SEED = 4242  # never trained or validated on (train: 0, validation: 1)


@pytest.mark.slow
def test_ppo_finds_the_rare_events_on_a_held_out_market(ray_session, tmp_path):
    exp = load_experiment(CONFIG, [
        f"tracking.runs_dir={tmp_path / 'runs'}", f"tracking.mlflow_uri=sqlite:///{tmp_path / 'mlruns.db'}",
        "tracking.bounds_file=null"])
    outcome = train(exp)
    module = load_module(outcome.run.policy_dir("final"))

    env = create_env(exp.env.id, dict(exp.env.config) | {"market_seed": HELD_OUT_MARKET_SEED,
                                                        "num_envs": 64, "vector_info": True})
    market = synthetic_market_of(env)
    events, index = market_events(market), IndexPath.of(market)
    oracle = play_oracle(env, market, seed=11)
    agent = rollout(env, BatchedPolicy(module, env.single_action_space, 64, greedy=True, seed=11), seed=11)
    got = capture_metrics(agent, oracle, events, index)
    print({k: round(v, 3) for k, v in got.items()})

    assert got["oracle_excess"] > 0
    assert got["buy_rate"] > 0.005, "the policy must trade (never buying captures nothing)"
    # blind buying hits events at the event rate among decisions; the agent must look at the bar
    # measured here (80k env steps, one per decision, seed 0): fraction 0.48, precision 0.31 at
    # an event rate of 0.046 (6.8x blind), recall 0.89, excess +0.44 per episode (without
    # skipping forced holds, 150k steps gave 0.37, 0.15, 0.24); the bounds keep a margin
    assert got["buy_precision"] >= 3 * got["event_rate"], got
    assert got["buy_recall"] >= 0.4, got
    assert got["oracle_fraction"] >= 0.3, got
    assert np.isfinite(got["excess"]) and got["excess"] > 0.1 * got["oracle_excess"]

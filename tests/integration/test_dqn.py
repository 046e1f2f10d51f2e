"""DQN through the real path: `train` (RLlib's DQN, prioritized episode replay, our Q-module),
then its checkpoint in BatchedPolicy (never a masked action) and a backtest of the run."""

from __future__ import annotations

import numpy as np
import pytest

from app.config.loader import parse_experiment
from app.evaluation.pipeline import backtest_run, load_policy
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env
from app.training.run import train
from envs.core.observation import ACTION_MASK_KEY

ENV = {"id": "raytrade/StockSwing-v0",
       "config": {"synthetic": "rare_event", "market_seed": 0, "mode": "buy_only", "horizon_bars": 5,
                  "reward": "excess_horizon", "episode_bars": 64}}


@pytest.mark.slow
def test_dqn_trains_checkpoints_acts_within_the_mask_and_backtests(ray_session, tmp_path):
    exp = parse_experiment({
        "name": "dqn_tiny", "seed": 0, "env": ENV,
        "model": {"name": "mlp", "config": {"embed_dim": 16, "fusion_hiddens": [32]}},
        "algorithm": {"name": "DQN", "train_batch_size": 32, "num_steps_sampled_before_learning_starts": 200,
                      "target_network_update_freq": 200, "epsilon": [[0, 1.0], [1000, 0.05]],
                      "replay_capacity": 5000},
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 4},
        "stopping": {"iterations": 2},
        "evaluation": {"interval_iterations": 2, "episodes": 4, "stochastic_too": False},
        "checkpoint": {"every_iterations": 100},
        "tracking": {"runs_dir": str(tmp_path / "runs"), "mlflow_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
                     "bounds_file": None},
    })
    outcome = train(exp)
    assert outcome.stopped_by == "iterations" and outcome.state.status == "finished"
    assert outcome.state.env_steps >= 2000  # DQN iterations sample >= 1000 env steps each
    for which in ("final", "best"):
        assert outcome.run.policy_dir(which).is_dir()

    module = load_policy(outcome.run, "final")
    assert type(module).__name__ == "QMLPModule"
    env = create_env(ENV["id"], dict(ENV["config"]) | {"num_envs": 8})
    policy = BatchedPolicy(module, env.single_action_space, 8, greedy=False, seed=1)  # softmax(Q): all actions
    obs, _ = env.reset(seed=3)
    forced = 0
    for _ in range(60):
        step = policy.act(obs)
        mask = obs[ACTION_MASK_KEY]
        assert mask[np.arange(8), step.actions].all()  # never a masked action, even when sampling
        forced += int((mask.sum(1) == 1).sum())
        obs, *_ = env.step(step.actions)
    env.close()
    assert forced > 0  # the mask was exercised (holding periods allow one action)

    report = backtest_run(outcome.run, part="test")
    assert report.result.decisions > 0
    assert (report.out_dir / "report.html").is_file()
    actions = report.records["action"].to_numpy()
    assert set(np.unique(actions)) <= {0, 1}

"""Curriculum on a real Algorithm: stages advance on their rule, all env runners follow, a
restarted env runner gets the current stage back, and a checkpoint restores the stage."""

from __future__ import annotations

import time

import pytest

from app.config.loader import parse_experiment
from app.training.algo import build_algorithm_config
from app.training.curriculum import CurriculumState, apply_stage, get_tasks, make_callbacks
from app.training.rllib_env import rllib_env_name

EASY = {"above": -1e9, "for_iterations": 1}  # any finite return promotes after one iteration
NEVER = {"above": 1e9, "for_iterations": 1}


STAGES = [
    {"name": "free", "env": {"fee_bps": 0.0, "market_seed": 7}, "promote": EASY},
    {"name": "cheap", "env": {"fee_bps": 1.0}, "promote": EASY},
    {"name": "held", "env": {"fee_bps": 2.0}, "promote": NEVER},
    {"name": "target", "env": {}},
]


def experiment(num_env_runners: int, stages: list[dict] = STAGES):
    return parse_experiment({
        "name": "curriculum_it", "seed": 2,
        "env": {"id": "raytrade/SyntheticMeanReversion-v0", "config": {"episode_bars": 16, "fee_bps": 5.0}},
        "model": {"name": "mlp", "config": {"embed_dim": 8, "fusion_hiddens": [16]}},
        "algorithm": {"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1},
        "resources": {"num_env_runners": num_env_runners, "num_envs_per_env_runner": 4},
        "curriculum": {"stages": stages},
    })


def build(exp):
    config = build_algorithm_config(exp, env_name=rllib_env_name(exp.env.id), env_config=dict(exp.env.config),
                                    callbacks=make_callbacks(252.0, curriculum=exp.curriculum))
    return config.build_algo()


def callback(algo):
    callbacks = algo.callbacks
    return callbacks[0] if isinstance(callbacks, list) else callbacks


def test_local_runner_follows_the_stages(ray_session):
    algo = build(experiment(num_env_runners=0))
    try:
        assert get_tasks(algo.env_runner_group) == [{"fee_bps": 0.0, "market_seed": 7}]
        stages = [algo.train()["curriculum"]["stage"] for _ in range(3)]
        assert stages == [1, 2, 2]
        assert get_tasks(algo.env_runner_group) == [{"fee_bps": 2.0}]
        result = algo.train()
        assert result["curriculum"]["stage_name"] == "held" and result["curriculum"]["promotions"] == 2
    finally:
        algo.stop()


def test_remote_runner_restart_and_checkpoint_keep_the_stage(ray_session, tmp_path):
    import ray

    algo = build(experiment(num_env_runners=1, stages=[STAGES[0], STAGES[2], STAGES[3]]))  # free -> held
    group = algo.env_runner_group
    try:
        assert algo.train()["curriculum"]["stage"] == 1
        assert get_tasks(group) == [{"fee_bps": 2.0}]
        checkpoint = algo.save_to_path(str(tmp_path / "ckpt"))

        # a runner dies: RLlib recreates it with the base task; the callback re-applies the stage
        (actor_id,) = group.healthy_env_runner_ids()
        ray.kill(group._worker_manager.actors()[actor_id], no_restart=False)
        deadline = time.monotonic() + 60
        restored_before = algo._counters["total_num_restored_workers"]
        while algo._counters["total_num_restored_workers"] == restored_before:
            assert time.monotonic() < deadline, "the env runner was not recreated"
            algo.train()  # while the runner is down an iteration samples nothing (no error)
        assert group.num_healthy_remote_env_runners() == 1
        assert callback(algo).state.stage == 1  # "held" never promotes: only the hook can set its task
        assert get_tasks(group) == [{"fee_bps": 2.0}]

        # a restore brings back the checkpoint's stage, and moves the runners to it
        callback(algo).state = CurriculumState(stage=2)
        apply_stage(group, {})
        algo.restore_from_path(checkpoint)
        assert callback(algo).state.stage == 1
        assert get_tasks(group) == [{"fee_bps": 2.0}]
    finally:
        algo.stop()


@pytest.mark.parametrize("bad", [{"fee_bps": -1.0}, {"no_such_key": 1}, {"window_bars": 8}])
def test_a_bad_stage_fails_before_training(ray_session, bad):
    """Bad keys and values are refused when the config is loaded (before Ray); a stage that is
    valid on its own but changes the observation (window_bars) when the algorithm is built."""
    exp = experiment(num_env_runners=0)
    raw = exp.model_dump(mode="json")
    raw["curriculum"]["stages"][1]["env"] = bad
    with pytest.raises(Exception, match=r"curriculum.stages(\[1\]|\.1\.env)"):
        build(parse_experiment(raw))

"""The one AlgorithmConfig builder maps the typed experiment onto RLlib 2.60 (no cluster needed)."""

from __future__ import annotations

from app.config.loader import parse_experiment
from app.training.algo import build_algorithm_config
from app.training.callbacks import TradingCallbacks
from app.training.curriculum import make_callbacks


def build(**extra):
    exp = parse_experiment({"name": "a", "env": {"id": "raytrade/SyntheticGBM-v0"}, **extra})
    return build_algorithm_config(exp, env_name="raytrade-rllib:x", env_config={"k": 1},
                                  callbacks=make_callbacks(8760))


def test_ppo_with_native_vector_envs_and_our_module():
    cfg = build(model={"name": "gru", "config": {"max_seq_len": 12}},
                algorithm={"lr": [[0, 0.001], [1000, 0.0001]], "train_batch_size": 512, "minibatch_size": 64},
                resources={"num_env_runners": 2, "num_envs_per_env_runner": 16,
                           "custom_resources_per_env_runner": {"rollout": 1}})
    assert cfg.algo_class.__name__ == "PPO"
    assert cfg.gym_env_vectorize_mode == "vector_entry_point"
    assert (cfg.num_env_runners, cfg.num_envs_per_env_runner) == (2, 16)
    assert cfg.custom_resources_per_env_runner == {"rollout": 1}
    assert cfg.lr == [[0, 0.001], [1000, 0.0001]]
    assert cfg.train_batch_size_per_learner == 512 and cfg.minibatch_size == 64
    assert cfg.rl_module_spec.module_class.__name__ == "GRUModule"
    assert cfg.rl_module_spec.model_config["max_seq_len"] == 12
    assert cfg.env_config == {"k": 1}


def test_appo_and_gpu_learners():
    cfg = build(algorithm={"name": "APPO"}, resources={"num_learners": 1, "num_gpus_per_learner": 1,
                                                       "custom_resources_per_learner": {"learner": 1}})
    assert cfg.algo_class.__name__ == "APPO"
    assert (cfg.num_learners, cfg.num_gpus_per_learner) == (1, 1)
    assert cfg.custom_resources_per_learner == {"learner": 1}


def test_callbacks_carry_the_run_settings():
    cls = make_callbacks(8760)
    assert issubclass(cls, TradingCallbacks) and cls.periods_per_year == 8760.0

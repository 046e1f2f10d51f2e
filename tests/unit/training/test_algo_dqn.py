"""DQN in the experiment schema and the one AlgorithmConfig builder; the beta-annealed
prioritized replay; RLlib's DQN loss bootstrapping only from valid actions (no cluster)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from app.config.loader import parse_experiment
from app.config.schema import AlgorithmConfig, Experiment
from app.errors import ConfigError
from app.training.algo import build_algorithm_config
from app.training.curriculum import make_callbacks
from app.training.dqn_config import beta_anneal_steps
from app.training.dqn_replay import (
    AnnealedPrioritizedEpisodeReplayBuffer,
    annealed_beta,
    sync_replay_clock,
)

RARE = {"id": "raytrade/StockSwing-v0", "config": {"synthetic": "rare_event", "mode": "buy_only"}}


def experiment(algorithm: dict[str, Any], **extra: Any) -> Experiment:
    return parse_experiment({"name": "d", "env": extra.pop("env", RARE), "algorithm": algorithm, **extra})


def build(algorithm: dict[str, Any], **extra: Any) -> Any:
    return build_algorithm_config(experiment(algorithm, **extra), env_name="raytrade-rllib:x", env_config={"k": 1},
                                  callbacks=make_callbacks(252))


# -- schema -----------------------------------------------------------------------------------


def test_dqn_defaults_differ_where_ppo_would_be_wrong():
    dqn, ppo = AlgorithmConfig(name="DQN"), AlgorithmConfig()
    assert (dqn.train_batch_size, dqn.grad_clip) == (64, 10.0)
    assert (ppo.train_batch_size, ppo.grad_clip) == (4000, 0.5)
    assert (dqn.n_step, dqn.replay_alpha, dqn.replay_beta, dqn.replay_beta_final) == (3, 0.6, 0.4, 1.0)
    assert dqn.epsilon == [(0, 1.0), (10_000, 0.02)] and dqn.double_q and dqn.dueling
    assert AlgorithmConfig(name="DQN", train_batch_size=32, minibatch_size=256).train_batch_size == 32


@pytest.mark.parametrize(("algorithm", "message"), [
    ({"name": "DQN", "clip_param": 0.3}, "clip_param: PPO/APPO setting"),
    ({"name": "DQN", "num_epochs": 2, "decision_gae": False}, "decision_gae, num_epochs"),
    ({"name": "PPO", "n_step": 5}, "n_step: DQN setting"),
    ({"name": "APPO", "replay_alpha": 0.5}, "not used by APPO"),
    ({"name": "DQN", "epsilon": [[10, 1.0], [100, 0.1]]}, "increasing env steps from 0"),
    ({"name": "DQN", "epsilon": [[0, 1.5]]}, "less than or equal to 1"),
    ({"name": "DQN", "replay_beta": 0.9, "replay_beta_final": 0.5}, "annealed up"),
    ({"name": "DQN", "train_batch_size": 512, "replay_capacity": 100}, "replay_capacity"),
    ({"name": "DQN", "n_step": 0}, "greater than 0"),
    ({"name": "DQN", "tau": 1.5}, "less than or equal to 1"),
])
def test_bad_dqn_settings_are_refused_at_load(algorithm, message):
    with pytest.raises(ConfigError, match=message):
        experiment(algorithm)


def test_a_saved_experiment_reloads_for_both_families():
    """experiment.yaml lists every field with its default: that is not 'setting' them."""
    for algorithm in ({"name": "PPO", "lr": 1e-3}, {"name": "DQN", "n_step": 5, "epsilon": [[0, 1.0], [50, 0.1]]}):
        exp = experiment(algorithm)
        again = Experiment.model_validate(yaml.safe_load(yaml.safe_dump(exp.model_dump(mode="json"))))
        assert again == exp


@pytest.mark.parametrize(("extra", "message"), [
    ({"model": {"name": "gru"}}, "PrioritizedEpisodeReplayBuffer samples single transitions"),
    ({"env": {"id": "raytrade/Portfolio-v0"}}, "Discrete action space"),
    ({"env": {"id": "raytrade/CryptoFutures-v0", "config": {"action_mode": "continuous"}}}, "Discrete action space"),
])
def test_dqn_refuses_a_gru_and_non_discrete_actions_at_load(extra, message):
    with pytest.raises(ConfigError, match=message):
        experiment({"name": "DQN"}, **extra)
    experiment({"name": "PPO"}, **extra)  # PPO takes them


def test_discrete_futures_and_attention_are_fine():
    exp = experiment({"name": "DQN"}, env={"id": "raytrade/CryptoFutures-v0"}, model={"name": "attention"})
    assert exp.algorithm.name == "DQN"


# -- the AlgorithmConfig builder --------------------------------------------------------------


def test_dqn_config_maps_every_setting():
    cfg = build({"name": "DQN", "lr": [[0, 1e-3], [1000, 1e-4]], "train_batch_size": 32, "n_step": 5,
                 "target_network_update_freq": 400, "tau": 0.5, "double_q": False, "dueling": False,
                 "epsilon": [[0, 1.0], [5000, 0.05]], "num_steps_sampled_before_learning_starts": 300,
                 "training_intensity": 4.0, "replay_capacity": 2000, "replay_alpha": 0.7, "replay_beta": 0.5,
                 "replay_beta_final": 0.9},
                model={"name": "attention", "config": {"embed_dim": 16}},
                resources={"num_envs_per_env_runner": 4}, stopping={"env_steps": 20_000, "iterations": None})
    assert cfg.algo_class.__name__ == "DQN"
    assert cfg.enable_rl_module_and_learner and cfg.enable_env_runner_and_connector_v2
    assert cfg.gym_env_vectorize_mode == "vector_entry_point" and cfg.num_envs_per_env_runner == 4
    assert cfg.lr == [[0, 0.001], [1000, 0.0001]] and cfg.train_batch_size_per_learner == 32
    assert (cfg.n_step, cfg.target_network_update_freq, cfg.tau) == (5, 400, 0.5)
    assert (cfg.double_q, cfg.dueling, cfg.num_atoms) == (False, False, 1)
    assert cfg.epsilon == [[0, 1.0], [5000, 0.05]] and cfg.training_intensity == 4.0
    assert cfg.num_steps_sampled_before_learning_starts == 300
    assert cfg.get_rollout_fragment_length() == 5  # "auto" = n_step
    assert cfg.replay_buffer_config == {
        "type": "app.training.dqn_replay.AnnealedPrioritizedEpisodeReplayBuffer", "capacity": 2000,
        "alpha": 0.7, "beta": 0.5, "beta_final": 0.9, "beta_anneal_steps": 20_000}
    spec = cfg.rl_module_spec
    assert spec.module_class.__name__ == "QAttentionModule"
    assert spec.model_config["embed_dim"] == 16
    assert (spec.model_config["dueling"], spec.model_config["double_q"]) == (False, False)
    assert spec.model_config["epsilon"] == [[0, 1.0], [5000, 0.05]]
    assert cfg.callbacks_class.periods_per_year == 252.0  # the run's callbacks stay
    assert sync_replay_clock in list(np.atleast_1d(cfg.callbacks_on_train_result))
    cfg.validate()


def test_a_dqn_trial_asks_for_one_cpu_on_two_core_machines():
    from app.training.algo import trial_resources

    exp = experiment({"name": "DQN"}, resources={"num_env_runners": 0, "num_learners": 0})
    bundles = trial_resources(exp, env_name="x", env_config={}).bundles
    assert sum(b.get("CPU", 0) for b in bundles) == 1


def test_ppo_still_builds_ppo():
    cfg = build({"name": "PPO", "train_batch_size": 512, "minibatch_size": 64})
    assert cfg.algo_class.__name__ == "PPO" and cfg.rl_module_spec.module_class.__name__ == "MLPModule"
    assert not cfg.callbacks_on_train_result


@pytest.mark.parametrize(("stopping", "own", "expected"), [
    ({"env_steps": 30_000, "iterations": None}, None, 30_000),
    ({"iterations": 40}, None, 40_000),
    ({"env_steps": 10_000, "iterations": 40}, None, 10_000),
    ({"env_steps": 10_000, "iterations": None}, 5_000, 5_000),
])
def test_beta_anneals_over_the_run_budget_unless_told(stopping, own, expected):
    exp = experiment({"name": "DQN", "replay_beta_anneal_steps": own}, stopping=stopping)
    assert beta_anneal_steps(exp) == expected


# -- beta-annealed prioritized replay ---------------------------------------------------------


def test_annealed_beta_is_linear_then_flat():
    assert [annealed_beta(t, 0.4, 1.0, 100) for t in (0, 50, 100, 1000)] == pytest.approx([0.4, 0.7, 1.0, 1.0])
    assert annealed_beta(5, 0.4, 1.0, 0) == 1.0


def _episode(n: int) -> Any:
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    return SingleAgentEpisode(observations=[np.array([float(i)], np.float32) for i in range(n + 1)],
                              actions=[0] * n, rewards=[1.0] * n, terminated=True, len_lookback_buffer=0)


def _min_weight(buffer: AnnealedPrioritizedEpisodeReplayBuffer) -> float:
    batch = buffer.sample(400, n_step=1, beta=0.0)  # RLlib's constant beta: ignored
    return min(float(e.get_extra_model_outputs("weights")[0]) for e in batch)


def test_the_buffer_samples_with_the_scheduled_beta():
    alpha = 0.5
    buffer = AnnealedPrioritizedEpisodeReplayBuffer(1000, alpha=alpha, beta=0.4, beta_final=1.0,
                                                    beta_anneal_steps=100)
    buffer.add(_episode(20))
    assert buffer.env_steps == 20 and buffer.beta == pytest.approx(0.52)
    buffer.sample(20, n_step=1)
    first = buffer._last_sampled_indices[0]
    buffer.update_priorities(np.array([16.0 if i == first else 1.0 for i in buffer._last_sampled_indices]))
    # w = (P(i) / P_min) ** -beta for the high-priority item, 1 for the others
    assert _min_weight(buffer) == pytest.approx(16.0 ** (-alpha * 0.52))
    assert buffer.metrics.peek("beta") == pytest.approx(0.52)
    buffer.sync_env_steps(90)  # a resumed run: its lifetime steps, not the buffer's
    assert buffer.env_steps == 90
    buffer.add(_episode(5))
    assert buffer.env_steps == 95 and _min_weight(buffer) == pytest.approx(16.0 ** (-alpha * 0.97))
    buffer.add(_episode(10))
    assert buffer.beta == 1.0 and _min_weight(buffer) == pytest.approx(16.0 ** -alpha)
    restored = AnnealedPrioritizedEpisodeReplayBuffer(1000, alpha=alpha, beta=0.4, beta_final=1.0,
                                                      beta_anneal_steps=100)
    restored.set_state(buffer.get_state())
    assert restored.env_steps == buffer.env_steps


def test_sync_replay_clock_reads_the_lifetime_env_steps():
    class Algo:
        local_replay_buffer = AnnealedPrioritizedEpisodeReplayBuffer(100, beta_anneal_steps=10)

    sync_replay_clock(algorithm=Algo(), result={"env_runners": {"num_env_steps_sampled_lifetime": 7}})
    assert Algo.local_replay_buffer.env_steps == 7


# -- RLlib's DQN loss on our module: the bootstrap target uses valid next actions only ----------


def test_the_td_target_bootstraps_from_the_best_valid_next_action():
    import gymnasium as gym
    import torch
    from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
    from ray.rllib.core.columns import Columns

    from envs.core.observation import ACTION_MASK_KEY

    exp = experiment({"name": "DQN", "gamma": 0.5, "n_step": 1}, model={"name": "mlp", "config": {"embed_dim": 8}})
    cfg = build_algorithm_config(exp, env_name="x", env_config={})
    space = gym.spaces.Dict({"w": gym.spaces.Box(-1, 1, (4, 2), np.float32),
                             ACTION_MASK_KEY: gym.spaces.Box(0, 1, (3,), np.float32)})
    learner = cfg.build_learner(env=None, spaces={"default_policy": (space, gym.spaces.Discrete(3))})
    module = learner.module["default_policy"]
    with torch.no_grad():
        module.q_net.adv_out.bias[:] = torch.tensor([0.0, 1.0, 100.0])  # action 2 looks best...
    module.make_target_networks()
    b = 4
    w = torch.zeros(b, 4, 2)
    next_mask = torch.tensor([[1.0, 1.0, 0.0]] * b)  # ...but is not allowed next
    batch = {Columns.OBS: {"w": w, ACTION_MASK_KEY: torch.ones(b, 3)},
             Columns.NEXT_OBS: {"w": w, ACTION_MASK_KEY: next_mask},
             Columns.ACTIONS: torch.zeros(b, dtype=torch.long), Columns.REWARDS: torch.ones(b),
             Columns.TERMINATEDS: torch.zeros(b), "n_step": torch.ones(b), "weights": torch.ones(b)}
    fwd = module.forward_train(batch)
    loss = learner.compute_loss_for_module(module_id="default_policy", config=cfg, batch=batch, fwd_out=fwd)
    q_sel = fwd[QF_PREDS][:, 0]
    target = 1.0 + 0.5 * fwd[QF_TARGET_NEXT_PREDS][:, 1]  # the best VALID next action is 1
    expected = torch.nn.functional.huber_loss(q_sel, target).detach()
    assert fwd[QF_NEXT_PREDS].argmax(-1).tolist() == [1] * b
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    with torch.no_grad():  # what bootstrapping from the forbidden action would have given
        forbidden = module._target_q_net({"w": w}, None)[:, 2]
    wrong = torch.nn.functional.huber_loss(q_sel, 1.0 + 0.5 * forbidden)
    assert abs(float(loss.detach()) - float(wrong.detach())) > 10.0


def test_validation_error_names_the_field():
    with pytest.raises(ValidationError, match="replay_alpha"):
        AlgorithmConfig(name="DQN", replay_alpha=-1.0)

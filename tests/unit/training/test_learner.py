"""The faster PPO learner and env-runner pipelines give RLlib's numbers (no Ray cluster needed:
a local env runner and a local learner, as RLlib builds them inside one process)."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

import envs
from app.config.loader import parse_experiment
from app.training.algo import build_algorithm_config
from app.training.decision_gae import DecisionPPOTorchLearner
from app.training.learner import adam, all_finite


class StockDecisionLearner(DecisionPPOTorchLearner):
    """Decision GAE on RLlib's own optimizer, gradient step and per-minibatch metrics."""

    configure_optimizers_for_module = TorchLearner.configure_optimizers_for_module
    apply_gradients = TorchLearner.apply_gradients
    compute_loss_for_module = PPOTorchLearner.compute_loss_for_module
    _compute_off_policyness = TorchLearner._compute_off_policyness
    postprocess_gradients_for_module = Learner.postprocess_gradients_for_module
    after_gradient_based_update = PPOTorchLearner.after_gradient_based_update


def test_all_finite_sees_nan_and_inf_anywhere() -> None:
    ok = [torch.ones(3, 2), torch.zeros(4)]
    assert all_finite(ok) and all_finite([])
    assert not all_finite([*ok, torch.tensor([1.0, float("nan")])])
    assert not all_finite([torch.tensor([float("-inf")]), *ok])


def test_adam_is_fused_on_cpu_float_parameters() -> None:
    assert adam([torch.nn.Parameter(torch.zeros(2))]).defaults["fused"] is True


@pytest.fixture(scope="module")
def config():
    from app.training.rllib_env import rllib_env_name

    logging.getLogger("ray").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    exp = parse_experiment({
        "name": "lean", "seed": 3, "env": {"id": envs.STOCK_SWING},
        "model": {"name": "mlp", "config": {"embed_dim": 8, "fusion_hiddens": [16]}},
        "algorithm": {"name": "PPO", "train_batch_size": 64, "minibatch_size": 32, "num_epochs": 2,
                      "grad_clip": 0.01, "extra": {"use_kl_loss": True}},  # clipping active
        "resources": {"num_env_runners": 0, "num_learners": 0, "num_envs_per_env_runner": 4},
    }, where="test")
    return build_algorithm_config(exp, env_name=rllib_env_name(envs.STOCK_SWING), env_config={"episode_bars": 20})


def _stock(config):
    return config.copy(copy_frozen=False).env_runners(
        add_default_connectors_to_env_to_module_pipeline=True, add_default_connectors_to_module_to_env_pipeline=True,
        env_to_module_connector=None, module_to_env_connector=None).training(learner_class=StockDecisionLearner)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_lean_runner_and_learner_reproduce_rllibs_defaults(config) -> None:
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    lean, stock = SingleAgentEnvRunner(config=config), SingleAgentEnvRunner(config=_stock(config))
    assert [type(c).__name__ for c in lean._env_to_module.connectors] == ["BatchObservations"]
    assert len(stock._env_to_module.connectors) > 1
    stock.module.set_state(lean.module.get_state())
    episodes = {}
    for name, runner in (("lean", lean), ("stock", stock)):
        torch.manual_seed(0)
        episodes[name] = runner.sample(num_timesteps=64, random_actions=False)
    assert len(episodes["lean"]) == len(episodes["stock"]) > 0
    for a, b in zip(episodes["lean"], episodes["stock"], strict=True):  # same seeds: the same episodes
        np.testing.assert_array_equal(a.get_actions(), b.get_actions())
        for key in (Columns.ACTION_LOGP, Columns.ACTION_DIST_INPUTS):
            np.testing.assert_allclose(a.get_extra_model_outputs(key), b.get_extra_model_outputs(key),
                                       rtol=1e-6, atol=1e-6)
        obs_a, obs_b = a.get_observations(), b.get_observations()
        assert obs_a.keys() == obs_b.keys()
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])

    env = lean.env.unwrapped
    fast, slow = config.build_learner(env=env), _stock(config).build_learner(env=env)
    assert type(fast).__name__ == "DecisionPPOTorchLearner"
    slow.set_state(fast.get_state())
    results = {}
    for name, learner in (("fast", fast), ("slow", slow)):
        torch.manual_seed(1)
        np.random.seed(1)
        batch = copy.deepcopy(episodes["lean"])  # the learner connector extends episodes in place
        results[name] = _flat(learner.update(episodes=batch, timesteps={}, minibatch_size=32,
                                             num_epochs=2, shuffle_batch_per_epoch=True))
    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "curr_kl_coeff",
                "diff_num_grad_updates_vs_sampler_policy", "num_module_steps_trained",
                "gradients_default_optimizer_global_norm"):
        a, b = (next(v for k, v in results[n].items() if k.endswith(f"default_policy/{key}")) for n in ("fast", "slow"))
        np.testing.assert_allclose(float(a.peek() if hasattr(a, "peek") else a),
                                   float(b.peek() if hasattr(b, "peek") else b), rtol=1e-4, atol=1e-6, err_msg=key)
    for (name, p), q in zip(fast.module["default_policy"].named_parameters(),
                            slow.module["default_policy"].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)


def test_non_finite_gradients_take_rllibs_path(config) -> None:
    """A NaN gradient is zeroed (RLlib's ``torch_skip_nan_gradients=False`` behaviour) by both."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    env = SingleAgentEnvRunner(config=config).env.unwrapped
    fast, slow = config.build_learner(env=env), _stock(config).build_learner(env=env)
    slow.set_state(fast.get_state())
    for learner in (fast, slow):
        grads = {pid: torch.full_like(p, 0.1) for pid, p in learner._params.items()}
        first = next(iter(grads))
        grads[first].view(-1)[0] = float("nan")
        learner.apply_gradients(grads)
    for p, q in zip(fast.module["default_policy"].parameters(), slow.module["default_policy"].parameters(),
                    strict=True):
        assert bool(torch.isfinite(p).all())
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)

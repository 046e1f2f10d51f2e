"""The three RLModules x the three action spaces: forward passes, gradients, checkpoints,
initial entropy, inference-only copies. No Ray cluster."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from app.models import MODEL_CLASSES, max_entropy_nats, module_spec
from tests.unit.models import CASES, make_batch, small_config

MODELS = sorted(MODEL_CLASSES)
PARAMS = [pytest.param(m, o, a, id=f"{m}-{cid}") for m in MODELS for cid, o, a in CASES]


def build(name: str, obs_space: gym.Space, act_space: gym.Space, **overrides):
    torch.manual_seed(0)
    return module_spec(name, small_config(name, **overrides), observation_space=obs_space,
                       action_space=act_space).build()


def dist_width(act_space: gym.Space) -> int:
    if isinstance(act_space, gym.spaces.Discrete):
        return int(act_space.n)
    if isinstance(act_space, gym.spaces.MultiDiscrete):
        return int(act_space.nvec.sum())
    return 2 * int(act_space.shape[0])


@pytest.mark.parametrize(("name", "obs_space", "act_space"), PARAMS)
def test_forward_passes_shapes_and_sampling(name, obs_space, act_space):
    module = build(name, obs_space, act_space)
    batch = make_batch(module, obs_space)
    lead = (4, 3) if module.is_stateful() else (4,)
    for forward in (module.forward_inference, module.forward_exploration, module.forward_train):
        out = forward(batch)
        logits = out[Columns.ACTION_DIST_INPUTS]
        assert logits.shape == (*lead, dist_width(act_space))
        assert torch.isfinite(logits).all()
        assert (Columns.STATE_OUT in out) == module.is_stateful()
    assert Columns.EMBEDDINGS in out  # forward_train keeps them for compute_values
    values = module.compute_values(batch, embeddings=out[Columns.EMBEDDINGS])
    assert values.shape == lead
    torch.testing.assert_close(module.compute_values(batch), values)

    dist = module.get_exploration_action_dist_cls().from_logits(logits)
    actions = dist.sample().detach().numpy().reshape(-1, *act_space.shape)
    assert all(act_space.contains(a.astype(act_space.dtype)) for a in actions
               if not isinstance(act_space, gym.spaces.Box))
    greedy = module.get_inference_action_dist_cls().from_logits(logits).to_deterministic()
    assert greedy.sample().shape[: len(lead)] == lead


@pytest.mark.parametrize(("name", "obs_space", "act_space"), PARAMS)
def test_every_parameter_gets_a_finite_gradient(name, obs_space, act_space):
    module = build(name, obs_space, act_space)
    batch = make_batch(module, obs_space)
    out = module.forward_train(batch)
    loss = out[Columns.ACTION_DIST_INPUTS].sum() + module.compute_values(
        batch, embeddings=out[Columns.EMBEDDINGS]).sum()
    loss.backward()
    for pname, param in module.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize(("name", "obs_space", "act_space"), PARAMS)
def test_sampling_and_training_passes_agree(name, obs_space, act_space):
    """PPO's first-epoch ratio must be 1: eval/no-grad sampling == train-mode loss pass."""
    module = build(name, obs_space, act_space)
    batch = make_batch(module, obs_space)
    sampled = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    trained = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(sampled, trained.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "obs_space", "act_space"), PARAMS)
def test_save_and_restore_round_trip(name, obs_space, act_space, tmp_path: Path):
    module = build(name, obs_space, act_space, dropout=0.0)
    batch = make_batch(module, obs_space)
    module.save_to_path(tmp_path / "module")
    restored = RLModule.from_checkpoint(tmp_path / "module")
    assert type(restored) is type(module)
    assert restored.model_config == module.model_config
    expected = module.forward_inference(batch)
    got = restored.forward_inference(batch)
    torch.testing.assert_close(got[Columns.ACTION_DIST_INPUTS],
                               expected[Columns.ACTION_DIST_INPUTS], rtol=0, atol=0)
    torch.testing.assert_close(restored.compute_values(batch), module.compute_values(batch),
                               rtol=0, atol=0)
    if module.is_stateful():
        torch.testing.assert_close(got[Columns.STATE_OUT], expected[Columns.STATE_OUT])


@pytest.mark.parametrize(("name", "obs_space", "act_space"), PARAMS)
def test_initial_policy_is_near_uniform(name, obs_space, act_space):
    """Small final-layer weights: entropy within 2% of its maximum (of its start value for
    the Gaussian), even on observations spanning the Boxes' full, extreme ranges."""
    module = build(name, obs_space, act_space)
    batch = make_batch(module, obs_space, batch_size=32)
    logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
    entropy = module.get_train_action_dist_cls().from_logits(logits).entropy()
    if isinstance(act_space, gym.spaces.Box):
        k = int(act_space.shape[0])
        target = k * (0.5 * math.log(2 * math.pi * math.e) + module.cfg.initial_log_std)
        mean = logits[..., :k]
        assert mean.abs().max() < 0.1
    else:
        target = max_entropy_nats(act_space)
    assert entropy.min().item() > 0.98 * target
    assert entropy.max().item() <= target + 1e-5


def test_gaussian_log_std_is_state_independent_and_learnable():
    _, obs_space, act_space = CASES[2]
    module = build("mlp", obs_space, act_space, initial_log_std=-0.5)
    batch = make_batch(module, obs_space)
    logits = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    log_std = logits[..., 1]
    assert torch.allclose(log_std, torch.full_like(log_std, -0.5))
    assert module.pi_head.log_std.requires_grad


@pytest.mark.parametrize("name", MODELS)
def test_inference_only_copy_drops_value_head_and_takes_learner_weights(name):
    _, obs_space, act_space = CASES[0]
    learner = build(name, obs_space, act_space)
    spec = module_spec(name, small_config(name), observation_space=obs_space,
                       action_space=act_space, inference_only=True)
    runner = spec.build()
    assert not hasattr(runner, "vf_head")
    # RLlib's weight sync: learner.get_state(inference_only=True) -> runner.set_state(...)
    runner.set_state(learner.get_state(inference_only=True))
    batch = make_batch(learner, obs_space)
    torch.testing.assert_close(runner.forward_inference(batch)[Columns.ACTION_DIST_INPUTS],
                               learner.forward_inference(batch)[Columns.ACTION_DIST_INPUTS])


@pytest.mark.parametrize("name", MODELS)
def test_builds_from_the_real_stock_swing_env(name):
    """The contract with envs/: build from StockSwing's spaces, act on its observations."""
    import envs  # noqa: F401  (registers the env ids)

    env = gym.make(envs.STOCK_SWING)
    module = module_spec(name, small_config(name), observation_space=env.observation_space,
                         action_space=env.action_space).build()
    state = {k: torch.from_numpy(v)[None] for k, v in module.get_initial_state().items()}
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        batch = {Columns.OBS: {k: torch.from_numpy(np.array(v))[None] for k, v in obs.items()}}
        if state:
            batch[Columns.STATE_IN] = state
        out = module.forward_exploration(batch)
        state = out.get(Columns.STATE_OUT, {})
        dist = module.get_exploration_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        action = int(dist.sample()[0])
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    env.close()

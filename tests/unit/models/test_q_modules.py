"""DQN's Q-modules: shapes, dueling aggregation, action masking in every path that picks an
action (greedy, epsilon exploration, the double-DQN bootstrap argmax), target network,
checkpoints through BatchedPolicy, and what is refused (GRU, distributional, non-Discrete)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.core.columns import Columns

from app.models import QAttentionModule, QMLPModule, q_module_spec
from app.models.q_modules import dueling_q, valid_actions
from app.policy.batched import BatchedPolicy
from envs.core.observation import ACTION_MASK_KEY
from tests.unit.models import box, random_obs, small_config, stock_obs_space

N = 3
NAMES = ("mlp", "attention")
MASKED = 2  # the action the tests make the network love, then forbid


def obs_space(mask: bool = True) -> gym.spaces.Dict:
    space = stock_obs_space()
    return gym.spaces.Dict({**space.spaces, ACTION_MASK_KEY: box((N,), 0.0, 1.0)}) if mask else space


def build(name: str, *, mask: bool = True, seed: int = 0, **settings: Any) -> Any:
    torch.manual_seed(seed)
    spec = q_module_spec(name, small_config(name, obs_norm=True), observation_space=obs_space(mask),
                         action_space=gym.spaces.Discrete(N), **settings)
    return spec.build()


def obs(lead: tuple[int, ...], mask: torch.Tensor | None, seed: int = 0) -> dict[str, torch.Tensor]:
    out = random_obs(stock_obs_space(), lead, seed)
    if mask is not None:
        out[ACTION_MASK_KEY] = mask
    return out


def masks(b: int, seed: int = 0) -> torch.Tensor:
    """Random masks with MASKED always forbidden and at least one valid action per row."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 2, (b, N)).astype(np.float32)
    m[:, MASKED] = 0.0
    m[m.sum(1) == 0, 0] = 1.0
    return torch.from_numpy(m)


def love_masked_action(module: Any) -> None:
    """Make MASKED the unmasked argmax everywhere (online net; targets copy it)."""
    with torch.no_grad():
        module.q_net.adv_out.bias[MASKED] = 100.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("double_q", [True, False])
def test_shapes_of_every_forward_pass(name, double_q):
    module = build(name, double_q=double_q)
    module.make_target_networks()
    b = 5
    batch = {Columns.OBS: obs((b,), masks(b)), Columns.NEXT_OBS: obs((b,), masks(b, 1), seed=1)}
    inference = module.forward_inference({Columns.OBS: batch[Columns.OBS]})
    assert inference[Columns.ACTIONS].shape == (b,)
    assert inference[Columns.ACTION_DIST_INPUTS].shape == (b, N)
    assert module.forward_exploration({Columns.OBS: batch[Columns.OBS]}, t=0)[Columns.ACTIONS].shape == (b,)
    train = module.forward_train(batch)
    assert train[QF_PREDS].shape == train[QF_TARGET_NEXT_PREDS].shape == (b, N)
    assert (QF_NEXT_PREDS in train) == double_q
    assert isinstance(module, QMLPModule if name == "mlp" else QAttentionModule)
    assert not module.is_stateful()


def test_dueling_aggregation_centres_advantages_over_valid_actions():
    value = torch.tensor([1.0, -2.0])
    adv = torch.tensor([[1.0, 2.0, 30.0], [0.0, 3.0, 6.0]], requires_grad=True)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    q = dueling_q(value, adv, valid)
    # Q - V = A - mean over valid actions of A; the mean of Q over valid actions is V
    np.testing.assert_allclose(q.detach(), [[0.5, 1.5, 29.5], [-5.0, -2.0, 1.0]])
    np.testing.assert_allclose([q[0, :2].mean().item(), q[1].mean().item()], value.numpy())
    q[0, :2].sum().backward()
    assert adv.grad[0, MASKED] == 0.0  # a masked advantage gets no gradient through the mean
    np.testing.assert_allclose(dueling_q(value, adv, None).detach().mean(-1), value)


def test_without_dueling_q_is_the_advantage_stream():
    module = build("mlp", dueling=False)
    assert not hasattr(module.q_net, "value_out")
    o = obs((4,), None)
    z = module.q_net.encoder(o)
    expected = module.q_net.adv_out(module.q_net.adv_trunk(z))
    np.testing.assert_allclose(module.q_net(o, None).detach(), expected.detach())


@pytest.mark.parametrize("name", NAMES)
def test_a_masked_action_is_never_greedy_nor_explored(name):
    module = build(name)
    love_masked_action(module)
    b = 64
    m = masks(b)
    o = obs((b,), m)
    assert (module.forward_inference({Columns.OBS: obs((b,), None)})[Columns.ACTIONS] == MASKED).all()  # no mask
    greedy = module.forward_inference({Columns.OBS: o})
    assert (greedy[Columns.ACTIONS] != MASKED).all()
    q = greedy[Columns.ACTION_DIST_INPUTS]
    assert (q[:, MASKED] == torch.finfo(q.dtype).min).all()
    assert torch.equal(greedy[Columns.ACTIONS], q.argmax(-1))
    explored = torch.cat([module.forward_exploration({Columns.OBS: o}, t=0)[Columns.ACTIONS] for _ in range(20)])
    rows = m.repeat(20, 1)
    assert m[:, MASKED].sum() == 0 and (explored != MASKED).all()
    assert rows[torch.arange(len(explored)), explored].all()  # every explored action is valid
    assert set(explored.tolist()) == {0, 1}  # epsilon = 1 at t=0: both valid actions are drawn


def test_epsilon_follows_the_schedule_in_env_steps():
    module = build("mlp", epsilon=[[0, 1.0], [100, 0.0]])
    love_masked_action(module)
    o = obs((256,), None)
    assert (module.forward_exploration({Columns.OBS: o}, t=100)[Columns.ACTIONS] == MASKED).all()
    assert (module.forward_exploration({Columns.OBS: o}, t=0)[Columns.ACTIONS] != MASKED).any()


@pytest.mark.parametrize("double_q", [True, False])
def test_the_bootstrap_argmax_never_picks_a_masked_next_action(double_q):
    module = build("mlp", double_q=double_q)
    love_masked_action(module)
    module.make_target_networks()  # the target loves it too
    b = 32
    next_mask = masks(b, 1)
    batch = {Columns.OBS: obs((b,), torch.ones(b, N)), Columns.NEXT_OBS: obs((b,), next_mask, seed=1)}
    out = module.forward_train(batch)
    picker = out[QF_NEXT_PREDS] if double_q else out[QF_TARGET_NEXT_PREDS]  # as DQNTorchLearner picks
    best = picker.argmax(-1)
    assert (best != MASKED).all() and next_mask[torch.arange(b), best].all()
    target = out[QF_TARGET_NEXT_PREDS].gather(-1, best[:, None])
    assert torch.isfinite(target).all() and (target.abs() < 1e6).all()
    assert (out[QF_PREDS][:, MASKED] > 50).all()  # the current Q stays unmasked (taken actions only)


def test_valid_actions_allow_all_when_a_row_allows_none():
    valid = valid_actions(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]), (2,), N)
    assert valid.tolist() == [[True, True, True], [True, False, True]]
    with pytest.raises(ValueError, match="entries per row"):
        valid_actions(torch.ones(2, 2), (2,), N)


def test_target_network_starts_equal_and_keeps_its_own_statistics():
    """Equal Q-values at first; the online training pass updates the online obs_norm
    statistics only (the target's change when RLlib syncs it)."""
    module = build("mlp")
    module.make_target_networks()
    assert all(not p.requires_grad for p in module._target_q_net.parameters())
    b = 16
    batch = {Columns.OBS: obs((b,), masks(b)), Columns.NEXT_OBS: obs((b,), masks(b, 1), seed=1)}
    with torch.no_grad():
        before = module.forward_target({Columns.OBS: batch[Columns.NEXT_OBS]})[QF_PREDS]
        np.testing.assert_allclose(before, module.compute_q_values({Columns.OBS: batch[Columns.NEXT_OBS]})[QF_PREDS])
    module.forward_train(batch)
    norms = [m for m in module.q_net.modules() if type(m).__name__ == "RunningNorm"]
    target_norms = [m for m in module._target_q_net.modules() if type(m).__name__ == "RunningNorm"]
    assert norms and all(n.count.item() == 2 * b for n in norms)  # the training pass updated them
    assert all(n.count.item() == 0 for n in target_norms)      # the target pass did not
    assert [(a is module.q_net, t is module._target_q_net) for a, t in module.get_target_network_pairs()] \
        == [(True, True)]
    assert module.get_non_inference_attributes() == ["_target_q_net"]


def test_refused_models_and_spaces():
    with pytest.raises(ValueError, match="PrioritizedEpisodeReplayBuffer"):
        q_module_spec("gru")
    with pytest.raises(ValueError, match="embed_dimm"):
        q_module_spec("mlp", {"embed_dimm": 3})
    with pytest.raises(ValueError, match="distributional"):
        q_module_spec("mlp", {"num_atoms": 51})
    with pytest.raises(ValueError, match="Discrete"):
        q_module_spec("mlp", observation_space=obs_space(), action_space=gym.spaces.MultiDiscrete([3, 3])).build()


def test_a_checkpoint_runs_in_batched_policy_greedily_within_the_mask(tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = build("attention")
    love_masked_action(module)
    module.make_target_networks()  # a learner's module, as checkpoints hold it
    module.save_to_path(str(tmp_path / "q"))
    loaded = RLModule.from_checkpoint(str(tmp_path / "q"))
    loaded.eval()
    assert loaded.model_config["dueling"] and loaded.model_config["double_q"]
    b = 8
    m = masks(b)
    batch_obs = {k: v.numpy() for k, v in obs((b,), m).items()}
    step = BatchedPolicy(loaded, gym.spaces.Discrete(N), b, greedy=True).act(batch_obs)
    assert (step.actions != MASKED).all() and m.numpy()[np.arange(b), step.actions].all()
    assert step.values is None and np.allclose(step.action_probs[:, MASKED], 0.0)
    original = module.forward_inference({Columns.OBS: obs((b,), m)})
    np.testing.assert_array_equal(step.actions, original[Columns.ACTIONS].numpy())


def test_an_inference_only_copy_takes_the_learner_weights():
    full = build("mlp")
    full.make_target_networks()
    spec = q_module_spec("mlp", small_config("mlp", obs_norm=True), observation_space=obs_space(),
                         action_space=gym.spaces.Discrete(N), inference_only=True)
    runner = spec.build()
    state = full.get_state(inference_only=True)
    assert not any(k.startswith("_target_q_net") for k in state)
    runner.set_state(state)
    o = {Columns.OBS: obs((4,), masks(4))}
    np.testing.assert_allclose(runner.forward_inference(o)[Columns.ACTION_DIST_INPUTS],
                               full.forward_inference(o)[Columns.ACTION_DIST_INPUTS])

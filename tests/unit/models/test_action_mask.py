"""Action masks in the RLModules: an ``action_mask`` observation entry masks the policy logits in
every forward pass; a forced step (one valid action) is a one-action distribution for PPO."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from app.models import action_dist_cls, module_spec
from app.models.heads import mask_logits
from envs.core.observation import ACTION_MASK_KEY
from tests.unit.models import (
    N_ASSETS,
    box,
    portfolio_obs_space,
    random_obs,
    small_config,
    stock_obs_space,
)

NAMES = ("mlp", "gru", "attention")
N = 3


def with_mask(space: gym.spaces.Dict, shape: tuple[int, ...]) -> gym.spaces.Dict:
    return gym.spaces.Dict({**space.spaces, ACTION_MASK_KEY: box(shape, 0.0, 1.0)})


def build(name: str, obs_space: gym.Space, act_space: gym.Space, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    module = module_spec(name, small_config(name), observation_space=obs_space, action_space=act_space).build()
    with torch.no_grad():  # a decisive policy: masked actions would often win without the mask
        module.pi_head.out.weight.normal_(0.0, 2.0)
    return module


def masks(lead: tuple[int, ...], n: int = N, seed: int = 0, forced: float = 0.5) -> torch.Tensor:
    """Random 0/1 masks with at least one valid action; ``forced`` of the rows allow only 0."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 2, (*lead, n)).astype(np.float32)
    m[..., 0] = 1.0
    m[rng.random(lead) < forced] = np.eye(n, dtype=np.float32)[0]
    return torch.from_numpy(m)


def batch(module: Any, space: gym.spaces.Dict, lead: tuple[int, ...], mask: torch.Tensor | None,
          seed: int = 0) -> dict[str, Any]:
    obs = random_obs(gym.spaces.Dict({k: s for k, s in space.spaces.items() if k != ACTION_MASK_KEY}), lead, seed)
    if mask is not None:
        obs[ACTION_MASK_KEY] = mask
    out: dict[str, Any] = {Columns.OBS: obs}
    if module.is_stateful():
        out[Columns.STATE_IN] = {k: torch.zeros((lead[0], *v.shape)) for k, v in module.get_initial_state().items()}
    return out


def lead_for(name: str) -> tuple[int, ...]:
    return (64, 3) if name == "gru" else (64,)


@pytest.mark.parametrize("name", NAMES)
def test_masked_actions_are_never_sampled_nor_chosen(name):
    """The mask takes away each row's favourite action (forcing another one on half the rows):
    neither sampling nor the greedy choice picks a masked action, in every forward pass."""
    space = with_mask(stock_obs_space(), (N,))
    module = build(name, space, gym.spaces.Discrete(N))
    lead = lead_for(name)
    with torch.no_grad():
        favourite = module.forward_inference(batch(module, space, lead, None))[Columns.ACTION_DIST_INPUTS].argmax(-1)
    mask = torch.ones((*lead, N)).scatter(-1, favourite.unsqueeze(-1), 0.0)
    forced = torch.rand(lead, generator=torch.Generator().manual_seed(0)) < 0.5
    mask[forced] = torch.eye(N)[(favourite[forced] + 1) % N]
    b = batch(module, space, lead, mask)
    with torch.no_grad():
        for forward in (module.forward_inference, module.forward_exploration, module.forward_train):
            logits = forward(b)[Columns.ACTION_DIST_INPUTS]
            assert torch.isfinite(logits).all()
            dist = action_dist_cls(module.action_space).from_logits(logits)
            picks = torch.stack([dist.sample() for _ in range(200)] + [dist.to_deterministic().sample()])
            assert mask.gather(-1, picks.moveaxis(0, -1)).min() == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_a_forced_step_is_a_one_action_distribution_with_no_gradient(name):
    """PPO's terms (log-prob ratio, entropy, KL) on a forced row: 0 and no gradient; free rows
    still learn. The loss is PPO's clipped surrogate with RLlib's own distribution class."""
    space = with_mask(stock_obs_space(), (N,))
    module = build(name, space, gym.spaces.Discrete(N))
    lead = lead_for(name)
    mask = masks(lead, forced=0.5)
    forced = mask.sum(-1) == 1
    b = batch(module, space, lead, mask)
    raw: list[torch.Tensor] = []

    def keep(_m: Any, _a: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        raw.append(out)

    hook = module.pi_head.register_forward_hook(keep)
    out = module.forward_train(b)
    hook.remove()
    cls = action_dist_cls(module.action_space)
    dist = cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
    old = cls.from_logits(out[Columns.ACTION_DIST_INPUTS].detach())
    actions = dist.sample()
    logp, entropy, kl = dist.logp(actions), dist.entropy(), old.kl(dist)
    for term in (logp, entropy, kl):
        assert torch.isfinite(term).all()
        assert (term[forced] == 0).all()
    assert (entropy[~forced] > 0).all()
    advantages = torch.randn(lead, generator=torch.Generator().manual_seed(1))
    ratio = torch.exp(logp - old.logp(actions))
    surrogate = torch.min(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages)
    loss = -(surrogate + 0.01 * entropy - 0.2 * kl).mean()
    loss.backward()
    grad = raw[0].grad
    assert grad is not None and torch.isfinite(grad).all()
    assert (grad[forced] == 0).all()
    assert grad[~forced].abs().sum() > 0


def test_all_but_one_masked_stays_finite_in_every_dtype():
    mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        logits = mask_logits(torch.tensor([[50.0, -3.0, 80.0], [1e4, 2.0, -1e4]], dtype=dtype), mask, (N,))
        dist = torch.distributions.Categorical(logits=logits)
        assert dist.probs.tolist() == mask.tolist()
        assert torch.isfinite(dist.entropy()).all() and (dist.entropy() == 0).all()
        assert torch.isfinite(torch.distributions.kl_divergence(dist, dist)).all()


def test_a_row_with_no_valid_action_is_left_unmasked():
    """A zero-padded time step of a GRU batch has an all-zero mask: not a degenerate row."""
    logits = torch.tensor([[0.5, -1.0, 2.0]])
    assert torch.equal(mask_logits(logits, torch.zeros(1, N), (N,)), logits)


def test_multidiscrete_masks_each_assets_choice():
    space = with_mask(portfolio_obs_space(), (N_ASSETS, N))
    module = build("mlp", space, gym.spaces.MultiDiscrete([N] * N_ASSETS))
    mask = masks((32, N_ASSETS))
    with torch.no_grad():
        logits = module.forward_inference(batch(module, space, (32,), mask))[Columns.ACTION_DIST_INPUTS]
    dist = action_dist_cls(module.action_space).from_logits(logits)
    for _ in range(50):
        picks = dist.sample()  # [32, N_ASSETS]
        assert mask.gather(-1, picks.unsqueeze(-1)).min() == 1.0
    assert torch.equal(logits == torch.finfo(logits.dtype).min, mask.reshape(32, -1) == 0)


@pytest.mark.parametrize("name", NAMES)
def test_modules_without_a_mask_are_unchanged_and_share_the_masked_modules_weights(name):
    """Old checkpoints: a module whose observation space has no mask builds the same parameters
    (the mask is not encoded), runs on batches without a mask, and is masked if one comes."""
    plain, masked_space = stock_obs_space(), with_mask(stock_obs_space(), (N,))
    old = build(name, plain, gym.spaces.Discrete(N))
    new = build(name, masked_space, gym.spaces.Discrete(N))
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in new.state_dict().items()}
    new.load_state_dict(old.state_dict())
    lead = lead_for(name)
    mask = masks(lead)
    with torch.no_grad():
        bare = old.forward_inference(batch(old, plain, lead, None))[Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(bare, old.pi_head(old._embed(batch(old, plain, lead, None))[0]))
        for module in (old, new):
            got = module.forward_inference(batch(module, masked_space, lead, mask))[Columns.ACTION_DIST_INPUTS]
            assert torch.equal(got, torch.where(mask > 0, bare, torch.finfo(bare.dtype).min))


def test_a_continuous_module_ignores_a_mask_entry():
    space = with_mask(stock_obs_space(), (N,))
    module = build("mlp", space, gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
    b = batch(module, space, (4,), masks((4,)))
    with torch.no_grad():
        out = module.forward_inference(b)[Columns.ACTION_DIST_INPUTS]
    assert out.shape == (4, 2) and torch.isfinite(out).all()


def test_rllibs_own_ppo_loss_gives_forced_steps_no_gradient(monkeypatch):
    """RLlib's PPO loss (clipped surrogate, entropy bonus, KL penalty, value loss) on a buy_only
    batch with a mask (a local Learner, no Ray): finite, and zero gradient on the logits of the
    forced steps, which are most of them."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig

    from app.models import module_spec as spec_for
    from envs.stock_swing import StockSwingVectorEnv

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("the probe must not start Ray"))
    env = StockSwingVectorEnv(8, mode="buy_only", horizon_bars=5, window_bars=10)
    spaces = (env.single_observation_space, env.single_action_space)
    config = (PPOConfig().api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
              .environment(observation_space=spaces[0], action_space=spaces[1])
              .rl_module(rl_module_spec=spec_for("mlp", small_config("mlp"), observation_space=spaces[0],
                                                 action_space=spaces[1]))
              .training(entropy_coeff=0.01, kl_coeff=0.2))
    learner = config.build_learner(env=None, spaces={"default_policy": spaces})
    learner.build()
    module = learner.module["default_policy"]
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(12):
        rows.append(obs)
        obs, *_ = env.step(np.ones(8, dtype=np.int64))  # always "buy": ignored while holding
    obs_t = {k: torch.as_tensor(np.concatenate([r[k] for r in rows])) for k in rows[0]}
    n, forced = len(obs_t["owned"]), obs_t[ACTION_MASK_KEY][:, 1] == 0
    with torch.no_grad():
        logits = module.forward_exploration({Columns.OBS: obs_t})[Columns.ACTION_DIST_INPUTS]
    dist = module.get_exploration_action_dist_cls().from_logits(logits)
    actions = dist.sample()
    gen = torch.Generator().manual_seed(0)
    batch = {Columns.OBS: obs_t, Columns.ACTIONS: actions, Columns.ACTION_LOGP: dist.logp(actions),
             Columns.ACTION_DIST_INPUTS: logits, Columns.ADVANTAGES: torch.randn(n, generator=gen),
             Columns.VALUE_TARGETS: torch.randn(n, generator=gen)}
    raw: list[torch.Tensor] = []

    def keep(_m: Any, _a: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        raw.append(out)

    hook = module.pi_head.register_forward_hook(keep)
    fwd = module.forward_train(batch)
    hook.remove()
    loss = learner.compute_loss_for_module(module_id="default_policy", batch=batch, fwd_out=fwd,
                                           config=learner.config.get_config_for_module("default_policy"))
    loss.backward()
    grad = raw[0].grad
    assert forced.float().mean() > 0.5 and (actions[forced] == 0).all()
    assert torch.isfinite(loss) and grad is not None and torch.isfinite(grad).all()
    assert (grad[forced] == 0).all() and grad[~forced].abs().sum() > 0

"""The exploration temperature of the RLModules (``TradingRLModule.exploration_temperature``):
``forward_exploration`` samples from ``pi^(1/T)``; T = 1 is the plain forward; masks survive
any T; the behaviour log-prob is recorded and the untempered logits are kept for PPO's KL."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from app.models import action_dist_cls
from app.models.common import temper_dist_inputs
from tests.unit.models import N_ASSETS, portfolio_obs_space, stock_obs_space
from tests.unit.models.test_action_mask import NAMES, N, batch, build, lead_for, masks, with_mask

TEMPERATURES = (0.25, 0.5, 1.5, 2.0, 4.0)


def plain_forward(module, b) -> dict:
    """``_forward`` in eval mode, as RLlib's exploration and inference passes run it (the
    attention model's eval path differs numerically from its train path)."""
    module.eval()
    with torch.no_grad():
        return module._forward(b)


def discrete_module(name: str):
    space = with_mask(stock_obs_space(), (N,))
    return build(name, space, gym.spaces.Discrete(N)), space


@pytest.mark.parametrize("name", NAMES)
def test_temperature_one_is_the_plain_forward(name):
    """Default T = 1: ``forward_exploration`` returns exactly ``_forward``'s outputs and leaves the
    sampling to RLlib (no ACTIONS), as before the temperature existed."""
    module, space = discrete_module(name)
    assert module.exploration_temperature == 1.0
    lead = lead_for(name)
    b = batch(module, space, lead, masks(lead))
    plain = plain_forward(module, b)
    out = module.forward_exploration(b)
    assert out.keys() == plain.keys() and Columns.ACTIONS not in out
    assert torch.equal(out[Columns.ACTION_DIST_INPUTS], plain[Columns.ACTION_DIST_INPUTS])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_tempered_sampling_records_behaviour_logp_and_untempered_logits(name, temperature):
    module, space = discrete_module(name)
    lead = lead_for(name)
    b = batch(module, space, lead, masks(lead))
    logits = plain_forward(module, b)[Columns.ACTION_DIST_INPUTS]
    module.exploration_temperature = temperature
    torch.manual_seed(0)
    out = module.forward_exploration(b)
    # untempered logits for the learner's KL term; actions and their log-prob under pi_T
    assert torch.equal(out[Columns.ACTION_DIST_INPUTS], logits)
    tempered = torch.distributions.Categorical(logits=torch.where(
        logits == torch.finfo(logits.dtype).min, logits, logits / temperature))
    assert out[Columns.ACTIONS].shape == lead
    torch.testing.assert_close(out[Columns.ACTION_LOGP], tempered.log_prob(out[Columns.ACTIONS]))
    # inference (backtests, Serve, validation) and training passes never temper
    with torch.no_grad():
        assert torch.equal(module.forward_inference(b)[Columns.ACTION_DIST_INPUTS], logits)
        torch.testing.assert_close(module.forward_train(b)[Columns.ACTION_DIST_INPUTS], logits)  # train-mode numerics


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_masked_actions_stay_unsampled_at_any_temperature(name, temperature):
    """The mask removes each row's favourite action (forcing another on half the rows); tempered
    sampling never picks a masked action, forced rows stay one-action distributions (log-prob
    0), and every log-prob is finite (T < 1 must not overflow finfo.min to -inf)."""
    module, space = discrete_module(name)
    lead = lead_for(name)
    mask = masks(lead, forced=0.5)
    b = batch(module, space, lead, mask)
    module.exploration_temperature = temperature
    forced = mask.sum(-1) == 1
    for seed in range(20):
        torch.manual_seed(seed)
        out = module.forward_exploration(b)
        picks = out[Columns.ACTIONS]
        assert mask.gather(-1, picks.unsqueeze(-1)).min() == 1.0
        logp = out[Columns.ACTION_LOGP]
        assert torch.isfinite(logp).all() and (logp[forced] == 0).all()
    inputs = temper_dist_inputs(out[Columns.ACTION_DIST_INPUTS], temperature, module.action_space)
    probs = torch.softmax(inputs, dim=-1)
    assert torch.isfinite(inputs).all() and (probs[mask == 0] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_higher_temperature_raises_the_entropy(name):
    module, space = discrete_module(name)
    lead = lead_for(name)
    b = batch(module, space, lead, masks(lead, forced=0.0))
    logits = plain_forward(module, b)[Columns.ACTION_DIST_INPUTS]
    cls = action_dist_cls(module.action_space)
    entropies = [cls.from_logits(temper_dist_inputs(logits, t, module.action_space)).entropy().mean().item()
                 for t in (0.5, 1.0, 1.5, 2.0, 4.0)]
    assert all(a < b for a, b in zip(entropies, entropies[1:], strict=False)), entropies
    assert entropies[-1] <= np.log(N) + 1e-6


def test_sampled_frequencies_follow_the_tempered_softmax():
    """Sampling really is from softmax(logits / T): over 20k draws per row (4 observations, each
    repeated), empirical frequencies match it and differ from the untempered policy's."""
    module, space = discrete_module("mlp")
    b = batch(module, space, (4,), masks((4,), forced=0.0))
    logits = plain_forward(module, b)[Columns.ACTION_DIST_INPUTS]
    draws = 20_000
    big = {Columns.OBS: {k: v.repeat_interleave(draws, 0) for k, v in b[Columns.OBS].items()}}
    module.exploration_temperature = 3.0
    torch.manual_seed(0)
    picks = module.forward_exploration(big)[Columns.ACTIONS].reshape(4, draws)
    freq = torch.stack([torch.bincount(row, minlength=N) for row in picks]).double() / draws
    expected = torch.softmax(temper_dist_inputs(logits, 3.0, module.action_space), -1).double()
    assert torch.allclose(freq, expected, atol=0.015), (freq, expected)
    assert (freq - torch.softmax(logits, -1).double()).abs().max() > 0.05


@pytest.mark.parametrize("name", NAMES)
def test_one_temperature_per_row(name):
    """A tensor ``[B]`` tempers each row (sub-env) with its own T; rows at T = 1 get the
    untempered log-probs. A wrong length is a clear error, not a silent broadcast."""
    module, space = discrete_module(name)
    lead = lead_for(name)
    b = batch(module, space, lead, masks(lead, forced=0.0))
    logits = plain_forward(module, b)[Columns.ACTION_DIST_INPUTS]
    temps = torch.tensor([1.0, 2.0, 0.5, 4.0]).repeat(lead[0] // 4)
    module.exploration_temperature = temps
    out = module.forward_exploration(b)
    shape = (-1, *([1] * (logits.ndim - 1)))
    expected = torch.distributions.Categorical(logits=logits / temps.reshape(shape))
    torch.testing.assert_close(out[Columns.ACTION_LOGP], expected.log_prob(out[Columns.ACTIONS]))
    plain = torch.distributions.Categorical(logits=logits)
    ones = temps == 1.0
    torch.testing.assert_close(out[Columns.ACTION_LOGP][ones], plain.log_prob(out[Columns.ACTIONS])[ones])
    module.exploration_temperature = temps[:-1]
    with pytest.raises(ValueError, match="entries for a batch"):
        module.forward_exploration(b)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperatures_are_refused(bad):
    module, space = discrete_module("mlp")
    module.exploration_temperature = bad
    with pytest.raises(ValueError, match="finite and > 0"):
        module.forward_exploration(batch(module, space, (4,), masks((4,))))


def test_multidiscrete_tempers_every_component():
    space = with_mask(portfolio_obs_space(), (N_ASSETS, N))
    module = build("mlp", space, gym.spaces.MultiDiscrete([N] * N_ASSETS))
    mask = masks((32, N_ASSETS))
    b = batch(module, space, (32,), mask)
    cls = action_dist_cls(module.action_space)
    logits = plain_forward(module, b)[Columns.ACTION_DIST_INPUTS]
    hot, cold = (cls.from_logits(temper_dist_inputs(logits, t, module.action_space)).entropy() for t in (3.0, 1.0))
    assert (hot >= cold - 1e-5).all() and (hot > cold + 1e-3).any()
    module.exploration_temperature = 3.0
    for seed in range(30):
        torch.manual_seed(seed)
        picks = module.forward_exploration(b)[Columns.ACTIONS]  # [32, N_ASSETS]
        assert mask.gather(-1, picks.unsqueeze(-1)).min() == 1.0


def test_gaussian_temperature_scales_the_std_by_sqrt_t():
    space = stock_obs_space()
    module = build("mlp", space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    b = batch(module, space, (8,), None)
    inputs = plain_forward(module, b)[Columns.ACTION_DIST_INPUTS]
    tempered = temper_dist_inputs(inputs, 4.0, module.action_space)
    torch.testing.assert_close(tempered[:, :2], inputs[:, :2])
    torch.testing.assert_close(tempered[:, 2:].exp(), inputs[:, 2:].exp() * 2.0)
    module.exploration_temperature = 4.0
    out = module.forward_exploration(b)
    dist = action_dist_cls(module.action_space).from_logits(tempered)
    torch.testing.assert_close(out[Columns.ACTION_LOGP], dist.logp(out[Columns.ACTIONS]))


def test_the_temperature_is_not_part_of_the_weights():
    module, _ = discrete_module("mlp")
    module.exploration_temperature = torch.full((4,), 2.0)
    assert not any("temperature" in k for k in module.state_dict())
    assert "exploration_temperature" not in module.get_state()

"""Parameter counts and the dead-ReLU fraction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.models import ReluMonitor, count_parameters, dead_relu_fraction, module_spec
from tests.unit.models import CASES, make_batch, small_config


def test_count_parameters():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert count_parameters(net) == 3 * 4 + 4 + 4 * 2 + 2
    net[2].weight.requires_grad_(False)
    assert count_parameters(net) == 3 * 4 + 4 + 2
    assert count_parameters(net, trainable_only=False) == 3 * 4 + 4 + 4 * 2 + 2


@pytest.mark.parametrize(("bias", "expected"), [(-100.0, 1.0), (100.0, 0.0)])
def test_dead_fraction_extremes(bias, expected):
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
    nn.init.constant_(net[0].bias, bias)
    assert dead_relu_fraction(net, torch.randn(16, 3)) == expected


def test_monitor_pools_passes_and_removes_its_hooks():
    net = nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    with ReluMonitor(net) as monitor:
        net(torch.ones(4, 1))  # unit 0 fires, unit 1 does not
        assert monitor.dead_fraction() == 0.5
        net(-torch.ones(4, 1))  # now unit 1 fires too
    assert monitor.dead_fraction() == 0.0
    assert not net[1]._forward_hooks


@pytest.mark.parametrize("name", ["mlp", "gru", "attention"])
def test_dead_fraction_of_modules(name):
    _, obs_space, act_space = CASES[0]
    module = module_spec(name, small_config(name), observation_space=obs_space,
                         action_space=act_space).build()
    fraction = dead_relu_fraction(module, make_batch(module, obs_space, batch_size=16))
    assert fraction is not None and 0.0 <= fraction < 0.9
    tanh = module_spec(name, small_config(name, activation="tanh"), observation_space=obs_space,
                       action_space=act_space).build()
    assert dead_relu_fraction(tanh, make_batch(tanh, obs_space)) is None

"""share_encoder: false gives the value head its own encoder; bar_embed shares weights per bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from app.models import module_spec
from app.runs.env_factory import create_env


@pytest.fixture(scope="module")
def spaces():
    env = create_env("raytrade/StockSwing-v0", {"synthetic": "rare_event", "num_envs": 4})
    obs, _ = env.reset(seed=0)
    return env.single_observation_space, env.single_action_space, obs


def _build(spaces, **config):
    obs_space, act_space, _ = spaces
    return module_spec("mlp", {"embed_dim": 8, "fusion_hiddens": [16], **config},
                       observation_space=obs_space, action_space=act_space).build()


def _batch(obs):
    return {Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}}


def test_value_loss_moves_only_the_critic_encoder(spaces) -> None:
    module = _build(spaces, share_encoder=False)
    module.compute_values(_batch(spaces[2])).sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in module.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in module.vf_encoder.parameters())


def test_shared_encoder_gets_the_value_gradient(spaces) -> None:
    module = _build(spaces)
    assert module.vf_encoder is None
    module.compute_values(_batch(spaces[2])).sum().backward()
    assert any(p.grad is not None and p.grad.any() for p in module.encoder.parameters())


def test_separate_critic_ignores_the_policy_embeddings(spaces) -> None:
    module = _build(spaces, share_encoder=False)
    batch = _batch(spaces[2])
    with torch.no_grad():
        out = module.forward_train(batch)
        np.testing.assert_allclose(module.compute_values(batch, embeddings=out[Columns.EMBEDDINGS]),
                                   module.compute_values(batch), rtol=1e-6)


def test_gru_refuses_a_separate_critic_encoder() -> None:
    with pytest.raises(ValueError, match="share_encoder"):
        module_spec("gru", {"share_encoder": False})


def test_bar_embed_recognises_a_pattern_at_any_position(spaces) -> None:
    """The per-bar layer is one set of weights: the same bar at two positions embeds the same."""
    module = _build(spaces, bar_embed=4)
    embed = next(iter(module.encoder.embed.values()))
    bars = torch.randn(1, 50, 4)
    moved = torch.roll(bars, shifts=7, dims=1)
    with torch.no_grad():
        a, b = embed.bar(bars), embed.bar(moved)
    torch.testing.assert_close(a[0, 10], b[0, 17])
    assert embed.net[0].in_features == 50 * 4

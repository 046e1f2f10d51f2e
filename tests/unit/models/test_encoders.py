"""DictObsEncoder: generic over Dicts of rank-1/2/3 Boxes, per-key windows, clear errors."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from app.models import DictObsEncoder, count_parameters, parse_model_config
from tests.unit.models import SMALL, box, portfolio_obs_space, random_obs, stock_obs_space

ATTN = {k: v for k, v in SMALL.items() if k.startswith("attn") or k in ("embed_dim", "fusion_hiddens")}


def encoder(space: gym.Space, temporal: str = "flatten", model: str = "attention", **overrides):
    torch.manual_seed(0)
    cfg = parse_model_config(model, {**ATTN, **overrides})
    return DictObsEncoder(space, cfg, temporal).eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("temporal", ["flatten", "attention"])
def test_groups_entries_by_rank(temporal):
    enc = encoder(stock_obs_space(), temporal)
    # gymnasium's Dict sorts its keys; the encoder follows the space's order.
    assert enc.flat_keys == ["bars_held", "daily_volume", "owned", "weekly_volume"]
    assert enc.window_keys == ["daily_hloc", "index_hloc", "monthly_hloc", "weekly_hloc"]
    out = enc(random_obs(stock_obs_space(), (5,)))
    assert out.shape == (5, enc.out_dim) == (5, 32)


@pytest.mark.parametrize("temporal", ["flatten", "attention"])
def test_any_leading_dims(temporal):
    enc = encoder(stock_obs_space(), temporal)
    obs = random_obs(stock_obs_space(), (2, 3))
    out = enc(obs)
    assert out.shape == (2, 3, enc.out_dim)
    flat = enc({k: v.reshape(6, *v.shape[2:]) for k, v in obs.items()})
    torch.testing.assert_close(out.reshape(6, -1), flat)


def test_sequence_keys_make_rank1_windows():
    enc = encoder(stock_obs_space(), "attention", sequence_keys=["daily_volume"])
    assert "daily_volume" in enc.window_keys and "daily_volume" not in enc.flat_keys
    assert enc(random_obs(stock_obs_space(), (2,))).shape == (2, 32)


@pytest.mark.parametrize("temporal", ["flatten", "attention"])
def test_rank3_asset_axis_batch_shares_weights_across_assets(temporal):
    small, large = portfolio_obs_space(n_assets=2), portfolio_obs_space(n_assets=5)
    enc_small, enc_large = encoder(small, temporal), encoder(large, temporal)
    name = enc_small._names["assets_hloc"]
    assert count_parameters(enc_small.embed[name]) == count_parameters(enc_large.embed[name])
    assert enc_large(random_obs(large, (3,))).shape == (3, 32)
    # Same weights, asset order swapped -> the per-asset embeddings swap, so the output changes
    # (asset identity is kept by position in the concatenation).
    obs = random_obs(small, (1,))
    swapped = dict(obs, assets_hloc=obs["assets_hloc"].flip(1))
    assert not torch.allclose(enc_small(obs), enc_small(swapped))


@pytest.mark.parametrize("temporal", ["flatten", "attention"])
def test_rank3_asset_axis_features(temporal):
    space = portfolio_obs_space(n_assets=4)
    enc = encoder(space, temporal, asset_axis="features")
    assert enc(random_obs(space, (3,))).shape == (3, 32)


def test_attention_sees_the_whole_window_and_windows_may_differ_in_length():
    space = gym.spaces.Dict({"short": box((3, 2)), "long": box((17, 5))})
    for pool in ("last", "mean"):
        enc = encoder(space, "attention", attn_pool=pool)
        obs = random_obs(space, (2,))
        changed = dict(obs, long=obs["long"].clone())
        changed["long"][:, 0] += 1.0  # the OLDEST bar only
        assert not torch.allclose(enc(obs), enc(changed)), pool


def test_plain_box_observation_is_one_entry():
    space = box((10, 4))
    enc = encoder(space, "attention")
    x = random_obs(gym.spaces.Dict({"obs": space}), (2,))["obs"]
    assert enc(x).shape == (2, 32)


@pytest.mark.parametrize(
    ("space", "match"),
    [
        (gym.spaces.Dict({"bad": box((2, 3, 4, 5))}), "'bad'"),
        (gym.spaces.Dict({"bad": gym.spaces.Discrete(3)}), "'bad'"),
        (gym.spaces.Discrete(3), "Dict"),
    ],
)
def test_unsupported_observation_spaces_name_the_entry(space, match):
    with pytest.raises(ValueError, match=match):
        encoder(space)


def test_unknown_sequence_key_is_named():
    with pytest.raises(ValueError, match="sequence_keys"):
        encoder(stock_obs_space(), sequence_keys=["nope"])


def test_wrong_input_shape_names_the_entry():
    enc = encoder(stock_obs_space())
    obs = random_obs(stock_obs_space(), (2,))
    obs["weekly_hloc"] = obs["weekly_hloc"][:, :-1]
    with pytest.raises(ValueError, match="weekly_hloc"):
        enc(obs)
    del obs["weekly_hloc"]
    with pytest.raises(KeyError, match="weekly_hloc"):
        enc(obs)


def test_symlog_tames_unbounded_counts():
    """bars_held up to 1e5 must not swamp the fused embedding (it is log-compressed)."""
    space = stock_obs_space()
    enc = encoder(space)
    obs = random_obs(space, (8,))
    obs["bars_held"] = torch.full_like(obs["bars_held"], 1e5)
    assert enc(obs).abs().max() < 100

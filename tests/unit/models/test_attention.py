"""The attention encoder's parts: a standard pre-norm transformer layer, patch tokens, the pruned
last layer, and batching that never mixes rows."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from torch import nn

from app.models import DictObsEncoder, parse_model_config
from app.models.encoders import PatchTokens, TransformerBlock
from tests.unit.models import SMALL, box, portfolio_obs_space, random_obs, stock_obs_space

ATTN = {k: v for k, v in SMALL.items() if k.startswith("attn") or k in ("embed_dim", "fusion_hiddens")}


def encoder(space: gym.Space, **overrides) -> DictObsEncoder:
    torch.manual_seed(0)
    return DictObsEncoder(space, parse_model_config("attention", {**ATTN, **overrides}), "attention").eval()


def test_block_is_torch_pre_norm_transformer_layer():
    """Same weights, same outputs as ``nn.TransformerEncoderLayer(norm_first=True)``."""
    torch.manual_seed(0)
    dim, heads, ff = 16, 4, 24
    ours = TransformerBlock(dim, heads, ff, "relu", 0.0).eval()
    ref = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True, norm_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(ours.proj.weight)
        ref.self_attn.out_proj.bias.copy_(ours.proj.bias)
        ref.linear1.load_state_dict(ours.ff[0].state_dict())
        ref.linear2.load_state_dict(ours.ff[2].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randn(5, 7, dim)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_pruned_last_layer_equals_full_layer_at_the_kept_tokens():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, 32, "relu", 0.0)
    x = torch.randn(6, 9, 16, requires_grad=True)
    keep = torch.tensor([2, 5, 8])
    full = block(x)[:, keep]
    pruned = block(x, keep=keep)
    torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-6)
    # gradients flow to every token (they are keys and values of the kept queries)
    pruned.sum().backward()
    assert bool((x.grad.abs().sum(-1) > 0).all())


@pytest.mark.parametrize(("window_bars", "patch", "n_tokens"), [(17, 5, 4), (10, 5, 2), (3, 5, 1), (4, 1, 4)])
def test_patch_tokens_group_bars_newest_last(window_bars, patch, n_tokens):
    torch.manual_seed(0)
    tokens = PatchTokens(window_bars, 3, patch, 8)
    assert tokens.n_tokens == n_tokens
    x = torch.randn(2, window_bars, 3)
    base = tokens(x)
    assert base.shape == (2, n_tokens, 8)
    for bar, token in ((0, 0), (window_bars - 1, n_tokens - 1)):
        changed = x.clone()
        changed[:, bar] += 1.0
        moved = (tokens(changed) - base).abs().sum(-1).sum(0) > 0  # which tokens changed
        assert moved.tolist() == [t == token for t in range(n_tokens)], (bar, moved)


@pytest.mark.parametrize("space_fn", [stock_obs_space, portfolio_obs_space])
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_rows_never_mix(space_fn, pool):
    """Windows and assets are folded into the batch: a row's output depends on that row only."""
    space = space_fn()
    enc = encoder(space, attn_pool=pool, attn_patch_bars=3)
    obs = random_obs(space, (4,), seed=1)
    other = random_obs(space, (4,), seed=2)
    mixed = {k: torch.cat([obs[k][:1], other[k][1:]]) for k in obs}
    torch.testing.assert_close(enc(mixed)[0], enc(obs)[0])
    assert not torch.allclose(enc(mixed)[1:], enc(obs)[1:])


def test_windows_attend_to_each_other():
    """The windows of a row form ONE sequence: the daily window's newest token, after a layer,
    depends on the weekly window's tokens."""
    space = gym.spaces.Dict({"daily": box((10, 4)), "weekly": box((10, 4))})
    enc = encoder(space)
    obs = random_obs(space, (3,))
    daily = enc.embed[enc._names["daily"]](obs["daily"])
    weekly = enc.embed[enc._names["weekly"]](obs["weekly"])
    assert enc.row_attn is not None
    block, daily_last = enc.row_attn.blocks[0], int(enc.row_attn.last[0])
    assert daily_last == daily.shape[1] - 1
    out = block(torch.cat([daily, weekly], dim=1))[:, daily_last]
    out_changed = block(torch.cat([daily, torch.randn_like(weekly)], dim=1))[:, daily_last]
    assert not torch.allclose(out, out_changed)


def test_asset_windows_with_different_asset_counts_are_refused():
    space = gym.spaces.Dict({"a": box((2, 10, 4)), "b": box((3, 10, 4))})
    with pytest.raises(ValueError, match="n_assets"):
        encoder(space)

"""GRU statefulness: the state is real, starts at zero, and chunked == step-by-step."""

from __future__ import annotations

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from app.models import module_spec
from tests.unit.models import CASES, random_obs, small_config

_, OBS_SPACE, ACT_SPACE = CASES[0]


def build(**overrides):
    torch.manual_seed(0)
    return module_spec("gru", small_config("gru", **overrides), observation_space=OBS_SPACE,
                       action_space=ACT_SPACE).build()


def test_initial_state_is_unbatched_zeros_and_module_is_stateful():
    module = build(gru_hidden=16)
    state = module.get_initial_state()
    assert set(state) == {"h"}
    assert state["h"].shape == (16,) and state["h"].dtype == np.float32
    assert not state["h"].any()
    assert module.is_stateful()
    # RLlib's connectors read max_seq_len from the module's own model_config.
    assert module.model_config["max_seq_len"] == 4


def test_state_carries_information():
    module = build()
    obs = random_obs(OBS_SPACE, (2, 1))
    zero = {"h": torch.zeros(2, 16)}
    other = {"h": torch.ones(2, 16) * 0.5}
    out_zero = module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: zero})
    out_other = module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: other})
    assert not torch.allclose(out_zero[Columns.ACTION_DIST_INPUTS],
                              out_other[Columns.ACTION_DIST_INPUTS])
    assert not torch.allclose(out_zero[Columns.STATE_OUT]["h"], out_other[Columns.STATE_OUT]["h"])
    assert out_zero[Columns.STATE_OUT]["h"].shape == (2, 16)


def test_training_sequence_equals_step_by_step_sampling():
    """Sampling runs T=1 steps threading STATE_OUT -> STATE_IN; training runs the whole chunk
    from the chunk's first state. Both must give the same logits and values."""
    module = build()
    seq_len = 5
    obs = random_obs(OBS_SPACE, (3, seq_len), seed=1)
    h0 = {"h": torch.randn(3, 16) * 0.3}
    train = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: h0})
    values = module.compute_values({Columns.OBS: obs, Columns.STATE_IN: h0})
    assert values.shape == (3, seq_len)

    state, logits = h0, []
    for t in range(seq_len):
        step_obs = {k: v[:, t : t + 1] for k, v in obs.items()}
        out = module.forward_exploration({Columns.OBS: step_obs, Columns.STATE_IN: state})
        logits.append(out[Columns.ACTION_DIST_INPUTS])
        state = out[Columns.STATE_OUT]
    torch.testing.assert_close(torch.cat(logits, dim=1),
                               train[Columns.ACTION_DIST_INPUTS].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state["h"], train[Columns.STATE_OUT]["h"].detach(),
                               rtol=1e-5, atol=1e-6)


def test_without_time_axis_or_state_starts_from_zero_state():
    """Serve/backtest convenience: obs [B, ...] and no STATE_IN == [B, 1, ...] from zeros."""
    module = build()
    obs = random_obs(OBS_SPACE, (2,))
    plain = module.forward_inference({Columns.OBS: obs})
    timed = module.forward_inference({
        Columns.OBS: {k: v[:, None] for k, v in obs.items()},
        Columns.STATE_IN: {"h": torch.zeros(2, 16)},
    })
    assert plain[Columns.ACTION_DIST_INPUTS].shape == (2, 3)
    torch.testing.assert_close(plain[Columns.ACTION_DIST_INPUTS],
                               timed[Columns.ACTION_DIST_INPUTS][:, 0])
    torch.testing.assert_close(plain[Columns.STATE_OUT]["h"], timed[Columns.STATE_OUT]["h"])


def test_bad_state_shape_is_a_clear_error():
    module = build()
    obs = random_obs(OBS_SPACE, (2, 1))
    try:
        module.forward_inference({Columns.OBS: obs, Columns.STATE_IN: {"h": torch.zeros(2, 7)}})
    except ValueError as err:
        assert "STATE_IN" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_zero_padded_steps_never_change_the_valid_ones():
    """RLlib zero-pads episode chunks to max_seq_len AFTER the valid steps: whatever the padding
    holds, the valid steps' logits, values and embeddings are those of the unpadded chunk."""
    module = build()
    valid, seq_len = 3, 5
    obs = random_obs(OBS_SPACE, (2, seq_len), seed=3)
    padded = {k: v.clone() for k, v in obs.items()}
    for v in padded.values():
        v[:, valid:] = 0.0
    h0 = {"h": torch.randn(2, 16) * 0.3}
    outs = [module.forward_train({Columns.OBS: o, Columns.STATE_IN: h0}) for o in (obs, padded)]
    short = module.forward_train({Columns.OBS: {k: v[:, :valid] for k, v in obs.items()},
                                  Columns.STATE_IN: h0})
    for key in (Columns.ACTION_DIST_INPUTS, Columns.EMBEDDINGS):
        torch.testing.assert_close(outs[0][key][:, :valid], outs[1][key][:, :valid])
        torch.testing.assert_close(outs[0][key][:, :valid], short[key], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(outs[0][key][:, valid:], outs[1][key][:, valid:])

"""``EngineVectorEnv.reset(options={"reset_mask": m})``: only the masked envs restart."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids

LONG = 4


def make(num_envs: int = 3, **config):
    return gym.make_vec("raytrade/CryptoFutures-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **({"episode_bars": 8, "fee_bps": 5.0} | config))


def test_only_masked_envs_restart_and_handed_out_infos_stay_unchanged():
    env = make()
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.full(3, LONG))
    before = {k: np.array(v, copy=True) for k, v in info.items()}
    mask = np.array([True, False, True])
    obs, info2 = env.reset(options={"reset_mask": mask})
    for key, value in info.items():  # the arrays of the earlier info were not written
        np.testing.assert_array_equal(value, before[key])
    assert list(info2["equity_usd"][mask]) == [10_000.0, 10_000.0]
    assert info2["position_qty"][0] == 0.0 and info2["position_qty"][1] != 0.0
    assert info2["equity_usd"][1] == before["equity_usd"][1]
    assert set(obs) == set(env.single_observation_space.spaces)


def test_a_masked_reset_cancels_a_pending_autoreset():
    env = make(num_envs=2, episode_bars=1)
    env.reset(seed=0)
    _, _, _, trunc, _ = env.step(np.full(2, LONG))
    assert trunc.all()
    env.reset(options={"reset_mask": np.array([True, False])})
    _, reward, _, _, info = env.step(np.full(2, LONG))
    assert info["fees_paid_usd"][0] > 0.0  # env 0 traded: no second reset
    assert reward[1] == 0.0 and info["fees_paid_usd"][1] == 0.0  # env 1: its NEXT_STEP autoreset


def test_a_bad_mask_or_no_prior_reset_is_an_error():
    env = make()
    with pytest.raises(RuntimeError, match="full reset"):
        env.reset(options={"reset_mask": np.ones(3, bool)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.ones(2, bool)})

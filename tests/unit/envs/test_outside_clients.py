"""Every registered env works with clients that know nothing of raytrade: gymnasium's env
checker and stable-baselines3's ``make_vec_env`` (which asks for ``render_mode="rgb_array"``)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.crypto_futures import CryptoFuturesVectorEnv
from envs.portfolio import PortfolioVectorEnv
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_gymnasium_env_checker_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning fails the test
        check_env(gym.make(env_id, render_mode="rgb_array").unwrapped)  # re-makes each render mode too


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_stable_baselines3_make_vec_env(env_id):
    env_util = pytest.importorskip("stable_baselines3.common.env_util")
    venv = env_util.make_vec_env(env_id, n_envs=2, seed=0)
    obs = venv.reset()
    assert set(obs) == set(venv.observation_space.spaces)
    for _ in range(3):
        obs, reward, done, _ = venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
        assert reward.shape == (2,) and done.shape == (2,)
    frames = venv.get_images()
    assert len(frames) == 2 and all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    venv.close()


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_render_modes_follow_gymnasium(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert (frame != 255).any()  # something is drawn
    text = gym.make(env_id, render_mode="ansi")
    text.reset(seed=0)
    assert "equity_usd" in text.render()
    plain = gym.make(env_id).unwrapped
    plain.reset(seed=0)
    assert plain.render_mode is None and plain.render() is None
    assert set(env.metadata["render_modes"]) == {"rgb_array", "ansi"}


@pytest.mark.parametrize("cls", [StockSwingVectorEnv, CryptoFuturesVectorEnv, PortfolioVectorEnv])
def test_vector_faces_render_one_frame_per_env(cls):
    venv = cls(3, render_mode="rgb_array")
    venv.reset(seed=0)
    frames = venv.render()
    assert len(frames) == 3 and all(f.dtype == np.uint8 and f.shape[2] == 3 for f in frames)
    assert cls(2).render() is None


def test_unknown_render_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="render_mode.*'human'"):
        StockSwingEnv(render_mode="human")

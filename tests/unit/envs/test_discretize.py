"""The discretising wrapper: a discrete action steps the continuous env exactly as the grid value
would (same rewards, equity, fills), on CryptoFutures and Portfolio, single and vector faces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.discretize import DiscretizeAction, DiscretizeVectorAction, action_grid, discretize
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv
from envs.synthetic import generate

#: small markets, so each test builds its envs in milliseconds
FUT = {"action_mode": "continuous", "episode_bars": 40, "synthetic_params": {"n_symbols": 3, "n_bars": 400}}
PORT = {"action_mode": "continuous", "episode_bars": 40, "n_assets": 3,
        "market": generate("trend", seed=5, n_symbols=4, n_bars=400).market}


def _same_info(a: dict, b: dict) -> None:
    """Same equity, positions, fills and fees paid (the cost maths is the wrapped env's)."""
    for key in ("equity_usd", "position_qty", "fill_price_usd", "fees_paid_usd"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def _single_matches(make, levels, steps: int = 60) -> int:
    wrapped, plain = DiscretizeAction(make(), levels), make()
    rng = np.random.default_rng(3)
    wrapped.action_space.seed(3)
    obs_w, _ = wrapped.reset(seed=7)
    obs_p, _ = plain.reset(seed=7)
    traded = 0
    for _ in range(steps):
        a = wrapped.action_space.sample()
        target = wrapped.grid[np.arange(wrapped.grid.shape[0]), np.atleast_1d(a)].astype(np.float32)
        out_w, out_p = wrapped.step(a), plain.step(target)
        assert out_w[1] == out_p[1] and out_w[2:4] == out_p[2:4]
        _same_info(out_w[4], out_p[4])
        for key in out_p[0]:
            np.testing.assert_array_equal(out_w[0][key], out_p[0][key])
        traded += int(np.any(np.asarray(out_p[4]["fill_price_usd"]) != 0))
        if out_w[2] or out_w[3]:
            seed = int(rng.integers(100))
            wrapped.reset(seed=seed)
            plain.reset(seed=seed)
    return traded


def test_crypto_futures_single_face_matches_the_continuous_env_step_for_step():
    env = DiscretizeAction(CryptoFuturesEnv(**FUT), levels=5)
    assert env.action_space == gym.spaces.Discrete(5)
    np.testing.assert_allclose(env.grid, [[-1, -0.5, 0, 0.5, 1]])
    assert _single_matches(lambda: CryptoFuturesEnv(**FUT), 5) > 0


def test_portfolio_single_face_matches_with_a_custom_grid():
    env = DiscretizeAction(PortfolioEnv(**PORT), levels=[-1.0, 0.0, 0.25, 1.0])
    assert env.action_space == gym.spaces.MultiDiscrete([4, 4, 4])
    assert env.action([0, 1, 3]).tolist() == [-1.0, 0.0, 1.0] and env.action([0, 1, 3]).dtype == np.float32
    assert _single_matches(lambda: PortfolioEnv(**PORT), [-1.0, 0.0, 0.25, 1.0]) > 0


@pytest.mark.parametrize("make", [lambda: CryptoFuturesVectorEnv(4, **FUT),
                                  lambda: PortfolioVectorEnv(4, **PORT)], ids=["futures", "portfolio"])
def test_vector_face_matches_the_continuous_vector_env(make):
    wrapped, plain = discretize(make(), 3), make()
    assert isinstance(wrapped, DiscretizeVectorAction)
    k = wrapped.grid.shape[0]
    assert wrapped.action_space.shape == ((4,) if k == 1 else (4, k))
    wrapped.action_space.seed(1)
    wrapped.reset(seed=5)
    plain.reset(seed=5)
    for _ in range(50):  # past the 40-bar episodes: autoresets line up too
        a = wrapped.action_space.sample()
        idx = a.reshape(4, k)
        target = np.stack([wrapped.grid[np.arange(k), row] for row in idx]).astype(np.float32)
        obs_w, r_w, te_w, tr_w, info_w = wrapped.step(a)
        obs_p, r_p, te_p, tr_p, info_p = plain.step(target)
        np.testing.assert_array_equal(r_w, r_p)
        np.testing.assert_array_equal(te_w | tr_w, te_p | tr_p)
        _same_info(info_w, info_p)
        for key in obs_p:
            np.testing.assert_array_equal(obs_w[key], obs_p[key])


def test_grid_validation_and_bad_actions():
    box = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    np.testing.assert_allclose(action_grid(box, 3), [[0, 0.5, 1], [0, 0.5, 1]])
    for bad in (1, [0.5, 0.2], [0.0, 2.0], [0.3]):
        with pytest.raises(ValueError):
            action_grid(box, bad)
    with pytest.raises(ValueError, match="1-D Box"):
        action_grid(gym.spaces.Discrete(3), 3)
    with pytest.raises(ValueError, match="bounded"):
        action_grid(gym.spaces.Box(-np.inf, np.inf, (1,)), 3)
    env = DiscretizeAction(CryptoFuturesEnv(**FUT), levels=3)
    with pytest.raises(ValueError, match="outside"):
        env.action(3)
    with pytest.raises(ValueError, match="not an integer"):
        env.action(0.5)

"""Clear ValueErrors where the typed paths of envs meet malformed input (observation spaces,
index arrays, registrations), and the portfolio config's home (envs.core) re-exported by its env."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import registry

import envs
from envs.core import portfolio_config
from envs.core.observation import ObservationSpec, prepare_features
from envs.core.spec import space_shapes
from envs.portfolio import PortfolioConfig

from .helpers import flat_market


def _space_with(env_id: str, key: str, sub: gym.Space) -> gym.spaces.Dict:
    space = gym.make(env_id).unwrapped.observation_space
    return gym.spaces.Dict({**space.spaces, key: sub})


@pytest.mark.parametrize(("env_id", "key"), [(envs.STOCK_SWING, "bars_held"),
                                              (envs.CRYPTO_FUTURES, "bars_held"),
                                              (envs.PORTFOLIO, "positions")])
def test_a_bound_read_from_a_non_box_subspace_is_a_value_error(env_id, key):
    space = _space_with(env_id, key, gym.spaces.Discrete(5))
    with pytest.raises(ValueError, match=f"'{key}' is not a Box"):
        envs.env_spec(env_id, None, space)


def test_a_subspace_without_a_fixed_shape_is_a_value_error():
    space = _space_with(envs.STOCK_SWING, "note", gym.spaces.Text(5))
    with pytest.raises(ValueError, match="'note' has no fixed shape"):
        space_shapes(space)


def test_index_bars_without_their_timestamps_are_a_value_error():
    m = flat_market(60)
    with pytest.raises(ValueError, match="index_ts_ns"):
        prepare_features(m.ts_ns, m.ohlcv, m.offsets, ObservationSpec(window_bars=5), None, m.ohlcv)


def test_a_creator_for_a_missing_entry_point_is_a_value_error():
    env_id = "raytrade-test/NoVector-v0"
    gym.register(id=env_id, entry_point="envs.stock_swing:StockSwingEnv")
    try:
        create = envs.make_creator(env_id)
        assert create({}).unwrapped.__class__.__name__ == "StockSwingEnv"
        with pytest.raises(ValueError, match="registered without this entry point"):
            create({"num_envs": 2})
    finally:
        del registry[env_id]


def test_the_portfolio_config_is_one_class_reexported_by_its_env():
    assert PortfolioConfig is portfolio_config.PortfolioConfig
    cfg = PortfolioConfig(n_assets=2, max_leverage=2.0)
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert np.isclose(cfg.max_leverage, 2.0)

"""``env.skip_forced_steps``: validated at load, passed to RLlib's env creator only (training)."""

from __future__ import annotations

import numpy as np
import pytest

from app.config.loader import parse_experiment
from app.errors import ConfigError
from app.training.algo import build_algorithm_config
from app.training.rllib_env import SKIP_FORCED_KEY, _rllib_creator

SWING = {"id": "raytrade/StockSwing-v0",
         "config": {"synthetic": "rare_event", "synthetic_params": {"n_symbols": 4, "n_bars": 400},
                    "mode": "buy_only", "horizon_bars": 10, "reward": "excess_horizon", "episode_bars": 60}}


def exp(**extra):
    return parse_experiment({"name": "a", "env": {**SWING, "skip_forced_steps": True}, **extra})


def test_builder_adds_the_key_for_rllib_only():
    cfg = build_algorithm_config(exp(), env_name="raytrade-rllib:x", env_config={"k": 1})
    assert cfg.env_config == {"k": 1, SKIP_FORCED_KEY: True}
    plain = parse_experiment({"name": "a", "env": SWING})
    assert build_algorithm_config(plain, env_name="x", env_config={"k": 1}).env_config == {"k": 1}


@pytest.mark.parametrize("bad, match", [
    ({"model": {"name": "gru"}}, "gru"),
    ({"env": {"id": "raytrade/Portfolio-v0", "skip_forced_steps": True}}, "no forced steps"),
])
def test_refused_where_it_cannot_work(bad, match):
    with pytest.raises(ConfigError, match=match):
        exp(**bad)


def test_creator_switches_the_face_on_and_drops_the_key():
    env = _rllib_creator("raytrade/StockSwing-v0", SWING["config"] | {"num_envs": 3, SKIP_FORCED_KEY: True})
    assert env.env.skip_forced is True  # TaskableVectorEnv -> the native vector face
    obs, info = env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(np.ones(3, dtype=np.int64))  # buy everywhere
    assert (obs["action_mask"].sum(axis=1) == 2).all()  # the hold was skipped: a decision again
    plain = _rllib_creator("raytrade/StockSwing-v0", SWING["config"] | {"num_envs": 3})
    assert plain.env.skip_forced is False

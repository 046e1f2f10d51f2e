"""``action_mask`` in the observation: the env's mask rule (``EnvSpec.action_mask``) on the env's
own position at every step, in both faces; the raw-bars builder (Serve) gives the same mask; the
config switches it, and a trained module's observation space without one is honoured."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import synthetic
from envs.core.observation import ACTION_MASK_KEY
from envs.core.spec import Bars
from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv
from tests.unit.envs.helpers import FAST


@pytest.fixture(scope="module")
def stock():
    return synthetic.generate("trend", seed=4, n_symbols=2, n_bars=400)


@pytest.fixture(scope="module")
def perp():
    return synthetic.generate_perpetual(seed=2, n_symbols=2, n_bars=400)


def _position(engine: Any, env_id: str) -> dict[str, np.ndarray]:
    qty = np.atleast_1d(np.asarray(engine.qty, dtype=np.float64))
    return {"owned": qty != 0.0} if env_id == envs.STOCK_SWING else {"qty": qty}


def _make(env_id: str, face: str, data: Any, n: int, **kw: Any) -> tuple[Any, Any]:
    common = {"window_bars": 10, "episode_bars": 60, **FAST, **kw}
    if env_id == envs.STOCK_SWING:
        cls = StockSwingEnv if face == "single" else StockSwingVectorEnv
        args: tuple = (data.market, data.index)
    elif env_id == envs.CRYPTO_FUTURES:
        cls, args = (CryptoFuturesEnv if face == "single" else CryptoFuturesVectorEnv), (data,)
    else:
        cls = PortfolioEnv if face == "single" else PortfolioVectorEnv
        args, common = (data.market, data.index), common | {"n_assets": 2}
    env = cls(*args, **common) if face == "single" else cls(n, *args, **common)
    space = env.observation_space if face == "single" else env.single_observation_space
    return env, envs.env_spec(env_id, env.config, space)


CASES = [(envs.STOCK_SWING, {"mode": "buy_only", "horizon_bars": 4}), (envs.STOCK_SWING, {"mode": "swing"}),
         (envs.CRYPTO_FUTURES, {}), (envs.PORTFOLIO, {})]


@pytest.mark.parametrize("face", ["single", "vector"])
@pytest.mark.parametrize(("env_id", "kw"), CASES, ids=[f"{e}-{k}" for e, k in CASES])
def test_the_observed_mask_is_the_spec_rule_on_the_envs_position_at_every_step(stock, perp, face, env_id, kw):
    n = 4
    env, spec = _make(env_id, face, perp if env_id == envs.CRYPTO_FUTURES else stock, n, **kw)
    space = env.observation_space
    env.action_space.seed(0)
    obs, _ = env.reset(seed=1)
    seen = set()
    for _ in range(150):
        assert space.contains(obs)
        expected = spec.action_mask(_position(env.engine, env_id)).astype(np.float32)
        got = obs[ACTION_MASK_KEY]
        np.testing.assert_array_equal(got, expected[0] if face == "single" else expected)
        seen.update(map(bytes, np.asarray(got, np.uint8).reshape(-1, got.shape[-1])))
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if face == "single" and (terminated or truncated):
            obs, _ = env.reset()
    if env_id == envs.STOCK_SWING:  # both flat and holding were observed
        assert len(seen) == 2, seen


def test_buy_is_masked_on_every_forced_hold_of_buy_only():
    """buy_only: after a buy the env holds ``horizon_bars`` bars whatever the action; the mask
    offers only 'stay out' on each of those steps and 'buy' again once flat."""
    g = synthetic.generate("gbm", seed=0, n_symbols=1, n_bars=200)
    env = StockSwingEnv(g.market, g.index, mode="buy_only", horizon_bars=5, window_bars=10, episode_bars=None,
                        random_start=False)
    obs, _ = env.reset(seed=0)
    masks = [obs[ACTION_MASK_KEY].tolist()]
    for _ in range(13):
        obs, *_ = env.step(1)  # always "buy": a buy at step 0, ignored while holding, then again
        masks.append(obs[ACTION_MASK_KEY].tolist())
    hold = [[1.0, 0.0]] * 5
    assert masks[:7] == [[1.0, 1.0], *hold, [1.0, 1.0]]  # flat, 5 forced holds, flat after the sale
    assert masks[7:13] == [*hold, [1.0, 1.0]]


def test_faces_return_fresh_or_read_only_masks(stock):
    venv, _ = _make(envs.STOCK_SWING, "vector", stock, 3)
    obs, _ = venv.reset(seed=0)
    obs[ACTION_MASK_KEY][:] = 7.0  # a caller may write what it got
    again, *_ = venv.step(np.zeros(3, dtype=np.int64))
    assert set(np.unique(again[ACTION_MASK_KEY])) <= {0.0, 1.0}
    env, _ = _make(envs.STOCK_SWING, "single", stock, 1)
    obs, _ = env.reset(seed=0)
    assert not obs[ACTION_MASK_KEY].flags.writeable


def test_the_raw_bars_builder_gives_the_envs_mask_single_bar_and_replay(stock):
    """Serve's path: bars up to t and the client's position history -> the env's observation,
    mask included, for buy_only (whose mask changes with every buy)."""
    g = stock
    env = StockSwingEnv(g.market, g.index, mode="buy_only", horizon_bars=3, window_bars=10, episode_bars=None,
                        random_start=False, symbols=("SYN0",))
    spec = envs.env_spec(envs.STOCK_SWING, env.config, env.observation_space)
    assert spec.fields[ACTION_MASK_KEY] == (2,)
    obs, _ = env.reset(seed=0)
    e, rng, history, seen = env.engine, np.random.default_rng(0), [], []
    for _ in range(30):
        history.append((e.qty != 0.0, e.bars_held))
        seen.append(obs)
        ts, ohlcv = g.market.ts_ns[:e.row + 1], g.market.ohlcv[:e.row + 1]
        index = Bars(g.index.ts_ns[g.index.ts_ns <= ts[-1]], g.index.ohlcv[g.index.ts_ns <= ts[-1]])
        position = {"owned": np.array([history[-1][0]]), "bars_held": np.array([history[-1][1]])}
        built = spec.build_observation(Bars(ts, ohlcv), position, index)
        assert built.keys() == obs.keys()
        np.testing.assert_array_equal(built[ACTION_MASK_KEY][0], obs[ACTION_MASK_KEY])
        obs, *_ = env.step(int(rng.integers(2)))
    replay = spec.build_observation(Bars(ts, ohlcv), {"owned": np.array([h[0] for h in history[-6:]]),
                                                      "bars_held": np.array([h[1] for h in history[-6:]])}, index)
    np.testing.assert_array_equal(replay[ACTION_MASK_KEY], np.stack([s[ACTION_MASK_KEY] for s in seen[-6:]]))


def test_the_portfolio_builder_gives_a_mask_per_asset(stock):
    env, spec = _make(envs.PORTFOLIO, "single", stock, 1)
    assert spec.fields[ACTION_MASK_KEY] == env.observation_space[ACTION_MASK_KEY].shape == (2, 3)
    m = env.engine.market
    bars = Bars(m.ts_ns[:120], m.ohlcv[:120])
    built = spec.build_observation([bars, bars], spec.flat_position(steps=2))
    assert built[ACTION_MASK_KEY].shape == (2, 2, 3) and (built[ACTION_MASK_KEY] == 1.0).all()


@pytest.mark.parametrize(("env_id", "kw"), [(envs.STOCK_SWING, {}), (envs.CRYPTO_FUTURES, {}),
                                            (envs.PORTFOLIO, {"n_assets": 2})])
def test_config_switches_the_mask_and_continuous_actions_have_none(env_id, kw):
    assert ACTION_MASK_KEY in gym.make(env_id, **kw).observation_space.spaces
    off = gym.make(env_id, action_mask=False, **kw).unwrapped
    assert ACTION_MASK_KEY not in off.observation_space.spaces
    assert ACTION_MASK_KEY not in off.reset(seed=0)[0]
    assert ACTION_MASK_KEY not in envs.env_spec(env_id, off.config).fields
    with pytest.raises(ValueError, match=r"Config\.action_mask"):
        gym.make(env_id, action_mask="yes", **kw)
    if env_id == envs.STOCK_SWING:
        return
    continuous = gym.make(env_id, action_mode="continuous", **kw).unwrapped
    assert ACTION_MASK_KEY not in continuous.observation_space.spaces
    assert ACTION_MASK_KEY not in envs.env_spec(env_id, continuous.config).fields
    with pytest.raises(ValueError, match=r"Config\.action_mask: continuous"):
        gym.make(env_id, action_mode="continuous", action_mask=True, **kw)
    with pytest.raises(ValueError, match=r"Config\.action_mask: continuous"):
        envs.env_spec(env_id, {"action_mode": "continuous", "action_mask": True, **kw})


def test_a_trained_modules_space_decides_whether_serve_builds_a_mask(stock):
    """A module trained before masks (its observation space has none) is served without one
    even though the config default now observes it; one trained with a mask gets it."""
    old_space = StockSwingEnv(stock.market, stock.index, window_bars=10, action_mask=False).observation_space
    new_space = StockSwingEnv(stock.market, stock.index, window_bars=10).observation_space
    bars = Bars(stock.market.ts_ns[:100], stock.market.ohlcv[:100])
    for space, masked in ((old_space, False), (new_space, True)):
        spec = envs.env_spec(envs.STOCK_SWING, {"window_bars": 10}, space)
        assert (ACTION_MASK_KEY in spec.fields) == masked
        built = spec.build_observation(bars, spec.flat_position())
        assert {k: v.shape[1:] for k, v in built.items()} == {k: s.shape for k, s in space.spaces.items()}

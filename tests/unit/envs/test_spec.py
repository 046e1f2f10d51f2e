"""Each env publishes ONE spec (envs.env_spec): it matches the env's spaces, its builder gives the
env's observations from raw bars, and its action mask marks exactly the actions the env ignores."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import synthetic
from envs.core.spec import Bars
from envs.crypto_futures import CryptoFuturesEnv
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@pytest.mark.parametrize("continuous", [False, True])
def test_the_spec_matches_the_env(env_id, continuous):
    has_modes = env_id in (envs.PORTFOLIO, envs.CRYPTO_FUTURES)
    kwargs = {"action_mode": "continuous"} if continuous and has_modes else {}
    env = gym.make(env_id, **kwargs).unwrapped
    spec = envs.env_spec(env_id, env.config, env.observation_space)
    assert spec.fields == {k: s.shape for k, s in env.observation_space.spaces.items()}
    assert spec.config == env.config and spec.min_history_bars == env.config.window_bars
    space = env.action_space
    if isinstance(space, gym.spaces.Box):
        assert spec.action_labels is None and spec.action_mask is None
    else:
        n = space.n if isinstance(space, gym.spaces.Discrete) else int(space.nvec[0])
        assert len(spec.action_labels) == n
        obs, _ = env.reset(seed=0)
        mask = spec.action_mask(spec.flat_position(3))
        assert mask.dtype == bool and mask.shape == (3, *(() if spec.n_assets is None else (spec.n_assets,)), n)
    assert spec.multi_asset == (env_id == envs.PORTFOLIO)
    # the builder makes the env's observation shapes from raw bars and a flat position
    m = env.engine.market
    row = int(m.offsets[1]) - 1
    bars = Bars(m.ts_ns[:row + 1], m.ohlcv[:row + 1],
                None if m.funding_rate is None else m.funding_rate[:row + 1])
    obs = spec.build_observation([bars] * spec.n_assets if spec.multi_asset else bars, spec.flat_position())
    assert {k: v.shape[1:] for k, v in obs.items()} == spec.fields


def test_env_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match="not registered"):
        envs.env_spec("raytrade/Nope-v0")
    space = StockSwingEnv(window_bars=20).observation_space
    with pytest.raises(ValueError, match="observes"):
        envs.env_spec(envs.STOCK_SWING, {"window_bars": 30}, space)
    with pytest.raises(ValueError, match="unknown field"):
        envs.env_spec(envs.STOCK_SWING, {"window_barz": 30})
    with pytest.raises(ValueError, match="n_assets"):
        envs.env_spec(envs.PORTFOLIO, {})
    # env_config mappings: registered kwargs apply, constructor arguments are ignored
    spec = envs.env_spec("raytrade/SyntheticTrend-v0", {"market": object(), "num_envs": 4})
    assert spec.config.synthetic == "trend" and spec.action_labels == ("hold", "buy", "sell")


def _stock_position(history):
    return {"owned": np.array([h[0] for h in history]), "bars_held": np.array([h[1] for h in history])}


def test_stock_builder_gives_the_envs_observations_single_bar_and_replay():
    g = synthetic.generate("gbm", seed=3, n_symbols=1, n_bars=260)
    env = StockSwingEnv(g.market, g.index, mode="swing", window_bars=10, episode_bars=None, random_start=False)
    spec = envs.env_spec(envs.STOCK_SWING, env.config, env.observation_space)
    obs, _ = env.reset(seed=0)
    e, history, seen = env.engine, [], []
    rng = np.random.default_rng(0)
    for _ in range(40):
        history.append((e.qty != 0.0, e.bars_held))
        seen.append(obs)
        ts, ohlcv = g.market.ts_ns[:e.row + 1], g.market.ohlcv[:e.row + 1]
        index = Bars(g.index.ts_ns[g.index.ts_ns <= ts[-1]], g.index.ohlcv[g.index.ts_ns <= ts[-1]])
        one = spec.build_observation(Bars(ts, ohlcv), _stock_position(history[-1:]), index)
        for key, value in obs.items():
            np.testing.assert_array_equal(one[key][0], value, err_msg=key)
        obs, *_ = env.step(int(rng.integers(3)))
    replay = spec.build_observation(Bars(ts, ohlcv), _stock_position(history[-5:]), index)
    for j in range(5):
        for key, value in seen[-5 + j].items():
            np.testing.assert_array_equal(replay[key][j], value, err_msg=f"{key} row {j}")


def test_futures_builder_gives_the_envs_observations():
    m = synthetic.generate_perpetual(seed=2, n_symbols=1, n_bars=300)
    env = CryptoFuturesEnv(m, window_bars=8, episode_bars=None, random_start=False)
    spec = envs.env_spec(envs.CRYPTO_FUTURES, env.config, env.observation_space)
    assert spec.position_keys[0] == spec.size_key == "qty" and "margin_usd" in spec.open_keys
    obs, _ = env.reset(seed=0)
    e = env.engine
    for k in range(40):
        position = {"qty": [e.qty], "entry_price_usd": [e.entry_price], "margin_usd": [e.margin_usd],
                    "equity_usd": [e.equity_usd], "mark_price_usd": [e.mark_usd], "bars_held": [e.bars_held]}
        bars = Bars(m.ts_ns[:e.row + 1], m.ohlcv[:e.row + 1], m.funding_rate[:e.row + 1])
        built = spec.build_observation(bars, position)
        for key, value in obs.items():
            np.testing.assert_array_equal(built[key][0], value, err_msg=f"{key} step {k}")
        obs, *_ = env.step((3, 4, 4, 2, 0, 0, 1)[k % 7])


@pytest.mark.parametrize("mode", ["buy_only", "swing"])
def test_stock_mask_marks_exactly_the_actions_the_env_ignores(mode):
    """From the same state, every action is stepped in its own env: a masked action has the
    no-op's effect (same book), an unmasked one other than the no-op trades."""
    g = synthetic.generate("trend", seed=1, n_symbols=1, n_bars=300)
    n = 2 if mode == "buy_only" else 3
    venv = StockSwingVectorEnv(n, g.market, g.index, mode=mode, horizon_bars=3, window_bars=10,
                               episode_bars=None, random_start=False, reward="log_return")
    spec = envs.env_spec(envs.STOCK_SWING, venv.config, venv.single_observation_space)
    venv.reset(seed=0)
    e, rng, checked = venv.engine, np.random.default_rng(0), set()
    for _ in range(120):
        mask = spec.action_mask({"owned": e.qty[:1] != 0.0, "bars_held": e.bars_held[:1]})[0]
        venv.step(np.arange(n))  # env j takes action j from the same state
        for j in range(1, n):
            same = e.qty[j] == e.qty[0] and e.cash_usd[j] == e.cash_usd[0]
            assert same == (not mask[j]), (mask, e.qty, e.cash_usd)
            checked.add((j, bool(mask[j])))
        for name in e.STATE:  # every env back to env 0's state, then one shared random action
            getattr(e, name)[:] = getattr(e, name)[0]
        venv.step(np.full(n, int(rng.integers(n))))
    assert checked == {(j, m) for j in range(1, n) for m in (True, False)}  # both cases seen


def test_portfolio_mask_and_futures_mask_allow_every_action():
    futures = envs.env_spec(envs.CRYPTO_FUTURES)
    assert futures.action_mask({"qty": np.array([0.0, -2.0])}).all()
    assert futures.action_mask({"qty": np.array([0.0])}).shape == (1, 5)
    portfolio = envs.env_spec(envs.PORTFOLIO, {"n_assets": 3, "allow_short": False})
    mask = portfolio.action_mask({"qty": np.zeros((2, 3))})
    assert mask.shape == (2, 3, 2) and mask.all() and portfolio.action_labels == ("flat", "long")

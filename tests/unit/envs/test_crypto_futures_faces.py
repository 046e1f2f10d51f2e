"""CryptoFutures-v0 faces: check_env, the vector contract (shapes, spaces, NEXT_STEP autoreset,
seeding), same seed -> same episodes, and the vector and single faces agree step for step."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, VectorEnv

import envs
from envs.crypto_futures import (
    CryptoFuturesConfig,
    CryptoFuturesEngine,
    CryptoFuturesEnv,
    CryptoFuturesVectorEnv,
)
from envs.synthetic import generate_perpetual
from envs.vector import EngineEnv

E0 = 10_000.0
# 100x on hourly bars: liquidations (terminations) happen within a few bars
WILD = {"leverage": 100.0, "maintenance_margin_bps": 50.0, "episode_bars": 30}


@pytest.fixture(scope="module")
def market():
    return generate_perpetual(seed=5, n_symbols=3, n_bars=1000)


def _actions(space: gym.Space, n: int, seed: int) -> list:
    space.seed(seed)
    return [space.sample() for _ in range(n)]


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_check_env_single_and_over_a_batched_engine(market, mode):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(CryptoFuturesEnv(market, action_mode=mode), skip_render_check=True)
        config = CryptoFuturesConfig(action_mode=mode, **WILD)
        check_env(EngineEnv(CryptoFuturesEngine(market, config, num_envs=1, batched=True)), skip_render_check=True)
        env = gym.make(envs.CRYPTO_FUTURES, market=market, action_mode=mode, **WILD)  # passive checker too
        env.reset(seed=1)
        for a in _actions(env.action_space, 40, 0):
            *_, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
    assert not [str(w.message) for w in caught if "gymnasium" in w.filename]


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_vector_face_contract_and_next_step_autoreset(market, mode):
    n = 16
    venv = gym.make_vec(envs.CRYPTO_FUTURES, num_envs=n, vectorization_mode="vector_entry_point",
                        market=market, action_mode=mode, **{**WILD, "leverage": 50.0, "episode_bars": 8})
    assert isinstance(venv, VectorEnv) and venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    venv.action_space.seed(0)
    obs, info = venv.reset(seed=3)
    assert venv.observation_space.contains(obs) and info["equity_usd"].shape == (n,)
    for key, space in venv.single_observation_space.items():
        assert obs[key].shape == (n, *space.shape) and obs[key].dtype == np.float32
    done_before = np.zeros(n, dtype=bool)
    seen_terminated = seen_truncated = 0
    for _ in range(120):
        actions = venv.action_space.sample()
        obs, reward, terminated, truncated, info = venv.step(actions)
        assert venv.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (n,) and np.isfinite(reward).all()
        # the step after a done only resets: reward 0, not done, fresh books, flat, row = a start
        if done_before.any():
            assert np.all(reward[done_before] == 0.0) and not (terminated | truncated)[done_before].any()
            assert np.all(info["equity_usd"][done_before] == E0) and np.all(info["position_qty"][done_before] == 0)
            assert np.all(obs["side"][done_before] == 0.0) and np.all(info["fees_paid_usd"][done_before] == 0.0)
        assert np.all(info["liquidated"] <= terminated)
        seen_terminated += int(terminated.sum())
        seen_truncated += int(truncated.sum())
        done_before = terminated | truncated
    assert seen_terminated > 0 and seen_truncated > 0  # both kinds of episode end were exercised
    venv.close()


def _rollout_vector(venv, actions, seed):
    obs, _ = venv.reset(seed=seed)
    out = [(obs, None, None, None, None)]
    for a in actions:
        obs, r, te, tr, info = venv.step(a)
        out.append((obs, r, te, tr, info["equity_usd"]))
    return out


def test_same_seed_same_episodes_different_seed_differs(market):
    venv = CryptoFuturesVectorEnv(4, market, **WILD)
    acts = _actions(venv.action_space, 100, 1)
    a, b, c = (_rollout_vector(CryptoFuturesVectorEnv(4, market, **WILD), acts, s) for s in (11, 11, 12))
    for x, y in zip(a, b, strict=True):
        for key in x[0]:
            np.testing.assert_array_equal(x[0][key], y[0][key])
        for u, v in zip(x[1:], y[1:], strict=True):
            np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(x[0]["hourly_hloc"], y[0]["hourly_hloc"]) for x, y in zip(a, c, strict=True))
    s1, s2 = (CryptoFuturesEnv(market, **WILD) for _ in range(2))
    acts1 = _actions(s1.action_space, 60, 2)
    for env in (s1, s2):
        env.reset(seed=9)
    for act in acts1:
        r1, r2 = s1.step(act), s2.step(act)
        assert all(np.array_equal(r1[0][k], r2[0][k]) for k in r1[0]) and r1[1:4] == r2[1:4] and r1[4] == r2[4]
        if r1[2] or r1[3]:
            s1.reset(), s2.reset()


@pytest.mark.parametrize(("mode", "reward", "sizing", "terminate"), [
    ("discrete", "log_return", "equity", True),
    ("discrete", "linear_return", "initial", False),
    ("continuous", "log_return", "initial", True),
    ("continuous", "differential_sharpe", "equity", False),
    ("discrete", "log_return", "equity", False),
])
def test_vector_and_single_faces_agree_step_for_step(market, mode, reward, sizing, terminate):
    """Same seed, same actions, across liquidations and autoresets: observations and books bit
    for bit, rewards to 1e-12 (math.log and np.log may differ by one ulp)."""
    kw = {**WILD, "action_mode": mode, "reward": reward, "sizing": sizing, "terminate_on_liquidation": terminate,
          "fee_bps": 5.0, "slippage_bps": 3.0}
    single = CryptoFuturesEnv(market, **kw)
    vector = CryptoFuturesVectorEnv(1, market, **kw)
    actions = _actions(single.action_space, 150, 4)
    o_s, i_s = single.reset(seed=21)
    o_v, i_v = vector.reset(seed=21)
    single_done, resets, liquidations, funded = False, 0, 0, 0
    for a in actions:
        assert o_s.keys() == o_v.keys()
        for key in o_s:
            np.testing.assert_array_equal(o_s[key], o_v[key][0], err_msg=key)
        assert i_s.keys() == i_v.keys()
        for key in i_s:
            assert i_s[key] == i_v[key][0], key
        if single_done:
            o_s, i_s = single.reset()
            o_v, r_v, te_v, tr_v, i_v = vector.step(np.asarray(a)[None])
            assert r_v[0] == 0.0 and not (te_v[0] or tr_v[0])
            single_done, resets = False, resets + 1
            continue
        o_s, r_s, te_s, tr_s, i_s = single.step(a)
        o_v, r_v, te_v, tr_v, i_v = vector.step(np.asarray(a)[None])
        assert r_s == pytest.approx(float(r_v[0]), rel=1e-12, abs=1e-15)
        assert (te_s, tr_s) == (bool(te_v[0]), bool(tr_v[0]))
        liquidations += bool(i_s["liquidated"])
        funded += i_s["funding_usd"] != 0.0
        single_done = te_s or tr_s
    assert resets >= 2 and liquidations >= 1 and funded >= 1


def test_batched_backtest_env_b_is_the_single_env_on_symbol_b(market):
    kw = {"episode_bars": None, "random_start": False, "symbol_order": "sequential", "leverage": 5.0}
    vector = CryptoFuturesVectorEnv(3, market, **kw)
    vector.reset(seed=0)
    actions = np.random.default_rng(2).integers(0, 5, (80, 3))
    infos = [vector.step(a)[4] for a in actions]
    for b, symbol in enumerate(market.symbols):
        single = CryptoFuturesEnv(market, **kw)
        single.reset(seed=0, options={"symbol": symbol})
        for t, a in enumerate(actions[:, b]):
            info = single.step(int(a))[4]
            assert info["equity_usd"] == infos[t]["equity_usd"][b] and info["margin_usd"] == infos[t]["margin_usd"][b]


def test_rllib_creator_builds_both_faces(market):
    create = envs.make_creator(envs.CRYPTO_FUTURES)
    venv = create({"num_envs": 3, "market": market, "index": None, "leverage": 5.0, "vector_info": False})
    assert isinstance(venv, VectorEnv) and venv.num_envs == 3
    _, info = venv.reset(seed=0)
    assert info == {}
    single = create({"market": market, "action_mode": "continuous"})
    assert isinstance(single, gym.Env) and single.action_space.shape == (1,)
    with pytest.raises(ValueError, match="unknown field"):
        create({"num_envs": 2, "leverag": 3})
    with pytest.raises(RuntimeError, match="reset"):
        CryptoFuturesEnv(market).step(0)

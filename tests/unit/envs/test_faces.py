"""Single and vector faces: check_env, vector contract, autoreset, seeding, faces agree."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, VectorEnv

import envs
from envs.core.rewards import REWARDS
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv
from envs.synthetic import generate


@pytest.fixture(scope="module")
def synth():
    return generate("mean_reversion", seed=7, n_symbols=3, n_bars=300)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_check_env_passes_for_every_registered_id(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id)  # no arguments: a synthetic market
        check_env(env.unwrapped, skip_render_check=True)
        env.reset(seed=1)
        for _ in range(5):
            env.step(env.action_space.sample())  # through the passive checker too
    assert not [str(w.message) for w in caught if "gymnasium" in w.filename]


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_vector_face_contract(env_id):
    n = 5
    venv = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", episode_bars=4)
    assert isinstance(venv, VectorEnv) and venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=3)
    assert venv.observation_space.contains(obs) and set(info["equity_usd"].shape) == {n}
    for key, space in venv.single_observation_space.items():
        assert obs[key].shape == (n, *space.shape) and obs[key].dtype == np.float32
    for step in range(1, 5):
        obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
        assert venv.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (n,)
        assert truncated.all() == (step == 4) and not terminated.any()
    # NEXT_STEP autoreset: the next step only resets (reward 0, not done, fresh equity)
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert not (terminated | truncated).any() and np.all(reward == 0.0)
    assert np.all(info["equity_usd"] == 10_000.0) and np.all(info["fees_paid_usd"] == 0.0)
    venv.close()


def _rollout_vector(venv, actions, seed):
    obs, _ = venv.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, te, tr, info = venv.step(a)
        out.append((obs, r, te, tr, info["equity_usd"]))
    return out


def test_same_seed_same_episodes_and_different_seeds_differ(synth):
    acts = np.random.default_rng(0).integers(0, 3, (120, 4))
    make = lambda: StockSwingVectorEnv(4, synth.market, synth.index, mode="swing", episode_bars=50)  # noqa: E731
    a, b, c = (_rollout_vector(make(), acts, s) for s in (11, 11, 12))
    for x, y in zip(a[1:], b[1:], strict=True):
        for key in x[0]:
            np.testing.assert_array_equal(x[0][key], y[0][key])
        np.testing.assert_array_equal(x[1], y[1])
    assert not all(np.array_equal(x[0]["daily_hloc"], y[0]["daily_hloc"]) for x, y in zip(a[1:], c[1:], strict=True))
    s1, s2 = (StockSwingEnv(synth.market, synth.index, episode_bars=50) for _ in range(2))
    o1, _ = s1.reset(seed=9)
    o2, _ = s2.reset(seed=9)
    assert all(np.array_equal(o1[k], o2[k]) for k in o1)


@pytest.mark.parametrize("mode", ["swing", "buy_only"])
@pytest.mark.parametrize("reward", REWARDS)
def test_vector_and_single_faces_agree_step_for_step(synth, mode, reward):
    """Same seed, same actions, across autoresets: observations and books bit for bit,
    rewards to 1e-12 (math.log and np.log may differ by one ulp)."""
    kw = {"mode": mode, "reward": reward, "episode_bars": 30}
    single = StockSwingEnv(synth.market, synth.index, **kw)
    vector = StockSwingVectorEnv(1, synth.market, synth.index, **kw)
    actions = np.random.default_rng(1).integers(0, single.action_space.n, 100)
    o_s, i_s = single.reset(seed=21)
    o_v, i_v = vector.reset(seed=21)
    single_done, resets = False, 0
    for a in actions:
        for key in o_s:
            np.testing.assert_array_equal(o_s[key], o_v[key][0], err_msg=key)
        for key in i_s:
            assert i_s[key] == i_v[key][0], key
        if single_done:
            o_s, i_s = single.reset()
            o_v, r_v, te_v, tr_v, i_v = vector.step(np.array([a]))
            assert r_v[0] == 0.0 and not (te_v[0] or tr_v[0])
            single_done, resets = False, resets + 1
            continue
        o_s, r_s, te_s, tr_s, i_s = single.step(int(a))
        o_v, r_v, te_v, tr_v, i_v = vector.step(np.array([a]))
        assert r_s == pytest.approx(float(r_v[0]), rel=1e-12, abs=1e-15)
        assert (te_s, tr_s) == (bool(te_v[0]), bool(tr_v[0]))
        single_done = te_s or tr_s
    assert resets >= 2


def test_single_face_over_a_batched_engine_matches_the_scalar_face(synth):
    """The route a portfolio engine takes: EngineEnv unbatches a batched engine of one env."""
    from envs.stock_swing import StockSwingConfig, StockSwingEngine
    from envs.vector import EngineEnv

    config = StockSwingConfig(mode="swing", reward="differential_sharpe", episode_bars=40)
    scalar = StockSwingEnv(synth.market, synth.index, config=config)
    batched = EngineEnv(StockSwingEngine(synth.market, config, index=synth.index, num_envs=1, batched=True))
    check_env(batched, skip_render_check=True)
    a, b = scalar.reset(seed=4), batched.reset(seed=4)
    for action in np.random.default_rng(3).integers(0, 3, 39):
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        a, b = scalar.step(int(action)), batched.step(action)
        assert a[1] == pytest.approx(b[1], rel=1e-12, abs=1e-15) and a[2:4] == b[2:4]
        a, b = (a[0], a[4]), (b[0], b[4])


def test_batched_backtest_env_b_is_the_single_env_on_symbol_b(synth):
    kw = {"mode": "swing", "reward": "log_return", "episode_bars": None, "random_start": False,
          "symbol_order": "sequential"}
    vector = StockSwingVectorEnv(3, synth.market, synth.index, **kw)
    vector.reset(seed=0)
    actions = np.random.default_rng(2).integers(0, 3, (60, 3))
    rewards, equity = [], []
    for a in actions:
        _, r, _, _, info = vector.step(a)
        rewards.append(r)
        equity.append(info["equity_usd"])
    for b, symbol in enumerate(synth.market.symbols):
        single = StockSwingEnv(synth.market, synth.index, **kw)
        single.reset(seed=0, options={"symbol": symbol})
        for t, a in enumerate(actions[:, b]):
            _, r, _, _, info = single.step(int(a))
            assert info["equity_usd"] == equity[t][b]
            assert r == pytest.approx(rewards[t][b], rel=1e-12, abs=1e-15)


def test_engine_helpers_for_extensions(synth):
    """make_taker (futures columns) and VectorEnv.call (curriculum hooks) in both modes."""
    column = np.arange(len(synth.market.ts_ns), dtype=np.float64)
    vector = StockSwingVectorEnv(2, synth.market, synth.index, episode_bars=20)
    single = StockSwingEnv(synth.market, synth.index, episode_bars=20)
    take_b, take_s = vector.engine.make_taker(column), single.engine.make_taker(column)
    rows = np.array([0, len(column)])  # the sentinel row repeats the last value
    assert take_b(rows).tolist() == [0.0, column[-1]] and take_s(len(column)) == column[-1]
    assert isinstance(take_s(3), float)
    assert vector.call("universe") == synth.market.symbols


def test_rllib_creator_and_gym_make_kwargs(synth):
    create = envs.make_creator("raytrade/StockSwing-v0")
    venv = create({"num_envs": 3, "market": synth.market, "index": synth.index, "mode": "swing",
                   "episode_bars": 100})
    assert isinstance(venv, VectorEnv) and venv.num_envs == 3
    single = create({"reward": "log_return"})
    assert isinstance(single, gym.Env) and single.config.reward == "log_return"
    with pytest.raises(ValueError, match="unknown field"):
        create({"num_envs": 2, "fee_bsp": 3})
    env = gym.make("raytrade/SyntheticTrend-v0", fee_bps=1.0)
    assert env.unwrapped.config.fee_bps == 1.0 and env.unwrapped.config.synthetic == "trend"
    with pytest.raises(RuntimeError, match="reset"):
        StockSwingEnv(synth.market, synth.index, episode_bars=50).step(0)

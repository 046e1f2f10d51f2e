"""The oracle played through the real StockSwing env: it earns the documented edge, beats the
market-blind baselines, and stays out of pure noise; env configs reach every market."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.stock_swing import StockSwingConfig, StockSwingEnv, StockSwingVectorEnv
from envs.synthetic import generate
from envs.synthetic_edges import expected_event_excess_per_252
from envs.synthetic_oracle import baseline_policy, play, play_oracle


def _backtest_env(kind: str, n_symbols: int, n_bars: int, seed: int = 1, **config) -> StockSwingVectorEnv:
    """Every symbol's whole history at once (one env per symbol)."""
    params = {"n_symbols": n_symbols, "n_bars": n_bars, **config.pop("synthetic_params", {})}
    return StockSwingVectorEnv(n_symbols, synthetic=kind, market_seed=seed, synthetic_params=params,
                               episode_bars=None, random_start=False, symbol_order="sequential",
                               vector_info=False, **config)


def test_default_rare_event_oracle_earns_the_documented_excess_per_252_bars():
    """buy_only, hold 20 bars; excess_horizon without the buy penalty is the excess itself."""
    env = _backtest_env("rare_event", 32, 1800, seed=0, buy_penalty=0.0)
    oracle = play_oracle(env)
    target = expected_event_excess_per_252(generate("rare_event").params)
    assert target == pytest.approx(0.254, abs=0.002)  # the "about 0.25"
    assert oracle.per_252() == pytest.approx(target, rel=0.12)
    assert oracle.precision == 1.0 and oracle.recall == 1.0  # every event is tradable


CASES = [(kind, mode, reward) for kind in ("rare_event", "regime", "relative_momentum")
         for mode, reward in (("buy_only", "excess_horizon"), ("swing", "log_return"))]


@pytest.mark.parametrize(("kind", "mode", "reward"), CASES)
def test_oracle_beats_random_and_always_buy_after_costs(kind, mode, reward):
    env = _backtest_env(kind, 12, 1200, mode=mode, reward=reward)
    oracle = play_oracle(env)
    rng = np.random.default_rng(0)
    random, always = (play(env, baseline_policy(env, name, rng)) for name in ("random", "always"))
    assert oracle.per_252() > 0.05
    assert oracle.per_252() > random.per_252() + 0.05
    assert oracle.per_252() > always.per_252() + 0.05


@pytest.mark.parametrize(("mode", "reward"), [("buy_only", "excess_horizon"), ("swing", "log_return")])
def test_noise_oracle_never_trades_and_random_trading_loses(mode, reward):
    env = _backtest_env("noise", 12, 1200, mode=mode, reward=reward)
    oracle = play_oracle(env)
    assert oracle.opens.sum() == 0 and np.all(oracle.reward == 0.0)
    random = play(env, baseline_policy(env, "random", np.random.default_rng(0)))
    assert random.opens.sum() > 100 and random.per_252() < -0.05  # costs (and the buy penalty)


def test_single_and_vector_faces_play_the_same_oracle_episode():
    cfg = {"synthetic": "rare_event", "market_seed": 3, "synthetic_params": {"n_symbols": 2, "n_bars": 600}}
    single = play_oracle(StockSwingEnv(**cfg), seed=11)
    vector = play_oracle(StockSwingVectorEnv(1, **cfg), seed=11)
    np.testing.assert_allclose(single.reward, vector.reward, rtol=1e-9)
    assert single.bars[0] == 252 and single.opens[0] == vector.opens[0]


def test_play_oracle_refuses_a_market_the_env_does_not_trade():
    env = _backtest_env("rare_event", 2, 400)
    with pytest.raises(ValueError, match="other bars"):
        play_oracle(env, generate("rare_event", seed=99, n_symbols=2, n_bars=400))


def test_env_configs_reach_every_kind_with_validated_params():
    cfg = StockSwingConfig.from_mapping({"synthetic": "regime", "market_seed": 2,
                                         "synthetic_params": {"n_symbols": 3, "vol_high": 0.03}})
    env = envs.make_creator(envs.STOCK_SWING)({**vars(cfg)} | {"num_envs": 2})
    assert env.engine.market.n_symbols == 3
    assert env.engine.market.symbols == generate("regime", seed=2, n_symbols=3, vol_high=0.03).market.symbols
    for bad, match in (({"event_rate": 0.9}, "event_rate"), ({"strength": 1.0}, "unknown"),
                       ({"n_symbols": 0}, "n_symbols")):
        with pytest.raises(ValueError, match=f"StockSwingConfig.synthetic_params: .*{match}"):
            StockSwingConfig(synthetic="rare_event", synthetic_params=bad)
    with pytest.raises(ValueError, match="StockSwingConfig.synthetic"):
        StockSwingConfig(synthetic="bogus")


@pytest.mark.parametrize(("env_id", "kind"), list(envs.SYNTHETIC_EDGE_IDS.items()))
def test_registered_ids_trade_their_market(env_id, kind):
    env = gym.make(env_id).unwrapped
    assert env.config.synthetic == kind and env.config.mode == "buy_only"
    np.testing.assert_array_equal(env.engine.market.ohlcv, generate(kind).market.ohlcv)

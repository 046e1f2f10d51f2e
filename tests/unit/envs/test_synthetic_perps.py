"""The learning benchmark's hourly perpetuals: events of both signs, causal, valid for the
CryptoFutures env, and an oracle that needs long AND short (and leverage) to earn its edge."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.crypto_futures import CryptoFuturesConfig, CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.synthetic import PERP_KINDS, generate_perpetual, generate_perpetual_market
from envs.synthetic_edges import event_features
from envs.synthetic_oracle import baseline_policy, market_of, oracle_policy, play, play_oracle
from envs.synthetic_perps import PERP_EDGE_KINDS


def _backtest_env(kind: str, n_symbols: int = 6, n_bars: int = 1200, seed: int = 1,
                  **config) -> CryptoFuturesVectorEnv:
    params = {"n_symbols": n_symbols, "n_bars": n_bars, **config.pop("synthetic_params", {})}
    return CryptoFuturesVectorEnv(n_symbols, synthetic=kind, market_seed=seed, synthetic_params=params,
                                  episode_bars=None, random_start=False, symbol_order="sequential",
                                  vector_info=False, **config)


@pytest.mark.parametrize("kind", PERP_EDGE_KINDS)
def test_perp_markets_are_seeded_valid_and_causal(kind):
    a, b = (generate_perpetual_market(kind, seed=3, n_bars=500) for _ in range(2))
    np.testing.assert_array_equal(a.market.ohlcv, b.market.ohlcv)
    np.testing.assert_array_equal(a.oracle_position, b.oracle_position)
    m = a.market
    o, mark = m.ohlcv, m.mark_ohlc
    assert mark is not None and m.funding_rate is not None and np.isfinite(o).all() and (o[:, :4] > 0).all()
    assert (o[:, 1] >= o[:, [0, 3]].max(axis=1)).all() and (o[:, 2] <= o[:, [0, 3]].min(axis=1)).all()
    long = generate_perpetual_market(kind, seed=3, n_bars=900)
    for name in ("ohlcv", "funding_rate", "mark_ohlc"):
        short_rows = np.stack([getattr(m, name)[m.rows(i)] for i in range(m.n_symbols)])
        long_rows = np.stack([getattr(long.market, name)[long.market.rows(i)][:500]
                              for i in range(m.n_symbols)])
        np.testing.assert_array_equal(short_rows, long_rows, err_msg=name)
    for name in ("events", "oracle_position", "oracle_entry"):
        got = np.stack([getattr(long, name)[long.market.rows(i)][:500] for i in range(m.n_symbols)])
        np.testing.assert_array_equal(getattr(a, name).reshape(m.n_symbols, 500), got, err_msg=name)


def test_events_have_both_signs_and_their_bars_show_the_side():
    synth = generate_perpetual_market("rare_event", seed=0, n_symbols=8, n_bars=4000)
    side = synth.oracle_position[synth.oracle_entry]
    assert 0.4 < (side > 0).mean() < 0.6
    clv = event_features(synth.market)["close_location"][synth.oracle_entry]
    assert clv[side > 0].mean() > 0.75 and clv[side < 0].mean() < 0.25


def test_gbm_perpetual_is_the_plain_generator():
    plain = generate_perpetual(seed=4)
    np.testing.assert_array_equal(generate_perpetual_market("gbm", seed=4).market.ohlcv, plain.ohlcv)
    np.testing.assert_array_equal(CryptoFuturesEnv(market_seed=4).engine.market.ohlcv, plain.ohlcv)


@pytest.mark.parametrize("kind", ["rare_event", "regime"])
def test_the_oracle_trades_both_sides_and_beats_the_baselines(kind):
    env = _backtest_env(kind)
    sides: list[np.ndarray] = []
    oracle = oracle_policy(env, market_of(env))

    def recording(rows, qty):
        sides.append(np.sign(qty))
        return oracle(rows, qty)
    played = play(env, recording)
    held = np.concatenate(sides)
    assert (held > 0).mean() > 0.05 and (held < 0).mean() > 0.05  # long AND short
    result = play_oracle(env)
    np.testing.assert_allclose(result.reward, played.reward)
    rng = np.random.default_rng(0)
    for name in ("random", "always"):  # "never" earns exactly 0
        assert result.per_252() > max(play(env, baseline_policy(env, name, rng)).per_252(), 0.0) + 0.03, name
    unlevered = play_oracle(_backtest_env(kind, leverage=1.0))
    assert result.per_252() > 2.0 * unlevered.per_252() > 0  # leverage 3 vs 1: the edge scales


def test_noise_perp_oracle_stays_flat_and_random_trading_loses():
    env = _backtest_env("noise")
    oracle = play_oracle(env)
    assert oracle.opens.sum() == 0 and np.all(oracle.log_return == 0.0)
    assert play(env, baseline_policy(env, "random", np.random.default_rng(0))).per_252() < -0.05


@pytest.mark.parametrize("action_mode", ["discrete", "continuous"])
@pytest.mark.parametrize("env_id", list(envs.SYNTHETIC_PERP_IDS))
def test_registered_perp_ids_step_through_the_env(env_id, action_mode):
    env = gym.make(env_id, action_mode=action_mode).unwrapped
    assert env.config.synthetic == envs.SYNTHETIC_PERP_IDS[env_id]
    result = play_oracle(env, seed=2)
    assert result.bars[0] == env.config.episode_bars
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", action_mode=action_mode,
                        episode_bars=50)
    venv.reset(seed=0)
    for _ in range(60):
        *_, info = venv.step(venv.action_space.sample())
    assert np.isfinite(info["equity_usd"]).all()


def test_crypto_config_validates_the_synthetic_kind_and_params():
    assert set(PERP_KINDS) == {"gbm", *PERP_EDGE_KINDS}
    CryptoFuturesConfig(synthetic="regime", synthetic_params={"vol_high": 0.02, "n_bars": 3000})
    with pytest.raises(ValueError, match="CryptoFuturesConfig.synthetic"):
        CryptoFuturesConfig(synthetic="relative_momentum")  # a stock-only kind
    with pytest.raises(ValueError, match="CryptoFuturesConfig.synthetic_params: .*unknown"):
        CryptoFuturesConfig(synthetic="gbm", synthetic_params={"event_rate": 0.01})

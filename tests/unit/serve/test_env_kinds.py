"""CryptoFutures and Portfolio policies: the service builds the env's observation from the bars
and the position state a client knows (futures: qty, entry, margin, equity, mark, funding;
portfolio: per-asset qty and bars held, cash), and runs the policy on it."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from app.runs.env_factory import create_env
from envs import synthetic
from serve.errors import RequestError
from serve.schemas import ActRequest
from tests.unit.serve.helpers import bars_json, build_module, make_service

STEPS = 60


@pytest.fixture(scope="module")
def futures_config():
    return {"market": synthetic.generate_perpetual(seed=2, n_symbols=1, n_bars=400), "window_bars": 8,
            "episode_bars": None, "random_start": False}


@pytest.fixture(scope="module")
def portfolio_config():
    g = synthetic.generate("gbm", seed=4, n_symbols=2, n_bars=320)
    return {"market": g.market, "index": g.index, "window_bars": 10, "episode_bars": None, "random_start": False}


def test_futures_observation_and_action(futures_config):
    module = build_module(futures_config, "mlp", envs.CRYPTO_FUTURES)
    service = make_service(module, futures_config, envs.CRYPTO_FUTURES, index_required=None)
    assert service.view.kind == "futures" and service.info().action_labels[2] == "level +0"
    env = create_env(envs.CRYPTO_FUTURES, futures_config)
    m = futures_config["market"]
    obs, info = env.reset(seed=0)
    e = env.engine
    held_some = False
    for k in range(STEPS):
        row = int(e.row)
        position = {"qty": float(e.qty), "bars_held": int(e.bars_held)}
        if e.qty != 0.0:
            held_some = True
            position |= {"entry_price_usd": float(e.entry_price), "margin_usd": float(e.margin_usd),
                         "equity_usd": float(e.equity_usd), "mark_price_usd": float(e.mark_usd)}
        body = {"symbols": [{"symbol": m.symbols[0], "position": position,
                             "bars": bars_json(m.ts_ns[:row + 1], m.ohlcv[:row + 1], m.funding_rate[:row + 1])}]}
        prepared = service.prepare(ActRequest.model_validate(body))
        for key, value in obs.items():
            np.testing.assert_array_equal(prepared.decisions[0].obs[key][0], value, err_msg=f"{key} step {k}")
        decision = service.run([prepared])[0].decisions[0]
        assert 0 <= decision.action < 5 and len(decision.action_probs) == 5
        obs, _, terminated, truncated, _ = env.step((3, 3, 4, 4, 4, 2, 0, 0, 1, 2)[k % 10])
        assert not (terminated or truncated)
    assert held_some


def test_futures_positions_are_checked(futures_config):
    module = build_module(futures_config, "mlp", envs.CRYPTO_FUTURES)
    service = make_service(module, futures_config, envs.CRYPTO_FUTURES, index_required=None)
    m = futures_config["market"]
    bars = bars_json(m.ts_ns[:50], m.ohlcv[:50])
    for position, field in (({"owned": True, "bars_held": 1}, "owned"), ({"qty": 0.1, "bars_held": 2}, "entry_price_usd"),
                            ({"qty": 0.1, "bars_held": 0, "entry_price_usd": 1.0, "margin_usd": 1.0,
                              "equity_usd": 1.0}, "bars_held")):
        with pytest.raises(RequestError) as err:
            service.prepare(ActRequest.model_validate({"symbols": [{"symbol": "BTC", "bars": bars,
                                                                      "position": position}]}))
        assert err.value.loc[-1] == field


def test_portfolio_observation_and_action(portfolio_config):
    module = build_module(portfolio_config, "mlp", envs.PORTFOLIO)
    service = make_service(module, portfolio_config, envs.PORTFOLIO)
    assert service.view.kind == "portfolio" and service.view.n_assets == 2
    env = create_env(envs.PORTFOLIO, portfolio_config)
    g_market, index = portfolio_config["market"], portfolio_config["index"]
    obs, _ = env.reset(seed=0)
    e = env.engine
    for k in range(STEPS):
        c = int(e.cal_row[0])
        symbols = [e.universe[a] for a in e.assets[0]]
        items = []
        for a, sym in enumerate(symbols):
            ts, ohlcv = g_market.series(sym)
            items.append({"symbol": sym, "bars": bars_json(ts[:c + 1], ohlcv[:c + 1]),
                          "position": {"qty": float(e.qty[0, a]), "bars_held": int(e.bars_held[0, a])}})
        known = index.ts_ns <= g_market.ts_ns[c]
        body = {"symbols": items, "cash_usd": float(e.cash_usd[0]),
                "index": bars_json(index.ts_ns[known], index.ohlcv[known])}
        prepared = service.prepare(ActRequest.model_validate(body))
        for key, value in obs.items():
            np.testing.assert_allclose(prepared.decisions[0].obs[key][0], value, rtol=1e-6, atol=1e-7,
                                       err_msg=f"{key} step {k}")
        decision = service.run([prepared])[0].decisions[0]
        assert decision.symbols == symbols and len(decision.action) == 2 and len(decision.action_probs) == 2
        assert all(abs(sum(p) - 1) < 1e-5 for p in decision.action_probs)
        obs, _, terminated, truncated, _ = env.step(np.array([(k // 7) % 3, (k // 5) % 3]))
        assert not (terminated or truncated)
    with pytest.raises(RequestError, match="2 assets"):
        service.prepare(ActRequest.model_validate(body | {"symbols": items[:1]}))


def test_portfolio_replay_rows_equal_single_bar_observations(portfolio_config):
    module = build_module(portfolio_config, "gru", envs.PORTFOLIO)
    service = make_service(module, portfolio_config, envs.PORTFOLIO)
    g_market, index = portfolio_config["market"], portfolio_config["index"]

    def body(n: int, replay: int | None) -> dict:
        items = [{"symbol": s, "bars": bars_json(*(a[:n] for a in g_market.series(s))),
                  "position": {"qty": 3.0 if s == "SYN0" else 0.0, "bars_held": 2 if s == "SYN0" else 0}}
                 for s in g_market.symbols]
        return {"symbols": items, "cash_usd": 9_000.0, "replay_bars": replay,
                "index": bars_json(index.ts_ns[:n], index.ohlcv[:n])}

    replay = service.prepare(ActRequest.model_validate(body(200, 4))).decisions[0].obs
    for j, n in enumerate(range(197, 201)):
        one = service.prepare(ActRequest.model_validate(body(n, 1))).decisions[0].obs
        for key in ("daily_hloc", "weekly_volume", "index_hloc", "monthly_hloc"):
            np.testing.assert_array_equal(replay[key][j], one[key][0], err_msg=f"{key} step {j}")
    held = replay["positions"][:, 0, 1]
    np.testing.assert_array_equal(held, [0, 0, 1, 2])  # derived history: held 2 bars, flat before

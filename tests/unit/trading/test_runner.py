"""The runner in paper mode over a replayed market gives the env's decisions and numbers (the
same observation builder, policy step, sizing and costs), and a restart continues identically."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from app.policy.batched import BatchedPolicy
from app.runs.env_factory import create_env
from app.trading.feed import ReplayFeed
from app.trading.paper import FuturesTerms, PaperBroker
from app.trading.runner import Runner
from app.trading.store import StateStore
from envs import synthetic
from tests.unit.serve.helpers import build_module

STEPS = 24


@pytest.fixture(scope="module")
def config():
    return {"market": synthetic.generate_perpetual(seed=5, n_symbols=2, n_bars=200), "window_bars": 8,
            "episode_bars": None, "random_start": False, "leverage": 3.0}


@pytest.fixture(scope="module")
def modules(config):
    return {"mlp": build_module(config, "mlp", envs.CRYPTO_FUTURES),
            "gru": build_module(config, "gru", envs.CRYPTO_FUTURES, seed=1)}


def make_runner(config, module, db, start_rows, limits=None):
    market = config["market"]
    env_config = {k: v for k, v in config.items() if k != "market"}
    spec = envs.env_spec(envs.CRYPTO_FUTURES, env_config, module.observation_space)
    terms = FuturesTerms.from_env_config(spec.config)
    feed = ReplayFeed(market, dict(start_rows))
    policy = BatchedPolicy(module, module.action_space, 1, greedy=True)
    runner = Runner(spec=spec, terms=terms, policy=policy, broker=PaperBroker(terms), feed=feed,
                    store=StateStore(db, durable=False), symbols=list(market.symbols), account="test", bar_ns=3600 * 10**9,
                    limits=limits)
    runner.start()
    return runner, feed


def test_kill_switch_flattens_and_stops(tmp_path, config, modules):
    from app.trading.risk import RiskLimits

    market = config["market"]
    start = {s: int(market.offsets[i]) + 20 for i, s in enumerate(market.symbols)}
    runner, feed = make_runner(config, modules["mlp"], tmp_path / "k.sqlite", start,
                               RiskLimits(max_drawdown=0.003, max_daily_loss=0.9))
    for _ in range(40):
        report = runner.step()
        if report.stop_reason:
            break
        feed.advance()
    assert runner.stopped and "max drawdown" in runner.stopped
    assert all(b.qty == 0 for b in runner.books.values())
    assert [e["kind"] for e in runner.store.events()][-2:] == ["close_all", "kill"]
    assert runner.notifier.sent == ["started", "kill switch"]
    runner.store.close()


def test_paper_replay_matches_the_env(tmp_path, config, modules):
    module = modules["mlp"]
    market = config["market"]
    env_cfg = config | {"num_envs": 1}
    environments = {s: create_env(envs.CRYPTO_FUTURES, {k: v for k, v in env_cfg.items() if k != "num_envs"})
                    for s in market.symbols}
    obs = {s: e.reset(seed=0, options={"symbol": s})[0] for s, e in environments.items()}
    runner, feed = make_runner(config, module, tmp_path / "s.sqlite",
                               {s: int(e.engine.row) for s, e in environments.items()})
    policy = BatchedPolicy(module, module.action_space, 1, greedy=True)
    trades = 0
    for k in range(STEPS):
        report = runner.step()
        assert report.stop_reason is None
        for s, env in environments.items():
            e, b = env.engine, runner.books[s]
            assert (b.qty, b.cash_usd, b.margin_usd, b.entry_price, b.bars_held, b.level) == (
                e.qty, e.cash_usd, e.margin_usd, e.entry_price, e.bars_held, e.level), f"step {k} {s}"
            batch = {key: np.asarray(v)[None] for key, v in obs[s].items()}
            expected = int(policy.step(batch)[0].actions[0])
            assert report.actions[s] == expected, f"step {k} {s}"
            obs[s], *_ = env.step(expected)
            trades += e.last_trade_qty != 0
        assert feed.advance()
    assert trades > 5
    equity = runner.store.equity()
    assert len(equity) == 2 * STEPS and len(runner.store.decisions()) == 2 * STEPS
    runner.store.close()


def test_recurrent_restart_continues_identically(tmp_path, config, modules):
    module = modules["gru"]
    market = config["market"]
    start = {s: int(market.offsets[i]) + 20 for i, s in enumerate(market.symbols)}
    straight, feed = make_runner(config, module, tmp_path / "a.sqlite", start)
    expected = []
    for _ in range(20):
        expected.append((straight.step().actions, {s: b.equity_usd for s, b in straight.books.items()}))
        feed.advance()
    straight.store.close()
    got = []
    runner, feed = make_runner(config, module, tmp_path / "b.sqlite", start)
    for k in range(20):
        if k == 10:  # the process ends; a new one starts on the same database, at the next bar
            rows = dict(feed.now_row)
            runner.store.close()
            runner, feed = make_runner(config, module, tmp_path / "b.sqlite", rows)
        got.append((runner.step().actions, {s: b.equity_usd for s, b in runner.books.items()}))
        feed.advance()
    assert got == expected
    assert len({str(a) for a, _ in expected}) > 1  # the policy does not take one action throughout
    runner.store.close()


def live_runner(config, module, db, start_rows, ex, market, retry_attempts=3):
    from app.data.sources.base import RetryPolicy
    from app.trading.ccxt_broker import CcxtBroker

    env_config = {k: v for k, v in config.items() if k != "market"}
    spec = envs.env_spec(envs.CRYPTO_FUTURES, env_config, module.observation_space)
    terms = FuturesTerms.from_env_config(spec.config)
    feed = ReplayFeed(market, dict(start_rows))
    broker = CcxtBroker(ex, leverage=terms.leverage, retry=RetryPolicy.no_wait(retry_attempts))
    policy = BatchedPolicy(module, module.action_space, 1, greedy=True)
    runner = Runner(spec=spec, terms=terms, policy=policy, broker=broker, feed=feed,
                    store=StateStore(db, durable=False), symbols=list(market.symbols), account="live", bar_ns=3600 * 10**9)
    runner.start()
    return runner, feed


def _fake_run(tmp_path, config, module, *, faults: bool, steps: int):
    import ccxt

    from envs.core.market import MarketArrays
    from tests.unit.trading.fake_exchange import FakeBinanceUsdm

    m = config["market"]
    names = ("BTC/USDT:USDT", "ETH/USDT:USDT")
    market = MarketArrays(names, m.offsets, m.ts_ns, m.ohlcv, m.funding_rate, m.mark_ohlc)
    start = {s: int(market.offsets[i]) + 20 for i, s in enumerate(names)}
    paper, pfeed = make_runner(config | {"market": market}, module, tmp_path / "p.sqlite", start)
    ex = FakeBinanceUsdm()
    rng = np.random.default_rng(3)
    kinds = [None, None, None, "timeout_placed", "timeout_not_placed", "5xx_placed", "429", "reject",
             "insufficient_margin", "partial"]
    db = tmp_path / "l.sqlite"
    live, feed = live_runner(config, module, db, start, ex, market)
    restarts = 0
    for _ in range(steps):
        ex.prices = {s: feed.reference_price(s) for s in names}  # the fake fills at the open in progress
        if faults:
            ex.faults["create_order"] = [kinds[rng.integers(len(kinds))] for _ in range(4)]
            ex.faults["fetch_positions"] = [ccxt.RequestTimeout("t")] if rng.random() < 0.2 else []
        paper.step()
        live.step()
        if faults and rng.random() < 0.15:  # the process dies after a step; a new one takes over the database
            rows = dict(feed.now_row)
            live.store.close()
            live, feed = live_runner(config, module, db, rows, ex, market)
            restarts += 1
        pfeed.advance()
        feed.advance()
    return paper, live, ex, restarts


def test_fake_exchange_with_faults_loses_and_duplicates_nothing(tmp_path, config, modules):
    """Random order faults (timeouts with and without placement, 5xx, 429, rejects, margin,
    partial fills),
    read timeouts, and process restarts: 0 duplicate and 0 lost orders, books equal to the
    exchange's positions, nothing left unresolved."""
    from app.trading.broker import OrderState
    from app.trading.orders import resolve

    paper, live, ex, restarts = _fake_run(tmp_path, config, modules["mlp"], faults=True, steps=24)
    resolve(live.store, live.broker)  # what the next bar does first
    rows = live.store.orders()
    assert restarts > 0 and not live.store.unresolved() and len(rows) > 10
    assert not any("duplicated" in (r.error or "") for r in rows)  # 0 duplicates (the exchange refuses reuse)
    known = {r.client_id for r in rows if r.state in (OrderState.FILLED, OrderState.OPEN, OrderState.CANCELED)}
    assert known == set(ex.orders)  # 0 lost: every order on the exchange is known, and only those
    # partial fills left open are canceled a bar later (their filled part kept)
    assert {r.state for r in rows} >= {OrderState.FILLED, OrderState.REJECTED, OrderState.NOT_FOUND,
                                       OrderState.CANCELED}
    live._sync_positions()
    for s, b in live.books.items():
        assert b.qty == pytest.approx(ex.qty.get(s, 0.0), abs=1e-12)
    paper.store.close()
    live.store.close()


def test_fake_exchange_without_faults_tracks_paper(tmp_path, config, modules):
    """Without faults the fake account follows paper: the same decisions almost everywhere and
    equity within 1 % (the differences: the exchange's 0.001 lot step, and fills at the open
    without the model's 2 bps slippage)."""
    paper, live, _, _ = _fake_run(tmp_path, config, modules["mlp"], faults=False, steps=24)
    p_dec, l_dec = paper.store.decisions(), live.store.decisions()
    assert len(l_dec) == len(p_dec) == 48
    agree = np.mean([a["action"] == b["action"] for a, b in zip(p_dec, l_dec, strict=True)])
    assert agree >= 0.9
    p_eq = sum(b.equity_usd for b in paper.books.values())
    l_eq = sum(b.equity_usd for b in live.books.values())
    assert abs(l_eq - p_eq) / p_eq < 0.01
    paper.store.close()
    live.store.close()


def test_stop_signal_finishes_the_step_and_flattens(tmp_path, config, modules):
    """SIGTERM sets the stop flag: the replay loop ends after the current step and, with
    close-on-exit, cancels and flattens before returning."""
    import os
    import signal

    from app.trading.session import StopFlag, run_replay

    market = config["market"]
    start = {s: int(market.offsets[i]) + 20 for i, s in enumerate(market.symbols)}
    runner, feed = make_runner(config, modules["mlp"], tmp_path / "t.sqlite", start)
    stop = StopFlag()
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop.install()
    seen = []

    def on_step(report) -> None:
        seen.append(report)
        if len(seen) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
    try:
        n = run_replay(runner, feed, "2100-01-01", None, stop, True, on_step)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    assert n == 5 and stop.signal == "SIGTERM" and any(r.orders for r in seen)
    assert all(b["qty"] == 0 for b in runner.store.get("books").values())
    kinds = [e["kind"] for e in runner.store.events()]
    assert kinds[-2:] == ["close_all", "stop"]
    runner.store.close()


def test_no_new_order_while_one_is_unknown(tmp_path, config, modules):
    """An order left UNKNOWN (the exchange cannot be asked about it) blocks new orders on its
    symbol: a second order could double the position if the first one did go through."""
    import ccxt

    from app.trading.broker import OrderState
    from envs.core.market import MarketArrays
    from tests.unit.trading.fake_exchange import FakeBinanceUsdm

    m = config["market"]
    names = ("BTC/USDT:USDT", "ETH/USDT:USDT")
    market = MarketArrays(names, m.offsets, m.ts_ns, m.ohlcv, m.funding_rate, m.mark_ohlc)
    ex = FakeBinanceUsdm()
    live, feed = live_runner(config, modules["mlp"], tmp_path / "u.sqlite",
                             {s: int(market.offsets[i]) + 20 for i, s in enumerate(names)}, ex, market,
                             retry_attempts=1)
    ex.prices = {s: feed.reference_price(s) for s in names}
    ex.faults["create_order"] = ["timeout_not_placed"] * 2
    first = live.step()
    unknown = {r.client_id for r in live.store.orders() if r.state is OrderState.UNKNOWN}
    assert first.orders and unknown
    for _ in range(6):  # the exchange keeps failing the look-ups
        feed.advance()
        ex.prices = {s: feed.reference_price(s) for s in names}
        ex.faults["fetch_order"] = [ccxt.ExchangeNotAvailable("503")] * 10
        live.step()
    stuck = {r.symbol for r in live.store.orders() if r.state is OrderState.UNKNOWN}
    assert stuck and not [r for r in live.store.orders() if r.symbol in stuck and r.client_id not in unknown]
    assert any(e["kind"] == "blocked" for e in live.store.events())
    live.store.close()

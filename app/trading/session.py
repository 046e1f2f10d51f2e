"""From a :class:`~app.trading.config.TradeConfig` to a running :class:`~app.trading.runner.Runner`.

The policy is resolved and loaded like Serve loads it (:mod:`app.policy.loader`), its env spec
asked from the env (``envs.env_spec`` with the run's env config and the module's observation
space), and the trading terms (sizing, costs, leverage) read from that spec's config: nothing
here knows an env's maths. Only futures policies trade (a CryptoFutures-v0 spec).

Modes: ``replay`` (bars from the Parquet store on a fast clock, paper broker; the demo and
the tests), ``paper`` (live bars from the exchange, paper broker) and ``live`` (live bars,
:class:`~app.trading.ccxt_broker.CcxtBroker`; keys from the environment).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from app.errors import ConfigError
from app.trading.config import TradeConfig
from app.trading.feed import ReplayFeed
from app.trading.notify import EmailNotifier, Notifiers, WebhookNotifier
from app.trading.paper import FuturesTerms, PaperBroker
from app.trading.risk import RiskLimits
from app.trading.runner import Runner
from app.trading.store import StateStore

log = logging.getLogger("raytrade.trading")
BAR_NS = {"1h": 3600 * 10**9}


@dataclass
class LoadedPolicy:
    ref: str
    version: str
    env_id: str
    spec: Any
    policy: Any
    env_config: dict[str, Any]


def load_policy(cfg: TradeConfig) -> LoadedPolicy:
    import torch

    import envs
    from app.policy.batched import BatchedPolicy
    from app.policy.loader import load_module, resolve

    torch.set_num_threads(1)
    source = resolve(cfg.policy, checkpoint=cfg.checkpoint, runs_dir=cfg.runs_dir)
    module = load_module(source.policy_dir)
    env_config = {k: v for k, v in source.env_config.items() if k != "data"}
    try:
        spec = envs.env_spec(source.env_id, env_config, module.observation_space)
    except ValueError as exc:
        raise ConfigError(f"{cfg.policy}: {exc}") from exc
    if spec.kind != "futures":
        raise ConfigError(f"{cfg.policy}: trains {source.env_id} ({spec.kind}); the trader trades futures policies "
                          "(raytrade/CryptoFutures-v0) only")
    policy = BatchedPolicy(module, module.action_space, 1, greedy=True, with_values=True)
    return LoadedPolicy(cfg.policy, source.model_version, source.env_id, spec, policy, env_config)


def terms_for(cfg: TradeConfig, spec: Any) -> FuturesTerms:
    env_lev = float(spec.config.leverage)
    if cfg.leverage is not None and cfg.leverage != env_lev:
        raise ConfigError(f"leverage: the policy was trained with leverage {env_lev:g} (its observation and "
                          f"sizing depend on it), the config asks {cfg.leverage:g}")
    return FuturesTerms.from_env_config(spec.config, initial_cash_usd=cfg.per_symbol_usd)


def notifiers(cfg: TradeConfig) -> Notifiers:
    targets: list[Any] = []
    if cfg.notify.email is not None:
        e = cfg.notify.email
        targets.append(EmailNotifier(e.host, e.port, e.sender, tuple(e.recipients), e.security))
    if cfg.notify.webhook_url:
        targets.append(WebhookNotifier(cfg.notify.webhook_url))
    return Notifiers(targets)


def replay_feed(cfg: TradeConfig, start: str, resume_ts_ns: int | None) -> ReplayFeed:
    from app.config.schema import default_store
    from app.data.market import load_market
    from app.data.schema import DatasetKey, MarketType
    from app.data.store import ParquetStore

    store_dir = Path(cfg.replay.store) if cfg.replay and cfg.replay.store else default_store()
    if not store_dir.is_dir():
        raise ConfigError(f"replay.store: {store_dir} does not exist (raytrade data import data/sample)")
    key = DatasetKey(cfg.exchange.id, MarketType.SWAP, cfg.timeframe)
    market = load_market(ParquetStore(store_dir), key, cfg.symbols)
    missing = set(cfg.symbols) - set(market.symbols)
    if missing:
        raise ConfigError(f"symbols: {sorted(missing)} not in the store {store_dir} ({key})")
    start_ns = resume_ts_ns if resume_ts_ns is not None else pd.Timestamp(start, tz="UTC").value
    return ReplayFeed.from_time(market, cfg.symbols, start_ns)


def build_runner(cfg: TradeConfig, *, mode: str, loaded: LoadedPolicy | None = None,
                 replay: tuple[str, str] | None = None, state_dir: Path | None = None) -> tuple[Runner, Any]:
    """The runner and its feed for ``mode`` in ("replay", "paper", "live")."""
    loaded = loaded or load_policy(cfg)
    terms = terms_for(cfg, loaded.spec)
    store = StateStore(cfg.state_path(state_dir), durable=mode == "live")
    try:
        saved_mode = store.get("mode")
        if saved_mode is not None and saved_mode != mode:
            raise ConfigError(f"{store.path}: holds a {saved_mode} account; this is {mode} (use another state_db)")
        store.put(mode=mode, policy=loaded.version, config=cfg.model_dump(mode="json"))
        clock = None
        if mode == "replay":
            start = replay[0] if replay else (cfg.replay.start if cfg.replay else None)
            if start is None:
                raise ConfigError("replay: give --replay FROM TO or a replay section")
            feed: Any = replay_feed(cfg, start, store.get("last_ts"))
        else:
            from app.trading.ccxt_broker import CcxtFeed, exchange_from_env

            exchange = exchange_from_env(cfg.exchange.id, live=mode == "live", testnet=cfg.exchange.testnet)
            feed = CcxtFeed(exchange, cfg.timeframe)
            clock = time.time_ns
        if mode == "live":
            from app.trading.ccxt_broker import CcxtBroker

            broker: Any = CcxtBroker(exchange, leverage=terms.leverage, margin_mode=cfg.margin_mode)
        else:
            broker = PaperBroker(terms)
        r = cfg.risk
        runner = Runner(spec=loaded.spec, terms=terms, policy=loaded.policy, broker=broker, feed=feed, store=store,
                        symbols=list(cfg.symbols), account=cfg.name, bar_ns=BAR_NS[cfg.timeframe],
                        limits=RiskLimits(r.max_drawdown, r.max_daily_loss, r.max_consecutive_errors, r.stale_bars),
                        notifier=notifiers(cfg), clock_ns=clock)
    except BaseException:
        store.close()
        raise
    return runner, feed


def report(cfg: TradeConfig, state_dir: Path | None = None) -> tuple[Path, list[Any]]:
    """The live-vs-backtest report of ``cfg``'s account (:mod:`app.trading.report`)."""
    from app.config.schema import default_store
    from app.runs.env_factory import DataSpec
    from app.trading.report import compare, write_report

    loaded = load_policy(cfg)
    terms = terms_for(cfg, loaded.spec)
    store_dir = Path(cfg.replay.store) if cfg.replay and cfg.replay.store else default_store()
    spec = DataSpec(str(store_dir), cfg.exchange.id, "swap", cfg.timeframe, tuple(cfg.symbols)).to_dict()
    path = cfg.state_path(state_dir)
    if not path.is_file():
        raise ConfigError(f"{path}: no state database (trade first)")
    feed = replay_feed(cfg, "2200-01-01", None)  # only its market is used
    market = feed.market

    def bar_open(symbol: str, ts_ns: int) -> float:
        i = list(market.symbols).index(symbol)
        lo, hi = int(market.offsets[i]), int(market.offsets[i + 1])
        k = lo + int((market.ts_ns[lo:hi] < ts_ns).sum())
        return float(market.ohlcv[k, 0])

    with StateStore(path, lock=False) as store:
        rows = compare(store, module=loaded.policy.module, env_id=loaded.env_id, env_config=loaded.env_config,
                       data_spec=spec, symbols=list(cfg.symbols), initial_cash_usd=cfg.per_symbol_usd,
                       bar_ns=BAR_NS[cfg.timeframe], model_slippage_bps=terms.slippage_rate * 1e4,
                       bar_open=bar_open)
    out = write_report(rows, path.parent / f"{cfg.name}-report", title=f"{cfg.name}: trader vs backtest",
                       model_slippage_bps=terms.slippage_rate * 1e4)
    return out, rows


class StopFlag:
    """SIGINT/SIGTERM set it; the loop finishes the current step, then stops."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._set)

    def _set(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()


def run_replay(runner: Runner, feed: ReplayFeed, end: str, max_bars: int | None, stop: StopFlag,
               close_on_exit: bool, on_step: Any = None) -> int:
    """Step bar by bar until ``end`` (exclusive), ``max_bars``, a stop signal or the kill switch."""
    end_ns = pd.Timestamp(end, tz="UTC").value
    n = 0
    while not stop.event.is_set():
        report = runner.step()
        n += 1
        if on_step is not None:
            on_step(report)
        if runner.stopped or (max_bars is not None and n >= max_bars) or not feed.can_advance():
            break
        feed.advance()
        if min(feed.now_ts_ns(s) for s in runner.symbols) >= end_ns:
            break
    if not runner.stopped:
        runner.stop(close_on_exit)
    return n


def run_live(runner: Runner, bar_ns: int, delay_s: float, stop: StopFlag, close_on_exit: bool,
             on_step: Any = None) -> int:
    """Step at every bar close (+ ``delay_s``) on the wall clock (UTC) until stopped."""
    n = 0
    while not stop.event.is_set():
        now = time.time_ns()
        next_close = (now // bar_ns + 1) * bar_ns
        if stop.event.wait((next_close - now) / 1e9 + delay_s):
            break
        report = runner.step()
        n += 1
        if on_step is not None:
            on_step(report)
        if runner.stopped:
            break
    if not runner.stopped:
        runner.stop(close_on_exit)
    return n

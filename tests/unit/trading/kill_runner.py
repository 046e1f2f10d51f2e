"""A runner process for the kill -9 tests: ``python -m tests.unit.trading.kill_runner DB STATE FAULT STEPS``.

The fake exchange's account lives in the JSON file ``STATE`` (loaded at start, saved after
every change), so it survives the runner's death like a real exchange. ``FAULT``:
``kill_before_send`` (SIGKILL after the order is written, before the request),
``kill_after_send`` (SIGKILL after the exchange placed it, before the answer), or ``none``.
The policy always goes long at full size, then flat, alternating by bar (no torch)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

import envs
from app.data.sources.base import RetryPolicy
from app.trading.ccxt_broker import CcxtBroker
from app.trading.feed import ReplayFeed
from app.trading.paper import FuturesTerms
from app.trading.runner import Runner
from app.trading.store import StateStore
from envs import synthetic
from envs.core.market import MarketArrays
from tests.unit.trading.fake_exchange import FakeBinanceUsdm

NAMES = ("BTC/USDT:USDT", "ETH/USDT:USDT")
FIELDS = ("orders", "qty", "entry", "leverage_set", "margin_mode_set")


class PersistentFake(FakeBinanceUsdm):
    def __init__(self, path: Path, fault: str) -> None:
        super().__init__()
        self.path, self.kill_fault = path, fault
        if path.is_file():
            for k, v in json.loads(path.read_text()).items():
                setattr(self, k, v)

    def save(self) -> None:
        self.path.write_text(json.dumps({k: getattr(self, k) for k in FIELDS}))

    def set_leverage(self, *a: Any, **k: Any) -> dict:
        out = super().set_leverage(*a, **k)
        self.save()
        return out

    def set_margin_mode(self, *a: Any, **k: Any) -> dict:
        out = super().set_margin_mode(*a, **k)
        self.save()
        return out

    def create_order(self, *a: Any, **k: Any) -> dict:
        if self.kill_fault == "kill_before_send":
            os.kill(os.getpid(), signal.SIGKILL)
        out = super().create_order(*a, **k)
        self.save()
        if self.kill_fault == "kill_after_send":
            os.kill(os.getpid(), signal.SIGKILL)
        return out


class Alternate:
    stateful = False

    def __init__(self, runner_ref: list) -> None:
        self.ref = runner_ref

    def step(self, obs: dict, state: Any = None) -> tuple[Any, None]:
        n = len(next(iter(obs.values())))
        bar = self.ref[0].feed.now_row[NAMES[0]]
        return SimpleNamespace(actions=np.full(n, 4 if bar % 2 == 0 else 2), action_probs=None, values=None), None

    def stack_states(self, rows: list) -> None:
        return None

    def split_state(self, state: Any, batch: int) -> list:
        return []


def main(db: str, state: str, fault: str, steps: int) -> None:
    m = synthetic.generate_perpetual(seed=5, n_symbols=2, n_bars=200)
    market = MarketArrays(NAMES, m.offsets, m.ts_ns, m.ohlcv, m.funding_rate, m.mark_ohlc)
    spec = envs.env_spec(envs.CRYPTO_FUTURES, {"window_bars": 8, "leverage": 3.0})
    terms = FuturesTerms.from_env_config(spec.config)
    ex = PersistentFake(Path(state), fault)
    store = StateStore(db, durable=False)
    last = store.get("last_ts")
    feed = ReplayFeed.from_time(market, list(NAMES), last) if last else ReplayFeed(
        market, {s: int(market.offsets[i]) + 30 for i, s in enumerate(NAMES)})
    ref: list = []
    runner = Runner(spec=spec, terms=terms, policy=Alternate(ref), broker=CcxtBroker(ex, leverage=3.0,
                    retry=RetryPolicy.no_wait(2)), feed=feed, store=store, symbols=list(NAMES), account="kill",
                    bar_ns=3600 * 10**9)
    ref.append(runner)
    print(runner.start(), flush=True)
    for _ in range(steps):
        ex.prices = {s: feed.reference_price(s) for s in NAMES}
        runner.step()
        feed.advance()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))

"""Synthetic bars for the UI tests (no store, no Ray)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from envs.core.market import MarketArrays

DAY_NS = 86_400 * 10**9


def frame(symbols: tuple[str, ...] = ("AAA", "BBB", "CCC"), n_bars: int = 300, seed: int = 0,
          start: str = "2010-01-04", freq: str = "B") -> pd.DataFrame:
    """Canonical OHLCV rows (a random walk per symbol), business days by default."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n_bars, freq=freq, tz="UTC")
    parts = []
    for k, symbol in enumerate(symbols):
        close = (50.0 + 10 * k) * np.exp(np.cumsum(rng.normal(0.0, 0.012, n_bars)))
        open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0.0, 0.003, n_bars))
        parts.append(pd.DataFrame({
            "timestamp": ts, "open": open_, "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99, "close": close,
            "volume": rng.uniform(1e5, 3e5, n_bars), "symbol": symbol}))
    return pd.concat(parts, ignore_index=True)


def arrays(df: pd.DataFrame) -> MarketArrays:
    symbols = tuple(dict.fromkeys(df["symbol"]))
    lengths = [int((df["symbol"] == s).sum()) for s in symbols]
    ordered = pd.concat([df[df["symbol"] == s] for s in symbols])
    return MarketArrays(symbols, np.r_[0, np.cumsum(lengths)].astype(np.int64),
                        ordered["timestamp"].dt.as_unit("ns").astype("int64").to_numpy(),
                        ordered[["open", "high", "low", "close", "volume"]].to_numpy(np.float64))


def market_and_index(n_bars: int = 300, seed: int = 0) -> tuple[MarketArrays, MarketArrays]:
    return arrays(frame(n_bars=n_bars, seed=seed)), arrays(frame(("^IDX",), n_bars=n_bars, seed=seed + 100))


class ScriptedPolicy:
    """Stands in for :class:`app.policy.BatchedPolicy`: action ``buy_action`` at the listed steps,
    0 otherwise, with made-up probabilities and values."""

    def __init__(self, n_actions: int, buy_steps: set[int], buy_action: int = 1) -> None:
        self.n, self.buy_steps, self.buy_action, self.k = n_actions, buy_steps, buy_action, 0

    def act(self, obs: dict) -> SimpleNamespace:
        action = self.buy_action if self.k in self.buy_steps else 0
        probs = np.full((1, self.n), 0.1)
        probs[0, action] = 1.0 - 0.1 * (self.n - 1)
        self.k += 1
        return SimpleNamespace(actions=np.array([action]), action_probs=probs, values=np.array([0.5 + self.k]))

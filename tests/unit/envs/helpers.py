"""Small hand-made markets for env tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.core.market import MarketArrays
from envs.synthetic import business_days_ts_ns

FAST = {"precompute_max_mb": 64.0}


def series(close: Sequence[float], open_: Sequence[float] | None = None,
           volume: Sequence[float] | float = 1_000.0) -> np.ndarray:
    """OHLCV ``[n, 5]`` from closes (and opens): high/low are the open/close envelope."""
    close = np.asarray(close, dtype=np.float64)
    open_ = close if open_ is None else np.asarray(open_, dtype=np.float64)
    vol = np.broadcast_to(np.asarray(volume, dtype=np.float64), close.shape)
    return np.column_stack([open_, np.maximum(open_, close), np.minimum(open_, close), close, vol])


def market(*bars: np.ndarray, names: Sequence[str] | None = None, ts_ns: np.ndarray | None = None
           ) -> MarketArrays:
    """A MarketArrays of the given OHLCV series on business days (same calendar start)."""
    names = tuple(names or (f"S{i}" for i in range(len(bars))))
    lengths = [len(b) for b in bars]
    ts = [business_days_ts_ns(n) if ts_ns is None else ts_ns[:n] for n in lengths]
    return MarketArrays(names, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                        np.concatenate(ts).astype(np.int64), np.concatenate(bars))


def flat_market(n_bars: int = 12, price: float = 100.0) -> MarketArrays:
    return market(series([price] * n_bars))


def run(env, actions, seed: int = 0, options: dict | None = None) -> list[dict]:
    """Step a single env through ``actions``; one record per step (and the reset)."""
    obs, info = env.reset(seed=seed, options=options)
    records = [{"obs": obs, "reward": 0.0, "info": dict(info), "done": False}]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        records.append({"obs": obs, "reward": reward, "info": dict(info), "done": terminated or truncated})
        if terminated or truncated:
            break
    return records

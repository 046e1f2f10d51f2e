"""Small clean canonical frames to break on purpose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_bars(n: int = 10, symbol: str = "AAA", start: str = "2021-01-04", freq: str = "1D",
              seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=n, freq=freq, tz="UTC").as_unit("ns"),
        "open": open_, "high": high, "low": low, "close": close,
        "volume": rng.integers(1_000, 5_000, n).astype(float), "symbol": symbol,
    })


@pytest.fixture
def bars() -> pd.DataFrame:
    return make_bars()

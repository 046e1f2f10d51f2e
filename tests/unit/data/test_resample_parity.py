"""The pandas resampler (app.data.resample) equals the envs' numpy one (envs.core.resample).

Both exist on purpose: the envs build causal partial bars from arrays (no pandas in envs/), the
data layer builds stored / reported weekly and monthly bars from frames. Same bars in, the same
weekly and monthly bars out, bit for bit, as of every day and for complete periods.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from app.data.resample import partial_bars_asof, resample_daily
from app.data.schema import ts_ns
from envs.core.resample import partial_bars
from tests.unit.data.test_resample import daily_bars

PERIOD = {"1w": "W", "1mo": "M"}
OHLCV = ["open", "high", "low", "close", "volume"]


def envs_partial(bars: pd.DataFrame, timeframe: str):
    """The envs' partial bars on the same rows, sorted by symbol then time (CSR series)."""
    bars = bars.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    sizes = bars.groupby("symbol", sort=True).size().to_numpy()
    offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    out = partial_bars(ts_ns(bars["timestamp"]), bars[OHLCV].to_numpy(np.float64), offsets,
                       PERIOD[timeframe])
    return bars, out


@settings(max_examples=40, deadline=None)
@given(bars=daily_bars(), timeframe=st.sampled_from(["1w", "1mo"]))
def test_pandas_and_numpy_resamplers_give_identical_bars(bars: pd.DataFrame, timeframe: str) -> None:
    sorted_bars, env = envs_partial(bars, timeframe)
    asof = partial_bars_asof(bars, timeframe)
    assert list(asof["timestamp"]) == list(sorted_bars["timestamp"])
    np.testing.assert_array_equal(asof[OHLCV].to_numpy(np.float64), env.ohlcv)
    complete = resample_daily(bars, timeframe)
    np.testing.assert_array_equal(complete[OHLCV].to_numpy(np.float64), env.ohlcv[env.last_row])
    assert list(complete["timestamp"]) == list(sorted_bars["timestamp"].iloc[env.last_row])

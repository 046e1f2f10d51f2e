"""Bad configs and bad arrays fail at construction with a clear error naming the problem."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core.market import CLOSE, HIGH, MarketArrays
from envs.stock_swing import StockSwingConfig, StockSwingEnv, StockSwingVectorEnv

from .helpers import market, series


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "scalp"), ("reward", "sharpe"), ("horizon_bars", 0), ("horizon_bars", 2.5),
     ("fee_bps", -1.0), ("slippage_bps", float("nan")), ("initial_cash_usd", 0.0),
     ("window_bars", 0), ("episode_bars", 0), ("warmup_bars", 10), ("buy_fraction", 1.5),
     ("symbol_order", "alphabetical"), ("symbols", "AAPL"), ("symbols", ()), ("dsr_eta", 0.0),
     ("end_ts_ns", -5), ("clip_log_ratio", 0.0), ("synthetic", "bogus"), ("market_seed", -1),
     ("precompute_max_mb", float("inf")), ("episode_bars", True)],
)
def test_bad_config_names_the_field(field, value):
    kw = {field: value}
    if field == "end_ts_ns":
        kw["start_ts_ns"] = 0
    with pytest.raises(ValueError, match=f"StockSwingConfig.{field}"):
        StockSwingConfig(**kw)


def test_unknown_keys_and_frozen():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['horizon'\]"):
        StockSwingConfig.from_mapping({"horizon": 5})
    with pytest.raises(ValueError, match="unknown field"):
        StockSwingEnv(config=StockSwingConfig(), horizon=3)
    with pytest.raises(AttributeError):
        StockSwingConfig().fee_bps = 1.0  # type: ignore[misc]
    assert StockSwingConfig.from_mapping({"symbols": ["A", "B"]}).symbols == ("A", "B")


def _with(ohlcv_change=None, ts_change=None) -> MarketArrays:
    m = market(series(np.linspace(100, 120, 80)))
    ohlcv, ts = m.ohlcv.copy(), m.ts_ns.copy()
    if ohlcv_change:
        ohlcv_change(ohlcv)
    if ts_change:
        ts_change(ts)
    return MarketArrays(m.symbols, m.offsets, ts, ohlcv)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.__setitem__((40, CLOSE), np.nan), "market: NaN or inf in ohlcv at row 40"),
        (lambda o: o.__setitem__((3, HIGH), np.inf), "NaN or inf"),
        (lambda o: o.__setitem__((5, CLOSE), 0.0), "prices must be > 0"),
        (lambda o: o.__setitem__((5, 4), -1.0), "volume must be >= 0"),
    ],
)
def test_bad_arrays(mutate, message):
    with pytest.raises(ValueError, match=message):
        StockSwingEnv(_with(ohlcv_change=mutate), episode_bars=10)


def test_unsorted_timestamps_length_mismatch_and_short_data():
    with pytest.raises(ValueError, match="strictly increase"):
        StockSwingEnv(_with(ts_change=lambda t: t.__setitem__(10, t[9])), episode_bars=10)
    m = market(series(np.linspace(100, 120, 80)))
    with pytest.raises(ValueError, match="ohlcv: expected shape"):
        MarketArrays(m.symbols, m.offsets, m.ts_ns, m.ohlcv[:-1])
    with pytest.raises(ValueError, match="offsets"):
        MarketArrays(("A", "B"), m.offsets, m.ts_ns, m.ohlcv)
    with pytest.raises(ValueError, match="window longer than data"):
        StockSwingEnv(m, episode_bars=40)  # 50 warmup bars + 40 steps > 80 bars
    with pytest.raises(ValueError, match="window longer than data"):
        StockSwingVectorEnv(4, m, window_bars=100, episode_bars=None)
    with pytest.raises(ValueError, match="symbols.*'NOPE'"):
        StockSwingEnv(m, symbols=("NOPE",), episode_bars=10)
    with pytest.raises(ValueError, match="num_envs"):
        StockSwingVectorEnv(0, m, episode_bars=10)


def test_bad_index_and_options():
    m = market(series(np.linspace(100, 120, 80)))
    two = market(series([1.0] * 80), series([1.0] * 80))
    with pytest.raises(ValueError, match="index: expected a MarketArrays with exactly one"):
        StockSwingEnv(m, two, episode_bars=10)
    late = MarketArrays(("I",), np.array([0, 1]), m.ts_ns[-1:], m.ohlcv[-1:])
    with pytest.raises(ValueError, match="index's coverage"):
        StockSwingEnv(m, late, episode_bars=10)
    env = StockSwingEnv(m, episode_bars=10)
    with pytest.raises(ValueError, match="options\\['symbol'\\]"):
        env.reset(seed=0, options={"symbol": "ZZZ"})
    with pytest.raises(ValueError, match="render_mode"):
        StockSwingEnv(m, render_mode="human", episode_bars=10)

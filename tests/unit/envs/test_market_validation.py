"""Markets an env cannot use are refused with a ValueError naming what is wrong: an empty market
(not a numpy reduction error), unsorted timestamps reported on the market's own timestamps with
the symbol and bar (not as ``mark_ohlc``), bad prices with their symbol."""

from __future__ import annotations

import numpy as np
import pytest

from envs import synthetic
from envs.core.market import CLOSE, MarketArrays
from envs.crypto_futures import CryptoFuturesEnv, CryptoFuturesVectorEnv
from envs.portfolio import PortfolioEnv, PortfolioVectorEnv
from envs.stock_swing import StockSwingEnv, StockSwingVectorEnv

FACES = [StockSwingEnv, CryptoFuturesEnv, PortfolioEnv,
         lambda **kw: StockSwingVectorEnv(2, **kw), lambda **kw: CryptoFuturesVectorEnv(2, **kw),
         lambda **kw: PortfolioVectorEnv(2, **kw)]
EMPTY = {
    "no symbols": (MarketArrays((), np.array([0]), np.zeros(0, np.int64), np.zeros((0, 5))), "no symbols"),
    "no bars": (MarketArrays(("A", "B"), np.array([0, 0, 0]), np.zeros(0, np.int64), np.zeros((0, 5))),
                r"0 bars in each of its 2 symbols \['A', 'B'\]"),
}


@pytest.mark.parametrize("make", FACES)
@pytest.mark.parametrize("case", EMPTY)
def test_empty_markets_are_named(make, case):
    market, message = EMPTY[case]
    with pytest.raises(ValueError, match=f"market: empty market \\({message}"):
        make(market=market, window_bars=5, episode_bars=5)


def test_an_empty_index_is_named():
    g = synthetic.generate("gbm", seed=0, n_symbols=1, n_bars=100)
    empty = MarketArrays(("IDX",), np.array([0, 0]), np.zeros(0, np.int64), np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"index: empty market"):
        StockSwingEnv(g.market, empty, window_bars=5, episode_bars=5)


def _perpetuals(swap_row: int | None = None, bad_close_row: int | None = None) -> MarketArrays:
    m = synthetic.generate_perpetual(seed=0, n_symbols=2, n_bars=200)
    ts, ohlcv = m.ts_ns.copy(), m.ohlcv.copy()
    if swap_row is not None:
        ts[swap_row], ts[swap_row + 1] = ts[swap_row + 1], ts[swap_row]
    if bad_close_row is not None:
        ohlcv[bad_close_row, CLOSE] = -1.0
    return MarketArrays(m.symbols, m.offsets, ts, ohlcv, m.funding_rate, m.mark_ohlc)


@pytest.mark.parametrize("make", [CryptoFuturesEnv, StockSwingEnv, PortfolioEnv])
def test_unsorted_timestamps_name_the_market_symbol_and_bar(make):
    m = _perpetuals(swap_row=205)  # the second symbol's bar 5
    with pytest.raises(ValueError) as err:
        make(market=m, window_bars=5, episode_bars=5)
    message = str(err.value)
    assert message.startswith("market: ts_ns must strictly increase")
    assert "mark_ohlc" not in message and "symbol 'BTC1/USDT:USDT' bar 6" in message


def test_bad_prices_name_the_symbol():
    message = r"market: prices must be > 0, row 250 .*symbol 'BTC1/USDT:USDT' bar 50"
    with pytest.raises(ValueError, match=message):
        CryptoFuturesEnv(_perpetuals(bad_close_row=250), window_bars=5, episode_bars=5)

"""Trading metrics against a hand-computed scenario table and an independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.evaluation import metrics as m

# equity path: +10 %, -20 %, +25 %, 0 %  ->  100, 110, 88, 110, 110
EQUITY = np.array([100.0, 110.0, 88.0, 110.0, 110.0])
RETURNS = np.array([0.10, -0.20, 0.25, 0.0])


def test_hand_computed_scenario():
    np.testing.assert_allclose(m.simple_returns(EQUITY), RETURNS)
    assert m.total_return(EQUITY) == pytest.approx(0.10)
    assert m.max_drawdown(EQUITY) == pytest.approx(0.20)  # 110 -> 88
    assert m.max_drawdown_duration_bars(EQUITY) == 1
    mean, sd = RETURNS.mean(), RETURNS.std(ddof=1)  # 0.0375, 0.1865...
    assert m.sharpe(RETURNS, 252) == pytest.approx(mean / sd * math.sqrt(252))
    downside = math.sqrt((0.2**2) / 4)
    assert m.sortino(RETURNS, 252) == pytest.approx(mean / downside * math.sqrt(252))
    assert m.annualized_return(EQUITY, 4) == pytest.approx(0.10)  # 4 bars = 1 year


def test_positions_exposure_turnover_and_holdings():
    position = np.array([0, 1, 1, 0, -1, -1, -1, 0])
    longs, shorts = m.holding_lengths(position)
    assert list(longs) == [2] and list(shorts) == [3]
    assert m.turnover(position) == pytest.approx((1 + 1 + 1 + 1) / 8)
    out = m.episode_metrics(np.linspace(100, 108, 9), position, 252)
    assert out["exposure"] == pytest.approx(5 / 8)
    assert (out["pct_long"], out["pct_short"], out["pct_flat"]) == pytest.approx((2 / 8, 3 / 8, 3 / 8))
    assert out["mean_holding_bars"] == pytest.approx(2.5)


def test_flat_series_has_zero_sharpe_and_drawdown():
    flat = np.full(10, 100.0)
    assert m.sharpe(m.simple_returns(flat), 252) == 0.0 and m.max_drawdown(flat) == 0.0


@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=3, max_size=60))
def test_drawdown_matches_a_naive_implementation(rets):
    equity = 100 * np.cumprod(np.r_[1.0, 1 + np.array(rets)])
    naive = max(0.0, max(1 - equity[j] / equity[: j + 1].max() for j in range(len(equity))))
    assert m.max_drawdown(equity) == pytest.approx(naive, abs=1e-12)

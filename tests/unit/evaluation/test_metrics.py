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


def test_hand_computed_scenario(monkeypatch):
    monkeypatch.setattr(m, "MIN_BARS", 1)  # the formulas on 4 bars; the minimums are tested below
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
    flat = np.full(30, 100.0)
    assert m.sharpe(m.simple_returns(flat), 252) == 0.0 and m.max_drawdown(flat) == 0.0
    assert m.sortino(m.simple_returns(flat), 252) == 0.0


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4, 1e9])
def test_zero_variance_sharpe_does_not_depend_on_the_equitys_scale(scale):
    # a flat account whose equity carries float noise (as cash + 0 * price re-marked does): the
    # noise is ~1e-16 of the equity, so its "Sharpe" used to be a large, scale-dependent number
    noise = 1 + np.random.default_rng(0).integers(-2, 3, 60) * np.finfo(float).eps
    rets = m.simple_returns(scale * noise)
    assert np.std(rets) > 0
    assert m.sharpe(rets, 252) == 0.0 and m.sortino(rets, 252) == 0.0
    riskless = np.full(40, 0.001)  # constant positive drift: infinite Sharpe, not 0
    assert m.sharpe(riskless, 252) == math.inf and m.sortino(riskless, 252) == math.inf


def test_sortino_with_no_losing_bar_is_infinite_as_empyrical_gives():
    rets = np.abs(np.random.default_rng(1).normal(0.001, 0.01, 60))
    assert m.sortino(rets, 252) == math.inf
    assert math.isfinite(m.sharpe(rets, 252))


@pytest.mark.parametrize("n_bars", [1, 5, 19])
def test_short_series_are_not_annualized(n_bars):
    equity = 100 * np.cumprod(np.r_[1.0, np.full(n_bars, 1.01)])
    rets = m.simple_returns(equity)
    assert math.isnan(m.annualized_return(equity, 252))  # one bar of +1 % used to give +1127 %
    assert math.isnan(m.calmar(equity, 252))
    assert all(math.isnan(f(rets, 252)) for f in (m.sharpe, m.sortino, m.volatility))


def test_annualizing_needs_a_month_of_bars():
    assert m.min_bars_to_annualize(252) == 21 and m.MIN_BARS == 20  # ceil(252 / 12)
    assert m.min_bars_to_annualize(8760) == 730  # hourly bars: a month, not 20 hours
    month = np.cumprod(np.r_[1.0, np.full(21, 1.001)])
    assert m.annualized_return(month, 252) == pytest.approx(1.001**252 - 1)
    assert math.isnan(m.annualized_return(month, 8760))


@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=3, max_size=60))
def test_drawdown_matches_a_naive_implementation(rets):
    equity = 100 * np.cumprod(np.r_[1.0, 1 + np.array(rets)])
    naive = max(0.0, max(1 - equity[j] / equity[: j + 1].max() for j in range(len(equity))))
    assert m.max_drawdown(equity) == pytest.approx(naive, abs=1e-12)

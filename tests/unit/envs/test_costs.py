"""The one cost model: fills, fees, slippage, margin, liquidation, funding (floats and arrays)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core import costs

prices = st.floats(0.01, 1e5)
bps = st.floats(0.0, 200.0)


def test_cost_model_rates_and_validation():
    model = costs.CostModel(fee_bps=10, slippage_bps=5, maintenance_margin_bps=50)
    assert (model.fee_rate, model.slippage_rate, model.maintenance_margin_rate) == pytest.approx((1e-3, 5e-4, 5e-3))
    for name, bad in [("fee_bps", -1.0), ("slippage_bps", float("nan")), ("maintenance_margin_bps", 10_000)]:
        with pytest.raises(ValueError, match=name):
            costs.CostModel(**{name: bad})


@pytest.mark.parametrize(
    ("qty_delta", "ref", "fee_bps", "slip_bps", "price", "notional", "fee"),
    [
        (10.0, 100.0, 10, 0, 100.0, 1000.0, 1.0),          # buy, fee only
        (10.0, 100.0, 0, 10, 100.1, 1001.0, 0.0),          # buy pays slippage up
        (-10.0, 100.0, 10, 10, 99.9, -999.0, 0.999),       # sell: slippage down, fee on |notional|
        (0.0, 100.0, 10, 10, 100.0, 0.0, 0.0),             # nothing trades, nothing paid
    ],
)
def test_fill_table(qty_delta, ref, fee_bps, slip_bps, price, notional, fee):
    got = costs.fill(qty_delta, ref, fee_bps * costs.BPS, slip_bps * costs.BPS)
    assert got == pytest.approx((price, notional, fee), rel=1e-12)


@given(weight=st.floats(-3, 3), equity=st.floats(1.0, 1e7), qty=st.floats(-1e4, 1e4), ref=prices,
       fee=bps, slip=bps, trade=st.booleans())
@settings(max_examples=60, deadline=None)
def test_rebalance_is_target_qty_then_fill_bit_for_bit(weight, equity, qty, ref, fee, slip, trade):
    f, s = fee * costs.BPS, slip * costs.BPS
    target = costs.target_qty(weight, equity, ref, qty, f, s)
    dq = trade * (target - qty)
    expected = (dq, *costs.fill(dq, ref, f, s))
    assert costs.rebalance(trade, weight, equity, qty, ref, f, s) == expected
    for sign in (None, np.sign):  # same maths on arrays, with or without np.sign
        arrays = costs.rebalance(np.array([trade]), np.array([weight]), np.array([equity]), np.array([qty]),
                                 np.array([ref]), f, s, sign)
        assert [a[0] for a in arrays] == list(expected)


@given(equity=st.floats(1.0, 1e7), ref=prices, fee=bps, slip=bps)
@settings(max_examples=40, deadline=None)
def test_all_in_buy_spends_exactly_the_equity(equity, ref, fee, slip):
    f, s = fee * costs.BPS, slip * costs.BPS
    dq, price, notional, fee_usd = costs.rebalance(True, 1.0, equity, 0.0, ref, f, s)
    cash, qty = costs.settle_fill(equity, 0.0, dq, notional, fee_usd)
    assert qty > 0 and price == pytest.approx(ref * (1 + s))
    assert abs(cash) <= 1e-9 * equity


def test_liquidation_price_puts_equity_at_maintenance_margin():
    mmr, entry, margin = 0.005, 100.0, 1_000.0
    for qty in (50.0, -50.0):  # 5x long and 5x short
        liq = costs.liquidation_price(entry, qty, margin, mmr)
        equity_at_liq = margin + qty * (liq - entry)
        assert equity_at_liq == pytest.approx(costs.maintenance_margin_usd(qty * liq, mmr))
        assert (liq < entry) if qty > 0 else (liq > entry)
        assert costs.liquidated(qty, liq, mark_low=liq - 1e-9, mark_high=liq + 1e-9)
        inside = costs.liquidated(qty, liq, mark_low=liq + 1, mark_high=liq + 1) if qty > 0 else \
            costs.liquidated(qty, liq, mark_low=liq - 1, mark_high=liq - 1)
        assert not inside
    assert costs.liquidation_price(entry, 0.0, margin, mmr) == 0.0
    arr = costs.liquidation_price(np.array([entry, entry]), np.array([0.0, 50.0]), margin, mmr)
    assert arr[0] == 0.0 and arr[1] == pytest.approx(costs.liquidation_price(entry, 50.0, margin, mmr))


def test_margin_and_funding_signs():
    assert costs.initial_margin_usd(-10_000.0, 5) == 2_000.0
    assert costs.funding_usd(2.0, 100.0, 1e-4) == pytest.approx(0.02)     # long pays positive rate
    assert costs.funding_usd(-2.0, 100.0, 1e-4) == pytest.approx(-0.02)   # short receives
    assert costs.equity_usd(-9_000.0, 100.0, 95.0) == 500.0

"""CcxtBroker against a fake Binance USDⓈ-M account behind ccxt's real binanceusdm class
(markets parsed by ccxt from the recorded exchangeInfo; ccxt's own exception classes)."""

from __future__ import annotations

import ccxt
import pytest

from app.data.sources.base import RetryPolicy
from app.trading.broker import OrderRequest, OrderState
from app.trading.ccxt_broker import CcxtBroker
from app.trading.errors import (
    ExchangeSetupError,
    InsufficientMarginError,
    OrderRejectedError,
    RetryableError,
    TradingError,
)
from app.trading.orders import place, resolve
from app.trading.store import StateStore
from tests.unit.trading.fake_exchange import FakeBinanceUsdm

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def ex() -> FakeBinanceUsdm:
    return FakeBinanceUsdm()


def broker(ex, leverage: float = 3.0, attempts: int = 3) -> CcxtBroker:
    return CcxtBroker(ex, leverage=leverage, retry=RetryPolicy.no_wait(attempts))


def test_setup_sets_and_reads_back(ex):
    b = broker(ex)
    b.setup([BTC, ETH])
    assert ex.leverage_set == {BTC: 3, ETH: 3} and ex.margin_mode_set == {BTC: "isolated", ETH: "isolated"}
    b.setup([BTC])  # again: "margin mode already set" is not an error


@pytest.mark.parametrize(("change", "message"), [
    ({"hedged": True}, "hedge"),
    ({"leverage_override": 5}, "leverage is [5]"),
    ({"margin_override": "cross"}, "margin mode is 'cross'"),
])
def test_setup_refuses_what_it_cannot_trade(ex, change, message):
    for k, v in change.items():
        setattr(ex, k, v)
    with pytest.raises(ExchangeSetupError, match=message.replace("[", r"\[").replace("]", r"\]")):
        broker(ex).setup([BTC])


def test_setup_refuses_unknown_and_spot_symbols(ex):
    with pytest.raises(ExchangeSetupError, match="not a market"):
        broker(ex).setup(["DOGE/USDT:USDT"])


def test_precision_and_minimums(ex):
    b = broker(ex)
    o = b.normalize(OrderRequest("c", BTC, -0.0123456, -1.0), 30_000.0)
    assert o is not None and o.qty == -0.012  # truncated to the 0.001 step, sign kept
    assert b.normalize(OrderRequest("c", BTC, 0.003, 1.0), 30_000.0) is None  # 90 USD < 100 minimum notional
    assert b.normalize(OrderRequest("c", BTC, 0.0004, 1.0), 30_000.0) is None  # below the minimum amount
    closing = b.normalize(OrderRequest("c", BTC, -0.003, 0.0, reduce_only=True), 30_000.0)
    assert closing is not None and closing.qty == -0.003  # a reduce-only close is exempt from the notional minimum


@pytest.mark.parametrize(("fault", "after_send", "after_resolve", "placed"), [
    (None, OrderState.FILLED, OrderState.FILLED, True),
    ("timeout_placed", OrderState.UNKNOWN, OrderState.FILLED, True),
    ("timeout_not_placed", OrderState.UNKNOWN, OrderState.NOT_FOUND, False),
    ("5xx_placed", OrderState.UNKNOWN, OrderState.FILLED, True),
    ("429", OrderState.REJECTED, OrderState.REJECTED, False),
    ("reject", OrderState.REJECTED, OrderState.REJECTED, False),
    ("insufficient_margin", OrderState.REJECTED, OrderState.REJECTED, False),
    ("partial", OrderState.OPEN, OrderState.OPEN, True),
])
def test_order_faults(tmp_path, ex, fault, after_send, after_resolve, placed):
    b = broker(ex)
    b.setup([BTC])
    ex.faults["create_order"] = [fault]
    o = OrderRequest("rt-t-1-0", BTC, 0.01, 1.0)
    with StateStore(tmp_path / "s.sqlite", durable=False) as store:
        place(store, b, o, None)
        assert store.order(o.client_id).state is after_send
        resolve(store, b)
        row = store.order(o.client_id)
        assert row.state is after_resolve
        assert ex.calls["create_order"] == 1  # never retried
        assert (o.client_id in ex.orders) is placed
        if fault == "partial":
            assert row.filled_qty == pytest.approx(0.005)


def test_submit_errors_are_translated(ex):
    b = broker(ex)
    ex.faults["create_order"] = ["insufficient_margin"]
    with pytest.raises(InsufficientMarginError) as err:
        b.submit(OrderRequest("x", BTC, 0.01, 1.0))
    assert isinstance(err.value.__cause__, ccxt.InsufficientFunds)
    with pytest.raises(OrderRejectedError, match="ReduceOnly"):
        b.submit(OrderRequest("y", BTC, -0.01, 0.0, reduce_only=True))  # nothing to reduce


@pytest.mark.parametrize("exc", [ccxt.RequestTimeout("t"), ccxt.ExchangeNotAvailable("503"),
                                 ccxt.RateLimitExceeded("429"), ccxt.NetworkError("reset")])
def test_reads_retry_retryable_errors(ex, exc):
    b = broker(ex, attempts=3)
    ex.faults["fetch_positions"] = [exc, exc]
    assert b.positions([BTC]) == {}
    assert ex.calls["fetch_positions"] == 3
    ex.faults["fetch_positions"] = [exc, exc, exc]
    with pytest.raises(RetryableError):
        b.positions([BTC])


def test_reads_do_not_retry_other_errors(ex):
    b = broker(ex, attempts=5)
    ex.faults["fetch_positions"] = [ccxt.AuthenticationError("bad key")]
    with pytest.raises(TradingError) as err:
        b.positions([BTC])
    assert not isinstance(err.value, RetryableError) and ex.calls["fetch_positions"] == 1


def test_positions_are_signed(ex):
    b = broker(ex)
    b.setup([BTC, ETH])
    b.submit(OrderRequest("a", BTC, 0.01, 1.0))
    b.submit(OrderRequest("b", ETH, -0.5, -1.0))
    pos = b.positions([BTC, ETH])
    assert pos[BTC].qty == pytest.approx(0.01) and pos[ETH].qty == pytest.approx(-0.5)
    assert pos[ETH].entry_price == 2_000.0 and pos[BTC].margin_mode == "isolated"

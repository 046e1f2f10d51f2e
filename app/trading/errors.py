"""Trading errors: what the brokers and the runner raise (vendor errors are translated into
these at the adapter, with the vendor's exception kept as ``__cause__``)."""

from __future__ import annotations

from app.errors import RaytradeError


class TradingError(RaytradeError):
    """Base class of the trading errors."""


class RetryableError(TradingError):
    """Network, timeout, rate limit, exchange unavailable: a read may be retried."""


class AmbiguousOrderError(TradingError):
    """An order was sent and no answer came back: it may or may not exist on the exchange.

    Never resend: the order stays UNKNOWN until it is fetched by its client order id."""


class OrderRejectedError(TradingError):
    """The exchange answered and refused the order (a definite outcome: nothing was placed)."""


class InsufficientMarginError(OrderRejectedError):
    """The exchange refused the order for lack of margin."""


class OrderNotFoundError(TradingError):
    """The exchange does not know this order (by exchange id or client order id)."""


class ExchangeSetupError(TradingError):
    """The account is not set up as the runner needs (hedge mode, margin mode or leverage not as
    configured after setting them): the runner refuses to trade."""


class RunnerLockedError(TradingError):
    """Another runner holds the lock of this account's state database."""


class KillSwitchError(TradingError):
    """A risk limit tripped: the runner flattens and stops."""

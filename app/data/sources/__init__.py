"""Data sources behind one interface: Yahoo (yfinance), any ccxt exchange, and files.

The vendor libraries are imported only when their source is first used (``yfinance`` and
``ccxt`` take a while to import), so ``import app.data.sources`` stays cheap::

    from app.data.sources import make_source
    bars = make_source("ccxt:binanceusdm").fetch_bars("BTC/USDT:USDT", "1h", start, end)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from app.data.sources.base import (
    BarSource,
    FundingSource,
    RetryPolicy,
    call_with_retry,
    to_utc,
    utc_range,
)

if TYPE_CHECKING:
    from app.data.sources.ccxt_source import CcxtSource
    from app.data.sources.file_source import FileSource
    from app.data.sources.yfinance_source import YFinanceSource

__all__ = ["BarSource", "CcxtSource", "FileSource", "FundingSource", "RetryPolicy",
           "YFinanceSource", "call_with_retry", "make_source", "to_utc", "utc_range"]

_LAZY = {"YFinanceSource": "app.data.sources.yfinance_source",
         "CcxtSource": "app.data.sources.ccxt_source",
         "FileSource": "app.data.sources.file_source"}


def __getattr__(name: str) -> Any:  # PEP 562: import a vendor adapter on first use
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def make_source(name: str, **kwargs: Any) -> BarSource:
    """Build a source by name: ``"yfinance"``, ``"ccxt:<exchange_id>"`` (``"ccxt"`` alone means
    ``binanceusdm``) or ``"file"``; ``kwargs`` go to the source's constructor."""
    kind, _, arg = name.strip().partition(":")
    kind = kind.lower()
    if kind == "yfinance" and not arg:
        from app.data.sources.yfinance_source import YFinanceSource
        return YFinanceSource(**kwargs)
    if kind == "ccxt":
        from app.data.sources.ccxt_source import CcxtSource
        if arg:
            kwargs["exchange_id"] = arg
        return CcxtSource(**kwargs)
    if kind == "file" and not arg:
        from app.data.sources.file_source import FileSource
        return FileSource(**kwargs)
    raise ValueError(f"unknown data source {name!r}; use 'yfinance', 'ccxt:<exchange_id>' or 'file'")

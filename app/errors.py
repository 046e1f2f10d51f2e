"""The project's own error classes.

Adapters (yfinance, ccxt, Parquet, MLflow, SMTP) translate vendor errors into these, keeping
the original as ``__cause__`` (``raise X(...) from exc``), so callers handle one family.
"""

from __future__ import annotations


class RaytradeError(Exception):
    """Base class of every error raised on purpose by raytrade."""


class ConfigError(RaytradeError):
    """A configuration file or value is invalid; the message names the file and the key."""


class DataError(RaytradeError):
    """Market data is missing, malformed or inconsistent."""


class DataValidationError(DataError):
    """Validation found faults; ``faults`` holds every one of them, not just the first."""

    def __init__(self, message: str, faults: list | None = None) -> None:
        super().__init__(message)
        self.faults = list(faults or [])


class StoreError(DataError):
    """The Parquet store cannot read or write a dataset."""


class CorruptFileError(StoreError):
    """A stored or imported file cannot be parsed; the message names the file."""


class SourceError(DataError):
    """A data source (yfinance, ccxt, file) failed."""


class NetworkError(SourceError):
    """A transient network failure; retried with backoff before it surfaces."""


class RateLimitError(NetworkError):
    """The vendor asked us to slow down; retried with backoff before it surfaces."""


class VendorError(SourceError):
    """The vendor answered with an error that retrying will not fix."""


class SymbolNotFoundError(VendorError):
    """The vendor does not know the symbol (delisted, misspelled, wrong market)."""


class ModelLoadError(RaytradeError):
    """A checkpoint, its run directory or its registered model cannot be loaded or understood.

    Serve answers it as HTTP 500 (see :mod:`serve.errors`); the CLI prints it on one line.
    """

    status_code = 500

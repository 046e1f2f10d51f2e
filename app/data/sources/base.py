"""What every data source promises, and the helpers they share.

Time conventions, for every source:

* ``start`` and ``end`` are **UTC** instants, given as anything :class:`pandas.Timestamp` accepts
  (``pd.Timestamp``, ``datetime``, ISO string). A naive value is read as UTC; an aware one is
  converted to UTC. ``start`` is inclusive, ``end`` is exclusive: a bar belongs to the range when
  its (open) timestamp ``t`` satisfies ``start <= t < end``.
* Vendor epochs are converted with explicit units (``*_ms`` names are milliseconds since the epoch).

Every fetch returns a frame in the canonical schema of :mod:`app.data.schema` (via
:func:`~app.data.schema.canonicalize`), sorted by symbol and timestamp, or an empty canonical
frame when there is no data in the range. Vendor sources also drop duplicate timestamps (pages
overlap); :class:`~app.data.sources.file_source.FileSource` keeps a file's duplicates, because
there they are faults for validation to report.

Errors: vendor exceptions are translated into :mod:`app.errors` classes with the original kept as
``__cause__``. Only :class:`~app.errors.NetworkError` (which includes
:class:`~app.errors.RateLimitError`) is retried, with exponential backoff and jitter
(:class:`RetryPolicy`); everything else surfaces at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable

import pandas as pd
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.data.schema import Kind, canonicalize, empty
from app.errors import NetworkError

logger = logging.getLogger(__name__)

T = TypeVar("T")

TimeLike = pd.Timestamp | datetime | str
"""A UTC instant as :class:`pandas.Timestamp` accepts it; see the module docstring for the rules."""


@runtime_checkable
class BarSource(Protocol):
    """A source of OHLCV bars (stocks from Yahoo, crypto from an exchange, files)."""

    @property
    def name(self) -> str:
        """Short, path-safe name of the source, used as the store's ``source`` key."""
        ...

    def fetch_bars(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Canonical :attr:`~app.data.schema.Kind.BARS` frame of ``symbol`` for ``[start, end)``."""
        ...


@runtime_checkable
class FundingSource(Protocol):
    """A derivatives venue: funding-rate history and mark-price bars of perpetual swaps."""

    @property
    def name(self) -> str:
        ...

    def fetch_funding_rates(self, symbol: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Canonical :attr:`~app.data.schema.Kind.FUNDING` frame for ``[start, end)``."""
        ...

    def fetch_mark_prices(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Canonical :attr:`~app.data.schema.Kind.MARK` frame (mark-price OHLC) for ``[start, end)``."""
        ...


# --------------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------------

def to_utc(value: TimeLike, *, what: str = "timestamp") -> pd.Timestamp:
    """``value`` as a tz-aware UTC :class:`pandas.Timestamp` (naive input is taken as UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} {value!r} is not a timestamp") from exc
    if ts is pd.NaT:
        raise ValueError(f"{what} must not be NaT")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_range(start: TimeLike, end: TimeLike) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Validated ``(start, end)`` in UTC; raises ``ValueError`` unless ``start < end``."""
    start_utc, end_utc = to_utc(start, what="start"), to_utc(end, what="end")
    if not start_utc < end_utc:
        raise ValueError(f"empty range: start {start_utc} must be before end {end_utc}")
    return start_utc, end_utc


def to_epoch_ms(ts: pd.Timestamp) -> int:
    """Milliseconds since the epoch of a tz-aware timestamp (exact for whole milliseconds)."""
    return int(ts.value // 1_000_000)


def finish_frame(df: pd.DataFrame, kind: Kind, start: pd.Timestamp | None,
                 end: pd.Timestamp | None, *, where: str, dedupe: bool = True,
                 sort: bool = True) -> pd.DataFrame:
    """Canonicalize, keep ``start <= timestamp < end`` (``None``: unbounded), dedupe and sort.

    With ``dedupe``, duplicates are resolved per ``(symbol, timestamp)`` keeping the *last* row,
    because when vendor pages overlap the later page is the more recent answer. Imported files
    keep their duplicates and their row order (``dedupe=False, sort=False``) so validation can
    report those faults with the file's row numbers.
    """
    if df.empty:
        return empty(kind)
    out = canonicalize(df, kind, where=where)
    if start is not None:
        out = out[out["timestamp"] >= start]
    if end is not None:
        out = out[out["timestamp"] < end]
    if dedupe:
        out = out.drop_duplicates(subset=["symbol", "timestamp"], keep="last")
    if sort:
        out = out.sort_values(["symbol", "timestamp"], kind="stable")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Retry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures (:class:`~app.errors.NetworkError`) are retried.

    The wait before retry ``n`` (1-based) is ``min(initial_wait_s * 2**(n-1) + U(0, jitter_s),
    max_wait_s)`` seconds. ``attempts`` counts every call, the first included.
    """

    attempts: int = 5
    initial_wait_s: float = 1.0
    max_wait_s: float = 60.0
    jitter_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if min(self.initial_wait_s, self.max_wait_s, self.jitter_s) < 0:
            raise ValueError("waits must be >= 0 seconds")

    @classmethod
    def no_wait(cls, attempts: int = 3) -> RetryPolicy:
        """Retries without sleeping: for tests and for callers that pace themselves."""
        return cls(attempts=attempts, initial_wait_s=0.0, max_wait_s=0.0, jitter_s=0.0)


def _log_before_sleep(what: str) -> Callable[[RetryCallState], None]:
    def log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("%s failed (attempt %d): %s; retrying in %.2f s",
                       what, state.attempt_number, exc, wait_s)
    return log


def _sleep(seconds: float) -> None:
    if seconds > 0:  # a zero-wait policy never touches the clock
        time.sleep(seconds)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, *, what: str,
                    sleep: Callable[[float], None] | None = None) -> T:
    """Call ``fn()``; retry it on :class:`~app.errors.NetworkError` as ``policy`` says.

    ``fn`` must already translate vendor errors into :mod:`app.errors`. After the last attempt the
    last error is re-raised unchanged (with its vendor cause). ``sleep`` replaces ``time.sleep``
    (tests record the waits instead of sleeping).
    """
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential_jitter(initial=policy.initial_wait_s, max=policy.max_wait_s,
                                     exp_base=2, jitter=policy.jitter_s),
        retry=retry_if_exception_type(NetworkError),
        before_sleep=_log_before_sleep(what),
        sleep=sleep or _sleep,
        reraise=True,
    )
    return retrying(fn)

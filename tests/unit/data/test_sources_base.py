"""The shared parts of the data sources: retry policy, UTC ranges, protocols, factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from app.data.sources import (
    BarSource,
    FundingSource,
    RetryPolicy,
    call_with_retry,
    make_source,
    to_utc,
    utc_range,
)
from app.errors import NetworkError, RateLimitError, SymbolNotFoundError, VendorError


def failing(errors: list[Exception], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_retries_network_errors_with_exponential_backoff() -> None:
    waits: list[float] = []
    fn, calls = failing([NetworkError("a"), RateLimitError("b"), NetworkError("c")])
    policy = RetryPolicy(attempts=5, initial_wait_s=1.0, max_wait_s=3.0, jitter_s=0.0)
    assert call_with_retry(fn, policy, what="test", sleep=waits.append) == "ok"
    assert len(calls) == 4 and waits == [1.0, 2.0, 3.0]  # capped at max_wait_s


def test_jitter_stays_within_its_bound() -> None:
    waits: list[float] = []
    fn, _ = failing([NetworkError("x")] * 3)
    call_with_retry(fn, RetryPolicy(attempts=4, initial_wait_s=0.5, max_wait_s=60, jitter_s=0.25),
                    what="test", sleep=waits.append)
    for wait, base in zip(waits, (0.5, 1.0, 2.0), strict=True):
        assert base <= wait <= base + 0.25


def test_gives_up_after_the_last_attempt_with_the_last_error() -> None:
    fn, calls = failing([NetworkError(str(i)) for i in range(10)])
    with pytest.raises(NetworkError, match="^2$"):
        call_with_retry(fn, RetryPolicy.no_wait(3), what="test")
    assert len(calls) == 3


@pytest.mark.parametrize("error", [VendorError("no"), SymbolNotFoundError("gone"), ValueError("bug")])
def test_does_not_retry_other_errors(error: Exception) -> None:
    fn, calls = failing([error])
    with pytest.raises(type(error)):
        call_with_retry(fn, RetryPolicy.no_wait(5), what="test")
    assert len(calls) == 1


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_wait_s=-1)


def test_times_are_utc() -> None:
    assert to_utc("2021-05-18") == pd.Timestamp("2021-05-18", tz="UTC")
    assert to_utc(pd.Timestamp("2021-05-18 02:00", tz="Europe/Berlin")) == pd.Timestamp(
        "2021-05-18 00:00", tz="UTC")
    with pytest.raises(ValueError, match="empty range"):
        utc_range("2021-05-18", "2021-05-18")
    with pytest.raises(ValueError, match="not a timestamp"):
        to_utc("yesterday-ish")


def test_factory_builds_sources_that_follow_the_protocols(tmp_path: Path) -> None:
    ccxt_source = make_source("ccxt:binanceusdm")
    assert isinstance(ccxt_source, BarSource) and isinstance(ccxt_source, FundingSource)
    assert make_source("ccxt").name == "binanceusdm"
    yahoo = make_source("yfinance", retry=RetryPolicy.no_wait())
    assert isinstance(yahoo, BarSource) and not isinstance(yahoo, FundingSource)
    assert isinstance(make_source("file", paths=tmp_path / "x.csv"), BarSource)
    with pytest.raises(ValueError, match="unknown data source"):
        make_source("bloomberg")

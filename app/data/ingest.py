"""Getting data into the store: validate -> repair (explicit, logged) -> validate -> write.

``ingest_frame`` is the one path every import takes (files, the embedded sample, vendor pulls).
``pull`` fetches many symbols concurrently as Ray tasks and writes them from the driver as they
arrive (one writer, so no two processes ever write the same file), with a progress bar and a
per-symbol report: one bad symbol never aborts the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from app.data.repair import RepairLog, RepairPolicy, repair
from app.data.schema import DatasetKey, Kind, canonicalize
from app.data.store import ParquetStore
from app.data.validate import ValidationReport, validate
from app.errors import DataValidationError, RaytradeError

log = logging.getLogger("raytrade.data")

#: Builds a source inside a worker; must be picklable (a class, or a function of module scope).
SourceFactory = Callable[[], object]


@dataclass
class IngestResult:
    """What happened to one input: faults found, repairs made, rows stored."""

    name: str
    key: DatasetKey
    found: ValidationReport
    repairs: RepairLog
    remaining: ValidationReport
    written: dict[str, int] = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        return sum(self.written.values())


def ingest_frame(store: ParquetStore, key: DatasetKey, frame: pd.DataFrame, *, name: str,
                 policy: RepairPolicy | None = None, calendar_ts_ns: np.ndarray | None = None,
                 mode: str = "append") -> IngestResult:
    """Validate, repair and store ``frame``; raises :class:`DataValidationError` (nothing
    written) when faults remain that no enabled repair fixes."""
    found = validate(frame, key.kind, file=name, timeframe=key.timeframe, calendar_ts_ns=calendar_ts_ns,
                     market=key.market_type)
    if any(f.code in ("schema", "empty") for f in found.errors):
        raise DataValidationError(found.summary(), found.errors)
    fixed, repairs = repair(canonicalize(frame, key.kind, where=name), key.kind, policy)
    remaining = validate(fixed, key.kind, file=name, timeframe=key.timeframe, calendar_ts_ns=calendar_ts_ns,
                         market=key.market_type)
    remaining.raise_for_errors()
    for fault in remaining.warnings:
        if fault.code == "probable_split":
            log.warning("%s", fault)
    written = store.write(key, fixed, mode=mode)
    log.info("%s -> %s: %d rows for %d symbols (%d repairs, %d warnings)", name, store.dataset_dir(key),
             sum(written.values()), len(written), len(repairs), len(remaining.warnings))
    return IngestResult(name, key, found, repairs, remaining, written)


@dataclass(frozen=True)
class PullRequest:
    """What to pull: ``start`` inclusive, ``end`` exclusive, both UTC."""

    key: DatasetKey
    symbols: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass
class PullOutcome:
    symbol: str
    rows: int = 0
    error: str | None = None
    result: IngestResult | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def fetch_symbol(source_factory: SourceFactory, request: PullRequest, symbol: str) -> pd.DataFrame:
    """Fetch one symbol of ``request`` from a freshly built source (runs inside a Ray task)."""
    source = source_factory()
    kind = request.key.kind
    if kind is Kind.BARS:
        return source.fetch_bars(symbol, request.key.timeframe, request.start, request.end)
    if kind is Kind.FUNDING:
        return source.fetch_funding_rates(symbol, request.start, request.end)
    return source.fetch_mark_prices(symbol, request.key.timeframe, request.start, request.end)


def pull(store: ParquetStore, source_factory: SourceFactory, request: PullRequest, *,
         policy: RepairPolicy | None = None, max_in_flight: int = 8,
         on_done: Callable[[PullOutcome], None] | None = None, use_ray: bool = True) -> list[PullOutcome]:
    """Fetch every symbol of ``request`` as Ray tasks and store each as it arrives.

    Uses the running Ray instance (``ray.init()`` is called if none is); ``use_ray=False``
    fetches in this process, one symbol after the other (small pulls, tests). Vendor and
    validation errors of a symbol are caught, reported in its outcome, and never stop the others.
    ``on_done`` is called once per symbol (the CLI advances its progress bar there).
    """
    if not use_ray:
        outcomes = []
        for symbol in request.symbols:
            fetched = _fetch_or_error(source_factory, request, symbol)
            outcomes.append(_store_result(store, request, symbol, fetched, policy))
            if on_done is not None:
                on_done(outcomes[-1])
        return outcomes
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    remote_fetch = ray.remote(num_cpus=0.5, max_retries=0)(_fetch_or_error)
    pending: dict[object, str] = {}
    queue = list(request.symbols)
    outcomes: list[PullOutcome] = []
    while queue or pending:
        while queue and len(pending) < max_in_flight:
            symbol = queue.pop(0)
            pending[remote_fetch.remote(source_factory, request, symbol)] = symbol
        ready, _ = ray.wait(list(pending), num_returns=1)
        symbol = pending.pop(ready[0])
        outcome = _store_result(store, request, symbol, ray.get(ready[0]), policy)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return sorted(outcomes, key=lambda o: request.symbols.index(o.symbol))


def _fetch_or_error(source_factory: SourceFactory, request: PullRequest, symbol: str) -> pd.DataFrame | str:
    try:
        return fetch_symbol(source_factory, request, symbol)
    except RaytradeError as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a worker must report, not die, on any vendor bug
        return f"unexpected {type(exc).__name__}: {exc}"


def _store_result(store: ParquetStore, request: PullRequest, symbol: str, fetched: pd.DataFrame | str,
                  policy: RepairPolicy | None) -> PullOutcome:
    if isinstance(fetched, str):
        return PullOutcome(symbol, error=fetched)
    if fetched.empty:
        return PullOutcome(symbol, error="no data in the requested range")
    try:
        result = ingest_frame(store, request.key, fetched, name=f"{request.key.source}:{symbol}", policy=policy)
    except RaytradeError as exc:
        return PullOutcome(symbol, error=f"{type(exc).__name__}: {exc}")
    return PullOutcome(symbol, rows=result.rows_written, result=result)


def summarize(outcomes: Sequence[PullOutcome]) -> str:
    ok = [o for o in outcomes if o.ok]
    lines = [f"{len(ok)}/{len(outcomes)} symbols stored, {sum(o.rows for o in ok):,} rows"]
    lines += [f"  FAILED {o.symbol}: {o.error}" for o in outcomes if not o.ok]
    return "\n".join(lines)

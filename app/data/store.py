"""The Parquet store: one file per (kind, source, market type, timeframe, symbol).

Layout: ``<root>/<kind>/<source>/<market_type>/<timeframe>/<symbol>.parquet`` where the symbol is
percent-encoded (``BTC/USDT:USDT`` -> ``BTC%2FUSDT%3AUSDT``) so every name maps to one file and
back. One file per symbol makes appends cheap and lets the catalog come from Parquet footers
alone (no side index that can drift from the data).

Writes are atomic (:func:`app.atomic.atomic_write`): the new file is written next to the old
one under a hidden temporary name, fsynced and moved over it, so a crash leaves either the old
file or the new one, never half of one. Every directory listing skips hidden and temporary names
(:func:`app.atomic.is_temp`), so a temp file left by a ``kill -9`` is never read as a symbol
(a symbol starting with ``.`` is stored as ``%2E...`` for the same reason). Appends merge with
what is stored, de-duplicate on timestamp (new rows win) and sort.

Reading a store whose root does not exist is an error that says so (a typo in ``--store``
must not look like an empty store); writing creates it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from app.atomic import atomic_write, is_temp
from app.data.schema import (
    COLUMNS,
    FUNDING_TIMEFRAME,
    DatasetKey,
    Kind,
    MarketType,
    canonicalize,
    empty,
)
from app.data.validate import validate
from app.errors import CorruptFileError, StoreError
from envs.core.market import MarketArrays

log = logging.getLogger("raytrade.data")

SUFFIX = ".parquet"
_ORDER_FAULTS = {"unsorted_timestamp", "duplicate_timestamp"}
_META_START, _META_END = b"raytrade.start_ns", b"raytrade.end_ns"


def symbol_to_filename(symbol: str) -> str:
    name = quote(symbol, safe="")
    if name.startswith("."):  # a hidden name would be skipped by every listing
        name = "%2E" + name[1:]
    return name + SUFFIX


def filename_to_symbol(name: str) -> str:
    return unquote(name[: -len(SUFFIX)])


@dataclass(frozen=True)
class CatalogEntry:
    key: DatasetKey
    symbol: str
    n_rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    path: Path
    size_bytes: int


class ParquetStore:
    """A directory of validated Parquet files; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------------
    def dataset_dir(self, key: DatasetKey) -> Path:
        return self.root / key.kind.value / key.source / key.market_type.value / key.timeframe

    def path_for(self, key: DatasetKey, symbol: str) -> Path:
        return self.dataset_dir(key) / symbol_to_filename(symbol)

    def require_exists(self) -> None:
        """Raise :class:`StoreError` when the store's root directory does not exist."""
        if not self.root.is_dir():
            raise StoreError(f"store {self.root} does not exist (run `raytrade data import "
                             f"data/sample --store {self.root}` or `raytrade data pull ...` first)")

    def keys(self) -> list[DatasetKey]:
        """Every dataset that holds at least one symbol file."""
        self.require_exists()
        kinds = {k.value for k in Kind}
        found = []
        for kind_dir in (d for d in _listdir(self.root) if d.is_dir() and d.name in kinds):
            for source_dir in (d for d in _listdir(kind_dir) if d.is_dir()):
                for market_dir in (d for d in _listdir(source_dir) if d.is_dir()):
                    for tf_dir in (d for d in _listdir(market_dir) if d.is_dir()):
                        if not any(_symbol_files(tf_dir)):
                            continue
                        if kind_dir.name == Kind.FUNDING.value and tf_dir.name != FUNDING_TIMEFRAME:
                            log.warning("%s: funding stored outside %r (by an older raytrade) is "
                                        "not read; move its files to %s", tf_dir, FUNDING_TIMEFRAME,
                                        tf_dir.parent / FUNDING_TIMEFRAME)
                            continue
                        found.append(DatasetKey(source_dir.name, MarketType(market_dir.name),
                                                tf_dir.name, Kind(kind_dir.name)))
        return found

    def timeframes_holding(self, kind: Kind, source: str, market_type: MarketType | str,
                           symbol: str) -> list[str]:
        """Timeframe directories of ``kind/source/market_type`` that hold a file of ``symbol``."""
        base = self.root / Kind(kind).value / source / MarketType(market_type).value
        name = symbol_to_filename(symbol)
        return sorted(d.name for d in _listdir(base) if d.is_dir() and (d / name).is_file())

    def symbols(self, key: DatasetKey) -> list[str]:
        self.require_exists()
        return sorted(filename_to_symbol(p.name) for p in _symbol_files(self.dataset_dir(key)))

    # -- writing -----------------------------------------------------------------------------
    def write(self, key: DatasetKey, frame: pd.DataFrame, *, mode: str = "append") -> dict[str, int]:
        """Store canonical rows, one file per symbol; returns rows stored per symbol.

        ``mode="append"`` merges with stored rows (new rows win on equal timestamps);
        ``"replace"`` overwrites each symbol present in ``frame``. Input order does not matter
        (rows are sorted, and the last of equal timestamps wins, by contract); rows with any
        other validation *error* are refused (repair them first with :mod:`app.data.repair`),
        and then nothing is written for any symbol.
        """
        if mode not in ("append", "replace"):
            raise ValueError(f"mode must be 'append' or 'replace', got {mode!r}")
        frame = canonicalize(frame, key.kind, where=f"write {key}")
        report = validate(frame, key.kind, file=f"write to {self.dataset_dir(key)}",
                          market=key.market_type, warnings=False)
        report.faults = [f for f in report.faults if f.code not in _ORDER_FAULTS]
        report.raise_for_errors()
        written = {}
        for symbol, part in frame.groupby("symbol", sort=True):
            if mode == "append":
                part = pd.concat([self._read_symbol_or_empty(key, str(symbol)), part], ignore_index=True)
            part = part.drop_duplicates(subset=["timestamp"], keep="last").sort_values("timestamp")
            self._write_atomic(self.path_for(key, str(symbol)), part.reset_index(drop=True), key.kind)
            written[str(symbol)] = len(part)
        return written

    def delete(self, key: DatasetKey, symbol: str) -> None:
        self.path_for(key, symbol).unlink(missing_ok=True)

    def _write_atomic(self, path: Path, frame: pd.DataFrame, kind: Kind) -> None:
        table = pa.Table.from_pandas(frame[list(COLUMNS[kind])], preserve_index=False)
        ts = table.column("timestamp")
        meta = dict(table.schema.metadata or {})
        if len(frame):
            meta[_META_START] = str(pa.compute.min(ts).cast(pa.int64()).as_py()).encode()
            meta[_META_END] = str(pa.compute.max(ts).cast(pa.int64()).as_py()).encode()
        table = table.replace_schema_metadata(meta)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    # -- reading -----------------------------------------------------------------------------
    def read(self, key: DatasetKey, symbols: Iterable[str] | None = None,
             start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Canonical rows of ``symbols`` (all stored if None) with ``start <= timestamp < end``."""
        names = self._resolve_symbols(key, symbols)
        parts = [self._read_symbol(key, s) for s in names]
        frame = pd.concat(parts, ignore_index=True) if parts else empty(key.kind)
        if start is not None:
            frame = frame[frame["timestamp"] >= _utc(start)]
        if end is not None:
            frame = frame[frame["timestamp"] < _utc(end)]
        return frame.reset_index(drop=True)

    def _resolve_symbols(self, key: DatasetKey, symbols: Iterable[str] | None) -> list[str]:
        stored = self.symbols(key)
        if symbols is None:
            return stored
        wanted = list(symbols)
        missing = sorted(set(wanted) - set(stored))
        if missing:
            raise StoreError(f"{self.dataset_dir(key)}: no data for {missing[:10]}"
                             f"{' ...' if len(missing) > 10 else ''} ({len(stored)} symbols stored)")
        return wanted

    def _read_table(self, path: Path, columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise StoreError(f"{path}: not found in the store") from exc
            raise CorruptFileError(f"{path}: cannot read Parquet file ({exc})") from exc

    def _read_symbol(self, key: DatasetKey, symbol: str) -> pd.DataFrame:
        path = self.path_for(key, symbol)
        frame = self._read_table(path).to_pandas()
        return canonicalize(frame, key.kind, where=str(path))

    def _read_symbol_or_empty(self, key: DatasetKey, symbol: str) -> pd.DataFrame:
        return self._read_symbol(key, symbol) if self.path_for(key, symbol).exists() else empty(key.kind)

    def catalog(self, keys: Iterable[DatasetKey] | None = None) -> list[CatalogEntry]:
        """What is stored, read from Parquet footers only (fast: no data pages are read)."""
        entries = []
        for key in keys if keys is not None else self.keys():
            for path in _symbol_files(self.dataset_dir(key)):
                try:
                    meta = pq.read_metadata(path)
                except (pa.ArrowInvalid, OSError) as exc:
                    raise CorruptFileError(f"{path}: cannot read Parquet footer ({exc})") from exc
                kv = meta.metadata or {}
                start = pd.Timestamp(int(kv[_META_START]), tz="UTC") if _META_START in kv else None
                end = pd.Timestamp(int(kv[_META_END]), tz="UTC") if _META_END in kv else None
                entries.append(CatalogEntry(key, filename_to_symbol(path.name), meta.num_rows,
                                            start, end, path, path.stat().st_size))
        return entries

    def catalog_frame(self) -> pd.DataFrame:
        rows = [{"kind": e.key.kind.value, "source": e.key.source, "market": e.key.market_type.value,
                 "timeframe": e.key.timeframe, "symbol": e.symbol, "rows": e.n_rows,
                 "start": e.start, "end": e.end, "bytes": e.size_bytes} for e in self.catalog()]
        return pd.DataFrame(rows, columns=["kind", "source", "market", "timeframe", "symbol",
                                           "rows", "start", "end", "bytes"])

    def load_arrays(self, key: DatasetKey, symbols: Iterable[str] | None = None) -> MarketArrays:
        """Load many symbols straight into the envs' ragged arrays (no pandas on the way).

        One multi-threaded Arrow scan over all files, then one copy per column. Row counts and
        first/last timestamps come from the footers and are checked against the scan, so a file
        read out of order or changed underneath is an error, not a silent misalignment. Bars
        only; see :mod:`app.data.market` for funding and mark prices.
        """
        if key.kind is not Kind.BARS:
            raise StoreError(f"load_arrays reads bars, not {key.kind.value}")
        names = self._resolve_symbols(key, symbols)
        by_symbol = {e.symbol: e for e in self.catalog([key])}
        entries = [by_symbol[s] for s in names]
        offsets = np.zeros(len(entries) + 1, dtype=np.int64)
        np.cumsum([e.n_rows for e in entries], out=offsets[1:])
        columns = ["timestamp", "open", "high", "low", "close", "volume"]
        try:
            table = ds.dataset([str(e.path) for e in entries], format="parquet").to_table(columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptFileError(f"{self.dataset_dir(key)}: cannot scan Parquet files ({exc})") from exc
        ts = table.column(0).cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
        ohlcv = np.empty((table.num_rows, 5), dtype=np.float64)
        for j in range(5):
            ohlcv[:, j] = table.column(j + 1).to_numpy()
        self._check_scan(entries, offsets, ts)
        return MarketArrays(tuple(names), offsets, ts, ohlcv)

    @staticmethod
    def _check_scan(entries: list[CatalogEntry], offsets: np.ndarray, ts: np.ndarray) -> None:
        if len(ts) != offsets[-1]:
            raise StoreError(f"scan returned {len(ts)} rows, footers say {offsets[-1]}")
        nonempty = [i for i, e in enumerate(entries) if e.n_rows and e.start is not None]
        starts = np.array([entries[i].start.value for i in nonempty], dtype=np.int64)
        ends = np.array([entries[i].end.value for i in nonempty], dtype=np.int64)
        idx = np.array(nonempty, dtype=np.int64)
        if len(idx) and (np.any(ts[offsets[idx]] != starts) or np.any(ts[offsets[idx + 1] - 1] != ends)):
            raise StoreError("scan rows do not line up with the files' footers (changed during read?)")


def _listdir(directory: Path) -> list[Path]:
    """Entries of ``directory`` in name order, without hidden or temporary names; [] if absent."""
    try:
        return sorted(p for p in directory.iterdir() if not is_temp(p))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _symbol_files(directory: Path) -> Iterator[Path]:
    return (p for p in _listdir(directory) if p.name.endswith(SUFFIX) and p.is_file())


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

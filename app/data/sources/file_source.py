"""Market data imported from Parquet or CSV files.

A file holds one kind of data (bars, mark prices or funding) for one or many symbols. Where the
symbol of a row comes from, in order: the file's ``symbol`` column; the ``symbol`` given to
:class:`FileSource`; the file name (``AAPL.csv`` -> ``AAPL``) when ``symbol_from_stem``; and, for
a source of a single file, the symbol asked for in the fetch.

Columns are matched case-insensitively; ``date``/``datetime``/``time`` stand for ``timestamp``
and ``ticker`` for ``symbol`` (``column_map`` renames anything else). Timestamps must be
unambiguous: ISO strings with an offset (as written by pandas for UTC data), naive values with
``naive_tz`` to localize them (then converted to UTC; the CLI's ``--tz``), or epoch numbers with
``timestamp_unit``. Naive values without ``naive_tz`` are refused with an error naming ``--tz``.

Corporate-action columns of bar files (``adj_close``, ``split_coefficient``, ``dividend``) are
applied by :func:`app.data.adjust.apply_corporate_actions` (``adjust=True``, the default) or
dropped with a warning; never ignored silently.

A file that cannot be parsed raises :class:`~app.errors.CorruptFileError`; missing columns or
values that cannot be cast raise :class:`~app.errors.DataValidationError`; both name the file.

:meth:`FileSource.read` returns the rows exactly as the files hold them (file order, duplicates
kept; files in path order), so validation sees every fault and reports the file's row numbers.
The ``fetch_*`` methods answer a range query: sorted by symbol and timestamp, duplicates kept.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.data.adjust import apply_corporate_actions
from app.data.schema import COLUMNS, Kind, empty
from app.data.sources.base import TimeLike, finish_frame, utc_range
from app.errors import CorruptFileError, DataValidationError, SourceError

logger = logging.getLogger(__name__)

FileFormat = Literal["auto", "parquet", "csv"]
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zst", ".csv.bz2")
_OFFSET_RE = r"(?:Z|[+-]\d\d:?\d\d)$"
_ALIASES = {"date": "timestamp", "datetime": "timestamp", "time": "timestamp", "ticker": "symbol"}


class FileSource:
    """Bars, mark prices or funding rates read from files.

    ``paths``: files, directories (every Parquet/CSV file inside) or glob patterns.
    ``kind``: what the files hold. ``timeframe``: the bar length the files hold, if known;
    fetches for another timeframe are refused. ``file_format``: ``auto`` decides by suffix.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], *, kind: Kind = Kind.BARS,
                 symbol: str | None = None, symbol_from_stem: bool = False,
                 timeframe: str | None = None, file_format: FileFormat = "auto",
                 column_map: Mapping[str, str] | None = None, naive_tz: str | None = None,
                 timestamp_unit: str | None = None, name: str = "file", adjust: bool = True) -> None:
        self._paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not self._paths:
            raise ValueError("FileSource needs at least one path")
        self._kind = Kind(kind)
        self._symbol = symbol
        self._symbol_from_stem = symbol_from_stem
        self._timeframe = timeframe
        self._format = file_format
        self._column_map = {k.strip().lower(): v for k, v in (column_map or {}).items()}
        self._naive_tz = naive_tz
        self._timestamp_unit = timestamp_unit
        self._name = name
        self._adjust = adjust

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> Kind:
        return self._kind

    def files(self) -> list[Path]:
        """The files behind this source, expanded and sorted; a missing path raises SourceError."""
        found: list[Path] = []
        for raw in self._paths:
            path = Path(raw)
            if any(ch in str(raw) for ch in "*?["):
                found.extend(Path(p) for p in sorted(glob.glob(str(raw))) if Path(p).is_file())
            elif path.is_dir():
                found.extend(p for p in sorted(path.iterdir())
                             if p.is_file() and p.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES))
            elif path.is_file():
                found.append(path)
            else:
                raise SourceError(f"{path}: no such file or directory")
        if not found:
            raise SourceError(f"no Parquet or CSV files in {[str(p) for p in self._paths]}")
        return list(dict.fromkeys(found))

    def read(self, symbols: Iterable[str] | None = None, start: TimeLike | None = None,
             end: TimeLike | None = None) -> pd.DataFrame:
        """Every row (of ``symbols``, in ``[start, end)`` when given) as one canonical frame, in
        file order."""
        wanted = None if symbols is None else list(dict.fromkeys(symbols))
        start_utc = end_utc = None
        if start is not None and end is not None:
            start_utc, end_utc = utc_range(start, end)
        elif start is not None or end is not None:
            raise ValueError("give both start and end, or neither")
        files = self.files()
        frames = []
        for path in files:
            only = wanted[0] if wanted is not None and len(wanted) == 1 else None
            frame = self._read_file(path, asked_symbol=only, single_file=len(files) == 1)
            if wanted is not None:
                frame = frame[frame["symbol"].astype(str).isin(wanted)]
            frames.append(finish_frame(frame, self._kind, start_utc, end_utc,
                                       where=str(path), dedupe=False, sort=False))
        frames = [f for f in frames if not f.empty]
        if not frames:
            return empty(self._kind)
        return pd.concat(frames, ignore_index=True)

    def symbols(self) -> list[str]:
        """Sorted symbols present in the files."""
        return sorted(self.read()["symbol"].unique().tolist())

    def fetch_bars(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        self._check(Kind.BARS, timeframe)
        return self._sorted(self.read([symbol], start, end))

    def fetch_mark_prices(self, symbol: str, timeframe: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        self._check(Kind.MARK, timeframe)
        return self._sorted(self.read([symbol], start, end))

    def fetch_funding_rates(self, symbol: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        self._check(Kind.FUNDING, None)
        return self._sorted(self.read([symbol], start, end))

    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)

    def _check(self, kind: Kind, timeframe: str | None) -> None:
        if self._kind is not kind:
            raise ValueError(f"this FileSource holds {self._kind.value}, not {kind.value}")
        if timeframe is not None and self._timeframe is not None and timeframe != self._timeframe:
            raise ValueError(f"this FileSource holds {self._timeframe} data, not {timeframe}")

    def _format_of(self, path: Path) -> str:
        if self._format != "auto":
            return self._format
        lower = path.name.lower()
        if lower.endswith(PARQUET_SUFFIXES):
            return "parquet"
        if lower.endswith(CSV_SUFFIXES):
            return "csv"
        raise SourceError(f"{path}: unknown file type; pass file_format='parquet' or 'csv'")

    def _read_file(self, path: Path, *, asked_symbol: str | None, single_file: bool) -> pd.DataFrame:
        if self._format_of(path) == "parquet":
            df = self._read_parquet(path, asked_symbol)
        else:
            df = self._read_csv(path)
        df = self._normalize_columns(df, path)
        if "symbol" not in df.columns:
            symbol = self._symbol or (path.name.split(".")[0] if self._symbol_from_stem else None)
            if symbol is None and single_file:
                symbol = asked_symbol
            if symbol is None:
                raise DataValidationError(
                    f"{path}: no 'symbol' column; pass symbol=... or symbol_from_stem=True")
            df["symbol"] = symbol
        df["timestamp"] = self._parse_timestamps(df["timestamp"], path)
        if self._kind is Kind.BARS:
            df = apply_corporate_actions(df, where=str(path), adjust=self._adjust)
        return df

    def _read_parquet(self, path: Path, symbol: str | None) -> pd.DataFrame:
        try:
            names = {n.strip().lower(): n for n in pq.read_schema(path).names}
            filters = None
            original = names.get(self._column_map_inverse("symbol")) or names.get("symbol")
            if symbol is not None and original is not None:
                filters = [(original, "==", symbol)]  # read one symbol of a big file only
            return pd.read_parquet(path, filters=filters)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptFileError(f"{path}: cannot read Parquet file ({type(exc).__name__}: {exc})") from exc

    def _read_csv(self, path: Path) -> pd.DataFrame:
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
                OSError, EOFError, ValueError) as exc:
            raise CorruptFileError(f"{path}: cannot read CSV file ({type(exc).__name__}: {exc})") from exc

    def _column_map_inverse(self, target: str) -> str | None:
        return next((src for src, dst in self._column_map.items() if dst == target), None)

    def _normalize_columns(self, df: pd.DataFrame, path: Path) -> pd.DataFrame:
        renamed: dict[str, str] = {}
        for col in df.columns:
            key = str(col).strip().lower()
            renamed[col] = self._column_map.get(key, key)
        df = df.rename(columns=renamed)
        present = set(df.columns)
        for alias, target in _ALIASES.items():
            if alias in present and target not in present:
                df = df.rename(columns={alias: target})
                present = set(df.columns)
        if df.columns.duplicated().any():
            raise DataValidationError(f"{path}: duplicate columns after renaming: {list(df.columns)}")
        wanted = [c for c in COLUMNS[self._kind] if c != "symbol"]
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"{path}: missing columns {missing}; expected {list(COLUMNS[self._kind])}")
        return df

    def _parse_timestamps(self, ts: pd.Series, path: Path) -> pd.Series:
        try:
            if self._timestamp_unit is not None:
                return pd.Series(pd.to_datetime(ts, unit=self._timestamp_unit, utc=True), index=ts.index)
            if isinstance(ts.dtype, pd.DatetimeTZDtype) or pd.api.types.is_numeric_dtype(ts):
                return ts  # aware already, or an epoch number that canonicalize refuses by name
            if pd.api.types.is_datetime64_dtype(ts):
                parsed = ts
            elif ts.dropna().astype(str).str.contains(_OFFSET_RE).all():
                # Every value carries its offset (e.g. New York times across DST): unambiguous.
                parsed = pd.to_datetime(ts, format="ISO8601", utc=True)
            else:
                parsed = pd.to_datetime(ts, format="ISO8601")
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataValidationError(f"{path}: column 'timestamp' is not a timestamp ({exc})") from exc
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            return parsed
        if not pd.api.types.is_datetime64_dtype(parsed):
            return parsed  # mixed offsets etc.: canonicalize refuses them by name
        if self._naive_tz is None:
            raise DataValidationError(
                f"{path}: timestamps have no time zone; say which one they are in with --tz "
                "(naive_tz=...), e.g. --tz UTC (daily bars stamped with their date) or "
                "--tz America/New_York; they are then converted to UTC")
        try:
            return parsed.dt.tz_localize(self._naive_tz, ambiguous="raise",
                                         nonexistent="raise").dt.tz_convert("UTC")
        except Exception as exc:  # unknown zone, or a time that DST makes ambiguous / skip
            raise DataValidationError(f"{path}: cannot localize timestamps to --tz "
                                      f"{self._naive_tz!r} ({type(exc).__name__}: {exc})") from exc

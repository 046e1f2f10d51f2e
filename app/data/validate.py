"""One validation function for market data: every fault, with file, symbol and row.

Validation never changes data. It reports; :mod:`app.data.repair` repairs, explicitly and
logged. Faults come in two severities: ``error`` (the data is wrong and cannot be stored as is)
and ``warning`` (legal but worth knowing: calendar gaps, zero volume, probable unadjusted splits).

Gaps are judged against the market's trading calendar (:mod:`app.data.calendars`): for US
stocks and indices a missing *session* (an NYSE trading day without a bar) is a gap, weekends and
holidays are not; crypto trades 24/7, so every missing bar of the timeframe is one. One-bar
spikes that revert (×10 typos) are errors and unadjusted splits warnings
(:mod:`app.data.anomalies`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from app.data.anomalies import find_probable_splits, find_spikes
from app.data.schema import (
    COLUMNS,
    DAY_NS,
    FLOAT_COLUMNS,
    PRICE_COLUMNS,
    TIMEFRAME_NS,
    Kind,
    MarketType,
    canonicalize,
    ts_ns,
)
from app.errors import DataValidationError

ERROR = "error"
WARNING = "warning"

#: Fault codes and their severity.
SEVERITY: dict[str, str] = {
    "schema": ERROR, "empty": ERROR, "non_finite": ERROR, "non_positive_price": ERROR,
    "high_below_low": ERROR, "open_outside_range": ERROR, "close_outside_range": ERROR,
    "duplicate_timestamp": ERROR, "unsorted_timestamp": ERROR,
    "price_spike": ERROR,
    "gap": WARNING, "zero_volume": WARNING, "probable_split": WARNING,
}


@dataclass(frozen=True)
class Fault:
    """One problem in one row (``row`` is the 0-based position in the input, ``-1`` if none)."""

    code: str
    file: str
    symbol: str
    row: int
    timestamp: pd.Timestamp | None
    message: str

    @property
    def severity(self) -> str:
        return SEVERITY[self.code]

    def __str__(self) -> str:
        ts = "" if self.timestamp is None else f" at {self.timestamp.isoformat()}"
        row = "" if self.row < 0 else f" row {self.row}"
        return f"{self.file}: {self.symbol or '-'}{row}{ts}: [{self.code}] {self.message}"


@dataclass
class ValidationReport:
    """Every fault found, with counts per code; ``ok`` when there is no error."""

    file: str
    n_rows: int
    faults: list[Fault] = field(default_factory=list)

    @property
    def errors(self) -> list[Fault]:
        return [f for f in self.faults if f.severity == ERROR]

    @property
    def warnings(self) -> list[Fault]:
        return [f for f in self.faults if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.code for f in self.faults))

    def summary(self, max_lines: int = 20) -> str:
        head = f"{self.file}: {self.n_rows} rows, {len(self.errors)} errors, {len(self.warnings)} warnings"
        if not self.faults:
            return head
        lines = [head, "  counts: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items()))]
        lines += [f"  {f}" for f in self.faults[:max_lines]]
        if len(self.faults) > max_lines:
            lines.append(f"  ... and {len(self.faults) - max_lines} more")
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise DataValidationError(self.summary(), self.errors)


def validate(df: pd.DataFrame, kind: Kind = Kind.BARS, *, file: str = "<frame>",
             timeframe: str | None = None, calendar_ts_ns: np.ndarray | None = None,
             market: MarketType | str | None = None, warnings: bool = True) -> ValidationReport:
    """Check ``df`` against the canonical schema of ``kind`` and report every fault.

    Args:
        file: what to call the input in messages (a path, or ``<yfinance:AAPL>``).
        timeframe: with a fixed-length timeframe (``1h``, ``4h``, ``1d``...) on a 24/7 market
            (crypto, or an unknown market), consecutive bars must be exactly that far apart;
            each hole is a ``gap`` warning.
        calendar_ts_ns: the expected timestamps (e.g. the index's trading days); every calendar
            timestamp inside a symbol's first..last range that the symbol lacks is a ``gap``.
            Takes precedence over ``timeframe`` for the gap check.
        market: the market type; stocks and indices are checked against the NYSE sessions
            (a session without any bar is a ``gap``), and only they are checked for splits.
        warnings: False skips the checks that can only warn (gaps, splits): the store's own
            check before a write needs the errors only.
    """
    kind = Kind(kind)
    report = ValidationReport(file=file, n_rows=len(df))
    if len(df) == 0:
        report.faults.append(Fault("empty", file, "", -1, None, "no rows"))
    try:
        frame = canonicalize(df, kind, where=file)
    except DataValidationError as exc:
        report.faults.append(Fault("schema", file, "", -1, None, str(exc)))
        return report
    report.faults.extend(_dtype_faults(df, kind, file))
    report.faults.extend(_row_faults(frame, kind, file))
    report.faults.extend(_order_faults(frame, file))
    if kind is not Kind.FUNDING:
        report.faults.extend(_anomaly_faults(frame, kind, file, market, warnings))
        if warnings:
            report.faults.extend(_gap_faults(frame, file, timeframe, calendar_ts_ns, market))
    return report


def _anomaly_faults(frame: pd.DataFrame, kind: Kind, file: str,
                    market: MarketType | str | None, warnings: bool) -> list[Fault]:
    faults = [_fault_at(frame, "price_spike", file, int(r),
                        "one-bar price spike that reverts on the next bar (a x10 typo?)")
              for r in find_spikes(frame)]
    stocks = market is None or MarketType(market) is MarketType.STOCK
    if kind is Kind.BARS and stocks and warnings:
        faults += [_fault_at(frame, "probable_split", file, r,
                             f"open is {ratio:g} x the previous close and stays there: an "
                             f"unadjusted {_split_name(ratio)} split? adjust prices before import")
                   for r, ratio in find_probable_splits(frame)]
    return faults


def _split_name(ratio: float) -> str:
    factor = 1.0 / ratio if ratio < 1 else ratio
    whole = (f"{factor:g}:1" if factor != 1.5 else "3:2")
    return whole if ratio < 1 else f"reverse 1:{whole.split(':')[0]}"


def _fault_at(frame: pd.DataFrame, code: str, file: str, row: int, message: str) -> Fault:
    return Fault(code, file, str(frame["symbol"].iloc[row]), row, frame["timestamp"].iloc[row], message)


def _dtype_faults(df: pd.DataFrame, kind: Kind, file: str) -> Iterable[Fault]:
    extra = [c for c in df.columns if c not in COLUMNS[kind]]
    for col in FLOAT_COLUMNS[kind]:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            yield Fault("schema", file, "", -1, None, f"column {col!r} has dtype {df[col].dtype}, expected float64")
    if extra:
        yield Fault("schema", file, "", -1, None, f"unexpected columns {extra} (ignored on import)")


def _faults_where(mask: np.ndarray, frame: pd.DataFrame, code: str, file: str, message: str) -> list[Fault]:
    rows = np.flatnonzero(mask)
    symbols = frame["symbol"].to_numpy()
    ts = frame["timestamp"]
    return [Fault(code, file, str(symbols[r]), int(r), ts.iloc[r], message) for r in rows]


def _row_faults(frame: pd.DataFrame, kind: Kind, file: str) -> list[Fault]:
    faults: list[Fault] = []
    values = frame[list(FLOAT_COLUMNS[kind])].to_numpy()
    finite = np.isfinite(values)
    faults += _faults_where(~finite.all(axis=1), frame, "non_finite", file, "NaN or inf value")
    if kind is Kind.FUNDING:
        return faults
    o, h, lo, c = (frame[col].to_numpy() for col in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        prices = np.stack([o, h, lo, c], axis=1)
        faults += _faults_where((prices <= 0).any(axis=1), frame, "non_positive_price", file, "price <= 0")
        faults += _faults_where(h < lo, frame, "high_below_low", file, "high < low")
        faults += _faults_where((o < lo) | (o > h), frame, "open_outside_range", file, "open outside [low, high]")
        faults += _faults_where((c < lo) | (c > h), frame, "close_outside_range", file, "close outside [low, high]")
        if kind is Kind.BARS:
            faults += _faults_where(frame["volume"].to_numpy() == 0, frame, "zero_volume", file, "volume is 0")
    return faults


def _order_faults(frame: pd.DataFrame, file: str) -> list[Fault]:
    faults: list[Fault] = []
    ts = ts_ns(frame["timestamp"])
    sym = frame["symbol"].to_numpy()
    same_symbol = np.zeros(len(frame), dtype=bool)
    same_symbol[1:] = sym[1:] == sym[:-1]
    step = np.zeros(len(frame), dtype=np.int64)
    step[1:] = ts[1:] - ts[:-1]
    faults += _faults_where(same_symbol & (step < 0), frame, "unsorted_timestamp", file,
                            "timestamp earlier than the previous row's")
    dup = frame.duplicated(subset=["symbol", "timestamp"], keep="first").to_numpy()
    faults += _faults_where(dup, frame, "duplicate_timestamp", file, "timestamp repeated for this symbol")
    return faults


def _gap_faults(frame: pd.DataFrame, file: str, timeframe: str | None,
                calendar_ts_ns: np.ndarray | None, market: MarketType | str | None) -> list[Fault]:
    from app.data.calendars import calendar_for

    calendar = calendar_for(market)
    by_sessions = calendar_ts_ns is None and calendar not in (None, "24/7")
    if calendar_ts_ns is None and not by_sessions and timeframe not in TIMEFRAME_NS:
        return []
    faults: list[Fault] = []
    for symbol, group in frame.groupby("symbol", sort=False):
        ts = np.unique(ts_ns(group["timestamp"]))
        if len(ts) < 2:
            continue
        if calendar_ts_ns is not None:
            faults += _missing_against(np.asarray(calendar_ts_ns, dtype=np.int64), ts, file, symbol)
        elif by_sessions:
            faults += _missing_sessions(str(calendar), ts, file, symbol)
        else:
            faults += _missing_steps(ts, TIMEFRAME_NS[str(timeframe)], str(timeframe), file, symbol)
    return faults


def _missing_against(cal: np.ndarray, ts: np.ndarray, file: str, symbol: object) -> list[Fault]:
    cal = cal[(cal >= ts[0]) & (cal <= ts[-1])]
    missing = np.setdiff1d(cal, ts, assume_unique=True)
    return [Fault("gap", file, str(symbol), -1, pd.Timestamp(m, tz="UTC"),
                  "bar missing against the calendar") for m in missing]


def _missing_sessions(calendar: str, ts: np.ndarray, file: str, symbol: object) -> list[Fault]:
    from app.data.calendars import session_days

    days = np.unique(ts // DAY_NS)
    missing = np.setdiff1d(session_days(calendar, int(ts[0]), int(ts[-1])), days, assume_unique=True)
    return [Fault("gap", file, str(symbol), -1, pd.Timestamp(int(d) * DAY_NS, tz="UTC"),
                  f"no bar on this {calendar} trading session") for d in missing]


def _missing_steps(ts: np.ndarray, step_ns: int, timeframe: str, file: str, symbol: object) -> list[Fault]:
    faults = []
    for h in np.flatnonzero(np.diff(ts) > step_ns):
        n_missing = int((ts[h + 1] - ts[h]) // step_ns) - 1
        faults.append(Fault("gap", file, str(symbol), -1, pd.Timestamp(ts[h] + step_ns, tz="UTC"),
                            f"{n_missing} {timeframe} bar(s) missing before "
                            f"{pd.Timestamp(ts[h + 1], tz='UTC').isoformat()}"))
    return faults

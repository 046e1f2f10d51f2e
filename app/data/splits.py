"""Universe splits: by symbol (seeded, sector-stratified), by time (with embargo), walk-forward.

Every split is a :class:`Split` value that records how it was made (method, seed, parameters)
and what it is (symbol lists, UTC windows, folds), and round-trips through JSON, so a run can
store the split it trained on and a result can be reproduced or audited later.

Time windows are half-open ``[start, end)`` in UTC: a boundary date belongs to exactly one
window whatever the bar size, and ``end`` of one window may equal ``start`` of the next.
An *embargo* leaves a gap between windows, so labels computed over the next ``h`` bars at the
end of one window cannot overlap the bars of the next (set the embargo to the label horizon).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.errors import CorruptFileError, DataValidationError

PARTS: tuple[str, ...] = ("train", "validation", "test")
METHODS: tuple[str, ...] = ("by_symbol", "by_time", "walk_forward")
FORMAT_VERSION = 1
#: Anything :func:`calendar_of` turns into sorted, unique UTC timestamps.
CalendarLike = pd.DataFrame | pd.Series | pd.DatetimeIndex | Sequence[pd.Timestamp]


@dataclass(frozen=True)
class Window:
    """A half-open UTC time window ``[start, end)``."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "window start"))
        object.__setattr__(self, "end", _utc(self.end, "window end"))
        if not self.start < self.end:
            raise ValueError(f"empty window: start {self.start.isoformat()} is not before end "
                             f"{self.end.isoformat()}")

    def contains(self, timestamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask of ``timestamps`` (tz-aware) inside the window."""
        stamps = pd.DatetimeIndex(timestamps)
        if stamps.tz is None:
            raise DataValidationError("timestamps have no time zone; raytrade uses UTC only")
        return np.asarray((stamps >= self.start) & (stamps < self.end), dtype=bool)

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Window:
        return cls(start=pd.Timestamp(data["start"]), end=pd.Timestamp(data["end"]))


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: a train window, then (after any embargo) its test window."""

    index: int
    train: Window
    test: Window

    def __post_init__(self) -> None:
        if self.test.start < self.train.end:
            raise ValueError(f"fold {self.index}: test window starts {self.test.start.isoformat()}, "
                             f"before its train window ends {self.train.end.isoformat()}")

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "train": self.train.to_dict(), "test": self.test.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fold:
        return cls(index=int(data["index"]), train=Window.from_dict(data["train"]),
                   test=Window.from_dict(data["test"]))


@dataclass(frozen=True)
class Split:
    """A reproducible split: how it was made (method, seed, params) and what it is.

    ``symbols`` maps a part (``train``, ``validation``, ``test``) to its symbols, ``windows`` a
    part to its time window, ``folds`` holds walk-forward folds. Parts are checked disjoint and
    ``params`` must be JSON-serializable (it is normalized through JSON so that a loaded split
    compares equal to the saved one).
    """

    method: str
    seed: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    symbols: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    windows: Mapping[str, Window] = field(default_factory=dict)
    folds: tuple[Fold, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown split method {self.method!r}; expected one of {list(METHODS)}")
        try:
            params = json.loads(json.dumps(dict(self.params), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"split params must be JSON-serializable: {exc}") from exc
        object.__setattr__(self, "params", params)
        symbols = {str(p): tuple(str(s) for s in syms) for p, syms in self.symbols.items()}
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "windows", dict(self.windows))
        object.__setattr__(self, "folds", tuple(self.folds))
        seen: dict[str, str] = {}
        for part, syms in symbols.items():
            for sym in syms:
                if sym in seen:
                    raise ValueError(f"symbol {sym!r} is in both {seen[sym]!r} and {part!r}")
                seen[sym] = part
        ordered = sorted(self.windows.items(), key=lambda kv: kv[1].start)
        for (name_a, a), (name_b, b) in zip(ordered, ordered[1:], strict=False):
            if b.start < a.end:
                raise ValueError(f"windows {name_a!r} and {name_b!r} overlap")

    @property
    def parts(self) -> tuple[str, ...]:
        """Part names in the order they were defined (symbols first, then windows)."""
        return tuple(dict.fromkeys([*self.symbols, *self.windows]))

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "method": self.method, "seed": self.seed,
                "params": dict(self.params),
                "symbols": {p: list(s) for p, s in self.symbols.items()},
                "windows": {p: w.to_dict() for p, w in self.windows.items()},
                "folds": [f.to_dict() for f in self.folds]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported split format_version {version!r}; expected {FORMAT_VERSION}")
        unknown = set(data) - {"format_version", "method", "seed", "params", "symbols", "windows", "folds"}
        if unknown:
            raise ValueError(f"unknown keys in split: {sorted(unknown)}")
        seed = data.get("seed")
        return cls(method=data["method"], seed=None if seed is None else int(seed),
                   params=data.get("params", {}), symbols=data.get("symbols", {}),
                   windows={p: Window.from_dict(w) for p, w in data.get("windows", {}).items()},
                   folds=tuple(Fold.from_dict(f) for f in data.get("folds", [])))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Split:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: a temp file in the same directory, fsync, then ``os.replace``.

        A reader never sees a half-written split, and a crash leaves the old file intact.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        """Read a split written by :meth:`save`; a malformed file is a :class:`CorruptFileError`."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            return cls.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"{path}: not a valid split file ({exc})") from exc


# ----------------------------------------------------------------------------- by symbol


def split_by_symbol(metadata: pd.DataFrame, *, seed: int,
                    counts: Mapping[str, int] | Sequence[int] | None = None,
                    fractions: Mapping[str, float] | Sequence[float] | None = None,
                    sector_column: str = "sector", symbol_column: str = "symbol") -> Split:
    """Seeded split of a universe of symbols into disjoint parts, stratified by sector.

    Give ``counts`` (e.g. ``(800, 200, 200)`` for train/validation/test, or a mapping of part to
    count) or ``fractions``. Each part takes from every sector its proportional share, within
    ±1 of ``count * sector_size / universe_size`` (an exact controlled rounding), so an unlucky
    seed cannot leave a sector out of the test set. The same metadata and seed give the same
    split whatever the row order; symbols left over when counts sum below the universe are unused.
    Missing sectors count as ``"Unknown"``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    universe = _universe(metadata, symbol_column, sector_column)
    n_symbols = len(universe)
    if (counts is None) == (fractions is None):
        raise ValueError("give exactly one of counts or fractions")
    if counts is not None:
        wanted = _named(counts, "counts")
        if any(isinstance(c, bool) or int(c) != c or c < 0 for c in wanted.values()):
            raise ValueError(f"counts must be non-negative integers, got {wanted}")
        wanted = {p: int(c) for p, c in wanted.items()}
    else:
        wanted = _counts_from_fractions(_named(fractions, "fractions"), n_symbols)
    if sum(wanted.values()) > n_symbols:
        raise ValueError(f"counts {wanted} ask for {sum(wanted.values())} symbols but the universe "
                         f"has only {n_symbols}")
    sectors = sorted(universe["sector"].unique())
    sizes = universe.groupby("sector").size().reindex(sectors).to_numpy(np.int64)
    rng = np.random.default_rng(int(seed))
    alloc = _stratified_allocation(sizes, [*wanted.values(), n_symbols - sum(wanted.values())], rng)
    chosen: dict[str, list[str]] = {p: [] for p in wanted}
    for row, sector in enumerate(sectors):
        members = universe.loc[universe["sector"] == sector, "symbol"].to_numpy()
        shuffled = members[rng.permutation(len(members))]
        offsets = np.concatenate([[0], np.cumsum(alloc[row])])
        for col, part in enumerate(wanted):
            chosen[part].extend(shuffled[offsets[col]:offsets[col + 1]].tolist())
    per_sector = {s: dict(zip(wanted, map(int, alloc[i, :-1]), strict=True)) for i, s in enumerate(sectors)}
    digest = hashlib.sha256("".join(f"{a}\t{b}\n" for a, b in universe.itertuples(index=False)).encode())
    params = {"counts": wanted, "fractions": None if fractions is None else _named(fractions, "fractions"),
              "sector_column": sector_column, "symbol_column": symbol_column,
              "universe_size": n_symbols, "universe_sha256": digest.hexdigest(),
              "per_sector": per_sector}
    return Split(method="by_symbol", seed=int(seed), params=params,
                 symbols={p: tuple(sorted(s)) for p, s in chosen.items()})


def _universe(metadata: pd.DataFrame, symbol_column: str, sector_column: str) -> pd.DataFrame:
    missing = [c for c in (symbol_column, sector_column) if c not in metadata.columns]
    if missing:
        raise DataValidationError(f"metadata: missing columns {missing}; has {list(metadata.columns)}")
    symbols = metadata[symbol_column]
    if symbols.isna().any():
        raise DataValidationError(f"metadata: {int(symbols.isna().sum())} rows have no {symbol_column!r}")
    dup = symbols[symbols.duplicated()].astype(str).unique().tolist()
    if dup:
        raise DataValidationError(f"metadata: duplicate symbols {dup[:10]}", faults=dup)
    universe = pd.DataFrame({"symbol": symbols.astype(str).to_numpy(),
                             "sector": metadata[sector_column].fillna("Unknown").astype(str).to_numpy()})
    if universe.empty:
        raise DataValidationError("metadata: the universe is empty")
    return universe.sort_values("symbol", kind="stable").reset_index(drop=True)


def _named(values: Mapping[str, Any] | Sequence[Any], what: str) -> dict[str, Any]:
    if isinstance(values, Mapping):
        named = dict(values)
    elif len(values) == len(PARTS):
        named = dict(zip(PARTS, values, strict=True))
    else:
        raise ValueError(f"{what} needs {len(PARTS)} values for {PARTS} (or a mapping), got {list(values)}")
    if not named:
        raise ValueError(f"{what} is empty")
    return named


def _counts_from_fractions(fractions: dict[str, float], n_symbols: int) -> dict[str, int]:
    """Largest-remainder rounding: counts sum to ``round(sum(fractions) * n)`` exactly."""
    values = np.array([float(f) for f in fractions.values()])
    if not np.all(np.isfinite(values)) or (values < 0).any() or values.sum() > 1 + 1e-9:
        raise ValueError(f"fractions must be >= 0 and sum to at most 1, got {fractions}")
    raw = values * n_symbols
    counts = np.floor(raw).astype(np.int64)
    short = min(int(round(values.sum() * n_symbols)), n_symbols) - int(counts.sum())
    for i in np.argsort(-(raw - counts), kind="stable")[:max(short, 0)]:
        counts[i] += 1
    return {p: int(c) for p, c in zip(fractions, counts, strict=True)}


def _stratified_allocation(sizes: np.ndarray, counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """Integer table sectors × parts with row sums ``sizes``, column sums ``counts``, and every
    cell the floor or ceiling of ``size * count / total`` (2-D controlled rounding).

    Such a table always exists (the exact fractional table is a feasible flow, and flows with
    integer capacities have integer optima); floors first, then the leftover units are routed by
    augmenting paths over cells with a fractional part, largest remainders tried first.
    """
    total = int(sizes.sum())
    exact = np.outer(sizes, np.asarray(counts, dtype=np.int64))
    alloc, remainder = np.divmod(exact, total)
    row_need = sizes - alloc.sum(axis=1)
    col_need = np.asarray(counts) - alloc.sum(axis=0)
    can_add = remainder > 0
    plus = np.zeros_like(alloc)
    tie = rng.random(alloc.shape)
    order = np.lexsort((tie.ravel(), -remainder.ravel()))
    for flat in order:  # greedy pass: largest remainders first
        r, c = divmod(int(flat), alloc.shape[1])
        if can_add[r, c] and row_need[r] > 0 and col_need[c] > 0:
            plus[r, c], row_need[r], col_need[c] = 1, row_need[r] - 1, col_need[c] - 1
    while row_need.sum() > 0:  # augmenting paths: row → +cell → col ← −cell ← row ...
        path = _augmenting_path(plus, can_add, row_need, col_need)
        if path is None:
            raise RuntimeError("stratified allocation found no augmenting path (should not happen)")
        for k, (r, c) in enumerate(path):
            plus[r, c] += 1 if k % 2 == 0 else -1
        row_need[path[0][0]] -= 1
        col_need[path[-1][1]] -= 1
    return alloc + plus


def _augmenting_path(plus: np.ndarray, can_add: np.ndarray, row_need: np.ndarray,
                     col_need: np.ndarray) -> list[tuple[int, int]] | None:
    """BFS from rows still short to columns still short; cells alternate add / remove."""
    frontier = [int(r) for r in np.flatnonzero(row_need > 0)]
    came_from: dict[tuple[str, int], tuple[tuple[str, int], tuple[int, int]] | None] = {
        ("r", r): None for r in frontier}
    queue = [("r", r) for r in frontier]
    while queue:
        kind, node = queue.pop(0)
        if kind == "r":
            steps = [(("c", c), (node, c)) for c in np.flatnonzero(can_add[node] & (plus[node] == 0))]
        else:
            if col_need[node] > 0:
                path: list[tuple[int, int]] = []
                key: tuple[str, int] = (kind, node)
                while came_from[key] is not None:
                    key, cell = came_from[key]  # type: ignore[misc]
                    path.append(cell)
                return path[::-1]
            steps = [(("r", r), (r, node)) for r in np.flatnonzero(plus[:, node] == 1)]
        for nxt, cell in steps:
            nxt = (nxt[0], int(nxt[1]))
            if nxt not in came_from:
                came_from[nxt] = ((kind, node), (int(cell[0]), int(cell[1])))
                queue.append(nxt)
    return None


# ----------------------------------------------------------------------------- by time


def calendar_of(timestamps: CalendarLike) -> pd.DatetimeIndex:
    """Sorted unique UTC timestamps (nanoseconds) from bars (``timestamp`` column) or stamps."""
    if isinstance(timestamps, pd.DataFrame):
        if "timestamp" not in timestamps.columns:
            raise DataValidationError("calendar: the frame has no 'timestamp' column")
        timestamps = timestamps["timestamp"]
    stamps = pd.DatetimeIndex(timestamps)
    if stamps.tz is None:
        raise DataValidationError("calendar: timestamps have no time zone; raytrade uses UTC only")
    return stamps.tz_convert("UTC").as_unit("ns").unique().sort_values()


def split_by_time(calendar: CalendarLike | None = None, *, train_end: pd.Timestamp | str,
                  validation_end: pd.Timestamp | str | None = None,
                  start: pd.Timestamp | str | None = None, end: pd.Timestamp | str | None = None,
                  embargo_days: int = 0, embargo_bars: int = 0) -> Split:
    """Train / validation / test windows cut at UTC dates, with an optional embargo between them.

    Windows: train ``[start, train_end)``, validation ``[train_end + embargo, validation_end)``,
    test ``[validation_end + embargo, end)``; without ``validation_end`` only train and test.
    ``embargo_days`` counts calendar days; ``embargo_bars`` counts bars of ``calendar`` (the
    bars skipped are the first ones at or after each cut). ``start``/``end`` default to the
    calendar's first bar and the day after its last one. With a calendar, every window must hold
    at least one bar.
    """
    cal = None if calendar is None else calendar_of(calendar)
    start_ts, end_ts = _bounds(cal, start, end, "split_by_time")
    gap = _embargo(cal, embargo_days, embargo_bars)
    cuts = [_utc(train_end, "train_end")] + ([] if validation_end is None else [_utc(validation_end, "validation_end")])
    names = ["train", "validation", "test"] if validation_end is not None else ["train", "test"]
    starts = [start_ts] + [gap(c) for c in cuts]
    ends = [*cuts, end_ts]
    windows: dict[str, Window] = {}
    for name, lo, hi in zip(names, starts, ends, strict=True):
        if not lo < hi:
            raise ValueError(f"split_by_time: the {name} window [{lo.isoformat()}, {hi.isoformat()}) "
                             "is empty; check the cut dates and the embargo")
        windows[name] = Window(lo, hi)
        if cal is not None and not windows[name].contains(cal).any():
            raise ValueError(f"split_by_time: the {name} window [{lo.isoformat()}, {hi.isoformat()}) "
                             "holds no bar of the calendar")
    params = {"train_end": cuts[0].isoformat(), "validation_end": None if validation_end is None
              else cuts[1].isoformat(), "start": start_ts.isoformat(), "end": end_ts.isoformat(),
              "embargo_days": embargo_days, "embargo_bars": embargo_bars}
    return Split(method="by_time", params=params, windows=windows)


def walk_forward_bars(calendar: CalendarLike, *, train_bars: int, test_bars: int,
                      step_bars: int | None = None, embargo_bars: int = 0, expanding: bool = True,
                      max_folds: int | None = None) -> Split:
    """Walk-forward folds counted in bars of ``calendar``.

    Fold k trains on the first ``train_bars + k * step_bars`` bars (``expanding``) or on the
    ``train_bars`` bars before that point (rolling), skips ``embargo_bars``, then tests on the
    next ``test_bars``. Folds whose test window would run past the calendar are not made.
    """
    cal = calendar_of(calendar)
    step = test_bars if step_bars is None else step_bars
    _positive(train_bars=train_bars, test_bars=test_bars, step_bars=step)
    if embargo_bars < 0:
        raise ValueError(f"embargo_bars must be >= 0, got {embargo_bars}")
    after_last = _day_after(cal[-1]) if len(cal) else None

    def at(i: int) -> pd.Timestamp:
        return cal[i] if i < len(cal) else after_last

    folds: list[Fold] = []
    train_end = train_bars
    while train_end + embargo_bars + test_bars <= len(cal) and (max_folds is None or len(folds) < max_folds):
        train_start = 0 if expanding else train_end - train_bars
        test_start = train_end + embargo_bars
        folds.append(Fold(len(folds), Window(at(train_start), at(train_end)),
                          Window(at(test_start), at(test_start + test_bars))))
        train_end += step
    if not folds:
        raise ValueError(f"walk_forward_bars: {len(cal)} bars cannot hold train_bars={train_bars} + "
                         f"embargo_bars={embargo_bars} + test_bars={test_bars}")
    params = {"unit": "bars", "train_bars": train_bars, "test_bars": test_bars, "step_bars": step,
              "embargo_bars": embargo_bars, "expanding": expanding, "max_folds": max_folds,
              "calendar_start": cal[0].isoformat(), "calendar_end": cal[-1].isoformat(),
              "calendar_bars": len(cal)}
    return Split(method="walk_forward", params=params, folds=tuple(folds))


def walk_forward_days(calendar: CalendarLike | None = None, *, train_days: int, test_days: int,
                      step_days: int | None = None, embargo_days: int = 0, expanding: bool = True,
                      start: pd.Timestamp | str | None = None, end: pd.Timestamp | str | None = None,
                      max_folds: int | None = None) -> Split:
    """Walk-forward folds counted in calendar days from ``start`` (as :func:`walk_forward_bars`).

    ``start``/``end`` default to the calendar's first bar and the day after its last one.
    """
    cal = None if calendar is None else calendar_of(calendar)
    start_ts, end_ts = _bounds(cal, start, end, "walk_forward_days")
    step = test_days if step_days is None else step_days
    _positive(train_days=train_days, test_days=test_days, step_days=step)
    if embargo_days < 0:
        raise ValueError(f"embargo_days must be >= 0, got {embargo_days}")
    day = pd.Timedelta(days=1)
    folds: list[Fold] = []
    train_end = start_ts + train_days * day
    while (train_end + (embargo_days + test_days) * day <= end_ts
           and (max_folds is None or len(folds) < max_folds)):
        train_start = start_ts if expanding else train_end - train_days * day
        test_start = train_end + embargo_days * day
        folds.append(Fold(len(folds), Window(train_start, train_end),
                          Window(test_start, test_start + test_days * day)))
        train_end += step * day
    if not folds:
        raise ValueError(f"walk_forward_days: [{start_ts.isoformat()}, {end_ts.isoformat()}) cannot "
                         f"hold train_days={train_days} + embargo_days={embargo_days} + test_days={test_days}")
    params = {"unit": "days", "train_days": train_days, "test_days": test_days, "step_days": step,
              "embargo_days": embargo_days, "expanding": expanding, "max_folds": max_folds,
              "start": start_ts.isoformat(), "end": end_ts.isoformat()}
    return Split(method="walk_forward", params=params, folds=tuple(folds))


def apply_split(bars: pd.DataFrame, split: Split, part: str, *, fold: int | None = None) -> pd.DataFrame:
    """The rows of ``bars`` in ``part`` of ``split``: its symbols and/or its time window.

    For walk-forward splits give ``fold`` and ``part`` ``"train"`` or ``"test"``. Other columns
    pass through untouched; the index is reset.
    """
    if split.folds:
        if fold is None or not 0 <= fold < len(split.folds):
            raise ValueError(f"a walk-forward split needs fold in [0, {len(split.folds)}), got {fold!r}")
        if part not in ("train", "test"):
            raise ValueError(f"walk-forward parts are 'train' and 'test', got {part!r}")
        symbols, window = None, getattr(split.folds[fold], part)
    else:
        if fold is not None:
            raise ValueError(f"fold={fold} given but the split ({split.method}) has no folds")
        if part not in split.parts:
            raise ValueError(f"unknown part {part!r}; the split has {list(split.parts)}")
        symbols, window = split.symbols.get(part), split.windows.get(part)
    mask = np.ones(len(bars), dtype=bool)
    for column, needed in (("symbol", symbols is not None), ("timestamp", window is not None)):
        if needed and column not in bars.columns:
            raise DataValidationError(f"apply_split: bars have no {column!r} column")
    if symbols is not None:
        mask &= bars["symbol"].isin(symbols).to_numpy(bool)
    if window is not None:
        mask &= window.contains(bars["timestamp"])
    return bars.loc[mask].reset_index(drop=True)


# ----------------------------------------------------------------------------- helpers


def _utc(value: pd.Timestamp | str, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        raise ValueError(f"{what} is missing (NaT)")
    if stamp.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no time zone; raytrade uses UTC (e.g. '2010-01-01T00:00Z')")
    return stamp.tz_convert("UTC")


def _day_after(stamp: pd.Timestamp) -> pd.Timestamp:
    return stamp.floor("D") + pd.Timedelta(days=1)


def _bounds(cal: pd.DatetimeIndex | None, start: Any, end: Any, where: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    if cal is not None and len(cal) == 0:
        raise ValueError(f"{where}: the calendar is empty")
    if cal is None and (start is None or end is None):
        raise ValueError(f"{where}: give start and end, or a calendar to take them from")
    start_ts = cal[0] if start is None else _utc(start, "start")
    end_ts = _day_after(cal[-1]) if end is None else _utc(end, "end")
    return start_ts, end_ts


def _embargo(cal: pd.DatetimeIndex | None, embargo_days: int,
            embargo_bars: int) -> Callable[[pd.Timestamp], pd.Timestamp]:
    """The function mapping a cut to the start of the next window."""
    if embargo_days < 0 or embargo_bars < 0:
        raise ValueError(f"embargo must be >= 0, got embargo_days={embargo_days}, embargo_bars={embargo_bars}")
    if embargo_days and embargo_bars:
        raise ValueError("give embargo_days or embargo_bars, not both")
    if embargo_bars and cal is None:
        raise ValueError("embargo_bars needs a calendar (the bars' timestamps) to count bars")

    def after(cut: pd.Timestamp) -> pd.Timestamp:
        if embargo_days:
            return cut + pd.Timedelta(days=embargo_days)
        if not embargo_bars:
            return cut
        i = int(cal.searchsorted(cut, side="left")) + embargo_bars
        if i >= len(cal):
            raise ValueError(f"an embargo of {embargo_bars} bars after {cut.isoformat()} runs past "
                             "the end of the calendar")
        return cal[i]

    return after


def _positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

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

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from app.data.split_types import Fold, Split, Window, utc_timestamp
from app.errors import DataValidationError

PARTS: tuple[str, ...] = ("train", "validation", "test")
#: Anything :func:`calendar_of` turns into sorted, unique UTC timestamps.
CalendarLike = pd.DataFrame | pd.Series | pd.DatetimeIndex | Sequence[pd.Timestamp]


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

    Such a table always exists: the exact fractional table is a feasible flow and integer
    capacities have integral max flows. Floors first; the leftover units (one per cell at most)
    are routed by a max flow source → sector → part → sink, with sectors visited in a seeded
    order so that no sector is systematically the one that gets the extra symbol.
    """
    n_sectors, n_parts = len(sizes), len(counts)
    alloc, remainder = np.divmod(np.outer(sizes, np.asarray(counts, dtype=np.int64)), int(sizes.sum()))
    order = rng.permutation(n_sectors)
    source, sink = 0, 1 + n_sectors + n_parts
    capacity = np.zeros((sink + 1, sink + 1), dtype=np.int64)
    capacity[source, 1 + np.arange(n_sectors)] = (sizes - alloc.sum(axis=1))[order]
    capacity[1:1 + n_sectors, 1 + n_sectors:sink] = (remainder[order] > 0).astype(np.int64)
    capacity[1 + n_sectors:sink, sink] = np.asarray(counts) - alloc.sum(axis=0)
    flow = _max_flow(capacity, source, sink)
    if flow[source].sum() != capacity[source].sum():
        raise RuntimeError("stratified allocation: no controlled rounding found (should not happen)")
    alloc[order] += flow[1:1 + n_sectors, 1 + n_sectors:sink]
    return alloc


def _max_flow(capacity: np.ndarray, source: int, sink: int) -> np.ndarray:
    """Edmonds–Karp on a small dense graph (a few dozen nodes); returns the flow matrix."""
    flow = np.zeros_like(capacity)
    while True:
        parent = np.full(len(capacity), -1)
        parent[source] = source
        queue = [source]
        while queue and parent[sink] < 0:
            node = queue.pop(0)
            for nxt in np.flatnonzero((capacity[node] - flow[node] > 0) & (parent < 0)):
                parent[nxt] = node
                queue.append(int(nxt))
        if parent[sink] < 0:
            return flow
        node = sink
        while node != source:
            flow[parent[node], node] += 1
            flow[node, parent[node]] -= 1
            node = parent[node]


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
    if embargo_days < 0 or embargo_bars < 0:
        raise ValueError(f"embargo must be >= 0, got embargo_days={embargo_days}, "
                         f"embargo_bars={embargo_bars}")
    if embargo_days and embargo_bars:
        raise ValueError("give embargo_days or embargo_bars, not both")
    if embargo_bars and cal is None:
        raise ValueError("embargo_bars needs a calendar (the bars' timestamps) to count bars")
    cuts = [utc_timestamp(train_end, "train_end")]
    if validation_end is not None:
        cuts.append(utc_timestamp(validation_end, "validation_end"))
    names = ["train", "validation", "test"] if validation_end is not None else ["train", "test"]
    starts = [start_ts] + [_after_embargo(cal, c, embargo_days, embargo_bars) for c in cuts]
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
    next ``test_bars`` (``step_bars`` defaults to ``test_bars``). Folds whose test window would
    run past the calendar are not made, so every test window is full.
    """
    cal = calendar_of(calendar)
    if not len(cal):
        raise ValueError("walk_forward_bars: the calendar is empty")
    after_last = _day_after(cal[-1])
    folds = _walk(len(cal), lambda i: cal[i] if i < len(cal) else after_last, "bars", train_bars,
                  test_bars, step_bars, embargo_bars, expanding, max_folds)
    params = {"unit": "bars", "train_bars": train_bars, "test_bars": test_bars,
              "step_bars": step_bars or test_bars, "embargo_bars": embargo_bars, "expanding": expanding,
              "max_folds": max_folds, "calendar_start": cal[0].isoformat(),
              "calendar_end": cal[-1].isoformat(), "calendar_bars": len(cal)}
    return Split(method="walk_forward", params=params, folds=folds)


def walk_forward_days(calendar: CalendarLike | None = None, *, train_days: int, test_days: int,
                      step_days: int | None = None, embargo_days: int = 0, expanding: bool = True,
                      start: pd.Timestamp | str | None = None, end: pd.Timestamp | str | None = None,
                      max_folds: int | None = None) -> Split:
    """Walk-forward folds counted in calendar days from ``start`` (as :func:`walk_forward_bars`).

    ``start``/``end`` default to the calendar's first bar and the day after its last one.
    """
    cal = None if calendar is None else calendar_of(calendar)
    start_ts, end_ts = _bounds(cal, start, end, "walk_forward_days")
    n_days = (end_ts - start_ts) // pd.Timedelta(days=1)
    folds = _walk(n_days, lambda k: start_ts + pd.Timedelta(days=k), "days", train_days, test_days,
                  step_days, embargo_days, expanding, max_folds)
    params = {"unit": "days", "train_days": train_days, "test_days": test_days,
              "step_days": step_days or test_days, "embargo_days": embargo_days, "expanding": expanding,
              "max_folds": max_folds, "start": start_ts.isoformat(), "end": end_ts.isoformat()}
    return Split(method="walk_forward", params=params, folds=folds)


def _walk(n_units: int, at: Callable[[int], pd.Timestamp], unit: str, train: int, test: int,
          step: int | None, embargo: int, expanding: bool, max_folds: int | None) -> tuple[Fold, ...]:
    """Folds on positions ``0..n_units`` (bars or days), mapped to timestamps by ``at``."""
    step = test if step is None else step
    _positive(**{f"train_{unit}": train, f"test_{unit}": test, f"step_{unit}": step})
    if isinstance(embargo, bool) or int(embargo) != embargo or embargo < 0:
        raise ValueError(f"embargo_{unit} must be an integer >= 0, got {embargo!r}")
    if max_folds is not None:
        _positive(max_folds=max_folds)
    folds: list[Fold] = []
    train_end = train
    while train_end + embargo + test <= n_units and (max_folds is None or len(folds) < max_folds):
        test_start = train_end + embargo
        folds.append(Fold(len(folds), Window(at(0 if expanding else train_end - train), at(train_end)),
                          Window(at(test_start), at(test_start + test))))
        train_end += step
    if not folds:
        raise ValueError(f"walk-forward: {n_units} {unit} cannot hold train_{unit}={train} + "
                         f"embargo_{unit}={embargo} + test_{unit}={test}")
    return tuple(folds)


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


def _day_after(stamp: pd.Timestamp) -> pd.Timestamp:
    return stamp.floor("D") + pd.Timedelta(days=1)


def _bounds(cal: pd.DatetimeIndex | None, start: Any, end: Any, where: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    if cal is not None and len(cal) == 0:
        raise ValueError(f"{where}: the calendar is empty")
    if cal is None and (start is None or end is None):
        raise ValueError(f"{where}: give start and end, or a calendar to take them from")
    start_ts = cal[0] if start is None else utc_timestamp(start, "start")
    end_ts = _day_after(cal[-1]) if end is None else utc_timestamp(end, "end")
    return start_ts, end_ts


def _after_embargo(cal: pd.DatetimeIndex | None, cut: pd.Timestamp, embargo_days: int,
                   embargo_bars: int) -> pd.Timestamp:
    """Start of the window after ``cut``: ``embargo_days`` later, or ``embargo_bars`` bars of
    ``cal`` skipped (the first ones at or after the cut)."""
    if embargo_days or not embargo_bars:
        return cut + pd.Timedelta(days=embargo_days)
    i = int(cal.searchsorted(cut, side="left")) + embargo_bars
    if i >= len(cal):
        raise ValueError(f"an embargo of {embargo_bars} bars after {cut.isoformat()} runs past "
                         "the end of the calendar")
    return cal[i]


def _positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

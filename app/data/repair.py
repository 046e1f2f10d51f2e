"""Explicit, logged repairs of market data. Nothing is dropped or changed silently.

Each repair returns the new frame and appends :class:`RepairAction` records saying what it did,
to which symbol, how many rows, and why. The same records are written to the ``raytrade.data``
logger, so an ingest log shows every change made to vendor data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from app.data.anomalies import find_spikes
from app.data.schema import FLOAT_COLUMNS, PRICE_COLUMNS, Kind, ts_ns

log = logging.getLogger("raytrade.data")


@dataclass(frozen=True)
class RepairAction:
    action: str
    symbol: str
    n_rows: int
    detail: str

    def __str__(self) -> str:
        return f"{self.action}: {self.symbol or '-'}: {self.n_rows} row(s): {self.detail}"


@dataclass(frozen=True)
class RepairPolicy:
    """Which repairs to apply. The defaults are safe for any source; crypto listings and
    redenominations are opt-in because they need judgement about the market."""

    sort: bool = True
    drop_duplicates: bool = True
    drop_non_finite: bool = True
    drop_non_positive: bool = True
    clip_ohlc: bool = True
    listing_hours_to_drop: int = 0
    redenomination: Literal["off", "cut", "adjust"] = "off"
    #: a close-to-open jump by more than this factor (either way) between consecutive bars,
    #: which then persists, is treated as a redenomination.
    redenomination_jump_ratio: float = 8.0
    #: drop one-bar spikes that revert (``price_spike`` faults, e.g. a x10 typo in a close).
    drop_spikes: bool = True


@dataclass
class RepairLog:
    actions: list[RepairAction] = field(default_factory=list)

    def add(self, action: str, symbol: str, n_rows: int, detail: str) -> None:
        if n_rows <= 0:
            return
        record = RepairAction(action, symbol, n_rows, detail)
        self.actions.append(record)
        log.info("repair %s", record)

    def __len__(self) -> int:
        return len(self.actions)

    def summary(self) -> str:
        return "\n".join(str(a) for a in self.actions) or "no repairs"


def repair(frame: pd.DataFrame, kind: Kind = Kind.BARS, policy: RepairPolicy | None = None,
           ) -> tuple[pd.DataFrame, RepairLog]:
    """Apply ``policy`` to a canonical frame; returns the repaired copy and what was done."""
    policy = policy or RepairPolicy()
    kind = Kind(kind)
    out = frame.copy()
    rlog = RepairLog()
    if policy.sort:
        out = _sort(out, rlog)
    if policy.drop_duplicates:
        out = _drop_duplicates(out, rlog)
    if policy.drop_non_finite:
        out = _drop_rows(out, ~np.isfinite(out[list(FLOAT_COLUMNS[kind])].to_numpy()).all(axis=1),
                         "drop_non_finite", "NaN or inf value", rlog)
    if kind is not Kind.FUNDING:
        if policy.drop_non_positive:
            bad = (out[list(PRICE_COLUMNS)].to_numpy() <= 0).any(axis=1)
            out = _drop_rows(out, bad, "drop_non_positive", "price <= 0", rlog)
        if policy.clip_ohlc:
            out = clip_ohlc(out, rlog)
        if policy.listing_hours_to_drop > 0:
            out = drop_listing_hours(out, policy.listing_hours_to_drop, rlog)
        if policy.redenomination != "off":
            out = fix_redenominations(out, policy.redenomination, policy.redenomination_jump_ratio, rlog)
        if policy.drop_spikes:
            out = drop_spikes(out, rlog)
    return out.reset_index(drop=True), rlog


def _sort(frame: pd.DataFrame, rlog: RepairLog) -> pd.DataFrame:
    order = np.lexsort((ts_ns(frame["timestamp"]), frame["symbol"].to_numpy()))
    moved = int((order != np.arange(len(order))).sum())
    if moved:
        rlog.add("sort", "", moved, "rows moved to sort by (symbol, timestamp)")
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


def _drop_duplicates(frame: pd.DataFrame, rlog: RepairLog) -> pd.DataFrame:
    dup = frame.duplicated(subset=["symbol", "timestamp"], keep="last").to_numpy()
    return _drop_rows(frame, dup, "drop_duplicates", "repeated timestamp, kept the last row", rlog)


def _drop_rows(frame: pd.DataFrame, mask: np.ndarray, action: str, why: str, rlog: RepairLog) -> pd.DataFrame:
    if not mask.any():
        return frame
    for symbol, n in frame.loc[mask, "symbol"].value_counts(sort=False).items():
        rlog.add(action, str(symbol), int(n), why)
    return frame.loc[~mask].reset_index(drop=True)


def drop_spikes(frame: pd.DataFrame, rlog: RepairLog) -> pd.DataFrame:
    """Drop one-bar spikes that revert (:func:`app.data.anomalies.find_spikes`), one logged
    record per bar naming its date and prices."""
    rows = find_spikes(frame)
    if not len(rows):
        return frame
    for r in rows:
        bar = frame.iloc[r]
        rlog.add("drop_spikes", str(bar["symbol"]), 1,
                 f"bar of {bar['timestamp'].isoformat()} (open {bar['open']:g}, close "
                 f"{bar['close']:g}) jumps >x5 and reverts on the next bar")
    keep = np.ones(len(frame), dtype=bool)
    keep[rows] = False
    return frame.loc[keep].reset_index(drop=True)


def clip_ohlc(frame: pd.DataFrame, rlog: RepairLog) -> pd.DataFrame:
    """Make every bar consistent: high = max(o, h, l, c), low = min(o, h, l, c)."""
    prices = frame[list(PRICE_COLUMNS)].to_numpy()
    new_high = prices.max(axis=1)
    new_low = prices.min(axis=1)
    changed = (new_high != prices[:, 1]) | (new_low != prices[:, 2])
    if changed.any():
        for symbol, n in frame.loc[changed, "symbol"].value_counts(sort=False).items():
            rlog.add("clip_ohlc", str(symbol), int(n), "high/low widened to contain open and close")
        frame = frame.copy()
        frame["high"] = new_high
        frame["low"] = new_low
    return frame


def drop_listing_hours(frame: pd.DataFrame, hours: int, rlog: RepairLog) -> pd.DataFrame:
    """Drop each symbol's first ``hours`` hours of bars, where new listings spike wildly.

    Only symbols whose first bar comes after the frame's first bar are treated as listed inside
    the frame; a symbol already trading when the data starts keeps its first hours.
    """
    ts = ts_ns(frame["timestamp"])
    first = frame.assign(_ts=ts).groupby("symbol", sort=False)["_ts"].transform("min").to_numpy()
    listed_inside = first > ts.min()
    mask = listed_inside & (ts < first + hours * 3_600_000_000_000)
    return _drop_rows(frame, mask, "drop_listing_hours", f"first {hours} h after listing", rlog)


def find_redenominations(frame: pd.DataFrame, jump_ratio: float) -> list[tuple[str, int, float]]:
    """``(symbol, row, ratio)`` for each bar whose open jumps by more than ``jump_ratio`` from
    the previous close and whose next closes stay at the new level (a redenomination, not a
    wick: medians of the 24 bars either side must differ by the jump too). ``ratio`` is rounded to a power of ten when it is within 20% of one."""
    found: list[tuple[str, int, float]] = []
    closes = frame["close"].to_numpy()
    opens = frame["open"].to_numpy()
    symbols = frame["symbol"].to_numpy()
    for symbol in pd.unique(symbols):
        rows = np.flatnonzero(symbols == symbol)
        if len(rows) < 3:
            continue
        jump = opens[rows[1:]] / closes[rows[:-1]]
        for k in np.flatnonzero((jump > jump_ratio) | (jump < 1 / jump_ratio)):
            before = closes[rows[max(0, k - 23): k + 1]]
            after = closes[rows[k + 1: k + 25]]
            persists = np.median(after) / np.median(before)
            if persists > jump_ratio / 2 or persists < 2 / jump_ratio:
                found.append((str(symbol), int(rows[k + 1]), _round_pow10(float(jump[k]))))
    return found


def _round_pow10(ratio: float) -> float:
    exp = np.round(np.log10(ratio))
    return float(10.0**exp) if abs(ratio / 10.0**exp - 1) < 0.2 else ratio


def fix_redenominations(frame: pd.DataFrame, how: Literal["cut", "adjust"], jump_ratio: float,
                        rlog: RepairLog) -> pd.DataFrame:
    """``cut``: keep only bars from the redenomination on. ``adjust``: scale the earlier prices
    by the ratio (volumes inversely), like a split adjustment, so the series is continuous."""
    frame = frame.copy()
    drop = np.zeros(len(frame), dtype=bool)
    symbols = frame["symbol"].to_numpy()
    for symbol, row, ratio in find_redenominations(frame, jump_ratio):
        before = (symbols == symbol) & (np.arange(len(frame)) < row)
        when = frame["timestamp"].iloc[row].isoformat()
        if how == "cut":
            drop |= before
            rlog.add("redenomination_cut", symbol, int(before.sum()), f"bars before the x{ratio:g} jump at {when} dropped")
        else:
            frame.loc[before, list(PRICE_COLUMNS)] *= ratio
            if "volume" in frame:
                frame.loc[before, "volume"] /= ratio
            rlog.add("redenomination_adjust", symbol, int(before.sum()),
                     f"prices before {when} multiplied by {ratio:g} (volume divided)")
    if drop.any():
        frame = frame.loc[~drop].reset_index(drop=True)
    return frame

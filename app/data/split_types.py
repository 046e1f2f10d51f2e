"""The value types of a split: UTC windows, walk-forward folds and the reproducible :class:`Split`.

Kept apart from :mod:`app.data.splits` (which makes splits) so runs, reports and tuning can
load a saved split without the splitting machinery.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.errors import CorruptFileError, DataValidationError

METHODS: tuple[str, ...] = ("by_symbol", "by_time", "walk_forward")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Window:
    """A half-open UTC time window ``[start, end)``."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc_timestamp(self.start, "window start"))
        object.__setattr__(self, "end", utc_timestamp(self.end, "window end"))
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


def utc_timestamp(value: pd.Timestamp | str, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        raise ValueError(f"{what} is missing (NaT)")
    if stamp.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no time zone; raytrade uses UTC (e.g. '2010-01-01T00:00Z')")
    return stamp.tz_convert("UTC")

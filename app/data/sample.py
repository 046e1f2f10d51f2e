"""Import a directory described by a ``manifest.json`` (the embedded sample is one) into the store.

A manifest lists files and, for each, the store key (source, market type, timeframe, kind),
an optional trading calendar to check gaps against (a symbol already imported, e.g. ^GSPC),
and the repairs it needs. Files are imported in order, so a calendar is listed before its users.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from app.data.ingest import IngestResult, ingest_frame
from app.data.repair import RepairPolicy
from app.data.schema import DatasetKey, Kind, MarketType, ts_ns
from app.data.sources.file_source import FileSource
from app.data.store import ParquetStore
from app.errors import ConfigError

MANIFEST = "manifest.json"


class CalendarRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str
    market_type: MarketType
    timeframe: str
    symbol: str


class RepairSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    listing_hours_to_drop: int = 0
    redenomination: str = "off"


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    source: str
    market_type: MarketType
    timeframe: str
    kind: Kind = Kind.BARS
    calendar: CalendarRef | None = None
    repair: RepairSpec = RepairSpec()

    @property
    def key(self) -> DatasetKey:
        return DatasetKey(self.source, self.market_type, self.timeframe, self.kind)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    files: list[FileSpec]


def load_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no manifest; import single files with `raytrade data import FILE`") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ConfigError(f"{path}: invalid manifest: {exc}") from exc


def import_directory(store: ParquetStore, directory: Path,
                     on_file: Callable[[FileSpec, IngestResult], None] | None = None) -> list[IngestResult]:
    """Import every file of ``directory``'s manifest; replaces what the store held for them."""
    manifest = load_manifest(directory)
    results = []
    for spec in manifest.files:
        frame = FileSource(directory / spec.file, kind=spec.kind).read()
        calendar = None
        if spec.calendar is not None:
            ref = spec.calendar
            cal_key = DatasetKey(ref.source, ref.market_type, ref.timeframe, Kind.BARS)
            calendar = ts_ns(store.read(cal_key, [ref.symbol])["timestamp"])
        policy = RepairPolicy(listing_hours_to_drop=spec.repair.listing_hours_to_drop,
                              redenomination=spec.repair.redenomination)  # type: ignore[arg-type]
        result = ingest_frame(store, spec.key, frame, name=str(directory / spec.file), policy=policy,
                              calendar_ts_ns=calendar, mode="replace")
        results.append(result)
        if on_file is not None:
            on_file(spec, result)
    return results

"""Load an experiment YAML into :class:`app.config.schema.Experiment`, with ``--set`` overrides.

Errors name the file and the dotted key (``algorithm.lr: Input should be a valid number``).
Secrets never live in YAML: a key that looks like one is refused.

Paths, so that a file works from any directory: relative *input* paths written in a file
(:data:`INPUT_PATHS`: ``data.store``, ``data.by_symbol.metadata``, ``tracking.bounds_file``)
are resolved against the file's directory; paths given with ``--set`` against the working
directory (where they were typed). Output locations (``tracking.runs_dir``, the MLflow URI)
stay relative to the working directory. The files an experiment reads are checked here
(:func:`check_inputs`), not after Ray has started.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config.schema import STORE_ENV, DataSelection, Experiment, default_store
from app.errors import ConfigError

_SECRET_WORDS = ("password", "secret", "api_key", "apikey", "token", "private_key")


#: dotted keys of the files and directories an experiment reads (resolved against its file)
INPUT_PATHS = ("data.store", "data.by_symbol.metadata", "tracking.bounds_file")


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override (``key.sub=value``, value parsed as YAML) and validate an experiment;
    relative input paths resolved (see the module docstring) and the input files checked."""
    path = Path(path)
    raw = _read_mapping(path, "experiment file")
    raw = resolve_paths(raw, path.resolve().parent)
    raw = resolve_paths(apply_overrides(raw, overrides or [], where=str(path)), Path.cwd())
    if isinstance(raw.get("data"), dict) and not raw["data"].get("store"):
        raw["data"]["store"] = str(default_store().resolve())  # saved with the run: absolute
    exp = parse_experiment(raw, where=str(path))
    check_inputs(exp, where=str(path))
    return exp


def resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of ``raw`` with each relative :data:`INPUT_PATHS` entry made absolute under ``base``."""
    out = copy.deepcopy(raw)
    for dotted in INPUT_PATHS:
        *parents, leaf = dotted.split(".")
        node: Any = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) else None
        if isinstance(value, str | Path) and str(value) and not Path(value).expanduser().is_absolute():
            node[leaf] = str((base / Path(value)).resolve())
        elif isinstance(value, str | Path) and str(value):
            node[leaf] = str(Path(value).expanduser())
    return out


def check_inputs(exp: Experiment, where: str = "<config>") -> None:
    """The files the experiment reads before training exist: the alert bounds and the symbol
    metadata (the store is checked where it is read: :func:`require_store`)."""
    bounds = exp.tracking.bounds_file
    if bounds is not None and not bounds.is_file():
        raise ConfigError(f"{where}: tracking.bounds_file: {bounds} does not exist (give a bounds file, "
                          "or null to turn the alerts off)")
    meta = exp.data.by_symbol.metadata if exp.data and exp.data.by_symbol else None
    if meta is not None and not meta.is_file():
        raise ConfigError(f"{where}: data.by_symbol.metadata: {meta} does not exist")


def require_store(store: Path, what: str = "data.store") -> Path:
    """``store`` itself, if it is a directory; otherwise a ConfigError that says the store is
    missing (rather than an empty universe later)."""
    if not Path(store).is_dir():
        raise ConfigError(f"{what}: no store at {Path(store).resolve()} (import data with `raytrade data "
                          f"import ... --store DIR`, or point --store / ${STORE_ENV} at one)")
    return Path(store)


def with_store(exp: Experiment, store: str | Path | None) -> Experiment:
    """``exp`` reading its bars from ``store`` (``--store`` / ``$RAYTRADE_STORE``) instead of
    ``data.store``; unchanged when ``store`` is None or the experiment trades a synthetic market
    (it reads no store). A missing store is a ConfigError saying so."""
    if store is None or exp.data is None:
        return exp
    path = require_store(Path(store).expanduser().resolve(), what="--store")
    return exp.model_copy(update={"data": exp.data.model_copy(update={"store": path})})


def load_data_selection(path: str | Path) -> DataSelection:
    """A data spec file (``raytrade backtest --data-spec FILE``): YAML or JSON with the fields
    of :class:`DataSelection`; a relative ``store`` is resolved against the file's directory."""
    path = Path(path)
    raw = resolve_paths({"data": _read_mapping(path, "data spec file")}, path.resolve().parent)["data"]
    _refuse_secrets(raw, str(path))
    try:
        return DataSelection.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from exc


def data_selection(spec_file: str | Path | None = None, *, store: str | Path | None = None,
                   symbols: str | None = None, start: str | None = None, end: str | None = None) -> DataSelection:
    """The data a backtest trades instead of the run's: ``--data-spec FILE`` (if given), then
    the command-line values over it (``symbols`` comma-separated; dates ``YYYY-MM-DD``)."""
    base = load_data_selection(spec_file) if spec_file is not None else DataSelection()
    given: dict[str, Any] = {"store": Path(store).expanduser().resolve() if store else None,
                             "symbols": [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None,
                             "start": start, "end": end}
    try:
        return DataSelection.model_validate(base.model_dump() | {k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"backtest data: {_problems(exc)}") from exc


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such {what}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def parse_experiment(raw: dict[str, Any], where: str = "<config>") -> Experiment:
    _refuse_secrets(raw, where)
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def apply_overrides(raw: dict[str, Any], overrides: list[str], where: str = "<config>") -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{where}: override {item!r} must look like key.sub=value")
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = out
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: override {dotted!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = yaml.safe_load(text)
    return out


def _refuse_secrets(node: Any, where: str, prefix: str = "") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if any(word in str(key).lower() for word in _SECRET_WORDS):
                raise ConfigError(f"{where}: {dotted}: secrets come from the environment, never from config files")
            _refuse_secrets(value, where, dotted + ".")

"""Load an experiment YAML into :class:`app.config.schema.Experiment`, with ``--set`` overrides.

Errors name the file and the dotted key (``algorithm.lr: Input should be a valid number``).
Secrets never live in YAML: a key that looks like one is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config.schema import Experiment
from app.errors import ConfigError

_SECRET_WORDS = ("password", "secret", "api_key", "apikey", "token", "private_key")


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override (``key.sub=value``, value parsed as YAML) and validate an experiment."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such experiment file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [], where=str(path))
    return parse_experiment(raw, where=str(path))


def parse_experiment(raw: dict[str, Any], where: str = "<config>") -> Experiment:
    _refuse_secrets(raw, where)
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from exc


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

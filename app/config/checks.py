"""Checks of an experiment's env and model sections against what the envs and models accept.

The schema keeps ``env.config`` and ``model.config`` as free mappings (each env and model owns
its settings), so without these checks a misspelt key (``windw_bars``, ``embed_dimm``) would
only fail inside an env runner, after Ray has started, or silently train the defaults. Here the
env's own frozen config dataclass and the model's own parser judge them, at load time.

Each check raises ``ValueError`` (pydantic turns it into an error naming the file and the key).
Imports are lazy: ``envs`` (numpy, gymnasium) and ``app.models`` (torch) load only when a config
is checked, never for ``raytrade --help``.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from typing import Any


def check_env_id(env_id: str) -> None:
    """``env_id`` is a registered raytrade env: one of ``envs.ENV_IDS``, or another registered id
    whose env takes a raytrade config dataclass (an env built on the same engine)."""
    config_class(env_id)


def check_env_config(env_id: str, config: Mapping[str, Any]) -> None:
    """``config`` (over the id's registered kwargs) builds the env's config dataclass: every
    key is a field of it and every value passes its validation."""
    from gymnasium.envs.registration import spec as registered_spec

    registered = dict(registered_spec(env_id).kwargs or {})
    try:
        config_class(env_id).from_mapping({**registered, **dict(config)})
    except TypeError as exc:  # a value of the wrong kind inside a dataclass check
        raise ValueError(str(exc)) from None


@functools.cache
def config_class(env_id: str) -> type:
    """The config dataclass of ``env_id``: the ``config`` parameter of its entry point's
    constructor (every raytrade env takes ``config: <Env>Config | None``)."""
    from gymnasium.envs.registration import load_env_creator
    from gymnasium.envs.registration import spec as registered_spec

    import envs
    from envs.core.config import EngineConfig

    unknown = ValueError(f"{env_id!r} is not a raytrade env; known: {list(envs.ENV_IDS)}")
    try:
        entry = registered_spec(env_id).entry_point
        env_class = load_env_creator(entry) if isinstance(entry, str) else entry
        hint = typing.get_type_hints(env_class.__init__).get("config")
    except Exception:  # noqa: BLE001 - not registered, or an entry point that does not load
        raise unknown from None
    found = [c for c in (*typing.get_args(hint), hint) if isinstance(c, type) and issubclass(c, EngineConfig)]
    if not found:
        raise unknown
    return found[0]


def check_model_config(model: str, config: Mapping[str, Any]) -> None:
    """``config`` is a valid ``model_config`` for ``model`` (keys and values)."""
    from app.models.config import parse_model_config

    parse_model_config(model, config)

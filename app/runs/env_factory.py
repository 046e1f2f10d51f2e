"""Envs for RLlib: an env id plus a serializable data spec -> a native vector env.

RLlib (``gym_env_vectorize_mode="vector_entry_point"``) calls the registered creator on every
env runner with ``env_config | {"num_envs": N}``. The env config carries a *data spec* (store
path, dataset, symbols, time window), never arrays: each runner process loads its part of the
store once (cached), so configs stay small, checkpoints stay portable, and the test split
cannot reach training by accident (only the parts a run hands over are in any spec).
RLlib's creator (a curriculum-aware wrapper) lives in :mod:`app.training.rllib_env`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import envs
from envs.core.market import MarketArrays


@dataclass(frozen=True)
class DataSpec:
    """Which bars an env trades: everything needed to load them, nothing else."""

    store: str
    source: str
    market_type: str
    timeframe: str
    symbols: tuple[str, ...]
    index_source: str | None = None
    index_market_type: str | None = None
    index_symbol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DataSpec:
        return cls(**{**raw, "symbols": tuple(raw["symbols"])})


@functools.lru_cache(maxsize=8)
def load_env_data(spec: DataSpec) -> tuple[MarketArrays, MarketArrays | None]:
    """Load (and cache per process) the market and index arrays of ``spec``."""
    from app.data.market import load_market
    from app.data.schema import DatasetKey, MarketType
    from app.data.store import ParquetStore

    store = ParquetStore(spec.store)
    market = load_market(store, DatasetKey(spec.source, MarketType(spec.market_type), spec.timeframe), list(spec.symbols))
    index = None
    if spec.index_symbol:
        index_key = DatasetKey(spec.index_source or spec.source, MarketType(spec.index_market_type or "index"),
                               spec.timeframe)
        index = store.load_arrays(index_key, [spec.index_symbol])
    return market, index


def create_env(env_id: str, env_config: Mapping[str, Any]):
    """Build ``env_id`` from an env config that may hold a ``data`` spec (see module docstring)."""
    config = dict(env_config)
    data = config.pop("data", None)
    if data is not None:
        market, index = load_env_data(DataSpec.from_dict(data))
        config["market"], config["index"] = market, index
    return envs.make_creator(env_id)(config)

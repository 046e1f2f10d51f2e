"""Which data a run trains and validates on, resolved from the experiment's ``data`` section.

The symbol split (stratified by sector) and the time split are made here, saved with the run,
and turned into env configs for *train* and *validation* only. The test part is recorded so a
later backtest (``app/evaluation``) can use it, but no training or tuning code path ever
receives its symbols or its window (``tests/unit/training/test_run_data.py`` proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from app.config.loader import require_store
from app.config.schema import DataSelection, Experiment
from app.data.schema import DatasetKey, MarketType
from app.data.split_types import Split
from app.data.splits import split_by_symbol, split_by_time
from app.data.store import ParquetStore
from app.errors import ConfigError
from app.runs.env_factory import DataSpec

PERIODS_PER_YEAR = {"1d": 252.0, "1h": 24 * 365.0, "4h": 6 * 365.0, "1w": 52.0, "1mo": 12.0}
PARTS = ("train", "validation", "test")
#: synthetic markets: each part trades its own generated path (train, validation, test)
SYNTHETIC_SEED_OFFSET = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class RunData:
    """Env configs for the parts training may see, plus the splits to save with the run."""

    train_env_config: dict[str, Any]
    validation_env_config: dict[str, Any] | None
    splits: dict[str, Split]
    periods_per_year: float


def make_splits(exp: Experiment) -> dict[str, Split]:
    """The experiment's symbol and time splits (seeded by ``exp.seed``)."""
    data = exp.data
    if data is None:
        return {}
    store = _store(exp)
    key = _key(exp)
    universe = _universe(exp, store)
    splits: dict[str, Split] = {}
    if data.by_symbol is not None:
        meta = (pd.read_parquet(data.by_symbol.metadata) if data.by_symbol.metadata
                else pd.DataFrame({"symbol": universe, "sector": "Unknown"}))
        meta = meta[meta["symbol"].isin(universe)]
        splits["by_symbol"] = split_by_symbol(meta, seed=exp.seed, fractions={str(k): float(v) for k, v in data.by_symbol.fractions.items()})
    if data.by_time is not None:
        if data.index is None:  # a train symbol's bars as the calendar (never a test symbol's)
            train = splits["by_symbol"].symbols.get("train", ()) if "by_symbol" in splits else universe
            calendar = store.read(key, list(train)[:1])["timestamp"]
        else:
            index_key = DatasetKey(data.index.source, MarketType(data.index.market_type), data.index.timeframe)
            calendar = store.read(index_key, [data.index.symbol])["timestamp"]
        splits["by_time"] = split_by_time(calendar, train_end=pd.Timestamp(data.by_time.train_end, tz="UTC"),
                                          validation_end=pd.Timestamp(data.by_time.validation_end, tz="UTC"),
                                          embargo_days=data.by_time.embargo_days)
    return splits


def env_config_for(exp: Experiment, splits: dict[str, Split], part: str) -> dict[str, Any] | None:
    """The env config that trades ``part`` of the data (None if that part has no symbols)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    base = dict(exp.env.config)
    if exp.data is None:
        return base | {"market_seed": int(base.get("market_seed", 0)) + SYNTHETIC_SEED_OFFSET[part]}
    data = exp.data
    symbols = (list(splits["by_symbol"].symbols.get(part, ())) if "by_symbol" in splits
               else _universe(exp, _store(exp)))
    if not symbols:
        return None
    key = _key(exp)
    spec = DataSpec(str(data.store), key.source, key.market_type.value, key.timeframe, tuple(symbols),
                    data.index.source if data.index else None, data.index.market_type if data.index else None,
                    data.index.symbol if data.index else None)
    config = base | {"data": spec.to_dict()}
    if "by_time" in splits:
        window = splits["by_time"].windows[part]
        config |= {"start_ts_ns": window.start.value, "end_ts_ns": window.end.value - 1}
    return config


def selected_env_config(exp: Experiment, splits: dict[str, Split], part: str,
                        selection: DataSelection | None) -> tuple[Experiment, dict[str, Any] | None, DataSelection]:
    """``part`` of the run's data with ``selection``'s fields in place of the run's own (a
    backtest on another store, dataset, universe or period: ``raytrade backtest --store
    --symbols --start --end``). Returns the experiment as changed, its env config (None if no
    symbols) and the selection less the fields that equal the run's own (empty: the run's data)."""
    selection = _effective(exp, selection or DataSelection())
    if selection.empty:
        return exp, env_config_for(exp, splits, part), selection
    if exp.data is None:
        raise ConfigError(f"{exp.name}: the run trades a synthetic market; --store / --symbols / --start / "
                          "--end / --data-spec select stored data")
    if selection.store is not None:
        require_store(selection.store, what="--store")
    update = {k: getattr(selection, k) for k in ("store", "dataset", "index", "symbols")
              if getattr(selection, k) is not None}
    exp = exp.model_copy(update={"data": exp.data.model_copy(update=update)})
    if selection.symbols is not None:  # the chosen universe, not the part's symbols
        splits = {k: v for k, v in splits.items() if k != "by_symbol"}
    config = env_config_for(exp, splits, part)
    if config is not None and selection.start is not None:
        config["start_ts_ns"] = pd.Timestamp(selection.start, tz="UTC").value
    if config is not None and selection.end is not None:
        config["end_ts_ns"] = pd.Timestamp(selection.end, tz="UTC").value - 1
    return exp, config, selection


def _effective(exp: Experiment, selection: DataSelection) -> DataSelection:
    """``selection`` without the store, dataset or index that repeat the run's own (symbols
    stay: listing them trades exactly those instead of the part's)."""
    if exp.data is None:
        return selection
    own = {"store": Path(exp.data.store).resolve(), "dataset": exp.data.dataset, "index": exp.data.index}
    given = {"store": Path(selection.store).resolve() if selection.store is not None else None,
             "dataset": selection.dataset, "index": selection.index}
    same = {k for k, v in given.items() if v is not None and v == own[k]}
    return selection.model_copy(update=dict.fromkeys(same)) if same else selection


def data_record(env_config: dict[str, Any], selection: DataSelection) -> dict[str, Any]:
    """Which data an env config trades, as plain data (a backtest's ``data_spec.json``): the
    store, dataset, index and symbols, the UTC window, and what was chosen instead of the run's."""
    spec = dict(env_config.get("data") or {})
    window = {k.removesuffix("_ts_ns"): pd.Timestamp(env_config[k], tz="UTC").isoformat()
              if env_config.get(k) is not None else None for k in ("start_ts_ns", "end_ts_ns")}
    if not spec:  # a synthetic market
        spec = {k: env_config[k] for k in ("synthetic", "market_seed", "synthetic_params") if k in env_config}
    return spec | window | {"selection": selection.model_dump(mode="json", exclude_none=True) or None}


def resolve_run_data(exp: Experiment) -> RunData:
    """Splits plus the train and validation env configs (never the test one)."""
    splits = make_splits(exp)
    train = env_config_for(exp, splits, "train")
    if train is None:
        raise ValueError(f"{exp.name}: the train split has no symbols")
    return RunData(train, env_config_for(exp, splits, "validation"), splits, periods_per_year(exp))


def periods_per_year(exp: Experiment) -> float:
    return PERIODS_PER_YEAR.get(exp.data.dataset.timeframe, 252.0) if exp.data else 252.0


def _key(exp: Experiment) -> DatasetKey:
    assert exp.data is not None, "store-backed experiments only"
    ds = exp.data.dataset
    return DatasetKey(ds.source, MarketType(ds.market_type), ds.timeframe)


def _store(exp: Experiment) -> ParquetStore:
    """The experiment's store; a missing one is said as such (not an empty universe)."""
    assert exp.data is not None, "store-backed experiments only"
    return ParquetStore(require_store(exp.data.store))


def _universe(exp: Experiment, store: ParquetStore) -> list[str]:
    assert exp.data is not None, "store-backed experiments only"
    return list(exp.data.symbols) if exp.data.symbols else store.symbols(_key(exp))

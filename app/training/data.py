"""Which data a run trains and validates on, resolved from the experiment's ``data`` section.

The symbol split (stratified by sector) and the time split are made here, saved with the run,
and turned into env configs for *train* and *validation* only. The test part is recorded so a
later backtest can use it, but no training or tuning code path ever receives its symbols or
its window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from app.config.schema import Experiment
from app.data.schema import DatasetKey
from app.data.split_types import Split
from app.data.splits import split_by_symbol, split_by_time
from app.data.store import ParquetStore
from app.training.env_factory import DataSpec

PERIODS_PER_YEAR = {"1d": 252.0, "1h": 24 * 365.0, "4h": 6 * 365.0, "1w": 52.0, "1mo": 12.0}


@dataclass(frozen=True)
class RunData:
    """Env configs for the parts training may see, plus the splits to save with the run."""

    train_env_config: dict[str, Any]
    validation_env_config: dict[str, Any] | None
    splits: dict[str, Split]
    periods_per_year: float


def resolve_run_data(exp: Experiment) -> RunData:
    base = dict(exp.env.config)
    if exp.data is None:  # synthetic markets: the env generates its own data
        return RunData(base, base | {"market_seed": int(base.get("market_seed", 0)) + 1}, {}, 252.0)
    data = exp.data
    store = ParquetStore(data.store)
    key = DatasetKey(data.dataset.source, data.dataset.market_type, data.dataset.timeframe)
    universe = list(data.symbols) if data.symbols else store.symbols(key)
    splits: dict[str, Split] = {}
    parts = {"train": universe, "validation": universe}
    if data.by_symbol is not None:
        meta = (pd.read_parquet(data.by_symbol.metadata) if data.by_symbol.metadata
                else pd.DataFrame({"symbol": universe, "sector": "Unknown"}))
        meta = meta[meta["symbol"].isin(universe)]
        splits["by_symbol"] = split_by_symbol(meta, seed=exp.seed, fractions=dict(data.by_symbol.fractions))
        parts = {p: list(splits["by_symbol"].symbols.get(p, ())) for p in ("train", "validation")}
    windows: dict[str, dict[str, int]] = {}
    if data.by_time is not None:
        calendar = store.read(key, universe[:1])["timestamp"] if data.index is None else store.read(
            DatasetKey(data.index.source, data.index.market_type, data.index.timeframe), [data.index.symbol])["timestamp"]
        splits["by_time"] = split_by_time(calendar, train_end=pd.Timestamp(data.by_time.train_end, tz="UTC"),
                                          validation_end=pd.Timestamp(data.by_time.validation_end, tz="UTC"),
                                          embargo_days=data.by_time.embargo_days)
        for part in ("train", "validation"):
            window = splits["by_time"].windows[part]
            windows[part] = {"start_ts_ns": window.start.value, "end_ts_ns": window.end.value - 1}

    def env_config(part: str) -> dict[str, Any]:
        spec = DataSpec(str(data.store), key.source, key.market_type.value, key.timeframe, tuple(parts[part]),
                        data.index.source if data.index else None,
                        data.index.market_type if data.index else None,
                        data.index.symbol if data.index else None)
        return base | {"data": spec.to_dict()} | windows.get(part, {})

    validation = env_config("validation") if parts["validation"] else None
    return RunData(env_config("train"), validation, splits, PERIODS_PER_YEAR.get(key.timeframe, 252.0))

"""Run data: splits become env configs for train and validation only; test never leaks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app.config.loader import parse_experiment
from app.data.schema import DatasetKey
from app.data.store import ParquetStore
from app.runs.data import resolve_run_data
from app.runs.env_factory import DataSpec, create_env, load_env_data
from tests.unit.data.conftest import make_bars

SECTORS = ["Tech", "Energy", "Health"]


@pytest.fixture
def store_and_meta(tmp_path):
    store = ParquetStore(tmp_path / "store")
    symbols = [f"S{i:02d}" for i in range(15)]
    frames = [make_bars(n=400, symbol=s, start="2015-01-01", seed=i) for i, s in enumerate(symbols)]
    store.write(DatasetKey("t", "stock", "1d"), pd.concat(frames))
    store.write(DatasetKey("t", "index", "1d"), make_bars(n=400, symbol="^IDX", start="2015-01-01", seed=99))
    meta = pd.DataFrame({"symbol": symbols, "sector": [SECTORS[i % 3] for i in range(15)]})
    meta_path = tmp_path / "meta.parquet"
    meta.to_parquet(meta_path)
    return store, meta_path


def experiment(store, meta_path, **data_extra):
    return parse_experiment({
        "name": "t", "seed": 4, "env": {"id": "raytrade/StockSwing-v0", "config": {"window_bars": 10, "episode_bars": 20}},
        "data": {"store": str(store.root), "dataset": {"source": "t", "market_type": "stock", "timeframe": "1d"},
                 "index": {"source": "t", "market_type": "index", "timeframe": "1d", "symbol": "^IDX"},
                 "by_symbol": {"metadata": str(meta_path)},
                 "by_time": {"train_end": "2015-09-01", "validation_end": "2015-12-01", "embargo_days": 5},
                 **data_extra},
    })


def test_test_split_never_reaches_an_env_config(store_and_meta):
    store, meta_path = store_and_meta
    run = resolve_run_data(experiment(store, meta_path))
    test_symbols = set(run.splits["by_symbol"].symbols["test"])
    test_window = run.splits["by_time"].windows["test"]
    assert test_symbols  # there is a test part, and it is held out:
    blob = json.dumps([run.train_env_config, run.validation_env_config])
    assert not any(s in blob for s in test_symbols)
    for cfg in (run.train_env_config, run.validation_env_config):
        assert cfg["end_ts_ns"] < test_window.start.value
    assert set(run.train_env_config["data"]["symbols"]).isdisjoint(run.validation_env_config["data"]["symbols"])


def test_env_built_from_a_data_spec_trades_only_its_symbols(store_and_meta):
    store, meta_path = store_and_meta
    run = resolve_run_data(experiment(store, meta_path))
    load_env_data.cache_clear()
    env = create_env("raytrade/StockSwing-v0", run.train_env_config | {"num_envs": 3})
    obs, info = env.reset(seed=0)
    assert set(obs) >= {"daily_hloc", "index_hloc"} and np.isfinite(obs["daily_hloc"]).all()
    spec = DataSpec.from_dict(run.train_env_config["data"])
    market, index = load_env_data(spec)
    assert set(market.symbols) == set(spec.symbols) and index.symbols == ("^IDX",)
    env.close()


def test_synthetic_experiments_need_no_data():
    exp = parse_experiment({"name": "s", "env": {"id": "raytrade/SyntheticMeanReversion-v0", "config": {"market_seed": 2}}})
    run = resolve_run_data(exp)
    assert run.splits == {} and run.validation_env_config["market_seed"] == 3  # another path


@pytest.fixture
def store_reads(monkeypatch) -> list[str]:
    """Every symbol read from any ParquetStore (bars or arrays) while the test runs."""
    reads: list[str] = []
    real_read, real_load = ParquetStore.read, ParquetStore.load_arrays

    def read(self, key, symbols=None, *args, **kwargs):
        reads.extend(symbols if symbols is not None else self.symbols(key))
        return real_read(self, key, symbols, *args, **kwargs)

    def load_arrays(self, key, symbols=None):
        reads.extend(symbols if symbols is not None else self.symbols(key))
        return real_load(self, key, symbols)

    monkeypatch.setattr(ParquetStore, "read", read)
    monkeypatch.setattr(ParquetStore, "load_arrays", load_arrays)
    load_env_data.cache_clear()
    return reads


def test_training_code_paths_never_read_test_symbols_from_the_store(store_and_meta, store_reads):
    """Instrument the store: building splits and the train/validation envs reads no test bars."""
    store, meta_path = store_and_meta
    run = resolve_run_data(experiment(store, meta_path))
    for cfg in (run.train_env_config, run.validation_env_config):
        create_env("raytrade/StockSwing-v0", cfg | {"num_envs": 2}).close()
    test_symbols = set(run.splits["by_symbol"].symbols["test"])
    assert store_reads and not test_symbols & set(store_reads)

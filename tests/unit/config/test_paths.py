"""Experiment files work from any directory: input paths are resolved against the file, the
default bounds file is found through the package, missing inputs fail at load time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.config.loader import load_experiment, parse_experiment
from app.config.schema import DEFAULT_BOUNDS_FILE
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
DATA = """
name: paths
data:
  store: {store}
  dataset: {{source: mine, market_type: stock, timeframe: 1d}}
  by_symbol: {{metadata: {metadata}}}
env: {{id: raytrade/StockSwing-v0}}
"""


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The working directory: a directory that holds none of the experiment's files."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def experiment_dir(tmp_path) -> Path:
    folder = tmp_path / "configs" / "stocks"
    (folder / "meta").mkdir(parents=True)
    (folder / "meta" / "sectors.parquet").write_bytes(b"")
    (folder / "bounds.yaml").write_text("[]\n")
    return folder


def test_relative_inputs_resolve_against_the_file_not_the_working_directory(tmp_path, elsewhere):
    folder = experiment_dir(tmp_path)
    path = folder / "exp.yaml"
    path.write_text(DATA.format(store="../store", metadata="meta/sectors.parquet")
                    + "tracking: {bounds_file: bounds.yaml, runs_dir: runs}\n")
    exp = load_experiment(path)
    assert exp.data.store == (tmp_path / "configs" / "store").resolve()
    assert exp.data.by_symbol.metadata == folder / "meta" / "sectors.parquet"
    assert exp.tracking.bounds_file == folder / "bounds.yaml"
    assert exp.tracking.runs_dir == Path("runs")  # outputs stay where the command runs


def test_override_paths_resolve_against_the_working_directory(tmp_path, elsewhere):
    folder = experiment_dir(tmp_path)
    path = folder / "exp.yaml"
    path.write_text(DATA.format(store="s", metadata="meta/sectors.parquet"))
    exp = load_experiment(path, ["data.store=mystore"])
    assert exp.data.store == elsewhere.resolve() / "mystore"


def test_absolute_paths_are_kept(tmp_path, elsewhere):
    folder = experiment_dir(tmp_path)
    path = folder / "exp.yaml"
    path.write_text(DATA.format(store="/data/store", metadata=folder / "meta" / "sectors.parquet"))
    exp = load_experiment(path)
    assert exp.data.store == Path("/data/store")


def test_the_default_store_is_the_data_commands_one_made_absolute(tmp_path, elsewhere, monkeypatch):
    folder = experiment_dir(tmp_path)
    path = folder / "exp.yaml"
    path.write_text(DATA.format(store="x", metadata="meta/sectors.parquet").replace("  store: x\n", ""))
    monkeypatch.delenv("RAYTRADE_STORE", raising=False)
    assert load_experiment(path).data.store == elsewhere.resolve() / "store"
    monkeypatch.setenv("RAYTRADE_STORE", str(tmp_path / "shared"))
    assert load_experiment(path).data.store == tmp_path / "shared"


def test_the_default_bounds_file_is_found_from_any_directory(tmp_path, elsewhere):
    path = tmp_path / "exp.yaml"
    path.write_text("name: b\nenv: {id: raytrade/SyntheticGBM-v0}\n")
    exp = load_experiment(path)
    assert exp.tracking.bounds_file == DEFAULT_BOUNDS_FILE and DEFAULT_BOUNDS_FILE.is_file()
    assert DEFAULT_BOUNDS_FILE == ROOT / "tune_configs" / "bounds.yaml"


def test_runs_saved_with_the_old_relative_default_still_find_the_shipped_bounds(elsewhere):
    exp = parse_experiment({"name": "old", "env": {"id": "raytrade/SyntheticGBM-v0"},
                            "tracking": {"bounds_file": "tune_configs/bounds.yaml"}})
    assert exp.tracking.bounds_file == DEFAULT_BOUNDS_FILE


@pytest.mark.parametrize(("tracking", "message"), [
    ("{bounds_file: missing.yaml}", "tracking.bounds_file"),
    ("{bounds_file: null}", None),
])
def test_a_missing_bounds_file_fails_at_load_time(tmp_path, elsewhere, tracking, message):
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: b\nenv: {{id: raytrade/SyntheticGBM-v0}}\ntracking: {tracking}\n")
    if message is None:
        assert load_experiment(path).tracking.bounds_file is None
        return
    with pytest.raises(ConfigError, match=f"{path}.*{message}.*missing.yaml.*does not exist"):
        load_experiment(path)


def test_a_missing_metadata_file_fails_at_load_time(tmp_path, elsewhere):
    folder = experiment_dir(tmp_path)
    path = folder / "exp.yaml"
    path.write_text(DATA.format(store="s", metadata="nope.parquet"))
    with pytest.raises(ConfigError, match=r"data.by_symbol.metadata: .*nope.parquet does not exist"):
        load_experiment(path)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "tune_configs").glob("*.yaml")
                                        if p.name != "bounds.yaml"))
def test_every_shipped_experiment_loads_from_another_directory(elsewhere, name):
    exp = load_experiment(ROOT / "tune_configs" / name)
    if exp.data is not None and exp.data.by_symbol is not None:
        assert exp.data.by_symbol.metadata.is_file()
    assert exp.tracking.bounds_file is None or exp.tracking.bounds_file.is_file()


def test_the_saved_experiment_holds_absolute_input_paths(tmp_path, elsewhere):
    folder = experiment_dir(tmp_path)
    path = folder / "exp.yaml"
    path.write_text(DATA.format(store="../store", metadata="meta/sectors.parquet"))
    dumped = yaml.safe_load(yaml.safe_dump(load_experiment(path).model_dump(mode="json")))
    assert Path(dumped["data"]["store"]).is_absolute()
    assert Path(dumped["data"]["by_symbol"]["metadata"]).is_absolute()
    assert Path(dumped["tracking"]["bounds_file"]).is_absolute()

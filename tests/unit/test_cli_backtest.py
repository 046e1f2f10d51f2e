"""``raytrade backtest RUN --store/--symbols/--start/--end/--data-spec``: a trained run on other
data without copying the run, recorded in the output; ``--store`` on evaluate too. The run is a
random-weight MLP saved as the final policy (no training, no Ray cluster)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from app.cli import app
from app.config.loader import data_selection, parse_experiment, with_store
from app.config.schema import DataSelection
from app.data.schema import DatasetKey
from app.data.store import ParquetStore
from app.errors import ConfigError
from app.models import module_spec
from app.runs.data import selected_env_config
from app.runs.env_factory import create_env
from app.runs.run_dir import RunDir
from tests.unit.data.conftest import make_bars
from tests.unit.models import small_config

torch.set_num_threads(1)
runner = CliRunner()
KEY = DatasetKey("mine", "stock", "1d")
ENV = {"id": "raytrade/StockSwing-v0", "config": {"window_bars": 10, "mode": "swing", "reward": "log_return",
                                                  "episode_bars": 50}}


def make_store(root, symbols, seed=0):
    store = ParquetStore(root)
    for i, symbol in enumerate(symbols):
        store.write(KEY, make_bars(n=300, symbol=symbol, start="2021-01-04", seed=seed + i))
    return root


@pytest.fixture
def stores(tmp_path):
    return make_store(tmp_path / "own", ["AAA", "BBB"]), make_store(tmp_path / "other", ["XXX", "YYY"], seed=5)


@pytest.fixture
def run(tmp_path, stores):
    exp = parse_experiment({"name": "bt", "seed": 1, "env": ENV,
                            "data": {"store": str(stores[0]), "dataset": {"source": "mine", "market_type": "stock"}},
                            "model": {"name": "mlp", "config": small_config("mlp")},
                            "tracking": {"runs_dir": str(tmp_path / "runs"), "bounds_file": None}})
    run = RunDir.create(exp)
    _, config, _ = selected_env_config(exp, {}, "test", None)
    env = create_env(ENV["id"], config | {"num_envs": 1})
    torch.manual_seed(0)
    module = module_spec("mlp", small_config("mlp"), observation_space=env.single_observation_space,
                         action_space=env.single_action_space).build()
    module.save_to_path(str(run.policy_dir("final")))
    return run


def test_backtest_on_another_store_symbols_and_period_is_recorded(run, stores):
    out = runner.invoke(app, ["backtest", str(run.path), "--store", str(stores[1]), "--symbols", "XXX",
                              "--start", "2021-04-01", "--end", "2021-09-01"])
    assert out.exit_code == 0, out.output
    (out_dir,) = [p for p in (run.path / "backtests").iterdir() if "data-" in p.name]
    assert out_dir.name.startswith("test-greedy-data-")
    spec = json.loads((out_dir / "data_spec.json").read_text())
    assert spec["store"] == str(stores[1].resolve()) and spec["symbols"] == ["XXX"]
    assert spec["start"].startswith("2021-04-01") and spec["end"] < "2021-09-01"
    assert spec["selection"]["symbols"] == ["XXX"]
    records = pd.read_parquet(out_dir / "records.parquet")
    assert set(records["symbol"]) == {"XXX"}
    assert records["timestamp"].min() >= pd.Timestamp("2021-04-01", tz="UTC")
    assert records["timestamp"].max() < pd.Timestamp("2021-09-01", tz="UTC")
    assert "data chosen" in (out_dir / "report.html").read_text()


def test_plain_backtest_records_the_runs_own_data_in_its_own_directory(run, stores, monkeypatch):
    monkeypatch.setenv("RAYTRADE_STORE", str(stores[0]))  # the run's own store: not "other data"
    out = runner.invoke(app, ["backtest", str(run.path)])
    assert out.exit_code == 0, out.output
    spec = json.loads((run.path / "backtests" / "test-greedy" / "data_spec.json").read_text())
    assert spec["store"] == str(stores[0].resolve()) and spec["symbols"] == ["AAA", "BBB"]
    assert spec["selection"] is None


def test_data_spec_file_with_options_over_it(run, stores, tmp_path):
    spec_file = tmp_path / "specs" / "other.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text("store: ../other\nsymbols: [XXX, YYY]\nstart: 2021-03-01\n")
    selection = data_selection(spec_file, symbols="YYY")
    assert selection.store == stores[1].resolve() and selection.symbols == ["YYY"]
    assert str(selection.start) == "2021-03-01"
    out = runner.invoke(app, ["backtest", str(run.path), "--data-spec", str(spec_file), "--symbols", "YYY"])
    assert out.exit_code == 0, out.output
    dirs = [p for p in (run.path / "backtests").iterdir() if p.name.endswith(selection.tag)]
    assert len(dirs) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--store", "nowhere"], "no store at"),
    (["--start", "2021-05-01", "--end", "2021-04-01"], "must be before end"),
    (["--start", "May"], "start"),
])
def test_bad_data_choices_are_clear_errors(run, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        runner.invoke(app, ["backtest", str(run.path), *args], catch_exceptions=False)


def test_a_synthetic_run_has_no_data_to_choose():
    exp = parse_experiment({"name": "s", "env": {"id": "raytrade/SyntheticGBM-v0"}})
    with pytest.raises(ConfigError, match="synthetic market"):
        selected_env_config(exp, {}, "test", DataSelection(symbols=["A"]))
    assert with_store(exp, "/anything") is exp  # a synthetic market reads no store


def test_with_store_replaces_the_store_and_says_when_it_is_missing(run, stores, tmp_path):
    from app.runs import resume_experiment

    exp = resume_experiment(run)
    assert with_store(exp, stores[1]).data.store == stores[1].resolve()
    with pytest.raises(ConfigError, match="--store: no store at .*missing"):
        with_store(exp, tmp_path / "missing")
    assert resume_experiment(run.with_store(stores[1])).data.store == stores[1].resolve()
    with pytest.raises(ConfigError, match="no store at"):
        run.with_store(tmp_path / "missing")


def test_a_runs_missing_store_is_said_as_such(run, stores, tmp_path):
    import shutil

    from app.runs import resume_experiment

    shutil.rmtree(stores[0])
    with pytest.raises(ConfigError, match="data.store: no store at"):
        selected_env_config(resume_experiment(run), {}, "test", None)


def test_evaluate_reads_the_store_given_with_store(run, stores, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.move(stores[0], moved)
    out = runner.invoke(app, ["evaluate", "greedy-vs-stochastic", str(run.path), "--samples", "1",
                              "--n-boot", "100", "--store", str(moved)])
    assert out.exit_code == 0, out.output
    assert (run.path / "studies" / "greedy_vs_stochastic" / "result.parquet").exists()

"""The `raytrade` command: light to start, clear on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.unit.data.conftest import make_bars

runner = CliRunner()


def test_help_imports_nothing_heavy():
    code = ("import sys, app.cli; heavy = [m for m in ('pandas', 'pyarrow', 'ray', 'torch', 'numpy') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_the_verbs():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output and "demo" in result.output


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "prices.csv"
    bars = make_bars(n=12, symbol="XYZ")
    bars.loc[3, "high"] = bars.loc[3, "low"] * 0.5
    bars.to_csv(path, index=False)
    return path


def test_import_repairs_stores_and_info_shows_it(tmp_path, csv_file):
    store = tmp_path / "store"
    result = runner.invoke(app, ["data", "import", str(csv_file), "--store", str(store), "--source", "mine"])
    assert result.exit_code == 0, result.output
    assert "12 rows" in result.output and "clip_ohlc" in result.output
    info = runner.invoke(app, ["data", "info", "--store", str(store), "--symbols"])
    assert info.exit_code == 0 and "XYZ" in info.output and "mine" in info.output


def test_validate_exits_1_and_names_the_fault(csv_file):
    result = runner.invoke(app, ["data", "validate", str(csv_file)])
    assert result.exit_code == 1
    assert "high_below_low" in result.output and "XYZ row 3" in result.output


def test_info_on_an_empty_store_says_how_to_fill_it(tmp_path):
    result = runner.invoke(app, ["data", "info", "--store", str(tmp_path)])
    assert result.exit_code == 0 and "raytrade data import" in result.output

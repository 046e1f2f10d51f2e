"""``raytrade trade`` end to end on a small store and a random-weight futures policy saved as a
run: a paper replay, a resumed replay (no bar decided twice), close-all, config errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import envs
from app.cli import app
from app.data.schema import DatasetKey, Kind
from app.data.store import ParquetStore
from app.trading.store import StateStore
from envs import synthetic
from envs.core.market import MarketArrays
from tests.unit.serve.helpers import build_module, save_run

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("trade")
    m = synthetic.generate_perpetual(seed=8, n_symbols=2, n_bars=300)
    m = MarketArrays(SYMBOLS, m.offsets, m.ts_ns, m.ohlcv, m.funding_rate, m.mark_ohlc)
    store = ParquetStore(root / "store")
    ts = pd.to_datetime(m.ts_ns, utc=True)
    sym = np.repeat(SYMBOLS, np.diff(m.offsets))
    bars = pd.DataFrame({"timestamp": ts, "symbol": sym, **{c: m.ohlcv[:, i] for i, c in
                                                            enumerate(("open", "high", "low", "close", "volume"))}})
    store.write(DatasetKey("binanceusdm", "swap", "1h"), bars)
    mark = pd.DataFrame({"timestamp": ts, "symbol": sym, **{c: m.mark_ohlc[:, i] for i, c in
                                                            enumerate(("open", "high", "low", "close"))}})
    store.write(DatasetKey("binanceusdm", "swap", "1h", Kind.MARK), mark)
    events = m.funding_rate != 0
    store.write(DatasetKey("binanceusdm", "swap", "events", Kind.FUNDING),
                pd.DataFrame({"timestamp": ts[events], "symbol": sym[events], "funding_rate": m.funding_rate[events]}))
    config = {"market": m, "window_bars": 8, "episode_bars": None, "random_start": False, "leverage": 3.0}
    run = save_run(build_module(config, "mlp", envs.CRYPTO_FUTURES), root / "runs", config, envs.CRYPTO_FUTURES)
    trade = {"name": "unit", "policy": str(run), "symbols": list(SYMBOLS), "budget_usd": 20_000,
             "state_db": str(root / "state.sqlite"), "replay": {"store": str(root / "store"),
                                                              "start": str(ts[250].date()), "end": "2100-01-01"}}
    path = root / "trade.yaml"
    path.write_text(yaml.safe_dump(trade))
    return root, path, ts


def test_replay_resume_and_close_all(setup):
    root, path, ts = setup
    cli = CliRunner()
    first = cli.invoke(app, ["trade", str(path), "--max-bars", "12"])
    assert first.exit_code == 0, first.output
    assert "12 bars" in first.output
    with StateStore(root / "state.sqlite", lock=False) as s:
        n_decisions, n_equity = len(s.decisions()), len(s.equity())
    assert n_decisions == 2 * 12 and n_equity == 2 * 12
    again = cli.invoke(app, ["trade", str(path), "--max-bars", "6"])  # resumes at the last bar
    assert again.exit_code == 0, again.output
    with StateStore(root / "state.sqlite", lock=False) as s:
        decisions = s.decisions()
        assert len(decisions) == 2 * (12 + 5)  # the resumed bar is not decided again
        assert len({(d["ts_ns"], d["symbol"]) for d in decisions}) == len(decisions)
        assert [e["kind"] for e in s.events()].count("start") == 2
    rep = cli.invoke(app, ["trade", "report", str(path)])
    assert rep.exit_code == 0, rep.output
    report = json.loads((root / "unit-report" / "report.json").read_text())["symbols"]
    assert [r["compared"] for r in report] == [17, 17]
    assert [r["mismatches"] for r in report] == [0, 0]  # paper from a flat start = the backtest, decision for decision
    for r in report:
        assert r["trader_fees_usd"] == pytest.approx(r["backtest_fees_usd"], rel=1e-9)
        assert r["trader_pnl_usd"] == pytest.approx(r["backtest_pnl_usd"], rel=1e-9, abs=1e-6)
    closed = cli.invoke(app, ["trade", "close-all", str(path)])
    assert closed.exit_code == 0 and "flat" in closed.output, closed.output
    with StateStore(root / "state.sqlite", lock=False) as s:
        books = s.get("books")
    assert all(b["qty"] == 0 for b in books.values())


def test_config_errors_name_the_key(setup, tmp_path):
    _, path, _ = setup
    raw = yaml.safe_load(path.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw | {"budget_usd": -1, "typo": 1}))
    out = CliRunner().invoke(app, ["trade", str(bad)])
    assert out.exit_code != 0
    assert "budget_usd" in str(out.exception) and "typo" in str(out.exception)
    bad.write_text(yaml.safe_dump(raw | {"exchange": {"id": "binanceusdm", "api_key": "x"}}))
    assert "secrets come from the environment" in str(CliRunner().invoke(app, ["trade", str(bad)]).exception)
    bad.write_text(yaml.safe_dump(raw | {"leverage": 10}))
    assert "trained with leverage 3" in str(CliRunner().invoke(app, ["trade", str(bad)]).exception)

"""A small world for the dashboard tests: a store, a run directory with one backtest (records,
summary, data spec, written by hand in the pipeline's layout) and, on request, MLflow runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from app.data.schema import DatasetKey
from app.data.store import ParquetStore
from app.ui.dashboard_data import Sources
from tests.unit.ui.helpers import frame

RUN = "demo_stocks_gru-20260101-000000"
BACKTEST = "test-greedy"
SYMBOLS = ("AAA", "BBB", "CCC")
KEY = "a-long-enough-dashboard-key-123"


def _records(bars: pd.DataFrame, symbol: str, start: int, n: int, seed: int) -> pd.DataFrame:
    """``n`` decisions from bar ``start``: buy every 10th bar, hold 5 (buy_only-like), fills at
    the next open (no costs: the explorer only draws what the records say)."""
    rng = np.random.default_rng(seed)
    b = bars[bars["symbol"] == symbol].reset_index(drop=True)
    action = np.array([1 if k % 10 == 2 else 0 for k in range(n)])
    qty, cash, rows = 0.0, 10_000.0, []
    held = 0
    for k in range(n):
        fill = b.iloc[start + k + 1]
        fill_price = 0.0
        if action[k] == 1 and qty == 0:
            qty, cash, fill_price, held = cash / fill["open"], 0.0, fill["open"], 0
        elif qty > 0 and held >= 5:
            cash, qty, fill_price = qty * fill["open"], 0.0, fill["open"]
        held += qty > 0
        p1 = float(np.clip(0.2 + 0.6 * (action[k] == 1) + rng.normal(0, 0.05), 0.01, 0.99))
        rows.append({"timestamp": fill["timestamp"], "symbol": symbol, "sample": 0, "step": k,
                     "observation_id": start + k, "action": int(action[k]), "value": float(rng.normal(0, 0.1)),
                     "reward": 0.0, "equity_usd": cash + qty * fill["close"], "position_qty": qty,
                     "fill_price_usd": fill_price, "fee_usd": 0.0, "funding_usd": 0.0,
                     "prob_0": 1 - p1, "prob_1": p1})
    return pd.DataFrame(rows)


def _summary(records: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for symbol, part in records.groupby("symbol"):
        eq = part["equity_usd"].to_numpy()
        for strategy, ret in (("agent", eq[-1] / 1e4 - 1), ("buy_and_hold", 0.5 * (eq[-1] / 1e4 - 1) + 0.01),
                              ("index", 0.02)):
            for metric, value in (("total_return", ret), ("sharpe", 3 * ret), ("trades", 4.0)):
                rows.append({"strategy": strategy, "scope": "symbol", "symbol": symbol, "metric": metric,
                             "value": value, "ci_low": np.nan, "ci_high": np.nan, "n": 1, "ci_method": "none"})
        rows.append({"strategy": "agent", "scope": "cross_section", "symbol": "ALL", "metric": "total_return",
                     "value": 0.0, "ci_low": np.nan, "ci_high": np.nan, "n": 3, "ci_method": "none"})
    return pd.DataFrame(rows)


def build(root: Path, *, mlflow: bool = False, n_bars: int = 260, decisions: int = 120) -> Sources:
    store = ParquetStore(root / "store")
    bars = frame(SYMBOLS, n_bars=n_bars)
    store.write(DatasetKey("stooq", "index", "1d"), frame(("^GSPC",), n_bars=n_bars, seed=9))
    store.write(DatasetKey("stooq", "stock", "1d"), bars)
    runs_dir = root / "runs"
    run = runs_dir / RUN
    out = run / "backtests" / BACKTEST
    out.mkdir(parents=True)
    (run / "experiment.yaml").write_text(yaml.safe_dump({
        "name": "demo_stocks_gru", "env": {"id": "raytrade/StockSwing-v0",
                                           "config": {"mode": "buy_only", "initial_cash_usd": 10_000.0}}}))
    records = pd.concat([_records(bars, s, 60 + 5 * i, decisions, i) for i, s in enumerate(SYMBOLS)],
                        ignore_index=True)
    records.to_parquet(out / "records.parquet")
    _summary(records).to_parquet(out / "summary.parquet")
    (out / "data_spec.json").write_text(json.dumps({
        "store": str(store.root), "source": "stooq", "market_type": "stock", "timeframe": "1d",
        "symbols": list(SYMBOLS), "index_source": "stooq", "index_market_type": "index", "index_symbol": "^GSPC"}))
    # a file store: no schema migrations to run (a new sqlite store takes ~10 s to create)
    study = run / "studies" / "greedy_vs_stochastic"
    study.mkdir(parents=True)
    pd.DataFrame({"mode": ["greedy", "stochastic"], "total_return": [0.05, 0.02], "ci_low": [np.nan, -0.01]}
                 ).to_parquet(study / "result.parquet")
    (study / "notes.json").write_text(json.dumps({"greedy_minus_stochastic": 0.03, "p_value": float("nan")}))
    from PIL import Image

    Image.new("RGB", (64, 32), (30, 136, 229)).save(study / "plot.png")
    # a file store: no schema migrations to run (a new sqlite store takes ~10 s to create)
    uri = (root / "mlruns").as_uri()
    run_id = None
    if mlflow:
        run_id = _mlflow_runs(uri)
    (run / "state.json").write_text(json.dumps({"iteration": 10, "env_steps": 20480, "mlflow_run_id": run_id,
                                                "status": "finished"}))
    trader(root / "trading_state" / f"{ACCOUNT}.sqlite")
    return Sources(uri, runs_dir, None, root / "trading_state")


ACCOUNT = "paper-btc"
DAY_NS = 86_400 * 10**9


def trader(path: Path) -> None:
    """A trader's state written by the trader's own store (app/trading/store.py): two symbol
    books, decisions, a filled and a rejected order, events ending with the kill switch."""
    from app.trading.broker import OrderRequest, OrderState
    from app.trading.store import StateStore

    t0 = 1_735_689_600 * 10**9  # 2025-01-01
    with StateStore(path, lock=False, durable=False) as store:
        store.add_event("start", "paper account, 2 symbols", t0)
        for k in range(6):
            for i, symbol in enumerate(("BTC/USDT:USDT", "ETH/USDT:USDT")):
                store.add_equity(t0 + k * DAY_NS, symbol, 5_000.0 + 10 * k * (1 + i), 0.1 * (k > 1), 100.0 + k)
        did = store.add_decision(t0 + DAY_NS, "BTC/USDT:USDT", 2, 1.0, probs=[0.1, 0.2, 0.7], value=0.3,
                                 ref_price=101.0)
        store.add_order(OrderRequest("c-1", "BTC/USDT:USDT", 0.1, 1.0), did)
        store.set_order("c-1", OrderState.FILLED)
        store.add_order(OrderRequest("c-2", "ETH/USDT:USDT", -0.2, -1.0), None)
        store.set_order("c-2", OrderState.REJECTED, error="insufficient margin")
        store.add_event("kill", "drawdown 12.0% > 10.0%", t0 + 5 * DAY_NS)


def _mlflow_runs(uri: str) -> str:
    """Two finished runs with learning curves, one batch each (the second a trial of a sweep);
    returns the first one's id."""
    import os
    import time

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("demo")
    ids = []
    now = int(time.time() * 1000)
    sweep = client.create_run(exp, run_name="sweep", tags={"mlflow.runName": "sweep"}).info.run_id
    for name, slope in ((RUN, 1.0), ("other-run", 0.5)):
        tags = {"mlflow.runName": name} | ({"mlflow.parentRunId": sweep} if name != RUN else {})
        run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
        metrics = [Metric(key, value, now, k * 2048) for k in range(1, 11)
                   for key, value in (("env_runners/episode_return_mean", slope * float(np.log(k))),
                                      ("val_greedy/sharpe", 0.1 * k * slope), ("iteration", float(k)))]
        client.log_batch(run_id, metrics=metrics, params=[Param("algorithm.lr", str(5e-4 * slope)),
                                                          Param("model.name", "gru")])
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    return ids[0]

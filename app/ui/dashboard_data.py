"""What the dashboard shows, as plain JSON-ready data: runs from MLflow joined with their run
directories, learning curves, two runs compared, and a backtest's records per symbol with the
bars they were decided on.

Sources: MLflow through :mod:`app.tracking.mlflow_tracker` (the one adapter), run directories
through :mod:`app.runs`, backtest Parquet files (``<run>/backtests/<name>/records.parquet``,
``summary.parquet``, ``data_spec.json``, written by :mod:`app.evaluation.pipeline`) and the bars
from the store the backtest traded (:mod:`app.data.store`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.errors import RaytradeError
from app.runs import RunDir
from app.tracking import runs_view as rv
from app.tracking.mlflow_tracker import read_histories, read_runs

#: learning curves drawn on a run's page (those the run logged)
CURVE_KEYS = ("env_runners/episode_return_mean", "val_greedy/sharpe", "val_greedy/return",
              "val_greedy/total_return", "learners/default_policy/entropy",
              "learners/default_policy/policy_loss", "learners/default_policy/vf_loss")
#: per-symbol metrics the symbol picker can filter and sort by
SYMBOL_METRICS = ("total_return", "sharpe", "max_drawdown", "trades", "exposure")
#: bars of history shown before a backtest's first decision
LEAD_BARS = 30


class NotFound(RaytradeError):
    """A run, backtest or symbol the dashboard was asked for does not exist."""


@dataclass(frozen=True)
class Sources:
    mlflow_uri: str
    runs_dir: Path
    store: Path | None = None  # replaces the store a backtest recorded (data_spec.json)
    trader_dir: Path = Path("trading_state")  # the live traders' state databases


def json_ready(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python (JSON has neither)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- runs ---------------------------------------------------------------------------------

def run_dirs(runs_dir: Path) -> dict[str, RunDir]:
    """Run directories under ``runs_dir`` by name (those with an ``experiment.yaml``)."""
    if not runs_dir.is_dir():
        return {}
    return {p.name: RunDir(p) for p in sorted(runs_dir.iterdir()) if (p / "experiment.yaml").is_file()}


def backtest_names(run: RunDir) -> list[str]:
    root = run.path / "backtests"
    return sorted(p.name for p in root.iterdir() if (p / "records.parquet").is_file()) if root.is_dir() else []


def _mlflow_ids(dirs: dict[str, RunDir]) -> dict[str, str]:
    out = {}
    for name, run in dirs.items():
        try:
            run_id = run.state().mlflow_run_id
        except (OSError, ValueError):
            continue
        if run_id:
            out[run_id] = name
    return out


def list_runs(src: Sources) -> list[dict[str, Any]]:
    """Every MLflow run (newest first), with its run directory and backtests where there is one,
    then run directories MLflow does not know."""
    dirs = run_dirs(src.runs_dir)
    by_id = _mlflow_ids(dirs)
    out, seen = [], set()
    for rec in read_runs(src.mlflow_uri):
        name = by_id.get(rec["run_id"])
        seen.add(name)
        out.append(_run_row(rec, name, dirs.get(name) if name else None))
    for name, run in dirs.items():
        if name not in seen:
            out.append(_run_row(None, name, run))
    return json_ready(out)


def _run_row(rec: rv.Record | None, dir_name: str | None, run: RunDir | None) -> dict[str, Any]:
    metrics = dict(rec["metrics"]) if rec else {}
    return {"id": rec["run_id"] if rec else dir_name, "mlflow_run_id": rec["run_id"] if rec else None,
            "name": rec["name"] if rec else dir_name, "run_dir": dir_name,
            "experiment": rec["experiment"] if rec else None, "status": rec["status"] if rec else "?",
            "parent_id": rec["parent_id"] if rec else None,
            "started": rv.fmt_time(rec["start_ms"]) if rec else "", "env_steps": _env_steps(rec, run),
            "metrics": {k: metrics.get(k) for k in rv.DEFAULT_METRICS},
            "backtests": backtest_names(run) if run is not None else []}


def _env_steps(rec: rv.Record | None, run: RunDir | None) -> int | None:
    """The run directory's count (lifetime env steps), else ``raytrade runs``'s rule on the
    MLflow record (its step-count metric, or the largest step of the histories read)."""
    if run is not None:
        try:
            if run.state().env_steps:
                return int(run.state().env_steps)
        except (OSError, ValueError):
            pass
    return rv.env_steps(rec) if rec else None


def _record(src: Sources, ref: str) -> tuple[rv.Record | None, RunDir | None]:
    dirs = run_dirs(src.runs_dir)
    records = read_runs(src.mlflow_uri)
    rec = next((r for r in records if r["run_id"] == ref), None)
    if rec is None and ref in dirs:
        run_id = dirs[ref].state().mlflow_run_id
        rec = next((r for r in records if r["run_id"] == run_id), None)
    if rec is None and ref not in dirs:
        raise NotFound(f"no run {ref!r} in {src.mlflow_uri} or under {src.runs_dir}")
    name = _mlflow_ids(dirs).get(rec["run_id"]) if rec is not None else ref
    return rec, dirs.get(name) if name else None


def run_detail(src: Sources, ref: str) -> dict[str, Any]:
    """One run: its row, parameters, every latest metric and the learning curves it logged."""
    rec, run = _record(src, ref)
    curves: dict[str, list[list[float]]] = {}
    if rec is not None:
        read_histories(src.mlflow_uri, [rec], list(CURVE_KEYS))  # type: ignore[list-item]
        curves = {k: [[s, v] for s, v in rec["history"].get(k, []) if math.isfinite(v)] for k in CURVE_KEYS
                  if rec["history"].get(k)}
    row = _run_row(rec, run.name if run else None, run)
    return json_ready(row | {"params": dict(rec["params"]) if rec else {},
                         "all_metrics": dict(sorted(rec["metrics"].items())) if rec else {}, "curves": curves})


def compare(src: Sources, a: str, b: str) -> dict[str, Any]:
    """Two runs side by side: both details, the parameters that differ, metrics with deltas."""
    da, db = run_detail(src, a), run_detail(src, b)
    diff = rv.param_diff(da["params"], db["params"])
    keys = sorted(set(da["all_metrics"]) & set(db["all_metrics"]))
    metrics = [{"key": k, "a": da["all_metrics"][k], "b": db["all_metrics"][k]} for k in keys]
    return json_ready({"a": da, "b": db, "params": [{"key": k, "a": va, "b": vb} for k, va, vb in diff],
                   "metrics": metrics})


# --- studies (``raytrade evaluate STUDY RUN``: <run>/studies/<study>/) ----------------------

MAX_STUDY_ROWS = 200


def _run_dir(src: Sources, run_name: str) -> RunDir:
    run = run_dirs(src.runs_dir).get(run_name)
    if run is None:
        raise NotFound(f"no run directory {run_name!r} under {src.runs_dir}")
    return run


def studies(src: Sources, run_name: str) -> list[dict[str, Any]]:
    """Each study written for the run: headline notes, its table (first rows), a plot or not."""
    root = _run_dir(src, run_name).path / "studies"
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not (path / "result.parquet").is_file():
            continue
        table = pd.read_parquet(path / "result.parquet")
        notes = json.loads((path / "notes.json").read_text()) if (path / "notes.json").is_file() else {}
        out.append({"study": path.name, "notes": notes, "columns": [str(c) for c in table.columns],
                    "rows": table.head(MAX_STUDY_ROWS).astype(object).where(table.notna(), None).values.tolist(),
                    "n_rows": len(table), "plot": (path / "plot.png").is_file()})
    return json_ready(out)


def study_plot(src: Sources, run_name: str, study: str) -> Path:
    root = (_run_dir(src, run_name).path / "studies").resolve()
    path = (root / study / "plot.png").resolve()
    if path.parent.parent != root or not path.is_file():
        raise NotFound(f"{run_name}: no plot for study {study!r}")
    return path


# --- backtests ----------------------------------------------------------------------------

def _backtest_dir(src: Sources, run_name: str, backtest: str) -> tuple[RunDir, Path]:
    run = _run_dir(src, run_name)
    if backtest not in backtest_names(run):
        raise NotFound(f"{run_name}: no backtest {backtest!r} (it has {backtest_names(run)})")
    return run, run.path / "backtests" / backtest


def symbol_table(src: Sources, run_name: str, backtest: str) -> dict[str, Any]:
    """Per symbol: the agent's, buy-and-hold's and the index's metrics (the picker's filter)."""
    _, path = _backtest_dir(src, run_name, backtest)
    summary = pd.read_parquet(path / "summary.parquet")
    per = summary[(summary["scope"] == "symbol") & summary["metric"].isin(SYMBOL_METRICS)]
    wide = per.pivot_table(index="symbol", columns=["strategy", "metric"], values="value", aggfunc="first")
    rows = []
    for symbol in wide.index:
        row: dict[str, Any] = {"symbol": symbol}
        for (strategy, metric), value in wide.loc[symbol].items():
            row[f"{strategy}.{metric}"] = value
        rows.append(row)
    metrics = sorted({f"{s}.{m}" for s, m in wide.columns})
    return json_ready({"symbols": rows, "metrics": metrics})


def _action_labels(run: RunDir) -> list[str]:
    import envs

    raw = run.experiment_raw().get("env") or {}
    try:
        labels = envs.env_spec(str(raw.get("id")), raw.get("config") or {}).action_labels
    except (ValueError, TypeError):
        labels = None
    return list(labels) if labels else []


def symbol_detail(src: Sources, run_name: str, backtest: str, symbol: str) -> dict[str, Any]:
    """One symbol of a backtest, bar by bar: OHLCV (from the traded store), and on each decision
    bar the action, its probabilities, the value estimate, then the position and equity after
    the fill; buy-and-hold and the index rebased to the starting equity (gross of costs)."""
    from app.data.asof import asof_positions
    from app.data.schema import DatasetKey, MarketType
    from app.data.store import ParquetStore

    run, path = _backtest_dir(src, run_name, backtest)
    records = pd.read_parquet(path / "records.parquet", filters=[("symbol", "==", symbol), ("sample", "==", 0)])
    if records.empty:
        raise NotFound(f"{run_name}/{backtest}: no records for {symbol!r}")
    records = records.sort_values("step", kind="stable").reset_index(drop=True)
    spec = json.loads((path / "data_spec.json").read_text()) if (path / "data_spec.json").is_file() else {}
    if not spec.get("source"):
        raise NotFound(f"{run_name}/{backtest}: traded a synthetic market (no stored bars to draw)")
    store = ParquetStore(src.store or Path(spec["store"]))
    key = DatasetKey(spec["source"], MarketType(spec["market_type"]), spec["timeframe"])
    bars = store.read(key, [symbol])
    ts = _ns(bars["timestamp"])
    fill_ts = _ns(records["timestamp"])
    fill_idx = np.searchsorted(ts, fill_ts)
    if (fill_idx >= len(ts)).any() or (ts[np.minimum(fill_idx, len(ts) - 1)] != fill_ts).any():
        raise NotFound(f"{run_name}/{backtest}: the store's {symbol} bars do not hold the backtest's bars")
    lo, hi = max(0, int(fill_idx[0]) - 1 - LEAD_BARS), int(fill_idx[-1]) + 1
    window = bars.iloc[lo:hi]
    seconds = (ts[lo:hi] // 10**9).tolist()
    probs = sorted((c for c in records.columns if c.startswith("prob_")), key=lambda c: int(c[5:]))
    decision_time = (ts[fill_idx - 1] // 10**9).tolist()  # decided on the close before the fill
    env_config = (run.experiment_raw().get("env") or {}).get("config") or {}
    initial = float(env_config.get("initial_cash_usd", 10_000.0))
    close = bars["close"].to_numpy(np.float64)
    first = int(fill_idx[0]) - 1
    bh = initial * close[first:hi] / close[first]
    index_line: list[float | None] = []
    if spec.get("index_symbol"):
        ikey = DatasetKey(spec.get("index_source") or spec["source"],
                          MarketType(spec.get("index_market_type") or "index"), spec["timeframe"])
        idx = store.read(ikey, [spec["index_symbol"]])
        pos = asof_positions(_ns(idx["timestamp"]), ts[first:hi])
        iclose = idx["close"].to_numpy(np.float64)
        base = iclose[pos[0]] if pos[0] >= 0 else np.nan
        index_line = [initial * iclose[p] / base if p >= 0 else None for p in pos]
    qty = records["position_qty"].to_numpy(np.float64)
    prev = np.r_[0.0, qty[:-1]]
    marks = [{"time": int(t), "side": "buy" if q1 > q0 else "sell", "price": float(p)}
             for t, q0, q1, p in zip(fill_ts // 10**9, prev, qty, records["fill_price_usd"], strict=True)
             if q1 != q0]
    return json_ready({
        "symbol": symbol, "run": run_name, "backtest": backtest, "action_labels": _action_labels(run),
        "initial_equity_usd": initial, "timeframe": spec["timeframe"],
        "bars": {"time": seconds, "open": window["open"].tolist(), "high": window["high"].tolist(),
                 "low": window["low"].tolist(), "close": window["close"].tolist(),
                 "volume": window["volume"].tolist()},
        "decisions": {"time": decision_time, "fill_time": (fill_ts // 10**9).tolist(),
                      "action": records["action"].tolist(),  # an index, or a level (continuous)
                      "probs": records[probs].to_numpy(np.float64).tolist() if probs else [],
                      "value": records["value"].tolist() if "value" in records else [],
                      "position_qty": qty.tolist(), "equity_usd": records["equity_usd"].tolist()},
        "marks": marks,
        "benchmarks": {"time": (ts[first:hi] // 10**9).tolist(), "buy_and_hold": bh.tolist(), "index": index_line},
    })


def _ns(column: pd.Series) -> np.ndarray:
    return pd.to_datetime(column, utc=True).dt.as_unit("ns").astype("int64").to_numpy()

"""Backtest a trained run on a split: records, metrics vs buy-and-hold and the index, report.

``backtest_run`` is what ``raytrade backtest RUN`` and the demo call. It reads the run's saved
experiment and splits, loads the policy (no cluster needed), trades the chosen part (the test
split by default: symbols and dates the run never saw), and writes into
``<run>/backtests/<part>-<mode>/``: ``records.parquet``, ``summary.parquet`` and
``report.html``; all three are logged to the run's MLflow run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.data.split_types import Split
from app.evaluation.backtest import BacktestResult, backtest
from app.evaluation.summary import position_weights, summary_table
from app.runs import resume_experiment
from app.runs.data import env_config_for, periods_per_year
from app.runs.env_factory import create_env
from app.runs.run_dir import RunDir
from envs.core.market import CLOSE

log = logging.getLogger("raytrade.evaluation")


@dataclass
class BacktestReport:
    out_dir: Path
    result: BacktestResult
    summary: pd.DataFrame
    records: pd.DataFrame

    def headline(self) -> pd.DataFrame:
        """Agent vs buy-and-hold vs index on the aggregate rows, with confidence intervals."""
        table = self.summary
        keep = table["symbol"].isin(["ALL", "PORTFOLIO"]) & table["metric"].isin(
            ["total_return", "annualized_return", "sharpe", "max_drawdown"])
        return table[keep].reset_index(drop=True)


def load_policy(run: RunDir, which: str = "final") -> Any:
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = run.policy_dir(which)
    if not path.is_dir():
        raise FileNotFoundError(f"{run.path}: no {which!r} checkpoint (train it first, or pick best/latest)")
    module = RLModule.from_checkpoint(str(path))
    module.eval()
    return module


def load_splits(run: RunDir) -> dict[str, Split]:
    return {p.stem.removeprefix("split_"): Split.load(p) for p in sorted(run.path.glob("split_*.json"))}


def backtest_run(run: RunDir, *, part: str = "test", greedy: bool = True, samples: int = 1, seed: int = 0,
                 which: str = "final", tracker: Any = None, n_boot: int = 1000) -> BacktestReport:
    import torch

    torch.set_num_threads(1)
    exp = resume_experiment(run)
    env_config = env_config_for(exp, load_splits(run), part)
    if env_config is None:
        raise ValueError(f"{run.name}: the {part!r} split has no symbols")
    result = backtest(load_policy(run, which), exp.env.id, env_config, greedy=greedy, samples=samples, seed=seed)
    records = result.to_table().to_pandas()
    market, index = _market_of(exp.env.id, env_config)
    summary = _summary(records, market, index, exp, periods_per_year(exp), seed, n_boot)
    out_dir = run.path / "backtests" / f"{part}-{'greedy' if greedy else f'stochastic{samples}'}"
    out_dir.mkdir(parents=True, exist_ok=True)
    result.save(out_dir / "records.parquet")
    summary.to_parquet(out_dir / "summary.parquet")
    report = BacktestReport(out_dir, result, summary, records)
    _render(report, run, exp, part, market, index, greedy, which)
    if tracker is not None:
        tracker.log_artifact(out_dir, f"backtests/{out_dir.name}")
    log.info("backtest %s %s: %d decisions in %.2f s", run.name, out_dir.name, result.decisions, result.seconds)
    return report


def _market_of(env_id: str, env_config: dict[str, Any]):
    env = create_env(env_id, env_config | {"num_envs": 1, "precompute_max_mb": 0.0})
    engine = env.engine
    market, index = engine.market, engine.index
    env.close()
    return market, index


def _summary(records: pd.DataFrame, market: Any, index: Any, exp: Any, ppy: float, seed: int,
             n_boot: int) -> pd.DataFrame:
    """Per symbol (sample 0): n+1 equity / close / index points and n position weights."""
    first = records[records["sample"] == 0]
    equity, position, close, index_close, actions = {}, {}, {}, {}, {}
    initial_cash = float(exp.env.config.get("initial_cash_usd", 10_000.0))
    for symbol, rows in first.groupby("symbol", sort=False):
        obs_rows = rows["observation_id"].to_numpy()
        bar_rows = np.r_[obs_rows[0], obs_rows + 1]  # the decision bar, then each filled bar
        eq = np.r_[initial_cash, rows["equity_usd"].to_numpy()]
        px = market.ohlcv[bar_rows, CLOSE]
        equity[symbol], close[symbol] = eq, px
        position[symbol] = position_weights(rows["position_qty"].to_numpy(), px, eq)
        index_close[symbol] = _index_on(index, market.ts_ns[bar_rows], px)
        actions[symbol] = rows["action"].to_numpy()
    return summary_table(equity, position, close, index_close, periods_per_year=ppy, rng=seed,
                         actions=actions, n_boot=n_boot)


def _index_on(index: Any, ts_ns: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Index closes as of each timestamp (last index bar at or before it); flat-lined before the
    index starts, and the symbol's own price when there is no index at all."""
    if index is None:
        return fallback
    idx_ts, idx_ohlcv = index.ts_ns, index.ohlcv
    pos = np.searchsorted(idx_ts, ts_ns, side="right") - 1
    return idx_ohlcv[np.clip(pos, 0, None), CLOSE]


def _render(report: BacktestReport, run: RunDir, exp: Any, part: str, market: Any, index: Any, greedy: bool,
            which: str) -> None:
    from app.evaluation.report import render_report

    symbols = report.records["symbol"].unique().tolist()
    closes = {s: market.series(s) for s in symbols}
    close_usd = {s: (ts, ohlcv[:, CLOSE]) for s, (ts, ohlcv) in closes.items()}
    index_close = (index.ts_ns, index.ohlcv[:, CLOSE]) if index is not None else None
    meta = {"run": run.name, "env": exp.env.id, "model": exp.model.name, "split": part, "checkpoint": which,
            "policy": "greedy" if greedy else "stochastic", "symbols": str(len(symbols)),
            "period": f"{report.records['timestamp'].min():%Y-%m-%d} -> {report.records['timestamp'].max():%Y-%m-%d}"}
    render_report(report.out_dir / "report.html", title=f"raytrade backtest: {run.name} on {part}",
                  records=report.records, summary=report.summary, close_usd=close_usd, index_close=index_close,
                  meta=meta, greedy=greedy, initial_equity_usd=float(exp.env.config.get("initial_cash_usd", 10_000.0)))

"""Backtest a trained run on a split: records, metrics vs buy-and-hold and the index, report.

``backtest_run`` is what ``raytrade backtest RUN`` and the demo call. It reads the run's saved
experiment and splits, loads the policy (no cluster needed), trades the chosen part (the test
split by default: symbols and dates the run never saw), and writes into
``<run>/backtests/<part>-<mode>/`` (:func:`backtest_dir_name`: a stochastic backtest's mode
includes its seed, so another seed never overwrites it): ``records.parquet``,
``summary.parquet`` and ``report.html``; all three are logged to the run's MLflow run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.atomic import atomic_write_text
from app.config.schema import DataSelection
from app.data.asof import asof_positions
from app.data.split_types import Split
from app.evaluation.backtest import BacktestResult, backtest
from app.evaluation.summary import AGGREGATE_SCOPES, position_weights, summary_table
from app.runs import resume_experiment
from app.runs.data import data_record, periods_per_year, selected_env_config
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
        keep = table["scope"].isin(AGGREGATE_SCOPES) & table["metric"].isin(
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
                 which: str = "final", tracker: Any = None, n_boot: int = 1000,
                 data: DataSelection | None = None) -> BacktestReport:
    """``data``: other data to trade instead of the part's own (store, dataset, symbols, window;
    :func:`app.runs.data.selected_env_config`); its tag joins the directory name and
    ``data_spec.json`` says which data was traded, always."""
    import torch

    torch.set_num_threads(1)
    exp, env_config, selection = selected_env_config(resume_experiment(run), load_splits(run), part, data)
    if env_config is None:
        raise ValueError(f"{run.name}: the {part!r} split has no symbols")
    result = backtest(load_policy(run, which), exp.env.id, env_config, greedy=greedy, samples=samples, seed=seed)
    records = result.to_table().to_pandas()
    for symbol, why in result.skipped.items():
        log.warning("backtest %s: %s skipped: %s", run.name, symbol, why)
    market, index, cost = _market_of(exp.env.id, env_config)
    summary = _summary(records, market, index, exp, periods_per_year(exp), seed, n_boot, cost)
    out_dir = run.path / "backtests" / backtest_dir_name(part, greedy, samples, seed)
    if not selection.empty:
        out_dir = out_dir.with_name(f"{out_dir.name}-{selection.tag}")
    out_dir.mkdir(parents=True, exist_ok=True)
    traded = data_record(env_config, selection)
    atomic_write_text(out_dir / "data_spec.json", json.dumps(traded, indent=2))
    result.save(out_dir / "records.parquet")
    summary.to_parquet(out_dir / "summary.parquet")
    report = BacktestReport(out_dir, result, summary, records)
    _render(report, run, exp, part, market, index, greedy, which, traded)
    if tracker is not None:
        tracker.log_artifact(out_dir, f"backtests/{out_dir.name}")
    log.info("backtest %s %s: %d decisions in %.2f s", run.name, out_dir.name, result.decisions, result.seconds)
    return report


def backtest_dir_name(part: str, greedy: bool, samples: int, seed: int) -> str:
    """``<part>-greedy`` (the policy is deterministic; the seed only moves the bootstrap) or
    ``<part>-stochastic<samples>-seed<seed>``: each seed of a sampled policy keeps its own."""
    return f"{part}-greedy" if greedy else f"{part}-stochastic{samples}-seed{seed}"


def _market_of(env_id: str, env_config: dict[str, Any]):
    env = create_env(env_id, env_config | {"num_envs": 1, "precompute_max_mb": 0.0,
                                           "episode_bars": None, "random_start": False})
    engine = env.engine
    market, index, cost = engine.market, engine.index, engine.config.cost_model
    env.close()
    return market, index, cost


def _summary(records: pd.DataFrame, market: Any, index: Any, exp: Any, ppy: float, seed: int,
             n_boot: int, cost: Any = None) -> pd.DataFrame:
    """Per symbol (sample 0): n+1 equity / close / index points and n position weights."""
    first = records[records["sample"] == 0]
    equity, position, close, index_close, actions, ts_ns = {}, {}, {}, {}, {}, {}
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
        ts_ns[symbol] = market.ts_ns[bar_rows]
    table = summary_table(equity, position, close, index_close, periods_per_year=ppy, rng=seed,
                          actions=actions, n_boot=n_boot, cost=cost, ts_ns=ts_ns)
    if cost is not None:
        table.attrs["caveats"] = [*table.attrs["caveats"],
                                  f"Costs in this backtest: fee {cost.fee_bps:g} bps and slippage "
                                  f"{cost.slippage_bps:g} bps per fill (the env's cost model)."]
    return table


def _index_on(index: Any, ts_ns: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Index closes as of each timestamp (the last index bar at or before it, through the one
    as-of join), and the symbol's own price when there is no index at all.

    Before the index's first bar the line is flat: every bar there holds the first known close,
    so the index's *returns* are 0 until it exists and its first real return is 0 as well (only
    returns enter the metrics; the placeholder level never does)."""
    if index is None:
        return fallback
    pos = asof_positions(index.ts_ns, ts_ns)
    closes = index.ohlcv[:, CLOSE]
    first_known = closes[pos[pos >= 0][0]] if (pos >= 0).any() else np.nan
    return np.where(pos >= 0, closes[np.maximum(pos, 0)], first_known)


def _render(report: BacktestReport, run: RunDir, exp: Any, part: str, market: Any, index: Any, greedy: bool,
            which: str, traded: dict[str, Any] | None = None) -> None:
    from app.evaluation.report import render_report

    symbols = report.records["symbol"].unique().tolist()
    closes = {s: market.series(s) for s in symbols}
    close_usd = {s: (ts, ohlcv[:, CLOSE]) for s, (ts, ohlcv) in closes.items()}
    index_close = (index.ts_ns, index.ohlcv[:, CLOSE]) if index is not None else None
    meta = {"run": run.name, "env": exp.env.id, "model": exp.model.name, "split": part, "checkpoint": which,
            "policy": "greedy" if greedy else "stochastic", "symbols": str(len(symbols)),
            "period": f"{report.records['timestamp'].min():%Y-%m-%d} -> {report.records['timestamp'].max():%Y-%m-%d}"}
    if traded and traded.get("store"):
        meta["data"] = f"{traded['store']} ({traded['source']}/{traded['market_type']}/{traded['timeframe']})"
    if traded and traded.get("selection"):
        meta["data chosen"] = json.dumps(traded["selection"])  # not the run's own data
    if report.result.skipped:
        meta["skipped"] = "; ".join(f"{s}: {why}" for s, why in report.result.skipped.items())
    render_report(report.out_dir / "report.html", title=f"raytrade backtest: {run.name} on {part}",
                  records=report.records, summary=report.summary, close_usd=close_usd, index_close=index_close,
                  meta=meta, greedy=greedy, initial_equity_usd=float(exp.env.config.get("initial_cash_usd", 10_000.0)))

"""Evaluation studies of a trained run: one question each, one command each
(``raytrade evaluate STUDY RUN``).

============================ ======================================================================
study                        question (module)
============================ ======================================================================
``unseen_symbols``           do symbols never seen in training trade as well as the seen ones, in
                             the same (test) window? does fine-tuning on a new symbol help?
                             (:mod:`app.evaluation.studies_symbols`)
``future_distance``          how does performance decay with months after the end of training?
                             (:mod:`app.evaluation.studies_time`)
``history_length``           how much of the observation window does the policy use? (masking)
                             (:mod:`app.evaluation.studies_policy`)
``greedy_vs_stochastic``     argmax policy vs sampling from it (:mod:`app.evaluation.studies_policy`)
``lookahead``                does any decision change when the data after it is removed?
                             (:mod:`app.evaluation.studies_lookahead`)
============================ ======================================================================

Every study has a *core* function that takes a module, an env id and env configs (no run
directory, no Ray: the unit tests call these on a tiny synthetic market) and a ``run_*`` wrapper
that loads the run's policy and splits, calls the core, and writes
``<run>/studies/<study>/result.parquet`` (the table it returns), ``notes.json`` (headline
numbers) and, where a picture helps, ``plot.png``.

This module holds what the studies share: loading a run (:func:`load_context`), the per-symbol
metrics of a backtest and their per-bar series (:func:`symbol_frames`), cross-symbol means with
bootstrap intervals (:func:`group_table`, :func:`diff_rows`) and writing results
(:func:`write_result`).

Conventions. A backtest here is always the batched engine of :mod:`app.evaluation.backtest`
(each symbol from its first bar with a full window to the end of the range). Per symbol (and
sample) the metrics are those of :func:`app.evaluation.trade_stats.backtest_metrics`;
``bh_*`` are buy-and-hold of the same symbol over the same bars (no costs) and
``excess_return = total_return - bh_total_return``. Stochastic samples are *pooled*: each
symbol's metric is first averaged over its samples, then averaged over symbols (the spread
across samples is reported separately as ``sample_std``).

Intervals (column ``ci_method``). Symbols traded over the same bars are correlated, so their
cross-symbol means and the differences between groups get a percentile **time-block**
bootstrap: calendar bars resampled in stationary blocks, the same bars for every symbol, sample
and group, each metric recomputed on the resampled bars (:mod:`app.evaluation.studies_intervals`).
Round-trip counts (``trades``) get none. Only a caller without per-bar series (``bars=None``)
gets the old bootstrap over symbols as independent units, and ``ci_method`` says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.atomic import atomic_write
from app.errors import RaytradeError
from app.evaluation import stats
from app.evaluation.studies_intervals import (
    BAR_COLUMNS,
    SYMBOL_METHOD,
    TimeBootstrap,
    diff_replicates,
    mean_replicates,
)
from app.evaluation.summary import position_weights
from app.evaluation.trade_stats import backtest_metrics, buy_and_hold_metrics
from app.runs.env_factory import create_env
from envs.core.market import CLOSE, MarketArrays

STUDIES = ("unseen_symbols", "future_distance", "history_length", "greedy_vs_stochastic", "lookahead")
#: per-symbol metrics every study reports (agent unless prefixed ``bh_``)
METRICS = ("total_return", "annualized_return", "sharpe", "max_drawdown", "trades", "exposure",
           "bh_total_return", "bh_sharpe", "excess_return")
GROUP_COLUMNS = ["group", "metric", "value", "ci_low", "ci_high", "n", "sample_std", "ci_method"]


class StudyError(RaytradeError, ValueError):
    """A study that does not apply to this run (e.g. no time split) or a bad study option, with
    the reason (the CLI prints it and exits with code 2)."""


# --- a run, loaded once -------------------------------------------------------------------------

@dataclass
class StudyContext:
    """What every ``run_*`` wrapper needs from a run directory."""

    run: Any                      # RunDir
    exp: Any                      # Experiment
    splits: dict[str, Any]        # kind -> Split
    which: str                    # checkpoint: final | best | latest
    periods_per_year: float
    _module: Any = None

    @property
    def module(self) -> Any:
        """The RLModule (eval mode), loaded on first use, so a study that does not apply fails
        before the checkpoint is read."""
        if self._module is None:
            from app.evaluation.pipeline import load_policy

            self._module = load_policy(self.run, self.which)
        return self._module

    @property
    def env_id(self) -> str:
        return str(self.exp.env.id)

    def env_config(self, part: str) -> dict[str, Any]:
        """The env config that trades ``part`` (train | validation | test) of the run's data."""
        from app.runs.data import PARTS, env_config_for

        if part not in PARTS:
            raise StudyError(f"split must be one of {PARTS}, got {part!r}")
        config = env_config_for(self.exp, self.splits, part)
        if config is None:
            raise StudyError(f"{self.run.name}: the {part!r} split has no symbols")
        return config

    def symbols(self, part: str) -> list[str]:
        """The symbols of ``part`` in the by-symbol split (StudyError without one)."""
        if "by_symbol" not in self.splits:
            raise StudyError(f"{self.run.name}: no by-symbol split (data.by_symbol), so no symbol was held out "
                             "of training" + (" (a synthetic market)" if self.exp.data is None else ""))
        return list(self.splits["by_symbol"].symbols.get(part, ()))

    def out_dir(self, study: str) -> Path:
        return self.run.path / "studies" / study


def load_context(run: Any, which: str = "final") -> StudyContext:
    """Load ``run``'s saved experiment and splits; its ``which`` policy loads on first use (no
    cluster needed)."""
    import torch

    from app.evaluation.pipeline import load_splits
    from app.runs import resume_experiment
    from app.runs.data import periods_per_year

    torch.set_num_threads(1)
    if not run.policy_dir(which).is_dir():
        raise StudyError(f"{run.path}: no {which!r} checkpoint (train it first, or pick best/latest)")
    exp = resume_experiment(run)
    return StudyContext(run, exp, load_splits(run), which, periods_per_year(exp))


def with_symbols(env_config: Mapping[str, Any], symbols: Sequence[str]) -> dict[str, Any]:
    """``env_config`` trading ``symbols`` instead: the data spec's symbols for store-backed
    configs, the env's ``symbols`` universe for configs that carry arrays or a synthetic market."""
    config = dict(env_config)
    if "data" in config:
        config["data"] = dict(config["data"]) | {"symbols": list(symbols)}
    else:
        config["symbols"] = tuple(symbols)
    return config


# --- markets and per-symbol metrics -------------------------------------------------------------

@dataclass(frozen=True)
class MarketView:
    """The arrays an env config trades (loaded once, as the env loads them)."""

    market: MarketArrays
    index: MarketArrays | None
    initial_cash_usd: float
    spec: Any                      # the env's ObservationSpec
    universe: tuple[str, ...]      # symbols with enough bars for a backtest in the range


def market_view(env_id: str, env_config: Mapping[str, Any]) -> MarketView:
    env = create_env(env_id, dict(env_config) | {"num_envs": 1, "precompute_max_mb": 0.0})
    engine = env.engine
    view = MarketView(engine.market, engine.index, float(engine.config.initial_cash_usd), engine.spec,
                      tuple(engine.universe))
    env.close()
    return view


@dataclass(frozen=True)
class SymbolSeries:
    """One symbol's (one sample's) backtest as aligned arrays: ``n`` decisions, ``n + 1`` points.

    ``ts_ns[i]`` is the bar decision ``i`` was filled in (point ``i + 1``); ``equity_usd`` and
    ``close_usd`` start at the first decision bar's close (point 0)."""

    symbol: str
    sample: int
    ts_ns: np.ndarray
    equity_usd: np.ndarray
    close_usd: np.ndarray
    position: np.ndarray           # weights, see app.evaluation.summary.position_weights
    actions: np.ndarray
    steps: np.ndarray

    @property
    def agent_returns(self) -> np.ndarray:
        return self.equity_usd[1:] / self.equity_usd[:-1] - 1.0

    @property
    def bh_returns(self) -> np.ndarray:
        return self.close_usd[1:] / self.close_usd[:-1] - 1.0


def records_frame(result: Any) -> pd.DataFrame:
    """A :class:`~app.evaluation.backtest.BacktestResult`'s records as pandas."""
    return result.to_table().to_pandas()


def iter_series(records: pd.DataFrame, view: MarketView) -> Iterator[SymbolSeries]:
    """Per ``(symbol, sample)`` of the records, in order of appearance."""
    for (symbol, sample), rows in records.groupby(["symbol", "sample"], sort=False):
        obs_rows = rows["observation_id"].to_numpy()
        bar_rows = np.r_[obs_rows[0], obs_rows + 1]  # the first decision bar, then each filled bar
        equity = np.r_[view.initial_cash_usd, rows["equity_usd"].to_numpy()]
        close = view.market.ohlcv[bar_rows, CLOSE]
        ts = pd.DatetimeIndex(rows["timestamp"]).as_unit("ns").asi8
        yield SymbolSeries(str(symbol), int(sample), ts, equity, close,
                           position_weights(rows["position_qty"].to_numpy(), close, equity),
                           rows["action"].to_numpy(), rows["step"].to_numpy())


def series_metrics(s: SymbolSeries, periods_per_year: float) -> dict[str, float]:
    """:data:`METRICS` of one series (``nan`` where undefined, e.g. Sharpe of < 2 bars)."""
    agent = backtest_metrics(s.equity_usd, s.position, periods_per_year)
    bh = buy_and_hold_metrics(s.close_usd, periods_per_year)
    out = {k: float(agent[k]) for k in METRICS if k in agent}
    out |= {"bh_total_return": float(bh["total_return"]), "bh_sharpe": float(bh["sharpe"])}
    out["excess_return"] = out["total_return"] - out["bh_total_return"]
    return out


def symbol_metrics(records: pd.DataFrame, view: MarketView, periods_per_year: float) -> pd.DataFrame:
    """One row per ``(symbol, sample)``: ``bars`` and :data:`METRICS`."""
    return symbol_frames(records, view, periods_per_year)[0]


def symbol_frames(records: pd.DataFrame, view: MarketView,
                  periods_per_year: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_symbol, bars)``: :func:`symbol_metrics`, and the per-bar series behind it, one row
    per ``(symbol, sample, filled bar)``: ``ts_ns``, ``step``, ``agent_return``, ``bh_return``
    and ``position`` (weights), for the time-block intervals of :func:`group_table`."""
    rows, frames = [], []
    for s in iter_series(records, view):
        rows.append({"symbol": s.symbol, "sample": s.sample, "bars": len(s.actions),
                     **series_metrics(s, periods_per_year)})
        frames.append(series_frame(s))
    bars = pd.concat(frames, ignore_index=True) if frames else series_frame(None)
    return pd.DataFrame(rows), bars


def series_frame(s: SymbolSeries | None) -> pd.DataFrame:
    """One series' bars as rows: ``symbol, sample, ts_ns, step, agent_return, bh_return,
    position`` (``None``: the empty frame with those columns)."""
    if s is None:
        return pd.DataFrame(columns=["symbol", "sample", "ts_ns", "step", *BAR_COLUMNS])
    return pd.DataFrame({"symbol": s.symbol, "sample": s.sample, "ts_ns": s.ts_ns,
                         "step": s.steps, "agent_return": s.agent_returns,
                         "bh_return": s.bh_returns, "position": s.position})


# --- cross-symbol means with intervals -----------------------------------------------------------

def per_symbol_means(per_symbol: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Average each metric over a symbol's samples (index: symbol; non-finite values ignored)."""
    values = per_symbol[list(metrics)].to_numpy(np.float64)
    finite = pd.DataFrame(np.where(np.isfinite(values), values, np.nan), columns=list(metrics))
    return finite.groupby(per_symbol["symbol"].to_numpy(object), sort=False).mean().rename_axis("symbol")


def mean_ci(values: np.ndarray, rng: stats.RngLike, n_boot: int = 1000,
            level: float = 0.95) -> stats.ConfidenceInterval:
    """Mean of the finite ``values`` with a percentile bootstrap interval (plain bootstrap).

    For independent units only: one number per symbol with no time axis (see
    :func:`group_table`); correlated symbols make this interval too narrow."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return stats.ConfidenceInterval(math.nan, math.nan, math.nan, level, 0)
    idx = stats.iid_bootstrap_indices(v.size, n_boot, rng)
    return stats.percentile_ci(float(v.mean()), v[idx].mean(axis=1), level)


def diff_ci(a: np.ndarray, b: np.ndarray, rng: stats.RngLike, *, paired: bool, n_boot: int = 1000,
            level: float = 0.95) -> stats.ConfidenceInterval:
    """``mean(a) - mean(b)`` with a percentile bootstrap interval: ``paired`` resamples the
    shared units (the same symbols under two treatments) together, else each group on its own."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    gen = np.random.default_rng(rng)
    if paired:
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        if a.size == 0:
            return stats.ConfidenceInterval(math.nan, math.nan, math.nan, level, 0)
        idx = stats.iid_bootstrap_indices(a.size, n_boot, gen)
        return stats.percentile_ci(float(np.mean(a - b)), (a - b)[idx].mean(axis=1), level)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return stats.ConfidenceInterval(math.nan, math.nan, math.nan, level, 0)
    ia = stats.iid_bootstrap_indices(a.size, n_boot, gen)
    ib = stats.iid_bootstrap_indices(b.size, n_boot, gen)
    return stats.percentile_ci(float(a.mean() - b.mean()), a[ia].mean(axis=1) - b[ib].mean(axis=1), level)


def _time_bootstrap(bars: pd.DataFrame | TimeBootstrap | None, by: str,
                    periods_per_year: float | None, rng: np.random.Generator, n_boot: int,
                    metrics: Sequence[str]) -> TimeBootstrap | None:
    if bars is None or isinstance(bars, TimeBootstrap):
        return bars
    if periods_per_year is None:
        raise ValueError("time-block intervals need periods_per_year (for annualized metrics)")
    return TimeBootstrap.of(bars, by, periods_per_year, rng, n_boot=n_boot, metrics=metrics)


def _no_ci(point: float, level: float) -> stats.ConfidenceInterval:
    return stats.ConfidenceInterval(point, math.nan, math.nan, level, 0)


def group_table(per_symbol: pd.DataFrame, by: str, rng: stats.RngLike, *,
                bars: pd.DataFrame | TimeBootstrap | None = None,
                periods_per_year: float | None = None, metrics: Sequence[str] = METRICS,
                n_boot: int = 1000, level: float = 0.95) -> pd.DataFrame:
    """Long table (:data:`GROUP_COLUMNS`): per value of column ``by`` and metric, the mean over
    symbols (samples pooled, see the module docstring), its bootstrap interval, the number of
    symbols and the std over samples of the cross-symbol mean (``nan`` with one sample).

    ``bars`` (the per-bar series of every row of ``per_symbol``, with the ``by`` column, from
    :func:`symbol_frames`) gives joint time-block intervals; without it, the bootstrap over
    symbols as independent units (``ci_method`` says which). A :class:`TimeBootstrap` built
    once from the bars may be passed instead, to share its resamples with :func:`diff_rows`."""
    gen = np.random.default_rng(rng)
    boot = _time_bootstrap(bars, by, periods_per_year, gen, n_boot, metrics)
    rows = []
    for group, part in per_symbol.groupby(by, sort=False):
        means = per_symbol_means(part, metrics)
        by_sample = part.replace([np.inf, -np.inf], np.nan).groupby("sample")[list(metrics)].mean()
        for metric in metrics:
            values = means[metric].to_numpy()
            if boot is None:
                ci, method = mean_ci(values, gen, n_boot, level), SYMBOL_METHOD
            else:
                finite = values[np.isfinite(values)]
                point = float(finite.mean()) if finite.size else math.nan
                ci, method = _no_ci(point, level), boot.reason(metric)
                if boot.resampled(metric):
                    reps = boot.symbol_replicates(group, list(means.index), metric)
                    ci = stats.percentile_ci(point, mean_replicates(reps), level)
            spread = float(by_sample[metric].std(ddof=1)) if len(by_sample) > 1 else math.nan
            n = int(np.isfinite(values).sum())
            rows.append((str(group), metric, ci.point, ci.low, ci.high, n, spread, method))
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def diff_rows(per_symbol: pd.DataFrame, by: str, pairs: Sequence[tuple[Any, Any]], rng: stats.RngLike, *,
              paired: bool, bars: pd.DataFrame | TimeBootstrap | None = None,
              periods_per_year: float | None = None,
              metrics: Sequence[str] = METRICS, n_boot: int = 1000, level: float = 0.95) -> pd.DataFrame:
    """Rows ``group = "<a> - <b>"`` (:data:`GROUP_COLUMNS`) for each ``(a, b)`` of ``pairs``:
    difference of the cross-symbol means with a bootstrap interval (on the shared symbols when
    ``paired``). With ``bars`` (see :func:`group_table`) both groups are resampled on the same
    calendar bars, so what they share over time (the market) is kept in the difference."""
    gen = np.random.default_rng(rng)
    boot = _time_bootstrap(bars, by, periods_per_year, gen, n_boot, metrics)
    rows = []
    for a, b in pairs:
        ma = per_symbol_means(per_symbol[per_symbol[by] == a], metrics)
        mb = per_symbol_means(per_symbol[per_symbol[by] == b], metrics)
        if paired:
            common = ma.index.intersection(mb.index)
            ma, mb = ma.loc[common], mb.loc[common]
        for metric in metrics:
            va, vb = ma[metric].to_numpy(), mb[metric].to_numpy()
            if boot is None:
                ci = diff_ci(va, vb, gen, paired=paired, n_boot=n_boot, level=level)
                method = f"{'paired ' if paired else ''}{SYMBOL_METHOD}"
            else:
                point = _diff_point(va, vb, paired)
                ci, method = _no_ci(point, level), boot.reason(metric)
                if boot.resampled(metric):
                    reps = diff_replicates(boot.symbol_replicates(a, list(ma.index), metric),
                                           boot.symbol_replicates(b, list(mb.index), metric), paired=paired)
                    ci = stats.percentile_ci(point, reps, level)
            n = min(len(ma), len(mb))
            rows.append((f"{a} - {b}", metric, ci.point, ci.low, ci.high, n, math.nan, method))
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def _diff_point(a: np.ndarray, b: np.ndarray, paired: bool) -> float:
    """``mean(a) - mean(b)`` over the finite values (over symbols finite in both when paired)."""
    if paired:
        keep = np.isfinite(a) & np.isfinite(b)
        return float(np.mean(a[keep] - b[keep])) if keep.any() else math.nan
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(fa.mean() - fb.mean()) if fa.size and fb.size else math.nan


def ci_methods(table: pd.DataFrame) -> dict[str, list[str]]:
    """``ci_method -> metrics`` of a table, for a study's ``notes.json``."""
    out: dict[str, list[str]] = {}
    for method, part in table.groupby("ci_method", sort=False):
        out[str(method)] = sorted({str(k) for k in part["metric"]})
    return out


# --- results --------------------------------------------------------------------------------------

@dataclass
class StudyResult:
    """A study's table, where it was written, and its headline numbers."""

    study: str
    table: pd.DataFrame
    out_dir: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def write_result(result: StudyResult, out_dir: Path, figure: Any = None,
                 extra: Mapping[str, pd.DataFrame] | None = None) -> StudyResult:
    """Write ``result.parquet``, ``notes.json``, ``plot.png`` (if ``figure``) and any ``extra``
    tables (``<name>.parquet``) into ``out_dir``, each atomically; returns ``result`` updated."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [atomic_write(out_dir / "result.parquet", lambda p: result.table.to_parquet(p, index=False))]
    for name, table in (extra or {}).items():
        files.append(atomic_write(out_dir / f"{name}.parquet", lambda p, t=table: t.to_parquet(p, index=False)))
    notes = json.dumps(result.notes, indent=2, default=_jsonable, allow_nan=True)
    files.append(atomic_write(out_dir / "notes.json", lambda p: Path(p).write_text(notes)))
    if figure is not None:
        files.append(atomic_write(out_dir / "plot.png", lambda p: figure.savefig(p, format="png", dpi=100)))
    result.out_dir, result.files = out_dir, files
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, Path)):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def new_figure(width_in: float = 8.0, height_in: float = 4.5) -> Any:
    """An off-screen matplotlib figure (Agg canvas, no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig

"""Studies of the policy itself: ``history_length`` (how much of its observation window does it
use?) and ``greedy_vs_stochastic`` (argmax vs sampling).

Every interval here (levels and differences) is a joint time-block bootstrap over the traded
bars, the same resampled bars for every symbol, sample and variant (window k, greedy or
stochastic), with each metric recomputed on them (:mod:`app.evaluation.studies_intervals`);
``action_agreement``, ``prob_tv_distance`` and ``mean_max_prob`` are per-bar means and are
resampled the same way; ``trades`` gets none. ``ci_method`` names the method per row.

``history_length`` -- a MASKING study, not retraining
    The same trained policy trades the chosen part (test by default) once with its full window
    and once per ``k`` in ``--windows`` with every observation window cut to its newest ``k``
    entries by a :class:`HistoryMask`, applied inside
    :class:`~app.policy.batched.BatchedPolicy` (``obs_transform``) so the env, fills and costs
    are untouched. Which entries count as "older than k bars" (``--scope``):

    * ``time`` (default): every window keeps about the last ``k`` bars' worth of time -- ``k``
      entries of the bar-level windows, ``ceil(k / bars per period)`` of the weekly / monthly
      ones (bars per period measured on the market's own calendar: about 5 per week and 21 per
      month for stocks);
    * ``entries``: every window keeps its newest ``k`` entries of its own unit (k weeks, k months);
    * ``bars``: only the bar-level windows (``{bar}_hloc``, ``{bar}_volume``, ``index_hloc``,
      ``funding_bps``) are cut; the weekly / monthly ones stay whole.

    Older entries are replaced by values that carry no information (``--fill neutral``, the
    default):

    * ``*_hloc`` (log ratios to the latest close, :mod:`envs.core.observation`) -> 0, "the price
      was the latest close"; ``funding_bps`` -> 0, "no funding settled";
    * ``*_volume`` (volume over its window mean) -> 1, "average volume", and the kept entries are
      renormalized by THEIR mean (``v / mean(v_kept)``), so the normalizer carries no trace of
      the masked bars either (0 stays 0 for a window without volume).

    ``--fill repeat`` instead pads the way the observation builder pads a series shorter than the
    window: the oldest kept entry repeated (volume renormalized over the padded window), i.e. the
    observation as if the series had started ``k`` bars ago. Position fields are never masked.

    Reported per ``k``: the usual metrics (mean over symbols, bootstrap CI), the difference to the
    full window (paired on the symbols), ``action_agreement`` (fraction of bars where the
    masked policy picks the full-window policy's action, aligned by symbol and step) and
    ``prob_tv_distance`` (mean total-variation distance of the action probabilities). If
    performance and agreement stay flat down to ``k``, the policy uses about ``k`` bars.
    Caveats: masked windows are out of the training distribution, and a policy may react to the
    mask itself (on the synthetic mean-reversion run the neutral fill costs far more than the
    repeat fill at the same k): compare both fills before concluding; a recurrent (GRU) policy keeps a memory of earlier
    (masked) observations in its state, so it can still integrate history beyond ``k``. Retraining
    with shorter windows is the other half of the question: ``raytrade tune`` over
    ``env.config.window_bars`` does that.

``greedy_vs_stochastic``
    The same part traded by the greedy (argmax) policy and by ``--samples`` stochastic samples of
    it (seeded). Samples are pooled (each symbol's metric averaged over its samples, then over
    symbols; ``sample_std`` = spread of the cross-symbol mean over samples);
    ``stochastic - greedy`` is paired on the symbols. ``mean_max_prob`` (mean
    probability of the most likely action along each run's own path) says how deterministic the
    policy is where it trades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from app.evaluation.backtest import backtest
from app.evaluation.studies import (
    METRICS,
    StudyError,
    StudyResult,
    TimeBootstrap,
    ci_methods,
    diff_rows,
    group_table,
    load_context,
    market_view,
    new_figure,
    records_frame,
    symbol_frames,
    write_result,
)
from envs.core.market import MarketArrays
from envs.core.observation import PERIOD_NAMES, POSITION_KEYS
from envs.core.resample import period_ids

FILLS = ("neutral", "repeat")
SCOPES = ("time", "entries", "bars")
AGREEMENT = ("action_agreement", "prob_tv_distance")


@dataclass(frozen=True)
class HistoryMask:
    """``obs -> obs`` keeping the newest ``keep`` entries of each window field (module docstring),
    or ``keep_by_key[key]`` where given (period windows under ``--scope time``).

    ``price_keys`` hold log ratios or funding (neutral 0), ``volume_keys`` relative volumes
    (neutral 1, kept entries renormalized). The window axis is the one before the feature axis
    for ``[B, w, 4]`` and ``[B, A, w, F]`` fields, the last one for ``[B, w]`` fields. Returns a
    new dict; the input arrays are never written."""

    keep: int
    price_keys: tuple[str, ...]
    volume_keys: tuple[str, ...]
    fill: str = "neutral"
    keep_by_key: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keep < 1 or any(k < 1 for k in self.keep_by_key.values()):
            raise StudyError(f"history mask: keep must be >= 1, got {self.keep}")
        if self.fill not in FILLS:
            raise StudyError(f"history mask: fill must be one of {FILLS}, got {self.fill!r}")

    def __call__(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(obs)
        for key in self.price_keys:
            if key in obs:
                out[key] = self._prices(np.asarray(obs[key]), _window_axis(key, obs[key]), self._keep(key))
        for key in self.volume_keys:
            if key in obs:
                out[key] = self._volume(np.asarray(obs[key]), _window_axis(key, obs[key]), self._keep(key))
        return out

    def _keep(self, key: str) -> int:
        return int(self.keep_by_key.get(key, self.keep))

    @staticmethod
    def _split(a: np.ndarray, axis: int, keep: int) -> tuple[int, np.ndarray]:
        w = a.shape[axis]
        return w, np.take(a, np.arange(w - min(keep, w), w), axis=axis)

    def _pad(self, kept: np.ndarray, n_old: int, axis: int, neutral: float | np.ndarray) -> np.ndarray:
        if n_old == 0:
            return kept
        shape = list(kept.shape)
        shape[axis] = n_old
        if self.fill == "repeat":
            old = np.broadcast_to(np.take(kept, [0], axis=axis), shape)
        else:
            old = np.broadcast_to(neutral, shape)
        return np.concatenate([old, kept], axis=axis)

    def _prices(self, a: np.ndarray, axis: int, keep: int) -> np.ndarray:
        w, kept = self._split(a, axis, keep)
        return self._pad(kept, w - kept.shape[axis], axis, np.float32(0.0)).astype(a.dtype, copy=False)

    def _volume(self, a: np.ndarray, axis: int, keep: int) -> np.ndarray:
        w, kept = self._split(a.astype(np.float64), axis, keep)
        if self.fill == "repeat":
            window = self._pad(kept, w - kept.shape[axis], axis, 0.0)
            mean = window.mean(axis=axis, keepdims=True)
            return np.divide(window, mean, out=np.zeros_like(window), where=mean > 0).astype(a.dtype)
        mean = kept.mean(axis=axis, keepdims=True)
        kept = np.divide(kept, mean, out=np.zeros_like(kept), where=mean > 0)
        return self._pad(kept, w - kept.shape[axis], axis, (mean > 0).astype(np.float64)).astype(a.dtype)


def _window_axis(key: str, value: np.ndarray) -> int:
    ndim = np.ndim(value)
    return ndim - 2 if key.endswith("_hloc") or ndim > 2 else ndim - 1


def bars_per_period(market: MarketArrays, periods: Sequence[str]) -> dict[str, float]:
    """Mean number of bars per calendar period (``W``, ``M``, ...) on the market's own calendar:
    rows over distinct periods, summed over the symbols."""
    out = {}
    for p in periods:
        n_periods = sum(len(np.unique(period_ids(market.ts_ns[market.rows(i)], p))) for i in range(market.n_symbols))
        out[p] = len(market.ts_ns) / max(n_periods, 1)
    return out


def history_mask_for(spec: Any, keep: int, *, scope: str = "time", fill: str = "neutral",
                     per_period: Mapping[str, float] | None = None) -> HistoryMask:
    """The :class:`HistoryMask` for an env's :class:`~envs.core.observation.ObservationSpec`;
    ``per_period`` (bars per period, :func:`bars_per_period`) is needed by ``scope="time"``."""
    if scope not in SCOPES:
        raise StudyError(f"history mask: scope must be one of {SCOPES}, got {scope!r}")
    keys = [k for k in spec.fields() if k not in POSITION_KEYS]
    bar_keys = {f"{spec.bar_name}_hloc", f"{spec.bar_name}_volume", "index_hloc", "funding_bps"}
    if scope == "bars":
        keys = [k for k in keys if k in bar_keys]
    by_key: dict[str, int] = {}
    if scope == "time":
        if per_period is None:
            raise StudyError("history mask: scope 'time' needs the bars per period of the market")
        for p in spec.periods:
            for key in (f"{PERIOD_NAMES[p]}_hloc", f"{PERIOD_NAMES[p]}_volume"):
                if key in keys and key not in bar_keys:
                    by_key[key] = max(1, math.ceil(keep / per_period[p]))
    prices = tuple(k for k in keys if k.endswith("_hloc") or k == "funding_bps")
    volumes = tuple(k for k in keys if k.endswith("_volume"))
    return HistoryMask(int(keep), prices, volumes, fill, by_key)


def _agreement(records: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per ``(symbol, sample, step)``: whether the action equals the reference's (1.0 / 0.0), and
    the total-variation distance of the action probabilities (nan without discrete
    probabilities). A symbol's metric is the mean over its bars."""
    keys = ["symbol", "sample", "step"]
    probs = [c for c in records.columns if c.startswith("prob_")]
    merged = records[[*keys, "action", *probs]].merge(reference[[*keys, "action", *probs]], on=keys,
                                                      suffixes=("", "_ref"))
    merged["action_agreement"] = (merged["action"] == merged["action_ref"]).astype(np.float64)
    if probs:
        diff = np.abs(merged[probs].to_numpy() - merged[[f"{p}_ref" for p in probs]].to_numpy())
        merged["prob_tv_distance"] = 0.5 * diff.sum(axis=1)
    else:
        merged["prob_tv_distance"] = np.nan
    return merged[[*keys, *AGREEMENT]]


def _with_bar_values(frame: pd.DataFrame, bars: pd.DataFrame, per_bar: pd.DataFrame,
                     names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add per-bar ``names`` (keyed by symbol, sample, step) to the bars frame, and their mean
    per ``(symbol, sample)`` to the per-symbol frame."""
    keys = ["symbol", "sample", "step"]
    per_bar = per_bar.astype({"symbol": str})
    bars = bars.merge(per_bar[[*keys, *names]], on=keys, how="left")
    means = per_bar.groupby(["symbol", "sample"], sort=False)[list(names)].mean().reset_index()
    return frame.merge(means, on=["symbol", "sample"]), bars


def history_length_table(module: Any, env_id: str, env_config: dict[str, Any], windows: Sequence[int],
                         periods_per_year: float, *, scope: str = "time", fill: str = "neutral", seed: int = 0,
                         n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The masking study on one env config; ``(table, per_symbol)`` (module docstring).

    ``table`` has :data:`~app.evaluation.studies.GROUP_COLUMNS` plus ``window_bars`` (k) and
    ``kind`` (``level`` or ``diff``: ``"<k> - <full>"`` paired differences)."""
    view = market_view(env_id, env_config)
    full = int(view.spec.window_bars)
    if not windows or min(windows) < 1:
        raise StudyError(f"history_length: windows must be >= 1, got {list(windows)}")
    ks = sorted({min(int(k), full) for k in windows} | {full}, reverse=True)
    per_period = bars_per_period(view.market, view.spec.periods)
    frames, bar_frames, reference = [], [], None
    for k in ks:
        transform = None if k == full else history_mask_for(view.spec, k, scope=scope, fill=fill,
                                                            per_period=per_period)
        result = backtest(module, env_id, env_config, greedy=True, seed=seed, with_values=False,
                          obs_transform=transform)
        records = records_frame(result)
        reference = records if reference is None else reference
        frame, bars = _with_bar_values(*symbol_frames(records, view, periods_per_year),
                                       _agreement(records, reference), AGREEMENT)
        frames.append(frame.assign(window_bars=k))
        bar_frames.append(bars.assign(window_bars=k))
    per_symbol = pd.concat(frames, ignore_index=True)
    bars = pd.concat(bar_frames, ignore_index=True)
    metrics = (*METRICS, *AGREEMENT)
    boot = TimeBootstrap.of(bars, "window_bars", periods_per_year, seed, n_boot=n_boot, metrics=metrics)
    levels = group_table(per_symbol, "window_bars", seed, bars=boot, metrics=metrics).assign(kind="level")
    diffs = diff_rows(per_symbol, "window_bars", [(k, full) for k in ks if k != full], seed + 1, paired=True,
                      bars=boot, metrics=METRICS).assign(kind="diff")
    table = pd.concat([levels, diffs], ignore_index=True)
    table.insert(0, "window_bars", table["group"].str.split(" - ").str[0].astype(int))
    return table, per_symbol


def policy_mode_table(module: Any, env_id: str, env_config: dict[str, Any], samples: int,
                      periods_per_year: float, *, seed: int = 0,
                      n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Greedy vs ``samples`` stochastic samples on one env config; ``(table, per_symbol)``."""
    if samples < 1:
        raise StudyError(f"greedy_vs_stochastic: samples must be >= 1, got {samples}")
    view = market_view(env_id, env_config)
    frames, bar_frames = [], []
    for mode, greedy, n in (("greedy", True, 1), ("stochastic", False, samples)):
        records = records_frame(backtest(module, env_id, env_config, greedy=greedy, samples=n, seed=seed,
                                         with_values=False))
        probs = [c for c in records.columns if c.startswith("prob_")]
        confidence = (records[probs].max(axis=1) if probs else pd.Series(np.nan, index=records.index))
        per_bar = records[["symbol", "sample", "step"]].assign(mean_max_prob=confidence.astype(np.float64))
        frame, bars = _with_bar_values(*symbol_frames(records, view, periods_per_year), per_bar,
                                       ["mean_max_prob"])
        frames.append(frame.assign(mode=mode))
        bar_frames.append(bars.assign(mode=mode))
    per_symbol = pd.concat(frames, ignore_index=True)
    bars = pd.concat(bar_frames, ignore_index=True)
    metrics = (*METRICS, "mean_max_prob")
    boot = TimeBootstrap.of(bars, "mode", periods_per_year, seed, n_boot=n_boot, metrics=metrics)
    common = {"bars": boot, "metrics": metrics}
    table = pd.concat([group_table(per_symbol, "mode", seed, **common),
                       diff_rows(per_symbol, "mode", [("stochastic", "greedy")], seed + 1, paired=True, **common)],
                      ignore_index=True)
    return table, per_symbol


def run_history_length(run: Any, *, which: str = "final", part: str = "test",
                       windows: Sequence[int] = (5, 10, 20, 50), scope: str = "time", fill: str = "neutral",
                       seed: int = 0, n_boot: int = 1000) -> StudyResult:
    """The study on a run directory; writes ``<run>/studies/history_length/``."""
    ctx = load_context(run, which)
    table, per_symbol = history_length_table(ctx.module, ctx.env_id, ctx.env_config(part), windows,
                                             ctx.periods_per_year, scope=scope, fill=fill, seed=seed,
                                             n_boot=n_boot)
    levels = table[table["kind"] == "level"]
    pick = levels[levels["metric"].isin(["excess_return", "total_return", "action_agreement"])]
    notes = {"run": ctx.run.name, "checkpoint": which, "part": part, "scope": scope, "fill": fill,
             "model": ctx.exp.model.name, "full_window_bars": int(table["window_bars"].max()),
             "by_window": {f"{r.metric}[k={r.window_bars}]": [r.value, r.ci_low, r.ci_high]
                           for r in pick.itertuples()},
             "ci_method": ci_methods(table)}
    if ctx.exp.model.name == "gru":
        notes["caveat"] = "recurrent policy: its state remembers earlier (masked) observations"
    result = StudyResult("history_length", table, notes=notes)
    return write_result(result, ctx.out_dir("history_length"), _plot_history(levels), {"per_symbol": per_symbol})


def run_greedy_vs_stochastic(run: Any, *, which: str = "final", part: str = "test", samples: int = 8,
                             seed: int = 0, n_boot: int = 1000) -> StudyResult:
    """The study on a run directory; writes ``<run>/studies/greedy_vs_stochastic/``."""
    ctx = load_context(run, which)
    table, per_symbol = policy_mode_table(ctx.module, ctx.env_id, ctx.env_config(part), samples,
                                          ctx.periods_per_year, seed=seed, n_boot=n_boot)
    pick = table[table["metric"].isin(["total_return", "excess_return", "sharpe", "trades", "mean_max_prob"])]
    notes = {"run": ctx.run.name, "checkpoint": which, "part": part, "samples": samples,
             "values": {f"{r.metric}[{r.group}]": [r.value, r.ci_low, r.ci_high] for r in pick.itertuples()},
             "ci_method": ci_methods(table)}
    result = StudyResult("greedy_vs_stochastic", table, notes=notes)
    return write_result(result, ctx.out_dir("greedy_vs_stochastic"), _plot_modes(table), {"per_symbol": per_symbol})


def _plot_history(levels: pd.DataFrame) -> Any:
    fig = new_figure(8.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for metric, color in (("total_return", "#138a36"), ("excess_return", "#1f5fa8")):
        rows = levels[levels["metric"] == metric].sort_values("window_bars")
        ax.errorbar(rows["window_bars"], rows["value"], fmt="o-", color=color, capsize=3, label=metric,
                    yerr=np.nan_to_num(np.abs(np.vstack([rows["value"] - rows["ci_low"],
                                                         rows["ci_high"] - rows["value"]]))))
    ax.axhline(0.0, color="#555555", linewidth=0.8)
    ax.set_xscale("log")
    ks = sorted(levels["window_bars"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("bars of history kept (k; the largest is the full window)")
    ax.set_ylabel("mean over symbols (95% CI)")
    twin = ax.twinx()
    rows = levels[levels["metric"] == "action_agreement"].sort_values("window_bars")
    twin.plot(rows["window_bars"], rows["value"], "s--", color="#c62828", label="action agreement")
    twin.set_ylim(0.0, 1.05)
    twin.set_ylabel("action agreement with the full window")
    ax.legend(fontsize=8, loc="lower right")
    twin.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    return fig


def _plot_modes(table: pd.DataFrame) -> Any:
    fig = new_figure(8.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    metrics = ["total_return", "excess_return", "max_drawdown", "exposure"]
    width = 0.38
    for j, mode in enumerate(("greedy", "stochastic")):
        rows = table[(table["group"] == mode)].set_index("metric").loc[metrics]
        err = np.abs(np.vstack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]]))
        ax.bar(np.arange(len(metrics)) + (j - 0.5) * width, rows["value"], width, yerr=np.nan_to_num(err),
               capsize=3, label=mode)
    ax.set_xticks(np.arange(len(metrics)), metrics)
    ax.axhline(0.0, color="#555555", linewidth=0.8)
    ax.set_ylabel("mean over symbols (95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Matplotlib figures of the backtest report, drawn off-screen and returned as PNG bytes.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly: no pyplot,
no global backend switch, no GUI, safe in threads and Ray workers. Every function takes plain
arrays or pandas objects already prepared by :mod:`app.evaluation.report` and returns the PNG
bytes of one figure; nothing here reads files or knows about the records' layout.

Timestamps are UTC; they are drawn tz-naive (the axis label says UTC).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = {"agent": "#1f5fa8", "buy_and_hold": "#e07b00", "index": "#6b6b6b"}
LABELS = {"agent": "Agent", "buy_and_hold": "Buy & hold", "index": "Index"}
BUY, SELL = "#138a36", "#c62828"
DPI = 100


def _figure(width_in: float, height_in: float, *, top_in: float = 0.15, wspace: float = 0.25,
            hspace: float = 0.08) -> Figure:
    """A figure with fixed margins in inches (a layout engine would cost an extra draw, about
    4x the time of a plain one)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.85 / width_in, right=1 - 0.2 / width_in, bottom=0.6 / height_in,
                        top=1 - top_in / height_in, wspace=wspace, hspace=hspace)
    return fig


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (no metadata, so the same figure gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _naive(ts: pd.DatetimeIndex | pd.Series | np.ndarray) -> np.ndarray:
    idx = pd.DatetimeIndex(ts)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy()


def _style(ax, ylabel: str = "", time_axis: bool = True) -> None:
    ax.grid(True, color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if ylabel:
        ax.set_ylabel(ylabel)
    if time_axis:
        locator = mdates.AutoDateLocator(maxticks=9)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False))
        ax.set_xlabel("time (UTC)")


def _legend_above(ax, ncols: int = 4) -> None:
    """Legend in a row above the axes, where it cannot hide data."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False, fontsize=8, ncols=ncols,
              borderaxespad=0.2, handletextpad=0.4, columnspacing=1.2)


def equity_png(curves: Mapping[str, pd.Series]) -> bytes:
    """Equity curves normalized to 1 at the start, one line per strategy (log scale when the
    curves span more than a factor of 4)."""
    fig = _figure(10, 4.2)
    ax = fig.add_subplot()
    lo, hi = np.inf, -np.inf
    for name, curve in curves.items():
        ax.plot(_naive(curve.index), curve.to_numpy(), color=COLORS.get(name), linewidth=1.6 if name == "agent" else 1.2,
                label=f"{LABELS.get(name, name)}  ({curve.iloc[-1] - 1:+.1%})")
        lo, hi = min(lo, float(np.nanmin(curve))), max(hi, float(np.nanmax(curve)))
    if lo > 0 and hi / lo > 4:
        ax.set_yscale("log")
    ax.axhline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    _style(ax, "growth of 1")
    ax.legend(loc="upper left", frameon=False)
    return to_png(fig)


def drawdown_png(drawdowns: Mapping[str, pd.Series]) -> bytes:
    """Drawdown below the running peak (a fraction, drawn in percent), one line per strategy;
    the agent's is shaded."""
    fig = _figure(10, 3.4)
    ax = fig.add_subplot()
    for name, dd in drawdowns.items():
        x, y = _naive(dd.index), 100 * dd.to_numpy()
        ax.plot(x, y, color=COLORS.get(name), linewidth=1.4 if name == "agent" else 1.1,
                label=f"{LABELS.get(name, name)}  (max {-np.nanmin(y):.1f} %)")
        if name == "agent":
            ax.fill_between(x, y, 0, color=COLORS["agent"], alpha=0.15, linewidth=0)
    _style(ax, "drawdown (%)")
    ax.legend(loc="lower left", frameon=False)
    return to_png(fig)


def price_png(symbol: str, close: pd.Series, position_sign: pd.Series, markers: pd.DataFrame,
              equity: Mapping[str, pd.Series]) -> bytes:
    """Close price with the agent's trades, and below it the agent's equity against buy & hold.

    ``close`` and ``position_sign`` (+1/0/-1 held during each bar) share a time index;
    ``markers`` has columns ``timestamp, price, kind`` with kind one of ``enter_long``,
    ``exit_long``, ``enter_short``, ``exit_short``. Long bars are shaded green, short bars red.
    """
    fig = _figure(10, 5.2, top_in=0.35)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    x = _naive(close.index)
    top.plot(x, close.to_numpy(), color="#333333", linewidth=1.1, label="close")
    sign = position_sign.reindex(close.index).fillna(0.0).to_numpy()
    for value, color in ((1.0, BUY), (-1.0, SELL)):
        top.fill_between(x, 0, 1, where=sign == value, step="mid", color=color, alpha=0.08,
                         linewidth=0, transform=top.get_xaxis_transform())
    size = 60 if len(markers) < 150 else 25
    styles = {"enter_long": ("^", BUY, BUY, "buy: enter long"),
              "exit_short": ("^", "white", BUY, "buy: cover short"),
              "exit_long": ("v", "white", SELL, "sell: exit long"),
              "enter_short": ("v", SELL, SELL, "sell: enter short")}
    for kind, (marker, face, edge, label) in styles.items():
        sel = markers[markers["kind"] == kind]
        if len(sel):
            top.scatter(_naive(sel["timestamp"]), sel["price"].to_numpy(), marker=marker, s=size,
                        facecolors=face, edgecolors=edge, linewidths=1.2, zorder=3,
                        label=f"{label} ({len(sel)})")
    _style(top, "price (USD)", time_axis=False)
    top.set_title(symbol, loc="left", fontweight="bold")
    top.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8, ncols=5,
               borderaxespad=0.2, handletextpad=0.3, columnspacing=1.0)
    for name, curve in equity.items():
        bottom.plot(_naive(curve.index), curve.to_numpy(), color=COLORS.get(name), linewidth=1.2,
                    label=f"{LABELS.get(name, name)} ({curve.iloc[-1] - 1:+.1%})")
    bottom.axhline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    _style(bottom, "growth of 1")
    bottom.legend(loc="best", frameon=False, fontsize=8, ncols=3)
    return to_png(fig)


def returns_png(returns: Mapping[str, np.ndarray]) -> bytes:
    """Distribution of per-bar returns: histogram (density, shared bins over the central 99 %;
    bars with a return of exactly 0, e.g. flat, are counted in the legend but not drawn) and the
    empirical CDF over the central 99.8 %."""
    fig = _figure(10, 4.0, top_in=0.55)
    hist_ax, cdf_ax = fig.subplots(1, 2, width_ratios=[3, 2])
    finite = {k: 100 * np.asarray(v, dtype=np.float64)[np.isfinite(v)] for k, v in returns.items()}
    pooled = np.concatenate([v for v in finite.values() if len(v)] or [np.zeros(1)])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if hi <= lo:
        lo, hi = lo - 0.01, hi + 0.01
    bins = np.linspace(lo, hi, 61)
    for name, r in finite.items():
        if not len(r):
            continue
        color, moving = COLORS.get(name), np.clip(r[r != 0], lo, hi)
        label = (f"{LABELS.get(name, name)}: mean {r.mean():+.3f} %, sd {r.std():.3f} %, "
                 f"{np.mean(r == 0):.0%} at 0")
        if len(moving):
            hist_ax.hist(moving, bins=bins, weights=np.full(len(moving), 1 / len(r)), histtype="stepfilled",
                         alpha=0.22, color=color)
            hist_ax.hist(moving, bins=bins, weights=np.full(len(moving), 1 / len(r)), histtype="step",
                         color=color, linewidth=1.3, label=label)
        srt = np.sort(r)
        cdf_ax.plot(srt, np.arange(1, len(srt) + 1) / len(srt), color=color, linewidth=1.3,
                    drawstyle="steps-post")
    _style(hist_ax, "fraction of bars", time_axis=False)
    hist_ax.set_xlabel("per-bar return (%; tails clipped to the 0.5-99.5 % range)")
    hist_ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False, fontsize=8,
                   borderaxespad=0.2)
    _style(cdf_ax, "cumulative fraction of bars", time_axis=False)
    cdf_ax.set_xlim(*np.quantile(pooled, [0.001, 0.999]))
    cdf_ax.set_xlabel("per-bar return (%)")
    return to_png(fig)


def actions_png(names: Sequence[str], frequencies: np.ndarray, mean_probs: np.ndarray | None,
                share_over_time: pd.DataFrame | None) -> bytes:
    """Discrete actions: how often each was chosen vs the policy's mean probability of it, and
    the share of each action across symbols over time (``share_over_time``: one column per
    action, rows summing to 1)."""
    fig = _figure(10, 3.8, top_in=0.4)
    bars_ax, time_ax = fig.subplots(1, 2, width_ratios=[2, 3])
    x = np.arange(len(names))
    width = 0.4 if mean_probs is not None else 0.7
    bars_ax.bar(x - (width / 2 if mean_probs is not None else 0), 100 * frequencies, width,
                color=COLORS["agent"], label="chosen")
    if mean_probs is not None:
        bars_ax.bar(x + width / 2, 100 * mean_probs, width, color="#8fb3dc", label="mean probability")
    bars_ax.set_xticks(x, list(names), rotation=30 if len(names) > 5 else 0)
    _style(bars_ax, "% of bars", time_axis=False)
    _legend_above(bars_ax, 2)
    if share_over_time is not None and len(share_over_time) > 1:
        cmap = colormaps["tab10"]
        time_ax.stackplot(_naive(share_over_time.index), 100 * share_over_time.to_numpy().T,
                          labels=list(names), colors=[cmap(i % 10) for i in range(len(names))], alpha=0.85)
        time_ax.set_ylim(0, 100)
        _style(time_ax, "% of symbols (rolling mean)")
        _legend_above(time_ax, min(len(names), 6))
    else:
        time_ax.set_axis_off()
    return to_png(fig)


def continuous_actions_png(actions: np.ndarray) -> bytes:
    """Histogram of continuous actions (e.g. target weights)."""
    fig = _figure(10, 3.4)
    ax = fig.add_subplot()
    a = np.asarray(actions, dtype=np.float64)
    ax.hist(a[np.isfinite(a)], bins=60, color=COLORS["agent"], alpha=0.8)
    _style(ax, "bars", time_axis=False)
    ax.set_xlabel("action")
    return to_png(fig)

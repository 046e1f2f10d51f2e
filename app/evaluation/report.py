"""A self-contained HTML report of one backtest, for people and for MLflow.

One ``.html`` file, no external references: inline CSS, figures as base64 PNG ``<img>`` tags
(drawn by :mod:`app.evaluation.plots`), no scripts. The caller logs it as an MLflow artifact
(:meth:`app.tracking.mlflow_tracker.MlflowTracker.log_artifact`).

Sections, each a ``<section>`` with a fixed id: ``header`` (title and run metadata),
``headline`` (agent vs buy & hold vs index, the cross-section ``*ALL*`` and the ``*PORTFOLIO*``
with confidence intervals), ``caveats`` (conventions and caveats: costs, index, survivorship),
``equity`` (equal-weight portfolio curves normalized to 1), ``drawdowns``, ``prices`` (close
price with the agent's entries and exits for a few symbols), ``returns`` (distribution of
per-bar returns), ``actions`` (frequencies, mean action probabilities) and ``metrics`` (the
full :func:`app.evaluation.summary.summary_table`, per symbol).

Conventions, as in :mod:`app.evaluation.summary`: a symbol's curve has ``n + 1`` points, the
start (the close of the bar whose observation chose the first action, i.e. the last close
before the first record) then one per record; buy & hold and the index are bought at that
start close. The portfolio splits one account equally across the symbols at the start and
never rebalances (cash sits idle before a symbol's window and after it ends), the same account
as ``PORTFOLIO`` in the summary; stochastic backtests average the samples of a symbol first.
Buy/sell markers come from changes in the sign of ``position_qty`` (sample 0).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.atomic import atomic_write
from app.evaluation import plots
from app.evaluation.metrics import drawdown
from app.evaluation.summary import AGGREGATE_SCOPES, CAVEATS, SYMBOL
from app.evaluation.trade_stats import action_frequencies

#: one price or index series: timestamps (ns since the epoch, UTC, or datetimes) and values
TimeSeries = tuple[Any, Any]

SECTIONS = ("header", "headline", "caveats", "equity", "drawdowns", "prices", "returns", "actions", "metrics")
STRATEGIES = ("agent", "buy_and_hold", "index")
HEADLINE_METRICS = ("total_return", "annualized_return", "volatility", "sharpe", "sortino",
                    "max_drawdown", "calmar")
_PERCENT = {"total_return", "annualized_return", "volatility", "max_drawdown", "win_rate",
            "exposure", "pct_long", "pct_short", "pct_flat"}
_COUNTS = {"trades", "max_drawdown_duration_bars", "mean_long_bars", "mean_short_bars"}


@dataclass
class _Path:
    """One (symbol, sample) of the records: ``n`` bars plus the start point."""

    symbol: str
    sample: int
    equity: pd.Series  # n + 1 points, USD
    close: pd.Series  # n + 1 points, USD
    index: pd.Series | None  # n + 1 points
    position_sign: pd.Series  # n bars
    fill_price: np.ndarray  # n bars


def render_report(path: Path, *, title: str, records: pd.DataFrame, summary: pd.DataFrame,
                  close_usd: Mapping[str, TimeSeries], index_close: TimeSeries | None,
                  meta: Mapping[str, str], chart_symbols: Sequence[str] | None = None,
                  greedy: bool, action_names: Sequence[str] | None = None,
                  initial_equity_usd: float | None = None, ci_level: float = 0.95,
                  caveats: Sequence[str] | None = None) -> Path:
    """Write the report of one backtest to ``path`` (atomically: temp file, then rename).

    ``records``: :meth:`BacktestResult.to_table` as a DataFrame; ``summary``: the
    :func:`~app.evaluation.summary.summary_table` of the same backtest; ``close_usd[s]``:
    ``(timestamps, closes)`` of symbol ``s`` covering at least the records' bars (and ideally
    the bar before them); ``index_close``: the market index the same way, or ``None``;
    ``meta``: shown in the header (run, checkpoint, split, period, seed...). ``chart_symbols``
    defaults to the best, median and worst symbol by the agent's total return.
    ``action_names`` default to the summary's ``action_freq_<name>`` metrics, else indices.
    ``initial_equity_usd`` is the equity before the first bar; by default it is inferred from
    the first record (equity minus that bar's mark-to-close gain, plus fee and funding, as the
    env starts flat). ``ci_level`` only labels the intervals (they come from ``summary``).
    ``caveats``: the "conventions and caveats" block; default ``summary.attrs["caveats"]``, else
    :data:`app.evaluation.summary.CAVEATS`.
    """
    if records.empty:
        raise ValueError("render_report: no records")
    missing = sorted(set(records["symbol"]) - set(close_usd))
    if missing:
        raise ValueError(f"render_report: no close prices for {missing}")
    paths = _paths(records, close_usd, index_close, initial_equity_usd)
    symbols = list(dict.fromkeys(p.symbol for p in paths))
    charts = _chart_symbols(summary, paths, symbols, chart_symbols)
    samples = int(records["sample"].nunique())
    curves = _portfolio_curves(paths)
    who = "the agent, buy and hold" + (" and the index" if "index" in curves else "")
    figures = {
        "equity": _img("fig-equity", plots.equity_png(curves),
                       f"Equity curves normalized to 1: {who}, each one account split equally across "
                       "the symbols at the start"
                       + (f" (the agent's {samples} samples per symbol averaged)" if samples > 1 else "")),
        "drawdowns": _img("fig-drawdowns", plots.drawdown_png({k: pd.Series(drawdown(v.to_numpy()), v.index)
                                                               for k, v in curves.items()}),
                          f"Drawdowns below the running peak: {who}"),
        "returns": _img("fig-returns", plots.returns_png(_bar_returns(paths)),
                        "Distribution of per-bar returns: agent vs buy and hold"),
    }
    prices = [_img(f"fig-price-{i}", _price_png(sym, [p for p in paths if p.symbol == sym]),
                   f"{sym}: close price with the agent's buys and sells, and its equity", sym)
              for i, sym in enumerate(charts)]
    head = dict(meta)
    start, end = records["timestamp"].min(), records["timestamp"].max()
    head.setdefault("period", f"{_day(start)} to {_day(end)}")
    head.setdefault("policy", "greedy" if greedy else f"stochastic, {samples} sample(s) per symbol")
    head.setdefault("symbols", str(len(symbols)))
    head.setdefault("bars", f"{len(records) // max(samples, 1):,} symbol-bars")
    body = [
        _header(title, head),
        _section("headline", "Headline: agent vs buy &amp; hold vs index",
                 _caption(("PORTFOLIO: one account split equally across the symbols at the start "
                           if (summary["scope"] == "portfolio").any() else
                           "No PORTFOLIO rows: the symbols cover different bars. ")
                          + "ALL: mean over symbols. Brackets: "
                          f"{ci_level:.0%} confidence interval, a stationary bootstrap of time "
                          "blocks resampling the same bars for every symbol.")
                 + _headline_table(summary)),
        _section("caveats", "Conventions and caveats", _caveats(
            caveats if caveats is not None else summary.attrs.get("caveats", CAVEATS))),
        _section("equity", "Equity curves", figures["equity"]),
        _section("drawdowns", "Drawdowns", figures["drawdowns"]),
        _section("prices", "Prices and trades",
                 _caption("Filled triangles open a position, hollow ones close it; shading marks "
                          "bars held long (green) or short (red)"
                          + (". Sample 0 of each symbol." if samples > 1 else "."))
                 + "".join(prices)),
        _section("returns", "Distribution of per-bar returns", figures["returns"]),
        _section("actions", "Actions", _actions(records, summary, action_names)),
        _section("metrics", "All metrics, per symbol",
                 _caption("Per-symbol values have no interval; aggregate rows show "
                          f"{ci_level:.0%} intervals in brackets.") + _metrics_table(summary)),
    ]
    return _write_atomic(Path(path), _page(title, body))


# --- data ----------------------------------------------------------------------------------

def _series(ts: Any, values: Any) -> pd.Series:
    raw = ts if isinstance(ts, pd.Index | pd.Series) else np.asarray(ts)
    unit = "ns" if np.issubdtype(np.asarray(raw).dtype, np.integer) else None  # ints: ns since the epoch
    idx = pd.DatetimeIndex(pd.to_datetime(raw, utc=True, unit=unit))
    s = pd.Series(np.asarray(values, dtype=np.float64), index=idx)
    return s[~s.index.duplicated(keep="last")].sort_index()


def _at(series: pd.Series, ts: pd.DatetimeIndex) -> np.ndarray:
    """Values of ``series`` at ``ts``: the last known value (the first one before it starts, so
    an index that begins after a symbol is flat-lined, as in the summary)."""
    return series.reindex(series.index.union(ts)).ffill().bfill().reindex(ts).to_numpy()


def _paths(records: pd.DataFrame, close_usd: Mapping[str, TimeSeries], index_close: TimeSeries | None,
           initial_equity_usd: float | None) -> list[_Path]:
    index = _series(*index_close) if index_close is not None else None
    closes = {s: _series(*close_usd[s]) for s in records["symbol"].unique()}
    out = []
    ordered = records.sort_values(["symbol", "sample", "step"], kind="stable")
    for (sym, sample), g in ordered.groupby(["symbol", "sample"], sort=False):
        close = closes[sym]
        ts = pd.DatetimeIndex(pd.to_datetime(g["timestamp"], utc=True))
        bars_close = _at(close, ts)
        before = close.index.searchsorted(ts[0]) - 1
        start = close.index[before] if before >= 0 else ts[0] - (ts[1] - ts[0] if len(ts) > 1 else pd.Timedelta(1))
        start_close = close.iloc[before] if before >= 0 else bars_close[0]
        qty = g["position_qty"].to_numpy(dtype=np.float64)
        fill = g["fill_price_usd"].to_numpy(dtype=np.float64)
        eq = g["equity_usd"].to_numpy(dtype=np.float64)
        if initial_equity_usd is not None:
            eq0 = float(initial_equity_usd)
        else:
            cost = sum(float(g[c].iloc[0]) for c in ("fee_usd", "funding_usd") if c in g)
            gain = qty[0] * (bars_close[0] - fill[0]) if qty[0] != 0 and np.isfinite(fill[0]) else 0.0
            eq0 = eq[0] - gain + cost if np.isfinite(gain + cost) else eq[0]
        points = pd.DatetimeIndex([start]).append(ts)
        out.append(_Path(
            str(sym), int(sample), pd.Series(np.r_[eq0, eq], points), pd.Series(np.r_[start_close, bars_close], points),
            pd.Series(_at(index, points), points) if index is not None else None,
            pd.Series(np.sign(qty), ts), fill))
    return out


def _combine(curves: list[pd.Series]) -> pd.Series:
    """Equal split of one account across ``curves`` (each normalized to 1), never rebalanced."""
    frame = pd.concat([c / c.iloc[0] for c in curves], axis=1)
    return frame.ffill().fillna(1.0).mean(axis=1)


def _portfolio_curves(paths: list[_Path]) -> dict[str, pd.Series]:
    by_symbol: dict[str, list[_Path]] = {}
    for p in paths:
        by_symbol.setdefault(p.symbol, []).append(p)
    curves = {"agent": _combine([_combine([p.equity for p in ps]) for ps in by_symbol.values()]),
              "buy_and_hold": _combine([ps[0].close for ps in by_symbol.values()])}
    if all(ps[0].index is not None for ps in by_symbol.values()):
        curves["index"] = _combine([ps[0].index for ps in by_symbol.values()])  # type: ignore[misc]
    return curves


def _bar_returns(paths: list[_Path]) -> dict[str, np.ndarray]:
    agent = [p.equity.to_numpy()[1:] / p.equity.to_numpy()[:-1] - 1.0 for p in paths]
    bh = [p.close.to_numpy()[1:] / p.close.to_numpy()[:-1] - 1.0 for p in paths if p.sample == paths[0].sample]
    return {"agent": np.concatenate(agent), "buy_and_hold": np.concatenate(bh)}


def _markers(p: _Path) -> pd.DataFrame:
    """Entries and exits from changes in the sign of the position (a flip is both)."""
    sign = p.position_sign.to_numpy()
    prev = np.r_[0.0, sign[:-1]]
    close = p.close.to_numpy()[1:]
    price = np.where(np.isfinite(p.fill_price) & (p.fill_price > 0), p.fill_price, close)
    kinds = {"enter_long": (sign > 0) & (prev <= 0), "exit_long": (prev > 0) & (sign <= 0),
             "enter_short": (sign < 0) & (prev >= 0), "exit_short": (prev < 0) & (sign >= 0)}
    parts = [pd.DataFrame({"timestamp": p.position_sign.index[m], "price": price[m], "kind": k})
             for k, m in kinds.items() if m.any()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["timestamp", "price", "kind"])


def _price_png(symbol: str, paths: list[_Path]) -> bytes:
    p = min(paths, key=lambda q: q.sample)
    equity = {"agent": p.equity / p.equity.iloc[0], "buy_and_hold": p.close / p.close.iloc[0]}
    return plots.price_png(symbol, p.close, p.position_sign, _markers(p), equity)


def _chart_symbols(summary: pd.DataFrame, paths: list[_Path], symbols: list[str],
                   chosen: Sequence[str] | None) -> list[str]:
    if chosen is not None:
        unknown = [s for s in chosen if s not in symbols]
        if unknown:
            raise ValueError(f"render_report: chart_symbols not in the records: {unknown}")
        return list(dict.fromkeys(chosen))
    rows = summary[(summary["strategy"] == "agent") & (summary["metric"] == "total_return")
                   & (summary["scope"] == SYMBOL) & summary["symbol"].isin(symbols)] if not summary.empty else summary
    ret = dict(zip(rows["symbol"], rows["value"], strict=True)) if len(rows) else {}
    for p in paths:  # symbols the summary lacks: from the curves
        ret.setdefault(p.symbol, float(p.equity.iloc[-1] / p.equity.iloc[0] - 1.0))
    ranked = sorted(symbols, key=lambda s: -ret[s] if math.isfinite(ret[s]) else math.inf)
    return list(dict.fromkeys([ranked[0], ranked[len(ranked) // 2], ranked[-1]]))


# --- html ----------------------------------------------------------------------------------

def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _day(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M UTC").replace(" 00:00 UTC", "")


def _fmt(metric: str, v: float) -> str:
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if metric in _PERCENT or metric.startswith("action_freq_"):
        out = f"{100 * v:.1f}%"
    elif metric in _COUNTS:
        out = f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.1f}"
    else:
        out = f"{v:.2f}"
    return out[1:] if out.startswith("-") and not any(c in out for c in "123456789") else out  # no "-0.00"


def _cell(metric: str, row: tuple[float, float, float, int] | None) -> str:
    """One metric cell: the value, its interval below it when finite, raw numbers in data-*."""
    if row is None:
        return '<td class="num na">–</td>'
    value, lo, hi, _ = row
    ci = f'<span class="ci">[{_fmt(metric, lo)}, {_fmt(metric, hi)}]</span>' if np.isfinite([lo, hi]).all() else ""
    return (f'<td class="num" data-metric="{_e(metric)}" data-value="{value!r}" '
            f'data-ci-low="{lo!r}" data-ci-high="{hi!r}">{_fmt(metric, value)}{ci}</td>')


def _label(metric: str) -> str:
    return metric.replace("action_freq_", "action ").replace("_", " ")


def _table(table_id: str, summary: pd.DataFrame, scopes: Sequence[tuple[str, str]],
           metrics: Sequence[str]) -> str:
    """One row per ``(scope, symbol)`` and strategy; cells looked up by scope too, so an
    aggregate never stands in for a symbol of the same name."""
    cols = ["strategy", "scope", "symbol", "metric", "value", "ci_low", "ci_high", "n"]
    lookup = {(st, sc, sy, m): (float(v), float(lo), float(hi), int(n)) for st, sc, sy, m, v, lo, hi, n
              in summary[cols].itertuples(index=False)}
    head = "".join(f'<th scope="col">{_e(_label(m))}</th>' for m in metrics)
    rows = []
    for scope, symbol in scopes:
        for strategy in STRATEGIES:
            cells = [lookup.get((strategy, scope, symbol, m)) for m in metrics]
            if all(c is None for c in cells):
                continue
            n = next(c[3] for c in cells if c is not None)
            rows.append(f'<tr class="{strategy}" data-strategy="{strategy}" data-scope="{_e(scope)}" '
                        f'data-symbol="{_e(symbol)}"><th scope="row">{_e(symbol)}</th>'
                        f'<td>{_e(plots.LABELS[strategy])}</td><td class="num">{n}</td>'
                        + "".join(_cell(m, c) for m, c in zip(metrics, cells, strict=True)) + "</tr>")
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr><th scope="col">symbol</th>'
            f'<th scope="col">strategy</th><th scope="col">n</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _scopes(summary: pd.DataFrame, aggregates_only: bool) -> list[tuple[str, str]]:
    """``(scope, symbol)`` pairs: the portfolio, the cross-section, then (unless
    ``aggregates_only``) the symbols in table order."""
    pairs = list(dict.fromkeys(zip(summary["scope"], summary["symbol"], strict=True)))
    out = [p for scope in AGGREGATE_SCOPES for p in pairs if p[0] == scope]
    return out if aggregates_only else out + [p for p in pairs if p[0] == SYMBOL]


def _headline_table(summary: pd.DataFrame) -> str:
    present = [m for m in HEADLINE_METRICS if m in set(summary["metric"])]
    return _table("headline-table", summary, _scopes(summary, True), present)


def _metrics_table(summary: pd.DataFrame) -> str:
    return _table("metrics-table", summary, _scopes(summary, False), list(dict.fromkeys(summary["metric"])))


def _caveats(items: Sequence[str]) -> str:
    return '<ul id="caveats-list">' + "".join(f"<li>{_e(c)}</li>" for c in items) + "</ul>"


def _actions(records: pd.DataFrame, summary: pd.DataFrame, action_names: Sequence[str] | None) -> str:
    a = records["action"].to_numpy(dtype=np.float64)
    probs = sorted((c for c in records.columns if c.startswith("prob_") and c[5:].isdigit()), key=lambda c: int(c[5:]))
    discrete = bool(np.isfinite(a).all() and (a >= 0).all() and (a == np.round(a)).all() and a.max() < 64)
    if not discrete:
        return _img("fig-actions", plots.continuous_actions_png(a), "Histogram of the agent's continuous actions")
    n = max(int(a.max()) + 1, len(probs))
    from_summary = [m[len("action_freq_"):] for m in dict.fromkeys(summary["metric"]) if m.startswith("action_freq_")]
    names = list(action_names or (from_summary if len(from_summary) == n else [str(i) for i in range(n)]))
    freq = action_frequencies(a.astype(np.int64), n)
    mean_probs = records[probs].mean().to_numpy() if len(probs) == n else None
    share = pd.crosstab(pd.to_datetime(records["timestamp"], utc=True), a.astype(np.int64), normalize="index")
    share = share.reindex(columns=range(n), fill_value=0.0)
    share = share.rolling(max(1, len(share) // 50), min_periods=1).mean()
    fig = _img("fig-actions", plots.actions_png(names, freq, mean_probs, share),
               "Action frequencies and mean action probabilities, and the share of each action over time")
    rows = "".join(f'<tr data-action="{i}"><td class="num">{i}</td><td>{_e(nm)}</td><td class="num">{100 * freq[i]:.1f}%</td>'
                   f'<td class="num">{"–" if mean_probs is None else f"{100 * mean_probs[i]:.1f}%"}</td></tr>'
                   for i, nm in enumerate(names))
    return (fig + '<table id="action-table"><thead><tr><th scope="col">action</th><th scope="col">name</th>'
            '<th scope="col">chosen (% of bars)</th><th scope="col">mean probability</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _img(img_id: str, png: bytes, alt: str, symbol: str | None = None) -> str:
    data = base64.b64encode(png).decode("ascii")
    attr = f' data-symbol="{_e(symbol)}"' if symbol is not None else ""
    return (f'<figure><img id="{img_id}"{attr} alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(alt)}</figcaption></figure>")


def _caption(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _section(section_id: str, heading: str, content: str) -> str:
    return f'<section id="{section_id}"><h2>{heading}</h2>{content}</section>'


def _header(title: str, meta: Mapping[str, str]) -> str:
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in meta.items())
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS[1:])
    return (f'<header id="header"><h1>{_e(title)}</h1><dl class="meta">{items}</dl>'
            f"<nav>{nav}</nav></header>")


_CSS = """
:root{--fg:#1d232b;--muted:#5d6773;--line:#dfe3e8;--agent:#1f5fa8;--bg:#fff}
*{box-sizing:border-box} body{margin:0;background:#f4f6f8;color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:16px 20px 48px}
header,section{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:14px 0}
h1{margin:0 0 8px;font-size:22px}h2{margin:0 0 8px;font-size:17px}
dl.meta{display:flex;flex-wrap:wrap;gap:6px 22px;margin:0 0 8px}dl.meta div{display:flex;gap:6px}
dt{color:var(--muted)}dd{margin:0;font-weight:600;word-break:break-all}
nav a{margin-right:14px;color:var(--agent);text-decoration:none}nav a:hover{text-decoration:underline}
figure{margin:8px 0 14px}figure img{display:block;max-width:100%;height:auto}
figcaption,.note{color:var(--muted);font-size:12.5px;margin:4px 0 8px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap;vertical-align:top}
thead th{background:#eef1f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums} tr.agent td,tr.agent th{font-weight:600}
tr.agent{background:#f3f7fc} tbody tr{background:#fff}
tbody th[scope=row]{position:sticky;left:0;background:inherit}
.ci{display:block;color:var(--muted);font-weight:400;font-size:11px}
#metrics-table tbody tr[data-strategy="agent"]{border-top:2px solid var(--line)}
@media print{body{background:#fff}header,section{break-inside:avoid;border:0}}
"""


def _page(title: str, body: list[str]) -> str:
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
            f'<body><main>{"".join(body)}</main></body></html>\n')


def _write_atomic(path: Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)  # mkstemp makes it private; an artifact is meant to be read

    return atomic_write(path, write)

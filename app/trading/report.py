"""Live (or paper) vs backtest: replay the traded period through the backtester and compare.

:func:`compare` takes the trader's state database and runs
:func:`app.evaluation.backtest.backtest` with the same policy over the same bars (the config's
store, symbols, the first to the last traded bar, each symbol's budget as its initial cash).
Then, decision by decision (the bar an action was decided at): the mismatch rate and where the
first mismatches are; fills vs the model (the live fill price against the bar's open, in bps,
next to the model's slippage); fees, funding and PnL side by side. :func:`write_report` saves
``report.json`` and a small self-contained ``report.html`` next to the database.

A paper account started flat at the replay start matches the backtest exactly (same observation
builder, policy step, sizing and cost model); a live account differs where the exchange
filled differently (lot steps, real slippage, rejected or delayed orders).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.trading.store import StateStore


@dataclass
class SymbolComparison:
    symbol: str
    decisions: int
    compared: int
    mismatches: int
    first_mismatches: list[dict[str, Any]] = field(default_factory=list)
    trader_fees_usd: float = 0.0
    backtest_fees_usd: float = 0.0
    trader_funding_usd: float = 0.0
    backtest_funding_usd: float = 0.0
    trader_pnl_usd: float = 0.0
    backtest_pnl_usd: float = 0.0
    fill_slippage_bps: float | None = None

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else float("nan")


def compare(store: StateStore, *, module: Any, env_id: str, env_config: dict[str, Any], data_spec: dict[str, Any],
            symbols: list[str], initial_cash_usd: float, bar_ns: int, model_slippage_bps: float,
            bar_open: Any = None) -> list[SymbolComparison]:
    """Compare the trader's records in ``store`` with a backtest of the same period (see the
    module docstring). ``bar_open(symbol, ts_ns)``: the open of a bar (fill slippage)."""
    from app.evaluation.backtest import backtest

    decisions = store.decisions()
    if not decisions:
        raise ValueError(f"{store.path}: no decisions to compare")
    first, last = min(d["ts_ns"] for d in decisions), max(d["ts_ns"] for d in decisions)
    cfg = env_config | {"data": data_spec, "start_ts_ns": int(first), "end_ts_ns": int(last + bar_ns),
                        "initial_cash_usd": float(initial_cash_usd)}
    table = backtest(module, env_id, cfg, symbols=symbols, greedy=True).to_table().to_pandas()
    table["decided_ns"] = table["timestamp"].astype("int64") - bar_ns  # filled at the next bar's open
    out = []
    for s in symbols:
        mine = {d["ts_ns"]: json.loads(d["action"]) for d in decisions if d["symbol"] == s}
        bt = table[table["symbol"] == s]
        theirs = dict(zip(bt["decided_ns"].tolist(), bt["action"].tolist(), strict=True))
        both = sorted(set(mine) & set(theirs))
        bad = [t for t in both if not np.allclose(mine[t], theirs[t])]
        c = SymbolComparison(s, len(mine), len(both), len(bad),
                             [{"ts_ns": t, "trader": mine[t], "backtest": theirs[t]} for t in bad[:10]])
        fills = [f for f in store.fills(s) if f["ts_ns"] <= last]  # not a close-all after the last bar
        c.trader_fees_usd = float(sum(f["fee_usd"] for f in fills))
        in_range = bt[bt["decided_ns"] < last]  # the last decision is not filled within the traded period
        c.backtest_fees_usd = float(in_range["fee_usd"].sum())
        c.trader_funding_usd = float(sum(r["amount_usd"] for r in store.funding(s)))
        c.backtest_funding_usd = float(in_range["funding_usd"].sum())
        equity = store.equity(s)
        c.trader_pnl_usd = (equity[-1]["equity_usd"] if equity else initial_cash_usd) - initial_cash_usd
        at_last = bt[bt["decided_ns"] == last - bar_ns]
        c.backtest_pnl_usd = float(at_last["equity_usd"].iloc[-1] - initial_cash_usd) if len(at_last) else float("nan")
        if bar_open is not None:
            slips = [np.sign(f["qty"]) * (f["price"] / bar_open(s, f["ts_ns"]) - 1) * 1e4 for f in fills
                     if not f["liquidation"] and f["ts_ns"] > 0]
            c.fill_slippage_bps = float(np.mean(slips)) if slips else None
        out.append(c)
    return out


def write_report(rows: list[SymbolComparison], out_dir: Path, *, title: str, model_slippage_bps: float) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = [vars(r) | {"mismatch_rate": r.mismatch_rate} for r in rows]
    (out_dir / "report.json").write_text(json.dumps({"title": title, "model_slippage_bps": model_slippage_bps,
                                                     "symbols": data}, indent=2, default=float))
    head = ("symbol", "decisions", "compared", "mismatch rate", "fees trader / backtest", "funding trader / backtest",
            "PnL trader / backtest", "fill slippage bps (model)")
    body = "".join(
        f"<tr><td>{html.escape(r.symbol)}</td><td>{r.decisions}</td><td>{r.compared}</td>"
        f"<td>{r.mismatch_rate:.1%}</td><td>{r.trader_fees_usd:,.2f} / {r.backtest_fees_usd:,.2f}</td>"
        f"<td>{r.trader_funding_usd:,.2f} / {r.backtest_funding_usd:,.2f}</td>"
        f"<td>{r.trader_pnl_usd:,.2f} / {r.backtest_pnl_usd:,.2f}</td>"
        f"<td>{'n/a' if r.fill_slippage_bps is None else f'{r.fill_slippage_bps:.2f}'} ({model_slippage_bps:g})</td></tr>"
        for r in rows)
    where = "".join(f"<li>{html.escape(r.symbol)} at {m['ts_ns']}: trader {m['trader']}, backtest {m['backtest']}</li>"
                    for r in rows for m in r.first_mismatches)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{body}</table>"
            f"<h2>First mismatches</h2><ul>{where or '<li>none</li>'}</ul></body></html>")
    path = out_dir / "report.html"
    path.write_text(page)
    return path

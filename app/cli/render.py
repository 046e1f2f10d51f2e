"""Terminal rendering for the CLI (rich tables and progress bars)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.data.ingest import IngestResult, PullOutcome

#: wide when not a terminal (CI logs, `make demo | tee`), so tables are not squeezed to 80 columns
console = Console(width=None if sys.stdout.isatty() else 140)


def print_ingest(result: IngestResult) -> None:
    key = result.key
    console.print(f"[bold]{result.name}[/] -> {key.kind.value}/{key.source}/{key.market_type.value}/{key.timeframe}: "
                  f"{result.rows_written:,} rows, {len(result.written)} symbols")
    counts = result.found.counts()
    if counts:
        console.print("  found: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    for action in result.repairs.actions[:12]:
        console.print(f"  repaired {action}")
    if len(result.repairs) > 12:
        console.print(f"  ... {len(result.repairs) - 12} more repairs (run with -v to log all)")


def print_catalog(catalog: pd.DataFrame, per_symbol: bool = False) -> None:
    if catalog.empty:
        console.print("the store is empty: try `raytrade data import data/sample`")
        return
    catalog = catalog.assign(dataset=catalog["kind"] + " " + catalog["source"] + "/" + catalog["market"]
                             + "/" + catalog["timeframe"])
    if per_symbol:
        frame = catalog[["dataset", "symbol", "rows", "start", "end"]]
    else:
        frame = catalog.groupby("dataset", as_index=False).agg(
            symbols=("symbol", "count"), rows=("rows", "sum"), start=("start", "min"), end=("end", "max"),
            mb=("bytes", lambda b: round(b.sum() / 1e6, 1)))
    table = Table(title="raytrade store")
    for col in frame.columns:
        table.add_column(str(col), justify="right" if col in ("rows", "symbols", "mb") else "left",
                         no_wrap=col in ("dataset", "symbol"))
    for row in frame.itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    console.print(table)


def _fmt(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@contextmanager
def pull_progress(total: int) -> Iterator[Callable[[PullOutcome], None]]:
    with Progress(TextColumn("pulling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console) as progress:
        task = progress.add_task("pull", total=total, last="")

        def advance(outcome: PullOutcome) -> None:
            mark = "ok" if outcome.ok else "FAILED"
            progress.update(task, advance=1, last=f"{outcome.symbol} {mark}")

        yield advance


def print_headline(headline: pd.DataFrame, title: str) -> None:
    """Agent vs buy-and-hold vs index: one row per aggregate and metric, CIs in brackets."""
    table = Table(title=title)
    for col in ("aggregate", "metric", "agent", "buy & hold", "index"):
        table.add_column(col, justify="left" if col in ("aggregate", "metric") else "right", no_wrap=True)
    for (symbol, metric), rows in headline.groupby(["symbol", "metric"], sort=False):
        cells = []
        for strategy in ("agent", "buy_and_hold", "index"):
            row = rows[rows["strategy"] == strategy]
            if row.empty:
                cells.append("-")
                continue
            r = row.iloc[0]
            ci = "" if pd.isna(r["ci_low"]) or r["ci_low"] == r["ci_high"] else f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            value = 0.0 if r["value"] == 0 else r["value"]  # no "-0.000"
            cells.append(f"{value:.3f}{ci}")
        table.add_row(symbol, metric, *cells)
    console.print(table)

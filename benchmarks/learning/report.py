"""The suite's table (rich) and its files (CSV and Parquet of the cells and the aggregate)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.table import Table

from app.atomic import atomic_write_bytes, atomic_write_text


def fmt(mean: float, half: float | None = None, *, pct: bool = False, digits: int = 2) -> str:
    """``mean ± half`` (``—`` for nan); ``pct`` shows fractions as percentages."""
    if mean is None or not math.isfinite(mean):
        return "—"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    text = f"{mean * scale:.{0 if pct else digits}f}{unit}"
    if half is not None and math.isfinite(half):
        text += f" ±{half * scale:.{0 if pct else digits}f}"
    return text


def fmt_steps(mean: float, n: int, seeds: int) -> str:
    """Mean env steps to a threshold over the seeds that reached it, and how many did."""
    if not n:
        return f"never (0/{seeds})"
    return f"{mean / 1000:.0f}k ({n}/{seeds})"


def _g(row: pd.Series, m: str, part: str = "mean") -> float:
    value = row.get(f"{m}_{part}", math.nan)
    return math.nan if value is None or pd.isna(value) else float(value)


def suite_table(agg: pd.DataFrame, title: str = "learning suite") -> Table:
    """One line per (class, form, algo): the final policy's greedy and stochastic oracle
    fractions on held-out markets (the best checkpoint's greedy fraction beside them), buy
    precision / recall (against the blind rate), trades per 252 bars (random beside it), excess
    (random beside it) and env steps / wall time to 50 % and 70 % of the oracle on validation."""
    table = Table(title=title, title_justify="left")
    for name, justify in [("class", "left"), ("algo", "left"), ("seeds", "right"),
                          ("greedy frac", "right"), ("stoch frac", "right"), ("best ckpt", "right"),
                          ("precision (blind)", "right"), ("recall", "right"),
                          ("trades/252 (random)", "right"), ("excess (random)", "right"),
                          ("steps→50%", "right"), ("steps→70%", "right"), ("wall→70%", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    final = agg[agg["checkpoint"] == "final"]
    best = agg[agg["checkpoint"] == "best"].set_index(["class", "form", "algo"])
    for _, row in final.iterrows():
        key = (row["class"], row["form"], row["algo"])
        best_row = best.loc[key] if key in best.index else pd.Series(dtype=float)
        seeds = int(row["seeds"])
        klass = row["class"] if row["form"] == "template" else f"{row['class']} [{row['form']}]"
        table.add_row(
            str(klass), str(row["algo"]), str(seeds),
            fmt(_g(row, "greedy_oracle_fraction"), _g(row, "greedy_oracle_fraction", "ci"), pct=True),
            fmt(_g(row, "stochastic_oracle_fraction"), _g(row, "stochastic_oracle_fraction", "ci"),
                pct=True),
            fmt(_g(best_row, "greedy_oracle_fraction"), pct=True),
            f"{fmt(_g(row, 'greedy_buy_precision'), pct=True)} "
            f"({fmt(_g(row, 'greedy_event_rate'), pct=True)})",
            fmt(_g(row, "greedy_buy_recall"), pct=True),
            f"{fmt(_g(row, 'greedy_trades_per_252_bars'), digits=1)} "
            f"({fmt(_g(row, 'random_trades_per_252_bars'), digits=1)})",
            f"{fmt(_g(row, 'greedy_excess'), digits=3)} ({fmt(_g(row, 'random_excess'), digits=3)})",
            fmt_steps(_g(row, "steps_to_50"), int(_g(row, "steps_to_50", "n") or 0), seeds),
            fmt_steps(_g(row, "steps_to_70"), int(_g(row, "steps_to_70", "n") or 0), seeds),
            fmt(_g(row, "wall_s_to_70"), digits=0) + ("s" if math.isfinite(_g(row, "wall_s_to_70")) else ""),
        )
    return table


def write_results(cells: pd.DataFrame, agg: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``cells.csv``/``.parquet`` (one row per cell and checkpoint) and ``summary.csv``/
    ``.parquet`` (the aggregate) under ``out_dir``, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("cells", cells), ("summary", agg)):
        csv, parquet = out_dir / f"{name}.csv", out_dir / f"{name}.parquet"
        atomic_write_text(csv, frame.to_csv(index=False))
        atomic_write_bytes(parquet, frame.to_parquet(index=False))
        written += [csv, parquet]
    return written

"""From per-cell results to the suite's table: time to a fraction of the oracle, and the mean
with a 95 % Student-t interval over seeds per (class, form, algorithm, checkpoint)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

THRESHOLDS = (0.5, 0.7)
GROUP = ["class", "form", "algo", "checkpoint"]
#: the columns averaged over seeds (others: counts of seeds that reached a threshold)
MEASURES = [
    "greedy_oracle_fraction", "stochastic_oracle_fraction", "greedy_excess", "oracle_excess",
    "random_excess", "greedy_buy_precision", "greedy_buy_recall", "greedy_event_rate",
    "greedy_buy_rate", "greedy_trades_per_252_bars", "random_trades_per_252_bars",
    "train_wall_s", "env_steps",
    *(f"{what}_to_{int(100 * t)}" for t in THRESHOLDS for what in ("steps", "wall_s")),
]


def time_to(history: Sequence[tuple[int, float, float]], threshold: float) -> tuple[float, float]:
    """``(env_steps, wall_s)`` of the first validation evaluation whose oracle fraction is at
    least ``threshold``; ``(nan, nan)`` if none was. ``history``: ``(env_steps, wall_s,
    fraction)`` in training order (non-finite fractions never count)."""
    for steps, wall_s, fraction in history:
        if math.isfinite(fraction) and fraction >= threshold:
            return float(steps), float(wall_s)
    return math.nan, math.nan


def thresholds_reached(history: Sequence[tuple[int, float, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in THRESHOLDS:
        steps, wall_s = time_to(history, t)
        out[f"steps_to_{int(100 * t)}"], out[f"wall_s_to_{int(100 * t)}"] = steps, wall_s
    return out


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """``(mean, half_width, n)`` over the finite values (half width ``nan`` below 2 values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (class, form, algo, checkpoint): ``seeds``, and for each measure its
    ``<m>_mean``, ``<m>_ci`` (95 % half width) and ``<m>_n`` (seeds with a finite value; for
    ``steps_to_*`` that is the number of seeds that reached the threshold)."""
    out = []
    for key, group in rows.groupby(GROUP, sort=True, dropna=False):
        record: dict[str, object] = dict(zip(GROUP, key, strict=True)) | {"seeds": len(group)}
        for m in MEASURES:
            if m not in group:
                continue
            mean, half, n = t_interval(group[m].tolist())
            record |= {f"{m}_mean": mean, f"{m}_ci": half, f"{m}_n": n}
        out.append(record)
    return pd.DataFrame(out)

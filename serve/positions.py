"""Position state from a request -> per-step arrays for the observation builder, per env kind.

A recurrent replay over the last ``T`` bars needs the position at each of them: the client's
``position_history`` (``T - 1`` entries, oldest first) plus ``position``, or, when omitted, the
history implied by ``position`` alone: held for its ``bars_held`` bars, flat before (exact when
the position was opened inside the replayed window and nothing else was traded there).
Every inconsistency is a :class:`~serve.errors.RequestError` (422) naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serve.errors import RequestError
from serve.schemas import Position

STOCK_FIELDS = ("owned", "bars_held")
FUTURES_FIELDS = ("qty", "entry_price_usd", "margin_usd", "equity_usd", "mark_price_usd", "bars_held")
PORTFOLIO_FIELDS = ("qty", "bars_held")
FIELDS = {"stock": STOCK_FIELDS, "futures": FUTURES_FIELDS, "portfolio": PORTFOLIO_FIELDS}


@dataclass(frozen=True)
class StepPosition:
    """One step's position, normalized: ``qty`` is 1.0/0.0 for a stock (owned or not)."""

    qty: float
    bars_held: int
    entry_price_usd: float = 0.0
    margin_usd: float = 0.0
    equity_usd: float = 1.0
    mark_price_usd: float | None = None


def check_position(kind: str, p: Position, loc: tuple[str | int, ...]) -> StepPosition:
    """Validate ``p`` for an env of ``kind``; raises RequestError naming the field."""
    allowed = FIELDS[kind]
    extra = [f for f in Position.model_fields if f not in allowed and getattr(p, f) is not None]
    if extra:
        raise RequestError(f"{extra[0]}: not a position field of {kind} models (they take {list(allowed)})",
                           (*loc, extra[0]))
    qty = (1.0 if p.owned else 0.0) if kind == "stock" else float(p.qty or 0.0)  # stocks: 1 share-unit
    if qty != 0.0 and p.bars_held < 1:
        raise RequestError("bars_held: an open position has been held >= 1 bar (1 on the bar it filled)",
                           (*loc, "bars_held"))
    if qty == 0.0 and p.bars_held != 0:
        raise RequestError("bars_held: must be 0 when flat", (*loc, "bars_held"))
    if kind != "futures" or qty == 0.0:
        return StepPosition(qty, p.bars_held)
    missing = [f for f in ("entry_price_usd", "margin_usd", "equity_usd") if getattr(p, f) is None]
    if missing:
        raise RequestError(f"{missing[0]}: required with a non-zero qty", (*loc, missing[0]))
    return StepPosition(qty, p.bars_held, float(p.entry_price_usd), float(p.margin_usd), float(p.equity_usd),
                        p.mark_price_usd)


def step_positions(kind: str, position: Position, history: list[Position] | None, steps: int,
                   loc: tuple[str | int, ...]) -> list[StepPosition]:
    """The positions at the last ``steps`` bars, oldest first (see the module docstring)."""
    last = check_position(kind, position, (*loc, "position"))
    if history is not None:
        if len(history) != steps - 1:
            raise RequestError(f"position_history: {len(history)} entries for a replay of {steps} bars "
                               f"(needs {steps - 1}: the bars before the last)", (*loc, "position_history"))
        return [check_position(kind, p, (*loc, "position_history", i)) for i, p in enumerate(history)] + [last]
    out = []
    for back in range(steps - 1, 0, -1):
        held = last.bars_held - back
        out.append(StepPosition(last.qty, held, last.entry_price_usd, last.margin_usd, last.equity_usd)
                   if last.qty != 0.0 and held >= 1 else StepPosition(0.0, 0))
    return [*out, last]


def stock_arrays(steps: list[StepPosition]) -> tuple[np.ndarray, np.ndarray]:
    """``(owned [T] bool, bars_held [T])``."""
    return np.array([s.qty != 0.0 for s in steps]), np.array([s.bars_held for s in steps], dtype=np.int64)


def futures_arrays(steps: list[StepPosition], close: np.ndarray) -> dict[str, np.ndarray]:
    """Arguments of :func:`envs.core.observation.futures_position_observation`; the mark defaults to
    each bar's close (``close`` ``[T]``)."""
    mark = np.array([s.mark_price_usd if s.mark_price_usd is not None else c for s, c in zip(steps, close,
                                                                                              strict=True)])
    return {"qty": np.array([s.qty for s in steps]), "mark_usd": mark,
            "entry_usd": np.array([s.entry_price_usd for s in steps]),
            "margin_usd": np.array([s.margin_usd for s in steps]),
            "equity_usd": np.array([s.equity_usd for s in steps]),
            "bars_held": np.array([s.bars_held for s in steps], dtype=np.int64)}

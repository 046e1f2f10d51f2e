"""Position state from a request -> per-step arrays for the env's observation builder.

Which fields a position has is the env's knowledge (:class:`~envs.core.spec.EnvSpec`:
``position_keys``, ``size_key``, ``open_keys``, ``position_defaults``); this module only checks
a request against it. A recurrent replay over the last ``T`` bars needs the position at each of
them: the client's ``position_history`` (``T - 1`` entries, oldest first) plus ``position``, or,
when omitted, the history implied by ``position`` alone: held for its ``bars_held`` bars, flat
before (exact when the position was opened inside the replayed window and nothing else was
traded there). Every inconsistency is a :class:`~serve.errors.RequestError` (422) naming the
field.
"""

from __future__ import annotations

import numpy as np

from envs.core.spec import EnvSpec
from serve.errors import RequestError
from serve.schemas import Position

StepPosition = dict[str, float]  # position key -> value at one step (the size: 1.0/0.0 for ``owned``)


def _defaults(spec: EnvSpec, size: float, bars_held: int) -> StepPosition:
    values = {k: float(spec.position_defaults.get(k, 0.0)) for k in spec.position_keys}
    values[spec.size_key], values["bars_held"] = size, bars_held
    return values


def check_position(spec: EnvSpec, p: Position, loc: tuple[str | int, ...]) -> StepPosition:
    """Validate ``p`` for the env of ``spec``; raises RequestError naming the field."""
    allowed = spec.position_keys
    extra = [f for f in Position.model_fields if f not in allowed and getattr(p, f) is not None]
    if extra:
        raise RequestError(f"{extra[0]}: not a position field of {spec.kind} models "
                           f"(they take {list(allowed)})", (*loc, extra[0]))
    size = float(getattr(p, spec.size_key) or 0.0)  # ``owned``: True -> 1.0
    if size != 0.0 and p.bars_held < 1:
        raise RequestError("bars_held: an open position has been held >= 1 bar (1 on the bar it filled)",
                           (*loc, "bars_held"))
    if size == 0.0 and p.bars_held != 0:
        raise RequestError("bars_held: must be 0 when flat", (*loc, "bars_held"))
    values = _defaults(spec, size, p.bars_held)
    if size == 0.0:
        return values
    missing = [k for k in spec.open_keys if getattr(p, k) is None]
    if missing:
        raise RequestError(f"{missing[0]}: required with a non-zero {spec.size_key}", (*loc, missing[0]))
    values.update({k: float(getattr(p, k)) for k in allowed
                   if k not in (spec.size_key, "bars_held") and getattr(p, k) is not None})
    return values


def step_positions(spec: EnvSpec, position: Position, history: list[Position] | None, steps: int,
                   loc: tuple[str | int, ...]) -> list[StepPosition]:
    """The positions at the last ``steps`` bars, oldest first (see the module docstring)."""
    last = check_position(spec, position, (*loc, "position"))
    if history is not None:
        if len(history) != steps - 1:
            raise RequestError(f"position_history: {len(history)} entries for a replay of {steps} bars "
                               f"(needs {steps - 1}: the bars before the last)", (*loc, "position_history"))
        return [check_position(spec, p, (*loc, "position_history", i)) for i, p in enumerate(history)] + [last]
    size, out = last[spec.size_key], []
    for back in range(steps - 1, 0, -1):
        held = int(last["bars_held"]) - back
        if size != 0.0 and held >= 1:  # the same position earlier: per-bar values (the mark) default
            derived = _defaults(spec, size, held)
            derived.update({k: last[k] for k in spec.open_keys})
            out.append(derived)
        else:
            out.append(_defaults(spec, 0.0, 0))
    return [*out, last]


def position_arrays(spec: EnvSpec, steps: list[StepPosition]) -> dict[str, np.ndarray]:
    """``{key: [T]}`` for the spec's builder (``bars_held`` int64, the rest float64)."""
    return {k: np.array([s[k] for s in steps], dtype=np.int64 if k == "bars_held" else np.float64)
            for k in spec.position_keys}

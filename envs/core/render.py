"""gymnasium's render API for every env: an RGB chart drawn with numpy, or a line of text.

``render_mode`` is fixed at construction (gymnasium's convention): ``"rgb_array"`` makes
``render()`` return a ``uint8 [H, W, 3]`` chart of the recent closes (one line per asset,
normalized to the first shown bar when there are several), ``"ansi"`` a one-line account
summary, ``None`` (default) returns None. A vector env returns a tuple, one frame per env.
Rendering reads the engine's state only and never runs on the step hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RENDER_MODES = ("rgb_array", "ansi")
RENDER_FPS = 4
RENDER_BARS = 200            # bars shown by the chart
HEIGHT, WIDTH, MARGIN = 240, 400, 8
PALETTE = np.array([(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
                    (140, 86, 75)], dtype=np.uint8)


def check_render_mode(owner: str, render_mode: str | None) -> str | None:
    """``render_mode`` if it is None or one of :data:`RENDER_MODES`, else a ValueError."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode: {owner} renders {list(RENDER_MODES)} or None, got {render_mode!r}")
    return render_mode


def line_chart(lines: Sequence[np.ndarray], height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """``uint8 [height, width, 3]``: each line stretched over the width, all on one y scale,
    white background, 2-pixel lines (non-finite values are skipped)."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    values = [np.asarray(y, dtype=np.float64) for y in lines if len(y)]
    finite = np.concatenate([y[np.isfinite(y)] for y in values]) if values else np.zeros(0)
    if not len(finite):
        return img
    lo, hi = float(finite.min()), float(finite.max())
    span = (hi - lo) or 1.0
    xs = np.arange(width, dtype=np.float64)
    for k, y in enumerate(values):
        ok = np.isfinite(y)
        if not ok.any():
            continue
        x = np.linspace(0.0, width - 1.0, len(y))[ok] if len(y) > 1 else np.array([0.0])
        level = np.interp(xs, x, y[ok])
        rows = np.rint((height - 1 - MARGIN) - (level - lo) / span * (height - 1 - 2 * MARGIN)).astype(np.int64)
        prev = np.r_[rows[0], rows[:-1]]  # connect each column to the previous one (steep moves)
        top, bottom = np.minimum(rows, prev), np.maximum(rows, prev) + 1
        grid = np.arange(height)[:, None]
        img[(grid >= top) & (grid <= bottom)] = PALETTE[k % len(PALETTE)]
    return img


def render_frame(engine, i: int, render_mode: str | None):
    """Env ``i`` of ``engine`` in ``render_mode`` (see the module docstring)."""
    if render_mode == "rgb_array":
        return line_chart(engine.render_lines(i))
    if render_mode == "ansi":
        return engine.render_text(i)
    return None

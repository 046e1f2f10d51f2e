"""Where an engine's market observations come from: precomputed tables or per-step gathers.

The engine precomputes every row's market observation (:meth:`ObservationTables._precompute`)
when the tables fit its memory budget (:mod:`envs.core.memory`: ``precompute_max_mb``, or a
share of the available memory), else it gathers windows per step with the same builder
(:func:`~envs.core.observation.market_observation`): the vector face for its B rows at once,
the single face a chunk of its env's next rows at a time (:meth:`ObservationTables._gathered_row`).
The choice is logged (INFO). The floats are the same either way (``tests/unit/envs/test_layout.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from envs.core.config import EngineConfig
from envs.core.features import FeatureBase
from envs.core.market import MarketArrays
from envs.core.memory import MB, precompute_budget_mb
from envs.core.observation import POSITION_KEYS, ObservationSpec, market_observation

ROW_VIEWS_BYTES = 1_600  # Python objects per row of the scalar face's caches (measured ~1.5 kB)
#: rows per gathered chunk: the scalar face without tables gathers its env's next rows in one
#: batched call (an episode of 252 bars is one chunk) and hands out views of them step by step
CHUNK_ROWS = 256
#: rows per call when precomputing tables (consecutive rows of one series: read in place)
PRECOMPUTE_ROWS = 1024
log = logging.getLogger(__name__)


class ObservationTables:
    """The market-observation part of :class:`~envs.core.engine.Engine` (a mixin: it reads the
    engine's market, spec, config, per-row arrays and, for the single face, its episode end)."""

    market: MarketArrays
    spec: ObservationSpec
    config: EngineConfig
    batched: bool
    end_row: Any
    _base: FeatureBase
    _bars: np.ndarray
    _bar_lo: int
    _bar_list: list[list[float]]
    _chunk_lo: int
    _chunk_n: int
    _chunk_items: tuple[tuple[str, np.ndarray], ...]

    def _precompute(self) -> dict[str, np.ndarray] | None:
        """Every row's market observation, read-only: for the batched engine ONE float32 table
        ``[R, F]`` (a step gathers contiguous rows with a single ``np.take``); for the scalar
        engine one contiguous table per field (a step takes cheap row views)."""
        layout: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        width = 0
        for key, (shape, _, _) in self.spec.fields().items():
            if key not in POSITION_KEYS:
                size = int(np.prod(shape))
                layout[key] = (width, width + size, shape)
                width += size
        self._layout, self._width = layout, width
        self._table: np.ndarray | None = None  # the batched engine's [R, F] table
        self._scratch: dict[str, np.ndarray] = {}
        n_rows = len(self.market.ts_ns)
        budget_mb, why = precompute_budget_mb(self.config.precompute_max_mb)
        self._budget_bytes = budget_mb * MB
        need_mb = n_rows * self.spec.market_bytes_per_row() / MB
        self.precomputed = need_mb * MB <= self._budget_bytes
        log.info("%s: %s (%s rows; tables %s %s MB, budget %s MB: %s; per-row arrays %s MB)", type(self).__name__,
                 "observation tables precomputed" if self.precomputed else "observations gathered per step",
                 f"{n_rows:,}", "need" if self.precomputed else "would need", f"{need_mb:,.0f}",
                 f"{budget_mb:,.0f}", why, f"{self._base.nbytes() / MB:,.0f}")
        if not self.precomputed:
            return None
        if self.batched:
            table = self._table = np.empty((n_rows, width), dtype=np.float32)
            views = self._block_views(table)
        else:
            views = {k: np.empty((n_rows, *shape), dtype=np.float32) for k, (_, _, shape) in layout.items()}
        offsets = self.market.offsets
        for s in range(self.market.n_symbols):  # runs of consecutive rows of one series
            for lo in range(int(offsets[s]), int(offsets[s + 1]), PRECOMPUTE_ROWS):
                rows = np.arange(lo, min(lo + PRECOMPUTE_ROWS, int(offsets[s + 1])))
                market_observation(self._base, rows, {k: v[lo:lo + len(rows)] for k, v in views.items()},
                                   self._scratch)
        for view in (self._table, *views.values()):
            if view is not None:
                view.flags.writeable = False
        return views

    def _block_views(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Per-field views of a ``[n, F]`` block (fields side by side in each row)."""
        n = len(block)
        return {k: block[:, a:b].reshape(n, *shape) for k, (a, b, shape) in self._layout.items()}

    def _fresh_fields(self, n: int) -> dict[str, np.ndarray]:
        """One new C-contiguous float32 array ``[n, *shape]`` per market field."""
        return {k: np.empty((n, *shape), dtype=np.float32) for k, (_, _, shape) in self._layout.items()}

    def _chunked_bar(self, row: int) -> list[float]:
        """``(open, close, index open, index close)`` of ``row`` for the scalar face without
        tables: Python floats of a chunk of rows made when ``row`` leaves it."""
        i = row - self._bar_lo
        if not 0 <= i < len(self._bar_list):
            self._bar_list = self._bars[:, row:row + CHUNK_ROWS].T.tolist()
            self._bar_lo, i = row, 0
        return self._bar_list[i]

    def _gathered_row(self, r: int) -> dict[str, np.ndarray]:
        """Market part at row ``r`` of the scalar face without tables: read-only views of the
        current chunk, a batched gather of the env's next rows up to its episode's end (at most
        :data:`CHUNK_ROWS`) made when ``r`` leaves it. Chunks are never written again: views
        handed out stay valid, as with tables."""
        i = r - self._chunk_lo
        if not 0 <= i < self._chunk_n:
            rows = np.arange(r, min(r + CHUNK_ROWS, max(int(self.end_row), r) + 1), dtype=np.int64)
            block = np.empty((len(rows), self._width), dtype=np.float32)
            market_observation(self._base, rows, self._block_views(block), self._scratch)
            block.flags.writeable = False
            self._chunk_lo, self._chunk_n, i = r, len(rows), 0
            self._chunk_items = tuple(self._block_views(block).items())
        obs = {}
        for k, t in self._chunk_items:
            obs[k] = t[i]
        return obs

"""Attention model: a transformer over each observation window (stateless).

RLlib's new API stack has no built-in attention net (``use_attention`` is silently ignored), so
attention runs over the bars INSIDE one observation rather than over past env steps: each
windowed entry ``(window_bars, n_features)`` is projected per bar, given a learned positional
embedding and passed through a pre-norm ``TransformerEncoder``; the newest bar's token (or the
mean) is its embedding. Windows of different lengths per key each get their own positions and
weights. Nothing is carried between env steps, so serving needs no state.
"""

from __future__ import annotations

from typing import ClassVar

from app.models.common import TradingRLModule
from app.models.encoders import Temporal


class AttentionModule(TradingRLModule):
    """Stateless policy/value module with a transformer per observation window.

    Obs entries arrive as ``[B, *shape]``; ``ACTION_DIST_INPUTS`` is ``[B, A]``.
    """

    MODEL_NAME: ClassVar[str] = "attention"
    TEMPORAL: ClassVar[Temporal] = "attention"

"""MLP baseline: every window flattened into a Linear, fused, no memory across env steps."""

from __future__ import annotations

from typing import ClassVar

from app.models.common import TradingRLModule
from app.models.encoders import Temporal


class MLPModule(TradingRLModule):
    """Stateless policy/value module; the observation window is its only memory.

    Obs entries arrive as ``[B, *shape]``; ``ACTION_DIST_INPUTS`` is ``[B, A]``.
    """

    MODEL_NAME: ClassVar[str] = "mlp"
    TEMPORAL: ClassVar[Temporal] = "flatten"

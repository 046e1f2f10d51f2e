"""Attention model: a transformer over the observation's windows of bars (stateless).

RLlib's new API stack has no built-in attention net (``use_attention`` is silently ignored), so
attention runs over the bars INSIDE one observation rather than over past env steps. Each
windowed entry ``(window_bars, n_features)`` is cut into patches of ``attn_patch_bars`` bars
(one token each: a per-key ``Linear`` and learned positions); the tokens of all of a row's
windows form one sequence through one shared pre-norm transformer (fused QKV, torch's
``scaled_dot_product_attention``), batched over rows and assets; each window is pooled from its
own tokens (its newest token, or the mean). With ``attn_pool="last"`` the last layer computes
the pooled tokens only. Nothing is carried between env steps, so serving needs no state.

Cost (issue 12): the first version ran one ``nn.TransformerEncoder`` per window over every bar
(four 50-token sequences, width 64) and trained PPO at 66 env-steps/s; the defaults here (width
32, 2 heads, 2 layers, FFN 64, 10-bar patches: 20 tokens per StockSwing row) cost about 3x the
MLP per sample. ``benchmarks/bench_models.py`` measures it next to the MLP, GRU and the old design.
Checkpoints of the first version do not load into this one (different parameters).
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

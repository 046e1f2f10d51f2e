"""GRU model: the Dict-observation encoder per env step, then a GRU across env steps.

State: ``get_initial_state() == {"h": zeros(gru_hidden)}`` (unbatched, as RLlib requires).
RLlib owns the state's life cycle: its env-to-module connector puts the initial state into
``STATE_IN`` at the first step of every episode (so the state is reset at episode end), and the
learner connector chunks episodes into ``max_seq_len`` pieces, zero-pads them and passes each
chunk's stored starting state.

Shapes (RLlib 2.60's ``AddTimeDimToBatchAndZeroPad`` adds the time axis for stateful modules):

* sampling: obs entries ``[B, 1, *shape]``, ``STATE_IN["h"]`` ``[B, H]``;
* training / GAE: obs ``[B, T=max_seq_len, *shape]``, ``STATE_IN["h"]`` ``[B, H]``;
* outputs: ``ACTION_DIST_INPUTS`` ``[B, T, A]``, values ``[B, T]``, ``STATE_OUT["h"]`` ``[B, H]``.

Layout: ``encoder -> LayerNorm -> GRU``, and the heads see ``concat(gru_output, encoder_output)``.
Both choices come from a failed first version (GRU output straight into the heads): the tanh-
bounded GRU output saturated within ~40 Adam steps while the policy pushed one logit down, and a
plain "predict the sign of the last close" task stayed at chance where the MLP reached 95%.
The LayerNorm keeps the GRU's input O(1); the skip connection lets the heads read the current
bar's (unbounded ReLU) features directly while the GRU adds memory on top.

Sequence handling: the encoder runs ONCE over all ``B * T`` steps of a batch (folded into the
batch), the GRU over the whole ``[B, T]`` chunk in one ``nn.GRU`` call (input projections for
all steps in one matmul, the recurrence in ATen), and a one-step batch (sampling, Serve, the
backtest) takes ``torch.gru_cell`` with the same weights, skipping ``nn.GRU``'s per-call
overhead. No Python runs per time step; RLlib's connectors chunk and zero-pad episodes once per
batch, and zero-padded steps come after the valid ones, so they never change a valid step's
output (a test checks it).

Outside RLlib (Serve, a backtest stepping one bar at a time) obs may come without a time axis,
``[B, *shape]``; the outputs then have none either. A batch without ``STATE_IN`` starts from the
initial (zero) state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override
from torch import nn

from app.models.common import Batch, TradingRLModule
from app.models.encoders import Temporal

STATE_KEY = "h"


class GRUModule(TradingRLModule):
    """Stateful policy/value module: encoder -> LayerNorm -> 1-layer GRU, heads on
    ``concat(gru_output, encoder_output)``."""

    MODEL_NAME: ClassVar[str] = "gru"
    TEMPORAL: ClassVar[Temporal] = "flatten"

    def _build_core(self, in_dim: int) -> int:
        self.gru_in_norm = nn.LayerNorm(in_dim)
        self.gru = nn.GRU(in_dim, self.cfg.gru_hidden, num_layers=1, batch_first=True)
        return self.cfg.gru_hidden + in_dim

    @override(RLModule)
    def get_initial_state(self) -> dict[str, np.ndarray]:
        return {STATE_KEY: np.zeros(self.cfg.gru_hidden, dtype=np.float32)}

    def _embed(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs = batch[Columns.OBS]
        lead = self.encoder.lead_shape(obs)
        if len(lead) not in (1, 2):
            raise ValueError(f"GRU obs must be [B, T, ...] or [B, ...]; leading dims are {lead}")
        no_time = len(lead) == 1
        if no_time:
            obs = _map(obs, lambda x: x.unsqueeze(1))
        x = self.encoder(obs)  # [B, T, D]
        state_in = batch.get(Columns.STATE_IN)
        if state_in is None:
            h0 = x.new_zeros(1, x.shape[0], self.cfg.gru_hidden)
        else:
            h = state_in[STATE_KEY]
            if tuple(h.shape) != (x.shape[0], self.cfg.gru_hidden):
                raise ValueError(
                    f"STATE_IN[{STATE_KEY!r}]: expected shape {(x.shape[0], self.cfg.gru_hidden)}, "
                    f"got {tuple(h.shape)}"
                )
            h0 = h.to(x.dtype).unsqueeze(0)
        z = self.gru_in_norm(x)
        if z.shape[1] == 1:  # one step (sampling, Serve): the cell alone, same maths and weights
            w_ih, w_hh, b_ih, b_hh = self.gru.all_weights[0]
            h_n = torch.gru_cell(z[:, 0], h0[0], w_ih, w_hh, b_ih, b_hh)
            out = h_n.unsqueeze(1)
        else:  # a whole chunk in one call: the recurrence runs in ATen, no Python per step
            out, h_all = self.gru(z, h0)
            h_n = h_all.squeeze(0)
        out = torch.cat([out, x], dim=-1)
        if no_time:
            out = out.squeeze(1)
        return out, {STATE_KEY: h_n}


def _map(obs: Any, fn: Any) -> Any:
    """Apply ``fn`` to every tensor of a (flat) obs dict, or to a single tensor."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)

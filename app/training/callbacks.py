"""RLlib callbacks: trading metrics per episode and the action distribution, from env runners.

Episodes arrive in chunks (one per ``sample()`` call); metrics are computed on the whole
episode (``prev_episode_chunks`` + the last chunk) from the env's info: equity and position
after every step, so the numbers are the env's own accounting, not a re-derivation.
With a curriculum, :func:`app.training.curriculum.make_callbacks` returns a subclass that also runs it
(:mod:`app.training.curriculum`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from app.evaluation.metrics import episode_metrics

if TYPE_CHECKING:
    pass

PREFIX = "trading"


class TradingCallbacks(RLlibCallback):
    """Logs ``trading/<metric>`` (mean over episodes) and ``actions/frac_<a>`` per iteration."""

    #: set by :func:`make_callbacks` (a subclass per run), read in the env runner processes
    periods_per_year: float = 252.0

    def on_episode_end(self, *, episode: Any, prev_episode_chunks: list | None = None,
                       metrics_logger: Any = None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        chunks = [*(prev_episode_chunks or []), episode]
        infos = [info for chunk in chunks for info in chunk.get_infos()]
        if len(infos) < 2 or "equity_usd" not in infos[0]:
            return
        equity = np.array([float(i["equity_usd"]) for i in infos])
        position = np.array([float(np.sum(np.abs(i["position_qty"])) * np.sign(np.sum(i["position_qty"])))
                             for i in infos[1:]])
        for name, value in episode_metrics(equity, position, self.periods_per_year).items():
            if np.isfinite(value):
                metrics_logger.log_value(f"{PREFIX}/{name}", value, reduce="mean", window=100)
        actions = np.concatenate([np.asarray(chunk.get_actions()).reshape(len(chunk.get_actions()), -1)
                                  for chunk in chunks if len(chunk.get_actions())])
        if actions.shape[1] == 1 and np.issubdtype(actions.dtype, np.integer):
            counts = np.bincount(actions[:, 0], minlength=int(actions.max()) + 1) / len(actions)
            for a, frac in enumerate(counts):
                metrics_logger.log_value(f"actions/frac_{a}", float(frac), reduce="mean", window=100)
        else:
            metrics_logger.log_value("actions/mean", float(np.mean(actions)), reduce="mean", window=100)
            metrics_logger.log_value("actions/mean_abs", float(np.mean(np.abs(actions))), reduce="mean", window=100)

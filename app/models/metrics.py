"""Model diagnostics for training metrics: parameter counts and dead ReLUs.

A ReLU unit is *dead* on a batch when its output is 0 for every sample (and every time step /
bar / asset folded into the batch): it passes no gradient, and a network whose dead fraction
climbs during training is losing capacity (a classic symptom of a too-high learning rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import torch
from torch import nn


def count_parameters(module: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class ReluMonitor:
    """Context manager recording which units of every ``nn.ReLU`` under ``module`` fired.

    Use around any number of forward passes; ``dead_fraction()`` then pools all of them::

        with ReluMonitor(module) as monitor:
            module.forward_inference(batch)
        metrics["dead_relu_fraction"] = monitor.dead_fraction()
    """

    def __init__(self, module: nn.Module) -> None:
        self.layers = [m for m in module.modules() if isinstance(m, nn.ReLU)]
        self._alive: dict[int, torch.Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, layer: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        fired = (output.detach() > 0).reshape(-1, output.shape[-1]).any(dim=0)
        prev = self._alive.get(id(layer))
        self._alive[id(layer)] = fired if prev is None else prev | fired

    def __enter__(self) -> ReluMonitor:
        self._handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def dead_fraction(self) -> float | None:
        """Dead units / all ReLU units seen; ``None`` when no ReLU ran (e.g. tanh models)."""
        if not self._alive:
            return None
        total = sum(int(a.numel()) for a in self._alive.values())
        dead = sum(int((~a).sum()) for a in self._alive.values())
        return dead / total if total else None


def dead_relu_fraction(module: nn.Module, batch: Mapping[str, Any]) -> float | None:
    """Fraction of dead ReLU units of ``module`` on one inference pass over ``batch``.

    ``module`` is an RLModule (``forward_inference`` is used: eval mode, no grad) or any
    ``nn.Module`` taking ``batch``. For the GRU pass ``STATE_IN`` (or nothing: zero state).
    Returns ``None`` if the model has no ReLU (activation other than ``"relu"``).
    """
    with ReluMonitor(module) as monitor, torch.no_grad():
        forward = getattr(module, "forward_inference", None)
        if forward is not None:
            forward(dict(batch))
        else:
            module(batch)
    return monitor.dead_fraction()

"""PPO's torch Learner with less fixed cost per minibatch (same update, same numbers).

Profiled on the 2-core CPU machine (PPO-MLP, minibatch 256), RLlib 2.60's ``TorchLearner`` spent
more time around the gradient step than in the network's forward and backward passes:

* ``apply_gradients`` checks every parameter's gradient with ``torch.isfinite(g).all()``, twice
  (once to set it, once before ``optimizer.step()``): 2 x 40 small ops and 80 Python bool syncs
  per minibatch. :meth:`TradingPPOTorchLearner.apply_gradients` checks all gradients at once
  (one ``torch._foreach_norm`` + one sync) and steps; if any is not finite it defers to RLlib's
  method, so the ``nan``/``inf`` handling (zeroing, warnings, ``torch_skip_nan_gradients``)
  stays RLlib's.
* ``torch.optim.Adam(params)`` picks the per-tensor loop on the CPU (``foreach``/``fused`` are
  chosen automatically only for CUDA tensors). The fused kernel (torch >= 2.4 on CPU and CUDA)
  runs the same Adam update in one call, about 5x faster here
  (:meth:`TradingPPOTorchLearner.configure_optimizers_for_module`).
* Global-norm gradient clipping loops over the tensors in Python (a norm, a ``nan_to_num`` and
  a multiply per tensor); :meth:`TradingPPOTorchLearner.postprocess_gradients_for_module` does
  the same arithmetic with ``torch._foreach_norm`` / ``torch._foreach_mul_``.
* PPO's loss logs six statistics per minibatch (``metrics.log_dict(..., window=1)``), and the
  learner logs the batch's off-policyness per minibatch (``window=1`` as well); a ``log_value``
  of a tensor costs a few hundred microseconds, so these were ~10 % of a minibatch. With
  ``window=1`` only the LAST value survives the update's ``metrics.reduce()``, so
  :class:`TradingPPOTorchLearner` records them per minibatch and logs the last ones once, before
  PPO's ``after_gradient_based_update`` (which reads the KL for the adaptive KL coefficient):
  the same results, logged once per update instead of once per minibatch (likewise the
  gradients' global norm).

Used for every PPO run by :func:`app.training.algo.build_algorithm_config` (the decision-GAE
learner derives from it).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner


def adam(params: list[Any]) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused kernel where torch supports it (float parameters on
    the CPU or CUDA), the default implementation otherwise."""
    fusable = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, fused=True) if fusable else torch.optim.Adam(params)


def all_finite(gradients: list[torch.Tensor]) -> bool:
    """Whether every element of every gradient is finite (one reduction, one host sync)."""
    if not gradients:
        return True
    norms = torch._foreach_norm(gradients, ord=float("inf"))
    return bool(torch.isfinite(torch.stack(norms)).all())


class _LossStatsRecorder:
    """Stands in for the learner's ``MetricsLogger`` while PPO's loss runs: ``log_dict`` calls
    are kept (the latest per key), everything else goes to the real logger."""

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics
        self.calls: dict[Any, tuple[dict, dict]] = {}

    def log_dict(self, value_dict: dict, **kwargs: Any) -> None:
        detached = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in value_dict.items()}
        self.calls[repr(kwargs.get("key"))] = (detached, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metrics, name)


class TradingPPOTorchLearner(PPOTorchLearner):
    """PPO's torch learner with a fused Adam, one finiteness check per step and the loss
    statistics logged once per update (module docstring)."""

    _pending_loss_stats: dict[Any, tuple[dict, dict]] | None = None
    _pending_off_policy_batch: Any = None

    @property
    def _pending_values(self) -> dict[Any, Any]:
        """``window=1`` values (the latest per key) to log at the end of the update."""
        if "_pending_values_dict" not in self.__dict__:
            self._pending_values_dict: dict[Any, Any] = {}
        return self._pending_values_dict

    def compute_loss_for_module(self, **kwargs: Any) -> Any:
        metrics = self.metrics
        recorder = _LossStatsRecorder(metrics)
        self.metrics = recorder  # type: ignore[assignment]  # quacks like a MetricsLogger
        try:
            loss = super().compute_loss_for_module(**kwargs)
        finally:
            self.metrics = metrics
        if any(kw.get("window") != 1 for _, kw in recorder.calls.values()):  # not last-value stats
            for value_dict, kw in recorder.calls.values():
                metrics.log_dict(value_dict, **kw)
        else:
            self._pending_loss_stats = (self._pending_loss_stats or {}) | recorder.calls
        return loss

    def _compute_off_policyness(self, batch: Any) -> None:
        self._pending_off_policy_batch = batch  # logged (window=1) for the last minibatch only

    def _flush_minibatch_stats(self) -> None:
        pending, self._pending_loss_stats = self._pending_loss_stats or {}, None
        for value_dict, kw in pending.values():
            self.metrics.log_dict(value_dict, **kw)
        values, self._pending_values_dict = self._pending_values, {}
        for key, value in values.items():
            self.metrics.log_value(key=key, value=value, window=1)
        batch, self._pending_off_policy_batch = self._pending_off_policy_batch, None
        if batch is not None:
            super()._compute_off_policyness(batch)

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        self._flush_minibatch_stats()
        super().after_gradient_based_update(timesteps=timesteps)

    def configure_optimizers_for_module(self, module_id: Any, config: Any = None) -> None:
        assert self._module is not None
        params = list(self.get_parameters(self._module[module_id]))
        self.register_optimizer(module_id=module_id, optimizer=adam(params), params=params,
                                lr_or_lr_schedule=config.lr)

    def postprocess_gradients_for_module(self, *, module_id: Any, config: Any = None,
                                         module_gradients_dict: dict[Any, Any]) -> dict[Any, Any]:
        """Global-norm clipping as RLlib's ``clip_gradients(grad_clip_by="global_norm")`` computes it
        (per-tensor L2 norms with inf mapped to +-1e9 and NaN to 0, their L2 norm, the
        coefficient ``clip / max(norm + 1e-6, clip)``), in two fused calls instead of a Python loop
        over the tensors; the norm is logged once per update (``window=1``). Other clipping modes
        go to RLlib."""
        if not config.grad_clip or config.grad_clip_by != "global_norm":
            return super().postprocess_gradients_for_module(module_id=module_id, config=config,
                                                            module_gradients_dict=module_gradients_dict)
        out: dict[Any, Any] = {}
        for optimizer_name, optimizer in self.get_optimizers_for_module(module_id):
            grads = self.filter_param_dict_for_optimizer(param_dict=module_gradients_dict, optimizer=optimizer)
            tensors = [g.detach() for g in grads.values() if g is not None]
            if tensors:
                norms = torch.stack(torch._foreach_norm(tensors)).nan_to_num(neginf=-10e8, posinf=10e8)
                total = torch.linalg.vector_norm(norms).nan_to_num(neginf=-10e8, posinf=10e8)
                coeff = torch.clamp(config.grad_clip / torch.clamp(total + 1e-6, min=config.grad_clip), max=1.0)
                torch._foreach_mul_(tensors, coeff)
            else:
                total = torch.tensor(0.0)
            self._pending_values[(module_id, f"gradients_{optimizer_name}_global_norm")] = total
            out.update(grads)
        return out

    def apply_gradients(self, gradients_dict: dict[Any, Any]) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        if self._grad_scalers is not None or self._lr_scheduler_classes is not None or not all_finite(grads):
            super().apply_gradients(gradients_dict)
            return
        for pid, grad in gradients_dict.items():
            self._params[pid].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()

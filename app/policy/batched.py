"""Running an RLModule as a policy: batched actions for B envs, recurrent state in and out.

The one inference path: training's validation evaluation, backtests, Serve and (soon) the trader
and the game call :meth:`BatchedPolicy.step` (explicit state in, state out: callers that keep
per-client or per-symbol state, like Serve's sessions or the trader, own it) or
:meth:`BatchedPolicy.act` (the policy carries the state of its B envs itself: rollouts).
Both give the same observation dict in, same distribution, same greedy rule, and the action
distribution for every action space (:func:`action_probabilities`).

The module sees the entries its observation space declares: an env that observes more (the
``action_mask`` added after a module was trained without one) has the extra entries dropped,
so a backtest feeds an old module what Serve builds for it (Serve builds from the module's
space) and masks reach exactly the modules trained with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

#: recurrent state of a batch: name -> tensor ``[B, ...]`` (empty for stateless modules)
State = dict[str, Any]
ObsTransform = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class ActionProbabilities:
    """The action distribution of each row, in the form its action space allows.

    * ``Discrete(n)``: ``probs`` ``[B, n]`` (softmax of the logits);
    * ``MultiDiscrete(nvec)``: ``components``, one ``[B, n_i]`` array per component;
    * ``Box(d)``: ``mean`` and ``std`` ``[B, d]`` of the diagonal Gaussian (before clipping to
      the box; a density has no per-action probability).
    """

    probs: np.ndarray | None = None
    components: list[np.ndarray] = field(default_factory=list)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def row(self, b: int) -> list[float] | list[list[float]] | dict[str, list[float]]:
        """Row ``b`` as plain lists (JSON-ready)."""
        if self.probs is not None:
            return self.probs[b].tolist()
        if self.components:
            return [c[b].tolist() for c in self.components]
        assert self.mean is not None and self.std is not None
        return {"mean": self.mean[b].tolist(), "std": self.std[b].tolist()}


def action_probabilities(space: gym.Space, dist_inputs: np.ndarray) -> ActionProbabilities:
    """The distribution encoded by ``dist_inputs`` ``[..., width]`` for ``space`` (float64)."""
    logits = np.asarray(dist_inputs, dtype=np.float64)
    if isinstance(space, gym.spaces.Discrete):
        return ActionProbabilities(probs=_softmax(logits))
    if isinstance(space, gym.spaces.MultiDiscrete):
        parts = np.split(logits, np.cumsum(space.nvec)[:-1], axis=-1)
        return ActionProbabilities(components=[_softmax(p) for p in parts])
    mean, log_std = np.split(logits, 2, axis=-1)  # RLlib's TorchDiagGaussian layout
    return ActionProbabilities(mean=mean, std=np.exp(log_std))


@dataclass
class PolicyStep:
    """One batched decision: actions ``[B, ...]``, the distribution, and values if asked."""

    actions: np.ndarray
    distribution: ActionProbabilities
    dist_inputs: np.ndarray
    values: np.ndarray | None = None

    @property
    def action_probs(self) -> np.ndarray | None:
        """Discrete action spaces: ``[B, n]`` probabilities (None otherwise)."""
        return self.distribution.probs


class BatchedPolicy:
    """Wraps an RLModule: actions for B envs from a batched observation dict.

    ``obs_transform`` (optional, studies only) maps each batched observation dict to the one the
    module sees, e.g. :class:`app.evaluation.studies_policy.HistoryMask`; it must not modify its
    input in place. None (the default) feeds the env's observations unchanged.
    """

    def __init__(self, module: Any, action_space: gym.Space, num_envs: int, *, greedy: bool = True,
                 seed: int = 0, with_values: bool = False, obs_transform: ObsTransform | None = None) -> None:
        import torch

        from app.models import action_dist_cls

        self.module = module
        self.action_space = action_space
        self.num_envs = num_envs
        self.greedy = greedy
        self.with_values = with_values and hasattr(module, "vf_head")  # inference-only copies have none
        self.obs_transform = obs_transform
        space = getattr(module, "observation_space", None)
        self._obs_keys = frozenset(space.spaces) if isinstance(space, gym.spaces.Dict) else None
        self._torch = torch
        self._dist_cls = action_dist_cls(action_space)
        self._discrete = isinstance(action_space, gym.spaces.Discrete)
        self._generator = torch.Generator().manual_seed(seed)
        initial = module.get_initial_state() if hasattr(module, "get_initial_state") else {}
        #: one env's initial recurrent state (unbatched tensors)
        self.initial_state = {k: torch.as_tensor(np.asarray(v)) for k, v in initial.items()}
        self.state: State = self.initial_states(num_envs)

    @property
    def stateful(self) -> bool:
        return bool(self.initial_state)

    def initial_states(self, batch: int) -> State:
        """The initial recurrent state of ``batch`` rows (``{}`` for stateless modules)."""
        return {k: v.unsqueeze(0).repeat(batch, *([1] * v.dim())) for k, v in self.initial_state.items()}

    def stack_states(self, rows: list[Mapping[str, Any] | None]) -> State:
        """Per-row states (None: initial) -> one batched state, for :meth:`step`."""
        if not self.stateful:
            return {}
        torch = self._torch
        return {k: torch.stack([torch.as_tensor((r or self.initial_state)[k]) for r in rows])
                for k in self.initial_state}

    @staticmethod
    def split_state(state: State, batch: int) -> list[dict[str, Any]]:
        """A batched state -> one detached copy per row (what callers persist per client/symbol)."""
        return [{k: v[b].clone() for k, v in state.items()} for b in range(batch)]

    def reset_state(self, mask: np.ndarray) -> None:
        """Zero the carried recurrent state of envs in ``mask`` (their episode ended)."""
        for key, value in self.state.items():
            value[self._torch.as_tensor(mask)] = self.initial_state[key]

    def act(self, obs: dict[str, np.ndarray]) -> PolicyStep:
        """One step for the policy's own B envs, carrying their recurrent state."""
        step, self.state = self.step(obs, self.state)
        return step

    def step(self, obs: dict[str, np.ndarray], state: State | None = None) -> tuple[PolicyStep, State]:
        """One batched step from an explicit ``state`` (None: initial); returns the new state.

        ``obs`` is ``[B, ...]`` per key, or ``[B, T, ...]`` for a recurrent replay of T bars
        (the outputs then hold every time step).

        The module runs in eval mode under ``torch.inference_mode`` (a module left in train mode
        is switched for the call and back, as RLlib's ``forward_inference`` does), through the
        module's own ``_forward_inference``, or ``_forward_train`` + ``compute_values`` when
        values are asked for: the same outputs as ``forward_inference`` / ``forward_train``
        without RLlib's per-call walk over every submodule to set the mode. Values are thus
        computed in eval mode too (before, ``forward_train`` ran them in train mode: the same
        numbers unless the model has dropout, where eval mode is the right one for a backtest).
        The state handed back holds ordinary tensors (callers may write them in place).
        """
        torch = self._torch
        if self.obs_transform is not None:
            obs = self.obs_transform(obs)
        if self._obs_keys is not None and not self._obs_keys.issuperset(obs):
            obs = {k: v for k, v in obs.items() if k in self._obs_keys}  # see the module docstring
        batch: dict[str, Any] = {"obs": {k: _tensor(torch, v) for k, v in obs.items()}}
        if self.stateful:
            rows = len(next(iter(obs.values())))
            batch["state_in"] = state if state else self.initial_states(rows)
        module = self.module
        was_training = bool(getattr(module, "training", False))
        if was_training:
            module.eval()
        try:
            with torch.inference_mode():
                values = None
                if self.with_values:  # the train pass returns the embeddings the value head reads
                    out = module._forward_train(batch)
                    values = module.compute_values(batch, embeddings=out["embeddings"]).cpu().numpy()
                else:
                    out = module._forward_inference(batch)
                dist_inputs = out["action_dist_inputs"]
                if self.greedy and self._discrete:  # what TorchCategorical.to_deterministic() samples
                    actions = dist_inputs.argmax(dim=-1)
                else:
                    dist = self._dist_cls.from_logits(dist_inputs)
                    if self.greedy:
                        actions = dist.to_deterministic().sample()
                    else:
                        with _torch_seeded(torch, self._generator):
                            actions = dist.sample()
                actions = np.asarray(actions.cpu().numpy() if hasattr(actions, "cpu") else actions)
                inputs = dist_inputs.cpu().numpy()
        finally:
            if was_training:
                module.train()
        # clones outside inference mode: ordinary tensors (inference tensors refuse in-place writes)
        new_state = {k: v.clone() for k, v in out["state_out"].items()} if self.stateful else {}
        if isinstance(self.action_space, gym.spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high).astype(np.float32)
        return PolicyStep(actions, action_probabilities(self.action_space, inputs), inputs, values), new_state


def _tensor(torch: Any, value: Any) -> Any:
    """A tensor over ``value``'s memory, strided as it is, where torch can share it (a writable
    array with positive strides: e.g. one field's view of an env's ``[B, F]`` observation block;
    copying it contiguous first cost as much as a tenth of an MLP's forward pass), else over
    ``np.ascontiguousarray(value)``."""
    array = np.asarray(value)
    if not array.flags.writeable or any(stride <= 0 for stride in array.strides):
        array = np.ascontiguousarray(array)
    return torch.as_tensor(array)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class _torch_seeded:
    """Sample from torch's global RNG as if it were ``generator`` (distributions take none)."""

    def __init__(self, torch: Any, generator: Any) -> None:
        self.torch, self.generator = torch, generator

    def __enter__(self) -> None:
        self.saved = self.torch.get_rng_state()
        self.torch.set_rng_state(self.generator.get_state())

    def __exit__(self, *exc: object) -> None:
        self.generator.set_state(self.torch.get_rng_state())
        self.torch.set_rng_state(self.saved)

"""Running an RLModule as a policy: batched actions for B envs, recurrent state per env.

Used by training's validation evaluation, the backtest engine and Serve, so the policy acts
identically everywhere: same observation dict in, same distribution, same greedy rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class PolicyStep:
    actions: np.ndarray
    action_probs: np.ndarray | None
    dist_inputs: np.ndarray
    values: np.ndarray | None = None


ObsTransform = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class BatchedPolicy:
    """Wraps an RLModule: ``act(obs_batch)`` -> actions for B envs, carrying recurrent state.

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
        self._torch = torch
        self._dist_cls = action_dist_cls(action_space)
        self._generator = torch.Generator().manual_seed(seed)
        initial = module.get_initial_state() if hasattr(module, "get_initial_state") else {}
        self._initial = {k: torch.as_tensor(np.asarray(v)) for k, v in initial.items()}
        self.state = {k: v.unsqueeze(0).repeat(num_envs, *([1] * v.dim())) for k, v in self._initial.items()}

    @property
    def stateful(self) -> bool:
        return bool(self.state)

    def reset_state(self, mask: np.ndarray) -> None:
        """Zero the recurrent state of envs in ``mask`` (their episode ended)."""
        for key, value in self.state.items():
            value[self._torch.as_tensor(mask)] = self._initial[key]

    def act(self, obs: dict[str, np.ndarray]) -> PolicyStep:
        torch = self._torch
        if self.obs_transform is not None:
            obs = self.obs_transform(obs)
        batch: dict[str, Any] = {"obs": {k: torch.as_tensor(v) for k, v in obs.items()}}
        if self.stateful:
            batch["state_in"] = self.state
        values = None
        with torch.no_grad():
            if self.with_values:  # the train pass returns the embeddings the value head reads
                out = self.module.forward_train(batch)
                values = self.module.compute_values(batch, embeddings=out["embeddings"]).cpu().numpy()
            else:
                out = self.module.forward_inference(batch)
        if self.stateful:
            self.state = {k: v.detach() for k, v in out["state_out"].items()}
        dist_inputs = out["action_dist_inputs"]
        dist = self._dist_cls.from_logits(dist_inputs)
        if self.greedy:
            actions = dist.to_deterministic().sample()
        else:
            with _torch_seeded(torch, self._generator):
                actions = dist.sample()
        actions = actions.cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high).astype(np.float32)
        probs = None
        if isinstance(self.action_space, gym.spaces.Discrete):
            probs = torch.softmax(dist_inputs, dim=-1).cpu().numpy()
        return PolicyStep(actions, probs, dist_inputs.cpu().numpy(), values)


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

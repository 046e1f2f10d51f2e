"""Lean env-runner connectors: the same data as RLlib's default pipelines, batched."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchDiagGaussian

from app.models import MODEL_CLASSES
from app.training.connectors import (
    BatchObservations,
    SampleActions,
    lean_connectors_apply,
    sample_categorical,
)


class _Episode:
    def __init__(self, obs: dict[str, np.ndarray]) -> None:
        self.obs = obs

    def get_observations(self, index: int) -> dict[str, np.ndarray]:
        assert index == -1
        return self.obs


class _Module:
    def __init__(self, dist_cls: type) -> None:
        self.dist_cls = dist_cls

    def get_exploration_action_dist_cls(self) -> type:
        return self.dist_cls

    def get_inference_action_dist_cls(self) -> type:
        return self.dist_cls


def test_only_stateless_modules_get_the_lean_pipelines() -> None:
    assert {name: lean_connectors_apply(cls) for name, cls in MODEL_CLASSES.items()} == {
        "mlp": True, "attention": True, "gru": False}


def test_batch_observations_stacks_the_latest_observation_of_every_episode_in_order() -> None:
    rng = np.random.default_rng(0)
    obs = [{"window": rng.normal(size=(5, 4)).astype(np.float32), "mask": np.array([1, 0, 1], np.float32)}
           for _ in range(3)]
    out = BatchObservations()(rl_module=None, batch={}, episodes=[_Episode(o) for o in obs])
    assert set(out) == {Columns.OBS}
    assert isinstance(out[Columns.OBS]["window"], torch.Tensor)
    np.testing.assert_array_equal(out[Columns.OBS]["window"].numpy(), np.stack([o["window"] for o in obs]))
    np.testing.assert_array_equal(out[Columns.OBS]["mask"].numpy(), np.stack([o["mask"] for o in obs]))


def test_sample_categorical_never_picks_a_masked_action_and_follows_the_softmax() -> None:
    torch.manual_seed(0)
    masked = torch.finfo(torch.float32).min
    logits = torch.tensor([[0.0, 1.0, masked], [2.0, masked, 0.0]]).repeat(4000, 1)
    actions, logp = sample_categorical(logits, explore=True)
    assert actions.shape == (8000,) and actions.dtype == torch.int64
    expected = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
    torch.testing.assert_close(logp, expected)
    first, second = actions[0::2], actions[1::2]
    assert not bool((first == 2).any()) and not bool((second == 1).any())
    p1 = float(torch.softmax(torch.tensor([0.0, 1.0]), 0)[1])
    assert abs(float((first == 1).float().mean()) - p1) < 0.03  # 4000 draws: ~4 standard errors


def test_sample_categorical_is_greedy_without_exploration() -> None:
    actions, logp = sample_categorical(torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 1.0]]), explore=False)
    assert actions.tolist() == [1, 0] and logp.tolist() == [0.0, 0.0]


def test_sample_actions_returns_numpy_batches_the_runner_can_index() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
    out = SampleActions(input_action_space=gym.spaces.Discrete(3))(
        rl_module=_Module(TorchCategorical), batch={Columns.ACTION_DIST_INPUTS: logits}, episodes=[], explore=True)
    assert set(out) == {Columns.ACTIONS, Columns.ACTION_LOGP, Columns.ACTION_DIST_INPUTS}
    assert all(isinstance(v, np.ndarray) and v.shape[0] == 2 for v in out.values())
    np.testing.assert_allclose(out[Columns.ACTION_LOGP],
                               torch.log_softmax(logits, -1).numpy()[np.arange(2), out[Columns.ACTIONS]], rtol=1e-6)


def test_sample_actions_keeps_actions_the_module_sampled() -> None:
    batch = {Columns.ACTIONS: torch.tensor([2, 0]), Columns.ACTION_LOGP: torch.tensor([-0.5, -0.1]),
             Columns.ACTION_DIST_INPUTS: torch.zeros(2, 3)}
    out = SampleActions(input_action_space=gym.spaces.Discrete(3))(
        rl_module=_Module(TorchCategorical), batch=batch, episodes=[], explore=True)
    assert out[Columns.ACTIONS].tolist() == [2, 0]
    np.testing.assert_allclose(out[Columns.ACTION_LOGP], [-0.5, -0.1])


@pytest.mark.parametrize("normalize", [True, False])
def test_box_actions_are_unsquashed_or_clipped_for_the_env_only(normalize: bool) -> None:
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    batch = {Columns.ACTIONS: torch.tensor([[0.5], [-3.0]]), Columns.ACTION_LOGP: torch.zeros(2),
             Columns.ACTION_DIST_INPUTS: torch.zeros(2, 2)}
    out = SampleActions(input_action_space=space, normalize_actions=normalize, clip_actions=not normalize)(
        rl_module=_Module(TorchDiagGaussian), batch=batch, episodes=[], explore=True)
    np.testing.assert_allclose(out[Columns.ACTIONS], [[0.5], [-3.0]])  # what the episode stores
    expected = [[1.0], [-2.0]] if normalize else [[0.5], [-2.0]]  # unsquash [-1,1]->[-2,2] and clip
    np.testing.assert_allclose(out[Columns.ACTIONS_FOR_ENV], expected)

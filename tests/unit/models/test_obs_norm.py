"""Running observation normalization: learned in the learner's training passes only, saved
with the module, applied identically wherever the module runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.models import module_spec
from app.models.encoders import RunningNorm
from app.runs.env_factory import create_env

ENV_ID = "raytrade/SyntheticMeanReversion-v0"


def test_running_norm_merges_batches_like_the_whole_sample():
    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.normal(3.0, 2.0, (1000, 4, 2)), dtype=torch.float32)
    norm = RunningNorm((4, 2))
    for chunk in torch.split(data, [1, 99, 400, 500]):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, data.mean(0), atol=1e-4, rtol=0)
    torch.testing.assert_close(norm.var, data.var(0, unbiased=False), atol=1e-3, rtol=1e-4)
    out = norm(data)
    torch.testing.assert_close(out.mean(0), torch.zeros(4, 2), atol=1e-3, rtol=0)
    assert float(out.std(0).mean()) == pytest.approx(1.0, abs=1e-2)
    assert float(norm(torch.full((1, 4, 2), 1e9)).max()) == norm.clip  # clipped


def _module(obs_norm: bool):
    env = create_env(ENV_ID, {"window_bars": 10, "episode_bars": 32, "num_envs": 8})
    cfg = {"embed_dim": 8, "fusion_hiddens": [16], "obs_norm": obs_norm}
    module = module_spec("mlp", cfg, observation_space=env.single_observation_space,
                         action_space=env.single_action_space).build()
    obs, _ = env.reset(seed=0)
    return module, {k: torch.as_tensor(np.asarray(v)) for k, v in obs.items()}


def test_statistics_move_only_in_training_passes_with_gradients():
    module, obs = _module(obs_norm=True)
    norms = module.encoder.obs_norm
    assert norms is not None and len(norms) > 0
    counts = lambda: [float(n.count) for n in norms.values()]  # noqa: E731
    module.eval()
    with torch.no_grad():
        module.forward_inference({"obs": obs})
        module.forward_exploration({"obs": obs})
    module.train()
    with torch.no_grad():  # e.g. a backtest asking for values through the train pass
        module.forward_train({"obs": obs})
    assert counts() == [0.0] * len(norms)
    module.forward_train({"obs": obs})  # the learner
    assert counts() == [8.0] * len(norms)


def test_statistics_are_saved_with_the_module_and_change_its_outputs(tmp_path):
    module, obs = _module(obs_norm=True)
    module.train()
    for _ in range(3):
        module.forward_train({"obs": obs})
    module.save_to_path(str(tmp_path / "m"))
    from ray.rllib.core.rl_module.rl_module import RLModule

    loaded = RLModule.from_checkpoint(str(tmp_path / "m"))
    for name, norm in module.encoder.obs_norm.items():
        torch.testing.assert_close(loaded.encoder.obs_norm[name].mean, norm.mean)
        torch.testing.assert_close(loaded.encoder.obs_norm[name].count, norm.count)
    module.eval()
    loaded.eval()
    with torch.no_grad():
        a = module.forward_inference({"obs": obs})["action_dist_inputs"]
        b = loaded.forward_inference({"obs": obs})["action_dist_inputs"]
    torch.testing.assert_close(a, b)


def test_without_obs_norm_the_module_has_no_statistics():
    module, _ = _module(obs_norm=False)
    assert module.encoder.obs_norm is None
    assert not any("obs_norm" in k for k in module.state_dict())

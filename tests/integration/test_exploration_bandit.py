"""The exploration bandit on a real RLlib PPO: each sub-env samples at its own episode's
temperature (row i of the forward batch is sub-env i), the episodes record the behaviour
log-prob and the untempered logits, and the bandit's metrics reach the run's results and MLflow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from app.config.loader import parse_experiment
from app.training.algo import build_algorithm_config
from app.training.curriculum import make_callbacks
from app.training.rllib_env import rllib_env_name

TEMPS = [0.5, 1.0, 2.0, 4.0]


def experiment(tmp_path, **overrides):
    raw = {
        "name": "bandit_it", "seed": 3,
        "env": {"id": "raytrade/SyntheticMeanReversion-v0", "config": {"episode_bars": 32}},
        "model": {"name": "mlp", "config": {"embed_dim": 8, "fusion_hiddens": [16]}},
        "algorithm": {"train_batch_size": 256, "minibatch_size": 128, "num_epochs": 1},
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 4},
        "exploration": {"bandit": True, "temperatures": TEMPS, "window": 40},
        "stopping": {"iterations": 6},
        "evaluation": {"interval_iterations": 100, "episodes": 2, "stochastic_too": False},
        "checkpoint": {"every_iterations": 100},
        "tracking": {"runs_dir": str(tmp_path / "runs"), "mlflow_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
                     "experiment": "bandit_it", "bounds_file": None},
    }
    return parse_experiment(raw | overrides)


MODELS = {"mlp": {"embed_dim": 8, "fusion_hiddens": [16]},
          "gru": {"embed_dim": 8, "fusion_hiddens": [16], "gru_hidden": 8, "max_seq_len": 8}}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_sub_env_samples_at_its_episodes_temperature(ray_session, tmp_path, model):
    """The GRU's exploration batch is ``[B, 1, ...]``: the per-row temperatures still apply per
    sub-env."""
    exp = experiment(tmp_path, model={"name": model, "config": MODELS[model]})
    config = build_algorithm_config(exp, env_name=rllib_env_name(exp.env.id), env_config=dict(exp.env.config),
                                    callbacks=make_callbacks(252.0, exploration=exp.exploration))
    algo = config.build_algo()
    try:
        runner = algo.env_runner
        (cb,) = [c for c in runner._callbacks if hasattr(c, "_arms")]
        episodes = runner.sample(num_timesteps=16 * 4, explore=True)  # 16 steps per sub-env: none ends
        playing = {p[0]: p[1] for p in cb._arms._playing if p is not None}
        assert len(episodes) == 4 and {e.id_ for e in episodes} <= set(playing)
        # untried arms first: the 4 sub-envs' first episodes play the 4 temperatures
        assert sorted(playing.values()) == [0, 1, 2, 3]
        assert sorted(runner.module.exploration_temperature.tolist()) == TEMPS
        for episode in episodes:
            temp = TEMPS[playing[episode.id_]]
            logits = torch.as_tensor(np.asarray(episode.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS)))
            actions = torch.as_tensor(np.asarray(episode.get_actions()))
            logp = torch.as_tensor(np.asarray(episode.get_extra_model_outputs(Columns.ACTION_LOGP)))
            tempered = torch.log_softmax(logits / temp, -1).gather(-1, actions[:, None])[:, 0]
            plain = torch.log_softmax(logits, -1).gather(-1, actions[:, None])[:, 0]
            torch.testing.assert_close(logp, tempered)  # the behaviour policy's log-prob
            if temp != 1.0:  # and the stored logits are the untempered policy's
                assert not torch.allclose(logp, plain)
            if model == "gru":  # its recurrent state makes a replay of the forward pass long-winded
                continue
            obs = episode.get_observations(slice(0, len(episode)))
            batch = {Columns.OBS: {k: torch.as_tensor(np.asarray(v)) for k, v in obs.items()}}
            with torch.no_grad():
                expected = runner.module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
            torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
        # and PPO trains on such batches
        result = algo.train()
        assert math.isfinite(result["learners"]["default_policy"]["total_loss"])
    finally:
        algo.stop()


def test_bandit_metrics_reach_the_results_and_mlflow(ray_session, tmp_path):
    from mlflow import MlflowClient

    from app.training.run import train

    exp = experiment(tmp_path)
    outcome = train(exp)
    assert outcome.state.status == "finished" and outcome.state.env_steps <= 20_000
    client = MlflowClient(exp.tracking.mlflow_uri)
    run_id = outcome.state.mlflow_run_id
    history = {key: [m.value for m in client.get_metric_history(run_id, key)]
               for key in [*(f"bandit/arm_{i}_frac" for i in range(4)), "bandit/temperature",
                           *(f"bandit/arm_{i}_value" for i in range(4)), "bandit/greedy_temperature"]}
    assert all(len(values) >= 5 for values in history.values()), {k: len(v) for k, v in history.items()}
    fracs = np.array([history[f"bandit/arm_{i}_frac"] for i in range(4)])
    np.testing.assert_allclose(fracs.sum(axis=0), 1.0, atol=1e-6)  # every iteration's starts
    assert (fracs.sum(axis=1) > 0).all()  # every arm played
    temps = np.array(history["bandit/temperature"])
    assert ((temps >= min(TEMPS)) & (temps <= max(TEMPS))).all()
    np.testing.assert_allclose(temps, np.array(TEMPS) @ fracs, rtol=1e-5)
    assert set(history["bandit/greedy_temperature"]) <= set(TEMPS)

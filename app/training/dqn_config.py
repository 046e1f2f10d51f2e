"""DQN's part of the one AlgorithmConfig builder (:func:`app.training.algo.build_algorithm_config`).

The typed experiment -> RLlib 2.60 ``DQNConfig.training(...)`` arguments and the Q-module spec.
Verified against Ray 2.60's ``DQN`` (new API stack): n-step returns are computed by the
episode replay buffer at sampling time, the target network is synced by ``DQNLearner`` every
``target_network_update_freq`` env steps, ``epsilon`` reaches the Q-module through
``model_config`` and is scheduled on the env runner's env-step count, and the replay buffer is
built from ``replay_buffer_config`` (our beta-annealing subclass, :mod:`app.training.dqn_replay`).
"""

from __future__ import annotations

from typing import Any

from app.config.schema import Experiment

#: RLlib's DQNConfig default ``min_sample_timesteps_per_iteration``: env steps per iteration
#: at least (used to turn an iteration budget into env steps for the beta schedule)
DQN_ENV_STEPS_PER_ITERATION = 1000


def _schedule(value: float | list[tuple[int, float]]) -> float | list[list[float]]:
    return [[int(t), float(v)] for t, v in value] if isinstance(value, list) else float(value)


def beta_anneal_steps(exp: Experiment) -> int:
    """Env steps over which beta reaches its final value: the experiment's own setting, else
    the run's budget (env steps, or iterations x :data:`DQN_ENV_STEPS_PER_ITERATION`, the
    smaller of the two when both are given)."""
    spec, stop = exp.algorithm, exp.stopping
    if spec.replay_beta_anneal_steps is not None:
        return spec.replay_beta_anneal_steps
    budgets = [b for b in (stop.env_steps, stop.iterations and stop.iterations * DQN_ENV_STEPS_PER_ITERATION) if b]
    return int(min(budgets))


def dqn_training_kwargs(exp: Experiment) -> dict[str, Any]:
    """``DQNConfig.training(...)`` arguments for ``exp`` (``algorithm.extra`` wins)."""
    from app.training.dqn_replay import BUFFER_TYPE

    spec = exp.algorithm
    kwargs: dict[str, Any] = {
        "lr": _schedule(spec.lr), "gamma": spec.gamma, "grad_clip": spec.grad_clip,
        "train_batch_size_per_learner": spec.train_batch_size,
        "n_step": spec.n_step, "target_network_update_freq": spec.target_network_update_freq,
        "tau": spec.tau, "double_q": spec.double_q, "dueling": spec.dueling,
        "epsilon": _schedule(spec.epsilon), "num_atoms": 1, "noisy": False,
        "num_steps_sampled_before_learning_starts": spec.num_steps_sampled_before_learning_starts,
        "training_intensity": spec.training_intensity, "td_error_loss_fn": "huber",
        "replay_buffer_config": {
            "type": BUFFER_TYPE, "capacity": spec.replay_capacity, "alpha": spec.replay_alpha,
            "beta": spec.replay_beta, "beta_final": spec.replay_beta_final,
            "beta_anneal_steps": beta_anneal_steps(exp),
        },
    }
    return kwargs | dict(spec.extra)


def dqn_module_spec(exp: Experiment) -> Any:
    """The Q-module spec for ``exp`` (double/dueling/epsilon set explicitly, so the module
    and the learner read the same settings)."""
    from app.models import q_module_spec

    spec = exp.algorithm
    return q_module_spec(exp.model.name, exp.model.config, dueling=spec.dueling, double_q=spec.double_q,
                         epsilon=_schedule(spec.epsilon))


def dqn_callbacks() -> dict[str, Any]:
    """``AlgorithmConfig.callbacks(...)`` arguments DQN adds (beside the run's callback class)."""
    from app.training.dqn_replay import sync_replay_clock

    return {"on_train_result": sync_replay_clock}

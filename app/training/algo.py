"""The ONE place that builds RLlib's ``AlgorithmConfig`` (Ray's API moves between releases).

Everything else passes the typed :class:`~app.config.schema.Experiment`. Verified against
Ray 2.60: new API stack, native vector envs through ``vector_entry_point``, custom RLModules
from :mod:`app.models`, schedules as ``[[env_steps, value], ...]`` lists.
"""

from __future__ import annotations

from typing import Any

from app.config.schema import AlgorithmConfig as AlgoSpec
from app.config.schema import Experiment


def _schedule(value: float | list[tuple[int, float]]) -> float | list[list[float]]:
    return [[int(t), float(v)] for t, v in value] if isinstance(value, list) else float(value)


def training_kwargs(spec: AlgoSpec) -> dict[str, Any]:
    """``.training(...)`` arguments for PPO or APPO (APPO has no vf_clip_param / num_epochs
    semantics of its own beyond what RLlib accepts, so only shared knobs are mapped)."""
    common = {
        "lr": _schedule(spec.lr), "entropy_coeff": _schedule(spec.entropy_coeff),
        "gamma": spec.gamma, "lambda_": spec.lambda_, "clip_param": spec.clip_param,
        "vf_loss_coeff": spec.vf_loss_coeff, "kl_coeff": spec.kl_coeff, "grad_clip": spec.grad_clip,
        "train_batch_size_per_learner": spec.train_batch_size, "minibatch_size": spec.minibatch_size,
        "num_epochs": spec.num_epochs,
    }
    if spec.name == "PPO":
        common["vf_clip_param"] = spec.vf_clip_param
    return common | dict(spec.extra)


def build_algorithm_config(exp: Experiment, *, env_name: str, env_config: dict[str, Any],
                           callbacks: type | None = None):
    """RLlib ``PPOConfig``/``APPOConfig``/``DQNConfig`` for ``exp``, ready for ``.build_algo()``
    or Tune. DQN's arguments and Q-module come from :mod:`app.training.dqn_config`."""
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.ppo import PPOConfig

    from app.models import module_spec

    res = exp.resources
    if exp.env.skip_forced_steps:  # training only: see app.training.rllib_env
        from app.training.rllib_env import SKIP_FORCED_KEY

        env_config = dict(env_config) | {SKIP_FORCED_KEY: True}
    if exp.algorithm.name == "DQN":
        from ray.rllib.algorithms.dqn import DQNConfig

        from app.training.dqn_config import dqn_module_spec, dqn_training_kwargs

        config_cls: Any = DQNConfig
        algo_kwargs, rl_module_spec = dqn_training_kwargs(exp), dqn_module_spec(exp)
    else:
        config_cls = {"PPO": PPOConfig, "APPO": APPOConfig}[exp.algorithm.name]
        algo_kwargs = training_kwargs(exp.algorithm)
        rl_module_spec = module_spec(exp.model.name, exp.model.config)
    config = (
        config_cls()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(env=env_name, env_config=env_config)
        .env_runners(
            num_env_runners=res.num_env_runners,
            num_envs_per_env_runner=res.num_envs_per_env_runner,
            num_cpus_per_env_runner=res.num_cpus_per_env_runner,
            custom_resources_per_env_runner=dict(res.custom_resources_per_env_runner),
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length="auto",
        )
        .learners(
            num_learners=res.num_learners,
            num_gpus_per_learner=res.num_gpus_per_learner,
            num_cpus_per_learner=res.num_cpus_per_learner if res.num_learners else "auto",
            custom_resources_per_learner=dict(res.custom_resources_per_learner),
        )
        .training(**algo_kwargs)
        .rl_module(rl_module_spec=rl_module_spec)
        .debugging(seed=exp.seed)
        .reporting(metrics_num_episodes_for_smoothing=20)
        .fault_tolerance(restart_failed_env_runners=True)
    )
    if exp.algorithm.name != "DQN":
        config = lean_env_runner_connectors(config, rl_module_spec.module_class)
    if exp.algorithm.name == "PPO" and exp.algorithm.decision_gae:
        from app.training.decision_gae import DecisionPPOTorchLearner

        config = config.training(learner_class=DecisionPPOTorchLearner,
                                 learner_config_dict={"reward_scale": exp.algorithm.reward_scale})
    elif exp.algorithm.name == "PPO":
        from app.training.learner import TradingPPOTorchLearner

        config = config.training(learner_class=TradingPPOTorchLearner)
    if callbacks is not None:
        config = config.callbacks(callbacks)
    if exp.algorithm.name == "DQN":
        from app.training.dqn_config import dqn_callbacks

        config = config.callbacks(**dqn_callbacks())
    return config


def lean_env_runner_connectors(config: Any, module_class: type) -> Any:
    """PPO/APPO with a stateless module: the env runners' connector pipelines are one batched
    piece each instead of RLlib's six and seven per-item ones (:mod:`app.training.connectors`;
    same data into the module and the episodes). Stateful modules keep RLlib's pipelines."""
    from app.training.connectors import BatchObservations, SampleActions, lean_connectors_apply

    if not lean_connectors_apply(module_class):
        return config
    normalize, clip = bool(config.normalize_actions), bool(config.clip_actions)
    return config.env_runners(
        add_default_connectors_to_env_to_module_pipeline=False,
        add_default_connectors_to_module_to_env_pipeline=False,
        env_to_module_connector=lambda env, spaces=None, device=None: [BatchObservations(device=device)],
        module_to_env_connector=lambda env, spaces=None: [
            SampleActions(normalize_actions=normalize, clip_actions=clip)],
    )


def trial_resources(exp: Experiment, *, env_name: str, env_config: dict[str, Any]):
    """Tune's placement group for one trial that builds ``exp``'s algorithm in its own process,
    as RLlib requests it: the trial process (which hosts the local env runner and the local
    learner when there are no remote ones: 1 CPU with ``num_env_runners=0, num_learners=0``),
    plus one bundle per remote learner and per remote env runner."""
    config = build_algorithm_config(exp, env_name=env_name, env_config=env_config)
    return config.algo_class.default_resource_request(config)

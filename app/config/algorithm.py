"""``algorithm:`` of an experiment: PPO/APPO or DQN settings, validated per family
(split out of :mod:`app.config.schema`, which re-exports everything here)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from app.config.types import (
    Frozen,
    NonNegFloat,
    NonNegInt,
    NonNegSchedule,
    PositiveFloat,
    PositiveInt,
    PositiveSchedule,
)

#: a probability such as DQN's epsilon: in [0, 1], constant or piecewise linear in env steps
UnitFloat = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
UnitSchedule = UnitFloat | list[tuple[NonNegInt, UnitFloat]]
#: settings every algorithm reads (the rest belong to PPO/APPO or to DQN)
SHARED_ALGO_FIELDS = frozenset({"name", "lr", "gamma", "grad_clip", "train_batch_size", "extra"})
#: DQN's settings (see :class:`AlgorithmConfig`)
DQN_FIELDS = frozenset({
    "n_step", "target_network_update_freq", "tau", "double_q", "dueling", "epsilon",
    "num_steps_sampled_before_learning_starts", "training_intensity", "replay_capacity",
    "replay_alpha", "replay_beta", "replay_beta_final", "replay_beta_anneal_steps",
})
#: DQN's defaults where they differ from PPO's (applied when ``name: DQN`` leaves them out)
DQN_DEFAULTS: dict[str, Any] = {"train_batch_size": 64, "grad_clip": 10.0}


class AlgorithmConfig(Frozen):
    """The algorithm and its settings. ``lr``, ``gamma``, ``grad_clip``, ``train_batch_size`` and
    ``extra`` apply to every algorithm; the DQN block (:data:`DQN_FIELDS`) only to DQN and the
    others only to PPO/APPO. A setting of the other family given a non-default value is an
    error (a saved experiment lists every field with its default, so defaults are accepted)."""

    name: Literal["PPO", "APPO", "DQN"] = "PPO"
    lr: PositiveSchedule = 3e-4
    entropy_coeff: NonNegSchedule = 0.01
    gamma: float = Field(0.99, gt=0, le=1)
    lambda_: float = Field(0.95, ge=0, le=1)
    clip_param: float = Field(0.2, gt=0)
    vf_loss_coeff: float = Field(0.5, ge=0)
    vf_clip_param: float = Field(10.0, gt=0)
    kl_coeff: float = Field(0.2, ge=0)
    grad_clip: float | None = Field(0.5, gt=0)
    train_batch_size: PositiveInt = 4000
    minibatch_size: PositiveInt = 256
    num_epochs: PositiveInt = 4
    #: PPO: decision-level advantages (:mod:`app.training.decision_gae`): steps whose action mask
    #: allows one action (a buy_only hold) are not decisions: GAE does not bootstrap from their
    #: values and advantages are standardized over decisions only. Identical to GAE without masks.
    decision_gae: bool = True
    #: PPO with ``decision_gae``: rewards are multiplied by this in the learner's value targets
    #: and advantages only (the value head learns returns of order 1 instead of 0.01; episode
    #: returns, metrics and the env's PnL are unchanged). Advantages are standardized anyway.
    reward_scale: float = Field(1.0, gt=0)
    #: extra keyword arguments for RLlib's ``.training(...)``, for knobs not listed here
    extra: dict[str, Any] = {}
    # -- DQN (RLlib's DQN on the new API stack, app/training/dqn_config.py). With name: DQN,
    # ``train_batch_size`` is the replayed batch per SGD step (default 64) and ``grad_clip``
    # defaults to 10 (global norm); PPO's defaults stay 4000 and 0.5.
    #: n-step returns: the target is sum_{k<n} gamma^k r_{t+k} + gamma^n max Q(s_{t+n})
    n_step: PositiveInt = 3
    #: env steps between target-network syncs
    target_network_update_freq: PositiveInt = 1000
    #: target update ``tau * online + (1 - tau) * target`` at each sync (1.0: a copy)
    tau: float = Field(1.0, gt=0, le=1)
    #: double DQN: the online network picks the bootstrap action, the target network values it
    double_q: bool = True
    #: dueling heads: Q = V + A - mean over valid actions of A
    dueling: bool = True
    #: epsilon-greedy exploration over the valid actions, in env steps: ``[[0, 1.0], [N, 0.02]]``
    epsilon: UnitSchedule = [(0, 1.0), (10_000, 0.02)]
    #: env steps sampled (with epsilon exploration) before the first SGD step
    num_steps_sampled_before_learning_starts: NonNegInt = 1000
    #: replayed / sampled env steps (None: one SGD step per sample round, RLlib's natural ratio)
    training_intensity: PositiveFloat | None = None
    #: prioritized episode replay: capacity in env steps, priority exponent alpha
    replay_capacity: PositiveInt = 100_000
    replay_alpha: NonNegFloat = 0.6
    #: importance-sampling exponent: ``replay_beta`` annealed linearly to ``replay_beta_final``
    #: over ``replay_beta_anneal_steps`` env steps (None: the run's budget, ``stopping.env_steps``
    #: or ``stopping.iterations`` x 1000 env steps per DQN iteration)
    replay_beta: UnitFloat = 0.4
    replay_beta_final: UnitFloat = 1.0
    replay_beta_anneal_steps: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _dqn_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") == "DQN":
            return DQN_DEFAULTS | data
        return data

    @field_validator("lr", "entropy_coeff", "epsilon")
    @classmethod
    def _schedule(cls, value: float | list[tuple[int, float]]) -> float | list[tuple[int, float]]:
        if isinstance(value, list):
            steps = [s for s, _ in value]
            if not value or steps[0] != 0 or steps != sorted(steps):
                raise ValueError("a schedule is [[0, v0], [t1, v1], ...] with increasing env steps from 0")
        return value

    @model_validator(mode="after")
    def _batches(self) -> AlgorithmConfig:
        if self.name != "DQN" and self.minibatch_size > self.train_batch_size:
            raise ValueError(f"minibatch_size {self.minibatch_size} > train_batch_size {self.train_batch_size}")
        return self

    @model_validator(mode="after")
    def _family_fields(self) -> AlgorithmConfig:
        """No setting of the other algorithm family with a non-default value, and DQN's own
        settings consistent."""
        dqn = self.name == "DQN"
        foreign = sorted(
            k for k in self.model_fields_set
            if k not in SHARED_ALGO_FIELDS and (k in DQN_FIELDS) != dqn
            and getattr(self, k) != type(self).model_fields[k].default
        )
        if foreign:
            family, other = ("PPO/APPO", "DQN") if dqn else ("DQN", self.name)
            raise ValueError(f"{', '.join(foreign)}: {family} setting(s), not used by {other}; remove them")
        if dqn:
            if self.replay_beta > self.replay_beta_final:
                raise ValueError(f"replay_beta {self.replay_beta} > replay_beta_final {self.replay_beta_final}: "
                                 "beta is annealed up towards 1 (full importance-sampling correction)")
            if self.train_batch_size > self.replay_capacity:
                raise ValueError(f"train_batch_size {self.train_batch_size} > replay_capacity {self.replay_capacity}")
        return self


def check_dqn_experiment(model: str, env_id: str, env_config: dict[str, Any]) -> None:
    """Raise ``ValueError`` if DQN cannot train ``model`` on ``env_id``: a GRU (RLlib 2.60's
    prioritized episode replay samples single transitions, no recurrent state) or an action
    space that is not ``Discrete`` (a portfolio's MultiDiscrete, continuous actions)."""
    if model == "gru":
        raise ValueError("model.name: DQN cannot use model 'gru': RLlib 2.60's PrioritizedEpisodeReplayBuffer "
                         "samples single transitions only (no sequences, no recurrent state); use 'mlp' or "
                         "'attention' (windows of past bars are in every observation)")
    import envs

    spec = None
    if env_id != envs.PORTFOLIO:
        try:
            spec = envs.env_spec(env_id, env_config)
        except ValueError:  # an env the spec cannot describe without data: judged at build time
            return
    if spec is None or spec.kind == "portfolio" or spec.action_labels is None:
        raise ValueError(f"algorithm.name: DQN needs a Discrete action space; env {env_id!r} with this "
                         "config has a MultiDiscrete (portfolio) or continuous one")

"""The experiment schema: one YAML file in ``tune_configs/`` -> these frozen pydantic models.

Validated once at the boundary (``extra="forbid"`` everywhere, so a misspelt key is an error
naming it); everything inward receives these typed, frozen objects. Hyperparameters that can
follow a schedule accept a number or a piecewise-linear list ``[[env_steps, value], ...]``.
``env.config`` is checked against the env's own config dataclass and ``model.config`` against
the model's keys (:mod:`app.models.config`), so a typo fails here, before Ray starts.

Paths: :func:`app.config.loader.load_experiment` resolves relative *input* paths of a file
(``data.store``, ``data.by_symbol.metadata``, ``tracking.bounds_file``) against the file's own
directory; *output* locations (``tracking.runs_dir``, ``tracking.mlflow_uri``) stay relative to
the working directory, like every command's outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: a learning rate: > 0, constant or piecewise linear in env steps
PositiveSchedule = PositiveFloat | list[tuple[NonNegInt, PositiveFloat]]
#: a coefficient such as the entropy bonus: >= 0, constant or piecewise linear in env steps
NonNegSchedule = NonNegFloat | list[tuple[NonNegInt, NonNegFloat]]

#: the environment variable naming the Parquet store (``raytrade data`` and ``--store`` use it)
STORE_ENV = "RAYTRADE_STORE"
#: the alert bounds every experiment uses unless ``tracking.bounds_file`` says otherwise
#: the project checkout (raytrade installs editable: `make install`); shipped configs and the
#: embedded sample are found from here, so commands work from any directory
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BOUNDS_FILE = PROJECT_ROOT / "tune_configs" / "bounds.yaml"
#: the default as older run directories saved it (relative to the repository root)
LEGACY_BOUNDS_FILE = Path("tune_configs/bounds.yaml")


def default_store() -> Path:
    """The store when an experiment names none: ``$RAYTRADE_STORE`` or ``store`` (the
    directory ``raytrade data import`` writes by default)."""
    return Path(os.environ.get(STORE_ENV) or "store")


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRef(Frozen):
    source: str
    market_type: Literal["stock", "index", "spot", "swap"]
    timeframe: str = "1d"


class IndexRef(DatasetRef):
    symbol: str = "^GSPC"


class SymbolSplit(Frozen):
    """Split the universe by symbol, stratified by sector (metadata file with symbol, sector)."""

    metadata: Path | None = None
    fractions: dict[Literal["train", "validation", "test"], float] = {"train": 0.6, "validation": 0.2, "test": 0.2}

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-9:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {value}")
        return value


class TimeSplit(Frozen):
    """Train / validation / test windows cut at UTC dates, with an embargo between them."""

    train_end: str
    validation_end: str
    embargo_days: NonNegInt = 0


class DataConfig(Frozen):
    store: Path = Field(default_factory=default_store)
    dataset: DatasetRef
    index: IndexRef | None = None
    symbols: list[str] | None = None
    by_symbol: SymbolSplit | None = None
    by_time: TimeSplit | None = None


class DataSelection(Frozen):
    """Other data for a trained run to trade (``raytrade backtest RUN --store/--symbols/--start/
    --end`` or ``--data-spec FILE``): each field given replaces the run's own; the rest (the
    split part's symbols and window, the dataset, the index) stay the run's. Dates are UTC,
    ``start`` inclusive and ``end`` exclusive (as the split boundaries)."""

    store: Path | None = None
    dataset: DatasetRef | None = None
    index: IndexRef | None = None
    symbols: list[str] | None = Field(default=None, min_length=1)
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DataSelection:
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)

    @property
    def tag(self) -> str:
        """``data-<8 hex digits>`` naming this selection (backtest directories on other data)."""
        text = json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True)
        return "data-" + hashlib.sha256(text.encode()).hexdigest()[:8]


class EnvConfig(Frozen):
    #: a registered raytrade env id (``envs.ENV_IDS``)
    id: str
    #: fields of the env's own frozen config dataclass (unknown keys and bad values are refused)
    config: dict[str, Any] = {}

    @field_validator("id")
    @classmethod
    def _registered(cls, value: str) -> str:
        from app.config.checks import check_env_id

        check_env_id(value)
        return value

    @field_validator("config")
    @classmethod
    def _env_fields(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from app.config.checks import check_env_config

        if "id" in info.data:  # else the id itself is already an error
            check_env_config(info.data["id"], value)
        return value


class ModelConfig(Frozen):
    name: Literal["mlp", "gru", "attention"] = "mlp"
    #: the RLModule's ``model_config`` (keys and values checked by app/models/config.py)
    config: dict[str, Any] = {}

    @field_validator("config")
    @classmethod
    def _model_keys(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from app.config.checks import check_model_config

        if value and "name" in info.data:
            check_model_config(info.data["name"], value)
        return value


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


class ResourcesConfig(Frozen):
    num_env_runners: NonNegInt = 0
    num_envs_per_env_runner: PositiveInt = 8
    num_cpus_per_env_runner: float = Field(1.0, ge=0)
    num_learners: NonNegInt = 0
    num_gpus_per_learner: float = Field(0.0, ge=0)
    num_cpus_per_learner: float = Field(1.0, ge=0)
    custom_resources_per_env_runner: dict[str, float] = {}
    custom_resources_per_learner: dict[str, float] = {}


class StoppingConfig(Frozen):
    iterations: PositiveInt | None = 100
    env_steps: PositiveInt | None = None
    reward_threshold: float | None = None
    #: stop when the validation metric has not improved for this many evaluations
    patience_evaluations: PositiveInt | None = None

    @model_validator(mode="after")
    def _some_budget(self) -> StoppingConfig:
        if self.iterations is None and self.env_steps is None:
            raise ValueError("give a budget: iterations or env_steps")
        return self


class EvaluationConfig(Frozen):
    interval_iterations: PositiveInt = 5
    episodes: PositiveInt = 8
    stochastic_too: bool = True
    metric: str = "sharpe"


class CheckpointConfig(Frozen):
    every_iterations: PositiveInt = 10
    #: periodic checkpoints kept: a run's latest + checkpoints/history/; a Tune trial's (PBT keeps all)
    keep: PositiveInt = 3


#: the environment variable that overrides the default runs directory everywhere
RUNS_DIR_ENV = "RAYTRADE_RUNS_DIR"


def default_runs_dir() -> Path:
    """The runs directory when none is given: ``$RAYTRADE_RUNS_DIR`` or ``runs``.

    Every reader and writer of run directories (train, tune, backtest, evaluate, serve, runs)
    resolves through this one function, so a run written by one command is found by the next.
    """
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


class TrackingConfig(Frozen):
    mlflow_uri: str = "sqlite:///mlruns.db"
    experiment: str = "raytrade"
    runs_dir: Path = Field(default_factory=default_runs_dir)
    #: metric bounds checked every iteration (app/training/alerts.py); None disables alerts.
    #: Default: the bounds shipped with raytrade (tune_configs/bounds.yaml in the repository).
    bounds_file: Path | None = DEFAULT_BOUNDS_FILE
    #: name of the MLflow registered model the final policy is added to (default: the experiment's name)
    registered_model: str | None = None

    @field_validator("bounds_file")
    @classmethod
    def _legacy_default(cls, value: Path | None) -> Path | None:
        """Runs saved before the default was absolute name it relative to the repository root;
        read from another directory, that still means the shipped file."""
        if value == LEGACY_BOUNDS_FILE and not value.exists():
            return DEFAULT_BOUNDS_FILE
        return value


class SearchDomain(Frozen):
    """One search dimension: exactly one of choice / uniform / loguniform / randint / grid."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDomain:
        given = [k for k in ("choice", "uniform", "loguniform", "randint", "grid") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of choice/uniform/loguniform/randint/grid, got {given or 'none'}")
        low_high = self.uniform or self.loguniform or self.randint
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"low must be below high, got {low_high}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform bounds must be > 0")
        return self


class SchedulerConfig(Frozen):
    name: Literal["fifo", "asha", "pbt"] = "asha"
    #: ASHA: minimum iterations before a trial can be stopped, and the halving factor
    grace_period_iterations: PositiveInt = 2
    reduction_factor: float = Field(2.0, gt=1)
    #: PBT: iterations between exploit/explore steps, and what it mutates (dotted keys)
    perturbation_interval_iterations: PositiveInt = 4
    hyperparam_mutations: dict[str, SearchDomain] = {}


class TuneConfig(Frozen):
    """A sweep over the experiment: search space (dotted keys), scheduler, objective."""

    #: a *validation* metric (greedy evaluation on the validation split); the test split is unreachable
    metric: str = "val_greedy/sharpe"
    mode: Literal["max", "min"] = "max"
    num_samples: PositiveInt = 2
    max_concurrent_trials: PositiveInt = 2
    search_space: dict[str, SearchDomain] = {}
    scheduler: SchedulerConfig = SchedulerConfig()
    #: stop the whole sweep once any trial reaches this metric value
    stop_sweep_at: float | None = None

    @field_validator("metric")
    @classmethod
    def _validation_only(cls, value: str) -> str:
        if "test" in value.split("/")[0]:
            raise ValueError(f"the tuning objective must be a validation metric, got {value!r}")
        return value


class PromotionRule(Frozen):
    """Metric above (promotion) or below (demotion) a threshold for k consecutive iterations."""

    metric: str | None = None
    above: float | None = None
    below: float | None = None
    for_iterations: PositiveInt = 3

    @model_validator(mode="after")
    def _one_side(self) -> PromotionRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above / below")
        return self


class CurriculumStage(Frozen):
    name: str
    #: env-config changes applied to every env runner when the stage starts
    env: dict[str, Any] = {}
    promote: PromotionRule | None = None
    demote: PromotionRule | None = None


class CurriculumConfig(Frozen):
    metric: str = "env_runners/episode_return_mean"
    stages: list[CurriculumStage] = Field(min_length=1)


class ExplorationConfig(Frozen):
    """Agent57-style exploration meta-controller (:mod:`app.training.exploration`): with
    ``bandit: true`` every env runner runs a sliding-window UCB bandit (epsilon-greedy on top)
    that picks, per episode and sub-env, the sampling temperature of the policy from
    ``temperatures``, rewarded by the episode's return. Agent57's settings: window 160, c 1,
    epsilon 0.5; ``normalize`` scales rewards by the window's std so ``c`` is scale-free."""

    bandit: bool = False
    temperatures: list[PositiveFloat] = Field([0.5, 1.0, 1.5, 2.0], min_length=1)
    window: PositiveInt = 160
    ucb_c: NonNegFloat = 1.0
    epsilon: float = Field(0.5, ge=0, le=1)
    normalize: bool = True


class Experiment(Frozen):
    """One experiment (or the base of a sweep): everything a run needs, nothing implicit."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: NonNegInt = 0
    data: DataConfig | None = None
    env: EnvConfig
    model: ModelConfig = ModelConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    resources: ResourcesConfig = ResourcesConfig()
    stopping: StoppingConfig = StoppingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig | None = None
    curriculum: CurriculumConfig | None = None
    exploration: ExplorationConfig | None = None

    @model_validator(mode="after")
    def _dqn_fits(self) -> Experiment:
        """DQN needs a Q-module its replay can train (no GRU) and a Discrete action space."""
        if self.algorithm.name == "DQN":
            check_dqn_experiment(self.model.name, self.env.id, self.env.config)
        return self

    @model_validator(mode="after")
    def _stage_env_fields(self) -> Experiment:
        """Every curriculum stage's env changes, applied over ``env.config``, are a valid config
        (``data``, the stage's data spec, e.g. ``null`` for the env's synthetic market, is the
        env factory's, not the env's)."""
        from app.config.checks import check_env_config

        for i, stage in enumerate(self.curriculum.stages if self.curriculum else ()):
            changes = {k: v for k, v in stage.env.items() if k != "data"}
            try:
                check_env_config(self.env.id, {**self.env.config, **changes})
            except ValueError as exc:
                raise ValueError(f"curriculum.stages.{i}.env ({stage.name}): {exc}") from None
        return self

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
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from app.config.types import (  # noqa: F401  (re-exported: the schema's public types)
    Frozen,
    NonNegFloat,
    NonNegInt,
    NonNegSchedule,
    PositiveFloat,
    PositiveInt,
    PositiveSchedule,
)

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
    #: training only: one RLlib step per DECISION -- the env takes a forced action (a buy_only
    #: hold) itself until the next real decision and returns the summed reward (PnL unchanged).
    #: Backtests, validation and Serve still step every bar. Stateless models only (a GRU would
    #: see a different sequence in training than in backtests and Serve).
    skip_forced_steps: bool = False

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


from app.config.algorithm import (  # noqa: E402,F401  (re-exported)
    DQN_DEFAULTS,
    DQN_FIELDS,
    SHARED_ALGO_FIELDS,
    AlgorithmConfig,
    check_dqn_experiment,
)


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
    def _skip_forced_fits(self) -> Experiment:
        """``env.skip_forced_steps`` needs a stateless model and an env with discrete actions
        (only those have forced steps: an action mask allowing one action)."""
        if self.env.skip_forced_steps:
            if self.model.name == "gru":
                raise ValueError("env.skip_forced_steps: not with model 'gru' (training would feed the GRU "
                                 "decisions only, backtests and Serve every bar); use 'mlp' or 'attention'")
            try:  # the same test as DQN's: a Discrete action space
                check_dqn_experiment(self.model.name, self.env.id, self.env.config)
            except ValueError:
                raise ValueError(f"env.skip_forced_steps: env {self.env.id!r} has no forced steps (it needs a "
                                 "Discrete action space with an action mask; this one is continuous or a "
                                 "portfolio's)") from None
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

"""Curriculum: stages of env-config changes, promoted and demoted on training metrics.

The experiment's ``curriculum`` (:class:`~app.config.schema.CurriculumConfig`) is a list of
stages; stage ``i`` trains on the run's env config plus ``stages[i].env`` (changes relative to
the base config, not cumulative; see :mod:`app.training.task_env`). Write the *target* task as
the experiment's ``env.config``: validation (``val_*`` metrics) always runs on it.

Rules (pure, :func:`advance`, unit-tested without Ray): a stage is promoted to the next one when
its ``promote`` metric is above ``above`` (or below ``below``) for ``for_iterations`` consecutive
iterations; it is demoted to the previous one (the emergency brake) when its ``demote`` rule
holds as long. A miss resets that rule's streak; a missing or NaN metric (e.g. no episode ended
this iteration) leaves both streaks as they are. The last stage is never promoted, the first
never demoted; a stage without a ``promote`` rule is final. A rule's metric defaults to the
curriculum's ``metric``; names are those of :func:`app.training.results.flatten_result`
(``env_runners/episode_return_mean``, ``trading/sharpe``, ``learners/default_policy/entropy``)
or any ``a/b/c`` path into RLlib's result dict. Demotion is checked first.

:class:`CurriculumCallbacks` (a :class:`~app.training.callbacks.TradingCallbacks`, so a run has
one callbacks class; built by :func:`app.training.curriculum.make_callbacks`):

* ``on_algorithm_init``: checks every stage on the driver (builds its env once: unknown keys,
  changed spaces and data leaks fail here, not in a runner), applies the current stage, and
  hooks the curriculum state into the algorithm's checkpoint state.
* ``on_train_result``: evaluates the rules, moves every env runner (and the local one when it
  has an env, ``num_env_runners=0``) with ``runner.env.unwrapped.call("set_task", changes)``,
  and writes ``result["curriculum"] = {stage, promotions, demotions, promote_streak,
  demote_streak, stage_name}`` (the numbers become ``curriculum/<k>`` metrics).
* ``on_env_runners_recreated``: a restarted runner comes back with the base task; the current
  stage is applied to it again.
* Checkpoints: ``algorithm.get_state()`` gains a ``"curriculum"`` entry (saved in the
  checkpoint's ``state.pkl`` by ``save_to_path``, also under Tune and PBT); ``set_state`` (any
  restore: ``restore_from_path``, ``from_checkpoint``, Tune's ``load_checkpoint``) reads it
  back and moves the runners to the restored stage. RLlib 2.60 keeps no callback state of its
  own, so the two methods are wrapped on the algorithm instance in ``on_algorithm_init``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from app.config.schema import CurriculumConfig, ExplorationConfig, PromotionRule
from app.training.callbacks import TradingCallbacks
from app.training.results import flatten_result

log = logging.getLogger("raytrade.curriculum")

STATE_KEY = "curriculum"


@dataclass(frozen=True)
class CurriculumState:
    """Where a run is in its curriculum (JSON-able, saved with the algorithm's state)."""

    stage: int = 0
    promote_streak: int = 0
    demote_streak: int = 0
    promotions: int = 0
    demotions: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CurriculumState:
        return cls(**{k: int(raw[k]) for k in cls.__dataclass_fields__ if k in raw})


@dataclass(frozen=True)
class StageChange:
    """A promotion or demotion, with the evidence."""

    kind: str  # "promote" | "demote"
    from_stage: int
    to_stage: int
    metric: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind} stage {self.from_stage} -> {self.to_stage} ({self.metric} = {self.value:.6g})"


def rule_metric(curriculum: CurriculumConfig, rule: PromotionRule) -> str:
    return rule.metric or curriculum.metric


def rule_holds(rule: PromotionRule, value: float) -> bool:
    """Strictly above ``above`` / strictly below ``below``."""
    return value > rule.above if rule.above is not None else value < rule.below


def required_metrics(curriculum: CurriculumConfig, stage: int) -> list[str]:
    """The metric names the rules of ``stage`` read."""
    s = curriculum.stages[stage]
    return [rule_metric(curriculum, r) for r in (s.promote, s.demote) if r is not None]


def advance(curriculum: CurriculumConfig, state: CurriculumState,
            metrics: Mapping[str, float | None]) -> tuple[CurriculumState, StageChange | None]:
    """One iteration of the rules (see the module docstring): the new state and the change, if any."""
    stage = curriculum.stages[state.stage]
    last = len(curriculum.stages) - 1
    checks = (("demote", stage.demote if state.stage > 0 else None, "demote_streak", -1),
              ("promote", stage.promote if state.stage < last else None, "promote_streak", +1))
    streaks = {"promote_streak": state.promote_streak, "demote_streak": state.demote_streak}
    fired: list[tuple[str, int, str, float]] = []
    for kind, rule, counter, step in checks:
        if rule is None:
            streaks[counter] = 0
            continue
        name = rule_metric(curriculum, rule)
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            continue
        streaks[counter] = streaks[counter] + 1 if rule_holds(rule, value) else 0
        if streaks[counter] >= rule.for_iterations:
            fired.append((kind, step, name, float(value)))
    if not fired:
        return replace(state, **streaks), None
    kind, step, name, value = fired[0]  # demotion first: the emergency brake wins
    new = CurriculumState(stage=state.stage + step,
                          promotions=state.promotions + (kind == "promote"),
                          demotions=state.demotions + (kind == "demote"))
    return new, StageChange(kind, state.stage, new.stage, name, value)


def lookup_metric(result: Mapping[str, Any], name: str) -> float | None:
    """``name`` in RLlib's result dict: a key of :func:`app.training.results.flatten_result`
    (what MLflow shows), a top-level key, or an ``a/b/c`` path."""
    flat = flatten_result(dict(result))
    if name in flat:
        return flat[name]
    if name in result and _is_number(result[name]):
        return float(result[name])
    node: Any = result
    for part in name.split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return float(node) if _is_number(node) else None


def stage_tags(curriculum: CurriculumConfig | None, metrics: Mapping[str, float]) -> dict[str, str]:
    """MLflow tags naming the current stage, from an iteration's flattened metrics
    (``curriculum/stage``); empty without a curriculum."""
    stage = metrics.get(f"{STATE_KEY}/stage")
    if curriculum is None or stage is None or not math.isfinite(stage):
        return {}
    i = min(int(stage), len(curriculum.stages) - 1)
    return {"raytrade.curriculum.stage": curriculum.stages[i].name, "raytrade.curriculum.stage_index": str(i)}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _apply_task(env_runner: Any, changes: dict[str, Any]) -> Any:
    """Runs in an env runner: move its vector env to ``changes``; returns the task, or an
    ``"error: ..."`` string (so a bad task is reported, not turned into a runner restart loop)."""
    env = getattr(env_runner, "env", None)
    if env is None:  # the local runner of a run with remote runners has no env
        return None
    try:
        env.unwrapped.call("set_task", changes)
        return env.unwrapped.call("get_task")
    except Exception as exc:  # noqa: BLE001 - reported to the driver
        return f"error: {type(exc).__name__}: {exc}"


def get_tasks(env_runner_group: Any) -> list[dict[str, Any]]:
    """The current task of every env runner that has an env (local one included)."""
    def task(runner: Any) -> Any:
        return None if getattr(runner, "env", None) is None else runner.env.unwrapped.call("get_task")

    return [t for t in env_runner_group.foreach_env_runner(task, local_env_runner=True) if t is not None]


def apply_stage(env_runner_group: Any, changes: Mapping[str, Any], remote_ids: list[int] | None = None) -> int:
    """Move the env runners of ``env_runner_group`` (all, or the remote ``remote_ids``) to the task
    ``changes``; returns how many runners were moved. Raises ``RuntimeError`` if one refused."""
    changes = dict(changes)
    results = env_runner_group.foreach_env_runner(
        lambda runner: _apply_task(runner, changes), local_env_runner=remote_ids is None,
        remote_worker_ids=remote_ids)
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise RuntimeError(f"curriculum: env runners refused the task {changes}: {errors[0]}")
    return sum(r is not None for r in results)


def check_stages(curriculum: CurriculumConfig, creator: Any, env_config: Mapping[str, Any]) -> None:
    """Build the run's vector env once (1 env) and move it through every stage, so a bad stage
    (unknown key, changed spaces, data outside the run's training split) fails before training."""
    env = creator(dict(env_config) | {"num_envs": 1})
    try:
        for i, stage in enumerate(curriculum.stages):
            try:
                env.unwrapped.call("set_task", dict(stage.env))
            except Exception as exc:
                raise ValueError(f"curriculum.stages[{i}] ({stage.name!r}): {exc}") from exc
    finally:
        env.close()


class CurriculumCallbacks(TradingCallbacks):
    """Trading metrics plus the curriculum of :attr:`curriculum` (see the module docstring)."""

    #: set by :func:`app.training.curriculum.make_callbacks`
    curriculum: CurriculumConfig | None = None

    def __init__(self) -> None:
        super().__init__()
        self.state = CurriculumState()

    # --- helpers --------------------------------------------------------------------------
    def stage_env(self, stage: int | None = None) -> dict[str, Any]:
        return dict(self.curriculum.stages[self.state.stage if stage is None else stage].env)

    def _apply(self, algorithm: Any, remote_ids: list[int] | None = None) -> None:
        apply_stage(algorithm.env_runner_group, self.stage_env(), remote_ids)

    def _hook_state(self, algorithm: Any) -> None:
        """Save/restore :attr:`state` with the algorithm's own state (see the module docstring)."""
        get_state, set_state = algorithm.get_state, algorithm.set_state

        def get_state_with_curriculum(components: Any = None, *, not_components: Any = None, **kwargs: Any):
            state = get_state(components, not_components=not_components, **kwargs)
            wanted = components is None or STATE_KEY in ([components] if isinstance(components, str) else components)
            if wanted and STATE_KEY not in ([not_components] if isinstance(not_components, str)
                                            else (not_components or ())):
                state[STATE_KEY] = self.state.to_dict()
            return state

        def set_state_with_curriculum(state: dict[str, Any]) -> None:
            set_state(state)
            if STATE_KEY in state:
                self.state = CurriculumState.from_dict(state[STATE_KEY])
                self.state = replace(self.state, stage=min(self.state.stage, len(self.curriculum.stages) - 1))
                self._apply(algorithm)
                log.info("curriculum restored at stage %d (%s)", self.state.stage,
                         self.curriculum.stages[self.state.stage].name)

        algorithm.get_state, algorithm.set_state = get_state_with_curriculum, set_state_with_curriculum

    # --- RLlib hooks ----------------------------------------------------------------------
    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        super().on_algorithm_init(algorithm=algorithm, **kwargs)
        if self.curriculum is None:
            return
        from ray.tune.registry import ENV_CREATOR, _global_registry

        env = algorithm.config.env
        if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
            check_stages(self.curriculum, _global_registry.get(ENV_CREATOR, env), algorithm.config.env_config)
        self._hook_state(algorithm)
        self._apply(algorithm)
        log.info("curriculum: stage 0 (%s) of %d", self.curriculum.stages[0].name, len(self.curriculum.stages))

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        super().on_train_result(algorithm=algorithm, result=result, **kwargs)
        if self.curriculum is None:
            return
        metrics = {name: lookup_metric(result, name) for name in required_metrics(self.curriculum, self.state.stage)}
        self.state, change = advance(self.curriculum, self.state, metrics)
        if change is not None:
            self._apply(algorithm)
            log.info("curriculum: %s, now %r", change, self.curriculum.stages[self.state.stage].name)
        result[STATE_KEY] = self.state.to_dict() | {"stage_name": self.curriculum.stages[self.state.stage].name,
                                                     "changed": float(change is not None)}

    def on_env_runners_recreated(self, *, algorithm: Any, env_runner_group: Any, env_runner_indices: list[int],
                                 is_evaluation: bool, **kwargs: Any) -> None:
        super().on_env_runners_recreated(algorithm=algorithm, env_runner_group=env_runner_group,
                                         env_runner_indices=env_runner_indices, is_evaluation=is_evaluation,
                                         **kwargs)
        if self.curriculum is None or is_evaluation or not env_runner_indices:
            return
        apply_stage(env_runner_group, self.stage_env(), list(env_runner_indices))
        log.info("curriculum: stage %d re-applied to recreated env runners %s", self.state.stage,
                 list(env_runner_indices))


def make_callbacks(periods_per_year: float, curriculum: CurriculumConfig | None = None,
                   exploration: ExplorationConfig | None = None) -> type[TradingCallbacks]:
    """A TradingCallbacks subclass carrying this run's settings (RLlib instantiates it bare);
    with a ``curriculum``, a :class:`CurriculumCallbacks`; with ``exploration.bandit``, also a
    :class:`~app.training.exploration.BanditExplorationCallbacks` (mixed in first: every hook
    of both calls ``super()``). One class per run."""
    attrs: dict[str, Any] = {"periods_per_year": float(periods_per_year)}
    bases: list[type[TradingCallbacks]] = []
    name = "Run"
    if exploration is not None and exploration.bandit:
        from app.training.exploration import BanditExplorationCallbacks

        bases.append(BanditExplorationCallbacks)
        attrs["exploration"] = exploration
        name += "Bandit"
    if curriculum is not None:
        bases.append(CurriculumCallbacks)
        attrs["curriculum"] = curriculum
        name += "Curriculum"
    return type(f"{name}Callbacks" if bases else "RunTradingCallbacks", tuple(bases) or (TradingCallbacks,), attrs)

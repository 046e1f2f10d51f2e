"""THE one module that translates the YAML search space into Ray Tune (house rule 5).

A sweep's ``tune.search_space`` and PBT's ``tune.scheduler.hyperparam_mutations`` map dotted
experiment keys (``algorithm.lr``, ``model.config.gru_hidden``) to a
:class:`~app.config.schema.SearchDomain`. Here they become Tune domains, and a trial's sampled
values become ``--set``-style overrides applied with :func:`app.config.loader.apply_overrides`
to the sweep's base experiment, which is then validated like any other experiment; so a
trial is exactly "the base YAML plus ``--set key=value`` for each sampled key".

Domains (bounds are inclusive, also for ``randint``, unlike Tune's exclusive upper bound):

* ``choice: [a, b, ...]``      -> ``tune.choice``       (PBT: a list; shifts to a neighbour or resamples)
* ``uniform: [low, high]``     -> ``tune.uniform``      (PBT: x0.8 / x1.2 or resamples, then clamped)
* ``loguniform: [low, high]``  -> ``tune.loguniform``   (same)
* ``randint: [low, high]``     -> ``tune.randint(low, high + 1)``
* ``grid: [a, b, ...]``        -> ``tune.grid_search``  (every value, ``num_samples`` times each;
  not allowed as a PBT mutation)

Keys under ``data``, ``evaluation``, ``tracking``, ``tune``, ``resources`` and ``name`` cannot be
searched: the splits and the evaluation define the objective (trials must be scored on the same
validation episodes to be comparable, and the test split must stay out of reach), tracking and
resources are plumbing, not hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from app.config.loader import apply_overrides, parse_experiment
from app.config.schema import Experiment, SchedulerConfig, SearchDomain, TuneConfig
from app.errors import ConfigError
from app.models.config import parse_model_config

FORBIDDEN_PREFIXES = ("data", "evaluation", "tracking", "tune", "resources", "name")


def domain_kind(domain: SearchDomain) -> str:
    return next(k for k in ("choice", "uniform", "loguniform", "randint", "grid") if getattr(domain, k) is not None)


def to_tune(domain: SearchDomain, *, for_mutation: bool = False) -> Any:
    """The Tune object for one search dimension (a PBT mutation when ``for_mutation``)."""
    from ray import tune

    kind = domain_kind(domain)
    if kind == "choice":
        # PBT shifts a list value to a neighbour; a tune.choice would be multiplied by 0.8/1.2
        return list(domain.choice) if for_mutation else tune.choice(list(domain.choice))
    if kind == "uniform":
        return tune.uniform(*map(float, domain.uniform))
    if kind == "loguniform":
        return tune.loguniform(*map(float, domain.loguniform))
    if kind == "randint":
        low, high = domain.randint
        return tune.randint(int(low), int(high) + 1)
    if for_mutation:
        raise ConfigError("grid cannot be a PBT mutation (PBT perturbs a running trial; use choice)")
    return tune.grid_search(list(domain.grid))


def param_space(cfg: TuneConfig) -> dict[str, Any]:
    """Tune's ``param_space``: flat, keyed by the dotted experiment keys."""
    return {key: to_tune(domain) for key, domain in cfg.search_space.items()}


def pbt_mutations(scheduler: SchedulerConfig) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations`` (keys not in the search space are sampled from these at start)."""
    return {key: to_tune(domain, for_mutation=True) for key, domain in scheduler.hyperparam_mutations.items()}


def clamp_explore(scheduler: SchedulerConfig) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """PBT's ``custom_explore_fn``: PBT multiplies continuous values by 0.8 or 1.2 without
    looking at the declared bounds, so ``gamma`` could leave (0, 1] and fail validation; this
    clamps every numeric mutation back into ``[low, high]`` (``randint`` stays an int)."""
    bounds = {key: (d.uniform or d.loguniform or d.randint, d.randint is not None)
              for key, d in scheduler.hyperparam_mutations.items() if domain_kind(d) in ("uniform", "loguniform", "randint")}

    def explore(config: dict[str, Any]) -> dict[str, Any]:
        out = dict(config)
        for key, ((low, high), integer) in bounds.items():
            if key in out and isinstance(out[key], (int, float)):
                value = min(max(out[key], low), high)
                out[key] = int(round(value)) if integer else float(value)
        return out

    return explore


def plain(value: Any) -> Any:
    """Tune samples numpy scalars; YAML (and MLflow) want Python ones."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def overrides_for(config: Mapping[str, Any]) -> list[str]:
    """A trial's sampled values as ``key=value`` overrides (values as YAML, lossless: PyYAML
    writes ``1.0e-05`` where ``1e-05`` would read back as a string)."""
    out = []
    for key in sorted(config):
        text = yaml.safe_dump(plain(config[key]), default_flow_style=True, width=math.inf)
        out.append(f"{key}={text.removesuffix(chr(10)).removesuffix('...').strip()}")
    return out


def trial_experiment(base: Mapping[str, Any], config: Mapping[str, Any], where: str = "<trial>") -> Experiment:
    """The base experiment with a trial's sampled values applied and validated; the trial is
    a plain experiment (no ``tune`` section of its own)."""
    raw = apply_overrides(dict(base), overrides_for(config), where=where)
    raw.pop("tune", None)
    return parse_experiment(raw, where=where)


def check_space(base: Mapping[str, Any], cfg: TuneConfig, where: str = "<sweep>") -> None:
    """Refuse forbidden keys and keys or values the experiment schema rejects, before any
    trial starts: each dimension's extreme values (and every listed value) are applied to
    the base experiment alone and validated. A bad key is an error naming it."""
    dims = {**cfg.search_space, **cfg.scheduler.hyperparam_mutations}
    if cfg.scheduler.hyperparam_mutations and cfg.scheduler.name != "pbt":
        raise ConfigError(f"{where}: tune.scheduler.hyperparam_mutations only apply to the pbt scheduler "
                          f"(scheduler is {cfg.scheduler.name!r})")
    if cfg.scheduler.name == "pbt" and not cfg.scheduler.hyperparam_mutations:
        raise ConfigError(f"{where}: the pbt scheduler needs tune.scheduler.hyperparam_mutations")
    for key in cfg.scheduler.hyperparam_mutations:
        if key.split(".")[0] == "model":
            raise ConfigError(f"{where}: PBT mutation {key!r}: a running trial cannot change its model "
                              "architecture (the cloned checkpoint would not load); search it in search_space")
    for key, domain in dims.items():
        head = key.split(".")[0]
        if head in FORBIDDEN_PREFIXES:
            raise ConfigError(f"{where}: tune key {key!r}: {head}.* cannot be searched (it defines the "
                              "data, the objective or the plumbing; see app/tuning/space.py)")
        kind = domain_kind(domain)
        values = list(getattr(domain, kind))
        for value in values:
            here = f"{where}: tune key {key!r} = {value!r}"
            exp = trial_experiment(base, {key: value}, where=here)
            if head == "model":
                try:
                    parse_model_config(exp.model.name, exp.model.config)
                except ValueError as exc:
                    raise ConfigError(f"{here}: {exc}") from None
        _check_key_exists(base, key, where)


def _check_key_exists(base: Mapping[str, Any], key: str, where: str) -> None:
    """``env.config`` and ``algorithm.extra`` accept any key (the env and RLlib validate them
    only when a trial starts), so a key inside them must already exist in the base experiment
    (add it to the YAML with its default value to search it). ``model.config`` keys are
    validated by the model's own parser above."""
    parts = key.split(".")
    free = {("env", "config"), ("algorithm", "extra")}
    if len(parts) > 2 and tuple(parts[:2]) in free:
        node: Any = base
        for part in parts:
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(f"{where}: tune key {key!r} is not in the base experiment; free-form "
                                  f"sections ({'.'.join(parts[:2])}) are not checked by the schema, so set "
                                  "its default in the YAML first")
            node = node[part]

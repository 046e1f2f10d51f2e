"""Metric bounds checked every iteration: a breach is an alert; NaN stops the run.

A bounds file (YAML) is a list of rules, each a metric name (an ``fnmatch`` pattern over the
flattened result keys) with its expected range. Limits are numbers or expressions over the run's constants:
``max_entropy`` (log|A| in nats) and ``uniform`` (1/|A|), optionally scaled (``0.5*uniform``).
``until_iteration`` limits a rule to the first iterations (the initial policy must be near
uniform, but a trained one should not be).

Example::

    - {metric: learners/default_policy/entropy, min: 0.0, max: 1.01*max_entropy}
    - {metric: learners/default_policy/mean_kl_loss, max: 0.5}
    - {metric: actions/frac_*, min: 0.5*uniform, max: 1.5*uniform, until_iteration: 1}
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.errors import ConfigError, RaytradeError

WATCHED_FOR_NAN = ("learners/default_policy/total_loss", "learners/default_policy/policy_loss",
                   "learners/default_policy/vf_loss", "learners/default_policy/entropy")


class NaNError(RaytradeError):
    """A loss became NaN/inf: training stops instead of producing garbage."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    low: str | float | None = None
    high: str | float | None = None
    until_iteration: int | None = None


@dataclass(frozen=True)
class Breach:
    metric: str
    value: float
    low: float | None
    high: float | None
    iteration: int

    def __str__(self) -> str:
        span = f"[{'-inf' if self.low is None else f'{self.low:.4g}'}, {'inf' if self.high is None else f'{self.high:.4g}'}]"
        return f"iteration {self.iteration}: {self.metric} = {self.value:.4g} outside {span}"


def load_rules(path: Path) -> list[Rule]:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read bounds file: {exc}") from exc
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a list of rules")
    rules = []
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict) or "metric" not in spec or not set(spec) <= {"metric", "min", "max", "until_iteration"}:
            raise ConfigError(f"{path}: rule {i}: expected {{metric, min, max, until_iteration}}, got {spec!r}")
        rules.append(Rule(spec["metric"], spec.get("min"), spec.get("max"), spec.get("until_iteration")))
    return rules


def _limit(expr: str | float | None, constants: Mapping[str, float]) -> float | None:
    if expr is None or isinstance(expr, (int, float)):
        return expr
    scale, _, name = str(expr).rpartition("*")
    if name not in constants:
        raise ConfigError(f"bounds: unknown constant {name!r} in {expr!r}; known: {sorted(constants)}")
    return (float(scale) if scale else 1.0) * constants[name]


def check(rules: list[Rule], metrics: Mapping[str, float], iteration: int,
          constants: Mapping[str, float], *, sampled: bool = True) -> list[Breach]:
    """Breaches of ``rules`` by ``metrics`` (flattened ``a/b/c`` keys) at ``iteration``;
    raises :class:`NaNError` if a watched loss is not finite in an iteration that ``sampled``
    env steps (an iteration without samples, e.g. while RLlib restarts a lost env runner, has
    NaN losses that say nothing about training)."""
    for key in WATCHED_FOR_NAN if sampled else ():
        value = metrics.get(key)
        if value is not None and not math.isfinite(value):
            raise NaNError(f"iteration {iteration}: {key} is {value}; stopping (lower the learning rate, "
                           "check rewards and observations for extreme values)")
    breaches = []
    for rule in rules:
        if rule.until_iteration is not None and iteration > rule.until_iteration:
            continue
        low, high = _limit(rule.low, constants), _limit(rule.high, constants)
        for key in fnmatch.filter(metrics, rule.pattern):
            value = metrics[key]
            if (low is not None and value < low) or (high is not None and value > high):
                breaches.append(Breach(key, float(value), low, high, iteration))
    return breaches

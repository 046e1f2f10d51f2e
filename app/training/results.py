"""RLlib's result dict -> the flat ``a/b/c`` metrics raytrade logs, alerts on and stops by.

The callbacks (:mod:`app.training.callbacks`) log ``metrics_logger.log_value("trading/sharpe")``
on the env runners. RLlib 2.60 keeps such a key as ONE string: the algorithm's result holds
``result["env_runners"]["trading/sharpe"]``, not a nested ``["trading"]["sharpe"]``
(``tests/unit/training/test_results.py`` builds a real result through RLlib's MetricsLogger).
Nested dicts are accepted too, so either shape flattens to the same keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LEARNER_KEYS = ("total_loss", "policy_loss", "vf_loss", "entropy", "mean_kl_loss",
                "gradients_default_optimizer_global_norm", "vf_explained_var",
                "default_optimizer_learning_rate", "curr_entropy_coeff",
                # DQN's learner (app.training.dqn_config): Q-loss, Q-values, TD errors
                "qf_loss", "qf_mean", "qf_max", "qf_min", "td_error_mean")
RUNNER_KEYS = ("episode_return_mean", "episode_len_mean", "num_episodes")
#: metric groups logged by our env-runner callbacks (``bandit``: :mod:`app.training.exploration`)
CALLBACK_GROUPS = ("trading", "actions", "bandit")


def flatten_result(result: Mapping[str, Any]) -> dict[str, float]:
    """The metrics we log, flattened to ``a/b/c`` keys."""
    out: dict[str, float] = {}
    runners = result.get("env_runners", {}) or {}
    for key in RUNNER_KEYS:
        if _is_number(runners.get(key)):
            out[f"env_runners/{key}"] = float(runners[key])
    for group in CALLBACK_GROUPS:
        out |= _group(runners, group)
    for key, value in (result.get("curriculum", {}) or {}).items():  # set by the curriculum callback
        if _is_number(value):
            out[f"curriculum/{key}"] = float(value)
    learner = result.get("learners", {}).get("default_policy", {}) or {}
    for key in LEARNER_KEYS:
        if _is_number(learner.get(key)):
            out[f"learners/default_policy/{key}"] = float(learner[key])
    out["time/iteration_s"] = float(result.get("time_this_iter_s", math.nan))
    return out


def _group(runners: Mapping[str, Any], group: str) -> dict[str, float]:
    """``<group>/<name>`` values, whether RLlib kept them flat (2.60) or nested."""
    out = {key: float(value) for key, value in runners.items()
           if key.startswith(f"{group}/") and _is_number(value)}
    nested = runners.get(group)
    if isinstance(nested, Mapping):
        out |= {f"{group}/{key}": float(value) for key, value in nested.items() if _is_number(value)}
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

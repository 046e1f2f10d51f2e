"""RLlib's result dict -> the flat ``a/b/c`` metrics raytrade logs, alerts on and stops by."""

from __future__ import annotations

import math
from typing import Any

LEARNER_KEYS = ("total_loss", "policy_loss", "vf_loss", "entropy", "mean_kl_loss",
                "gradients_default_optimizer_global_norm", "vf_explained_var",
                "default_optimizer_learning_rate", "curr_entropy_coeff")


def flatten_result(result: dict[str, Any]) -> dict[str, float]:
    """The metrics we log, flattened to ``a/b/c`` keys."""
    out: dict[str, float] = {}
    runners = result.get("env_runners", {})
    for key in ("episode_return_mean", "episode_len_mean", "num_episodes"):
        if key in runners:
            out[f"env_runners/{key}"] = float(runners[key])
    for group in ("trading", "actions"):
        for key, value in runners.get(group, {}).items():
            out[f"{group}/{key}"] = float(value)
    for key, value in result.get("curriculum", {}).items():  # set by the curriculum callback
        if isinstance(value, (int, float)):
            out[f"curriculum/{key}"] = float(value)
    learner = result.get("learners", {}).get("default_policy", {})
    for key in LEARNER_KEYS:
        if key in learner:
            out[f"learners/default_policy/{key}"] = float(learner[key])
    out["time/iteration_s"] = float(result.get("time_this_iter_s", math.nan))
    return out

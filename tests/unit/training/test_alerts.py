"""Bounds checks: a breach is reported with its range; NaN stops the run."""

from __future__ import annotations

import math

import pytest

from app.errors import ConfigError
from app.training.alerts import NaNError, check, load_rules

CONSTANTS = {"max_entropy": math.log(3), "uniform": 1 / 3}


def rules_from(tmp_path, text: str):
    path = tmp_path / "bounds.yaml"
    path.write_text(text)
    return load_rules(path)


def test_the_shipped_bounds_file_loads_and_passes_a_healthy_start():
    rules = load_rules("tune_configs/bounds.yaml")
    healthy = {"learners/default_policy/entropy": 1.09, "learners/default_policy/mean_kl_loss": 0.01,
               "actions/frac_0": 0.33, "actions/frac_1": 0.34, "actions/frac_2": 0.33}
    assert check(rules, healthy, iteration=1, constants=CONSTANTS) == []


def test_collapsed_initial_policy_is_flagged_only_early(tmp_path):
    rules = load_rules("tune_configs/bounds.yaml")
    collapsed = {"learners/default_policy/entropy": 0.2, "actions/frac_0": 0.9}
    early = check(rules, collapsed, iteration=1, constants=CONSTANTS)
    assert {b.metric for b in early} == {"learners/default_policy/entropy", "actions/frac_0"}
    assert "outside" in str(early[0])
    assert check(rules, collapsed, iteration=50, constants=CONSTANTS) == []


def test_expressions_scale_constants(tmp_path):
    rules = rules_from(tmp_path, "- {metric: 'x/*', max: 2*uniform}\n")
    breaches = check(rules, {"x/a": 0.7, "x/b": 0.6}, 3, CONSTANTS)
    assert [b.metric for b in breaches] == ["x/a"] and breaches[0].high == pytest.approx(2 / 3)


def test_nan_loss_stops_with_a_clear_message():
    with pytest.raises(NaNError, match="total_loss is nan"):
        check([], {"learners/default_policy/total_loss": float("nan")}, 7, CONSTANTS)


@pytest.mark.parametrize("text", ["{a: 1}", "- {max: 1}", "- {metric: a, maximum: 1}"])
def test_malformed_bounds_files_are_config_errors(tmp_path, text):
    with pytest.raises(ConfigError, match="bounds.yaml"):
        rules_from(tmp_path, text)


def test_unknown_constant_is_named(tmp_path):
    rules = rules_from(tmp_path, "- {metric: a, max: 3*nonsense}\n")
    with pytest.raises(ConfigError, match="nonsense"):
        check(rules, {"a": 1.0}, 1, CONSTANTS)

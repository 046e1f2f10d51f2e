"""The learning suite without Ray: cells -> experiments, the loop with a fake trainer and
evaluator, the time-to-threshold and interval maths, the table and the files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from app.errors import ConfigError
from app.runs.data import SYNTHETIC_SEED_OFFSET
from benchmarks.learning.aggregate import aggregate, t_interval, thresholds_reached, time_to
from benchmarks.learning.cells import (
    MARKET_SEED_STRIDE,
    Budget,
    Cell,
    build_experiment,
    classes,
    heldout_market_seeds,
    presets,
)
from benchmarks.learning.report import suite_table, write_results
from benchmarks.learning.run_suite import parse_args, plan
from benchmarks.learning.suite import Suite, TrainResult


def build(cell: Cell, tmp_path: Path, **budget):
    return build_experiment(cell, Budget(30_000, **budget), out_dir=tmp_path, mlflow_uri="sqlite:///m.db")


@pytest.mark.parametrize("klass", classes())
@pytest.mark.parametrize("algo", sorted(presets()))
def test_every_class_and_preset_builds_a_valid_experiment(klass, algo, tmp_path):
    exp = build(Cell(klass, algo, 2), tmp_path)
    assert exp.env.config["synthetic"] and exp.env.config["market_seed"] == 2 * MARKET_SEED_STRIDE
    assert exp.model.model_dump() == presets()[algo]["model"] | {"config": exp.model.config}
    assert exp.stopping.env_steps == 30_000 and exp.stopping.iterations is None
    assert exp.resources.num_env_runners == 0 and exp.seed == 2
    assert exp.tracking.runs_dir == tmp_path / "runs" and exp.tracking.mlflow_uri == "sqlite:///m.db"
    assert exp.name == f"learn_{klass}_{algo}_s2"


def test_a_form_replaces_the_env_and_keeps_the_market(tmp_path):
    exp = build(Cell("rare_event", "ppo_mlp", 1, "crypto"), tmp_path)
    assert exp.env.id == "raytrade/CryptoFutures-v0"
    assert exp.env.config["synthetic"] == "rare_event" and exp.env.config["market_seed"] == 100
    assert "mode" not in exp.env.config


@pytest.mark.parametrize(("cell", "match"), [
    (Cell("no_such_class", "ppo_mlp", 0), "no template"),
    (Cell("rare_event", "no_such_algo", 0), "algorithm preset"),
    (Cell("rare_event", "ppo_mlp", 0, "no_such_form"), "form"),
    (Cell("mean_reversion", "ppo_mlp", 0, "crypto"), "synthetic"),  # no perpetual form of it
])
def test_bad_cells_are_clear_errors(cell, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        build(cell, tmp_path)


def test_quick_budget_reaches_the_experiment(tmp_path):
    cells, budget = plan(parse_args(["--quick", "--classes", "mean_reversion,rare_event",
                                     "--algos", "ppo_gru,ppo_mlp"]))
    assert cells == [Cell("mean_reversion", "ppo_gru", 0)] and budget.env_steps == 20_000
    exp = build_experiment(cells[0], budget, out_dir=tmp_path, mlflow_uri="sqlite:///m.db")
    assert exp.algorithm.train_batch_size == 1024 and exp.evaluation.interval_iterations == 2


def test_heldout_markets_are_never_trained_or_validated_on():
    used = {MARKET_SEED_STRIDE * s + o for s in range(1000) for o in SYNTHETIC_SEED_OFFSET.values()}
    assert not used & set(heldout_market_seeds(50))


@pytest.mark.parametrize(("history", "threshold", "expected"), [
    ([(1000, 10.0, 0.2), (2000, 20.0, 0.55), (3000, 30.0, 0.8)], 0.5, (2000, 20.0)),
    ([(1000, 10.0, 0.2), (2000, 20.0, 0.55), (3000, 30.0, 0.8)], 0.7, (3000, 30.0)),
    ([(1000, 10.0, 0.75), (2000, 20.0, 0.1)], 0.7, (1000, 10.0)),   # first crossing, even if lost
    ([(1000, 10.0, math.nan), (2000, 20.0, 0.69)], 0.7, (math.nan, math.nan)),
    ([], 0.5, (math.nan, math.nan)),
])
def test_time_to_threshold(history, threshold, expected):
    got = time_to(history, threshold)
    assert all((math.isnan(g) and math.isnan(e)) or g == e for g, e in zip(got, expected, strict=True))


def test_t_interval():
    mean, half, n = t_interval([0.5, 0.6, 0.7, math.nan])
    assert n == 3 and mean == pytest.approx(0.6)
    assert half == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))
    assert math.isnan(t_interval([0.4])[1]) and t_interval([])[2] == 0


# --- the loop with fakes -----------------------------------------------------------------

class FakeTracker:
    runs: list[FakeTracker] = []

    def __init__(self, uri, experiment, name, *, parent_run_id=None):
        self.run_id, self.name, self.parent = f"id-{name}", name, parent_run_id
        self.metrics, self.params, self.tags, self.status = {}, {}, {}, None
        FakeTracker.runs.append(self)

    def log_params(self, params):
        self.params |= params

    def log_metrics(self, metrics, step):
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, v))

    def set_tags(self, tags):
        self.tags |= tags

    def end(self, status="FINISHED"):
        self.status = status


# seed -> validation curve; held-out greedy fraction = 0.5 + 0.1 * seed (+0.05 for best)
CURVES = {0: [(10_000, 5.0, 0.3), (20_000, 10.0, 0.6)],
          1: [(10_000, 6.0, 0.55), (20_000, 12.0, 0.75)],
          2: [(10_000, 7.0, 0.2), (20_000, 14.0, 0.4)]}


def fake_trainer(exp):
    if exp.env.config["synthetic"] == "noise" and exp.seed == 1:
        raise RuntimeError("boom")
    return TrainResult({"final": Path(f"/f/{exp.seed}"), "best": Path(f"/b/{exp.seed}")}, 20_000,
                       15.0, CURVES[exp.seed], f"train-{exp.seed}")


def fake_evaluator(policy_dir, exp):
    seed = int(policy_dir.name)
    bonus = 0.05 if policy_dir.parent.name == "b" else 0.0
    return {"greedy_oracle_fraction": 0.5 + 0.1 * seed + bonus, "stochastic_oracle_fraction": 0.4,
            "greedy_buy_precision": 0.8, "greedy_event_rate": 0.015, "greedy_buy_recall": 0.6,
            "greedy_trades_per_252_bars": 3.0, "random_trades_per_252_bars": 12.0,
            "greedy_excess": 0.1, "random_excess": -0.02, "oracle_excess": 0.2}


@pytest.fixture
def suite_result(tmp_path):
    FakeTracker.runs = []
    cells = [Cell(k, "ppo_mlp", s) for k in ("rare_event", "noise") for s in range(3)]
    suite = Suite(cells, Budget(20_000), tmp_path, "sqlite:///m.db", fake_trainer, fake_evaluator,
                  FakeTracker, params={"seeds": 3})
    return suite.run()


def test_the_loop_aggregates_over_seeds(suite_result):
    cells, agg = suite_result
    row = agg[(agg["class"] == "rare_event") & (agg["checkpoint"] == "final")].iloc[0]
    assert row["seeds"] == 3
    assert row["greedy_oracle_fraction_mean"] == pytest.approx(0.6)
    assert row["greedy_oracle_fraction_ci"] == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))
    assert row["steps_to_50_n"] == 2 and row["steps_to_50_mean"] == pytest.approx(15_000)
    assert row["steps_to_70_n"] == 1 and row["wall_s_to_70_mean"] == pytest.approx(12.0)
    best = agg[(agg["class"] == "rare_event") & (agg["checkpoint"] == "best")].iloc[0]
    assert best["greedy_oracle_fraction_mean"] == pytest.approx(0.65)


def test_a_failing_cell_is_recorded_and_the_others_go_on(suite_result):
    cells, agg = suite_result
    failed = cells[cells["error"].notna()]
    assert list(zip(failed["class"], failed["seed"], strict=True)) == [("noise", 1)]
    noise = agg[(agg["class"] == "noise") & (agg["checkpoint"] == "final")].iloc[0]
    assert noise["greedy_oracle_fraction_n"] == 2  # seeds 0 and 2
    child = next(r for r in FakeTracker.runs if r.name == "noise_ppo_mlp_s1")
    assert child.status == "FAILED" and "boom" in child.tags["error"]


def test_mlflow_has_one_parent_and_a_child_per_cell(suite_result):
    parent, *children = FakeTracker.runs
    assert parent.parent is None and parent.status == "FINISHED" and len(children) == 6
    assert all(c.parent == parent.run_id for c in children)
    ok = next(c for c in children if c.name == "rare_event_ppo_mlp_s1")
    assert ok.metrics["val_greedy/oracle_fraction"] == [(10_000, 0.55), (20_000, 0.75)]
    assert ok.metrics["final/greedy_oracle_fraction"] == [(20_000, pytest.approx(0.6))]
    assert ok.tags["raytrade.train_run_id"] == "train-1"
    key = "rare_event.template.ppo_mlp.final/greedy_oracle_fraction_mean"
    assert parent.metrics[key] == [(0, pytest.approx(0.6))]


def test_table_and_files(suite_result, tmp_path):
    cells, agg = suite_result
    console = Console(record=True, width=250)
    console.print(suite_table(agg))
    text = console.export_text()
    assert "rare_event" in text and "60% ±25" in text and "15k (2/3)" in text and "20k (1/3)" in text
    written = write_results(cells, agg, tmp_path / "out")
    assert {p.name for p in written} == {"cells.csv", "cells.parquet", "summary.csv", "summary.parquet"}
    assert len(pd.read_parquet(tmp_path / "out" / "cells.parquet")) == len(cells)
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["seeds"].tolist() == agg["seeds"].tolist()


def test_aggregate_ignores_missing_measures():
    rows = pd.DataFrame([{"class": "c", "form": "template", "algo": "a", "checkpoint": "final",
                          "seed": 0, "greedy_oracle_fraction": math.nan}])
    got = aggregate(rows).iloc[0]
    assert got["seeds"] == 1 and got["greedy_oracle_fraction_n"] == 0


def test_thresholds_reached_keys():
    assert set(thresholds_reached([])) == {"steps_to_50", "wall_s_to_50", "steps_to_70", "wall_s_to_70"}

"""The one training loop (app/training/loop.py) with a scripted session: best score in the
metric's own direction, patience, empty iterations, NaN guard, MLflow steps logged once, and
the Tune host's reports."""

from __future__ import annotations

import math

import pytest

from app.runs.run_dir import RunDir, RunState
from app.training.alerts import NaNError
from app.training.loop import (
    MAX_EMPTY_ITERATIONS,
    NoSamplesError,
    Objective,
    Schedule,
    TrainingLoop,
    metric_mode,
    record_evaluation,
)
from app.training.run import RunHost, StopFlag
from app.tuning.trainable import SweepContext, TrialHost, TrialState
from tests.unit.training.fakes import BATCH, FakeSession, FakeTracker, experiment


class NullHost:
    def __init__(self) -> None:
        self.ends = []

    def stop_requested(self):
        return None

    def on_new_best(self, it):
        pass

    def on_alert(self, breach):
        pass

    def end_iteration(self, it):
        self.ends.append(it)


def plain_loop(tmp_path, session, tracker=None, *, state=None, run=None, logged_until=None):
    exp = session.exp
    run = run or RunDir.create(exp)
    state = state or run.state()
    loop = TrainingLoop(session, state, RunHost(exp, run, state, session, StopFlag(), None), tracker or FakeTracker(),
                        Objective.of(f"val_greedy/{exp.evaluation.metric}"),
                        Schedule((exp.evaluation.interval_iterations,)),
                        patience=exp.stopping.patience_evaluations, logged_until=logged_until)
    return run, state, loop


@pytest.mark.parametrize(("metric", "mode"), [
    ("val_greedy/sharpe", "max"), ("val_greedy/max_drawdown", "min"), ("max_drawdown", "min"),
    ("val_stochastic/return", "max"), ("val_greedy/turnover", "min"), ("val_greedy/max_drawdown_duration_bars", "min"),
])
def test_each_metric_has_its_direction(metric, mode):
    assert metric_mode(metric) == mode


@pytest.mark.parametrize(("mode", "values", "best", "best_iteration", "since"), [
    ("max", [0.2, 0.5, 0.3, math.nan, 0.4], 0.5, 2, 2),
    ("min", [0.2, 0.5, 0.1, None, 0.15], 0.1, 3, 1),
])
def test_record_evaluation_keeps_the_best_in_the_metrics_direction(mode, values, best, best_iteration, since):
    state = RunState()
    for i, value in enumerate(values, start=1):
        state.iteration = i
        record_evaluation(state, value, Objective("m", mode))
    assert (state.best_metric, state.best_iteration, state.evaluations_since_best) == (best, best_iteration, since)


def test_the_best_checkpoint_of_a_drawdown_objective_is_the_lowest_drawdown(tmp_path):
    exp = experiment(tmp_path, evaluation={"metric": "max_drawdown"})
    session = FakeSession(exp, scores=[0.30, 0.10, 0.25, 0.40, 0.12, 0.50])
    run, state, loop = plain_loop(tmp_path, session)
    assert loop.run() == "iterations"
    assert (state.best_metric, state.best_iteration) == (0.10, 2)
    assert (run.checkpoint_dir("best") / "algorithm_state.txt").read_text() == "2"
    assert run.checkpoint_state("best").best_metric == 0.10


def test_patience_stops_after_n_evaluations_without_improvement(tmp_path):
    exp = experiment(tmp_path, stopping={"iterations": 20, "patience_evaluations": 3})
    session = FakeSession(exp, scores=[1.0, 2.0, 1.5, 1.9, 1.2, 3.0])
    _, state, loop = plain_loop(tmp_path, session)
    assert loop.run() == "no_improvement"
    assert state.iteration == 5 and state.evaluations_since_best == 3


def test_an_iteration_without_samples_is_skipped_not_a_false_nan_abort(tmp_path, caplog):
    exp = experiment(tmp_path, stopping={"iterations": 4})
    session = FakeSession(exp, sampled=[BATCH, 0, BATCH, BATCH], losses=[0.5, math.nan, 0.4, 0.3])
    tracker = FakeTracker()
    _, state, loop = plain_loop(tmp_path, session, tracker)
    assert loop.run() == "iterations"
    assert "iteration 2 sampled no env steps" in caplog.text
    assert tracker.steps == [100, 200, 300]  # the empty iteration adds no second value at step 100


def test_a_nan_loss_with_samples_still_stops_the_run(tmp_path):
    session = FakeSession(experiment(tmp_path), losses=[0.5, math.nan])
    _, _, loop = plain_loop(tmp_path, session)
    with pytest.raises(NaNError, match="iteration 2: learners/default_policy/total_loss is nan"):
        loop.run()


def test_env_runners_that_never_come_back_give_a_clear_error(tmp_path):
    exp = experiment(tmp_path, stopping={"iterations": 50})
    session = FakeSession(exp, sampled=[BATCH] + [0] * 20, losses=[0.5] + [math.nan] * 20)
    _, _, loop = plain_loop(tmp_path, session)
    with pytest.raises(NoSamplesError, match=f"no env steps sampled for {MAX_EMPTY_ITERATIONS} iterations"):
        loop.run()


def test_a_resumed_loop_logs_only_steps_mlflow_does_not_have(tmp_path):
    exp = experiment(tmp_path, stopping={"iterations": 6})
    tracker = FakeTracker()
    tracker.log_metrics({"iteration": 5}, step=5 * BATCH)  # logged before a SIGKILL
    session = FakeSession(exp)
    session.iteration, session.env_steps = 3, 3 * BATCH      # resumed from the iteration-3 checkpoint
    _, _, loop = plain_loop(tmp_path, session, tracker, logged_until=tracker.last_step("iteration"))
    loop.run()
    assert tracker.steps == [500, 600] and len(set(tracker.steps)) == len(tracker.steps)


def test_the_trial_host_reports_every_iteration_and_checkpoints_at_decision_points(tmp_path):
    exp = experiment(tmp_path, stopping={"iterations": 5})

    class Tune:
        def __init__(self):
            self.reports = []

        class Checkpoint:
            @staticmethod
            def from_directory(path):
                import json
                from pathlib import Path

                return json.loads((Path(path) / "raytrade_trial.json").read_text())

        def report(self, metrics, checkpoint=None):
            self.reports.append((metrics, checkpoint))

    session = FakeSession(exp, scores=[None, 0.3, None, 0.1, 0.2], metric="val_greedy/max_drawdown")
    session.save = lambda path: path.mkdir(parents=True)
    ctx = SweepContext({}, "s", None, "val_greedy/max_drawdown", "min", (2,))
    state, tune, tracker = TrialState(trial_id="t"), Tune(), FakeTracker()
    loop = TrainingLoop(session, state, TrialHost(ctx, session, state, tracker, tune), tracker,
                        Objective.of(ctx.metric, "min"), Schedule(ctx.checkpoint_periods, at_end=True))
    assert loop.run() == "iterations"
    assert session.evaluations == [2, 4, 5]  # periods and the last iteration
    reported = [m["val_greedy/max_drawdown"] for m, _ in tune.reports]
    assert reported == [math.inf, 0.3, 0.3, 0.1, 0.2]  # worst before the first evaluation, then carried
    assert [m["eval_age_iterations"] for m, _ in tune.reports] == [1, 0, 1, 0, 0]
    checkpoints = [c for _, c in tune.reports if c is not None]
    assert [c["iteration"] for c in checkpoints] == [2, 4, 5]
    assert checkpoints[-1]["best_metric"] == 0.1 and checkpoints[-1]["evaluations_since_best"] == 1
    assert tune.reports[-1][0]["stopped_by"] == "iterations"


def test_old_trial_state_files_still_load():
    state = TrialState.from_json('{"trial_id": "a", "iteration": 4, "best": 0.7, "evaluations_since_best": 1}')
    assert (state.best_metric, state.iteration, state.evaluations_since_best) == (0.7, 4, 1)

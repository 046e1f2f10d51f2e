"""``train()`` around the loop, with a scripted session and tracker (no Ray): failure paths
mark the run and leave no temp files, SIGTERM during startup stops cleanly, one trainer per run,
resume after SIGKILL continues from the checkpoint's own state, only completed runs register."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.runs.run_dir import RunDir, RunLockedError
from app.training import run as run_mod
from tests.unit.training.fakes import BATCH, FakeAlgo, FakeSession, FakeTracker, experiment

ROOT = Path(__file__).resolve().parents[3]


def stray_files(run: RunDir) -> list[str]:
    return sorted(str(p.relative_to(run.path)) for p in run.path.rglob(".*")
                  if p.name.startswith((".tmp-", ".latest-", ".best-", ".final-")))


@pytest.fixture
def started(monkeypatch):
    """Replace Ray/MLflow startup by fakes; ``started.hook`` runs inside startup."""
    class Started:
        session: FakeSession | None = None
        tracker: FakeTracker = FakeTracker()
        hook = None
        kwargs: dict = {}

    def fake_start(exp, run, stop):
        if Started.hook:
            Started.hook()
        Started.session = Started.session or FakeSession(exp, **Started.kwargs)
        state = run.state()
        if state.mlflow_run_id is None:
            state.mlflow_run_id = Started.tracker.run_id
            run.save_state(state)
        return Started.session, Started.tracker

    monkeypatch.setattr(run_mod, "_start", fake_start)
    return Started


def test_a_completed_run_is_finished_and_registered(tmp_path, started):
    outcome = run_mod.train(experiment(tmp_path, stopping={"iterations": 4}))
    assert outcome.state.status == "finished" and outcome.stopped_by == "iterations"
    assert started.tracker.ended == ["FINISHED"] and started.tracker.registered == [outcome.run.policy_dir("final")]
    assert outcome.registered_version == "1" and not stray_files(outcome.run)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("save failed")])
def test_a_failed_checkpoint_write_marks_the_run_failed_and_leaves_no_temp_dirs(tmp_path, started, error):
    exp = experiment(tmp_path, stopping={"iterations": 6})
    started.session = FakeSession(exp)
    started.session.algo = FakeAlgo(started.session, fail_at={4}, error=error)
    with pytest.raises(type(error), match=str(error.args[-1])):
        run_mod.train(exp)
    (run,) = [RunDir(p) for p in (tmp_path / "runs").iterdir()]
    assert run.state().status == "failed" and started.tracker.ended == ["FAILED"]
    assert stray_files(run) == []
    assert (run.checkpoint_dir("latest") / "algorithm_state.txt").read_text() == "2"  # the last good one
    assert started.session.closed


def test_recording_the_failure_never_masks_the_original_error(tmp_path, started, monkeypatch):
    exp = experiment(tmp_path)
    started.session = FakeSession(exp)
    started.session.algo = FakeAlgo(started.session, fail_at={2}, error=OSError(28, "No space left on device"))
    started.tracker = FakeTracker(fail_end=True)
    real_save = RunDir.save_state

    def save_state(self, state):  # the disk is full: state.json cannot be written either
        if state.status != "running":
            raise OSError(28, "No space left on device (state)")
        real_save(self, state)

    monkeypatch.setattr(RunDir, "save_state", save_state)
    with pytest.raises(OSError, match=r"No space left on device$"):
        run_mod.train(exp)


def test_sigterm_during_startup_stops_the_run_cleanly(tmp_path, started):
    started.hook = lambda: os.kill(os.getpid(), signal.SIGTERM)  # e.g. while Ray starts
    outcome = run_mod.train(experiment(tmp_path))
    assert outcome.stopped_by == "signal" and outcome.state.status == "stopped"
    assert outcome.run.state().status == "stopped" and outcome.state.iteration == 0
    assert started.tracker.ended == ["KILLED"] and started.tracker.registered == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


@pytest.mark.parametrize(("register", "expected"), [(False, []), (True, ["final"])])
def test_a_run_stopped_by_a_signal_is_checkpointed_but_registered_only_on_request(tmp_path, started, monkeypatch,
                                                                                 register, expected):
    original = FakeSession.step

    def step(self):
        metrics = original(self)
        if self.iteration == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(FakeSession, "step", step)
    outcome = run_mod.train(experiment(tmp_path, stopping={"iterations": 50}), register=register)
    assert outcome.state.status == "stopped" and outcome.state.iteration == 3
    assert (outcome.run.checkpoint_dir("final") / "algorithm_state.txt").read_text() == "3"
    assert [p.parents[3].name for p in started.tracker.registered] == expected
    assert started.tracker.ended == ["KILLED"]


def test_resume_after_sigkill_continues_from_the_checkpoints_own_state(tmp_path, started, monkeypatch):
    """Uninterrupted vs killed after iteration 5 (state.json at 5, checkpoint at 4) and resumed:
    same counters, same patience count, MLflow never gets two values for one step."""
    scores = [1.0, 2.0, 1.5, 1.8, 1.2, 1.1, 1.9, 1.0]
    started.kwargs = {"scores": scores}
    reference = run_mod.train(experiment(tmp_path / "reference", stopping={"iterations": 8})).state

    exp = experiment(tmp_path / "killed", stopping={"iterations": 8})
    started.session, started.tracker = None, FakeTracker()
    original = FakeSession.step

    def killed(self):
        if self.iteration == 5:
            raise KeyboardInterrupt("SIGKILL stand-in")  # nothing after iteration 5 runs
        return original(self)

    monkeypatch.setattr(FakeSession, "step", killed)
    with pytest.raises(KeyboardInterrupt):
        run_mod.train(exp)
    monkeypatch.setattr(FakeSession, "step", original)
    (run,) = [RunDir(p) for p in (tmp_path / "killed" / "runs").iterdir()]
    before = run.state()
    assert before.iteration == 5 and before.evaluations_since_best == 3
    run.mark("running")  # as a SIGKILL leaves it
    started.session = None
    outcome = run_mod.train(exp, resume=run)
    state = outcome.state
    assert started.session.restored_from == run.checkpoint_dir("latest")
    assert (state.iteration, state.env_steps) == (8, 8 * BATCH)
    assert state.evaluations_since_best == reference.evaluations_since_best == 6
    assert (state.best_metric, state.best_iteration) == (reference.best_metric, reference.best_iteration)
    steps = started.tracker.steps
    assert len(steps) == len(set(steps)) and steps[-1] == 8 * BATCH


def test_a_second_trainer_of_the_same_run_is_refused_with_the_owners_pid(tmp_path, started):
    run = RunDir.create(experiment(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from app.runs.run_dir import RunDir\n"
         "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(60)", str(run.path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"run {run.name} is being trained by another process \(pid {holder.pid}\)"):
            run_mod.train(experiment(tmp_path), resume=run)
        assert run.state().status == "running"  # the other trainer's run is not marked failed
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the OS frees the lock when its owner dies
        try:
            with run.lock():
                break
        except RunLockedError:
            time.sleep(0.05)
    else:
        pytest.fail("lock not released after its owner died")


def test_state_json_of_a_checkpoint_is_what_resume_reads(tmp_path, started):
    outcome = run_mod.train(experiment(tmp_path, stopping={"iterations": 4}))
    saved = json.loads((outcome.run.checkpoint_dir("latest") / "raytrade_state.json").read_text())
    assert saved["iteration"] == 4 and saved["mlflow_run_id"] == "run-1"

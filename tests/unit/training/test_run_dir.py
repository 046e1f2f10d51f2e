"""Run directories: resolved config, atomic state and checkpoints that survive a crash."""

from __future__ import annotations

import pytest

from app.config.loader import parse_experiment
from app.errors import ConfigError
from app.runs.run_dir import RunDir, RunState


class FakeAlgo:
    def __init__(self, payload: str, crash: bool = False) -> None:
        self.payload, self.crash = payload, crash

    def save_to_path(self, path: str) -> None:
        from pathlib import Path

        (Path(path) / "algorithm_state.pkl").write_text(self.payload)
        if self.crash:
            raise KeyboardInterrupt("killed mid-save")


@pytest.fixture
def run(tmp_path):
    exp = parse_experiment({"name": "r", "env": {"id": "raytrade/SyntheticMeanReversion-v0"}, "tracking": {"runs_dir": str(tmp_path)}})
    return RunDir.create(exp)


def test_create_writes_the_resolved_config_and_initial_state(run):
    assert run.experiment_raw()["name"] == "r"
    assert run.state() == RunState()
    assert RunDir.find(run.name, runs_dir=run.path.parent).path == run.path


def test_checkpoint_swap_is_atomic(run):
    run.save_checkpoint(FakeAlgo("v1"), "latest")
    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint(FakeAlgo("v2", crash=True), "latest")
    assert (run.checkpoint_dir("latest") / "algorithm_state.pkl").read_text() == "v1"
    run.save_checkpoint(FakeAlgo("v3"), "latest")
    assert (run.checkpoint_dir("latest") / "algorithm_state.pkl").read_text() == "v3"
    assert run.latest_checkpoint() == run.checkpoint_dir("latest")


def test_state_round_trip(run):
    state = RunState(iteration=7, env_steps=900, best_metric=1.5, mlflow_run_id="abc")
    run.save_state(state)
    assert run.state() == state


def test_find_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no matching runs"):
        RunDir.find("nope", runs_dir=tmp_path)


def stray(run) -> list[str]:
    return sorted(p.name for p in (run.path / "checkpoints").iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt("killed")])
def test_a_failed_checkpoint_write_removes_its_temp_dir_and_keeps_the_last_one(run, error):
    class Failing:
        def save_to_path(self, path: str) -> None:
            from pathlib import Path

            (Path(path) / "half.pkl").write_text("half")
            raise error

    run.save_checkpoint(FakeAlgo("v1"), "latest")
    with pytest.raises(type(error)):
        run.save_checkpoint(Failing(), "latest")
    assert stray(run) == []
    assert (run.checkpoint_dir("latest") / "algorithm_state.pkl").read_text() == "v1"


def test_a_failed_swap_puts_the_previous_checkpoint_back(run, monkeypatch):
    import os

    run.save_checkpoint(FakeAlgo("v1"), "best")
    real = os.replace

    def replace(src, dst):
        from pathlib import Path

        if Path(src).name.startswith(".best-") and Path(src).name != ".best-old" and Path(dst).name == "best":
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        run.save_checkpoint(FakeAlgo("v2"), "best")
    assert (run.checkpoint_dir("best") / "algorithm_state.pkl").read_text() == "v1"
    assert stray(run) == []


def test_keep_retains_that_many_periodic_checkpoints(run):
    for i in range(1, 6):
        run.save_checkpoint(FakeAlgo(f"v{i}"), "latest", RunState(iteration=10 * i), keep=3)
    history = run.path / "checkpoints" / "history"
    assert sorted(p.name for p in history.iterdir()) == ["iteration-000000030", "iteration-000000040"]
    assert (history / "iteration-000000040" / "algorithm_state.pkl").read_text() == "v4"
    assert run.checkpoint_state("latest").iteration == 50 and stray(run) == []


def test_clean_temp_removes_what_a_killed_writer_left(run):
    (run.path / "checkpoints" / ".latest-abc").mkdir(parents=True)
    (run.path / ".tmp-state.json-xyz").write_text("{")
    with run.lock():
        assert len(run.clean_temp()) == 2
    assert stray(run) == [] and not list(run.path.glob(".tmp-*"))

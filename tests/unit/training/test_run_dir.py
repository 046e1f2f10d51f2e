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
    exp = parse_experiment({"name": "r", "env": {"id": "x"}, "tracking": {"runs_dir": str(tmp_path)}})
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

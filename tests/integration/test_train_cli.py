"""`raytrade train` as a user runs it: finishes, stops cleanly on SIGTERM, resumes after SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAYTRADE = [sys.executable, "-c", "from app.cli import main; main()"]


def start(args: list[str], tmp: Path) -> subprocess.Popen:
    """A training process in its own session, so the local Ray it starts can be killed with it."""
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*RAYTRADE, "train", *args], cwd=tmp, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def overrides(tmp: Path, iterations: int) -> list[str]:
    return ["--set", f"stopping.iterations={iterations}", "--set", f"tracking.runs_dir={tmp / 'runs'}",
            "--set", f"tracking.mlflow_uri=sqlite:///{tmp / 'mlruns.db'}",
            "--set", f"tracking.bounds_file={ROOT / 'tune_configs/bounds.yaml'}"]


def wait_for_state(tmp: Path, proc: subprocess.Popen, min_iteration: int, timeout_s: float = 150) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for state in (tmp / "runs").glob("*/state.json"):
            latest = state.parent / "checkpoints" / "latest"
            if json.loads(state.read_text())["iteration"] >= min_iteration and latest.is_dir():
                return state.parent
        if proc.poll() is not None:
            pytest.fail(f"training exited early:\n{proc.stdout.read()}")
        time.sleep(0.5)
    pytest.fail("training made no progress in time")


def finish(proc: subprocess.Popen, timeout_s: float = 180) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        _kill_group(proc)
    return proc.returncode, out


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the process group we started, nothing else


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_continues_the_counters(tmp_path):
    smoke = str(ROOT / "tune_configs/smoke.yaml")
    proc = start([smoke, *overrides(tmp_path, 500)], tmp_path)
    run_dir = wait_for_state(tmp_path, proc, min_iteration=2)
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == 0, out
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "stopped" and (run_dir / "checkpoints/final").is_dir()
    stopped_at = state["iteration"]

    assert "not registered" in out  # a stopped run is not a model version

    resumed = start(["--resume", str(run_dir), *overrides(tmp_path, stopped_at + 2)], tmp_path)
    code, out = finish(resumed)
    assert code == 0, out
    assert "DeprecationWarning" not in out and "new API stack" not in out and "+nan" not in out
    assert "registered as model version" in out
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "finished" and state["iteration"] == stopped_at + 2
    assert state["env_steps"] == (stopped_at + 2) * 256


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path):
    proc = start([str(ROOT / "tune_configs/smoke.yaml"), *overrides(tmp_path, 500)], tmp_path)
    run_dir = wait_for_state(tmp_path, proc, min_iteration=3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = json.loads((run_dir / "state.json").read_text())["iteration"]
    assert json.loads((run_dir / "state.json").read_text())["status"] == "running"  # no clean exit

    resumed = start(["--resume", run_dir.name, *overrides(tmp_path, killed_at + 1)], tmp_path)
    code, out = finish(resumed)
    assert code == 0, out
    state = json.loads((run_dir / "state.json").read_text())
    # the periodic checkpoint may be one iteration newer than the state file it was killed with
    assert state["status"] == "finished" and killed_at + 1 <= state["iteration"] <= killed_at + 2
    assert state["env_steps"] == state["iteration"] * 256  # counters continued, not restarted

"""What ``raytrade train`` prints per iteration: never ``nan`` for an iteration in which no
episode ended, and plain lines (at most every N seconds) when stdout is not a terminal."""

from __future__ import annotations

import math
from types import SimpleNamespace

from typer.testing import CliRunner

from app.cli.train import IterationText, PlainProgress


def test_an_iteration_without_a_finished_episode_never_prints_nan():
    text = IterationText("sharpe")
    assert text.update({}) == ("no episode ended yet", "-")
    assert text.update({"env_runners/episode_return_mean": math.nan}) == ("no episode ended yet", "-")
    assert text.update({"env_runners/episode_return_mean": 0.25, "val_greedy/sharpe": 1.5}) == ("+0.2500", "+1.500")
    ret, val = text.update({"env_runners/episode_return_mean": math.nan})
    assert ret == "+0.2500 (no episode ended)" and val == "+1.500"
    assert "nan" not in ret


def test_plain_progress_prints_the_first_line_then_every_n_seconds_and_the_last():
    now = [0.0]
    lines: list[str] = []
    progress = PlainProgress(IterationText("sharpe"), lines.append, every_s=10, clock=lambda: now[0])
    for i in range(1, 8):
        now[0] = 3.0 * i
        progress(SimpleNamespace(iteration=i, env_steps=100 * i), {"progress": i / 7}, 3.0)
    printed = [int(line.split()[1]) for line in lines]
    assert printed == [1, 5, 7]  # t=3 (first), t=15 (>= 10 s later), the last
    assert all("nan" not in line for line in lines) and "no episode ended yet" in lines[0]


def test_train_without_a_terminal_prints_plain_lines(tmp_path, monkeypatch):
    """Through the CLI (stdout captured, so not a terminal) with train() replaced by a fake."""
    from app.cli import app
    from app.training import run as run_mod

    def fake_train(exp, *, resume=None, init_from=None, progress=None, register=False):
        for i in (1, 2):
            progress(SimpleNamespace(iteration=i, env_steps=64 * i), {"progress": i / 2}, 0.1)
        state = SimpleNamespace(status="finished", iteration=2, env_steps=128, best_metric=None,
                                best_iteration=None, mlflow_run_id="x", alerts=[])
        run = SimpleNamespace(name="r", path=tmp_path, policy_dir=lambda which: tmp_path / which)
        return SimpleNamespace(run=run, state=state, stopped_by="iterations", registered_version="1",
                               final_checkpoint=tmp_path)

    monkeypatch.setattr(run_mod, "train", fake_train)
    config = tmp_path / "e.yaml"
    config.write_text("name: e\nenv: {id: raytrade/SyntheticMeanReversion-v0}\n")
    result = CliRunner().invoke(app, ["train", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "iteration     1" in result.output and "iteration     2" in result.output
    assert "no episode ended yet" in result.output and "registered as model version 1" in result.output

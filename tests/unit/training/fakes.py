"""Ray-free stand-ins for the training loop's collaborators: a scripted session, a recording
tracker and an algorithm that writes (or fails to write) a checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from app.config.loader import parse_experiment
from app.training import alerts

BATCH = 100  # env steps per iteration


def experiment(tmp_path: Path, **sections: Any):
    raw = {"name": "r", "env": {"id": "raytrade/SyntheticMeanReversion-v0"}, "stopping": {"iterations": 6},
           "evaluation": {"interval_iterations": 1}, "checkpoint": {"every_iterations": 2},
           "tracking": {"runs_dir": str(tmp_path / "runs"), "bounds_file": None}}
    for key, value in sections.items():
        raw[key] = raw.get(key, {}) | value if isinstance(value, dict) else value
    return parse_experiment(raw)


class FakeAlgo:
    """``save_to_path`` writes the iteration it saw; ``fail_at`` iterations raise ``error``."""

    def __init__(self, session: FakeSession, fail_at: set[int] | None = None,
                 error: BaseException | None = None) -> None:
        self.session, self.fail_at = session, fail_at or set()
        self.error = error or OSError(28, "No space left on device")

    def save_to_path(self, path: str) -> None:
        (Path(path) / "algorithm_state.txt").write_text(str(self.session.iteration))
        if self.session.iteration in self.fail_at:
            raise self.error


class FakeSession:
    """Scripted iterations: ``sampled[i]`` env steps and ``losses[i]`` at iteration i+1, and
    ``scores[i]`` as the validation metric (None: no value)."""

    def __init__(self, exp: Any, *, scores: list[float | None] | None = None, losses: list[float] | None = None,
                 sampled: list[int] | None = None, rules: list[alerts.Rule] | None = None,
                 action_frac: list[float] | None = None, metric: str | None = None) -> None:
        self.exp = exp
        self.scores, self.losses, self.sampled = scores or [], losses or [], sampled or []
        self.rules, self.action_frac = rules or [], action_frac
        self.metric = metric or f"val_greedy/{exp.evaluation.metric}"
        self.iteration, self.env_steps = 0, 0
        self.algo: Any = FakeAlgo(self)
        self.can_evaluate = True
        self.evaluations: list[int] = []
        self.closed = False
        self.restored_from: Path | None = None

    def _at(self, seq: list, default: Any) -> Any:
        return seq[self.iteration - 1] if self.iteration - 1 < len(seq) else default

    def step(self) -> dict[str, float]:
        self.iteration += 1
        sampled = self._at(self.sampled, BATCH)
        self.env_steps += sampled
        metrics = {"learners/default_policy/total_loss": self._at(self.losses, 0.5),
                   "env_steps_sampled": float(sampled), "iteration": self.iteration,
                   "progress": self.iteration / (self.exp.stopping.iterations or 1)}
        if sampled:
            metrics["env_runners/episode_return_mean"] = 0.1 * self.iteration
        for a, frac in enumerate(self.action_frac or []):
            metrics[f"actions/frac_{a}"] = frac
        return metrics

    def evaluate(self) -> dict[str, float]:
        self.evaluations.append(self.iteration)
        score = self._at(self.scores, None)
        return {} if score is None else {self.metric: score}

    def check_alerts(self, metrics: dict[str, float], *, sampled: bool = True) -> list[alerts.Breach]:
        n = len(self.action_frac or []) or 1
        constants = {"max_entropy": math.log(n) if n > 1 else 0.0, "uniform": 1.0 / n}
        return alerts.check(self.rules, metrics, self.iteration, constants, sampled=sampled)

    def budget_stop(self, metrics: dict[str, float]) -> str | None:
        return "iterations" if self.iteration >= (self.exp.stopping.iterations or 10**9) else None

    def restore(self, path: Path) -> None:
        self.restored_from = Path(path)
        self.iteration = int((Path(path) / "algorithm_state.txt").read_text())
        self.env_steps = self.iteration * BATCH

    def load_weights(self, policy_dir: Path) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeTracker:
    """Records what MLflow would receive; ``fail_end`` makes ``end`` raise."""

    def __init__(self, run_id: str = "run-1", fail_end: bool = False) -> None:
        self.run_id, self.fail_end = run_id, fail_end
        self.steps: list[int] = []
        self.logged: list[tuple[int, dict[str, float]]] = []
        self.alerts: list[str] = []
        self.tags: dict[str, str] = {}
        self.ended: list[str] = []
        self.registered: list[Path] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.steps.append(step)
        self.logged.append((step, dict(metrics)))

    def last_step(self, key: str) -> int | None:
        steps = [s for s, m in self.logged if key in m]
        return max(steps) if steps else None

    def alert(self, message: str, step: int) -> None:
        self.alerts.append(message)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags |= dict(tags)

    def log_params(self, params: Any) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def register_policy(self, checkpoint_dir: Path, name: str) -> str:
        self.registered.append(checkpoint_dir)
        return str(len(self.registered))

    def end(self, status: str = "FINISHED") -> None:
        self.ended.append(status)
        if self.fail_end:
            raise RuntimeError("MLflow is down")

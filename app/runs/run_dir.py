"""A run's directory: resolved config, splits, log, state and checkpoints.

Layout (``runs/<name>-<UTC time>/``)::

    experiment.yaml      the resolved experiment (what ``--resume`` rebuilds from)
    split_<kind>.json    the data splits the run used
    run.log              the run's log
    state.json           iteration, env steps, best validation metric, MLflow run id
    checkpoints/latest   periodic (atomic: written aside, then renamed over)
    checkpoints/best     best by the validation metric
    checkpoints/final    written at the end, on SIGINT/SIGTERM too

State and checkpoints are replaced atomically, so a SIGKILL at any moment leaves the last
complete checkpoint and a state file that describes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from app.atomic import atomic_write_text, fsync_dir
from app.config.schema import Experiment, default_runs_dir
from app.errors import ConfigError

#: where an algorithm checkpoint keeps its RLModule (``RLModule.from_checkpoint`` loads it)
POLICY_SUBDIR = Path("learner_group/learner/rl_module/default_policy")
CHECKPOINTS = ("final", "best", "latest")


@dataclass
class RunState:
    iteration: int = 0
    env_steps: int = 0
    best_metric: float | None = None
    best_iteration: int | None = None
    evaluations_since_best: int = 0
    mlflow_run_id: str | None = None
    status: str = "running"
    alerts: list[str] = field(default_factory=list)


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()

    @classmethod
    def create(cls, exp: Experiment) -> RunDir:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = exp.tracking.runs_dir / f"{exp.name}-{stamp}"
        path.mkdir(parents=True, exist_ok=False)
        run = cls(path)
        atomic_write_text(run.path / "experiment.yaml", yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
        run.save_state(RunState())
        return run

    @classmethod
    def find(cls, ref: str, runs_dir: Path | str | None = None) -> RunDir:
        """A run by path, or by name (or unique name prefix) under ``runs_dir``
        (default :func:`default_runs_dir`)."""
        runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        path = Path(ref).expanduser()
        if not path.is_dir():
            matches = sorted(p for p in runs_dir.glob(f"{ref}*") if (p / "experiment.yaml").is_file())
            if len(matches) != 1:
                raise ConfigError(f"run {ref!r}: {'no' if not matches else len(matches)} matching runs under {runs_dir}")
            path = matches[0]
        if not (path / "experiment.yaml").exists():
            raise ConfigError(f"{path}: not a raytrade run directory (no experiment.yaml)")
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    def experiment_raw(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "experiment.yaml").read_text())

    def state(self) -> RunState:
        return RunState(**json.loads((self.path / "state.json").read_text()))

    def save_state(self, state: RunState) -> None:
        atomic_write_text(self.path / "state.json", json.dumps(asdict(state), indent=2))

    def checkpoint_dir(self, which: str) -> Path:
        return self.path / "checkpoints" / which

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (periodic or final); swapped in atomically, so one
        that exists is whole."""
        found = [p for p in (self.checkpoint_dir("latest"), self.checkpoint_dir("final")) if p.is_dir()]
        return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None

    def policy_dir(self, which: str = "final") -> Path:
        """The RLModule inside a checkpoint (loadable with ``RLModule.from_checkpoint``)."""
        return self.checkpoint_dir(which) / POLICY_SUBDIR

    def save_checkpoint(self, algo: Any, which: str) -> Path:
        """``algo.save_to_path`` into a sibling temp dir, then swap it in (never half-written)."""
        target = self.checkpoint_dir(which)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{which}-", dir=target.parent))
        algo.save_to_path(str(tmp.resolve()))
        old = target.with_name(f".{which}-old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        fsync_dir(target.parent)
        return target



def resume_experiment(run: RunDir, overrides: list[str] | None = None) -> Experiment:
    """The run's saved experiment, with ``overrides`` (e.g. a larger budget) applied."""
    from app.config.loader import apply_overrides, parse_experiment

    where = str(run.path / "experiment.yaml")
    return parse_experiment(apply_overrides(run.experiment_raw(), overrides or [], where), where=where)

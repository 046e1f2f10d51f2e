"""A run's directory: resolved config, splits, log, state and checkpoints.

Layout (``runs/<name>-<UTC time>/``)::

    experiment.yaml      the resolved experiment (what ``--resume`` rebuilds from)
    split_<kind>.json    the data splits the run used
    run.log              the run's log
    state.json           iteration, env steps, best validation metric, MLflow run id
    checkpoints/latest   periodic (atomic: written aside, then renamed over)
    checkpoints/history  older periodic ones, ``iteration-<n>`` (``checkpoint.keep`` in all)
    checkpoints/best     best by the validation metric
    checkpoints/final    written at the end, on SIGINT/SIGTERM too
    .lock                held by the one process training the run (``.lock.pid`` names it)

State and checkpoints are replaced atomically, so a SIGKILL at any moment leaves the last
complete checkpoint and a state file that describes it. Every checkpoint also holds the run
state at the moment it was written (``raytrade_state.json``), so ``--resume`` continues from
the checkpoint's own counters, best score and patience, not from a newer ``state.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from app.atomic import atomic_write_text, fsync_dir
from app.config.schema import Experiment, default_runs_dir
from app.errors import ConfigError, RaytradeError

#: where an algorithm checkpoint keeps its RLModule (``RLModule.from_checkpoint`` loads it)
POLICY_SUBDIR = Path("learner_group/learner/rl_module/default_policy")
CHECKPOINTS = ("final", "best", "latest")
#: the run state saved inside every checkpoint (what ``--resume`` continues from)
CHECKPOINT_STATE = "raytrade_state.json"
HISTORY = "history"

log = logging.getLogger("raytrade.runs")


class RunLockedError(RaytradeError):
    """Another process is training this run."""


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

    @classmethod
    def from_json(cls, text: str) -> RunState:
        """Tolerates keys written by other versions (unknown ones are dropped)."""
        raw = json.loads(text)
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        #: replaces ``data.store`` of the saved experiment when set (``--store``: see :meth:`with_store`)
        self.store_override: Path | None = None

    def with_store(self, store: Path | str | None) -> RunDir:
        """This run reading its bars from ``store`` (``--store``) instead of its saved
        ``data.store``; checkpoints, splits and outputs stay the run's. None: unchanged."""
        if store is None:
            return self
        from app.config.loader import require_store

        run = type(self)(self.path)
        run.store_override = require_store(Path(store).expanduser().resolve(), what="--store")
        return run

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
        raw = yaml.safe_load((self.path / "experiment.yaml").read_text())
        if self.store_override is not None and isinstance(raw.get("data"), dict):
            raw["data"]["store"] = str(self.store_override)
        return raw

    def state(self) -> RunState:
        return RunState.from_json((self.path / "state.json").read_text())

    def save_state(self, state: RunState) -> None:
        atomic_write_text(self.path / "state.json", state.to_json())

    def mark(self, status: str) -> bool:
        """Best effort: set the status in ``state.json`` (used on failure paths, where raising
        would hide the original error); False if it could not be written."""
        try:
            state = self.state()
            state.status = status
            self.save_state(state)
        except Exception as exc:  # noqa: BLE001 - a failure path must not mask the real error
            log.warning("%s: could not mark the run %s: %s", self.name, status, exc)
            return False
        return True

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<run>/.lock`` while training: a second trainer of the same run fails at once
        with :class:`RunLockedError` naming the owner's pid (the OS frees the lock when the
        owner dies, even by SIGKILL)."""
        from filelock import FileLock, Timeout

        pid_file = self.path / ".lock.pid"
        lock = FileLock(str(self.path / ".lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            owner = pid_file.read_text().strip() if pid_file.is_file() else "unknown"
            raise RunLockedError(f"run {self.name} is being trained by another process (pid {owner})") from None
        try:
            atomic_write_text(pid_file, str(os.getpid()))
            yield
        finally:
            with contextlib.suppress(OSError):
                pid_file.unlink()
            lock.release()

    def clean_temp(self) -> list[Path]:
        """Remove what a killed writer left behind (``.tmp-*`` files, ``.<which>-*`` checkpoint
        dirs); call it only while holding :meth:`lock`."""
        stray = [p for p in self.path.glob(".tmp-*")]
        ckpts = self.path / "checkpoints"
        if ckpts.is_dir():
            stray += [p for p in ckpts.iterdir() if p.name.startswith(".")]
        for path in stray:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        return stray

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

    def checkpoint_state(self, which: str | Path) -> RunState | None:
        """The run state saved with a checkpoint (None for checkpoints older than that)."""
        path = Path(which) if isinstance(which, Path) else self.checkpoint_dir(which)
        file = path / CHECKPOINT_STATE
        return RunState.from_json(file.read_text()) if file.is_file() else None

    def save_checkpoint(self, algo: Any, which: str, state: RunState | None = None, *,
                        keep: int = 1) -> Path:
        """``algo.save_to_path`` (plus ``state``) into a sibling temp dir, then swap it in
        (never half-written). On any failure the temp dir is removed and the previous
        checkpoint stays. ``keep`` > 1 moves the replaced checkpoint to ``history/`` instead of
        deleting it, and keeps the newest ``keep - 1`` there."""
        target = self.checkpoint_dir(which)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{which}-", dir=target.parent))
        old = target.with_name(f".{which}-old")
        try:
            algo.save_to_path(str(tmp.resolve()))
            if state is not None:
                atomic_write_text(tmp / CHECKPOINT_STATE, state.to_json())
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                if old.exists() and not target.exists():
                    os.replace(old, target)
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._retire(old, which, keep)
        fsync_dir(target.parent)
        return target

    def _retire(self, old: Path, which: str, keep: int) -> None:
        """The replaced checkpoint: into ``history/`` (``keep`` > 1) or deleted."""
        if not old.exists():
            return
        if keep <= 1:
            shutil.rmtree(old, ignore_errors=True)
            return
        prior = self.checkpoint_state(old)
        label = f"iteration-{prior.iteration:09d}" if prior else f"{which}-{old.stat().st_mtime_ns}"
        history = old.parent / HISTORY
        history.mkdir(exist_ok=True)
        shutil.rmtree(history / label, ignore_errors=True)
        os.replace(old, history / label)
        for stale in sorted(history.iterdir())[:-(keep - 1)]:
            shutil.rmtree(stale, ignore_errors=True)


def resume_experiment(run: RunDir, overrides: list[str] | None = None) -> Experiment:
    """The run's saved experiment, with ``overrides`` (e.g. a larger budget) applied."""
    from app.config.loader import apply_overrides, parse_experiment

    where = str(run.path / "experiment.yaml")
    return parse_experiment(apply_overrides(run.experiment_raw(), overrides or [], where), where=where)

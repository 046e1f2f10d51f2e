"""MLflow behind a small interface (the only module that imports mlflow).

A run logs params (the resolved config, flattened), metrics keyed by env steps, artifacts, tags
and alerts; the final policy is registered as a model. MLflow errors become TrackingError
with the cause kept, so a tracking hiccup is reported clearly instead of as a vendor trace.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from app.errors import RaytradeError


class TrackingError(RaytradeError):
    """The tracking backend (MLflow) failed."""


class Tracker(Protocol):
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def alert(self, message: str, step: int) -> None: ...
    def register_policy(self, checkpoint_dir: Path, name: str) -> str | None: ...
    def end(self, status: str = "FINISHED") -> None: ...


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, name + ".")
        else:
            out[name] = value
    return out


class MlflowTracker:
    """One MLflow run (new, resumed by id, or nested under a parent sweep run)."""

    def __init__(self, uri: str, experiment: str, run_name: str, *, run_id: str | None = None,
                 parent_run_id: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            import mlflow

            self._mlflow = mlflow
            self._client = mlflow.MlflowClient(tracking_uri=uri)
            mlflow.set_tracking_uri(uri)
            exp = self._client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self._client.create_experiment(
                experiment, artifact_location=artifact_location(uri, experiment))
            if run_id is None:
                tags = {"mlflow.runName": run_name}
                if parent_run_id:
                    tags["mlflow.parentRunId"] = parent_run_id
                run_id = self._client.create_run(exp_id, tags=tags, run_name=run_name).info.run_id
            else:
                self._client.update_run(run_id, status="RUNNING")
        except Exception as exc:  # noqa: BLE001 - any MLflow failure is a tracking failure
            raise TrackingError(f"MLflow at {uri}: cannot start run {run_name!r}: {exc}") from exc
        self.uri, self.run_id, self.experiment_id = uri, run_id, exp_id

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise TrackingError(f"MLflow {what} failed for run {self.run_id}: {exc}") from exc

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self._call("log_params", self._client.log_batch, self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_clean(k), float(v), now, int(step)) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        for i in range(0, len(items), 500):
            self._call("log_metrics", self._client.log_batch, self.run_id, metrics=items[i:i + 500])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        fn = self._client.log_artifacts if Path(path).is_dir() else self._client.log_artifact
        self._call("log_artifact", fn, self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call("set_tag", self._client.set_tag, self.run_id, key, str(value))

    def alert(self, message: str, step: int) -> None:
        self._call("alert", self._client.set_tag, self.run_id, f"alert.{step}", message[:5000])

    def register_policy(self, checkpoint_dir: Path, name: str) -> str | None:
        """Log the RLModule checkpoint as the run's ``policy`` artifact and register it as a
        model version of ``name``; returns the version (the artifact is what Serve loads)."""
        self.log_artifact(checkpoint_dir, "policy")
        source = f"runs:/{self.run_id}/policy"
        with contextlib.suppress(Exception):  # it already exists
            self._client.create_registered_model(name)
        version = self._call("register", self._client.create_model_version, name, source, self.run_id)
        return str(version.version)

    def end(self, status: str = "FINISHED") -> None:
        self._call("end", self._client.set_terminated, self.run_id, status)


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts next to a sqlite database (``<db dir>/mlartifacts/<experiment>``), as an absolute
    URI: MLflow's default is ``./mlruns`` relative to wherever the experiment was first created,
    which for a Ray job is a temporary copy of the working directory."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///")).resolve()
    return (db.parent / "mlartifacts" / experiment).as_uri()


def _clean(key: str) -> str:
    """MLflow metric names allow ``/`` ``.`` ``-`` ``_`` and spaces only."""
    return "".join(c if c.isalnum() or c in "/._- " else "_" for c in key)

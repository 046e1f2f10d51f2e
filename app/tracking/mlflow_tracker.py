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
from typing import Any, Protocol, TypedDict

from app.errors import RaytradeError


class TrackingError(RaytradeError):
    """The tracking backend (MLflow) failed."""


class Tracker(Protocol):
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def last_step(self, key: str) -> int | None: ...
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

    def last_step(self, key: str) -> int | None:
        """The largest step at which ``key`` was logged (None: never): a resumed run logs
        only past it, so MLflow never holds two values for one step."""
        history = self._call("get_metric_history", self._client.get_metric_history, self.run_id, _clean(key))
        return max((int(m.step) for m in history), default=None)

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


# --- read side (``raytrade runs``) ------------------------------------------------------------

class RunRecord(TypedDict):
    """One MLflow run as plain data (what ``raytrade runs`` shows; see app/tracking/runs_view.py)."""

    run_id: str
    name: str
    experiment: str
    status: str                 # RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    start_ms: int | None        # epoch milliseconds, UTC
    end_ms: int | None
    parent_id: str | None       # the sweep's run id (tag ``mlflow.parentRunId``)
    params: dict[str, str]
    tags: dict[str, str]        # user tags (``mlflow.*`` system tags dropped)
    metrics: dict[str, float]   # latest value of every metric
    history: dict[str, list[tuple[int, float]]]  # key -> (step, value) by step; filled on request


def store_exists(uri: str) -> bool:
    """False for a sqlite URI whose database file does not exist (reading must not create it)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    if uri.startswith("file:") or "://" not in uri:
        return Path(uri.removeprefix("file://")).is_dir()
    return True  # a server: ask it


def _read_client(uri: str) -> Any:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        import mlflow

        return mlflow.MlflowClient(tracking_uri=uri)
    except Exception as exc:  # noqa: BLE001 - any MLflow failure is a tracking failure
        raise TrackingError(f"MLflow at {uri}: cannot open the store: {exc}") from exc


def list_experiments(uri: str) -> list[str]:
    """Names of the active experiments in the store (empty if the store does not exist)."""
    if not store_exists(uri):
        return []
    client = _read_client(uri)
    try:
        return sorted(e.name for e in client.search_experiments())
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"MLflow at {uri}: cannot list experiments: {exc}") from exc


def read_runs(uri: str, experiment: str | None = None, max_runs: int = 5000) -> list[RunRecord]:
    """The active runs of ``experiment`` (default: every experiment), newest first, without
    metric histories (see :func:`read_histories`). A store that does not exist reads as empty;
    an unknown experiment is a TrackingError that names the ones there are."""
    if not store_exists(uri):
        return []
    client = _read_client(uri)
    try:
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        if experiment is not None:
            ids = [i for i, name in experiments.items() if name == experiment]
            if not ids:
                known = ", ".join(sorted(experiments.values())) or "none"
                raise TrackingError(f"MLflow at {uri}: no experiment {experiment!r} (there are: {known})")
        else:
            ids = list(experiments)
        runs: list[Any] = []
        token = None
        while ids and len(runs) < max_runs:
            page = client.search_runs(ids, max_results=min(max_runs - len(runs), 1000),
                                      order_by=["attributes.start_time DESC"], page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"MLflow at {uri}: cannot search runs: {exc}") from exc
    return [_record(run, experiments.get(run.info.experiment_id, "?")) for run in runs]


def read_histories(uri: str, records: list[RunRecord], keys: list[str]) -> None:
    """Fill ``record["history"]`` with the (step, value) history of each of ``keys`` the run
    has logged, ordered by step (the last value logged at a step wins)."""
    if not records:
        return
    client = _read_client(uri)
    for record in records:
        for key in keys:
            if key not in record["metrics"] or key in record["history"]:
                continue
            try:
                points = client.get_metric_history(record["run_id"], key)
            except Exception as exc:  # noqa: BLE001
                raise TrackingError(f"MLflow at {uri}: cannot read {key!r} of run {record['run_id']}: "
                                    f"{exc}") from exc
            by_step = {int(m.step): float(m.value)
                       for m in sorted(points, key=lambda m: (m.step, m.timestamp))}
            record["history"][key] = sorted(by_step.items())


def _record(run: Any, experiment: str) -> RunRecord:
    info, data = run.info, run.data
    tags = dict(data.tags)
    return RunRecord(
        run_id=info.run_id, name=info.run_name or tags.get("mlflow.runName") or info.run_id[:8],
        experiment=experiment, status=str(info.status), start_ms=info.start_time, end_ms=info.end_time,
        parent_id=tags.get("mlflow.parentRunId"), params=dict(data.params),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        metrics={k: float(v) for k, v in data.metrics.items()}, history={})

"""MLflow behind a small interface: fetch a registered policy (``models:/<name>/<version>``).

Training registers the RLModule directory as the run's ``policy`` artifact and logs the run's
``config/experiment.yaml`` (:meth:`app.tracking.mlflow_tracker.MlflowTracker.register_policy`); this
adapter downloads both. It is Serve's own (``serve`` never imports ``app.training``); MLflow
errors become :class:`~serve.errors.ModelLoadError` with the cause kept.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.errors import ModelLoadError

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")
DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


@dataclass(frozen=True)
class RegisteredPolicy:
    policy_dir: Path
    experiment_yaml: Path | None
    name: str
    version: str
    run_id: str


class PolicyRegistry(Protocol):
    def fetch(self, uri: str, dst: Path) -> RegisteredPolicy: ...


def absolute_tracking_uri(uri: str | None = None) -> str:
    """``uri`` (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``) with a relative sqlite
    path made absolute, so Serve replicas find the same database whatever their working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name/3`` -> ``("name", "3", None)``; ``models:/name@champion`` -> alias."""
    match = MODEL_URI.match(uri)
    if not match:
        raise ModelLoadError(f"{uri!r}: expected models:/<name>/<version|latest> or models:/<name>@<alias>")
    return match["name"], match["version"], match["alias"]


class MlflowRegistry:
    """Registered policies in an MLflow tracking store (default: ``sqlite:///mlruns.db``)."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = absolute_tracking_uri(tracking_uri)

    def fetch(self, uri: str, dst: Path) -> RegisteredPolicy:
        name, version, alias = parse_model_uri(uri)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            import mlflow
            from mlflow import artifacts

            client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
            if alias is not None:
                mv = client.get_model_version_by_alias(name, alias)
            elif version == "latest":
                versions = client.search_model_versions(f"name='{name}'")
                if not versions:
                    raise ModelLoadError(f"{uri}: no versions of {name!r} in {self.tracking_uri}")
                mv = max(versions, key=lambda v: int(v.version))
            else:
                mv = client.get_model_version(name, str(version))
            dst.mkdir(parents=True, exist_ok=True)
            policy = Path(artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(dst / "policy"),
                                                       tracking_uri=self.tracking_uri))
            experiment = None
            if mv.run_id:
                try:
                    experiment = Path(artifacts.download_artifacts(
                        run_id=mv.run_id, artifact_path="config/experiment.yaml", dst_path=str(dst / "config"),
                        tracking_uri=self.tracking_uri))
                except Exception:  # noqa: BLE001 - optional: older runs did not log it
                    experiment = None
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - any MLflow failure is a load failure
            raise ModelLoadError(f"{uri}: cannot fetch it from MLflow at {self.tracking_uri}: {exc}") from exc
        if policy.is_dir() and not (policy / "metadata.json").exists():
            nested = [p.parent for p in policy.rglob("metadata.json")]
            policy = nested[0] if len(nested) == 1 else policy
        return RegisteredPolicy(policy, experiment, name, str(mv.version), str(mv.run_id or ""))

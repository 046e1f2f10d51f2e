"""What to serve: a run directory, a checkpoint path or a registered model -> a policy source.

Accepted references (``raytrade serve REF``, ``serve run serve.app:build_app checkpoint=REF``):

* a run directory (``runs/<name>-<time>``, holding ``experiment.yaml``): its ``checkpoints/<which>``;
* a run name or unique name prefix under ``runs_dir`` (as ``raytrade backtest`` accepts);
* an algorithm checkpoint directory, or the RLModule directory inside one
  (``.../learner_group/learner/rl_module/default_policy``); the run's ``experiment.yaml`` is
  looked up in the directories above it;
* ``models:/<name>/<version|latest>`` or ``models:/<name>@<alias>``: an MLflow registered model
  (:mod:`app.tracking.registry`).

The env a policy was trained on comes from the run's ``experiment.yaml``; a bare checkpoint
without one needs ``env_id`` (and ``env_config`` if not the env's defaults). This module reads
run directories through :mod:`app.runs` (the one layout) and registered models through
:mod:`app.tracking.registry` (the one MLflow adapter).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.errors import ModelLoadError
from app.runs import CHECKPOINTS, POLICY_SUBDIR, RunDir, default_runs_dir
from app.tracking.registry import MlflowRegistry, PolicyRegistry


@dataclass(frozen=True)
class PolicySource:
    """A resolved policy: where its RLModule is, which env it trades, and what to call it."""

    ref: str
    policy_dir: Path
    env_id: str
    env_config: dict[str, Any]
    model_version: str
    training_run: dict[str, Any] | None = None
    index_required: bool | None = None   # None: unknown (bare checkpoint)
    index_symbol: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve(ref: str, *, checkpoint: str = "final", runs_dir: Path | str | None = None, env_id: str | None = None,
            env_config: dict[str, Any] | None = None, tracking_uri: str | None = None,
            download_dir: Path | None = None, registry: PolicyRegistry | None = None) -> PolicySource:
    """Resolve ``ref`` (see the module docstring); raises ModelLoadError with what was tried."""
    if checkpoint not in CHECKPOINTS:
        raise ModelLoadError(f"checkpoint: expected one of {CHECKPOINTS}, got {checkpoint!r}")
    if ref.startswith("models:/"):
        registry = registry or MlflowRegistry(tracking_uri)
        dst = Path(download_dir) if download_dir else Path(tempfile.mkdtemp(prefix="raytrade-serve-"))
        got = registry.fetch(ref, dst)
        digest = policy_digest(got.policy_dir)
        experiment = _read_yaml(got.experiment_yaml) if got.experiment_yaml else None
        run: dict[str, Any] | None = {"registered_model": got.name, "registered_version": got.version,
                                      "mlflow_run_id": got.run_id}
        if experiment and run is not None:
            run |= {"name": experiment.get("name")}
        return _source(ref, got.policy_dir, experiment, f"{got.name}/v{got.version}@{digest}", run, env_id, env_config)
    path = Path(ref).expanduser()
    if not path.exists():
        path = _find_run(ref, Path(runs_dir) if runs_dir is not None else default_runs_dir())
    path = path.resolve()
    if (path / "experiment.yaml").is_file():
        run_dir_obj = RunDir(path)
        policy = run_dir_obj.policy_dir(checkpoint)
        if not policy.is_dir():
            have = [c for c in CHECKPOINTS if run_dir_obj.policy_dir(c).is_dir()]
            raise ModelLoadError(f"{path}: no '{checkpoint}' checkpoint (it has: {have or 'none'})")
        run_dir: Path | None = path
        which = checkpoint
    else:
        if (path / POLICY_SUBDIR).is_dir():
            policy = path / POLICY_SUBDIR
        elif (path / "metadata.json").is_file() and (path / "class_and_ctor_args.pkl").is_file():
            policy = path
        else:
            raise ModelLoadError(f"{path}: not a run directory (experiment.yaml), an algorithm checkpoint "
                                 f"({POLICY_SUBDIR}) or an RLModule directory (metadata.json)")
        run_dir = next((p for p in policy.parents[:8] if (p / "experiment.yaml").is_file()), None)
        which = policy.parents[len(POLICY_SUBDIR.parts) - 1].name if policy.name == POLICY_SUBDIR.name else "?"
    digest = policy_digest(policy)
    experiment = run = None
    if run_dir is not None:
        experiment = _read_yaml(run_dir / "experiment.yaml")
        state = _read_json(run_dir / "state.json")
        tracking = experiment.get("tracking") or {}
        run = {"name": run_dir.name, "path": str(run_dir), "checkpoint": which,
               "mlflow_run_id": state.get("mlflow_run_id"), "iteration": state.get("iteration"),
               "env_steps": state.get("env_steps"), "status": state.get("status"),
               "registered_model": tracking.get("registered_model") or experiment.get("name")}
        version = f"{run_dir.name}/{which}@{digest}"
    else:
        version = f"checkpoint@{digest}"
    return _source(ref, policy, experiment, version, run, env_id, env_config)


def _source(ref: str, policy: Path, experiment: dict | None, version: str, run: dict | None,
            env_id: str | None, env_config: dict | None) -> PolicySource:
    index_required = index_symbol = None
    if experiment is not None:
        env = experiment.get("env") or {}
        if env_id is not None and env_id != env.get("id"):
            raise ModelLoadError(f"env_id {env_id!r} contradicts the run's experiment.yaml ({env.get('id')!r})")
        env_id = env.get("id")
        env_config = {**(env.get("config") or {}), **(env_config or {})}
        data = experiment.get("data")
        index = (data or {}).get("index")
        index_symbol = (index or {}).get("symbol")
        index_required = data is None or index is not None  # synthetic markets come with an index
    if not env_id:
        raise ModelLoadError(f"{ref}: no experiment.yaml found with the checkpoint, so the env it was trained "
                             "on is unknown; pass env_id (and env_config)")
    return PolicySource(ref, policy, str(env_id), dict(env_config or {}), version, run, index_required, index_symbol)


def _find_run(ref: str, runs_dir: Path) -> Path:
    matches = sorted(p for p in runs_dir.glob(f"{ref}*") if (p / "experiment.yaml").is_file())
    if len(matches) != 1:
        what = "no" if not matches else f"{len(matches)}"
        raise ModelLoadError(f"{ref!r}: not a path, and {what} runs under {runs_dir.resolve()} match it")
    return matches[0]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{path}: cannot read it: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: expected a mapping")
    return raw


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def policy_digest(policy_dir: Path) -> str:
    """First 12 hex digits of the SHA-256 of the module's files (the weights identify a version)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(policy_dir).rglob("*") if p.is_file()):
        h.update(f.relative_to(policy_dir).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def load_module(policy_dir: Path) -> Any:
    """The RLModule in ``policy_dir`` (no Ray cluster needed), in eval mode."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(str(Path(policy_dir).resolve()))
    except Exception as exc:  # noqa: BLE001 - pickles, missing classes, bad files
        raise ModelLoadError(f"{policy_dir}: cannot load the RLModule: {exc}") from exc
    module.eval()  # type: ignore[attr-defined]  # a TorchRLModule is an nn.Module
    return module

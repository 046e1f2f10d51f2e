"""What to serve: run directories, run names, checkpoint and RLModule directories, registered
models (a fake registry and a real MLflow sqlite store), and clear errors for everything else."""

from __future__ import annotations

import shutil

import pytest
import yaml

from app.policy.loader import POLICY_SUBDIR, resolve
from app.tracking.registry import RegisteredPolicy, parse_model_uri
from serve.errors import ModelLoadError, ServeError
from serve.policy_service import PolicyService
from tests.unit.serve.helpers import ENV_ID, save_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mlp, env_config):
    return save_run(mlp, tmp_path_factory.mktemp("runs"), env_config)


def test_a_run_directory(run_dir):
    src = resolve(str(run_dir))
    assert src.env_id == ENV_ID and src.env_config["window_bars"] == 10
    assert src.policy_dir == run_dir / "checkpoints" / "final" / POLICY_SUBDIR
    assert src.model_version.startswith(f"{run_dir.name}/final@") and len(src.model_version.split("@")[1]) == 12
    assert src.training_run["mlflow_run_id"] == "abc" and src.training_run["iteration"] == 3
    assert src.index_required is True  # a synthetic market comes with an index
    service = PolicyService.load(str(run_dir))
    assert service.info().training_run["name"] == run_dir.name and service.health_check() > 0


def test_a_run_name_prefix_and_checkpoint_paths(run_dir):
    assert resolve("unit", runs_dir=run_dir.parent).policy_dir == resolve(str(run_dir)).policy_dir
    for path in (run_dir / "checkpoints" / "final", run_dir / "checkpoints" / "final" / POLICY_SUBDIR):
        src = resolve(str(path))
        assert src.env_id == ENV_ID and src.training_run["checkpoint"] == "final"
        assert src.model_version == resolve(str(run_dir)).model_version


def test_bare_checkpoints_need_the_env(run_dir, tmp_path):
    bare = tmp_path / "policy"
    shutil.copytree(run_dir / "checkpoints" / "final" / POLICY_SUBDIR, bare)
    with pytest.raises(ModelLoadError, match="pass env_id"):
        resolve(str(bare))
    src = resolve(str(bare), env_id=ENV_ID, env_config={"window_bars": 10})
    assert src.model_version.startswith("checkpoint@") and src.index_required is None
    with pytest.raises(ServeError, match="window_bars|observes"):  # the wrong window: caught at load
        PolicyService.load(str(bare), env_id=ENV_ID, env_config={"window_bars": 20})


def test_clear_errors(run_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"no 'best' checkpoint \(it has: \['final'\]\)"):
        resolve(str(run_dir), checkpoint="best")
    with pytest.raises(ModelLoadError, match="no runs under"):
        resolve("nothing-like-it", runs_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="not a run directory"):
        resolve(str(tmp_path))
    with pytest.raises(ModelLoadError, match="contradicts"):
        resolve(str(run_dir), env_id="raytrade/StockSwing-v0")
    with pytest.raises(ModelLoadError, match="expected models"):
        parse_model_uri("models:/only-a-name")
    assert parse_model_uri("models:/demo/3") == ("demo", "3", None)
    assert parse_model_uri("models:/demo@champion") == ("demo", None, "champion")


class FakeRegistry:
    def __init__(self, run_dir) -> None:
        self.run_dir = run_dir

    def fetch(self, uri, dst):
        assert uri == "models:/unit/latest"
        return RegisteredPolicy(self.run_dir / "checkpoints" / "final" / POLICY_SUBDIR,
                                self.run_dir / "experiment.yaml", "unit", "7", "r1")


def test_a_registered_model_through_the_registry_interface(run_dir, tmp_path):
    src = resolve("models:/unit/latest", registry=FakeRegistry(run_dir), download_dir=tmp_path)
    assert src.model_version.startswith("unit/v7@") and src.env_id == ENV_ID
    assert src.training_run["registered_version"] == "7" and src.training_run["name"] == "unit"


def test_a_registered_model_in_a_real_mlflow_store(run_dir, tmp_path, monkeypatch):
    """What training does (log the policy dir and experiment.yaml, register a version), then Serve."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("unit", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(run_dir / "checkpoints" / "final" / POLICY_SUBDIR), "policy")
    client.log_artifact(run.info.run_id, str(run_dir / "experiment.yaml"), "config")
    client.create_registered_model("unit-policy")
    client.create_model_version("unit-policy", f"runs:/{run.info.run_id}/policy", run.info.run_id)
    for ref in ("models:/unit-policy/1", "models:/unit-policy/latest"):
        src = resolve(ref, tracking_uri=uri, download_dir=tmp_path / ref[-1])
        assert src.model_version.split("@")[0] == "unit-policy/v1"
        assert src.model_version.split("@")[1] == resolve(str(run_dir)).model_version.split("@")[1]
        assert src.env_id == ENV_ID and src.training_run["mlflow_run_id"] == run.info.run_id
    assert PolicyService.load("models:/unit-policy/1", tracking_uri=uri).health_check() > 0
    with pytest.raises(ModelLoadError, match="cannot fetch"):
        resolve("models:/unit-policy/9", tracking_uri=uri)
    assert yaml.safe_load((run_dir / "experiment.yaml").read_text())["env"]["id"] == ENV_ID


def test_one_runs_dir_for_every_reader_and_writer(run_dir, monkeypatch):
    """RAYTRADE_RUNS_DIR is where runs are created (the config's default), found by name
    (RunDir.find) and resolved for serving (policy loader): one layout, one directory."""
    from app.config.schema import TrackingConfig
    from app.runs import RunDir, default_runs_dir

    monkeypatch.setenv("RAYTRADE_RUNS_DIR", str(run_dir.parent))
    assert default_runs_dir() == run_dir.parent
    assert TrackingConfig().runs_dir == run_dir.parent
    assert RunDir.find("unit").path == run_dir.resolve()
    assert resolve("unit").policy_dir == run_dir.resolve() / "checkpoints" / "final" / POLICY_SUBDIR
    monkeypatch.delenv("RAYTRADE_RUNS_DIR")
    assert default_runs_dir().as_posix() == "runs"

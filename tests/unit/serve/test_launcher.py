"""``raytrade serve`` via :mod:`serve.launcher`: options built and checked before anything
starts, the run looked up in the one runs directory, and the start/stop order (Serve always
shut down, Ray only if the launcher started it). Ray itself is replaced by a recording fake."""

from __future__ import annotations

import os
import sys
import threading
import types

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.errors import ConfigError
from serve import launcher
from serve.launcher import Launch, deployment_options
from tests.unit.serve.helpers import API_KEY, save_run


@pytest.fixture
def run_path(tmp_path, mlp, env_config):
    return save_run(mlp, tmp_path / "runs", env_config)


def test_paths_become_absolute_and_names_stay_names(tmp_path, monkeypatch, run_path):
    monkeypatch.chdir(tmp_path)
    assert deployment_options(Launch(ref=run_path.name)).ref == run_path.name  # looked up by name
    assert deployment_options(Launch(ref=f"runs/{run_path.name}")).ref == str(run_path.resolve())
    assert deployment_options(Launch(ref="models:/m/1")).ref == "models:/m/1"


def test_the_runs_directory_is_the_one_every_command_uses(tmp_path, monkeypatch, run_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYTRADE_RUNS_DIR", str(run_path.parent))
    options = deployment_options(Launch(ref="unit"))
    assert options.runs_dir == str(run_path.parent.resolve())
    assert f"{run_path.name}/final@" in launcher.describe_policy(options)  # found by name prefix


@pytest.mark.parametrize(("launch", "message"), [
    (Launch(ref="x", env_config_json="{nope"), "--env-config: not valid JSON"),
    (Launch(ref="x", env_config_json="[1]"), "expected a JSON object"),
    (Launch(ref="x", knobs={"max_batch_size": 0}), "max_batch_size"),
    (Launch(ref="x", knobs={"replicas": 1, "bogus": 2}), "bogus"),
])
def test_bad_options_are_config_errors(launch, message):
    with pytest.raises(ConfigError, match=message):
        deployment_options(launch)


def test_direct_ingress_is_configured_before_ray_and_not_with_a_remote_cluster(monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))
    with pytest.raises(ConfigError, match="--direct-port"):
        launcher.configure_direct_ingress(Launch(ref="x", direct_port=9100, ray_address="auto"))
    launcher.configure_direct_ingress(Launch(ref="x", direct_port=9100, knobs={"replicas": 2}))
    assert os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"


@pytest.mark.parametrize(("host", "warns"), [("127.0.0.1", False), ("::1", False), ("0.0.0.0", True)])
def test_binding_beyond_loopback_warns(host, warns):
    assert (launcher.exposure_warning(host) is not None) == warns


class FakeRay(types.SimpleNamespace):
    """Records the calls the launcher makes to ``ray`` and ``ray.serve``."""

    def __init__(self, initialized: bool = False, fail_run: bool = False) -> None:
        calls: list[str] = []
        serve = types.SimpleNamespace(
            start=lambda **kw: calls.append("serve.start"),
            run=lambda *a, **kw: calls.append("serve.run") if not fail_run else (_ for _ in ()).throw(
                RuntimeError("deploy failed")),
            delete=lambda name, **kw: calls.append("serve.delete"),
            shutdown=lambda: calls.append("serve.shutdown"))
        super().__init__(calls=calls, serve=serve, is_initialized=lambda: initialized,
                         init=lambda **kw: calls.append("ray.init"), shutdown=lambda: calls.append("ray.shutdown"))


def _run(monkeypatch, fake: FakeRay, launch: Launch) -> None:
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr("serve.deployment.build", lambda options, verifier: "app")
    stop = threading.Event()
    stop.set()
    launcher.run_until_stopped(launch, deployment_options(launch), None, lambda text: None, stop)


@pytest.mark.parametrize(("initialized", "address", "expected"), [
    (False, None, ["ray.init", "serve.start", "serve.run", "serve.delete", "serve.shutdown", "ray.shutdown"]),
    (True, None, ["serve.start", "serve.run", "serve.delete", "serve.shutdown"]),  # someone else's Ray
    (False, "ray://head:10001", ["ray.init", "serve.start", "serve.run", "serve.delete", "serve.shutdown"]),
])
def test_start_and_stop_only_what_it_started(monkeypatch, initialized, address, expected):
    fake = FakeRay(initialized=initialized)
    _run(monkeypatch, fake, Launch(ref="models:/m/1", ray_address=address))
    assert fake.calls == expected


def test_a_failed_deploy_still_shuts_down(monkeypatch):
    fake = FakeRay(fail_run=True)
    with pytest.raises(ConfigError, match="could not start the app: RuntimeError: deploy failed"):
        _run(monkeypatch, fake, Launch(ref="models:/m/1"))
    assert fake.calls[-2:] == ["serve.shutdown", "ray.shutdown"] and "serve.delete" not in fake.calls


def test_the_cli_only_parses_options_into_a_launch(monkeypatch, run_path):
    monkeypatch.setenv("RAYTRADE_API_KEY", API_KEY)
    seen = {}
    monkeypatch.setattr(launcher, "run_until_stopped",
                        lambda launch, options, verifier, echo, stop=None: seen.update(launch=launch, options=options))
    out = CliRunner().invoke(cli, ["serve", str(run_path), "--port", "8123", "--batch-wait-ms", "5",
                                   "--max-body-mb", "1", "--replicas", "2", "--checkpoint", "final"])
    assert out.exit_code == 0, out.output
    assert f"{run_path.name}/final@" in out.output
    launch, options = seen["launch"], seen["options"]
    assert launch.port == 8123 and options.replicas == 2 and options.ref == str(run_path.resolve())
    assert options.batch_wait_timeout_s == 0.005 and options.max_body_bytes == 2**20


def _cli_error(monkeypatch, args: list[str]) -> str:
    """Run the real entry point (its error handling included): exit code 2 and ONE line."""
    from app.cli import main

    monkeypatch.setenv("RAYTRADE_API_KEY", API_KEY)
    monkeypatch.setattr(launcher, "run_until_stopped", lambda *a, **kw: pytest.fail("must fail before Ray starts"))
    monkeypatch.setattr(sys, "argv", ["raytrade", "serve", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    return ""


def test_checkpoint_problems_and_busy_ports_are_one_line_before_ray(monkeypatch, tmp_path, run_path, capsys):
    import socket

    module_files = [p for p in run_path.rglob("*") if p.is_file() and p.suffix in (".pkl", ".pt")]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cases = [[str(tmp_path / "nowhere" / "run")], [str(run_path), "--port", str(busy.getsockname()[1])]]
        for args in cases:
            _cli_error(monkeypatch, args)
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
        assert "already in use" in err
    state = max(module_files, key=lambda p: p.stat().st_size)
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a truncated checkpoint
    _cli_error(monkeypatch, [str(run_path), "--port", "0"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "cannot load" in err and "truncated" in err, err


def test_sigint_stops_the_wait_even_when_started_with_it_ignored():
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a script gives a process
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        done = threading.Event()
        threading.Timer(5.0, lambda: done.is_set() or os.kill(os.getpid(), signal.SIGTERM)).start()
        launcher.wait_for_stop()
        done.set()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

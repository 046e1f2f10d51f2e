"""``ray job submit --working-dir . -- raytrade train CONFIG`` on a local two-node Ray cluster.

The test starts its own cluster, not the session's ``ray_session`` driver:

* a head node: ``ray start --head`` with the dashboard (the Jobs API lives there), 1 CPU;
* a second node on the same machine with ``--resources '{"rollout": 1}'``, 1 CPU.

Each node has its own ``--temp-dir`` (two raylets cannot share one session directory) and every
port we choose is a free ephemeral port, outside 10002-19999 (Ray's worker-port range). Nothing
is fixed, so other Ray instances on the machine are left alone.

Auth: token mode with a token made for this test. ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH=<tmp>/auth_token`` are set in the environment of every ``ray`` command we
run; the nodes pass it on to the job's driver and its workers. ``~/.ray/auth_token`` is never read
or written. The test also checks that the dashboard refuses a request without the token.

Stopping: never the ray CLI's stop command (it kills every Ray process on the machine). Each ``ray start`` runs in
a new session (``setsid``), so every daemon it starts (GCS, raylet, dashboard, agents) and every
worker the raylet forks carries that session id; Linux does not reuse a pid while it is still a
session id, so that set is exactly ours. At teardown we take those processes, their descendants
(the job driver runs in a session of its own, below the job supervisor) and any process whose
command line names our temp root, and send SIGTERM, then SIGKILL to what is left.

Placement check: Ray's state API remembers dead actors with the node they ran on. After the job
we list the ``SingleAgentEnvRunner`` actors of the job (``ray list actors --detail``) and require
each to have run on the node that carries the ``rollout`` resource. This needs no change to the
training code and cannot be fooled by logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: ray, raytrade
RAY = BIN / "ray"
CONFIG = "tune_configs/smoke_rollout.yaml"
#: what the job does not need; .gitignore'd paths are left out by Ray anyway, this makes it explicit
EXCLUDES = [".venv", ".git", "runs", "store", "mlruns", "mlruns.db", "data/sample", "*.egg-info",
            ".pytest_cache", ".ruff_cache", ".hypothesis", "__pycache__", "out"]
START_TIMEOUT_S = 90
JOB_TIMEOUT_S = 150


def _free_port() -> int:
    """A free TCP port outside Ray's worker-port range 10002-19999."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port
    raise RuntimeError("no free port outside 10002-19999")


# ---- processes, read from /proc (psutil is not a dependency) ---------------------------------


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, command line) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] == "Z":  # a zombie is already dead
            continue
        table[int(entry)] = (int(fields[1]), int(fields[3]), cmdline)
    return table


def _our_processes(session_ids: set[int], marker: str) -> set[int]:
    table = _proc_table()
    roots = {pid for pid, (_, sid, cmd) in table.items() if sid in session_ids or marker in cmd}
    children = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    ours, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid not in ours:
            ours.add(pid)
            stack.extend(children[pid])
    me, ancestors = os.getpid(), set()
    while me > 1 and me in table:  # never this test process or what runs it
        ancestors.add(me)
        me = table[me][0]
    return ours - ancestors - {os.getpid()}


def _kill(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop_processes(session_ids: set[int], marker: str) -> set[int]:
    """SIGTERM our processes, wait up to 5 s, SIGKILL the rest; repeat while new ones show up.

    (The raylets and the GCS rarely exit on SIGTERM within seconds; the ray CLI's stop command waits 16 s. The
    cluster is thrown away, so a short grace is enough.)"""
    killed: set[int] = set()
    for _ in range(3):
        pids = _our_processes(session_ids, marker)
        if not pids:
            break
        killed |= pids
        _kill(pids, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (pids & set(_proc_table())):
            time.sleep(0.2)
        _kill(pids & set(_proc_table()), signal.SIGKILL)
        time.sleep(0.5)
    return killed


# ---- the cluster -------------------------------------------------------------------------------


class LocalCluster:
    """A head node with the dashboard plus a ``rollout`` node, both started and stopped by us."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token_path = root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN")}
        self.env = env | {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `raytrade` for the job's entrypoint
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
        }
        self.session_ids: set[int] = set()
        self.dashboard = ""

    def _ray_start(self, args: list[str]) -> None:
        proc = subprocess.Popen([str(RAY), "start", *args, "--disable-usage-stats", "--log-color", "false"],
                                env=self.env, cwd=self.root, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.session_ids.add(proc.pid)  # setsid: pid == session id of everything it starts
        try:
            out, _ = proc.communicate(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"ray start {args[:2]} timed out:\n{out[-3000:]}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {args[:2]} failed ({proc.returncode}):\n{out[-3000:]}")

    def start(self, attempt: int) -> None:
        """Head, then the rollout node; fresh ports and temp dirs on each attempt."""
        head_tmp, dashboard_port = self.root / f"head{attempt}", _free_port()
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        self._ray_start(["--head", "--temp-dir", str(head_tmp), "--port", str(_free_port()),
                         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                         "--dashboard-port", str(dashboard_port),
                         "--dashboard-agent-listen-port", str(_free_port()),
                         "--ray-client-server-port", str(_free_port()),
                         "--num-cpus", "1", "--object-store-memory", str(200 * 1024**2)])
        gcs_address = (head_tmp / "ray_current_cluster").read_text().strip()
        self._ray_start(["--address", gcs_address, "--temp-dir", str(self.root / f"rollout{attempt}"),
                         "--dashboard-agent-listen-port", str(_free_port()),
                         "--num-cpus", "1", "--resources", json.dumps({"rollout": 1}),
                         "--object-store-memory", str(200 * 1024**2)])
        self._wait_for_dashboard()

    def _wait_for_dashboard(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=5)
                return
            except urllib.error.HTTPError:
                return  # it answers (401 without the token): up
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard at {self.dashboard} not up: {exc}") from exc
                time.sleep(0.5)

    def ray(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env=self.env, cwd=cwd or self.root, timeout=timeout,
                              capture_output=True, text=True)

    def list_json(self, kind: str, *filters: str, detail: bool = False) -> list[dict]:
        args = ["list", kind, "--address", self.dashboard, "--format", "json", "--limit", "1000"]
        for f in filters:
            args += ["--filter", f]
        out = self.ray(*args, *(["--detail"] if detail else []))
        assert out.returncode == 0, f"ray list {kind} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def wait_for_nodes(self, n: int, timeout_s: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = [x for x in self.list_json("nodes") if x["state"] == "ALIVE"]
            if len(nodes) >= n or time.monotonic() > deadline:
                return nodes
            time.sleep(1)

    def job_logs(self, submission_id: str) -> str:
        out = self.ray("job", "logs", "--address", self.dashboard, submission_id)
        return (out.stdout + out.stderr)[-6000:]

    def stop(self) -> set[int]:
        return _stop_processes(self.session_ids, str(self.root))


@pytest.fixture
def cluster():
    if not RAY.exists():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    # a short path: Ray's unix sockets live under the temp dir (108-byte limit)
    root = Path(tempfile.mkdtemp(prefix="rt-cluster-", dir="/tmp"))
    local = LocalCluster(root)
    try:
        for attempt in (1, 2):  # a port picked as free can be taken by then: retry once
            try:
                local.start(attempt)
                break
            except RuntimeError:
                local.stop()
                if attempt == 2:
                    raise
        yield local
    finally:
        local.stop()
        left = _our_processes(local.session_ids, str(root))
        assert not left, f"Ray processes left running: {sorted(left)}"
        # RAYTRADE_KEEP_CLUSTER_TMP=1 keeps the nodes' logs for a look
        if os.environ.get("RAYTRADE_KEEP_CLUSTER_TMP") != "1":
            shutil.rmtree(root, ignore_errors=True)


def test_job_submit_trains_with_env_runners_on_the_rollout_node(cluster: LocalCluster):
    # token auth is on: the dashboard refuses a request without the token
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster.dashboard}/api/jobs/", timeout=10)
    assert refused.value.code in (401, 403)

    nodes = cluster.wait_for_nodes(2)
    assert len(nodes) == 2, nodes
    rollout = [x for x in nodes if "rollout" in x["resources_total"]]
    assert len(rollout) == 1 and not rollout[0]["is_head_node"], nodes
    rollout_node_id = rollout[0]["node_id"]

    # the command the README shows, run from the repository root
    out_dir = cluster.root / "out"
    submission_id = f"raytrade-smoke-{secrets.token_hex(4)}"
    t0 = time.monotonic()
    try:
        job = cluster.ray(
            "job", "submit", "--address", cluster.dashboard, "--submission-id", submission_id,
            "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
            "--log-color", "false", "--", "raytrade", "train", CONFIG,
            "--set", f"tracking.runs_dir={out_dir / 'runs'}",
            "--set", f"tracking.mlflow_uri=sqlite:///{out_dir / 'mlruns.db'}",
            timeout=JOB_TIMEOUT_S, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"job not done in {JOB_TIMEOUT_S} s; its log:\n{cluster.job_logs(submission_id)}")
    print(f"job took {time.monotonic() - t0:.1f} s")
    [info] = cluster.list_json("jobs", f"submission_id={submission_id}")
    assert info["status"] == "SUCCEEDED", (
        f"job {info['status']}: {info.get('message')}\n{job.stdout[-6000:]}\n{job.stderr[-3000:]}")
    assert job.returncode == 0

    # the env runner(s) of this job ran on the rollout node, and asked for the rollout resource
    runners = cluster.list_json("actors", "class_name=SingleAgentEnvRunner", f"job_id={info['job_id']}",
                                detail=True)
    assert runners, "no SingleAgentEnvRunner actor was created: num_env_runners must be >= 1"
    for actor in runners:
        assert actor["node_id"] == rollout_node_id, (actor["node_id"], rollout_node_id)
        assert actor["required_resources"].get("rollout") == 1.0, actor["required_resources"]

    # the run finished, wrote its final policy and was tracked in MLflow
    [run_dir] = list((out_dir / "runs").glob("smoke_rollout-*"))
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "finished" and state["iteration"] == 2, state
    assert (run_dir / "checkpoints" / "final").is_dir()
    from mlflow.tracking import MlflowClient

    mlflow_run = MlflowClient(f"sqlite:///{out_dir / 'mlruns.db'}").get_run(state["mlflow_run_id"])
    assert mlflow_run.info.status == "FINISHED"

"""Ray Serve end to end on the session's 2-CPU Ray: start the deployment on 127.0.0.1 (a free
port), call every route, the auth, validation and work-budget failures (JSON, through the
proxy), a burst beyond the queue limit (503s, quickly), then shut Serve down cleanly."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from envs import synthetic
from tests.unit.serve.helpers import API_KEY, act_body, build_module, save_run

KEY = {"X-API-Key": API_KEY, "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30.0) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), time.perf_counter() - t0
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from serve.auth import ApiKeyVerifier
    from serve.deployment import DeploymentOptions, build, http_options

    g = synthetic.generate("mean_reversion", seed=0, n_symbols=2, n_bars=320)
    config = {"market": g.market, "index": g.index, "window_bars": 10, "episode_bars": 32}
    run = save_run(build_module(config, "mlp"), tmp_path_factory.mktemp("runs"), config, name="itest")
    port = free_port()
    options = DeploymentOptions(ref=str(run), max_batch_size=1, max_ongoing_requests=1, max_queued_requests=1,
                                max_body_bytes=256 * 1024, request_timeout_s=20.0, health_check_period_s=2.0,
                                max_request_bars=1000)
    t0 = time.perf_counter()
    serve.start(http_options=http_options("127.0.0.1", port, options),
                logging_config={"enable_access_log": False, "log_level": "WARNING"})
    serve.run(build(options, ApiKeyVerifier.from_key(API_KEY)), name="raytrade-itest", route_prefix="/")
    started_s = time.perf_counter() - t0
    yield port, g, run, started_s
    serve.shutdown()


def test_every_route_auth_and_validation(served):
    port, g, run, started_s = served
    assert started_s < 60
    status, body, _ = call(port, "GET", "/v1/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert call(port, "GET", "/v1/models")[0] == 401
    status, body, _ = call(port, "GET", "/v1/models", headers=KEY)
    info = json.loads(body)
    assert status == 200 and info["model_version"].startswith(f"{run.name}/final@") and info["recurrent"] is False
    act = json.dumps(act_body(g, "SYN0", 200)).encode()
    assert call(port, "POST", "/v1/act", act, {"content-type": "application/json"})[0] == 401
    status, body, _ = call(port, "POST", "/v1/act", act, KEY)
    decision = json.loads(body)["decisions"][0]
    assert status == 200 and decision["mode"] == "stateless" and decision["symbols"] == ["SYN0"]
    nan = act.replace(b'"close": [', b'"close": [NaN, ', 1)
    status, body, _ = call(port, "POST", "/v1/act", nan, KEY)
    assert status == 422 and "finite" in body.decode()
    short = act_body(g, "SYN0", 5)
    status, body, _ = call(port, "POST", "/v1/act", json.dumps(short).encode(), KEY)
    assert status == 422 and "needs 10" in body.decode()
    status, body, _ = call(port, "POST", "/v1/act", b"[" + b" " * 300_000 + b"]", KEY)
    assert status == 413
    wide = act_body(g, "SYN1", 620)  # 301 bars per symbol, 4 symbols (+ the index): over 1000 bars
    wide["symbols"] = [dict(wide["symbols"][0], symbol=f"S{i}") for i in range(4)]
    status, body, _ = call(port, "POST", "/v1/act", json.dumps(wide).encode(), KEY)
    assert status == 413 and "the limit is 1000 per request" in json.loads(body)["detail"][0]["msg"]
    coerced = json.loads(act)
    coerced["symbols"][0]["position"]["owned"] = "yes"
    status, body, _ = call(port, "POST", "/v1/act", json.dumps(coerced).encode(), KEY)
    assert status == 422 and "valid boolean" in body.decode()
    assert call(port, "GET", "/docs")[0] == 401 and call(port, "GET", "/docs", headers=KEY)[0] == 200
    spec = json.loads(call(port, "GET", "/openapi.json", headers=KEY)[1])
    assert "/v1/act" in spec["paths"]


def test_a_burst_beyond_the_queue_gets_quick_503s(served):
    port, g, _, _ = served
    body = json.dumps(act_body(g, "SYN1", 620)).encode()  # 301 bars per request
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(40)

    def client() -> None:
        barrier.wait()
        status, _, seconds = call(port, "POST", "/v1/act", body, KEY)
        results.append((status, seconds))

    threads = [threading.Thread(target=client) for _ in range(40)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    statuses = [s for s, _ in results]
    assert len(results) == 40 and set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 10 and statuses.count(200) >= 1, statuses
    assert max(sec for s, sec in results if s == 503) < 5.0 and elapsed < 30
    assert call(port, "GET", "/v1/health")[0] == 200  # still healthy afterwards


def test_sessions_stick_to_one_of_two_replicas(served, tmp_path):
    """Recurrent state lives in a replica: with 2 replicas, x-session-id routes each session to
    one of them (consistent hashing), so every session counts its steps without a reset."""
    from ray import serve

    from serve.auth import ApiKeyVerifier
    from serve.deployment import DeploymentOptions, build

    port, g, _, _ = served
    config = {"market": g.market, "index": g.index, "window_bars": 10, "episode_bars": 32}
    run = save_run(build_module(config, "gru"), tmp_path, config, name="itest_gru")
    serve.delete("raytrade-itest")  # a new app: the proxy picks a request router when an app appears
    serve.run(build(DeploymentOptions(ref=str(run), replicas=2, num_cpus=0.5), ApiKeyVerifier.from_key(API_KEY)),
              name="raytrade-sticky", route_prefix="/")
    for session in ("alpha", "beta", "gamma", "delta"):
        steps = []
        for row in range(100, 108):
            body = json.dumps(act_body(g, "SYN0", row)).encode()
            status, out, _ = call(port, "POST", "/v1/act", body, KEY | {"x-session-id": session})
            assert status == 200, out
            steps.append(json.loads(out)["decisions"][0]["session_step"])
        assert steps == list(range(1, 9)), (session, steps)


def test_shutdown_is_clean(served):
    from ray import serve

    port = served[0]
    for name in serve.status().applications:
        serve.delete(name)
    deadline = time.time() + 20
    while time.time() < deadline and call(port, "GET", "/v1/health", timeout=5)[0] == 200:
        time.sleep(0.2)
    assert call(port, "GET", "/v1/health", timeout=5)[0] == 404  # the proxy is up, the app is gone
    serve.shutdown()
    with pytest.raises(OSError):
        call(port, "GET", "/v1/health", timeout=5)

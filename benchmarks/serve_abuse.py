"""Serve under abuse (issue 13): the scenarios of the independent test, reproduced and measured.

Run through ``benchmarks/bench_serve.py --abuse`` (or this file directly). Loopback only.

Plain server (the same app as Serve's replicas, :class:`serve.api.DirectBackend`, hardened
uvicorn protocol; a subprocess so its memory is its own):

1. heavy requests: the issue's body (30 symbols x 1,080 bars, ``replay_bars: 1024``) must be a
   fast 413; then 32 clients at once sending the heaviest body the budget admits (4 symbols x
   1,024 replayed bars): replica RSS peak and settled, ``/v1/health`` latency during the burst;
2. idle connections: 2,000 silent sockets against a cap of 256, then authenticated clients;
3. sessions: key ``bob`` opens more sessions than its quota; ``alice``'s session survives;
4. mutation fuzzing from a valid body: the count of 5xx answers (must be 0).

Ray Serve (``raytrade serve`` in a subprocess, proxy + direct ingress, 1 replica):

5. overload at 64 clients on each path: 503 share, admitted p50/p99, the replica's RSS;
6. SIGTERM with requests in flight: how many of them complete (drain), exit code and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALICE, BOB = "alice-key-" + "a" * 24, "bob-key-" + "b" * 26
KEYS = f"alice:{ALICE},bob:{BOB}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def series(n_bars: int) -> tuple[dict, dict]:
    from envs import synthetic

    g = synthetic.generate("mean_reversion", seed=11, n_symbols=1, n_bars=n_bars)
    ts, ohlcv = g.market.series("SYN0")

    def cols(t: np.ndarray, o: np.ndarray, volume: bool) -> dict:
        out = {"ts_ns": t.tolist(), "open": o[:, 0].tolist(), "high": o[:, 1].tolist(), "low": o[:, 2].tolist(),
               "close": o[:, 3].tolist()}
        return out | ({"volume": o[:, 4].tolist()} if volume else {})

    return cols(ts, ohlcv, True), cols(g.index.ts_ns, g.index.ohlcv, False)


def body(n_symbols: int, n_bars: int, replay: int | None = None, session: str | None = None, upto: int | None = None
         ) -> dict:
    bars, index = series(n_bars)
    if upto is not None:
        bars, index = ({k: v[:upto] for k, v in b.items()} for b in (bars, index))
    out: dict[str, Any] = {"symbols": [{"symbol": f"S{i}", "bars": bars, "position": {"owned": False, "bars_held": 0}}
                                       for i in range(n_symbols)], "index": index}
    if replay:
        out["replay_bars"] = replay
    if session:
        out["session_id"] = session
    return out


def server_main(ref: str, port: int) -> None:
    """Child process: the plain server with the production limits (a session quota of 200)."""
    import torch
    import uvicorn

    torch.set_num_threads(1)
    from serve.api import ApiSettings, DirectBackend, create_api
    from serve.auth import ApiKeyVerifier
    from serve.connections import ConnectionLimits, hardened_protocol
    from serve.policy_service import PolicyService, ServiceSettings

    service = PolicyService.load(ref, ServiceSettings(max_sessions=200))
    app = create_api(DirectBackend(service), ApiSettings(ApiKeyVerifier.from_keys({"alice": ALICE, "bob": BOB}),
                                                         max_in_flight=96))
    limits = ConnectionLimits(max_connections=256, header_timeout_s=5.0)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="critical",
                http=hardened_protocol(limits), timeout_keep_alive=5)


def wait_healthy(port: int, timeout_s: float = 180.0) -> None:
    import http.client

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/health")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"no healthy server on {port}")


async def _post(session: Any, port: int, data: bytes, key: str = ALICE) -> tuple[int, float, bytes]:
    t0 = time.perf_counter()
    async with session.post(f"http://127.0.0.1:{port}/v1/act", data=data,
                            headers={"X-API-Key": key, "content-type": "application/json"}) as r:
        out = await r.read()
        return r.status, time.perf_counter() - t0, out


class Sampler:
    """Samples a process's RSS every 50 ms (a thread) and /v1/health latency every 50 ms from a
    separate process (a probe in this one would share the GIL with the load it measures)."""

    def __init__(self, pid: int | None, port: int | None) -> None:
        self.pid, self.port, self.rss, self.health = pid, port, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._probe: subprocess.Popen | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pid:
                self.rss.append(rss_mb(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        if self.port:
            self._probe = subprocess.Popen([sys.executable, __file__, "--probe", str(self.port)],
                                           stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._probe is not None:
            self._probe.terminate()
            out, _ = self._probe.communicate(30)
            self.health = [(int(a), float(b)) for a, b in (ln.split() for ln in out.splitlines() if ln.strip())]

    def summary(self) -> dict:
        lat = [ms for _, ms in self.health] or [float("nan")]
        return {"rss_peak_mb": round(max(self.rss, default=float("nan")), 1),
                "health_samples": len(self.health), "health_p50_ms": round(float(np.percentile(lat, 50)), 1),
                "health_p99_ms": round(float(np.percentile(lat, 99)), 1),
                "health_max_ms": round(max(lat), 1), "health_non_200": sum(s != 200 for s, _ in self.health)}


def probe_main(port: int) -> None:
    """Child process: GET /v1/health every 50 ms, one 'status ms' line each, until terminated."""
    import http.client

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/v1/health")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = -1
        print(status, round((time.perf_counter() - t0) * 1e3, 2), flush=True)
        time.sleep(0.05)


def heavy(port: int, pid: int) -> dict:
    import aiohttp

    issue = json.dumps(body(30, 1080, replay=1024)).encode()
    admitted = json.dumps(body(4, 1080, replay=1024)).encode()

    async def run() -> dict:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            status, sec, text = await _post(s, port, issue)
            first = {"issue_body_mb": round(len(issue) / 2**20, 2), "issue_status": status,
                     "issue_s": round(sec, 3), "issue_detail": json.loads(text)["detail"][0]["msg"][:90]}
            with Sampler(pid, port) as sampler:
                answers = await asyncio.gather(*(_post(s, port, admitted) for _ in range(32)))
            time.sleep(2)
            codes: dict[int, int] = {}
            for st, _, _ in answers:
                codes[st] = codes.get(st, 0) + 1
            return first | {"burst_32x_4sym_1024replay": codes, "burst_max_s": round(max(a[1] for a in answers), 2),
                            "rss_settled_mb": round(rss_mb(pid), 1)} | sampler.summary()

    return asyncio.run(run())


def idle_connections(port: int, pid: int, n_idle: int = 2000) -> dict:
    import http.client

    socks = []
    for _ in range(n_idle):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    time.sleep(0.3)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    data = json.dumps(body(1, 80)).encode()
    ok = 0
    for _ in range(50):
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/act", body=data, headers={"X-API-Key": ALICE, "content-type": "application/json"})
            ok += conn.getresponse().status == 200
            conn.close()
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    return {"idle_opened": len(socks), "server_fds_after": fds, "idle_still_open": alive,
            "authenticated_ok": f"{ok}/50"}


def sessions(port: int) -> dict:
    import aiohttp

    bars_n = 300

    async def run() -> dict:
        async with aiohttp.ClientSession() as s:
            def step(sid: str, upto: int) -> bytes:
                return json.dumps(body(1, bars_n, session=sid, upto=upto)).encode()

            st, _, a1 = await _post(s, port, step("alice-1", 200))
            for i in range(300):  # bob: more sessions than the quota of 200
                await _post(s, port, step(f"bob-{i}", 200), BOB)
            st2, _, a2 = await _post(s, port, step("alice-1", 201))
            st3, _, b0 = await _post(s, port, step("bob-0", 201), BOB)
        d1, d2 = json.loads(a1)["decisions"][0], json.loads(a2)["decisions"][0]
        return {"alice_steps": [d1["session_step"], d2["session_step"]], "alice_state_reset": d2["state_reset"],
                "bob_evicted_session": f"{st3} {json.loads(b0)['detail'][0]['msg'][:80]}"}

    return asyncio.run(run())


def mutate(rng: random.Random, valid: dict) -> bytes:
    """One mutation of a valid body: types, extremes, OHLC swaps, dropped or extra fields."""
    b = json.loads(json.dumps(valid))
    bars = b["symbols"][0]["bars"]
    col = rng.choice(["open", "high", "low", "close", "volume"])
    i = rng.randrange(len(bars["ts_ns"]))
    kind = rng.randrange(10)
    if kind == 0:
        bars[col][i] = rng.choice([1e308, -1e308, 1.7e308, 5e-324, 0.0, -1.0, 1e15, 1e12])
    elif kind == 1:
        bars[col][i] = rng.choice(["123.5", "yes", None, [], {}, True])
    elif kind == 2:
        bars["high"][i], bars["low"][i] = bars["low"][i], bars["high"][i] * 2
    elif kind == 3:
        bars["ts_ns"][i] = rng.choice([0, -1, 2**63, "x", 1.5, bars["ts_ns"][0]])
    elif kind == 4:
        del bars[rng.choice(["open", "high", "low", "close", "ts_ns"])]
    elif kind == 5:
        b[rng.choice(["bogus", "replay_bars", "cash_usd", "reset_session"])] = rng.choice(["yes", 10**9, -1, 1e308, True])
    elif kind == 6:
        b["index"] = {k: v[: rng.randrange(1, len(v))] for k, v in b["index"].items()}
    elif kind == 7:
        b["symbols"][0]["position"] = rng.choice([{"owned": "yes"}, {"owned": True, "bars_held": 0},
                                                  {"qty": 1e308}, {"owned": True, "bars_held": 10**9}])
    elif kind == 8:
        for c in ("open", "high", "low", "close"):
            bars[c] = [v * 1e11 for v in bars[c]]
        bars["volume"] = [1e15] * len(bars["volume"])
    else:
        b["session_id"] = rng.choice(["x" * 200, "ok-1", "", "../../etc"])
    return json.dumps(b).encode()


def fuzz(port: int, n: int = 400) -> dict:
    import aiohttp

    rng = random.Random(0)
    valid = body(1, 120)

    async def run() -> dict[int, int]:
        codes: dict[int, int] = {}
        async with aiohttp.ClientSession() as s:
            for _ in range(n):
                st, _, _ = await _post(s, port, mutate(rng, valid))
                codes[st] = codes.get(st, 0) + 1
        return codes

    codes = asyncio.run(run())
    return {"mutations": n, "statuses": dict(sorted(codes.items())), "5xx": sum(c for s, c in codes.items() if s >= 500)}


def run_plain(ref: str) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--server", ref, str(port)], cwd=ROOT)
    try:
        wait_healthy(port)
        out = {"heavy": heavy(port, proc.pid), "idle": idle_connections(port, proc.pid),
               "sessions": sessions(port), "fuzz": fuzz(port)}
    finally:
        proc.terminate()
        proc.wait(30)
    return out


# --- Ray Serve: overload on both ingress paths, memory, drain -----------------------------------

def connection_limits_active(port: int) -> str:
    """The hardened protocol answers 431 to 20 KiB of headers (plain uvicorn reads them all)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        with contextlib.suppress(OSError):
            return s.recv(64).split(b"\r\n")[0].decode()
    return "closed"


def replica_pid() -> int | None:
    for p in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if p.name.isdigit() and b"ServeReplica:raytrade" in (p / "cmdline").read_bytes():
                return int(p.name)
    return None


def overload(port: int, data: bytes, clients: int, seconds: float) -> dict:
    import aiohttp

    async def run() -> dict:
        lat: list[float] = []
        codes: dict[int, int] = {}
        stop = time.perf_counter() + seconds

        async def client() -> None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                             timeout=aiohttp.ClientTimeout(total=60)) as s:
                while time.perf_counter() < stop:
                    st, sec, _ = await _post(s, port, data)
                    codes[st] = codes.get(st, 0) + 1
                    if st == 200:
                        lat.append(sec)
                    else:
                        await asyncio.sleep(0.05)  # a retrying client with a short back-off

        await asyncio.gather(*(client() for _ in range(clients)))
        total = sum(codes.values())
        return {"statuses": codes, "share_503": round(codes.get(503, 0) / max(total, 1), 3),
                "admitted_rps": round(len(lat) / seconds, 1),
                "admitted_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1) if lat else None,
                "admitted_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1) if lat else None}

    return asyncio.run(run())


def run_ray(ref: str, seconds: float) -> dict:
    port, direct = free_port(), free_port()
    env = os.environ | {"RAYTRADE_API_KEY": KEYS, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "raytrade"), "serve", ref, "--port", str(port), "--direct-port", str(direct),
           "--max-batch-size", "8", "--max-ongoing-requests", "8", "--max-queued-requests", "16"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    try:
        wait_healthy(port, timeout_s=600)
        out["start_s"] = round(time.perf_counter() - t0, 1)
        from serve.direct_ingress import replica_ports

        ports = replica_ports("127.0.0.1", direct)
        pid = replica_pid()
        light = json.dumps(body(1, 120)).encode()
        with Sampler(pid, None) as mem:
            out["proxy_64_clients"] = overload(port, light, 64, seconds)
            if ports:
                out["direct_64_clients"] = overload(ports[0], light, 64, seconds)
        out["replica_rss_peak_mb"] = mem.summary()["rss_peak_mb"]
        out["431_on_big_headers"] = {"proxy": connection_limits_active(port),
                                     "direct": connection_limits_active(ports[0]) if ports else None}
        out["drain"] = drain(proc, port, json.dumps(body(4, 1080, replay=1024)).encode())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out["cli_lines"] = len(lines)
    out["cli_tail"] = [ln.rstrip()[:160] for ln in lines[-2:]]
    return out


def drain(proc: subprocess.Popen, port: int, data: bytes) -> dict:
    import aiohttp

    async def run() -> list[int]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            async def one() -> int:
                try:
                    return (await _post(s, port, data))[0]
                except aiohttp.ClientError:
                    return -1
            tasks = [asyncio.create_task(one()) for _ in range(6)]
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

    t0 = time.perf_counter()
    codes = asyncio.run(run())
    rc = proc.wait(90)
    return {"in_flight": len(codes), "completed_200": codes.count(200), "statuses": codes, "exit_code": rc,
            "stopped_in_s": round(time.perf_counter() - t0, 1)}


def main(ref: str, seconds: float = 5.0, ray: bool = True) -> dict:
    results = {"plain": run_plain(ref)}
    if ray:
        results["ray"] = run_ray(ref, seconds)
    print(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) == 4 and sys.argv[1] == "--server":
        server_main(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--probe":
        probe_main(int(sys.argv[2]))
    else:
        import tempfile

        from benchmarks.bench_serve import default_ref  # noqa: E402 - after the path is set

        main(sys.argv[1] if len(sys.argv) > 1 else default_ref("learn_mean_reversion-*", "gru",
                                                                Path(tempfile.mkdtemp())))

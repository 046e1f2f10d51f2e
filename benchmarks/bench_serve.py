"""Serving latency and throughput: Ray Serve (``serve/``) vs a plain FastAPI + uvicorn + torch
server running the same model, same app, same requests, in the same run.

* plain: one uvicorn process serving :func:`serve.api.create_api` over a
  :class:`~serve.api.DirectBackend` (one forward pass per request, no batching, no Ray);
* serve (proxy): the Ray Serve deployment of :mod:`serve.deployment` (HTTP proxy + 1 replica
  with ``num_cpus=1``, ``@serve.batch`` up to ``--max-batch-size``), through Serve's proxy;
* serve (direct): the same replica through its own HTTP port (Serve's direct ingress,
  :mod:`serve.direct_ingress`; ``--no-direct`` skips it).

Per model (MLP; GRU in session mode, one session per client; GRU stateless, replaying its last
``max_seq_len`` bars per request, a heavier forward pass where batching pays): latency p50/p99 of
sequential requests (one keep-alive connection), then throughput and latency at 1, 8 and 32
concurrent clients (aiohttp, one connection each, ``--seconds`` per level). Client and servers
share the machine's cores, as a sidecar would. Targets (issue): MLP sequential p50 <= 5 ms,
p99 <= 20 ms; throughput at 32 clients >= 1x the plain server.

    .venv/bin/python benchmarks/bench_serve.py [--mlp REF] [--gru REF] [--bars 64] [--seconds 5]

``REF`` is anything ``raytrade serve`` takes; defaults: the newest ``runs/smoke-*`` (MLP) and
``runs/learn_mean_reversion-*`` (GRU), else random-weight policies saved to a temp run dir.

``--abuse`` runs the abuse scenarios of issue 13 instead (:mod:`benchmarks.serve_abuse`: heavy
requests, idle connections, per-key sessions, mutation fuzzing, overload on the proxy and
direct ingress, drain on SIGTERM; ``--no-ray`` keeps to the plain server)::

    .venv/bin/python benchmarks/bench_serve.py --abuse [--gru REF] [--seconds 5] [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAYTRADE_API_KEY", "bench-key-" + "x" * 24)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
KEY = os.environ["RAYTRADE_API_KEY"]
ENV_ID = "raytrade/SyntheticMeanReversion-v0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_ref(pattern: str, model: str, tmp: Path) -> str:
    runs = sorted((ROOT / "runs").glob(pattern), key=lambda p: p.stat().st_mtime)
    if runs:
        return str(runs[-1])
    from app.models import module_spec
    from app.policy.loader import POLICY_SUBDIR
    from envs import make_creator

    env = make_creator(ENV_ID)({})
    cfg = {"embed_dim": 32, "fusion_hiddens": [64]} | ({"gru_hidden": 32, "max_seq_len": 16} if model == "gru" else {})
    module = module_spec(model, cfg, observation_space=env.observation_space, action_space=env.action_space).build()
    run = tmp / f"random_{model}-20260101-000000"
    module.save_to_path(str(run / "checkpoints" / "final" / POLICY_SUBDIR))
    (run / "experiment.yaml").write_text(json.dumps({"name": f"random_{model}", "data": None,
                                                     "env": {"id": ENV_ID, "config": {}}}))
    return str(run)


def request_body(n_bars: int, session: str | None = None) -> bytes:
    from envs import synthetic

    g = synthetic.generate("mean_reversion", seed=11, n_symbols=1, n_bars=max(n_bars, 60))
    ts, ohlcv = g.market.series("SYN0")
    ts, ohlcv, its, iohlc = ts[-n_bars:], ohlcv[-n_bars:], g.index.ts_ns[-n_bars:], g.index.ohlcv[-n_bars:]

    def bars(t, o, volume=True):
        out = {"ts_ns": t.tolist(), "open": o[:, 0].tolist(), "high": o[:, 1].tolist(), "low": o[:, 2].tolist(),
               "close": o[:, 3].tolist()}
        return out | ({"volume": o[:, 4].tolist()} if volume else {})

    body = {"symbols": [{"symbol": "SYN0", "bars": bars(ts, ohlcv), "position": {"owned": False, "bars_held": 0}}],
            "index": bars(its, iohlc, volume=False)}
    if session:
        body["session_id"] = session
    return json.dumps(body).encode()


def wait_healthy(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on {port} never became healthy")


def sequential(port: int, body: bytes, n: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"X-API-Key": KEY, "content-type": "application/json"}
    lat = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/act", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {data[:300]!r}")
        if i >= 20:  # warm-up
            lat.append(time.perf_counter() - t0)
    return {"p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3)}


async def _load(port: int, bodies: list[bytes], seconds: float) -> dict:
    import aiohttp

    headers = {"X-API-Key": KEY, "content-type": "application/json"}
    lat: list[float] = []
    errors: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def client(body: bytes) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}/v1/act", data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors[r.status] = errors.get(r.status, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(b) for b in bodies))
    wall = time.perf_counter() - t0
    return {"rps": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "errors": errors}


def measure(port: int, model: str, args) -> dict:
    wait_healthy(port)
    sessions = model == "gru"  # "gru-replay": no session, the GRU replays its last max_seq_len bars
    out = {"sequential": sequential(port, request_body(args.bars, "seq" if sessions else None), args.sequential)}
    for c in args.concurrency:
        bodies = [request_body(args.bars, f"c{c}-{i}" if sessions else None) for i in range(c)]
        out[f"c{c}"] = asyncio.run(_load(port, bodies, args.seconds))
    return out


def plain_server(ref: str, port: int) -> None:
    """Child process: the same app on uvicorn, one process, no batching, no Ray."""
    import torch
    import uvicorn

    torch.set_num_threads(1)
    from serve.api import ApiSettings, DirectBackend, create_api
    from serve.auth import ApiKeyVerifier
    from serve.policy_service import PolicyService

    app = create_api(DirectBackend(PolicyService.load(ref)), ApiSettings(ApiKeyVerifier.from_env()))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def run_plain(ref: str, model: str, args) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--plain-server", ref, str(port)], cwd=ROOT)
    try:
        return measure(port, model, args)
    finally:
        proc.terminate()
        proc.wait(30)


def run_serve(refs: dict[str, str], args, direct_port: int | None) -> dict:
    import ray
    from ray import serve

    from serve.auth import ApiKeyVerifier
    from serve.deployment import DeploymentOptions, build, http_options

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=args.verbose,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    port = free_port()
    results = {}
    try:
        for model, ref in refs.items():
            options = DeploymentOptions(ref=ref, max_batch_size=args.max_batch_size, max_queued_requests=1024,
                                        max_ongoing_requests=2 * args.max_batch_size, num_cpus=1.0)
            serve.start(http_options=http_options("127.0.0.1", port, options),
                        logging_config={"enable_access_log": False, "log_level": "WARNING"})
            serve.run(build(options, ApiKeyVerifier.from_env()), name="bench", route_prefix="/")
            results[model] = {"serve (proxy)": measure(port, model, args)}
            if direct_port is not None:
                from serve.direct_ingress import replica_ports

                ports = replica_ports("127.0.0.1", direct_port)
                if not ports:
                    raise RuntimeError(f"no replica answers on ports from {direct_port}")
                results[model]["serve (direct)"] = measure(ports[0], model, args)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    return results


def table(results: dict, concurrency: list[int]) -> str:
    head = "| model | server | seq p50 ms | seq p99 ms | " + " | ".join(
        f"{c} clients req/s (p50/p99 ms)" for c in concurrency) + " |"
    lines = [head, "|" + "---|" * (4 + len(concurrency))]
    for model, per_server in results.items():
        for server, r in per_server.items():
            cells = [f"{r[f'c{c}']['rps']:.0f} ({r[f'c{c}']['p50_ms']:.1f}/{r[f'c{c}']['p99_ms']:.1f})"
                     + (f" err {r[f'c{c}']['errors']}" if r[f"c{c}"]["errors"] else "") for c in concurrency]
            lines.append(f"| {model} | {server} | {r['sequential']['p50_ms']:.2f} | {r['sequential']['p99_ms']:.2f} | "
                         + " | ".join(cells) + " |")
        p = per_server["plain"]
        for name, s in per_server.items():
            if name != "plain":
                ratios = " | ".join(f"{s[f'c{c}']['rps'] / p[f'c{c}']['rps']:.2f}x" for c in concurrency)
                lines.append(f"| {model} | {name} / plain throughput | | | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--plain-server":
        plain_server(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlp")
    parser.add_argument("--gru")
    parser.add_argument("--bars", type=int, default=64, help="bars per request (and index bars)")
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--no-direct", action="store_true", help="skip Serve's direct ingress")
    parser.add_argument("--no-replay", action="store_true", help="skip the stateless GRU (window replay) rows")
    parser.add_argument("--verbose", action="store_true", help="show the Ray workers' logs")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--abuse", action="store_true", help="the abuse scenarios (issue 13) instead")
    parser.add_argument("--no-ray", action="store_true", help="--abuse: the plain server only")
    args = parser.parse_args()
    if args.abuse:
        from benchmarks.serve_abuse import main as abuse

        gru = args.gru or default_ref("learn_mean_reversion-*", "gru", Path(tempfile.mkdtemp(prefix="bench-serve-")))
        results = abuse(gru, args.seconds, ray=not args.no_ray)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str))
        return
    direct_port = None if args.no_direct else free_port()
    if direct_port is not None:  # Ray reads it when it starts (the plain server ignores it)
        from serve.direct_ingress import direct_ingress_env

        os.environ.update(direct_ingress_env(direct_port))
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    refs = {"mlp": args.mlp or default_ref("smoke-*", "mlp", tmp),
            "gru": args.gru or default_ref("learn_mean_reversion-*", "gru", tmp)}
    if not args.no_replay:
        refs["gru-replay"] = refs["gru"]
    print(f"models: {refs}; {args.bars} bars per request; {os.cpu_count()} CPUs", flush=True)
    results: dict[str, dict] = {m: {} for m in refs}
    for model, ref in refs.items():
        results[model]["plain"] = run_plain(ref, model, args)
    for model, r in run_serve(refs, args, direct_port).items():
        results[model] |= r
    print(table(results, args.concurrency))
    for name in ("serve (proxy)", "serve (direct)"):
        if name in results["mlp"]:
            mlp = results["mlp"][name]["sequential"]
            print(f"MLP via {name}, sequential: p50 {mlp['p50_ms']:.2f} ms (target <= 5), "
                  f"p99 {mlp['p99_ms']:.2f} ms (target <= 20)")
    if args.out:
        args.out.write_text(json.dumps({"refs": refs, "bars": args.bars, "results": results}, indent=2))


if __name__ == "__main__":
    main()

"""The Ray Serve deployment: FastAPI ingress over a :class:`~serve.policy_service.PolicyService`.

* Each replica loads the policy itself (the reference travels, not the weights) and pins torch
  to ``torch_threads`` threads (``OMP_NUM_THREADS`` too), one per CPU it reserves.
* ``@serve.batch`` gathers concurrent requests into one call of ``PolicyService.run``: one
  forward pass per wave and replay length for every request of the batch.
* Overload: ``max_ongoing_requests`` per replica plus ``max_queued_requests`` waiting at the
  proxy; beyond that Serve answers 503 at once instead of queueing without bound. The app
  enforces the same total per replica itself (``max_in_flight``), so direct ingress, which
  bypasses the proxy's queue, answers the same JSON 503 (with ``Retry-After``).
* The forward passes run on one model thread (:class:`serve.api.ModelWorker`), parsing and
  observation building on a small pool: the replica's event loop only moves bytes.
* ``check_health`` (Serve restarts a replica that fails it) and ``GET /v1/health`` count a
  recent successful forward pass, else run one.
* Work per request is bounded (``max_request_bars``, ``max_request_steps``: 413 past them),
  which bounds a replica's memory: ``max_ongoing_requests`` x that work at most.
* Shutdown drains: replicas finish their in-flight requests (``graceful_shutdown_timeout_s`` =
  the request timeout + 5 s) before they stop.
* With several replicas, sessions stick to a replica by the ``x-session-id`` header
  (Ray's consistent-hash request router), since recurrent state lives in replica memory. The
  proxy picks an app's router when the app first appears: going from 1 replica to several,
  deploy a new app (or restart) rather than updating it in place.
* Access logs are off unless ``access_log``; the API key reaches replicas only as a salted
  digest (:mod:`serve.auth`).
* Optional direct ingress (:func:`serve.direct_ingress.direct_ingress_env`, Ray Serve's throughput-optimized mode):
  each replica also answers HTTP on its own port, skipping the proxy hop (about 5x lower latency
  here); the proxy keeps serving the same routes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ray import serve

from serve.api import ApiSettings, ModelWorker, create_api
from serve.auth import ApiKeyVerifier
from serve.connections import ConnectionLimits, connection_env
from serve.direct_ingress import direct_ingress_env  # noqa: F401 - re-exported
from serve.errors import ServeError
from serve.policy_service import PolicyService, PreparedRequest, ServiceSettings
from serve.schemas import ActResponse

STICKY_ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"


@dataclass(frozen=True)
class DeploymentOptions:
    """Everything the deployment is configured with (CLI flags / ``serve run`` arguments)."""

    ref: str
    checkpoint: str = "final"
    runs_dir: str = "runs"
    env_id: str | None = None
    env_config: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str | None = None
    replicas: int = 1
    num_cpus: float = 1.0
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.0
    max_ongoing_requests: int | None = None   # default: 2 * max_batch_size
    max_queued_requests: int = 64
    request_timeout_s: float = 10.0
    max_body_bytes: int = 4 * 2**20
    session_ttl_s: float = 172_800.0
    max_sessions: int = 100_000                 # per API key (client)
    max_request_bars: int = 65_536
    max_request_steps: int = 4_096
    public_docs: bool = False
    access_log: bool = False
    health_check_period_s: float = 10.0
    sticky_sessions: bool | None = None       # default: when replicas > 1

    def __post_init__(self) -> None:
        checks = [("replicas", self.replicas >= 1), ("num_cpus", self.num_cpus > 0),
                  ("max_batch_size", self.max_batch_size >= 1), ("batch_wait_timeout_s", self.batch_wait_timeout_s >= 0),
                  ("max_queued_requests", self.max_queued_requests >= 1 or self.max_queued_requests == -1),
                  ("request_timeout_s", self.request_timeout_s > 0), ("max_body_bytes", self.max_body_bytes >= 1024),
                  ("max_ongoing_requests", self.max_ongoing_requests is None or self.max_ongoing_requests >= 1),
                  ("max_request_bars", self.max_request_bars >= 1), ("max_request_steps", self.max_request_steps >= 1),
                  ("max_sessions", self.max_sessions >= 1), ("session_ttl_s", self.session_ttl_s > 0)]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise ValueError(f"DeploymentOptions.{bad[0]}: invalid value {getattr(self, bad[0])!r}")

    @property
    def torch_threads(self) -> int:
        return max(1, int(self.num_cpus))

    @property
    def ongoing(self) -> int:
        return self.max_ongoing_requests or 2 * self.max_batch_size

    @property
    def in_flight(self) -> int:
        """Requests a replica holds at most (running + waiting), the same on both ingress paths."""
        return self.ongoing + (self.max_queued_requests if self.max_queued_requests > 0 else 1024)


@serve.deployment(name="PolicyDeployment")
@serve.ingress()
class PolicyDeployment:
    """One replica: the policy service, batched, behind the FastAPI app of :mod:`serve.api`."""

    def __init__(self, options: DeploymentOptions, verifier: ApiKeyVerifier) -> None:
        os.environ["OMP_NUM_THREADS"] = str(options.torch_threads)
        settings = ServiceSettings(options.session_ttl_s, options.max_sessions, options.torch_threads,
                                   options.max_request_bars, options.max_request_steps)
        self.service = PolicyService.load(options.ref, settings, checkpoint=options.checkpoint,
                                          runs_dir=options.runs_dir, env_id=options.env_id,
                                          env_config=options.env_config or None, tracking_uri=options.tracking_uri)
        self.service.health_check()
        self.worker = ModelWorker()
        self._health_max_age_s = max(3 * options.health_check_period_s, 30.0)
        self._api = ApiSettings(verifier, options.max_body_bytes, options.request_timeout_s, options.public_docs,
                                max_in_flight=options.in_flight)
        self.run_batch.set_max_batch_size(options.max_batch_size)
        self.run_batch.set_batch_wait_timeout_s(options.batch_wait_timeout_s)

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(self, self._api)

    async def run(self, prepared: PreparedRequest) -> ActResponse | ServeError:
        return await self.run_batch(prepared)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def run_batch(self, prepared: list[PreparedRequest]) -> list[ActResponse | ServeError]:
        return await self.worker.call(self.service.run, prepared)

    async def health(self) -> float:
        return await self.worker.call(self.service.health_check)

    async def check_health(self) -> None:
        """Serve's periodic replica health check: a recent forward pass, or one now."""
        if not self.service.healthy_within(self._health_max_age_s):
            await self.worker.call(self.service.health_check)


def build(options: DeploymentOptions, verifier: ApiKeyVerifier) -> Any:
    """The Serve application (``serve.run(build(...))``) configured by ``options``."""
    from ray.serve.config import RequestRouterConfig

    extra: dict[str, Any] = {}
    sticky = options.replicas > 1 if options.sticky_sessions is None else options.sticky_sessions
    if sticky:
        extra["request_router_config"] = RequestRouterConfig(
            request_router_class=STICKY_ROUTER, request_router_kwargs={"num_fallback_replicas": 0})
    # The replicas' direct-ingress servers get the connection limits even on a cluster started
    # without them (the proxy only when Ray started with them: serve.connections).
    env_vars = {"OMP_NUM_THREADS": str(options.torch_threads), "MKL_NUM_THREADS": str(options.torch_threads),
                **connection_env(ConnectionLimits.from_env())}
    return PolicyDeployment.options(
        num_replicas=options.replicas, max_ongoing_requests=options.ongoing,
        max_queued_requests=options.max_queued_requests,
        ray_actor_options={"num_cpus": options.num_cpus, "runtime_env": {"env_vars": env_vars}},
        health_check_period_s=options.health_check_period_s, health_check_timeout_s=30.0,
        graceful_shutdown_wait_loop_s=0.5, graceful_shutdown_timeout_s=options.request_timeout_s + 5.0,
        logging_config={"enable_access_log": options.access_log, "log_level": "WARNING"},
        **extra,
    ).bind(options, verifier)


def http_options(host: str, port: int, options: DeploymentOptions, keep_alive_s: int = 5) -> dict[str, Any]:
    """Proxy options for ``serve.start``: the bind address, an end-to-end timeout longer than
    the app's own (which answers 504 first, even after a wait in the proxy's bounded queue), and
    idle keep-alive connections closed after ``keep_alive_s``."""
    return {"host": host, "port": int(port), "request_timeout_s": 2 * options.request_timeout_s + 5.0,
            "keep_alive_timeout_s": int(keep_alive_s)}


def describe(options: DeploymentOptions) -> dict[str, Any]:
    """The options as plain data (logs, the CLI's summary)."""
    return asdict(options) | {"max_ongoing_requests": options.ongoing}

"""Ray Serve's direct ingress: replicas answer HTTP themselves, without the proxy hop.

Ray reads these settings from the environment when its processes start (and when ``ray.serve``
is first imported), so this module imports nothing from Ray: set them before ``ray.init`` /
``ray start`` / ``serve run``.
"""

from __future__ import annotations


def direct_ingress_env(port: int, replicas: int = 1) -> dict[str, str]:
    """Environment variables for Ray Serve's direct ingress (Ray >= 2.56): replicas serve HTTP
    themselves on ports from ``port`` (bound to the proxy's host), with the same limits (503 past
    ``max_queued_requests``). Ray reads them when it starts: set them before ``ray.init`` or
    ``ray start``. The short drain suits a single node without a load balancer to deregister from."""
    return {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + max(replicas, 1) + 100),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}


def replica_ports(host: str, first: int, replicas: int = 1, timeout_s: float = 30.0) -> list[int]:
    """The ports replicas answer on, found by asking ``/v1/health`` from ``first`` on (Serve gives
    each replica the lowest free port of the range; a port still held by a replica that is
    shutting down is skipped). Waits up to ``timeout_s`` for ``replicas`` of them."""
    import http.client
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    found: list[int] = []
    while True:
        found = []
        for port in range(first, first + max(replicas, 1) + 101):
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex((host, port)) != 0:
                    continue
            try:
                conn = http.client.HTTPConnection(host, port, timeout=2)
                conn.request("GET", "/v1/health")
                if conn.getresponse().status in (200, 503):
                    found.append(port)
            except (OSError, http.client.HTTPException):
                continue
        if len(found) >= replicas or time.monotonic() > deadline:
            return found
        time.sleep(0.5)

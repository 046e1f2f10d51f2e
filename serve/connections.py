"""Connection hygiene for every HTTP server that runs the API: header size and header/idle
timeouts, and a cap on open connections per server that evicts idle ones first.

uvicorn (which Ray Serve's proxy, Serve's direct ingress and the plain server all use) closes a
keep-alive connection once it has been idle ``timeout_keep_alive`` after a response, but never a
connection that has not yet sent a full request, and it reads headers of any size. So thousands
of silent sockets exhaust the process's file descriptors, without any key.

:class:`HardenedHttpTools` (uvicorn's httptools protocol, plus):

* headers must arrive within ``header_timeout_s`` of the connection opening or of the previous
  response (idle keep-alive connections close then too); past it the socket is closed;
* headers larger than ``max_header_bytes`` are a ``431`` and a close;
* at most ``max_connections`` open connections per server: a new one beyond the cap closes the
  connection idle the longest (one waiting for headers, no request in flight), so a flood of
  idle sockets never locks out a client that sends its request promptly; when every connection
  has a request in flight, the new one is closed instead.

Ray's proxy and the replicas' direct ingress build their uvicorn servers themselves; Ray calls
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in those processes just before, so
:func:`proxy_callback` (set there by :func:`connection_env`) installs the protocol as uvicorn's
default. The limits travel as environment variables (Ray's processes inherit the driver's).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ENV_PREFIX = "RAYTRADE_SERVE_"
CALLBACK = "serve.connections:proxy_callback"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1024
    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.header_timeout_s <= 0 or self.max_header_bytes < 1024:
            raise ValueError(f"connection limits: need max_connections >= 1, header_timeout_s > 0 and "
                             f"max_header_bytes >= 1024, got {self}")

    def env(self) -> dict[str, str]:
        return {f"{ENV_PREFIX}MAX_CONNECTIONS": str(self.max_connections),
                f"{ENV_PREFIX}HEADER_TIMEOUT_S": str(self.header_timeout_s),
                f"{ENV_PREFIX}MAX_HEADER_BYTES": str(self.max_header_bytes)}

    @classmethod
    def from_env(cls) -> ConnectionLimits:
        d = cls()
        return cls(int(os.environ.get(f"{ENV_PREFIX}MAX_CONNECTIONS", d.max_connections)),
                   float(os.environ.get(f"{ENV_PREFIX}HEADER_TIMEOUT_S", d.header_timeout_s)),
                   int(os.environ.get(f"{ENV_PREFIX}MAX_HEADER_BYTES", d.max_header_bytes)))


def connection_env(limits: ConnectionLimits) -> dict[str, str]:
    """Environment for Ray (set before it starts): the limits and the proxy callback."""
    return limits.env() | {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": CALLBACK}


def hardened_protocol(limits: ConnectionLimits) -> type:
    """uvicorn's httptools protocol with ``limits`` (see the module docstring)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HardenedHttpTools(HttpToolsProtocol):
        _limits = limits

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._await_headers()
            self._enforce_cap()

        def _await_headers(self) -> None:
            self._awaiting, self._header_bytes, self._tail = True, 0, b""
            self._idle_since = self.loop.time()
            self._cancel_timer()
            self._header_timer = self.loop.call_later(self._limits.header_timeout_s, self._header_timeout)

        def _cancel_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _busy(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _header_timeout(self) -> None:
            if self._awaiting and not self._busy() and not self.transport.is_closing():
                self.transport.close()

        def _enforce_cap(self) -> None:
            conns: set[Any] = self.connections
            if len(conns) <= self._limits.max_connections:
                return
            idle = [c for c in conns if c is not self and getattr(c, "_awaiting", False) and not c._busy()
                    and not c.transport.is_closing()]
            victim = min(idle, key=lambda c: c._idle_since) if idle else self
            victim.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._awaiting and not self._busy():
                # header bytes so far: up to the blank line that ends them (it may straddle chunks)
                end = (self._tail + data).find(b"\r\n\r\n")
                size = self._header_bytes + (len(data) if end < 0 else end + 4 - len(self._tail))
                if size > self._limits.max_header_bytes:
                    self._reject_headers()
                    return
                self._header_bytes += len(data)
                self._tail = data[-3:]
            super().data_received(data)

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to unparsable HTTP, as JSON like every other error."""
            body = ('{"detail": "' + msg.replace('"', "'") + '"}').encode()
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close"
                                 b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.transport.close()

        def _reject_headers(self) -> None:
            if self.transport.is_closing():
                return
            msg = f'{{"detail": "request headers larger than {self._limits.max_header_bytes} bytes"}}'.encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg)
            self.transport.close()

        def on_headers_complete(self) -> None:
            self._awaiting = False
            self._cancel_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timer()
            super().connection_lost(exc)

    return HardenedHttpTools


def install(limits: ConnectionLimits | None = None) -> None:
    """Make the hardened protocol the default of every ``uvicorn.Config`` built in this process."""
    import uvicorn

    if getattr(uvicorn.Config, "_raytrade_hardened", False):
        return
    protocol = hardened_protocol(limits or ConnectionLimits.from_env())
    base = uvicorn.Config

    class HardenedConfig(base):  # type: ignore[misc, valid-type]
        _raytrade_hardened = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("http", "auto") == "auto":
                kwargs["http"] = protocol
            super().__init__(*args, **kwargs)

    uvicorn.Config = HardenedConfig  # type: ignore[misc]


def proxy_callback() -> list:
    """Ray's ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` hook: runs in the proxy and in each
    direct-ingress replica before their uvicorn server is built; adds no middleware."""
    try:
        install()
    except Exception:  # noqa: BLE001 - never keep the proxy from starting; log why
        log.exception("raytrade: could not install the connection limits")
    return []

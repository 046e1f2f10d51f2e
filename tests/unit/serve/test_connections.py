"""Connection hygiene (:mod:`serve.connections`) on a real uvicorn server in a thread: idle and
partial-header sockets are closed after the header timeout, oversized headers get a 431, and
beyond the connection cap the longest-idle socket goes, so prompt clients are still served."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time

import pytest
import uvicorn

from serve.connections import ConnectionLimits, hardened_protocol, install


async def hello(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server():
    limits = ConnectionLimits(max_connections=8, header_timeout_s=0.5, max_header_bytes=4096)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(hello, http=hardened_protocol(limits), log_level="critical", lifespan="off")
    srv = uvicorn.Server(config)
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    yield sock.getsockname()[1], srv
    srv.should_exit = True
    thread.join(5)


def get(port: int, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/", headers=headers or {})
    status = conn.getresponse().status
    conn.close()
    return status


def closed(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_idle_and_partial_headers_are_closed_after_the_timeout(server):
    port, _ = server
    idle, partial = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    t0 = time.perf_counter()
    assert closed(idle) and closed(partial) and time.perf_counter() - t0 < 1.5


def test_oversized_headers_are_431(server):
    port, _ = server
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
    s.settimeout(2)
    assert s.recv(200).startswith(b"HTTP/1.1 431")
    whole = socket.create_connection(("127.0.0.1", port))  # complete headers, in one piece
    whole.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    whole.settimeout(2)
    assert whole.recv(200).startswith(b"HTTP/1.1 431")
    body = b"b" * 100_000  # a large body in the same chunks as small headers is fine
    post = socket.create_connection(("127.0.0.1", port))
    post.sendall(b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 100000\r\n\r\n" + body)
    post.settimeout(2)
    assert post.recv(200).startswith(b"HTTP/1.1 200")


def test_garbage_is_a_json_400(server):
    port, _ = server
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\x00\x01 not http at all\r\n\r\n")
    s.settimeout(2)
    answer = s.recv(300)
    assert answer.startswith(b"HTTP/1.1 400") and b"application/json" in answer and answer.endswith(b'"}')


def test_beyond_the_cap_the_longest_idle_goes_and_clients_are_served(server):
    port, srv = server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    time.sleep(0.1)
    assert all(get(port) == 200 for _ in range(5))  # never refused, though idle sockets fill the cap
    assert len(srv.server_state.connections) <= 8
    assert sum(closed(s) for s in idle[:20]) == 20  # the oldest idle ones were evicted
    for s in idle:
        s.close()


def test_install_makes_the_protocol_uvicorns_default(monkeypatch):
    monkeypatch.setattr(uvicorn, "Config", uvicorn.Config)
    install(ConnectionLimits())
    config = uvicorn.Config(hello)
    config.load()
    assert config.http_protocol_class.__name__ == "HardenedHttpTools"
    assert uvicorn.Config(hello, http="h11").http == "h11"  # an explicit choice is kept

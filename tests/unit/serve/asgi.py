"""A minimal in-process ASGI client for the API tests (no httpx, no server, no Ray)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _call(app: Any, method: str, path: str, body: bytes, headers: dict[str, str],
                chunk: int | None) -> Response:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": raw, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    step = chunk or max(len(body), 1)
    parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Response(start["status"], {k.decode(): v.decode() for k, v in start.get("headers", [])}, out)


def request(app: Any, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
            headers: dict[str, str] | None = None, chunk: int | None = None,
            content_length: bool = True) -> Response:
    """Send one request through ``app``; ``chunk`` streams the body in pieces of that size."""
    body = data if data is not None else (json.dumps(json_body).encode() if json_body is not None else b"")
    hdrs = dict(headers or {})
    if body:
        hdrs.setdefault("content-type", "application/json")
        if content_length:
            hdrs.setdefault("content-length", str(len(body)))
    return asyncio.run(_call(app, method, path, body, hdrs, chunk))

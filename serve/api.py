"""The HTTP API (FastAPI), shared by the Ray Serve deployment and a plain uvicorn server.

Routes: ``POST /v1/act``, ``GET /v1/models``, ``GET /v1/health`` (the only one without the API
key), ``GET /docs`` + ``GET /openapi.json`` (behind the key unless ``public_docs``).

Robustness, in the order a request meets it:

* the server's connection limits (:mod:`serve.connections`: header size and timeout, idle
  connections closed, a cap per server evicting idle connections first);
* :class:`BodySizeLimit` (pure ASGI): a body over ``max_body_bytes`` is a 413 before anything
  parses it (the Content-Length header, or the bytes as they stream in);
* the API key (``X-API-Key: <key>`` or ``Authorization: Bearer <key>``): 401 otherwise; the
  key's name partitions the recurrent sessions;
* admission: at most ``max_in_flight`` requests per replica in ``/v1/act`` at once (Serve's
  ``max_ongoing_requests + max_queued_requests``, so the proxy and direct ingress behave alike);
  beyond, a 503 at once with ``Retry-After``;
* reading the body, parsing, validation (strict: no coercion, unknown fields rejected; 422 with the field and the
  reason, never echoing the input), the work budget (413) and building the observations run in
  a worker thread, and the batched forward pass in another, all under ``request_timeout_s``
  (504 past it): the event loop stays free, so ``/v1/health`` answers at once under any load
  (from the last successful forward pass; it runs one itself only when the replica is idle).

Every error is JSON ``{"detail": ...}`` (:class:`~serve.schemas.ErrorBody`) and documented in
the OpenAPI schema, whose ``/v1/act`` example is a valid request for the loaded model.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.auth import ApiKeyVerifier
from serve.errors import RequestTimeoutError, ServeError
from serve.policy_service import PolicyService, PreparedRequest
from serve.schemas import SESSION_PATTERN, ActRequest, ActResponse, ErrorBody, Health, ModelInfo

API_TITLE = "raytrade policy service"
log = logging.getLogger(__name__)
HEALTH_MAX_AGE_S = 30.0   # a forward pass this recent proves the model runs: health answers at once


@dataclass(frozen=True)
class ApiSettings:
    verifier: ApiKeyVerifier
    max_body_bytes: int = 4 * 2**20
    request_timeout_s: float = 10.0
    public_docs: bool = False
    max_in_flight: int = 96          # /v1/act requests per replica at once (ongoing + queued)
    prepare_threads: int = 2


class Backend(Protocol):
    """What the routes call: the service (prepare, info) plus how prepared requests run."""

    service: PolicyService

    async def run(self, prepared: PreparedRequest) -> ActResponse | ServeError: ...

    async def health(self) -> float: ...


class ModelWorker:
    """One thread that runs the model (forward passes and the session store, which is not thread
    safe), so the event loop never blocks on torch. After a heavy call it hands freed memory
    back to the system (glibc keeps it otherwise: a burst would set the replica's RSS for good)."""

    HEAVY_S = 0.2

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raytrade-model")
        self._trim = _malloc_trim()

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, fn, args)

    def _timed(self, fn: Any, args: tuple) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if self._trim is not None and time.perf_counter() - t0 > self.HEAVY_S:
                self._trim(0)


def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class DirectBackend:
    """Runs each request on its own, in the model thread (the plain uvicorn server, tests)."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        self.worker = ModelWorker()

    async def run(self, prepared: PreparedRequest) -> ActResponse | ServeError:
        return (await self.worker.call(self.service.run, [prepared]))[0]

    async def health(self) -> float:
        return await self.worker.call(self.service.health_check)


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"}, 413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)  # FastAPI re-raises HTTPExceptions from body reading
            return message

        await self.app(scope, limited, send)


def _clean_errors(errors: list[dict]) -> list[dict]:
    """Validation errors without the offending input (it may be NaN, or huge) or its context."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors]


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {401: "Missing or invalid API key.", 404: "No such route.", 409: "Session conflict: a bar older "
            "than the session's last, or its state was evicted/expired (resend with reset_session: true).",
            413: "Body over the size limit, or more work than one request may ask for (the limit is named).",
            422: "Invalid request: the field and the reason.", 431: "Request headers too large.",
            503: "Overloaded (retry after Retry-After seconds) or unhealthy.",
            504: "The request took longer than the request timeout."}
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


def create_api(backend: Backend, settings: ApiSettings) -> FastAPI:
    """The FastAPI app over ``backend`` (see the module docstring)."""
    app = FastAPI(title=API_TITLE, version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Actions of a trained raytrade policy. Every route but /v1/health needs the "
                              "API key: `X-API-Key: <key>` or `Authorization: Bearer <key>`. Every error is "
                              "JSON `{\"detail\": ...}`.")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)
    prepare_pool = ThreadPoolExecutor(max(1, settings.prepare_threads), thread_name_prefix="raytrade-prepare")
    # The worker threads hold the GIL in long C calls (JSON, numpy): switch more often so the
    # event loop (health, admission, 503s) gets its turn within a few ms, not tens.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    in_flight = 0

    async def require_api_key(request: Request, key: str | None = Security(key_header),
                              token: HTTPAuthorizationCredentials | None = Security(bearer)) -> str:
        client = settings.verifier.identify(key or (token.credentials if token else None))
        if client is None:
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return client

    auth = [Depends(require_api_key)]
    docs_auth = [] if settings.public_docs else auth

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(list(exc.errors()))}, 422)

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        detail: Any = exc.detail() if hasattr(exc, "detail") else str(exc)
        if exc.status_code >= 500:
            log.error("act failed: %s", exc)
        return JSONResponse({"detail": detail}, exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/v1/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        """Liveness and readiness: 200 when the model runs a forward pass, else 503. No API key.
        Answers at once: a forward pass in the last 30 s counts; an idle replica runs one."""
        if backend.service.healthy_within(HEALTH_MAX_AGE_S):
            return Health(status="ok")
        try:
            await asyncio.wait_for(backend.health(), 5.0)
        except Exception:  # noqa: BLE001 - any failure is "unhealthy"; details go to the log only
            log.exception("health check failed")
            return JSONResponse(Health(status="unhealthy", detail="the model cannot run a forward pass").model_dump(),
                                503)
        return Health(status="ok")

    @app.get("/v1/models", response_model=ModelInfo, dependencies=auth, responses=_error_responses(401))
    async def models() -> ModelInfo:
        """The loaded policy: version, env id and config, observation spec, actions, training run."""
        return backend.service.info()

    def parse_and_prepare(raw: bytes, header_session: str | None, client: str, deadline: float) -> PreparedRequest:
        if time.monotonic() > deadline:  # timed out while queued for this pool: the client has its 504
            raise RequestTimeoutError(f"request timed out after {settings.request_timeout_s} s (before it was prepared)")
        try:
            body = ActRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError([e | {"loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None
        prepared = backend.service.prepare(body, header_session, client)
        prepared.deadline = deadline
        return prepared

    async def answer(request: Request, header_session: str | None, client: str) -> ActResponse | ServeError:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + settings.request_timeout_s
        raw = await request.body()  # inside the timeout: a body that trickles in is a 504 too
        prepared = await loop.run_in_executor(prepare_pool, parse_and_prepare, raw, header_session, client, deadline)
        return await backend.run(prepared)

    @app.post("/v1/act", response_model=ActResponse, responses=_error_responses(401, 409, 413, 422, 503, 504),
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/ActRequest"}}}}})
    async def act(request: Request, client: str = Depends(require_api_key),
                  x_session_id: str | None = Header(None, pattern=SESSION_PATTERN,
                                                    description="Routes a session to one replica; "
                                                                "the same as body.session_id.")) -> Any:
        """Decisions for recent bars plus the position state (see the request schema)."""
        nonlocal in_flight
        if in_flight >= settings.max_in_flight:
            raise HTTPException(503, f"overloaded: {settings.max_in_flight} requests already in progress on this "
                                     "replica; retry later", headers={"Retry-After": "1"})
        in_flight += 1
        try:
            result = await asyncio.wait_for(answer(request, x_session_id, client), settings.request_timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"request timed out after {settings.request_timeout_s} s") from None
        finally:
            in_flight -= 1
        if isinstance(result, ServeError):
            raise result
        return result

    def openapi_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = app.openapi()
            defs = ActRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs.pop("$defs", {}))
            try:
                defs["examples"] = [backend.service.example_request()]
            except Exception:  # noqa: BLE001 - an example is documentation; never break the schema
                log.exception("could not build the request example")
            components["ActRequest"] = defs
        return app.openapi_schema  # type: ignore[return-value]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_auth)
    async def openapi() -> JSONResponse:
        return JSONResponse(openapi_schema())

    @app.get("/docs", include_in_schema=False, dependencies=docs_auth)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{API_TITLE} - docs")

    app.state.openapi_schema = openapi_schema
    return app

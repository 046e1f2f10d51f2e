"""The HTTP API (FastAPI), shared by the Ray Serve deployment and a plain uvicorn server.

Routes: ``POST /v1/act``, ``GET /v1/models``, ``GET /v1/health`` (the only one without the API
key), ``GET /docs`` + ``GET /openapi.json`` (behind the key unless ``public_docs``).

Robustness, in the order a request meets it:

* :class:`BodySizeLimit` (pure ASGI): a body over ``max_body_bytes`` is a 413 before anything
  parses it (the Content-Length header, or the bytes as they stream in);
* the API key (``X-API-Key: <key>`` or ``Authorization: Bearer <key>``): 401 otherwise;
* validation: 422 with the field and the reason, never echoing the input (so NaN/inf, which
  cannot be written as JSON, answer 422 and not 500);
* the policy runs under ``request_timeout_s`` (504 past it); Serve's bounded queue answers
  503 before a request gets here (:mod:`serve.deployment`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serve.auth import ApiKeyVerifier
from serve.errors import ServeError
from serve.policy_service import PolicyService, PreparedRequest
from serve.schemas import SESSION_PATTERN, ActRequest, ActResponse, Health, ModelInfo

API_TITLE = "raytrade policy service"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiSettings:
    verifier: ApiKeyVerifier
    max_body_bytes: int = 4 * 2**20
    request_timeout_s: float = 10.0
    public_docs: bool = False


class Backend(Protocol):
    """What the routes call: the service (prepare, info) plus how prepared requests run."""

    service: PolicyService

    async def run(self, prepared: PreparedRequest) -> ActResponse | ServeError: ...

    async def health(self) -> float: ...


class DirectBackend:
    """Runs each request on its own, in the event loop (the plain uvicorn server, tests)."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service

    async def run(self, prepared: PreparedRequest) -> ActResponse | ServeError:
        return self.service.run([prepared])[0]

    async def health(self) -> float:
        return self.service.health_check()


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


def create_api(backend: Backend, settings: ApiSettings) -> FastAPI:
    """The FastAPI app over ``backend`` (see the module docstring)."""
    app = FastAPI(title=API_TITLE, version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Actions of a trained raytrade policy. Every route but /v1/health needs the "
                              "API key: `X-API-Key: <key>` or `Authorization: Bearer <key>`.")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    async def require_api_key(key: str | None = Security(key_header),
                              token: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if not settings.verifier.check(key or (token.credentials if token else None)):
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_api_key)]
    docs_auth = [] if settings.public_docs else auth

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(exc.errors())}, 422)

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        detail: Any = exc.detail() if hasattr(exc, "detail") else str(exc)
        return JSONResponse({"detail": detail}, exc.status_code)

    @app.get("/v1/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        """Liveness and readiness: 200 when the model runs a forward pass, else 503. No API key."""
        try:
            await backend.health()
        except Exception:  # noqa: BLE001 - any failure is "unhealthy"; details go to the log only
            log.exception("health check failed")
            return JSONResponse(Health(status="unhealthy", detail="the model cannot run a forward pass").model_dump(),
                                503)
        return Health(status="ok")

    @app.get("/v1/models", response_model=ModelInfo, dependencies=auth)
    async def models() -> ModelInfo:
        """The loaded policy: version, env id and config, observation spec, actions, training run."""
        return backend.service.info()

    @app.post("/v1/act", response_model=ActResponse, dependencies=auth,
              responses={401: {}, 409: {}, 413: {}, 422: {}, 503: {}, 504: {}})
    async def act(body: ActRequest,
                  x_session_id: str | None = Header(None, pattern=SESSION_PATTERN,
                                                    description="Routes a session to one replica; "
                                                                "the same as body.session_id.")) -> Any:
        """Decisions for recent bars plus the position state (see the request schema)."""
        prepared = backend.service.prepare(body, x_session_id)
        try:
            result = await asyncio.wait_for(backend.run(prepared), settings.request_timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"request timed out after {settings.request_timeout_s} s") from None
        if isinstance(result, ServeError):
            raise result
        return result

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_auth)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_auth)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{API_TITLE} - docs")

    return app

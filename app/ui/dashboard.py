"""``raytrade dashboard``: a FastAPI app of a few pages and a JSON API (:mod:`app.ui.dashboard_data`).

Pages (HTML in ``app/ui/static``, drawn in the browser with TradingView Lightweight Charts,
vendored under ``static/vendor`` with its licence: no CDN, works offline):

* ``/`` runs (MLflow, joined with run directories), pick two to compare;
* ``/run?id=`` one run: key metrics, learning curves, parameters, its backtests and studies
  (``raytrade evaluate STUDY RUN``: notes, table, plot);
* ``/compare?a=&b=`` two runs: curves overlaid, metrics and the parameters that differ;
* ``/explorer?run=&backtest=&symbol=`` a backtest bar by bar: candles with buy/sell marks,
  action probabilities, value estimate, position; equity vs buy-and-hold and the index;
  the arrow keys step through bars (shift: to the next trade); the symbol picker filters by a
  metric.

* ``/trader?account=`` a live (or paper) trader: equity, positions per symbol book, orders with
  their states, the latest decisions and events, the kill switch; refreshed every 10 s, read
  from its SQLite state, read-only (:mod:`app.ui.trader_view`).

Auth: :mod:`app.ui.dashboard_auth` (Serve's API-key scheme; a session cookie for browsers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from app.errors import RaytradeError
from app.ui import dashboard_data as data
from app.ui import trader_view
from app.ui.dashboard_auth import COOKIE, ApiKeyVerifier, Sessions

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/run": "run.html", "/compare": "compare.html", "/explorer": "explorer.html",
         "/trader": "trader.html"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
LOGIN_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>raytrade: sign in</title>
<link rel="stylesheet" href="/static/style.css"><link rel="icon" href="data:,"></head><body><main class="login"><h1>raytrade dashboard</h1>
<p>{message}</p><form method="post" action="/login"><label>API key
<input type="password" name="key" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button></form></main></body></html>"""


def create_app(src: data.Sources, verifier: ApiKeyVerifier, sessions: Sessions | None = None) -> FastAPI:
    sessions = sessions or Sessions()
    app = FastAPI(title="raytrade dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def authenticated(request: Request) -> bool:
        header = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        return (verifier.check(header or bearer) if (header or bearer)
                else sessions.valid(request.cookies.get(COOKIE)))

    def require_key(request: Request) -> None:
        if not authenticated(request):
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return HTMLResponse(LOGIN_HTML.format(message="Sign in with the dashboard's API key."), 401)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    def login_page() -> HTMLResponse:
        return HTMLResponse(LOGIN_HTML.format(message="Sign in with the dashboard's API key."))

    @app.post("/login")
    async def login(request: Request) -> Any:
        # a urlencoded form, parsed here (FastAPI's Form needs python-multipart, not a dependency)
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        if not verifier.check(key):
            return HTMLResponse(LOGIN_HTML.format(message="That key is not the dashboard's."), 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sessions.open(), httponly=True, samesite="strict", max_age=int(sessions.ttl_s))
        return response

    @app.post("/logout")
    def logout(request: Request) -> Any:
        sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    for route, page in PAGES.items():
        app.add_api_route(route, _page(page), methods=["GET"], dependencies=[Depends(require_key)],
                          include_in_schema=False)

    auth = [Depends(require_key)]

    @app.get("/api/runs", dependencies=auth)
    def runs() -> Any:
        return _answer(data.list_runs, src)

    @app.get("/api/runs/{ref}", dependencies=auth)
    def run(ref: str) -> Any:
        return _answer(data.run_detail, src, ref)

    @app.get("/api/runs/{run_name}/studies", dependencies=auth)
    def studies(run_name: str) -> Any:
        return _answer(data.studies, src, run_name)

    @app.get("/api/runs/{run_name}/studies/{study}/plot.png", dependencies=auth)
    def study_plot(run_name: str, study: str) -> Any:
        return FileResponse(_answer(data.study_plot, src, run_name, study), media_type="image/png")

    @app.get("/api/trader", dependencies=auth)
    def traders() -> Any:
        return {"state_dir": str(src.trader_dir), "accounts": trader_view.accounts(src.trader_dir)}

    @app.get("/api/trader/{account}", dependencies=auth)
    def trader(account: str) -> Any:
        return _answer(trader_view.snapshot, src.trader_dir, account)

    @app.get("/api/compare", dependencies=auth)
    def compare(a: str, b: str) -> Any:
        return _answer(data.compare, src, a, b)

    @app.get("/api/backtests/{run_name}/{backtest}/symbols", dependencies=auth)
    def symbols(run_name: str, backtest: str) -> Any:
        return _answer(data.symbol_table, src, run_name, backtest)

    @app.get("/api/backtests/{run_name}/{backtest}/symbol/{symbol:path}", dependencies=auth)
    def symbol(run_name: str, backtest: str, symbol: str) -> Any:
        return _answer(data.symbol_detail, src, run_name, backtest, symbol)

    return app


def _page(name: str) -> Any:
    def page() -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html")
    return page


def _answer(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except data.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except RaytradeError as exc:
        raise HTTPException(502, str(exc)) from exc

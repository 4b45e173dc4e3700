"""The ASGI application: the API surfaces, provider webhooks, and errors in each surface's format."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount, Router
from starlette.types import Message, Receive, Scope, Send

from omnirelay import __version__, logs
from omnirelay.api import (
    account_api,
    admin,
    docs,
    history,
    messente,
    number_lookup,
    phonebook,
    routing,
    twilio,
    verification,
)
from omnirelay.api.errors import error_response
from omnirelay.api.whatsapp_templates import install as install_whatsapp_templates
from omnirelay.channels.base import HasWebhookRoutes
from omnirelay.console import routes as console_routes
from omnirelay.runtime import Runtime
from omnirelay.store.database import StoreUnavailable

log = logging.getLogger(__name__)

# path prefix -> how errors look there; the first match wins, Messente's format is the default.
ErrorFormatter = Callable[[Request, int, str], Response]


def messente_error(_request: Request, status: int, detail: str) -> Response:
    code = {404: "101", 403: "102", 401: "103", 405: "107"}.get(status)
    if code is None:
        code = "104" if status >= 500 else "105"
    return error_response(code, detail, status=status)


RETRY_AFTER_SECONDS = 5  # what a 503 suggests; about the database timeout

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class Gateway(FastAPI):
    """FastAPI for the docs, health, metrics and provider webhooks; the API surfaces' own routes
    are served straight from here, past FastAPI's middleware stack (exit stacks, telemetry, the
    exception middleware: about an eighth of the process's time under load). Their errors are
    answered by the same handlers as FastAPI's, so nothing a client sees changes."""

    fast_routes_by_method: dict[str, list[routing.LeanRoute]]
    fast_errors: list[tuple[type[Exception], ErrorHandler]]
    # [access_log]: off costs one attribute test per request.
    access_log: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
        elif self.access_log:
            await self._logged(scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # uvicorn's answer when the app fails before it answered

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._serve(scope, receive, recording)
        finally:
            logs.log_access(scope, status, time.perf_counter() - started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only routes of this method can match in full; a path that matches a route of another
        # method goes on to FastAPI, which answers 405 in the surface's format.
        for route in self.fast_routes_by_method.get(scope["method"], ()):
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                scope["app"] = self
                scope["route"] = route  # as Starlette's router notes it (the access log's path)
                response = await self._answer(route, Request(scope, receive))
                await response(scope, receive, send)
                return
        answered = False

        async def tracked(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True

        try:
            await super().__call__(scope, receive, tracked)
        except Exception:
            # Starlette's outermost middleware has logged it (through `unexpected`) and answered,
            # then re-raises it for the server, and uvicorn would log it again and close the
            # connection. Only a response cut short needs that.
            if not answered:
                raise

    def formatter_for(self, path: str) -> ErrorFormatter:
        for prefix, formatter in self.state.error_formatters:
            if path.startswith(prefix):
                return formatter  # type: ignore[no-any-return]
        return messente_error

    def refusal(self, path: str, status: int, detail: str) -> Response:
        """An answer for a request the HTTP server refused before it reached the app (too
        large, too slow), in the format of the surface its path belongs to."""
        scope: Scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                 "headers": [], "scheme": "http", "server": None, "root_path": ""}
        return self.formatter_for(path)(Request(scope), status, detail)

    async def _answer(self, route: routing.LeanRoute, request: Request) -> Response:
        try:
            return await route.operation.endpoint(request)
        except Exception as exc:
            for kind, handler in self.fast_errors:
                if isinstance(exc, kind):
                    return await handler(request, exc)
            raise


def create_app(runtime: Runtime, *, manage_runtime: bool = True, workers: bool = True) -> Gateway:
    """`manage_runtime`: start the channels (and the workers, unless `workers` is false) with the
    app and stop them with it."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start(workers=workers)
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.stop()
            await app.state.lookup_provider.close()

    app = Gateway(
        title="omnirelay",
        version=__version__,
        description="Self-hosted omnichannel messaging gateway. Wire-compatible with Messente's "
                    "Omnichannel API (under /v1, and at / for SDKs configured without /v1) and "
                    "Twilio's Messages API (under /2010-04-01).",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py, from local assets
        redoc_url=None,
    )
    app.access_log = runtime.settings.access_log
    app.state.runtime = runtime
    app.state.error_formatters = []
    app.router.routes.extend(messente.build_routes("/v1"))
    app.router.routes.extend(messente.build_routes(include_in_schema=False))
    app.router.routes.extend(history.build_routes("/v1"))
    app.router.routes.extend(account_api.build_routes())  # statistics, balance, pricing
    app.state.error_formatters.extend(
        (prefix, account_api.statistics_formatter) for prefix in account_api.STATISTICS_PREFIXES)
    # /verify/start and /verify/pin; the service holds the clock tests may replace
    app.state.number_verification = verification.NumberVerification(runtime)
    app.router.routes.extend(verification.build_routes())
    phonebook.install(app)  # under /v1 and at /, errors in the Phonebook's format
    install_whatsapp_templates(app, runtime)  # under /v1 and at /
    number_lookup.install(app, runtime)  # POST /hlr/sync, errors in the lookup's format
    if runtime.settings.admin.token:  # without one there is no operator API at all: 404
        app.router.routes.extend(admin.build_routes())
    twilio.install(app, runtime)
    routing.document(app)  # the surfaces are Starlette routes, which FastAPI does not document
    docs.install(app)
    if runtime.settings.console.enabled:
        console_routes.install(app, runtime)  # /console: a client of the endpoints above

    for name, provider in runtime.providers.items():
        if hasattr(provider, "routes"):
            routed: HasWebhookRoutes = provider  # type: ignore[assignment]
            app.router.routes.append(Mount(f"/webhooks/{name}", app=Router(routed.routes())))

    def formatter_for(request: Request) -> ErrorFormatter:
        return app.formatter_for(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = {404: "no such resource", 405: f"method {request.method} not allowed here"}
        response = formatter_for(request)(request, exc.status_code,
                                          detail.get(exc.status_code, str(exc.detail)))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path can have
            # a route per method.
            allowed = routing.allowed_methods(app.router.routes, request.scope)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return formatter_for(request)(request, 400, "invalid request")

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> Response:
        # One line, no traceback: the supervised loops report the outage in detail already.
        log.warning("%s %s: database unavailable (%s); answered 503", request.method,
                    logs.route_template(request.scope) or "-", exc)
        surface = "twilio" if request.url.path.startswith("/2010-04-01") else "messente"
        runtime.metrics.store_unavailable.labels(surface).inc()
        response = formatter_for(request)(
            request, 503, "the database is unavailable; nothing was stored, try again shortly")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # The route's template, not the path: a path can carry a phone number.
        log.exception("unhandled error on %s %s", request.method,
                      logs.route_template(request.scope) or "-")
        return formatter_for(request)(request, 500, "internal error; nothing was stored")

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        """Liveness: the process runs and serves HTTP. It touches nothing else, so a restart
        policy keyed on it does not kill a process that waits out a database outage."""
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> Response:
        """Readiness: 200 when the database takes a write and every supervised loop runs, else
        503; the body says which part is missing either way."""
        report = await runtime.readiness()
        report["status"] = "ready" if report["ready"] else "not ready"
        return Response(orjson.dumps(report), status_code=200 if report["ready"] else 503,
                        media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus text format. Like /health it needs no credentials; bind the server to an
        address only your monitoring reaches, or filter /metrics at the proxy."""
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.fast_routes_by_method = {}
    for route in app.router.routes:
        if isinstance(route, routing.LeanRoute):
            for method in route.methods or ():
                app.fast_routes_by_method.setdefault(method, []).append(route)
    # The most specific first, as Starlette would match them; the rest is FastAPI's.
    app.fast_errors = [(StoreUnavailable, store_unavailable),  # type: ignore[list-item]
                       (StarletteHTTPException, http_error),  # type: ignore[list-item]
                       (Exception, unexpected)]
    return app

"""The FastAPI application: TMF641 v4 resources, the catalog, the workflow extensions,
operations endpoints; errors as TMF `Error` bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from serviceorders.api import (
    audit,
    bounds,
    catalog,
    console,
    docs,
    drafts,
    errors,
    fulfilment,
    hub,
    ops,
    orders,
    review,
    service_inventory,
    service_orders,
)
from serviceorders.api.context import ApiContext
from serviceorders.api.errors import ApiError, error_body
from serviceorders.api.middleware import HttpMiddleware
from serviceorders.api.request_log import RequestLog
from serviceorders.support import limits
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = limits.MAX_BODY_BYTES  # 1 MiB; see docs/security.md

DESCRIPTION = """
TM Forum **TMF641 Service Ordering v4** served by an event-sourced engine.

* `serviceOrder`: POST submits a complete order into the review queue (`acknowledged`);
  GET reads the projections (a client always reads its own writes); PATCH revises per state;
  DELETE archives final orders.
* `cancelServiceOrder`: cancellation requests, decided by a manager.
* The specification catalog (TMF633 shape) and the workflow beyond TMF641 under `/api/v1`:
  capture drafts, the review queue, decisions with `If-Match`, fulfilment, history.

Authentication: `Authorization: Bearer KEY`; every error is a TMF `Error` body.
"""


class BodyLimit(HttpMiddleware):
    """413 for bodies over the limit, counted as they stream in (Content-Length or not)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting, send)
        except* _TooLarge:  # BaseHTTPMiddleware's receive wraps it in an exception group
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        import json

        body = json.dumps(
            error_body(
                413,
                "payload_too_large",
                "Payload Too Large",
                f"the body exceeds {self.limit} bytes",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class NulInPath:
    """404 for a path with a NUL character: no resource has one (and PostgreSQL could not
    even look such an id up)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "\x00" in scope.get("path", ""):
            await ApiError(
                404, "not_found", "Not Found", "no resource at a path with a NUL character"
            ).response()(scope, receive, send)
            return
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        # The workflow's filters refuse NUL outright (the TMF641 lists answer an empty page:
        # a NUL matches no stored value).
        if scope.get("path", "").startswith("/api/v1/") and (b"%00" in query or b"\x00" in query):
            await ApiError(
                400,
                "invalid_text",
                "Bad Request",
                "query parameters must not contain NUL (U+0000) characters",
            ).response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(ctx: ApiContext, metrics: ops.Metrics | None = None) -> FastAPI:
    """`metrics`: the process's (`serve` adds the intake's and the projector's); by
    default the HTTP metrics and the database gauges of the API."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(
        title="serviceorders — TMF641 Service Ordering",
        version="4.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )  # docs.install: the offline pages
    app.state.ctx = ctx
    app.state.metrics = metrics if metrics is not None else ops.Metrics.for_api(ctx)
    errors.install(app)
    app.include_router(service_orders.router)
    app.include_router(service_orders.cancel_router)
    app.include_router(hub.router)
    # TMF638 Service Inventory, read-only; a service's history under /api/v1 (issue 20).
    app.include_router(service_inventory.router)
    app.include_router(service_inventory.history_router)
    app.include_router(catalog.router)
    # The workflow beyond TMF641 under /api/v1: capture, review, fulfilment, the order's reads.
    for workflow in (drafts, review, fulfilment, orders):
        app.include_router(workflow.router)
    app.include_router(audit.router)
    app.include_router(ops.router)
    app.mount(console.STATIC_PATH, console.static_files(), name="console-static")
    app.include_router(console.router)  # the web console under /console, and / -> /console/
    docs.install(app)  # /docs and /redoc from the installed package; the bodies' schemas
    app.add_middleware(ops.MetricsMiddleware)
    app.add_middleware(BodyLimit)
    app.add_middleware(NulInPath)
    app.add_middleware(audit.AccessLog)  # records every auditor request
    app.add_middleware(bounds.Bounds)  # headers, path, query: 431 / 400 above a bound
    # outermost: the request's correlation id and log context; the HTTP access log
    app.add_middleware(RequestLog, access_log=ctx.settings.access_log)
    return app

"""Liveness, readiness and Prometheus metrics for operators."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from .common import ctx_of
from .errors import StatusOf

router = APIRouter(tags=["operations"])
READY_MAX_LAG = 10_000  # events; beyond that the read models are too stale to serve


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("serviceorders_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("serviceorders_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)
        self.lag = Gauge("serviceorders_projection_lag_events",
                         "Events the projection is behind the log head", ["projection"],
                         registry=self.registry)
        self.position = Gauge("serviceorders_projection_position",
                              "Log position a projection has reached", ["projection"],
                              registry=self.registry)
        self.hub_backlog = Gauge("serviceorders_hub_backlog",
                                 "Notifications not yet delivered to a hub listener",
                                 ["listener", "state"], registry=self.registry)


class MetricsMiddleware:
    """Request counts and latency per route (plain ASGI: Starlette's BaseHTTPMiddleware
    costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sending = StatusOf(send)
        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics = scope["app"].state.metrics
            metrics.requests.labels(scope["method"], path, str(sending.status)).inc()
            metrics.latency.labels(scope["method"], path).observe(
                time.perf_counter() - started)


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: the database answers and projections keep up")
def ready(request: Request) -> JSONResponse:
    try:
        status = _projection_status(request)
    except Exception as e:
        return JSONResponse({"status": "unavailable", "reason": type(e).__name__},
                            status_code=503)
    worst = max((s.lag for s in status), default=0)
    body = {"status": "ok" if worst <= READY_MAX_LAG else "lagging",
            "projections": {s.name: {"position": s.position, "lag": s.lag} for s in status}}
    return JSONResponse(body, status_code=200 if worst <= READY_MAX_LAG else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    try:
        for s in _projection_status(request):
            registry.lag.labels(s.name).set(s.lag)
            registry.position.labels(s.name).set(s.position)
        for listener in _listeners(request):
            registry.hub_backlog.labels(listener["id"], listener["state"]).set(
                listener["pending"])
    except Exception:  # metrics still answer when the database does not
        pass
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)


def _listeners(request: Request) -> list[dict]:  # type: ignore[type-arg]
    from ..projections.hub import HubStore  # noqa: TID252

    with ctx_of(request).read() as models:
        return HubStore(models.db).list()


def _projection_status(request: Request):  # type: ignore[no-untyped-def]
    from ..bootstrap import event_mapper
    from ..projections.runner import Projector

    with ctx_of(request).read() as models:
        return Projector(models.db, event_mapper()).status()

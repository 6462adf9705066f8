"""Liveness, readiness and Prometheus metrics for operators."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from serviceorders.api.common import ctx_of
from serviceorders.api.errors import StatusOf
from serviceorders.api.middleware import HttpMiddleware
from serviceorders.metrics import DatabaseCollector, EngineMetrics, multiprocess_registry
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from serviceorders.api.context import ApiContext
    from serviceorders.projections.runner import Status

router = APIRouter(tags=["operations"])
READY_MAX_LAG = 10_000  # events; beyond that the read models are too stale to serve


class Metrics:
    """The API process's metrics (the engine's, defined in `serviceorders.metrics`): its
    HTTP instruments (in `serve`, also the intake's and the projector's) and the database
    gauges read at each scrape. With `multiprocess` (a worker of `api --workers N`) a scrape
    sums what every worker recorded."""

    def __init__(
        self,
        engine: EngineMetrics | None = None,
        database: DatabaseCollector | None = None,
        multiprocess: bool = False,
    ) -> None:
        self.engine = engine if engine is not None else EngineMetrics(http=True)
        self.registry = self.engine.registry
        self.database = database
        self.multiprocess = multiprocess
        if database is not None and not multiprocess:
            self.registry.register(database)

    @classmethod
    def for_api(
        cls,
        ctx: ApiContext,
        engine: EngineMetrics | None = None,
        multiprocess: bool = False,
        **database: bool,
    ) -> Metrics:
        """`database`: which database gauges besides the projections' and the hub's."""

        @contextmanager
        def open_db() -> Iterator[Any]:
            with ctx.read() as models:
                yield models.db

        return cls(
            engine,
            DatabaseCollector(open_db, **{"projections": True, "hub": True, **database}),
            multiprocess=multiprocess,
        )

    def scrape(self) -> bytes:
        if self.multiprocess:
            return generate_latest(
                multiprocess_registry([self.database] if self.database is not None else [])
            )
        return generate_latest(self.registry)


class MetricsMiddleware(HttpMiddleware):
    """Request counts and latency per route (plain ASGI: Starlette's BaseHTTPMiddleware
    costs a task and a stream per request)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        sending = StatusOf(send)
        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics = scope["app"].state.metrics
            metrics.engine.request_done(
                scope["method"], path, str(sending.status), time.perf_counter() - started
            )


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: the database answers and projections keep up")
def ready(request: Request) -> JSONResponse:
    try:
        status = _projection_status(request)
    except Exception as e:
        return JSONResponse({"status": "unavailable", "reason": type(e).__name__}, status_code=503)
    worst = max((s.lag for s in status), default=0)
    body = {
        "status": "ok" if worst <= READY_MAX_LAG else "lagging",
        "projections": {s.name: {"position": s.position, "lag": s.lag} for s in status},
    }
    return JSONResponse(body, status_code=200 if worst <= READY_MAX_LAG else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.scrape(), media_type=CONTENT_TYPE_LATEST)


def _projection_status(request: Request) -> list[Status]:
    from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
    from serviceorders.projections.runner import Projector

    with ctx_of(request).read() as models:
        return Projector(models.db, PydanticMapper(transcoder=OrjsonTranscoder())).status()

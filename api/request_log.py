"""Each request's log context, and the HTTP access log (docs/operations.md, "Logs").

`RequestLog` (outermost middleware) decides the request's correlation id once: the
`X-Correlation-Id` header, else the trace id of a valid W3C `traceparent` header, else a new
one. It keeps it in the request's state (`command_context` puts it on the events) and binds
it, with the trace id, to every record logged while the request is served. With
SERVICEORDERS_ACCESS_LOG=yes it also logs one INFO record per request: method, path (never
the query string: its values may be secrets or personal data), status, duration and
correlation id; never a header (the Authorization and cookies stay out).
"""

from __future__ import annotations

import logging
import time

from serviceorders.api.errors import StatusOf
from serviceorders.api.middleware import HttpMiddleware
from serviceorders.support import logs
from serviceorders.support.limits import MAX_CORRELATION_ID
from starlette.types import ASGIApp, Receive, Scope, Send

access = logging.getLogger("serviceorders.access")

MAX_CORRELATION = MAX_CORRELATION_ID  # longer: refused (431) by api/bounds.py


def correlation_of(headers: dict[bytes, bytes]) -> tuple[str, str | None]:
    """(correlation id, trace id) from the request's headers."""
    given = headers.get(b"x-correlation-id", b"").decode("latin-1")[:MAX_CORRELATION]
    return logs.correlation(given or None, headers.get(b"traceparent"))


class RequestLog(HttpMiddleware):
    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        super().__init__(app)
        self.access_log = access_log

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        correlation, trace = correlation_of(dict(scope.get("headers") or ()))
        scope.setdefault("state", {})["correlation_id"] = correlation
        token = logs.bind_fields(correlation_id=correlation, trace_id=trace)
        started = time.perf_counter()
        sending = StatusOf(send)  # 500 unless an answer starts
        try:
            await self.app(scope, receive, sending)
        finally:
            if self.access_log:
                route = scope.get("route")
                status = sending.status
                fields = {
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                }
                if getattr(route, "path", None):
                    fields["route"] = route.path  # type: ignore[union-attr]
                access.info(
                    "%s %s %d %.1f ms",
                    fields["method"],
                    fields["path"],
                    status,
                    fields["duration_ms"],
                    extra=fields,
                )
            logs.unbind(token)

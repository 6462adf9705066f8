"""Bounds on the request's headers, path and query string, checked before any handler runs.

The maxima are `serviceorders.support.limits` (docs/security.md, "Limits"). A header above its bound
is answered 431 naming the header, a path segment or query parameter above its bound 400
naming it: nothing is cut, nothing is written. (The HTTP server has already bounded the whole
header section: `serviceorders.httpserver`.)
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from serviceorders.api.errors import ApiError
from serviceorders.support.limits import (
    HEADER_MAXIMA,
    MAX_PATH,
    MAX_PATH_SEGMENT,
    MAX_QUERY_PARAMETERS,
    MAX_QUERY_STRING,
    MAX_QUERY_VALUE,
)
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send


def refusal(scope: Scope) -> tuple[int, str, str, str] | None:
    """(status, code, reason, message) when the request exceeds a bound, else None."""
    for name, value in scope.get("headers") or ():
        bound = HEADER_MAXIMA.get(name.decode("latin-1"))
        if bound is not None:
            # Characters as the application reads them (headers are latin-1).
            length = len(value.decode("latin-1"))
            if length > bound[1]:
                return (
                    431,
                    "header_too_large",
                    "Request Header Fields Too Large",
                    f"the {bound[0]} header is {length} characters; the limit is {bound[1]}",
                )
    path = scope.get("path", "")
    if len(path) > MAX_PATH:
        return (
            400,
            "path_too_long",
            "Bad Request",
            f"the path is {len(path)} characters; the limit is {MAX_PATH}",
        )
    for segment in path.split("/"):
        if len(segment) > MAX_PATH_SEGMENT:
            return (
                400,
                "path_too_long",
                "Bad Request",
                f"the path segment {segment[:40]!r}… is {len(segment)} characters; the "
                f"limit is {MAX_PATH_SEGMENT}",
            )
    query = scope.get("query_string", b"")
    if len(query) > MAX_QUERY_STRING:
        return (
            400,
            "query_too_long",
            "Bad Request",
            f"the query string is {len(query)} bytes; the limit is {MAX_QUERY_STRING}",
        )
    if query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if len(pairs) > MAX_QUERY_PARAMETERS:
            return (
                400,
                "query_too_long",
                "Bad Request",
                f"the query has {len(pairs)} parameters; the limit is {MAX_QUERY_PARAMETERS}",
            )
        for key, value in pairs:
            if len(value) > MAX_QUERY_VALUE:
                return (
                    400,
                    "query_too_long",
                    "Bad Request",
                    f"the query parameter {key[:40]!r} is {len(value)} characters; the "
                    f"limit is {MAX_QUERY_VALUE}",
                )
    return None


class Bounds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = refusal(scope)
            if refused is not None:
                status, code, reason, message = refused
                await ApiError(status, code, reason, message).response()(scope, receive, send)
                return
        try:
            await self.app(scope, receive, send)
        except* ClientDisconnect:  # e.g. cut by the server's body deadline: nobody to answer
            pass

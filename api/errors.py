"""Every error as a TMF `Error` body, mapped once for the whole API."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from serviceorders.domain.errors import DomainError, ValidationFailed, WriteTimeout, answer_for
from serviceorders.domain.values import Problem
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Send

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP refusal with a TMF Error body."""

    def __init__(
        self,
        status: int,
        code: str,
        reason: str,
        message: str = "",
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message or reason)
        self.status, self.code, self.reason, self.message = status, code, reason, message
        self.headers = headers or {}
        self.details = details

    def response(self) -> JSONResponse:
        """This refusal as the answer: a TMF Error (`error_body`) with its headers."""
        body = error_body(self.status, self.code, self.reason, self.message, self.details)
        return JSONResponse(body, status_code=self.status, headers=self.headers or None)


def error_body(
    status: int, code: str, reason: str, message: str = "", details: Any = None
) -> dict[str, Any]:
    """A TMF `Error`. Its `reason` is always the error's `code` (one spelling for programs,
    at every door: issue 16); `reason` here is the HTTP reason phrase, the message when
    there is none."""
    body: dict[str, Any] = {
        "code": code,
        "reason": code,
        "message": message or reason,
        "status": str(status),
        "@type": "Error",
    }
    if details is not None:
        body["details"] = details
    return body


def problem_view(problem: Problem) -> dict[str, Any]:
    """A validation problem on the wire: camelCase as every TMF JSON field (`itemId`), the
    same in TMF Errors, reviewer flags and /api/v1."""
    return {
        "code": problem.code,
        "message": problem.message,
        "itemId": problem.item_id,
        "characteristic": problem.characteristic,
        "structural": problem.structural,
    }


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def allowed_methods(request: Request, named: str = "") -> list[str]:
    """Every method some route serves at the request's path (plus `named`, Starlette's
    `Allow`, which names only the first route that matched). Read from the app's OpenAPI
    document: FastAPI keeps included routers nested, the paths there are flat."""
    table = getattr(request.app.state, "methods_by_path", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
                {method.upper() for method in operations if method in HTTP_METHODS},
            )
            for path, operations in request.app.openapi()["paths"].items()
        ]
        request.app.state.methods_by_path = table
    methods = {m.strip() for m in named.split(",") if m.strip()}
    for pattern, served in table:
        if pattern.match(request.url.path):
            methods |= served
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return e.response()

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, e: DomainError) -> JSONResponse:
        # The one table every door answers from (domain/errors.py `answer_for`).
        answer = answer_for(e)
        details = None
        if isinstance(e, ValidationFailed):
            details = [problem_view(p) for p in e.problems]
        return ApiError(
            answer.http_status, answer.code, answer.code, answer.message(e), details=details
        ).response()

    @app.exception_handler(WriteTimeout)
    async def write_timeout(_: Request, e: WriteTimeout) -> JSONResponse:
        # Nothing was written and the store's lock was released: the client may retry.
        log.warning("write timed out: %s", e)
        answer = answer_for(e)
        return ApiError(
            answer.http_status,
            answer.code,
            answer.code,
            f"the write did not complete in time and nothing was written ({e}); retry",
            headers={"Retry-After": "1"},
        ).response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "location": ".".join(str(p) for p in err.get("loc", ())),
                "message": err.get("msg", "invalid"),
            }
            for err in e.errors()
        ]
        listed = "; ".join(f"{p['location']}: {p['message']}" for p in problems)
        return ApiError(400, "invalid_request", "Bad Request", listed, details=problems).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        reason = {404: "Not Found", 405: "Method Not Allowed"}.get(e.status_code, "Error")
        message = str(e.detail) if e.detail else reason
        headers = dict(getattr(e, "headers", None) or {})
        if e.status_code == 404 and message == "Not Found":
            message = f"no resource at {request.url.path}"
        if e.status_code == 405:
            # Starlette names only the first route that matched the path; one path has
            # several routes here (GET and POST /serviceOrder), so list them all.
            allowed = allowed_methods(request, headers.get("Allow", ""))
            headers["Allow"] = ", ".join(allowed)
            message = (
                f"{request.method} is not allowed on {request.url.path}: use {', '.join(allowed)}"
            )
        return ApiError(
            e.status_code,
            reason.lower().replace(" ", "_"),
            reason,
            message,
            headers=headers or None,
        ).response()

    @app.exception_handler(Exception)
    async def unexpected(_: Request, e: Exception) -> JSONResponse:
        # Never leak internals: the log has the details, the client a reference.
        log.exception("unexpected error")
        return ApiError(
            500,
            "internal_error",
            "Internal Server Error",
            "the server could not complete the request",
        ).response()


class StatusOf:
    """An ASGI `send` that remembers the answer's status: 500 until an answer starts (an
    exception left the app)."""

    def __init__(self, send: Send) -> None:
        self.send, self.status = send, 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)

"""Request plumbing shared by the routes: the context, the acting actor, bodies, hrefs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Request
from pydantic import BaseModel, BeforeValidator, ValidationError
from serviceorders.api.context import ApiContext
from serviceorders.api.errors import ApiError
from serviceorders.api.request_log import correlation_of
from serviceorders.domain.application import Outcome
from serviceorders.domain.commands import CreationCommand, OrderCommand
from serviceorders.domain.values import Actor, Channel, CommandContext, Source
from serviceorders.tmf.tmf641_in import find_nul, json_limits

M = TypeVar("M", bound=BaseModel)
JSON_TYPES = ("application/json", "application/merge-patch+json")


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx


def actor_of(request: Request) -> Actor:
    actor = getattr(request.state, "actor", None)
    if actor is None:
        actor = ctx_of(request).auth.actor(request)
        request.state.actor = actor
    return actor


def command_context(request: Request) -> CommandContext:
    # Decided once per request by the RequestLog middleware: X-Correlation-Id, else the
    # W3C traceparent's trace id, else a new one (api/request_log.py).
    correlation = getattr(request.state, "correlation_id", None)
    if correlation is None:  # an app without the middleware
        correlation = correlation_of({k.lower(): v for k, v in request.headers.raw})[0]
    # The ids' lengths were checked by api/bounds.py (431 above serviceorders.support.limits).
    return CommandContext(
        actor=actor_of(request),
        source=Source(channel=Channel.API, request_id=request.headers.get("x-request-id")),
        correlation_id=correlation,
        causation_id=(request.headers.get("x-causation-id") or None),
    )


async def read_body(request: Request) -> None:
    """Router dependency: read the body on the event loop, so that the handlers can be
    plain functions, which FastAPI runs in its thread pool: a handler waiting on the
    database then never holds up the other requests."""
    await request.body()


def request_body(request: Request) -> bytes:
    """The body `read_body` read (Starlette keeps it on the request)."""
    return getattr(request, "_body", b"")


async def body_as(request: Request, model: type[M], media: tuple[str, ...] = JSON_TYPES) -> M:
    await request.body()
    return body_of(request, model, media)


def body_of(request: Request, model: type[M], media: tuple[str, ...] = JSON_TYPES) -> M:
    """The JSON body validated as `model`: 415 for another media type, 400 listing every
    problem otherwise (the body was read by `read_body`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in media:
        raise ApiError(
            415,
            "unsupported_media_type",
            "Unsupported Media Type",
            f"send {' or '.join(media)}, not {content_type or 'no content type'}",
        )
    raw = request_body(request)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, "invalid_json", "Bad Request", f"the body is not JSON: {e}") from e
    except RecursionError:
        raise ApiError(400, "invalid_json", "Bad Request", "the body nests too deeply") from None
    except ValueError as e:  # e.g. a number of more than 4,300 digits
        raise ApiError(400, "invalid_json", "Bad Request", f"the body is not JSON: {e}") from e
    limit = json_limits(data)
    if limit is not None:
        raise ApiError(400, "invalid_json", "Bad Request", limit)
    where = find_nul(data)
    if where is not None:  # PostgreSQL cannot store it: refused at every door
        raise ApiError(
            400,
            "invalid_text",
            "Bad Request",
            f"{where}: text must not contain NUL (U+0000) characters",
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [
            {"location": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in e.errors()
        ]
        raise ApiError(
            400,
            "invalid_request",
            "Bad Request",
            "; ".join(f"{p['location']}: {p['message']}" for p in problems),
            details=problems,
        ) from e


def parse_uuid(value: str, what: str = "order") -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ApiError(404, "not_found", "Not Found", f"no {what} {value}") from None


def base_url(request: Request) -> str:
    """The root of every `href` and `Location`: SERVICEORDERS_PUBLIC_URL when set, else the
    address the client connected to (the listening socket's address and port, as the server
    reports it), never the `Host` header, which any client sets (docs/security.md)."""
    configured = ctx_of(request).base_url
    return (configured or connected_url(request)).rstrip("/")


def connected_url(request: Request) -> str:
    scheme = request.scope.get("scheme") or "http"
    server = request.scope.get("server")
    root = request.scope.get("root_path") or ""
    if not server or server[1] is None:  # a Unix socket: no address to name
        return f"{scheme}://localhost{root}"
    host, port = str(server[0]), int(server[1])
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{root}"


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(request: Request) -> int | frozenset[int] | None:
    """The versions `If-Match` accepts, for `ServiceOrders.handle` (a mismatch there is a
    412): None without the header or with `*`; otherwise every listed ETag (weak or not) that
    names a version. An ETag that names none matches no order (an empty set: 412)."""
    wanted = request.headers.get("if-match")
    if wanted is None or wanted.strip() == "*":
        return None
    versions = set()
    for tag in wanted.split(","):
        value = tag.strip().removeprefix("W/").strip('"')
        if value.isascii() and value.isdigit():
            versions.add(int(value))
    return frozenset(versions)


def check_if_match(request: Request, version: int) -> None:
    """412 when If-Match names none of `version`'s ETags: a route's check against the
    order as it read it (a command's own check is `ServiceOrders.handle`'s)."""
    expected = expected_version(request)
    if expected is not None and version not in (
        {expected} if isinstance(expected, int) else expected
    ):
        raise ApiError(
            412,
            "precondition_failed",
            "Precondition Failed",
            f"the order is at version {version} ({etag(version)}), not "
            f"{request.headers.get('if-match')}: reload it and try again",
        )


def handle(
    request: Request,
    command: CreationCommand | OrderCommand,
    expected: int | frozenset[int] | None = None,
) -> Outcome:
    """The one door: `command`, as the caller, through `ServiceOrders.handle` (which loads
    the order, checks `expected` (the If-Match: 412 when stale), seals personal data,
    applies the application's policies, saves and maps a store conflict); returns once the
    read models have the change, so that the next read sees it."""
    ctx = ctx_of(request)
    outcome = ctx.app.handle(command_context(request), command, expected_version=expected)
    ctx.sync()
    return outcome


def select_fields(
    doc: dict[str, Any], fields: str | None, always: tuple[str, ...]
) -> dict[str, Any]:
    if not fields:
        return doc
    wanted = {f.strip() for f in fields.split(",") if f.strip()} | set(always)
    return {k: v for k, v in doc.items() if k in wanted}


# --------------------------------------------------------------------------- paging
MAX_OFFSET = 1_000_000_000


def _integer_as_written(value: Any) -> Any:
    # Query strings are coerced leniently by default ("0.0" -> 0); an integer parameter is
    # digits with an optional sign, anything else is refused (400).
    if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d+\s*", value):
        raise ValueError("must be an integer")
    return value


QueryInt = Annotated[int, BeforeValidator(_integer_as_written)]


def page_of(offset: int, limit: int, max_limit: int) -> tuple[int, int]:
    """`offset` and `limit` as given: a negative one is refused (400 naming it); above what
    the stores can page, they are clamped (`limit` to `max_limit`)."""
    for name, value in (("offset", offset), ("limit", limit)):
        if value < 0:
            raise bad_parameter(name, f"must be 0 or more, not {value}")
    return min(offset, MAX_OFFSET), min(limit, max_limit)


def bad_parameter(name: str, problem: str) -> ApiError:
    """A 400 TMF Error naming the query parameter (never an empty 200 for a bad filter)."""
    return ApiError(
        400,
        "invalid_request",
        "Bad Request",
        f"{name}: {problem}",
        details=[{"location": f"query.{name}", "message": problem}],
    )


def one_of(name: str, value: str | None, allowed: Iterable[str]) -> str | None:
    """`value` if it is one of `allowed` (or None); else a 400 naming the parameter."""
    known = list(allowed)
    if value is not None and value not in known:
        raise bad_parameter(name, f"must be one of {', '.join(known)}, not {value!r}")
    return value

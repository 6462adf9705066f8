"""Audit reads under /api/v1: an order's history (timeline, as of, at a version, diff) and
the auditors' access log; the `AccessLog` middleware records every request an auditor
key makes (docs/audit.md).

Auditors only read: the domain gives the `auditor` role no command (`lifecycle.PERMISSIONS`),
so every write answers 403 whatever the route.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from serviceorders.api.common import (
    QueryInt,
    actor_of,
    command_context,
    ctx_of,
    etag,
    page_of,
    parse_uuid,
)
from serviceorders.api.errors import ApiError, StatusOf
from serviceorders.api.middleware import HttpMiddleware
from serviceorders.audit import access_log, history
from serviceorders.domain.errors import OrderNotFound
from serviceorders.domain.values import Actor, Role
from serviceorders.projections.queries import MAX_LIMIT
from serviceorders.support.isotime import parse as parse_time
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as StarletteRequest
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["workflow", "audit"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Invalid query: a version out of range, an instant before the "
        "order existed, a diff from a later to an earlier version, "
        "conflicting or malformed parameters (TMF Error)"
    },
    401: {"description": "No or unknown API key"},
    403: {"description": "The role may not read this"},
    404: {"description": "No such order"},
}

ACCESS_LOG_ROLES = frozenset({Role.AUDITOR, Role.OPERATOR})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# ------------------------------------------------------------------ parsing
def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", "Bad Request", message)


def parse_instant(value: str, name: str) -> datetime:
    """An RFC 3339 date-time with an offset (`Z` or +hh:mm). A `+` sent unencoded in a
    query string arrives as a space: it is read as the `+` it was."""
    text = value.strip().upper()
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text)
    try:
        when = parse_time(text)
    except ValueError:
        raise _bad(
            f"{name} must be an RFC 3339 date-time such as 2024-05-01T10:00:00Z, not {value!r}"
        ) from None
    if when.tzinfo is None:
        raise _bad(f"{name} needs a timezone offset (e.g. Z or +01:00): {value!r}")
    return when


def parse_version(value: str, name: str) -> int:
    if not re.fullmatch(r"\s*\d{1,9}\s*", value):
        raise _bad(f"{name} must be a whole number (a version), not {value!r}")
    return int(value)


def parse_flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise _bad(f"{name} must be true or false, not {value!r}")


# ------------------------------------------------------------------ history
@router.get(
    "/orders/{id}/history",
    summary="The order's history, as it was, or what changed",
    description=(
        "Replayed from the stored events alone (snapshots are not used). Readable by every "
        "role that reads orders, auditors included. One of:\n\n"
        "* no query: the **timeline**, oldest first: {version, type, timestamp, actor {id, "
        "role}, source {channel, topic, partition, offset, eventId, requestId}, "
        "correlationId, causationId, hash, prevHash, data (the event's own fields), "
        "stateAfter, summaryAfter {state, items {id: state}, flags, notes, revision, "
        "pointOfNoReturn, deleted}, documentKind, documentAfter}. documentAfter is the TMF641 "
        "ServiceOrder after the event (documentKind `tmf641`), or for a draft its canonical "
        "view (documentKind `draft`). `documents=false` leaves the documents out. "
        "X-Total-Count: the number of events.\n"
        "* `asOf=<RFC 3339 date-time with offset>` or `version=N`: the order **as it was** "
        "then: {orderId, version, latestVersion, asOf, event {version, type, timestamp, "
        "actor, hash} (the last event applied), state, summary, order (canonical view), "
        "documentKind, document}. asOf takes every event up to the first one recorded "
        "later; an instant before the order was created is a 400.\n"
        "* `diff=A,B` or `from=A&to=B`: **what changed** from version A to version B "
        "(0 <= A <= B; 0 is before the order existed): {orderId, from, to, latestVersion, "
        "changes [{op add|remove|replace, path (JSON Pointer over the canonical view: "
        "/state, /header/priority, /items/{itemId}/characteristics/{name}, /notes/0, "
        "/cancellation/reason, ...), before, after}], events (versions A+1..B)}.\n\n"
        "ETag: the order's current version, whatever the form (history only grows); "
        "`If-None-Match` with it answers 304. Unknown order: 404; bad or conflicting "
        "parameters: 400 (TMF Error)."
    ),
    responses={**_ERRORS, 304: {"description": "Not modified (If-None-Match)"}},
)
def order_history(
    request: Request,
    id: str,
    asOf: str | None = None,
    version: str | None = None,
    diff: str | None = None,
    from_: str | None = Query(None, alias="from"),
    to: str | None = None,
    documents: str | None = None,
) -> Response:
    command_context(request)  # authenticates: every role reads
    order_id = parse_uuid(id)
    modes = [
        name
        for name, given in (
            ("asOf", asOf),
            ("version", version),
            ("diff", diff),
            ("from/to", from_ if from_ is not None else to),
        )
        if given is not None
    ]
    if len(modes) > 1:
        raise _bad(f"give one of asOf, version, diff or from/to, not {' and '.join(modes)}")
    app = ctx_of(request).app
    try:
        events = app.history(order_id)
    except OrderNotFound:
        raise ApiError(404, "not_found", "Not Found", f"no order {order_id}") from None
    tag = etag(len(events))
    if _not_modified(request, tag):
        return Response(status_code=304, headers={"ETag": tag})
    headers = {"ETag": tag}
    body: Any
    if asOf is not None:
        body = history.as_of(app, order_id, parse_instant(asOf, "asOf")).view()
    elif version is not None:
        body = history.at_version(app, order_id, parse_version(version, "version")).view()
    elif diff is not None or from_ is not None or to is not None:
        a, b = _diff_range(diff, from_, to)
        body = history.diff(app, order_id, a, b)
    else:
        with_docs = parse_flag(documents, "documents") if documents is not None else True
        body = history.timeline(app, order_id, documents=with_docs)
        headers["X-Total-Count"] = str(len(body))
    return JSONResponse(body, headers=headers)


def _diff_range(diff: str | None, from_: str | None, to: str | None) -> tuple[int, int]:
    if diff is not None:
        parts = diff.split(",")
        if len(parts) != 2:
            raise _bad(f"diff must be two versions A,B (e.g. diff=2,5), not {diff!r}")
        return parse_version(parts[0], "diff"), parse_version(parts[1], "diff")
    if from_ is None or to is None:
        raise _bad("a diff needs both from and to (or diff=A,B)")
    return parse_version(from_, "from"), parse_version(to, "to")


def _not_modified(request: Request, tag: str) -> bool:
    wanted = request.headers.get("if-none-match")
    if not wanted:
        return False
    return wanted.strip() == "*" or tag in [w.strip().removeprefix("W/") for w in wanted.split(",")]


# --------------------------------------------------------------- access log
@router.get(
    "/audit/access-log",
    summary="Who read what with an auditor key",
    description=(
        "Auditors and admins only (other roles: 403). Every API request made with an "
        "auditor key, newest first: {at, actor, role, method, path (with the query string), "
        "status}. A request is recorded before it is served (status null until it is "
        "answered, as for the request reading the log itself); an auditor request that "
        "cannot be recorded is refused with 503. Filters: actor, since (inclusive) / until "
        "(exclusive) as RFC 3339 date-times with an offset. offset / limit must be 0 or "
        "more (400 otherwise); limit is clamped to 1000. X-Total-Count and X-Result-Count headers."
    ),
    responses={400: _ERRORS[400], 401: _ERRORS[401], 403: _ERRORS[403]},
)
def access_log_entries(
    request: Request,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
    offset: QueryInt = 0,
    limit: QueryInt = 100,
) -> JSONResponse:
    caller = actor_of(request)
    if caller.role not in ACCESS_LOG_ROLES:
        raise ApiError(
            403,
            "forbidden",
            "Forbidden",
            f"{caller.id} ({caller.role}) may not read the access log: auditor or admin only",
        )
    where = access_log.AccessFilter(
        actor=actor,
        since=parse_instant(since, "since") if since is not None else None,
        until=parse_instant(until, "until") if until is not None else None,
    )
    offset, limit = page_of(offset, limit, MAX_LIMIT)
    with ctx_of(request).read() as models:
        total, rows = access_log.entries(models.db, where, offset=offset, limit=limit)
    body = [{**row, "at": history.iso(row["at"])} for row in rows]
    return JSONResponse(
        body, headers={"X-Total-Count": str(total), "X-Result-Count": str(len(body))}
    )


# --------------------------------------------------------------- middleware
class AccessLog(HttpMiddleware):
    """Records every request made with an auditor key in `audit_access_log`: the row is
    written before the request reaches the routes (503 when it cannot be), its status once
    the answer starts; any method but GET / HEAD / OPTIONS is refused (403) right here.
    Other keys, no key and unknown keys are neither recorded nor refused here."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = scope["app"].state.ctx
        actor = _auditor(ctx, scope)
        if actor is None:
            await self.app(scope, receive, send)
            return
        path = _path_with_query(scope)
        try:
            entry_id = await run_in_threadpool(_record, ctx, actor, scope["method"], path)
        except Exception:
            log.exception("the access log could not be written")
            await ApiError(
                503,
                "access_log_unavailable",
                "Service Unavailable",
                "auditor requests are served only once recorded, and the access "
                "log cannot be written now",
            ).response()(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            # Read-only by construction, whatever a route would make of the request (an
            # empty merge patch, say, changes nothing and would answer 200).
            await ApiError(
                403,
                "forbidden",
                "Forbidden",
                f"{actor.id} ({actor.role}) reads only: {scope['method']} is not "
                "allowed with an auditor key",
            ).response()(scope, receive, send)
            await run_in_threadpool(_finish, ctx, entry_id, 403)
            return
        sending = StatusOf(send)
        try:
            await self.app(scope, receive, sending)
        finally:
            try:
                await run_in_threadpool(_finish, ctx, entry_id, sending.status)
            except Exception:
                log.exception("the access log entry %s got no status", entry_id)


def _auditor(ctx: Any, scope: Scope) -> Actor | None:
    if ctx.auth.open:  # no keys: everyone is the anonymous operator
        return None
    try:
        actor = ctx.auth.actor(StarletteRequest(scope))
    except ApiError:  # no or unknown key: not an auditor's request
        return None
    return actor if actor.role is Role.AUDITOR else None


def _path_with_query(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope.get("path", "").encode()
    path = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _record(ctx: Any, actor: Actor, method: str, path: str) -> str:
    with ctx.read() as models:
        return access_log.record(models.db, actor.id, actor.role.value, method, path)


def _finish(ctx: Any, entry_id: str, status: int) -> None:
    with ctx.read() as models:
        access_log.finish(models.db, entry_id, status)

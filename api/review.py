"""/api/v1 review: the queue a manager works through, and the decisions on orders and on
cancellation requests. A decision needs the order's ETag (`If-Match`), so that nobody
decides on an order that changed since they looked at it; it is one command through
`ServiceOrders.handle` (api/common.py `handle`), which checks that version."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from serviceorders.api.actions import Action, add_actions
from serviceorders.api.bodies import NoteBody, ReasonBody
from serviceorders.api.common import (
    QueryInt,
    base_url,
    command_context,
    ctx_of,
    etag,
    handle,
    one_of,
    page_of,
    parse_uuid,
    read_body,
)
from serviceorders.api.docs import DECISION_ERRORS, V1_ERRORS
from serviceorders.api.errors import ApiError
from serviceorders.api.views import load, order_response
from serviceorders.domain.commands import (
    Approve,
    ApproveCancellation,
    DenyCancellation,
    OrderCommand,
    Reject,
)
from serviceorders.projections.queries import MAX_LIMIT, QueueFilter
from serviceorders.support.isotime import iso_or_none

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])

KINDS = ("approval", "cancellation")


def flag_view(flag: dict[str, Any]) -> dict[str, Any]:
    """A reviewer flag as the read model stores it, spelled as on the wire (`itemId`)."""
    return {
        "code": flag.get("code"),
        "message": flag.get("message"),
        "itemId": flag.get("item_id"),
        "characteristic": flag.get("characteristic"),
        "structural": flag.get("structural"),
    }


def queue_entry(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "orderId": str(row["order_id"]),
        "href": f"{base_url(request)}/api/v1/orders/{row['order_id']}",
        "kind": row["kind"],
        "externalId": row["external_id"],
        "priority": row["priority"],
        "submittedAt": iso_or_none(row["submitted_at"]),
        "submittedBy": row["submitted_by"],
        "customerId": row["customer_id"],
        "customerName": row["customer_name"],
        "sites": row["sites"],
        "specifications": row["specifications"],
        "itemActions": row["item_actions"],
        "itemCount": row["item_count"],
        "flags": [flag_view(f) for f in row["flags"] or ()],
        "flagCount": row["flag_count"],
        "reason": row["reason"],
        "version": row["version"],
        "etag": etag(row["version"]),
        "ageSeconds": row["age_seconds"],
    }


@router.get(
    "/reviewQueue",
    summary="The review queue",
    description="What awaits a manager: orders to approve (kind=approval) and "
    "cancellation requests to decide (kind=cancellation); highest "
    "priority first, then oldest. Filters: kind, site, customer, priority, "
    "specification, olderThan / youngerThan (seconds since submission or "
    "request). offset / limit must be 0 or more (400 otherwise); limit is "
    "clamped to 1000. Each entry has "
    "ageSeconds and the order's version / ETag for the decision's "
    "If-Match. X-Total-Count and X-Result-Count headers.",
    responses={400: V1_ERRORS[400], 401: V1_ERRORS[401]},
)
def review_queue(
    request: Request,
    kind: str | None = None,
    site: str | None = None,
    customer: str | None = None,
    priority: str | None = None,
    specification: str | None = None,
    olderThan: float | None = Query(None, ge=0, le=10**9),
    youngerThan: float | None = Query(None, ge=0, le=10**9),
    offset: QueryInt = 0,
    limit: QueryInt = 100,
) -> JSONResponse:
    command_context(request)
    where = QueueFilter(
        kind=one_of("kind", kind, KINDS),
        site=site,
        customer=customer,
        priority=priority,
        specification=specification,
        older_than=timedelta(seconds=olderThan) if olderThan is not None else None,
        younger_than=timedelta(seconds=youngerThan) if youngerThan is not None else None,
    )
    offset, limit = page_of(offset, limit, MAX_LIMIT)
    with ctx_of(request).read() as models:
        page = models.review_queue(where, offset=offset, limit=limit)
    body = [queue_entry(request, row) for row in page.items]
    return JSONResponse(
        body, headers={"X-Total-Count": str(page.total), "X-Result-Count": str(len(body))}
    )


def decided_version(request: Request, id: str) -> int | frozenset[int]:
    """The one version a decision names in If-Match: 428 without one (or with `*`), 400
    for a list (a list of every version would defeat the rule, as `*`)."""
    wanted = (request.headers.get("if-match") or "").strip()
    if not wanted or wanted == "*":
        version = load(request, parse_uuid(id)).version  # a read, for the message
        raise ApiError(
            428,
            "precondition_required",
            "Precondition Required",
            f"a decision needs 'If-Match: {etag(version)}' (the ETag of the order "
            "as you reviewed it); '*' is not accepted",
        )
    if "," in wanted:
        version = load(request, parse_uuid(id)).version
        raise ApiError(
            400,
            "invalid_if_match",
            "Bad Request",
            f"a decision takes exactly one ETag in If-Match, not a list: send "
            f"'If-Match: {etag(version)}' if that is the version you reviewed",
        )
    value = wanted.removeprefix("W/").strip('"')
    # An ETag that names no version matches none: 412 (`handle`'s StaleVersion).
    return int(value) if value.isascii() and value.isdigit() else frozenset()


def _decide(request: Request, command: OrderCommand, id: str) -> JSONResponse:
    order = handle(request, command, decided_version(request, id)).order
    return order_response(request, order)


# The decisions (api/actions.py), in the docs' order: the route's name, its path below
# /orders/{id}/, the body, the command (the order id, the body's field).
DECISIONS = (
    Action("approve", "approve", NoteBody, Approve),
    Action("reject", "reject", ReasonBody, Reject),
    Action("approve_cancellation", "cancellation/approve", NoteBody, ApproveCancellation),
    Action("deny_cancellation", "cancellation/deny", ReasonBody, DenyCancellation),
)
# Their summary and description in /docs.
DOCS = {
    "approve": (
        "Approve an order (start it)",
        "acknowledged → inProgress. Body {note?}. Requires If-Match with the "
        "order's ETag (428 without, 412 when the order changed). Four-eyes: "
        "the submitter may not decide (403). Returns the TMF641 order and "
        "its new ETag.",
    ),
    "reject": (
        "Reject an order",
        "acknowledged → rejected. Body {reason} (required: 400 without). "
        "Requires If-Match (428 / 412); four-eyes applies.",
    ),
    "approve_cancellation": (
        "Approve a cancellation request",
        "assessingCancellation → pendingCancellation; fulfilment then "
        "carries it out (/cancel). Body {note?}. Requires If-Match (428 / "
        "412).",
    ),
    "deny_cancellation": (
        "Deny a cancellation request",
        "The order returns to the state it had before the request. Body "
        "{reason} (required). Requires If-Match (428 / 412).",
    ),
}
add_actions(router, DECISIONS, DOCS, _decide, DECISION_ERRORS)

"""/api/v1 review: the queue a manager works through, and the decisions on orders, on
cancellation requests and on proposals (changes to approved orders). A decision needs the
order's ETag (`If-Match`), so that nobody decides on an order that changed since they
looked at it; it is one command through `ServiceOrders.handle` (api/common.py `handle`),
which checks that version. Also the correction of a rejected order (`resubmit`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from serviceorders.api.actions import Action, add_actions
from serviceorders.api.bodies import (
    InformationBody,
    NoteBody,
    OptionalReasonBody,
    ReasonBody,
    ResubmitBody,
)
from serviceorders.api.common import (
    QueryInt,
    base_url,
    body_of,
    command_context,
    ctx_of,
    etag,
    expected_version,
    handle,
    one_of,
    page_of,
    parse_uuid,
    read_body,
)
from serviceorders.api.docs import DECISION_ERRORS, V1_ERRORS, body_schema
from serviceorders.api.errors import ApiError, problem_view
from serviceorders.api.service_orders import document_response
from serviceorders.api.views import actor_view, load, order_response, view_response
from serviceorders.domain.commands import (
    Approve,
    ApproveCancellation,
    ApproveProposal,
    DenyCancellation,
    OrderCommand,
    ProvideCancellationInformation,
    RefuseProposal,
    Reject,
    RequestCancellationInformation,
    WithdrawProposal,
)
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.proposals import diff
from serviceorders.domain.values import OrderState
from serviceorders.projections.queries import MAX_LIMIT, QueueFilter
from serviceorders.support.isotime import iso_or_none

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])

KINDS = ("approval", "cancellation", "proposal")


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
        "proposalId": row["reason"] if row["kind"] == "proposal" else None,
        "changes": row["changes"] or [],
        "version": row["version"],
        "etag": etag(row["version"]),
        "ageSeconds": row["age_seconds"],
    }


@router.get(
    "/reviewQueue",
    summary="The review queue",
    description="What awaits a manager: orders to approve (kind=approval), "
    "cancellation requests to decide (kind=cancellation) and changes to approved orders "
    "to approve or refuse (kind=proposal: proposalId, and changes, the proposed change "
    "against the order as approved so far); highest "
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
    Action("approve_proposal", "proposal/approve", NoteBody, ApproveProposal),
    Action("refuse_proposal", "proposal/refuse", ReasonBody, RefuseProposal),
)
_FOUR_EYES = (
    " Four-eyes: whoever drafted, configured, submitted or changed the order may not "
    "decide it (403)."
)
# Their summary and description in /docs.
DOCS = {
    "approve": (
        "Approve an order (start it)",
        "acknowledged → inProgress. Body {note?}. Requires If-Match with the "
        "order's ETag (428 without, 412 when the order changed)." + _FOUR_EYES + " Returns "
        "the TMF641 order and its new ETag.",
    ),
    "reject": (
        "Reject an order",
        "acknowledged → rejected. Body {reason} (required: 400 without). "
        "Requires If-Match (428 / 412)." + _FOUR_EYES,
    ),
    "approve_cancellation": (
        "Approve a cancellation request",
        "assessingCancellation → pendingCancellation; fulfilment then "
        "carries it out (/cancel). Body {note?}. Requires If-Match (428 / "
        "412). Four-eyes: not by whoever requested the cancellation (403).",
    ),
    "deny_cancellation": (
        "Deny a cancellation request",
        "The order returns to the state it had before the request. Body "
        "{reason} (required). Requires If-Match (428 / 412). Four-eyes: not by "
        "whoever requested the cancellation (403).",
    ),
    "approve_proposal": (
        "Approve the waiting proposal (apply the change)",
        "The change proposed to the approved order (GET /orders/{id}/proposal) is "
        "validated again against the current items and applied (422 when it no longer "
        "validates, 409 when an item it changes is final: refuse it then); an order held "
        "for it resumes. Body {note?}. Requires If-Match (428 / 412). Four-eyes: not by "
        "its proposer (403). 409 when no proposal waits.",
    ),
    "refuse_proposal": (
        "Refuse the waiting proposal",
        "The order stays as approved; an order held for the proposal resumes. Body "
        "{reason} (required). Requires If-Match (428 / 412). Four-eyes: not by its "
        "proposer (403). 409 when no proposal waits.",
    ),
}
add_actions(router, DECISIONS, DOCS, _decide, DECISION_ERRORS)


def _withdraw(request: Request, command: OrderCommand, _id: str = "") -> JSONResponse:
    return order_response(request, handle(request, command, expected_version(request)).order)


add_actions(
    router,
    (
        Action("withdraw_proposal", "proposal/withdraw", OptionalReasonBody, WithdrawProposal),
        # A question on a cancellation and its answer (issue 19): no decision, so If-Match
        # is optional as on the other actions.
        Action(
            "request_cancellation_information",
            "cancellation/informationRequest",
            InformationBody,
            RequestCancellationInformation,
        ),
        Action(
            "provide_cancellation_information",
            "cancellation/information",
            InformationBody,
            ProvideCancellationInformation,
        ),
    ),
    {
        "withdraw_proposal": (
            "Withdraw the waiting proposal",
            "Its proposer (or a manager) takes the change back; an order held for it "
            "resumes. Body {reason?} (may be empty). If-Match optional (412 when stale). "
            "409 when no proposal waits. Returns the TMF641 order and its ETag.",
        ),
        "request_cancellation_information": (
            "Ask the cancellation's requester for information",
            "While the order is assessingCancellation (it stays there): a manager asks "
            "whoever requested the cancellation for what the decision needs "
            "(cancelServiceOrder: CancelServiceOrderInformationRequiredEvent). Body "
            "{information} (required). One question at a time (409 while one waits). "
            "Four-eyes: not by whoever requested the cancellation (403). If-Match optional "
            "(412 when stale). Returns the TMF641 order and its ETag.",
        ),
        "provide_cancellation_information": (
            "Answer the question on a cancellation",
            "Whoever requested the cancellation (or an admin) answers the waiting question "
            "(409 when none waits; 403 for anyone else); the order stays "
            "assessingCancellation and the request is assessed again. Body {information} "
            "(required). If-Match optional (412 when stale). Returns the TMF641 order and "
            "its ETag.",
        ),
    },
    _withdraw,
    V1_ERRORS,
)


# ------------------------------------------------------------------ proposals
def proposal_view(request: Request, order: ServiceOrder) -> dict[str, Any]:
    """The waiting proposal (order.proposal, revealed) and its diff against the order as
    approved so far (domain.proposals.diff: the one the queue and the console show)."""
    proposal = order.proposal
    assert proposal is not None
    base = base_url(request)
    return {
        "id": proposal.id,
        "href": f"{base}/api/v1/orders/{order.id}/proposal",
        "order": {"id": str(order.id), "href": f"{base}/api/v1/orders/{order.id}"},
        "orderState": order.state.value,
        "heldForProposal": order.held_for_proposal == proposal.id,
        "proposedBy": actor_view(proposal.proposed_by),
        "proposedAt": iso_or_none(proposal.proposed_at),
        "baseVersion": proposal.base_version,
        "flags": [problem_view(p) for p in proposal.flags],
        "changes": [c.as_json() for c in diff(order.header, order.items, proposal)],
        "version": order.version,
        "etag": etag(order.version),
    }


@router.get(
    "/orders/{id}/proposal",
    summary="The proposal waiting on an approved order",
    description="A change to an approved order (a TMF641 PATCH or a Kafka revision after "
    "approval) waits as a proposal until a second person approves or refuses it: its id, "
    "who proposed it and when, the flags of the order as it would make it, and `changes`, "
    "each {path, kind (added, changed, removed), current, proposed} against the order as "
    "approved so far. The order's ETag (for the decision's If-Match). 404 when no "
    "proposal waits (a TMF Error).",
    responses=V1_ERRORS,
)
def waiting_proposal(request: Request, id: str) -> JSONResponse:
    command_context(request)
    order = load(request, parse_uuid(id))
    if order.proposal is None:
        raise ApiError(404, "not_found", "Not Found", f"no proposal waits on order {order.id}")
    return JSONResponse(proposal_view(request, order), headers={"ETag": etag(order.version)})


# ------------------------------------------------------------ correct and resubmit
@router.post(
    "/orders/{id}/resubmit",
    status_code=201,
    summary="Correct and resubmit a rejected order",
    description="A new order prefilled from the rejected one: body {externalId? (its own: "
    "the rejected order keeps its), header? {category, priority, description, "
    "requestedStartDate, requestedCompletionDate, notificationContact, customer}: the "
    "attributes given change, items? (merged by id), removedItemIds?, submit? (default "
    "false: a draft to correct further and submit; true: into review at once)}. Both "
    "orders are linked by orderRelationship (the new one `resubmits` the rejected one, "
    "which is `resubmittedAs` the new one). 201 with the new order (a draft: its domain "
    "view, Location /api/v1/drafts/{id}; submitted: its TMF641 document and Location). "
    "409 unless the order is rejected, or when the externalId is taken; 400 / 422 for "
    "a body or a corrected order that does not validate. If-Match optional.",
    responses=V1_ERRORS,
    openapi_extra=body_schema(ResubmitBody),
)
def resubmit(request: Request, id: str) -> JSONResponse:
    command_context(request)  # authenticates before the body is read
    body = body_of(request, ResubmitBody)
    rejected = load(request, parse_uuid(id))
    command = body.command(rejected.id, rejected.header.related_parties)
    new = handle(request, command, expected_version(request)).order
    if new.state is OrderState.DRAFT:
        response = view_response(request, new, 201)
        response.headers["Location"] = f"{base_url(request)}/api/v1/drafts/{new.id}"
        return response
    return document_response(request, new.id, 201)

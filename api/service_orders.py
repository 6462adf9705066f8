"""TMF641 v4 `serviceOrder` and `cancelServiceOrder` resources."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from serviceorders.api.common import (
    QueryInt,
    bad_parameter,
    base_url,
    body_of,
    check_if_match,
    command_context,
    ctx_of,
    etag,
    expected_version,
    handle,
    one_of,
    page_of,
    parse_uuid,
    read_body,
    select_fields,
)
from serviceorders.api.docs import MERGE_PATCH, body_schema
from serviceorders.api.errors import ApiError
from serviceorders.domain.commands import Delete, ReceiveOrder, RequestCancellation, Revise
from serviceorders.domain.errors import IllegalTransition, OrderNotFound
from serviceorders.domain.order import ServiceOrder, order_id_for_request
from serviceorders.domain.values import OrderState
from serviceorders.projections.queries import OrderFilter
from serviceorders.support.isotime import iso_or_none
from serviceorders.support.isotime import parse as parse_time
from serviceorders.tmf.tmf641 import BASE_PATH
from serviceorders.tmf.tmf641_in import (
    CancelServiceOrderCreate,
    ServiceOrderCreate,
    ServiceOrderUpdate,
    header_change,
    items_to_domain,
    order_to_domain,
)

router = APIRouter(
    prefix=BASE_PATH, tags=["TMF641 serviceOrder"], dependencies=[Depends(read_body)]
)
ALWAYS = ("id", "href", "state", "orderDate", "serviceOrderItem", "@type")
MAX_PAGE = 1000
# The states a list may filter by (TMF641's; a draft is never listed).
STATES = tuple(s.value for s in OrderState)
# The body /docs fills in for POST serviceOrder: an order of the built-in catalog (the JSON
# beside this module; .ci/fresh_install.py posts it too).
ORDER_EXAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "order_example.json").read_text(encoding="utf-8")
)


def order_href(request: Request, order_id: Any) -> str:
    return f"{base_url(request)}{BASE_PATH}/serviceOrder/{order_id}"


def present(request: Request, row: dict[str, Any], fields: str | None = None) -> dict[str, Any]:
    doc = {
        "id": str(row["order_id"]),
        "href": order_href(request, row["order_id"]),
        **row["document"],
    }
    return select_fields(doc, fields, ALWAYS)


def load_visible(request: Request, order_id: UUID) -> ServiceOrder:
    """The order, unless it is a draft or deleted (neither is a TMF641 resource)."""
    try:
        order = ctx_of(request).app.get_order(order_id)
    except OrderNotFound:
        raise ApiError(404, "not_found", "Not Found", f"no service order {order_id}") from None
    if order.state is OrderState.DRAFT or getattr(order, "deleted", False):
        raise ApiError(404, "not_found", "Not Found", f"no service order {order_id}")
    return order


def document_response(
    request: Request, order_id: UUID, status: int, fields: str | None = None
) -> JSONResponse:
    with ctx_of(request).read() as models:
        row = models.document(order_id)
    if row is None:
        raise ApiError(404, "not_found", "Not Found", f"no service order {order_id}")
    headers = {"ETag": etag(row["version"])}
    if status == 201:
        headers["Location"] = order_href(request, order_id)
    return JSONResponse(present(request, row, fields), status_code=status, headers=headers)


@router.post(
    "/serviceOrder",
    status_code=201,
    summary="Create a service order",
    description="The order is validated against the specification catalog: structural "
    "problems refuse it (400, every problem listed); value problems let it "
    "into the review queue as `acknowledged`, flagged for the reviewer. "
    "An `externalId` (or an `Idempotency-Key` header) makes creation "
    "idempotent: a retry gets the first order back; the same key with other content is "
    "refused (409 naming the key and the paths that differ), and so is an `externalId` "
    "held by a draft or a deleted order.",
    openapi_extra=body_schema(ServiceOrderCreate, example=ORDER_EXAMPLE),
)
def create_service_order(request: Request) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ServiceOrderCreate)
    # Compared whole: a key above limits.IDEMPOTENCY_KEY_MAX was refused (431, api/bounds.py)
    # before this handler, never cut (two long keys with a common start are two keys).
    key = request.headers.get("idempotency-key", "").strip()
    header, items, notes = order_to_domain(body)
    # A retry with the same key (or the same externalId) finds the order it created (the
    # same content), or is refused (ResendConflict, ExternalIdTaken: domain/resend.py).
    order_id = order_id_for_request(cmd.actor.id, key) if key else None
    outcome = handle(request, ReceiveOrder(header, tuple(items), tuple(notes), order_id))
    return document_response(request, outcome.order_id, 201)


def _date_filter(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    text = value.strip().strip('"').strip("'")
    try:
        return parse_time(text)
    except ValueError:
        raise bad_parameter(name, f"must be an ISO 8601 date-time, not {value!r}") from None


@router.get(
    "/serviceOrder",
    summary="List or find service orders",
    description="Filters: state, externalId, category, priority, id, orderDate "
    "(exact), orderDate.gt, orderDate.gte, orderDate.lt; `fields` selects "
    "attributes (id, href, state, orderDate and serviceOrderItem are always "
    "included). Newest first. offset / limit must be 0 or more (400 otherwise); limit is "
    "clamped to 1000. An unknown state or a malformed date is a 400 naming the parameter.",
)
def list_service_orders(
    request: Request,
    fields: str | None = None,
    offset: QueryInt = 0,
    limit: QueryInt = 100,
    state: str | None = None,
    externalId: str | None = None,
    category: str | None = None,
    priority: str | None = None,
    id: str | None = None,
    orderDate: str | None = None,
    order_date_gt: str | None = Query(None, alias="orderDate.gt"),
    order_date_gte: str | None = Query(None, alias="orderDate.gte"),
    order_date_lt: str | None = Query(None, alias="orderDate.lt"),
) -> JSONResponse:
    command_context(request)  # authenticates
    one_of("state", state, STATES)
    offset, limit = page_of(offset, limit, MAX_PAGE)
    if any("\x00" in value for value in (state, externalId, category, priority) if value):
        # No order holds a NUL character (every door refuses them); PostgreSQL could not
        # even compare with one.
        return JSONResponse([], headers={"X-Total-Count": "0", "X-Result-Count": "0"})
    exact = _date_filter(orderDate, "orderDate")
    lower = _date_filter(order_date_gt, "orderDate.gt")
    if lower is not None:
        lower += timedelta(microseconds=1)
    lower = exact or _date_filter(order_date_gte, "orderDate.gte") or lower
    upper = (
        exact + timedelta(microseconds=1) if exact else _date_filter(order_date_lt, "orderDate.lt")
    )
    ids: tuple[UUID, ...] = ()
    if id is not None:
        try:
            ids = tuple(UUID(i.strip()) for i in id.split(",") if i.strip())
        except ValueError:
            ids = (UUID(int=0),)  # no order has that id
    where = OrderFilter(
        state=state,
        external_id=externalId,
        category=category,
        priority=priority,
        order_date_from=lower,
        order_date_to=upper,
        ids=ids,
    )
    with ctx_of(request).read() as models:
        page = models.documents(where, offset=offset, limit=limit)
    body = [present(request, row, fields) for row in page.items]
    return JSONResponse(
        body, headers={"X-Total-Count": str(page.total), "X-Result-Count": str(len(body))}
    )


@router.get("/serviceOrder/{id}", summary="Retrieve a service order")
def retrieve_service_order(request: Request, id: str, fields: str | None = None) -> JSONResponse:
    command_context(request)
    return document_response(request, parse_uuid(id, "service order"), 200, fields)


# What PATCH does with each attribute: a JSON merge patch (RFC 7386) for the header's
# scalars, but not for its arrays, which is stated here, in /openapi.json (the operation's
# description), and in docs/lifecycle.md ("What a TMF641 PATCH does with each
# attribute"); tests/api/test_patch_semantics.py shows each case.
PATCH_SEMANTICS = (
    "A JSON merge patch (`application/merge-patch+json`; `application/json` is taken too), "
    "except that arrays are not replaced whole as RFC 7386 says: "
    "`serviceOrderItem` is merged by item id: an item given replaces the item with that id "
    "whole (it is sent complete, with `id`, `action` and `service`; there is no merge within "
    "an item) or is added when its id is new (an id given twice is refused); the items the "
    "body leaves out stay, and an empty array changes nothing. PATCH cannot remove an "
    'item: an item with action "delete" is an item of the order (the disconnect of an '
    "existing service), not its removal. `relatedParty` replaces the order's related "
    "parties whole (an empty array removes them all). `note` appends the notes whose text "
    "the order does not have yet, as the caller's (the author and date sent are not kept); "
    "a note is never replaced or removed. `null` leaves an attribute as it is (it removes "
    "nothing), except an attribute ServiceOrder_Update does not define (an extension "
    "attribute, `@type`, `@baseType`, `@schemaLocation`): those are merged into the "
    "order's as RFC 7386 says, and `null` removes one. Items given may carry the `state` "
    "and `errorMessage` read from the order only as an echo: equal to what GET shows for "
    "that existing item, they are taken and not kept (the server's); any other value, or "
    "one on a new item, is refused (400 naming it, e.g. `serviceOrderItem.0.state`). "
    "`state` and `externalId` may only repeat the current value (409 otherwise); "
    "`expectedCompletionDate`, `externalReference`, `orderRelationship` and the "
    "server-owned `orderDate`, `startDate`, `completionDate`, `cancellationDate`, "
    "`cancellationReason`, `errorMessage`, `milestone`, `jeopardyAlert` are refused "
    "(400, naming them). Each change is validated as a whole: a refused PATCH changes "
    "nothing."
)


@router.patch(
    "/serviceOrder/{id}",
    summary="Update a service order (JSON merge patch; arrays merged as stated)",
    description=PATCH_SEMANTICS + " Before approval: the change is applied. "
    "After approval (and only before the point of no return): a proposal a second person "
    "approves or refuses; the answer is 200 with the order as approved so far (the change "
    'not applied) and a `Link: <.../api/v1/orders/{id}/proposal>; rel="proposal"` '
    "header where the proposal can be followed; while one waits, another change is a 409. "
    "Header attributes the settings exempt (SERVICEORDERS_PROPOSAL_DIRECT_FIELDS) are "
    "applied at once. Final orders: nothing (409 with the reason). `state` cannot be "
    "patched: use cancelServiceOrder or the workflow endpoints. `If-Match` with the "
    "ETag makes the change conditional (412 when the order moved).",
    openapi_extra=body_schema(ServiceOrderUpdate, MERGE_PATCH),
    responses={
        200: {
            "description": "The order (as approved so far, when the change is a proposal)",
            "headers": {
                "Link": {
                    "description": 'Only when the change became a proposal: `<{href}>; rel="'
                    'proposal"`, the /api/v1 resource of the waiting proposal',
                    "schema": {"type": "string"},
                }
            },
        }
    },
)
def patch_service_order(request: Request, id: str) -> JSONResponse:
    command_context(request)
    order_id = parse_uuid(id, "service order")
    body = body_of(request, ServiceOrderUpdate)
    echoes = body.item_echoes()  # items' state / errorMessage: checked against the order
    if not echoes and (refused := body.refusal()) is not None:  # REFUSED_ON_PATCH
        raise ApiError(400, "unchangeable_attribute", "Bad Request", refused)
    order = load_visible(request, order_id)  # a read: what the PATCH is checked against
    if echoes:  # one 400 names the order's refused attributes and the items' together
        sealer = ctx_of(request).app.sealer
        items_refused = body.refused_echoes(order, sealer.reveal if sealer else None)
        if (refused := body.refusal(items_refused)) is not None:
            raise ApiError(400, "unchangeable_attribute", "Bad Request", refused)
    check_if_match(request, order.version)  # first, as ever; `handle` checks it again
    if body.state is not None and body.state != order.state.value:
        raise IllegalTransition(
            order.id,
            order.state,
            "change the state by PATCH",
            "use cancelServiceOrder or the workflow endpoints",
        )
    if body.external_id is not None and body.external_id != order.header.external_id:
        raise IllegalTransition(
            order.id, order.state, "change the externalId", "an order's external id never changes"
        )
    items = items_to_domain(body.service_order_item or [])
    change = header_change(body, order.header.extra)
    known = {n.text for n in order.notes}
    notes = list(dict.fromkeys(n.text for n in body.note or [] if n.text not in known))
    proposal_id = None
    if items or change.model_fields_set or notes:
        # One Revise with the new notes: applied and saved in one transaction (a concurrent
        # change makes the whole PATCH a 409, never half of it); a stale If-Match is a 412.
        command = Revise(order_id, tuple(items), (), change, tuple(notes))
        proposal_id = handle(request, command, expected_version(request)).proposal_id
    response = document_response(request, order_id, 200)
    if proposal_id is not None:  # not applied: a second person decides it (docs/lifecycle.md)
        href = f"{base_url(request)}/api/v1/orders/{order_id}/proposal"
        response.headers["Link"] = f'<{href}>; rel="proposal"'
    return response


@router.delete(
    "/serviceOrder/{id}",
    status_code=204,
    summary="Delete a service order",
    description="Allowed once the order is final (rejected, cancelled, completed, "
    "failed, partial): it leaves the TMF641 resources and lists; its "
    "history stays for auditors. Otherwise 409: cancel it instead.",
)
def delete_service_order(request: Request, id: str) -> Response:
    command_context(request)
    order_id = parse_uuid(id, "service order")
    load_visible(request, order_id)  # a read: drafts and deleted orders are no resources
    handle(request, Delete(order_id), expected_version(request))
    return Response(status_code=204)


# -------------------------------------------------------------- cancelServiceOrder
cancel_router = APIRouter(
    prefix=BASE_PATH, tags=["TMF641 cancelServiceOrder"], dependencies=[Depends(read_body)]
)
CANCEL_ALWAYS = ("id", "href", "state", "@type")


def present_cancel(
    request: Request, row: dict[str, Any], fields: str | None = None
) -> dict[str, Any]:
    doc = {
        "id": row["id"],
        "href": f"{base_url(request)}{BASE_PATH}/cancelServiceOrder/{row['id']}",
        "state": row["state"],
        "cancellationReason": row["reason"],
        "requestedCancellationDate": iso_or_none(row["requested_cancellation_date"]),
        "effectiveCancellationDate": iso_or_none(row["effective_cancellation_date"]),
        "completionMessage": (
            f"cancellation {row['decision']}"
            + (f": {row['decision_reason']}" if row["decision_reason"] else "")
        )
        if row["decision"]
        else None,
        "serviceOrder": {
            "id": str(row["order_id"]),
            "href": order_href(request, row["order_id"]),
            "@referredType": "ServiceOrder",
        },
        "@type": "CancelServiceOrder",
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    return select_fields(doc, fields, CANCEL_ALWAYS)


def cancel_response(request: Request, request_id: str, status: int) -> JSONResponse:
    with ctx_of(request).read() as models:
        row = models.cancellation_request(request_id)
    if row is None:
        raise ApiError(404, "not_found", "Not Found", f"no cancelServiceOrder {request_id}")
    headers = {"Location": f"{base_url(request)}{BASE_PATH}/cancelServiceOrder/{request_id}"}
    return JSONResponse(
        present_cancel(request, row), status_code=status, headers=headers if status == 201 else None
    )


@cancel_router.post(
    "/cancelServiceOrder",
    status_code=201,
    summary="Request the cancellation of a service order",
    description="The order goes to `assessingCancellation`; a manager approves "
    "(→ pendingCancellation → cancelled) or denies it (the order "
    "returns to its prior state). The request's state uses v4's "
    "vocabulary: accepted, inProgress, done.",
    openapi_extra=body_schema(CancelServiceOrderCreate),
)
def create_cancel_service_order(request: Request) -> JSONResponse:
    command_context(request)
    body = body_of(request, CancelServiceOrderCreate)
    order_id = parse_uuid(body.service_order.id, "service order")
    load_visible(request, order_id)  # a read: drafts and deleted orders are no resources
    command = RequestCancellation(
        order_id, body.cancellation_reason, body.requested_cancellation_date
    )
    request_id = handle(request, command).request_id
    assert request_id is not None  # a RequestCancellation's outcome names the request
    return cancel_response(request, request_id, 201)


@cancel_router.get("/cancelServiceOrder", summary="List cancellation requests")
def list_cancel_service_orders(
    request: Request, fields: str | None = None, offset: QueryInt = 0, limit: QueryInt = 100
) -> JSONResponse:
    command_context(request)
    offset, limit = page_of(offset, limit, MAX_PAGE)
    with ctx_of(request).read() as models:
        page = models.cancellation_requests(offset=offset, limit=limit)
    body = [present_cancel(request, row, fields) for row in page.items]
    return JSONResponse(
        body, headers={"X-Total-Count": str(page.total), "X-Result-Count": str(len(body))}
    )


@cancel_router.get("/cancelServiceOrder/{id}", summary="Retrieve a cancellation request")
def retrieve_cancel_service_order(
    request: Request, id: str, fields: str | None = None
) -> JSONResponse:
    command_context(request)
    with ctx_of(request).read() as models:
        row = models.cancellation_request(id)
    if row is None:
        raise ApiError(404, "not_found", "Not Found", f"no cancelServiceOrder {id}")
    return JSONResponse(present_cancel(request, row, fields))

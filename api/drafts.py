"""/api/v1 capture: an agent builds a draft item by item, sees every problem at once, and
submits it. Every write is one command through `ServiceOrders.handle` (api/common.py
`handle`); If-Match is optional here (412 when stale)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from serviceorders.api.bodies import DraftCreate, ItemChange, ItemCreate
from serviceorders.api.common import (
    base_url,
    body_of,
    command_context,
    ctx_of,
    etag,
    expected_version,
    handle,
    parse_uuid,
    read_body,
)
from serviceorders.api.docs import V1_ERRORS as ERRORS
from serviceorders.api.docs import body_schema
from serviceorders.api.errors import ApiError, problem_view
from serviceorders.api.service_orders import document_response
from serviceorders.api.views import load, load_draft, view_response
from serviceorders.domain.commands import AddLine, Delete, RemoveLine, Submit
from serviceorders.domain.values import OrderState

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])


@router.post(
    "/drafts",
    status_code=201,
    summary="Start a draft order",
    description="An agent starts capturing an order by hand: the header only "
    "(externalId, category, priority, description, requested dates, "
    "notificationContact, customer {id, name}); items follow one by one. "
    "Returns {id, version, state: draft} with the draft's ETag and "
    "Location. An externalId already taken is a 409.",
    responses=ERRORS,
    openapi_extra=body_schema(DraftCreate),
)
def create_draft(request: Request) -> JSONResponse:
    command_context(request)  # authenticates before the body is read
    order = handle(request, body_of(request, DraftCreate).command()).order
    href = f"{base_url(request)}/api/v1/drafts/{order.id}"
    return JSONResponse(
        {"id": str(order.id), "version": order.version, "state": order.state.value, "href": href},
        status_code=201,
        headers={"ETag": etag(order.version), "Location": href},
    )


@router.get(
    "/drafts/{id}",
    summary="Retrieve a draft with its items",
    description="The draft as captured so far (items, characteristics, sites), with "
    "its ETag. 404 once it is submitted or discarded: a submitted order "
    "is at /api/v1/orders/{id}.",
    responses=ERRORS,
)
def retrieve_draft(request: Request, id: str) -> JSONResponse:
    command_context(request)
    return view_response(request, load_draft(request, id))


@router.post(
    "/drafts/{id}/items",
    status_code=201,
    summary="Add an item to a draft",
    description="Body: id (unique in the order), action (add, modify, delete, "
    "noChange), specificationId, serviceId (for modify / delete / "
    "noChange), characteristics {name: value}, place {id, name}, "
    "quantity, dependsOn [item ids]. Problems do not refuse an item: "
    "see /validation. Returns the draft (If-Match optional).",
    responses=ERRORS,
    openapi_extra=body_schema(ItemCreate),
)
def add_item(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, ItemCreate)
    command = AddLine(parse_uuid(id, "draft"), body.domain())
    order = handle(request, command, expected_version(request)).order
    return view_response(request, order, 201)


@router.patch(
    "/drafts/{id}/items/{itemId}",
    summary="Configure an item of a draft",
    description="Body: characteristics {name: value} to set, clear [names] to "
    "remove, place {id, name}, quantity, dependsOn [item ids] (replaces "
    "the list). Returns the draft (If-Match optional).",
    responses=ERRORS,
    openapi_extra=body_schema(ItemChange),
)
def configure_item(request: Request, id: str, itemId: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, ItemChange)
    command = body.command(parse_uuid(id, "draft"), itemId)
    return view_response(request, handle(request, command, expected_version(request)).order)


@router.delete(
    "/drafts/{id}/items/{itemId}",
    summary="Remove an item from a draft",
    description="Returns the draft (If-Match optional).",
    responses=ERRORS,
)
def remove_item(request: Request, id: str, itemId: str) -> JSONResponse:
    command_context(request)
    command = RemoveLine(parse_uuid(id, "draft"), itemId)
    return view_response(request, handle(request, command, expected_version(request)).order)


@router.get(
    "/drafts/{id}/validation",
    summary="Every problem of a draft, at once",
    description="Validates the order as it stands against the catalog: "
    "{problems: [{code, message, itemId, characteristic, structural}], "
    "refuses}. Structural problems refuse the submission; the others "
    "only flag the order for the reviewer.",
    responses=ERRORS,
)
def validate_draft(request: Request, id: str) -> JSONResponse:
    command_context(request)
    order = load(request, parse_uuid(id, "draft"), "draft")
    problems = order.validate(ctx_of(request).app.catalog)
    return JSONResponse(
        {
            "id": str(order.id),
            "version": order.version,
            "problems": [problem_view(p) for p in problems],
            "refuses": any(p.structural for p in problems),
        },
        headers={"ETag": etag(order.version)},
    )


@router.post(
    "/drafts/{id}/submit",
    summary="Submit a draft into review",
    description="400 listing every structural problem (`details`); otherwise the "
    "order is `acknowledged` (value problems become reviewer flags) and "
    "the answer is its TMF641 ServiceOrder with its ETag. If-Match "
    "optional.",
    responses=ERRORS,
)
def submit_draft(request: Request, id: str) -> JSONResponse:
    command_context(request)
    # A ValidationFailed lists every problem in `details`, in the shape /validation uses.
    order = handle(request, Submit(parse_uuid(id, "draft")), expected_version(request)).order
    return document_response(request, order.id, 200)


@router.delete(
    "/drafts/{id}",
    status_code=204,
    summary="Discard a draft",
    description="The draft is marked deleted; its history stays for auditors. "
    "Only drafts: a submitted order is cancelled or archived instead "
    "(409). If-Match optional.",
    responses=ERRORS,
)
def discard_draft(request: Request, id: str) -> Response:
    command_context(request)
    order_id = parse_uuid(id, "draft")
    order = load(request, order_id, "draft")  # a read: only a draft is discarded here
    if order.state is not OrderState.DRAFT:
        raise ApiError(
            409,
            "illegal_transition",
            "Conflict",
            f"order {order_id} is {order.state}, not a draft: cancel or archive it",
        )
    handle(request, Delete(order_id, "draft discarded"), expected_version(request))
    return Response(status_code=204)

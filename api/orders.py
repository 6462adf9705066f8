"""/api/v1 reads of one order: the order as the domain holds it (drafts and deleted orders
included) and its history, event by event. Reads are not commands: they keep their own
path (`ServiceOrders.get_order`, `history`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from serviceorders.api.common import command_context, ctx_of, etag, parse_uuid, read_body
from serviceorders.api.docs import V1_ERRORS
from serviceorders.api.errors import ApiError
from serviceorders.api.views import load, view_response
from serviceorders.audit.history import event_view
from serviceorders.domain.errors import OrderNotFound

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])


@router.get(
    "/orders/{id}/events",
    summary="The order's history",
    description="Every stored event, oldest first: {version, type, timestamp, actor "
    "{id, role}, source, correlationId, causationId, stateAfter, hash, "
    "prevHash, data}. stateAfter is the order's state after the event "
    "(replayed); hash / prevHash chain the events (docs/architecture.md). "
    "Deleted orders and drafts included.",
    responses=V1_ERRORS,
)
def order_events(request: Request, id: str) -> JSONResponse:
    command_context(request)
    order_id = parse_uuid(id)
    try:
        history = ctx_of(request).app.history(order_id)
    except OrderNotFound:
        raise ApiError(404, "not_found", "Not Found", f"no order {order_id}") from None
    body, order = [], None
    for event in history:
        order = event.mutate(order)
        # The event as the audit's history shows it, and the order's state after it.
        state_after = order.state.value if order is not None else None
        body.append({**event_view(event), "stateAfter": state_after})
    headers = {"ETag": etag(history[-1].originator_version), "X-Total-Count": str(len(body))}
    return JSONResponse(body, headers=headers)


@router.get(
    "/orders/{id}",
    summary="The order as the domain holds it",
    description="Any order, drafts and deleted ones included: header, items with their "
    "states, reviewer flags, notes, who submitted / decided, waiting and "
    "cancellation facts, point of no return, version (also the ETag, for "
    "decisions' If-Match).",
    responses=V1_ERRORS,
)
def retrieve_order(request: Request, id: str) -> JSONResponse:
    command_context(request)
    return view_response(request, load(request, parse_uuid(id)))

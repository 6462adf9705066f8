"""/api/v1 reads of one order: the order as the domain holds it (drafts and deleted orders
included) and its history, event by event. Reads are not commands: they keep their own
path (`ServiceOrders.get_order`, `history`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from serviceorders.api.common import command_context, ctx_of, etag, parse_uuid, read_body
from serviceorders.api.docs import V1_ERRORS
from serviceorders.api.errors import ApiError
from serviceorders.api.views import actor_view, load, view_response
from serviceorders.domain.errors import OrderNotFound
from serviceorders.support.isotime import iso_or_none

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])

_ENVELOPE = {
    "timestamp",
    "actor",
    "source",
    "correlation_id",
    "causation_id",
    "prev_hash",
    "hash",
    "class_version",
    "originator_topic",
}


def _source(source: Any) -> dict[str, Any]:
    names = {"request_id": "requestId", "event_id": "eventId"}
    return {names.get(k, k): v for k, v in source.model_dump(mode="json").items() if v is not None}


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
        state = event.stored_state()
        body.append(
            {
                "version": event.originator_version,
                "type": type(event).__name__,
                "timestamp": iso_or_none(event.timestamp),
                "actor": actor_view(event.actor),
                "source": _source(event.source),
                "correlationId": event.correlation_id,
                "causationId": event.causation_id,
                "stateAfter": order.state.value if order is not None else None,
                "hash": event.hash,
                "prevHash": event.prev_hash,
                "data": {k: v for k, v in state.items() if k not in _ENVELOPE},
            }
        )
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

"""How /api/v1 shows an order as the domain holds it (drafts included), and the reads its
routes share: the order by id, a draft by id, the answer after a command."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.responses import JSONResponse
from serviceorders.api.common import base_url, ctx_of, etag, parse_uuid
from serviceorders.api.errors import ApiError, problem_view
from serviceorders.api.service_orders import document_response
from serviceorders.domain.errors import OrderNotFound
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import Actor, OrderItem, OrderState
from serviceorders.support.isotime import iso_or_none


def actor_view(actor: Actor | None) -> dict[str, str] | None:
    return {"id": actor.id, "role": actor.role.value} if actor else None


def item_view(item: OrderItem) -> dict[str, Any]:
    spec = item.specification
    return {
        "id": item.id,
        "action": item.action.value,
        "specificationId": spec.id if spec else None,
        "specificationName": spec.name if spec else None,
        "specificationVersion": spec.version if spec else None,
        "serviceId": item.service_id,
        "serviceName": item.service_name,
        "characteristics": item.characteristics,
        "place": {"id": item.place.id, "name": item.place.name} if item.place else None,
        "quantity": item.quantity,
        "dependsOn": list(item.depends_on),
        "state": item.state.value if item.state else None,
    }


def order_view(request: Request, order: ServiceOrder) -> dict[str, Any]:
    """The order as the domain holds it: drafts included, with flags and workflow facts."""
    header = order.header
    customer = header.customer
    return {
        "id": str(order.id),
        "href": f"{base_url(request)}/api/v1/orders/{order.id}",
        "version": order.version,
        "state": order.state.value,
        "stateSince": iso_or_none(order.state_since),
        "externalId": header.external_id,
        "category": header.category,
        "priority": header.priority,
        "description": header.description,
        "requestedStartDate": iso_or_none(header.requested_start_date),
        "requestedCompletionDate": iso_or_none(header.requested_completion_date),
        "notificationContact": header.notification_contact,
        "customer": {"id": customer.id, "name": customer.name} if customer else None,
        "relatedParty": [
            {"id": p.id, "name": p.name, "role": p.role} for p in header.related_parties
        ],
        "orderRelationship": [
            {"id": r.id, "relationshipType": r.relationship_type}
            for r in header.order_relationships
        ],
        "items": [item_view(i) for i in order.items.values()],
        "flags": [problem_view(p) for p in order.flags],
        "notes": [
            {"text": n.text, "author": n.author, "date": iso_or_none(n.date)} for n in order.notes
        ],
        "createdAt": iso_or_none(order.created_on),
        "submittedBy": actor_view(order.submitted_by),
        "submittedAt": iso_or_none(order.submitted_at),
        "decidedBy": actor_view(order.decided_by),
        "decidedAt": iso_or_none(order.decided_at),
        "rejectionReason": order.rejection_reason,
        "waitingReason": order.waiting_reason,
        "priorState": order.prior_state.value if order.prior_state else None,
        "cancellation": (
            {
                "requestId": order.cancellation_request_id,
                "reason": order.cancellation_reason,
                "requestedBy": actor_view(order.cancellation_requested_by),
            }
            if order.cancellation_request_id
            else None
        ),
        "proposal": (
            {
                "id": order.proposal.id,
                "href": f"{base_url(request)}/api/v1/orders/{order.id}/proposal",
                "proposedBy": actor_view(order.proposal.proposed_by),
                "proposedAt": iso_or_none(order.proposal.proposed_at),
            }
            if order.proposal is not None
            else None
        ),
        "pointOfNoReturn": order.point_of_no_return,
        "deleted": order.deleted,
        "revision": order.revision,
        "headHash": order.head_hash,
    }


def view_response(request: Request, order: ServiceOrder, status: int = 200) -> JSONResponse:
    return JSONResponse(
        order_view(request, order), status_code=status, headers={"ETag": etag(order.version)}
    )


def order_response(request: Request, order: ServiceOrder) -> JSONResponse:
    """The order's TMF641 document (with its ETag); a draft has none: its domain view."""
    if order.state is OrderState.DRAFT:
        return view_response(request, order)
    return document_response(request, order.id, 200)


# --------------------------------------------------------------------- reads
def load(request: Request, order_id: UUID, what: str = "order") -> ServiceOrder:
    try:
        return ctx_of(request).app.get_order(order_id)
    except OrderNotFound:
        raise ApiError(404, "not_found", "Not Found", f"no {what} {order_id}") from None


def load_draft(request: Request, draft_id: str) -> ServiceOrder:
    order = load(request, parse_uuid(draft_id, "draft"), "draft")
    if order.state is not OrderState.DRAFT or order.deleted:
        raise ApiError(
            404,
            "not_found",
            "Not Found",
            f"no draft {draft_id} (a submitted order is at /api/v1/orders/{{id}})",
        )
    return order

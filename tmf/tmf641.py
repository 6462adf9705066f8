"""Domain order -> TMF641 v4 `ServiceOrder` JSON: the representation the API serves, the
order_document projection stores and notifications carry. `href` is added by the API,
which knows its own base URL.
"""

from __future__ import annotations

from typing import Any

from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import OrderItem, OrderState, Party
from serviceorders.tmf import outcomes
from serviceorders.tmf.time import tmf_time as _time

BASE_PATH = "/tmf-api/serviceOrdering/v4"

# What the server may add to what a client sent (issue 19, "lossless": everything else in a
# GET is what was sent), by TMF641 v4.1 schema: server-owned attributes as the lifecycle
# sets them, defaults where the sender gave none, the catalog's name and version of a
# specification. docs/lifecycle.md, "What the TMF641 doors keep", lists the same.
SERVER_ADDED: dict[str, tuple[str, ...]] = {
    "ServiceOrder": (
        "id",
        "href",
        "state",
        "orderDate",
        "startDate",
        "completionDate",
        "cancellationDate",
        "cancellationReason",
        "errorMessage",
        "milestone",
        "@type",
    ),
    "ServiceOrderItem": ("state", "errorMessage", "quantity", "@type"),
    "Service": ("@type",),
    "ServiceSpecificationRef": ("name", "version", "@referredType", "@type"),
    "Characteristic": ("valueType", "@type"),
    "RelatedPlaceRefOrValue": ("role", "@referredType", "@type"),
    "RelatedParty": ("@referredType", "@type"),
    "Note": ("author", "@type"),  # author: a PATCH's note is the caller's
    "ServiceOrderRelationship": ("@referredType", "@type"),
    "ServiceOrderItemRelationship": ("@type",),
}


def order_to_tmf641(order: ServiceOrder) -> dict[str, Any]:
    """The order as a TMF641 ServiceOrder (for orders past `draft`)."""
    header = order.header
    doc: dict[str, Any] = {
        "id": str(order.id),
        "externalId": header.external_id,
        "state": order.state.value,
        "category": header.category,
        "description": header.description,
        "priority": header.priority,
        "orderDate": _time(order.submitted_at or order.created_on),
        "requestedStartDate": _time(header.requested_start_date),
        "requestedCompletionDate": _time(header.requested_completion_date),
        "startDate": _time(order.decided_at) if order.decided_at and _approved(order) else None,
        "completionDate": _time(order.state_since) if order.state.is_final else None,
        "cancellationDate": (
            _time(order.state_since) if order.state is OrderState.CANCELLED else None
        ),
        "cancellationReason": order.cancellation_reason,
        "notificationContact": header.notification_contact,
        "note": [
            _compact({"text": n.text, "author": n.author, "date": _time(n.date), "@type": "Note"})
            for n in order.notes
        ],
        "relatedParty": [_party(p) for p in header.related_parties],
        "orderRelationship": [
            {
                "id": r.id,
                "relationshipType": r.relationship_type,
                "@referredType": "ServiceOrder",
                "@type": "ServiceOrderRelationship",
            }
            for r in header.order_relationships
        ],
        "serviceOrderItem": [_item(i, order) for i in order.items.values()],
        "errorMessage": outcomes.order_error_messages(order),
        "milestone": outcomes.order_milestones(order),
        "@type": "ServiceOrder",
    }
    return _compact(doc)


def _approved(order: ServiceOrder) -> bool:
    return order.state not in (OrderState.ACKNOWLEDGED, OrderState.REJECTED, OrderState.DRAFT)


def _party(party: Party) -> dict[str, Any]:
    return _compact(
        {
            "id": party.id,
            "name": party.name,
            "role": party.role,
            "@referredType": party.referred_type or "Individual",
            "@type": "RelatedParty",
        }
    )


def _item(item: OrderItem, order: ServiceOrder) -> dict[str, Any]:
    service: dict[str, Any] = {"id": item.service_id, "name": item.service_name, "@type": "Service"}
    if item.specification:
        spec = item.specification
        service["serviceSpecification"] = _compact(
            {
                "id": spec.id,
                "name": spec.name,
                "version": spec.version,
                "@referredType": "ServiceSpecification",
                "@type": "ServiceSpecificationRef",
            }
        )
    service["serviceCharacteristic"] = [
        {"name": name, "valueType": _value_type(value), "value": value, "@type": "Characteristic"}
        for name, value in item.characteristics.items()
    ]
    if item.place:
        service["place"] = [
            _compact(
                {
                    "id": item.place.id,
                    "name": item.place.name,
                    "role": item.place.role or "installationSite",
                    "@referredType": "GeographicSite",
                    "@type": "RelatedPlaceRefOrValue",
                }
            )
        ]
    return _compact(
        {
            "id": item.id,
            "action": item.action.value,
            "quantity": item.quantity,
            "state": item.state.value if item.state else None,
            "errorMessage": outcomes.item_error_messages(order, item) or None,
            "service": _compact(service),
            "serviceOrderItemRelationship": [
                {
                    "relationshipType": "dependency",
                    "orderItem": {"itemId": dep},
                    "@type": "ServiceOrderItemRelationship",
                }
                for dep in item.depends_on
            ],
            "@type": "ServiceOrderItem",
        }
    )


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    """Leave out absent values and empty lists, as TMF641 examples do."""
    return {k: v for k, v in body.items() if v is not None and v != []}

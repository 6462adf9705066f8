"""Domain order -> TMF641 v4 `ServiceOrder` JSON: the representation the API serves, the
order_document projection stores and notifications carry. `href` is added by the API,
which knows its own base URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import OrderItem, OrderState, Party, Place
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
    "Characteristic": ("valueType", "previousValue", "@type"),  # previousValue: a modify's
    "RelatedPlaceRefOrValue": ("role", "@referredType", "@type"),
    "RelatedParty": ("@referredType", "@type"),
    "Note": ("author", "@type"),  # author: a PATCH's note is the caller's
    "ServiceOrderRelationship": ("@referredType", "@type"),
    "ServiceOrderItemRelationship": ("@type",),
}


class Renders:
    """An order's items and milestones as its last document rendered them, for its next
    document (`order_to_tmf641`): with each, what its rendering read. The domain's values
    are immutable, so an item or a milestone that did not change is the same object in the
    order's next state, and its rendering can serve again as it is (issue 21)."""

    __slots__ = ("items", "milestones")

    def __init__(self) -> None:
        # by item id: the item, its inventory check, the outcomes naming it; the rendering
        self.items: dict[str, tuple[OrderItem, Any, tuple[Any, ...], dict[str, Any]]] = {}
        # by position: the milestone, its rendering
        self.milestones: list[tuple[Any, dict[str, Any]]] = []


def order_to_tmf641(order: ServiceOrder, renders: Renders | None = None) -> dict[str, Any]:
    """The order as a TMF641 ServiceOrder (for orders past `draft`): what the domain types,
    then every attribute kept as sent (the `extra`s) at its level, so that a GET returns
    what was sent, plus only SERVER_ADDED.

    `renders`: the renderings of the order's items and milestones from an earlier document
    of the same order (filled as it goes): those read as they were then are not rendered
    again (the projector renders a document per event; an event changes one item, or
    none, and adds a milestone or none). The documents then share those parts' dicts:
    nothing may change a document in place."""
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
            _merged(
                {"text": n.text, "author": n.author, "date": _time(n.date)},
                n.extra,
                {"@type": "Note"},
            )
            for n in order.notes
        ],
        "relatedParty": [_party(p) for p in header.related_parties],
        "orderRelationship": [
            _merged(
                {"id": r.id, "relationshipType": r.relationship_type},
                r.extra,
                {"@referredType": "ServiceOrder", "@type": "ServiceOrderRelationship"},
            )
            for r in header.order_relationships
        ],
        "serviceOrderItem": _items(order, renders),
        "errorMessage": outcomes.order_error_messages(order),
        "milestone": outcomes.order_milestones(
            order, None if renders is None else renders.milestones
        ),
    }
    return _merged(doc, header.extra, {"@type": "ServiceOrder"})


def _merged(
    typed: dict[str, Any], extra: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """`typed` (absent values and empty lists left out), then the attributes kept as sent
    that it does not give, then `defaults` for what neither gives."""
    body = _compact(typed)
    for key, value in extra.items():
        body.setdefault(key, value)
    for key, value in defaults.items():
        body.setdefault(key, value)
    return body


def _approved(order: ServiceOrder) -> bool:
    return order.state not in (OrderState.ACKNOWLEDGED, OrderState.REJECTED, OrderState.DRAFT)


def _party(party: Party) -> dict[str, Any]:
    return _merged(
        {
            "id": party.id,
            "name": party.name,
            "role": party.role,
            "@referredType": party.referred_type,
        },
        party.extra,
        {"@referredType": "Individual", "@type": "RelatedParty"},
    )


def _items(order: ServiceOrder, renders: Renders | None = None) -> list[dict[str, Any]]:
    """The items as sent: nested ones (by `parent`) under their parent's serviceOrderItem."""
    items = order.items
    children: dict[str, list[OrderItem]] = {}
    top: list[OrderItem] = []
    for item in items.values():
        if item.parent is not None and item.parent in items and item.parent != item.id:
            children.setdefault(item.parent, []).append(item)
        else:
            top.append(item)
    if not children:  # the common case: a flat order
        if renders is None:
            return [_item(order, i, ()) for i in top]
        return [_leaf(order, i, renders.items) for i in top]
    done: set[str] = set()

    def tree(item: OrderItem) -> dict[str, Any]:
        done.add(item.id)
        nested = [tree(c) for c in children.get(item.id, ()) if c.id not in done]
        return _item(order, item, nested)

    rendered = [tree(i) for i in top]
    # Items whose parents nest in each other (a revision can make such a loop): shown at
    # the top rather than lost.
    rendered += [tree(i) for i in items.values() if i.id not in done]
    return rendered


def _leaf(
    order: ServiceOrder,
    item: OrderItem,
    renders: dict[str, tuple[OrderItem, Any, tuple[Any, ...], dict[str, Any]]],
) -> dict[str, Any]:
    """An item without nested items, rendered again only if what `_item` reads of it
    changed since `renders` got it."""
    check = order.inventory.get(item.id)
    naming = tuple(o for o in order.outcomes if item.id in o.item_ids)
    found = renders.get(item.id)
    if found is not None and found[0] is item and found[1] is check and found[2] == naming:
        return found[3]
    rendered = _item(order, item, ())
    renders[item.id] = (item, check, naming, rendered)
    return rendered


def _item(order: ServiceOrder, item: OrderItem, nested: Sequence[dict[str, Any]]) -> dict[str, Any]:
    service: dict[str, Any] = {"id": item.service_id, "name": item.service_name}
    if item.specification:
        spec = item.specification
        service["serviceSpecification"] = _merged(
            {"id": spec.id, "name": spec.name, "version": spec.version},
            spec.extra,
            {"@referredType": "ServiceSpecification", "@type": "ServiceSpecificationRef"},
        )
    kept = item.characteristic_extra
    service["serviceCharacteristic"] = [
        {"name": name, "valueType": value_type(value), "value": value, "@type": "Characteristic"}
        if name not in kept
        else {
            "name": name,
            **kept[name],
            "valueType": kept[name].get("valueType", value_type(value)),
            "@type": kept[name].get("@type", "Characteristic"),
            "value": value,
        }
        for name, value in item.characteristics.items()
    ]
    check = order.inventory.get(item.id)
    if check is not None and check.previous:  # a modify: the service's value before it
        for characteristic in service["serviceCharacteristic"]:
            if characteristic["name"] in check.previous:
                characteristic["previousValue"] = check.previous[characteristic["name"]]
    service["place"] = _places(item)
    service_extra = item.service_extra
    if "place" in service_extra:
        service_extra = {k: v for k, v in service_extra.items() if k != "place"}
    return _merged(
        {
            "id": item.id,
            "action": item.action.value,
            "quantity": item.quantity,
            "state": item.state.value if item.state else None,
            "errorMessage": outcomes.item_error_messages(order, item) or None,
            "service": _merged(service, service_extra, {"@type": "Service"}),
            "serviceOrderItemRelationship": _relationships(item),
            "serviceOrderItem": list(nested),
        },
        item.extra,
        {"@type": "ServiceOrderItem"},
    )


def _typed_place(place: Place) -> dict[str, Any]:
    return _compact(
        {
            "id": place.id,
            "name": place.name,
            "role": place.role or "installationSite",
            "@referredType": "GeographicSite",
            "@type": "RelatedPlaceRefOrValue",
        }
    )


def _places(item: OrderItem) -> list[dict[str, Any]]:
    """Every place as sent; the typed `place` (the first with an id) as it is now when a
    revision or configuration changed it since."""
    place = item.place
    sent = item.service_extra.get("place")
    if not isinstance(sent, list):
        return [_typed_place(place)] if place else []
    at = next((n for n, p in enumerate(sent) if isinstance(p, dict) and p.get("id")), None)
    if at is None:
        return ([_typed_place(place)] if place else []) + sent
    first = sent[at]
    if place is None:
        return sent[:at] + sent[at + 1 :]
    if (first.get("id"), first.get("name"), first.get("role")) == (
        place.id,
        place.name,
        place.role,
    ):
        return sent
    return [*sent[:at], _typed_place(place), *sent[at + 1 :]]


def _relationships(item: OrderItem) -> list[dict[str, Any]]:
    """The item's relationships as sent, with its dependencies as they are now: those
    added since appended, those removed since left out."""
    rendered = []
    sent_deps: set[str] = set()
    deps = item.depends_on
    for r in item.relationships:
        dependency = (r.relationship_type or "dependency").lower() in ("dependency", "dependson")
        if dependency and r.item_id is not None:
            if r.item_id not in deps:
                continue  # no longer a dependency
            sent_deps.add(r.item_id)
        ref = r.extra.get("orderItem")
        body = _compact({"relationshipType": r.relationship_type})
        if isinstance(ref, dict):
            shown = dict(ref)
            if r.item_id is not None and ref.get("id") != r.item_id:
                shown = {"itemId": r.item_id, **ref}
            body["orderItem"] = shown
        for key, value in r.extra.items():
            body.setdefault(key, value)
        body.setdefault("@type", "ServiceOrderItemRelationship")
        rendered.append(body)
    rendered += [
        {
            "relationshipType": "dependency",
            "orderItem": {"itemId": dep},
            "@type": "ServiceOrderItemRelationship",
        }
        for dep in deps
        if dep not in sent_deps
    ]
    return rendered


def value_type(value: Any) -> str:
    """A TMF characteristic's `valueType` for a JSON value (TMF641 and TMF638 alike)."""
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

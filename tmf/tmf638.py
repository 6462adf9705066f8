"""Service (domain/service.py) -> TMF638 v4 Service JSON: the inventory's one rendering
(the TMF638 API, the `service` read model, the CLI's `inventory show`).

What the service holds typed is written from it; what an import kept as sent (`extra`)
is written as it came, under the typed attributes (a typed one wins); the related parties
and service relationships an import sent beside the customer and the dependencies are kept
after them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from serviceorders.domain.service import Service
from serviceorders.domain.values import Place, ServiceState

from .time import tmf_time
from .tmf641 import value_type as _value_type

BASE = "/tmf-api/serviceInventory/v4"
# The attributes the engine writes (never taken from an import's `extra`).
SERVER_ADDED = ("id", "href", "state", "serviceOrderItem", "@type")
# TMF638 states in which the service has started (TMF638 `hasStarted`).
STARTED = frozenset({ServiceState.ACTIVE, ServiceState.INACTIVE, ServiceState.TERMINATED})


def service_href(service_id: str, base: str = BASE) -> str:
    """The service's href: its id percent-encoded (an imported id may hold '/', '?', '#')."""
    return f"{base}/service/{quote(service_id, safe='')}"


def service_to_tmf638(service: Service, base: str = BASE) -> dict[str, Any]:
    """The TMF638 Service document of `service` as it is (revealed values)."""
    extra = service.extra
    doc: dict[str, Any] = {k: v for k, v in extra.items() if k not in SERVER_ADDED}
    doc.update(
        {
            "id": service.service_id,
            "href": service_href(service.service_id, base),
            "state": service.state.value,
            "isServiceEnabled": service.state is ServiceState.ACTIVE,
            "hasStarted": service.state in STARTED,
        }
    )
    if service.name is not None:
        doc["name"] = service.name
    if service.specification is not None:
        spec = service.specification
        doc["serviceSpecification"] = _compact(
            {
                **spec.extra,
                "id": spec.id,
                "name": spec.name,
                "version": spec.version,
                "@referredType": "ServiceSpecification",
            }
        )
    # Characteristics and places as an import sent them (their id, @type, ...) under the
    # typed name, value and place: the typed ones win, the service's changes show.
    sent = {
        c.get("name"): c for c in _list(extra.get("serviceCharacteristic")) if isinstance(c, dict)
    }
    doc["serviceCharacteristic"] = [
        {
            **sent.get(name, {}),
            "name": name,
            "valueType": sent.get(name, {}).get("valueType", _value_type(value)),
            "value": value,
        }
        for name, value in service.characteristics.items()
    ]
    doc.pop("place", None)
    if service.places:
        places = {p.get("id"): p for p in _list(extra.get("place")) if isinstance(p, dict)}
        doc["place"] = [{**places.get(p.id, {}), **_place(p)} for p in service.places]
    parties = [p for p in _list(extra.get("relatedParty"))]
    if service.customer is not None:
        c = service.customer
        customer = _compact(
            {
                **c.extra,
                "id": c.id,
                "name": c.name,
                "role": c.role or "customer",
                "@referredType": c.referred_type or "Organization",
            }
        )
        parties = [customer, *parties]
    if parties:
        doc["relatedParty"] = parties
    relationships = [
        {"relationshipType": "dependsOn", "service": {"id": d, "href": service_href(d, base)}}
        for d in service.depends_on
    ]
    relationships += [r for r in _list(extra.get("serviceRelationship")) if r not in relationships]
    if relationships:
        doc["serviceRelationship"] = relationships
    made = []
    if service.created_by is not None:
        order_id, item_id = service.created_by
        made.append(_order_item(order_id, item_id, "add"))
    if service.modified_by is not None and service.modified_by != service.created_by:
        order_id, item_id = service.modified_by
        action = "delete" if service.state is ServiceState.TERMINATED else "modify"
        made.append(_order_item(order_id, item_id, action))
    if made:
        doc["serviceOrderItem"] = made
    if "startDate" not in doc and service.created_at is not None:
        doc["startDate"] = tmf_time(service.created_at)
    if service.terminated_at is not None:
        doc["endDate"] = tmf_time(service.terminated_at)
    doc["@type"] = extra.get("@type", "Service")
    return doc


def _order_item(order_id: str, item_id: str | None, action: str) -> dict[str, Any]:
    return _compact(
        {
            "serviceOrderId": order_id,
            "itemId": item_id,
            "itemAction": action,
            "serviceOrderHref": f"/tmf-api/serviceOrdering/v4/serviceOrder/{order_id}",
            "@referredType": "ServiceOrderItem",
        }
    )


def _place(place: Place) -> dict[str, Any]:
    return _compact(
        {
            "id": place.id,
            "name": place.name,
            "role": place.role or "installationSite",
            "@referredType": "GeographicSite",
        }
    )


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}

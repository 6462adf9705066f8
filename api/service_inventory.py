"""TMF638 v4 `service` (Service Inventory), read-only, and a service's history under /api/v1.

The list and retrieve answer from the `service` read model (projections/inventory.py, its
`document` column: tmf/tmf638.service_to_tmf638); `asOf` on retrieve replays the service's
events up to that time (`ServiceOrders.service_as_of`). Services change only through orders
(and imports): POST, PATCH and DELETE are not served (405, a TMF Error naming the methods
allowed). docs/inventory.md, "TMF638 API".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from serviceorders.api.common import (
    QueryInt,
    bad_parameter,
    base_url,
    command_context,
    ctx_of,
    etag,
    one_of,
    page_of,
    read_body,
    select_fields,
)
from serviceorders.api.errors import ApiError
from serviceorders.domain.errors import ServiceNotFound
from serviceorders.domain.values import ServiceState
from serviceorders.projections.inventory_queries import (
    InventoryQueries,
    ServiceFilter,
    history_entries,
)
from serviceorders.support.isotime import parse as parse_time
from serviceorders.tmf.tmf638 import BASE, service_href, service_to_tmf638
from serviceorders.tmf.tmf641 import BASE_PATH as ORDERING_BASE

router = APIRouter(prefix=BASE, tags=["TMF638 service"], dependencies=[Depends(read_body)])
history_router = APIRouter(
    prefix="/api/v1", tags=["workflow", "inventory"], dependencies=[Depends(read_body)]
)
ALWAYS = ("id", "href", "state", "@type")
MAX_PAGE = 1000
STATES = tuple(s.value for s in ServiceState)
READ_ONLY = (
    " The inventory is read-only here: services are created, changed and terminated by "
    "completed service orders (TMF641) and by imports; POST, PATCH and DELETE answer 405."
)


def _not_found(service_id: str, when: str = "") -> ApiError:
    return ApiError(404, "not_found", "Not Found", f"no service {service_id}{when}")


def present(request: Request, document: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """The stored TMF638 document with absolute hrefs (its own, its order items', its
    related services'), `fields` selected."""
    root = base_url(request)
    doc = dict(document)
    doc["href"] = href_of(root, str(doc.get("id")))
    if isinstance(doc.get("serviceOrderItem"), list):
        doc["serviceOrderItem"] = [
            {**ref, "serviceOrderHref": root + ref["serviceOrderHref"]}
            if isinstance(ref, dict) and str(ref.get("serviceOrderHref", "")).startswith("/")
            else ref
            for ref in doc["serviceOrderItem"]
        ]
    if isinstance(doc.get("serviceRelationship"), list):
        doc["serviceRelationship"] = [
            _absolute_related(root, r) for r in doc["serviceRelationship"]
        ]
    return select_fields(doc, fields, ALWAYS)


def href_of(root: str, service_id: str) -> str:
    """The absolute href of a service: its id percent-encoded (any text: `/`, `?`, ...)."""
    return f"{root}{BASE}/service/{quote(service_id, safe='')}"


def _absolute_related(root: str, relationship: Any) -> Any:
    """A relationship the engine wrote (its href is service_href of the id): absolute."""
    if not isinstance(relationship, dict) or not isinstance(relationship.get("service"), dict):
        return relationship
    service: dict[str, Any] = relationship["service"]
    related = service.get("id")
    if isinstance(related, str) and service.get("href") == service_href(related):
        return {**relationship, "service": {**service, "href": href_of(root, related)}}
    return relationship


def parse_as_of(value: str) -> datetime:
    """An ISO 8601 date-time (no offset: UTC); 400 naming `asOf` otherwise."""
    text = value.strip().strip('"').strip("'")
    try:
        when = parse_time(text)
    except ValueError:
        raise bad_parameter(
            "asOf", f"must be an ISO 8601 date-time such as 2024-05-01T10:00:00Z, not {value!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _has_nul(*values: str | None) -> bool:
    return any("\x00" in v for v in values if v)


@router.get(
    "/service",
    summary="List or find services",
    description="Filters (exact match): state, name, category, serviceSpecification.id, "
    "relatedParty.id (the customer or any other related party), place.id (any of the "
    "service's places), serviceOrderItem.serviceOrderId (every service that order created, "
    "changed or terminated), id (comma-separated). `fields` selects attributes (id, href, "
    "state and @type are always included). Newest service first. offset / limit must be 0 "
    "or more (400 otherwise); limit is clamped to 1000. X-Total-Count: how many match; "
    "X-Result-Count: how many are in the page." + READ_ONLY,
)
def list_services(
    request: Request,
    fields: str | None = None,
    offset: QueryInt = 0,
    limit: QueryInt = 100,
    state: str | None = None,
    name: str | None = None,
    category: str | None = None,
    id: str | None = None,
    specification_id: str | None = Query(None, alias="serviceSpecification.id"),
    party_id: str | None = Query(None, alias="relatedParty.id"),
    place_id: str | None = Query(None, alias="place.id"),
    order_id: str | None = Query(None, alias="serviceOrderItem.serviceOrderId"),
) -> JSONResponse:
    command_context(request)  # authenticates
    one_of("state", state, STATES)
    offset, limit = page_of(offset, limit, MAX_PAGE)
    ids = tuple(i.strip() for i in id.split(",") if i.strip()) if id is not None else ()
    where = ServiceFilter(
        state=state,
        name=name,
        category=category,
        specification_id=specification_id,
        party_id=party_id,
        place_id=place_id,
        order_id=order_id,
        ids=ids,
    )
    if _has_nul(*where.values()) or (id is not None and not ids):
        # No service holds a NUL character (PostgreSQL could not even compare with one);
        # an `id` of only commas names no service.
        return JSONResponse([], headers={"X-Total-Count": "0", "X-Result-Count": "0"})
    with ctx_of(request).read() as models:
        page = InventoryQueries(models.db).services(where, offset=offset, limit=limit)
    body = [present(request, row["document"], fields) for row in page.items]
    return JSONResponse(
        body, headers={"X-Total-Count": str(page.total), "X-Result-Count": str(len(body))}
    )


# `{id:path}`: a service's id is any text (an imported one may hold a `/`, sent as %2F).
@router.get(
    "/service/{id:path}",
    summary="Retrieve a service",
    description="The service as the inventory holds it now; with `asOf` (an ISO 8601 "
    "date-time; no offset means UTC), as it was at that time, replayed from its events "
    "(404 when it did not exist yet, 400 for a malformed time). `fields` selects "
    "attributes (id, href, state and @type are always included). The service's history "
    "(which orders changed it, when, by whom): GET /api/v1/services/{id}/history." + READ_ONLY,
)
def retrieve_service(
    request: Request,
    id: str,
    fields: str | None = None,
    as_of: str | None = Query(
        None,
        alias="asOf",
        description="The service as it was at this date-time (ISO 8601; no offset: UTC)",
    ),
) -> JSONResponse:
    command_context(request)
    if as_of is not None:
        when = parse_as_of(as_of)
        app = ctx_of(request).app
        try:
            service = app.service_as_of(id, when)
        except ServiceNotFound:
            raise _not_found(id) from None
        if service is None:
            raise _not_found(id, f" at {as_of.strip()} (it was created later)")
        document = service_to_tmf638(app.unseal_service(service))
        headers = {"ETag": etag(service.version)}
        return JSONResponse(present(request, document, fields), headers=headers)
    if "\x00" in id:
        raise _not_found(id)
    with ctx_of(request).read() as models:
        row = InventoryQueries(models.db).service(id)
    if row is None:
        raise _not_found(id)
    return JSONResponse(
        present(request, row["document"], fields), headers={"ETag": etag(row["version"])}
    )


@history_router.get(
    "/services/{id:path}/history",
    summary="A service's history",
    description="Every event of the service, oldest first: its version, kind (created, "
    "imported, modified, terminated, order_opened, order_closed, dependent_added, "
    "dependent_removed), time (occurredAt), the order and item (orderId, itemId, with "
    "the order's TMF641 href), who (actor id and role), the service's state after it, and "
    "what changed (changes: per characteristic {from, to}; place, specification, name, "
    "state when they changed). 404 for an unknown service.",
)
def service_history(request: Request, id: str) -> JSONResponse:
    command_context(request)
    try:
        events = ctx_of(request).app.service_history(id)
    except ServiceNotFound:
        raise _not_found(id) from None
    root = base_url(request)
    body = history_entries(events)
    for entry in body:
        if entry["orderId"] is not None:
            entry["orderHref"] = f"{root}{ORDERING_BASE}/serviceOrder/{entry['orderId']}"
    headers = {"ETag": etag(events[-1].originator_version), "X-Total-Count": str(len(body))}
    return JSONResponse(body, headers=headers)

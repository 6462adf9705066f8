"""The service lookup (issue 20): a service of the inventory with its history, linked both
ways with the orders that made it what it is.

`/console/services` is the lookup form (a service id); `/console/services/{id}` shows the
service (state, specification, customer, places, characteristics, what it depends on and
what depends on it, whether it was imported or which order item created it, the orders that
have it open) and its history: each event with when, what, which order and item (linked to
the order page) and by whom; `?version=N` shows the service as it was after its N-th event.

Reads only, from the write side (`ServiceOrders.service_history`: the service's events,
revealed by the log's mapper, replayed here as `get_service` would): the page is right
after the save that completed the order, with no projection in between. An unknown id is
the table's answer to `ServiceNotFound` (404).

The order page's items link here (`item_services`, a template global the order page calls):
an item naming a service links to it, a completed `add` item to the service it created
(`service_id_for(order, item)`), and a `modify` item shows the value each characteristic
it changes had before (`order.inventory[item].previous`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from jinja2 import pass_context
from jinja2.runtime import Context
from serviceorders.api.common import ctx_of
from serviceorders.api.console.web import (
    PREFIX,
    Refusal,
    begin,
    page,
    query_of,
    redirect,
    render,
    templates,
)
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import OrderNotFound, ServiceNotFound
from serviceorders.domain.service import (
    Service,
    ServiceCreated,
    ServiceDependentAdded,
    ServiceDependentRemoved,
    ServiceEvent,
    ServiceModified,
    ServiceOrderClosed,
    ServiceOrderOpened,
    ServiceTerminated,
    service_id_for,
    service_key,
)
from serviceorders.domain.values import ItemAction, ItemState
from serviceorders.support.limits import MAX_ID

router = APIRouter()


def service_href(service_id: str) -> str:
    """The console page of a service (its id quoted whole: ids may hold `/`, `?`, `#`)."""
    return f"{PREFIX}/services/{quote(service_id, safe='')}"


def known(app: ServiceOrders, service_id: str) -> bool:
    """Whether the inventory holds a service with this id (one indexed read)."""
    if not service_id or len(service_id) > MAX_ID:
        return False
    return bool(app.recorder.select_events(service_key(service_id), limit=1))


# ------------------------------------------------------------------------ lookup
@router.get(PREFIX + "/services", include_in_schema=False)
@page
def lookup(request: Request) -> Response:
    """The lookup form; `?id=` opens the service, or says there is none (404, the id kept)."""
    current = begin(request)
    wanted = query_of(request).get("id", "")
    error = None
    if wanted:
        if len(wanted) > MAX_ID:
            error = f"A service id has at most {MAX_ID} characters."
        elif known(ctx_of(request).app, wanted):
            return redirect(current, service_href(wanted))
        else:
            error = f"There is no service {wanted} in the inventory."
    return render(
        current, "services.html", status=404 if error else 200, wanted=wanted, error=error
    )


# ----------------------------------------------------------------- service page
@dataclass(frozen=True)
class OrderRef:
    """An order a service's event names: its console page when it is one of ours."""

    id: str
    name: str  # its external id, else its id
    href: str | None
    state: str | None = None


@dataclass(frozen=True)
class Change:
    """A characteristic (or the place, specification, name) a modify item changed."""

    what: str
    before: Any  # None: it had none
    after: Any


@dataclass
class HistoryEntry:
    version: int
    when: datetime
    type: str
    verb: str
    actor: str
    role: str
    channel: str
    hash: str
    order: OrderRef | None = None
    items: tuple[str, ...] = ()
    details: list[tuple[str, str, str | None]] = field(default_factory=list)  # label, text, link
    changes: list[Change] = field(default_factory=list)


class Orders:
    """The orders a page names, each read once."""

    def __init__(self, app: ServiceOrders) -> None:
        self.app = app
        self.seen: dict[str, OrderRef] = {}

    def ref(self, order_id: str | None) -> OrderRef | None:
        if not order_id:
            return None
        found = self.seen.get(order_id)
        if found is None:
            try:
                order = self.app.get_order(UUID(order_id))
            except (ValueError, OrderNotFound):
                found = OrderRef(order_id, order_id, None)
            else:
                found = OrderRef(
                    order_id,
                    order.header.external_id or order_id,
                    f"{PREFIX}/orders/{order.id}",
                    order.state.value,
                )
            self.seen[order_id] = found
        return found


def _place_text(place: Any) -> str:
    return f"{place.id} — {place.name}" if getattr(place, "name", None) else str(place.id)


def _spec_text(spec: Any) -> str:
    text = spec.name or spec.id
    return f"{text} v{spec.version}" if spec.version else text


def entry_of(event: ServiceEvent, orders: Orders) -> HistoryEntry:
    """One event as the history table shows it."""
    entry = HistoryEntry(
        version=event.originator_version,
        when=event.timestamp,
        type=type(event).__name__,
        verb=type(event).__name__,
        actor=event.actor.id,
        role=event.actor.role.value,
        channel=event.source.channel.value,
        hash=event.hash,
    )
    if isinstance(event, ServiceCreated):
        entry.verb = "imported" if event.imported else "created"
        entry.order = orders.ref(event.order_id)
        entry.items = (event.item_id,) if event.item_id else ()
        entry.details.append(("state", event.state.value, None))
    elif isinstance(event, ServiceOrderOpened):
        entry.verb = "order opened"
        entry.order = orders.ref(event.order_id)
        entry.items = event.item_ids
        entry.details.append(("action", event.action, None))
    elif isinstance(event, ServiceOrderClosed):
        entry.verb = "order closed, service unchanged"
        entry.order = orders.ref(event.order_id)
        entry.details.append(("order", event.order_state, None))
    elif isinstance(event, ServiceModified):
        entry.verb = "modified"
        entry.order = orders.ref(event.order_id)
        entry.items = (event.item_id,)
        entry.changes = [
            Change(name, event.previous.get(name), value)
            for name, value in event.characteristics.items()
        ]
        if event.place is not None:
            entry.changes.append(Change("place", None, _place_text(event.place)))
        if event.specification is not None:
            entry.changes.append(Change("specification", None, _spec_text(event.specification)))
        if event.name is not None:
            entry.changes.append(Change("name", None, event.name))
    elif isinstance(event, ServiceTerminated):
        entry.verb = "terminated"
        entry.order = orders.ref(event.order_id)
        entry.items = (event.item_id,)
    elif isinstance(event, ServiceDependentAdded | ServiceDependentRemoved):
        added = isinstance(event, ServiceDependentAdded)
        entry.verb = "dependent added" if added else "dependent removed"
        entry.details.append(("service", event.dependent, service_href(event.dependent)))
    return entry


def replayed(events: Iterable[ServiceEvent]) -> Service:
    """The service after `events` (its first ones, oldest first), as the repository
    builds it."""
    service: Any = None
    for event in events:
        service = event.mutate(service)
    assert isinstance(service, Service)
    return service


@router.get(PREFIX + "/services/{service_id:path}", include_in_schema=False)
@page
def service_page(request: Request, service_id: str) -> Response:
    current = begin(request)
    if not service_id:
        return redirect(current, f"{PREFIX}/services")
    app = ctx_of(request).app
    try:
        events: list[ServiceEvent] = app.service_history(service_id)
    except ServiceNotFound as e:
        raise Refusal.of(e) from None
    raw = request.query_params.get("version", "")
    digits = raw.isascii() and raw.isdigit()  # int() also reads other scripts' digits
    version = int(raw) if digits and 0 < int(raw) <= len(events) else None
    if raw and version is None:
        raise Refusal(
            404,
            "Not found",
            f"The service {service_id} has versions 1 to {len(events)}; there is no version {raw}.",
        )
    service = replayed(events[:version] if version else events)
    orders = Orders(app)
    created_by = service.created_by
    return render(
        current,
        "service.html",
        service=service,
        latest=len(events),
        version=version,
        history=[entry_of(e, orders) for e in events],
        created=orders.ref(created_by[0]) if created_by else None,
        created_item=created_by[1] if created_by else None,
        modified=orders.ref(service.modified_by[0]) if service.modified_by else None,
        modified_item=service.modified_by[1] if service.modified_by else None,
        open_orders=[(orders.ref(k), items) for k, items in service.open_orders.items()],
        related=[(s, known(app, s)) for s in (*service.depends_on, *service.dependents)],
    )


# ------------------------------------------------------ from the order page
@dataclass(frozen=True)
class ItemService:
    """The service an order item is about, as the order page links it."""

    service_id: str
    href: str | None  # None: the inventory holds no such service
    created: bool  # the service this (completed add) item created
    previous: dict[str, Any]  # a modify item's changed characteristics: the value before


@pass_context
def item_services(context: Context, order: dict[str, Any]) -> dict[str, ItemService]:
    """For the order page (its view `order`): each item's service. An item naming one links
    to it (or says it is not in the inventory); a completed `add` item naming none links to
    the service it created, when that exists. Never fails the page: an order that cannot be
    read again shows no links."""
    visit = context.get("v")
    if visit is None:
        return {}
    app = ctx_of(visit.request).app
    try:
        order_id = UUID(order["id"])
    except (KeyError, TypeError, ValueError):
        return {}
    inventory: dict[str, Any] = {}
    if any(i["action"] == ItemAction.MODIFY for i in order["items"]):
        try:  # the previous values are the order's, as of the version the page shows
            inventory = app.get_order(order_id, version=order.get("version")).inventory
        except OrderNotFound:
            inventory = {}
    found: dict[str, ItemService] = {}
    for item in order["items"]:
        sid, created = item.get("serviceId"), False
        if not sid:
            if item["action"] != ItemAction.ADD or item.get("state") != ItemState.COMPLETED:
                continue
            sid, created = service_id_for(order_id, item["id"]), True
            if not known(app, sid):
                continue
        check = inventory.get(item["id"])
        found[item["id"]] = ItemService(
            sid,
            service_href(sid) if created or known(app, sid) else None,
            created,
            dict(check.previous) if check is not None else {},
        )
    return found


templates.globals["item_services"] = item_services
templates.globals["service_href"] = service_href

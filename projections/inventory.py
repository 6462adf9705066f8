"""The inventory's read models (issue 20): the services as they are now (`service`), every
event of every service (`service_history`) and the changes per UTC day
(`service_daily_changes`). They read only the page's service events and the services they
touch (`Batch.service_events`, `Batch.services`, `Batch.services_before`: log.py), never
order events. Names and places are held revealed (the log's mapper reveals them, as for the
orders' read models); the rebuild after an erasure leaves "[erased]" in their place.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from serviceorders.domain import service as sv
from serviceorders.domain.service import Service, ServiceEvent
from serviceorders.domain.values import Place, ServiceState, SpecRef
from serviceorders.projections.base import Projection
from serviceorders.projections.log import Batch
from serviceorders.storage.db import ReadDb, Table
from serviceorders.tmf.tmf638 import service_to_tmf638


# ------------------------------------------------------------------------- service
class Services(Projection):
    """One row per service of the inventory: the service as it is now."""

    table = Table(
        name="service",
        columns=(
            ("service_id", "text"),
            ("state", "text"),
            ("name", "text"),
            ("specification_id", "text"),
            ("customer_id", "text"),
            ("customer_name", "text"),
            ("site_id", "text"),
            ("places", "json"),
            ("characteristics", "json"),
            ("depends_on", "json"),
            ("dependents", "json"),
            ("open_orders", "json"),
            ("created_order_id", "text"),
            ("created_item_id", "text"),
            ("last_order_id", "text"),
            ("imported", "bool"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("terminated_at", "timestamptz"),
            ("document", "json"),
            ("version", "int"),
        ),
        primary_key=("service_id",),
        indexes={
            "customer": ("customer_id", "state"),
            "site": ("site_id", "state"),
            "specification": ("specification_id", "state"),
            "state": ("state",),
        },
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        if not batch.service_events:
            return
        updated = _last_event_times(batch)
        new: list[dict[str, Any]] = []
        old: list[dict[str, Any]] = []
        for key, service in batch.services.items():
            row = service_row(service, updated[key])
            # A table built from the first event: a service created in this page has no
            # row yet (inserted without a conflict check).
            fresh = batch.fresh and batch.services_before.get(key) is None
            (new if fresh else old).append(row)
        db.insert(self.table, table, new)
        db.upsert(self.table, table, old)


def _last_event_times(batch: Batch) -> dict[UUID, Any]:
    return {event.originator_id: event.timestamp for _, event in batch.service_events}


def place_json(place: Place) -> dict[str, Any]:
    return place.model_dump(mode="json", exclude_none=True)


def _spec_id(spec: SpecRef | None) -> str | None:
    return spec.id if spec is not None else None


def service_row(service: Service, updated_at: Any) -> dict[str, Any]:
    """The `service` row of a service as it is (after its event at `updated_at`, its
    latest)."""
    customer = service.customer
    created = service.created_by
    last = service.modified_by or created
    return {
        "service_id": service.service_id,
        "state": service.state.value,
        "name": service.name,
        "specification_id": _spec_id(service.specification),
        "customer_id": customer.id if customer else None,
        "customer_name": customer.name if customer else None,
        "site_id": service.places[0].id if service.places else None,
        "places": [place_json(p) for p in service.places],
        "characteristics": service.characteristics,
        "depends_on": list(service.depends_on),
        "dependents": list(service.dependents),
        "open_orders": list(service.open_orders),
        "created_order_id": created[0] if created else None,
        "created_item_id": created[1] if created else None,
        "last_order_id": last[0] if last else None,
        "imported": service.imported,
        "created_at": service.created_at,
        "updated_at": updated_at,
        "terminated_at": service.terminated_at,
        "document": service_to_tmf638(service),
        "version": service.version,
    }


# ----------------------------------------------------------------- service_history
class ServiceHistory(Projection):
    """One row per event of every service: which order changed it, when, by whom, how."""

    table = Table(
        name="service_history",
        columns=(
            ("service_id", "text"),
            ("version", "int"),
            ("kind", "text"),
            ("order_id", "text"),
            ("item_id", "text"),
            ("actor_id", "text"),
            ("actor_role", "text"),
            ("occurred_at", "timestamptz"),
            ("changes", "json"),
        ),
        primary_key=("service_id", "version"),
        indexes={"order": ("order_id",)},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        rows = [
            history_row(event, before, batch.services[event.originator_id].service_id)
            for event, before in replayed(batch)
        ]
        if batch.fresh:  # keyed by the page's own versions: none can exist yet
            db.insert(self.table, table, rows)
        else:
            db.upsert(self.table, table, rows, guard=None)


@dataclass(frozen=True, slots=True)
class Before:
    """What a service event's row needs of the service as it was just before the event."""

    place: Place | None  # its first place
    specification: SpecRef | None
    name: str | None
    state: ServiceState


def replayed(batch: Batch) -> list[tuple[ServiceEvent, Before | None]]:
    """Each service event of the page with its service as it was just before it (None
    before its creation), replayed from `batch.services_before` (one copy per service)."""
    current: dict[UUID, Any] = {}
    found: list[tuple[ServiceEvent, Before | None]] = []
    for _, event in batch.service_events:
        key = event.originator_id
        if key not in current:
            before = batch.services_before.get(key)
            current[key] = copy.deepcopy(before) if before is not None else None
        service = current[key]
        found.append(
            (
                event,
                None
                if service is None
                else Before(
                    service.places[0] if service.places else None,
                    service.specification,
                    service.name,
                    service.state,
                ),
            )
        )
        current[key] = event.mutate(service)
    return found


def kind_of(event: ServiceEvent) -> str:
    if isinstance(event, sv.ServiceCreated):
        return "imported" if event.imported else "created"
    return {
        sv.ServiceModified: "modified",
        sv.ServiceTerminated: "terminated",
        sv.ServiceOrderOpened: "order_opened",
        sv.ServiceOrderClosed: "order_closed",
        sv.ServiceDependentAdded: "dependent_added",
        sv.ServiceDependentRemoved: "dependent_removed",
    }[type(event)]


def _change(before: Any, after: Any) -> dict[str, Any]:
    return {"from": before, "to": after}


def history_row(event: ServiceEvent, before: Before | None, service_id: str) -> dict[str, Any]:
    """The `service_history` row of an event of the service `service_id`; `before`: the
    service just before it (None for its creation)."""
    order_id: str | None = None
    item_id: str | None = None
    changes: dict[str, Any] = {}
    if isinstance(event, sv.ServiceCreated):
        order_id, item_id = event.order_id, event.item_id
        changes = {
            "state": event.state.value,
            "name": event.name,
            "specification": _spec_id(event.specification),
            "characteristics": event.characteristics,
            "places": [place_json(p) for p in event.places],
            "customer_id": event.customer.id if event.customer else None,
            "depends_on": list(event.depends_on),
        }
    elif isinstance(event, sv.ServiceModified):
        order_id, item_id = event.order_id, event.item_id
        changes = {
            name: _change(event.previous.get(name), value)
            for name, value in event.characteristics.items()
        }
        # Place, specification and name compared as the read models hold them (revealed):
        # the event may carry an unchanged place or name again (Service.modify compares
        # the item's freshly sealed value with the service's), which is no change.
        if event.place is not None:
            first = before.place if before is not None else None
            was_place = place_json(first) if first else None
            if was_place != place_json(event.place):
                changes["place"] = _change(was_place, place_json(event.place))
        if event.specification is not None:
            was = _spec_id(before.specification if before is not None else None)
            if was != event.specification.id:
                changes["specification"] = _change(was, event.specification.id)
        if event.name is not None:
            was_name = before.name if before is not None else None
            if was_name != event.name:
                changes["name"] = _change(was_name, event.name)
    elif isinstance(event, sv.ServiceTerminated):
        order_id, item_id = event.order_id, event.item_id
        state = before.state.value if before is not None else None
        changes = {"state": _change(state, "terminated")}
    elif isinstance(event, sv.ServiceOrderOpened):
        order_id = event.order_id
        item_id = event.item_ids[0] if event.item_ids else None
        changes = {"action": event.action, "item_ids": list(event.item_ids)}
    elif isinstance(event, sv.ServiceOrderClosed):
        order_id = event.order_id
        changes = {"order_state": event.order_state}
    elif isinstance(event, sv.ServiceDependentAdded | sv.ServiceDependentRemoved):
        changes = {"dependent": event.dependent}
    return {
        "service_id": service_id,
        "version": event.originator_version,
        "kind": kind_of(event),
        "order_id": order_id,
        "item_id": item_id,
        "actor_id": event.actor.id,
        "actor_role": event.actor.role.value,
        "occurred_at": event.timestamp,
        "changes": changes,
    }


# ----------------------------------------------------------- service_daily_changes
COUNTED = {
    sv.ServiceModified: "modified",
    sv.ServiceTerminated: "terminated",
}


class ServiceDailyChanges(Projection):
    """Services created, imported, modified and terminated per UTC day and
    specification."""

    table = Table(
        name="service_daily_changes",
        columns=(
            ("day", "date"),
            ("kind", "text"),
            ("specification_id", "text"),
            ("changes", "int"),
        ),
        primary_key=("day", "kind", "specification_id"),
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        counts: Counter[tuple[Any, str, str]] = Counter()
        for event, before in replayed(batch):
            if isinstance(event, sv.ServiceCreated):
                kind = "imported" if event.imported else "created"
                spec = _spec_id(event.specification)
            elif type(event) in COUNTED:
                kind = COUNTED[type(event)]
                modified_spec = getattr(event, "specification", None)
                was = before.specification if before is not None else None
                spec = _spec_id(modified_spec or was)
            else:
                continue
            counts[(event.timestamp.date(), kind, spec or "")] += 1
        # Exactly once per page (runner.py), so the counts add up, as daily_state_counts'.
        db.upsert(
            self.table,
            table,
            [
                {"day": day, "kind": kind, "specification_id": spec, "changes": n}
                for (day, kind, spec), n in sorted(counts.items())
            ],
            guard=None,
            add=("changes",),
        )


INVENTORY_PROJECTIONS: tuple[Projection, ...] = (
    Services(),
    ServiceHistory(),
    ServiceDailyChanges(),
)

"""Read-side queries of the inventory (issue 20): the `service` read model (projections/
inventory.py) for the TMF638 API's list and retrieve, and a service's history told from its
events (the API's /api/v1/services/{id}/history and `serviceorders inventory show`).

Every filter value is a bound parameter; the sort order is fixed. The `service` table's
`document` holds the TMF638 Service (tmf/tmf638.service_to_tmf638), so that attributes the
table has no column for (category, every related party, every place) are filtered there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from serviceorders.domain import service as sv
from serviceorders.projections.inventory import kind_of
from serviceorders.projections.queries import MAX_LIMIT, Page
from serviceorders.storage.db import ReadDb
from serviceorders.tmf.time import tmf_time

TABLE = "service"
HISTORY_TABLE = "service_history"
# The columns a TMF638 answer needs, and how each is stored (storage/db.py's kinds).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("service_id", "text"),
    ("state", "text"),
    ("version", "int"),
    ("created_at", "timestamptz"),
    ("document", "json"),
)
# Kinds of service_history rows (projections/inventory.py) in which an order changed the
# service: the orders `serviceOrderItem.serviceOrderId` finds a service by.
CHANGED_BY_ORDER = ("created", "modified", "terminated")


@dataclass(frozen=True)
class ServiceFilter:
    """TMF638 attribute filters; None: no filter. Each is an exact match."""

    state: str | None = None
    name: str | None = None
    category: str | None = None
    specification_id: str | None = None  # serviceSpecification.id
    party_id: str | None = None  # relatedParty.id: the customer or any other related party
    place_id: str | None = None  # place.id: any of the service's places
    order_id: str | None = None  # serviceOrderItem.serviceOrderId: an order that made/changed it
    ids: tuple[str, ...] = ()  # id (comma-separated on the wire)

    def values(self) -> Iterable[str]:
        given = (
            self.state,
            self.name,
            self.category,
            self.specification_id,
            self.party_id,
            self.place_id,
            self.order_id,
            *self.ids,
        )
        return (v for v in given if v is not None)


class InventoryQueries:
    """The `service` read model, as the TMF638 API lists and retrieves it."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db

    def services(
        self, where: ServiceFilter = ServiceFilter(), offset: int = 0, limit: int = 100
    ) -> Page[dict[str, Any]]:
        """`service` rows (COLUMNS), newest service first, and how many match."""
        offset = max(0, offset)
        limit = max(0, min(limit, MAX_LIMIT))
        clauses, params = self._clauses(where)
        sql_where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        total = self.db.fetchone(f"SELECT COUNT(*) FROM {TABLE} s{sql_where}", params)
        rows = self.db.fetchall(
            f"SELECT {', '.join(f's.{c}' for c, _ in COLUMNS)} FROM {TABLE} s{sql_where} "
            "ORDER BY s.created_at IS NULL, s.created_at DESC, s.service_id "
            "LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        items = [self._decode(row) for row in rows]
        return Page(items=items, total=int(total[0]) if total else 0, offset=offset, limit=limit)

    def service(self, service_id: str) -> dict[str, Any] | None:
        """The `service` row (COLUMNS) of this id, or None."""
        row = self.db.fetchone(
            f"SELECT {', '.join(c for c, _ in COLUMNS)} FROM {TABLE} WHERE service_id = %s",
            [service_id],
        )
        return None if row is None else self._decode(row)

    # ------------------------------------------------------------------- plumbing
    def _decode(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            name: self.db.decode(value, kind)
            for (name, kind), value in zip(COLUMNS, row, strict=True)
        }

    def _clauses(self, where: ServiceFilter) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def add(clause: str, *values: Any) -> None:
            clauses.append(clause)
            params.extend(values)

        if where.state is not None:
            add("s.state = %s", where.state)
        if where.name is not None:
            add("s.name = %s", where.name)
        if where.specification_id is not None:
            add("s.specification_id = %s", where.specification_id)
        if where.category is not None:
            add(f"{self._member('category')} = %s", where.category)
        if where.party_id is not None:
            add(
                f"(s.customer_id = %s OR {self._in_array('relatedParty')})",
                where.party_id,
                *self._in_array_params(where.party_id),
            )
        if where.place_id is not None:
            add(
                f"(s.site_id = %s OR {self._in_array('place')})",
                where.place_id,
                *self._in_array_params(where.place_id),
            )
        if where.order_id is not None:
            kinds = ", ".join(["%s"] * len(CHANGED_BY_ORDER))
            add(
                "(s.created_order_id = %s OR s.last_order_id = %s OR EXISTS (SELECT 1 FROM "
                f"{HISTORY_TABLE} h WHERE h.service_id = s.service_id AND h.order_id = %s "
                f"AND h.kind IN ({kinds})))",
                where.order_id,
                where.order_id,
                where.order_id,
                *CHANGED_BY_ORDER,
            )
        if where.ids:
            add(f"s.service_id IN ({', '.join(['%s'] * len(where.ids))})", *where.ids)
        return clauses, params

    def _member(self, name: str) -> str:
        """The document's top-level text attribute `name` (SQL)."""
        if self.db.dialect == "postgres":
            return f"(s.document->>'{name}')"
        return f"json_extract(s.document, '$.{name}')"

    def _in_array(self, name: str) -> str:
        """Whether one object of the document's array `name` has the `id` given (SQL, with
        `_in_array_params`' parameters)."""
        if self.db.dialect == "postgres":
            return f"(s.document->'{name}' @> %s::jsonb)"
        return (
            f"EXISTS (SELECT 1 FROM json_each(s.document, '$.{name}') e "
            "WHERE CASE WHEN e.type = 'object' THEN json_extract(e.value, '$.id') END = %s)"
        )

    def _in_array_params(self, wanted: str) -> list[Any]:
        if self.db.dialect == "postgres":
            return [json.dumps([{"id": wanted}])]
        return [wanted]


# --------------------------------------------------------------------- history


def history_entries(events: Iterable[Any]) -> list[dict[str, Any]]:
    """A service's events (ServiceOrders.service_history, oldest first) as its history: per
    event its version, kind (as the service_history read model names them), time, the order
    and item, who (actor id and role), the state after it, and what changed. JSON values
    only; the kinds and `changes` are those of projections/inventory.py's service_history."""
    entries = []
    state: str | None = None
    for event in events:
        kind = kind_of(event)
        changes: dict[str, Any] = {}
        order_id = getattr(event, "order_id", None)
        item_id = getattr(event, "item_id", None)
        if isinstance(event, sv.ServiceCreated):
            state = event.state.value
            changes = _created_changes(event)
        elif isinstance(event, sv.ServiceModified):
            changes = {
                name: {"from": event.previous.get(name), "to": value}
                for name, value in event.characteristics.items()
            }
            if event.place is not None:
                changes["place"] = {"to": event.place.id}
            if event.specification is not None:
                changes["specification"] = {"to": event.specification.id}
            if event.name is not None:
                changes["name"] = {"to": event.name}
        elif isinstance(event, sv.ServiceTerminated):
            changes = {"state": {"from": state, "to": "terminated"}}
            state = "terminated"
        elif isinstance(event, sv.ServiceOrderOpened):
            changes = {"action": event.action, "itemIds": list(event.item_ids)}
            item_id = ",".join(event.item_ids) or None
        elif isinstance(event, sv.ServiceOrderClosed):
            changes = {"orderState": event.order_state}
        elif isinstance(event, sv.ServiceDependentAdded | sv.ServiceDependentRemoved):
            changes = {"dependent": event.dependent}
        entries.append(
            {
                "version": event.originator_version,
                "kind": kind,
                "occurredAt": tmf_time(event.timestamp),
                "orderId": order_id,
                "itemId": item_id,
                "actor": {"id": event.actor.id, "role": str(event.actor.role.value)},
                "state": state,
                "changes": changes,
            }
        )
    return entries


def _created_changes(event: sv.ServiceCreated) -> dict[str, Any]:
    changes: dict[str, Any] = {"state": {"from": None, "to": event.state.value}}
    if event.specification is not None:
        changes["specification"] = {"to": event.specification.id}
    if event.customer is not None:
        changes["customer"] = {"to": event.customer.id}
    for name, value in event.characteristics.items():
        changes[name] = {"from": None, "to": value}
    if event.places:
        changes["place"] = {"to": event.places[0].id}
    return changes

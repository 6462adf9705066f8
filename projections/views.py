"""The read models. Each projection owns one table named after it and applies a folded
page of the log to it; rows are pure functions of the orders' states (or, for the history
and the daily counts, of their state transitions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from serviceorders.domain import events as ev
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.proposals import diff
from serviceorders.domain.values import OrderState
from serviceorders.projections.base import Projection
from serviceorders.projections.decoding import is_a
from serviceorders.projections.inventory import INVENTORY_PROJECTIONS
from serviceorders.projections.log import Batch, Transition
from serviceorders.projections.notifications import NotificationOutbox
from serviceorders.storage.db import ReadDb, Table
from serviceorders.tmf.tmf641 import order_to_tmf641


# ------------------------------------------------------------------ order_summary
class OrderSummary(Projection):
    table = Table(
        name="order_summary",
        columns=(
            ("id", "uuid"),
            ("external_id", "text"),
            ("state", "text"),
            ("category", "text"),
            ("priority", "text"),
            ("description", "text"),
            ("customer_id", "text"),
            ("customer_name", "text"),
            ("created_at", "timestamptz"),
            ("order_date", "timestamptz"),
            ("requested_start_date", "timestamptz"),
            ("requested_completion_date", "timestamptz"),
            ("item_count", "int"),
            ("site_count", "int"),
            ("flag_count", "int"),
            ("submitted_by", "text"),
            ("submitted_at", "timestamptz"),
            ("approved_by", "text"),
            ("approved_at", "timestamptz"),
            ("rejected_by", "text"),
            ("rejected_at", "timestamptz"),
            ("rejection_reason", "text"),
            ("point_of_no_return", "bool"),
            ("deleted", "bool"),
            ("state_since", "timestamptz"),
            ("last_change_at", "timestamptz"),
            ("version", "int"),
        ),
        primary_key=("id",),
        indexes={
            "state": ("state",),
            "external_id": ("external_id",),
            "order_date": ("order_date",),
            "customer": ("customer_id",),
        },
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        write(db, self.table, table, batch, summary_row)


def write(
    db: ReadDb,
    spec: Table,
    table: str,
    batch: Batch,
    rows_of: Callable[[ServiceOrder], list[dict[str, Any]] | dict[str, Any]],
    orders: Iterable[ServiceOrder] | None = None,
) -> None:
    """The rows of the page's orders: upserts, guarded by version. The rows of orders
    created in this page are inserted: without conflict checks in a table being built from
    the first event (`batch.fresh`), else by `insert_new` (a plain COPY on PostgreSQL, the
    upsert if a row is there after all)."""
    orders = batch.orders.values() if orders is None else orders
    new: list[dict[str, Any]] = []
    old: list[dict[str, Any]] = []
    created = batch.new
    for order in orders:
        found = rows_of(order)
        into = new if order.id in created else old
        if isinstance(found, dict):
            into.append(found)
        else:
            into.extend(found)
    if batch.fresh:
        db.insert(spec, table, new)
    else:
        db.insert_new(spec, table, new)
    db.upsert(spec, table, old)


def summary_row(order: ServiceOrder) -> dict[str, Any]:
    header = order.header
    customer = header.customer
    rejected = order.state is OrderState.REJECTED
    decider = order.decided_by.id if order.decided_by else None
    return {
        "id": order.id,
        "external_id": header.external_id,
        "state": order.state.value,
        "category": header.category,
        "priority": header.priority,
        "description": header.description,
        "customer_id": customer.id if customer else None,
        "customer_name": customer.name if customer else None,
        "created_at": order.created_on,
        "order_date": order.submitted_at,
        "requested_start_date": header.requested_start_date,
        "requested_completion_date": header.requested_completion_date,
        "item_count": len(order.items),
        "site_count": len(sites_of(order)),
        "flag_count": len(order.flags),
        "submitted_by": order.submitted_by.id if order.submitted_by else None,
        "submitted_at": order.submitted_at,
        "approved_by": None if rejected else decider,
        "approved_at": None if rejected else order.decided_at,
        "rejected_by": decider if rejected else None,
        "rejected_at": order.decided_at if rejected else None,
        "rejection_reason": order.rejection_reason,
        "point_of_no_return": order.point_of_no_return,
        "deleted": order.deleted,
        "state_since": order.state_since,
        "last_change_at": order.modified_on,
        "version": order.version,
    }


def sites_of(order: ServiceOrder) -> list[str]:
    return sorted({i.place.id for i in order.items.values() if i.place})


def specifications_of(order: ServiceOrder) -> list[str]:
    return sorted({i.specification.id for i in order.items.values() if i.specification})


# --------------------------------------------------------------------- order_item
class OrderItems(Projection):
    VERSION = 2  # 2: `parent_id` (nested items) and the v4.1 item states (issue 19)
    table = Table(
        name="order_item",
        columns=(
            ("order_id", "uuid"),
            ("item_id", "text"),
            ("parent_id", "text"),
            ("action", "text"),
            ("specification_id", "text"),
            ("specification_name", "text"),
            ("specification_version", "text"),
            ("service_id", "text"),
            ("place_id", "text"),
            ("place_name", "text"),
            ("quantity", "int"),
            ("state", "text"),
            ("depends_on", "json"),
            ("characteristics", "json"),
            ("version", "int"),
        ),
        primary_key=("order_id", "item_id"),
        indexes={"place": ("place_id",), "specification": ("specification_id",)},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        # Items an order no longer has leave the table; the version guard keeps newer rows.
        db.delete_older(table, "order_id", "uuid", _touched(batch))
        write(db, self.table, table, batch, item_rows)


def _touched(batch: Batch) -> list[tuple[Any, int]]:
    """(order id, version) of the page's orders that may have rows already."""
    fresh = batch.new if batch.fresh else ()
    return [(o.id, o.version) for o in batch.orders.values() if o.id not in fresh]


def item_rows(order: ServiceOrder) -> list[dict[str, Any]]:
    rows = []
    for item in order.items.values():
        spec = item.specification
        rows.append(
            {
                "order_id": order.id,
                "item_id": item.id,
                "parent_id": item.parent,
                "action": item.action.value,
                "specification_id": spec.id if spec else None,
                "specification_name": spec.name if spec else None,
                "specification_version": spec.version if spec else None,
                "service_id": item.service_id,
                "place_id": item.place.id if item.place else None,
                "place_name": item.place.name if item.place else None,
                "quantity": item.quantity,
                "state": item.state.value if item.state else None,
                "depends_on": list(item.depends_on),
                "characteristics": item.characteristics,
                "version": order.version,
            }
        )
    return rows


# ------------------------------------------------------------------- review_queue
class ReviewQueue(Projection):
    VERSION = 2  # 2: proposals (kind "proposal") and their `changes`
    table = Table(
        name="review_queue",
        columns=(
            ("order_id", "uuid"),
            ("kind", "text"),
            ("external_id", "text"),
            ("priority", "text"),
            ("submitted_at", "timestamptz"),
            ("submitted_by", "text"),
            ("customer_id", "text"),
            ("customer_name", "text"),
            ("sites", "json"),
            ("site_count", "int"),
            ("specifications", "json"),
            ("item_actions", "json"),
            ("item_count", "int"),
            ("flags", "json"),
            ("flag_count", "int"),
            ("reason", "text"),
            ("changes", "json"),
            ("version", "int"),
        ),
        primary_key=("order_id", "kind"),
        indexes={"submitted_at": ("submitted_at",), "priority": ("priority", "submitted_at")},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        # Rows leave the queue when decided: clear each touched order's older rows first.
        db.delete_older(table, "order_id", "uuid", _touched(batch))
        write(db, self.table, table, batch, queue_rows)


def queue_rows(order: ServiceOrder) -> list[dict[str, Any]]:
    """What the order waits for a manager to decide: its approval (acknowledged), a
    cancellation request (assessingCancellation), a proposal (a revision after approval,
    `changes` is its diff against the order as approved so far); none, one or two rows."""
    waiting: list[tuple[str, Any, str | None, str | None, list[Any], list[dict[str, Any]]]] = []
    flags = [f.model_dump(mode="json") for f in order.flags]
    if order.state is OrderState.ACKNOWLEDGED:
        who = order.submitted_by.id if order.submitted_by else None
        waiting.append(("approval", order.submitted_at, who, None, flags, []))
    elif order.state is OrderState.ASSESSING_CANCELLATION:
        who = order.cancellation_requested_by.id if order.cancellation_requested_by else None
        waiting.append(
            ("cancellation", order.state_since, who, order.cancellation_reason, flags, [])
        )
    proposal = order.proposal
    if proposal is not None and not order.deleted:
        # The values as the read models hold every column: revealed by the log's mapper.
        changes = [c.as_json() for c in diff(order.header, order.items, proposal)]
        proposed_flags = [f.model_dump(mode="json") for f in proposal.flags]
        waiting.append(
            (
                "proposal",
                proposal.proposed_at,
                proposal.proposed_by.id,
                proposal.id,
                proposed_flags,
                changes,
            )
        )
    if not waiting:
        return []
    customer = order.header.customer
    actions = Counter(i.action.value for i in order.items.values())
    sites = sites_of(order)
    return [
        {
            "order_id": order.id,
            "kind": kind,
            "external_id": order.header.external_id,
            "priority": order.header.priority,
            "submitted_at": since,
            "submitted_by": who,
            "customer_id": customer.id if customer else None,
            "customer_name": customer.name if customer else None,
            "sites": sites,
            "site_count": len(sites),
            "specifications": specifications_of(order),
            "item_actions": dict(sorted(actions.items())),
            "item_count": len(order.items),
            "flags": row_flags,
            "flag_count": len(row_flags),
            "reason": reason,
            "changes": changes,
            "version": order.version,
        }
        for kind, since, who, reason, row_flags, changes in waiting
    ]


# ----------------------------------------------------------------- order_document
class OrderDocument(Projection):
    VERSION = 2  # 2: `errorMessage` (a rejection, failed items; issue 19)
    table = Table(
        name="order_document",
        columns=(
            ("order_id", "uuid"),
            ("external_id", "text"),
            ("state", "text"),
            ("category", "text"),
            ("priority", "text"),
            ("order_date", "timestamptz"),
            ("document", "json"),
            ("last_change_at", "timestamptz"),
            ("version", "int"),
        ),
        primary_key=("order_id",),
        indexes={
            "state": ("state",),
            "external_id": ("external_id",),
            "order_date": ("order_date",),
        },
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        # Drafts are not TMF641 orders: they get a document once submitted. A deleted order
        # leaves the TMF641 resources (its history stays in the event log).
        orders = batch.orders.values()
        deleted = [(db.adapt(o.id, "uuid"),) for o in orders if o.deleted]
        if deleted:
            db.executemany(f"DELETE FROM {table} WHERE order_id = %s", deleted)
        write(
            db,
            self.table,
            table,
            batch,
            lambda o: document_row(o, batch),
            [o for o in orders if o.state is not OrderState.DRAFT and not o.deleted],
        )


def document_row(order: ServiceOrder, batch: Batch | None = None) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "external_id": order.header.external_id,
        "state": order.state.value,
        "category": order.header.category,
        "priority": order.header.priority,
        "order_date": order.submitted_at,
        "document": batch.document(order) if batch else order_to_tmf641(order),
        "last_change_at": order.modified_on,
        "version": order.version,
    }


# ----------------------------------------------------------- cancellation_request
class CancellationRequests(Projection):
    """TMF641 cancelServiceOrder resources, in v4's task vocabulary."""

    table = Table(
        name="cancellation_request",
        columns=(
            ("id", "text"),
            ("order_id", "uuid"),
            ("state", "text"),
            ("decision", "text"),
            ("reason", "text"),
            ("requested_cancellation_date", "timestamptz"),
            ("requested_by", "text"),
            ("requested_at", "timestamptz"),
            ("decided_by", "text"),
            ("decided_at", "timestamptz"),
            ("decision_reason", "text"),
            ("effective_cancellation_date", "timestamptz"),
            ("version", "int"),
        ),
        primary_key=("id",),
        indexes={"order": ("order_id",)},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        for _, event in batch.events:
            if is_a(event, ev.CancellationRequested):
                db.upsert(
                    self.table,
                    table,
                    [
                        {
                            "id": event.request_id,
                            "order_id": event.originator_id,
                            "state": "accepted",
                            "decision": None,
                            "reason": event.reason,
                            "requested_cancellation_date": event.requested_date,
                            "requested_by": event.actor.id,
                            "requested_at": event.timestamp,
                            "decided_by": None,
                            "decided_at": None,
                            "decision_reason": None,
                            "effective_cancellation_date": None,
                            "version": event.originator_version,
                        }
                    ],
                )
            elif is_a(event, (ev.CancellationApproved, ev.CancellationDenied)):
                approved = is_a(event, ev.CancellationApproved)
                db.execute(
                    f"UPDATE {table} SET state = %s, decision = %s, decided_by = %s, "
                    f"decided_at = %s, decision_reason = %s, version = %s "
                    f"WHERE id = %s AND version < %s",
                    (
                        "inProgress" if approved else "done",
                        "approved" if approved else "denied",
                        event.actor.id,
                        db.adapt(event.timestamp, "timestamptz"),
                        event.note if approved else event.reason,  # type: ignore[union-attr]
                        event.originator_version,
                        event.request_id,
                        event.originator_version,
                    ),
                )
            elif is_a(event, ev.OrderCancelled) and event.request_id:
                db.execute(
                    f"UPDATE {table} SET state = 'done', effective_cancellation_date = %s, "
                    f"version = %s WHERE id = %s AND version < %s",
                    (
                        db.adapt(event.timestamp, "timestamptz"),
                        event.originator_version,
                        event.request_id,
                        event.originator_version,
                    ),
                )


# ------------------------------------------------------------ order_state_history
class OrderStateHistory(Projection):
    table = Table(
        name="order_state_history",
        columns=(
            ("order_id", "uuid"),
            ("version", "int"),
            ("from_state", "text"),
            ("to_state", "text"),
            ("changed_at", "timestamptz"),
            ("previous_state_since", "timestamptz"),
            ("seconds_in_previous_state", "numeric"),
            ("actor_id", "text"),
            ("actor_role", "text"),
        ),
        primary_key=("order_id", "version"),
        indexes={"changed_at": ("changed_at",), "to_state": ("to_state", "changed_at")},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        rows = [history_row(t) for t in batch.transitions]
        if batch.fresh:  # keyed by the page's own versions: none can exist yet
            db.insert(self.table, table, rows)
        else:
            db.insert_new(self.table, table, rows, guard=None)


def history_row(t: Transition) -> dict[str, Any]:
    spent = (t.at - t.previous_since).total_seconds() if t.previous_since else None
    return {
        "order_id": t.order_id,
        "version": t.version,
        "from_state": t.from_state.value if t.from_state else None,
        "to_state": t.to_state.value,
        "changed_at": t.at,
        "previous_state_since": t.previous_since,
        "seconds_in_previous_state": spent,
        "actor_id": t.actor.id,
        "actor_role": t.actor.role.value,
    }


# ------------------------------------------------------------- daily_state_counts
class DailyStateCounts(Projection):
    """Orders entering each state per UTC day, overall and by category, specification
    and site (an order counts once per specification and per site it contains)."""

    table = Table(
        name="daily_state_counts",
        columns=(
            ("day", "date"),
            ("state", "text"),
            ("dimension", "text"),
            ("value", "text"),
            ("orders", "int"),
        ),
        primary_key=("day", "state", "dimension", "value"),
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        counts: Counter[tuple[Any, ...]] = Counter()
        for t in batch.transitions:
            for dimension, value in dimensions(t):
                counts[(t.at.date(), t.to_state.value, dimension, value)] += 1
        db.upsert(
            self.table,
            table,
            [
                {"day": day, "state": state, "dimension": dim, "value": value, "orders": n}
                for (day, state, dim, value), n in sorted(counts.items())
            ],
            guard=None,
            add=("orders",),
        )


def dimensions(t: Transition) -> Sequence[tuple[str, str]]:
    found = [("all", ""), ("category", t.category or "")]
    found += [("specification", s) for s in t.specifications]
    found += [("site", s) for s in t.sites]
    return found


# ------------------------------------------ what the TMF641 order shows (issue 19)
# Relationships and places are read from the order's TMF641 document (rendered once per
# page and order, shared with order_document and the notifications: `Batch.document`), so
# the rows hold what GET returns: every place as sent, by reference or by value, and the
# relationships with the types the document gives them. Orders with none skip the document.


def _document(order: ServiceOrder, batch: Batch | None) -> dict[str, Any]:
    return batch.document(order) if batch else order_to_tmf641(order)


def document_items(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item of a TMF641 document, nested ones after their parent (depth first)."""
    stack = list(reversed(doc.get("serviceOrderItem") or ()))
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(item.get("serviceOrderItem") or ()))


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


class OrderRelationships(Projection):
    """The order's relationships to other orders and its items' to other items."""

    table = Table(
        name="order_relationship",
        columns=(
            ("order_id", "uuid"),
            ("seq", "int"),
            ("item_id", "text"),
            ("relationship_type", "text"),
            ("related_order_id", "text"),
            ("related_item_id", "text"),
            ("referred_type", "text"),
            ("version", "int"),
        ),
        primary_key=("order_id", "seq"),
        indexes={"related_order": ("related_order_id",)},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        db.delete_older(table, "order_id", "uuid", _touched(batch))
        write(db, self.table, table, batch, lambda o: relationship_rows(o, batch))


def relationship_rows(order: ServiceOrder, batch: Batch | None = None) -> list[dict[str, Any]]:
    items = order.items.values()
    if not order.header.order_relationships and not any(
        i.relationships or i.depends_on for i in items
    ):
        return []
    doc = _document(order, batch)
    found: list[tuple[str | None, dict[str, Any], str | None, str | None, Any]] = [
        (None, r, _text(r.get("id")), None, r.get("@referredType"))
        for r in doc.get("orderRelationship") or ()
        if isinstance(r, dict)
    ]
    for item in document_items(doc):
        for r in item.get("serviceOrderItemRelationship") or ():
            if isinstance(r, dict):
                sent = r.get("orderItem")
                ref: dict[str, Any] = sent if isinstance(sent, dict) else {}
                found.append(
                    (
                        _text(item.get("id")),
                        r,
                        _text(ref.get("serviceOrderId")),
                        _text(ref.get("itemId")),
                        ref.get("@referredType"),
                    )
                )
    return [
        {
            "order_id": order.id,
            "seq": seq,
            "item_id": item_id,
            "relationship_type": _text(r.get("relationshipType")),
            "related_order_id": related_order,
            "related_item_id": related_item,
            "referred_type": _text(referred),
            "version": order.version,
        }
        for seq, (item_id, r, related_order, related_item, referred) in enumerate(found)
    ]


class ItemPlaces(Projection):
    """Every place of every item, as the TMF641 order shows them."""

    table = Table(
        name="order_item_place",
        columns=(
            ("order_id", "uuid"),
            ("item_id", "text"),
            ("position", "int"),
            ("place_id", "text"),
            ("name", "text"),
            ("role", "text"),
            ("place_type", "text"),
            ("place", "json"),
            ("version", "int"),
        ),
        primary_key=("order_id", "item_id", "position"),
        indexes={"place": ("place_id",)},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        db.delete_older(table, "order_id", "uuid", _touched(batch))
        write(db, self.table, table, batch, lambda o: place_rows(o, batch))


def place_rows(order: ServiceOrder, batch: Batch | None = None) -> list[dict[str, Any]]:
    if not any(i.place or i.service_extra.get("place") for i in order.items.values()):
        return []
    rows = []
    for item in document_items(_document(order, batch)):
        service = item.get("service")
        places = service.get("place") if isinstance(service, dict) else None
        for position, place in enumerate(places if isinstance(places, list) else ()):
            if not isinstance(place, dict):
                continue
            rows.append(
                {
                    "order_id": order.id,
                    "item_id": _text(item.get("id")),
                    "position": position,
                    "place_id": _text(place.get("id")),
                    "name": _text(place.get("name")),
                    "role": _text(place.get("role")),
                    "place_type": _text(place.get("@referredType") or place.get("@type")),
                    "place": place,
                    "version": order.version,
                }
            )
    return rows


class Outcomes(Projection):
    """What the order told back in `errorMessage`: rejections, failed items, refused
    proposals, denied cancellations."""

    table = Table(
        name="order_outcome",
        columns=(
            ("order_id", "uuid"),
            ("seq", "int"),
            ("code", "text"),
            ("message", "text"),
            ("occurred_at", "timestamptz"),
            ("item_ids", "json"),
            ("version", "int"),
        ),
        primary_key=("order_id", "seq"),
        indexes={"code": ("code", "occurred_at")},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        # No delete of older rows: an order's outcomes are only ever appended (the events
        # add one each), so its rows at (order, seq) are all rewritten at its new version.
        write(db, self.table, table, batch, outcome_rows)


def outcome_rows(order: ServiceOrder) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order.id,
            "seq": seq,
            "code": outcome.code,
            "message": outcome.message,
            "occurred_at": outcome.date,
            "item_ids": list(outcome.item_ids),
            "version": order.version,
        }
        for seq, outcome in enumerate(order.outcomes)
    ]


class Milestones(Projection):
    """The milestones the order reached (TMF641 `milestone`)."""

    table = Table(
        name="order_milestone",
        columns=(
            ("order_id", "uuid"),
            ("seq", "int"),
            ("milestone_id", "text"),
            ("name", "text"),
            ("occurred_at", "timestamptz"),
            ("message", "text"),
            ("item_ids", "json"),
            ("version", "int"),
        ),
        primary_key=("order_id", "seq"),
        indexes={"name": ("name", "occurred_at")},
    )

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        # Appended only, as outcomes are: no delete of older rows.
        write(db, self.table, table, batch, milestone_rows)


def milestone_rows(order: ServiceOrder) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order.id,
            "seq": seq,
            "milestone_id": milestone.id,
            "name": milestone.name,
            "occurred_at": milestone.date,
            "message": milestone.message,
            "item_ids": list(milestone.item_ids),
            "version": order.version,
        }
        for seq, milestone in enumerate(order.milestones)
    ]


PROJECTIONS: tuple[Projection, ...] = (
    OrderSummary(),
    OrderItems(),
    ReviewQueue(),
    OrderDocument(),
    CancellationRequests(),
    OrderStateHistory(),
    DailyStateCounts(),
    OrderRelationships(),
    ItemPlaces(),
    Outcomes(),
    Milestones(),
    NotificationOutbox(),
    *INVENTORY_PROJECTIONS,  # the services of the inventory (issue 20)
)

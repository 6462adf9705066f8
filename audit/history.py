"""An order's history for auditors: the timeline, the order as it was, and what changed.

Edge-neutral (the CLI's `serviceorders history` and the API's
`GET /api/v1/orders/{id}/history` both call it). Everything is derived from the stored
events alone: the order is replayed event by event (snapshots are not used), so what is
shown is exactly what the hash-chained log implies.

* `timeline(app, id)`: one entry per event: version, type, timestamp, actor, source,
  correlation / causation ids, hash / prevHash, the event's own data, and the order after
  the event: its state, a compact summary and its document. The document is the TMF641
  ServiceOrder (`order_to_tmf641`) once the order is past `draft`; a draft has no TMF641
  representation, so its document is the canonical view below (`documentKind` says which).
* `at_version(app, id, n)` / `as_of(app, id, when)`: the order as it was after version n,
  or at an instant (the events up to the first one later than `when`).
* `diff(app, id, a, b)`: what changed from version a to version b, as JSON Pointer paths
  over the canonical view (`canonical`), plus the events in between. Version 0 is "before
  the order existed", so `diff(app, id, 0, n)` lists everything the order got.

Bad input (a version out of range, an instant before the order existed, a > b) raises
`HistoryQueryError` (an `InvalidCommand`: 400 at the API, exit 1 at the CLI); an unknown
order raises `OrderNotFound`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import InvalidCommand
from serviceorders.domain.events import OrderEvent
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.proposals import diff as proposal_diff
from serviceorders.domain.values import Actor, OrderState, Source
from serviceorders.support.isotime import iso_or_none, utc_iso
from serviceorders.tmf.tmf641 import order_to_tmf641

# Envelope fields of a stored event: shown apart, not as the event's data.
ENVELOPE = frozenset(
    {
        "timestamp",
        "actor",
        "source",
        "correlation_id",
        "causation_id",
        "prev_hash",
        "hash",
        "hash_rule",
        "class_version",
        "originator_topic",
    }
)


class HistoryQueryError(InvalidCommand):
    """A history query that cannot be answered as asked (the message says why)."""

    code = "invalid_history_query"


# ------------------------------------------------------------------------ values
def iso(value: datetime | date | None) -> str | None:
    """ISO 8601 (`support.isotime`), UTC as `Z`; a naive date-time is UTC by convention."""
    if isinstance(value, datetime):
        return utc_iso(utc(value))
    return iso_or_none(value)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def actor_view(actor: Actor | None) -> dict[str, str] | None:
    return {"id": actor.id, "role": actor.role.value} if actor else None


def source_view(source: Source) -> dict[str, Any]:
    """The source with its set fields only: channel, topic / partition / offset / eventId
    (Kafka), requestId (API)."""
    names = {"request_id": "requestId", "event_id": "eventId"}
    return {names.get(k, k): v for k, v in source.model_dump(mode="json").items() if v is not None}


def canonical(order: ServiceOrder) -> dict[str, Any]:
    """The order as plain JSON with a fixed shape: what `diff` compares.

    Items are keyed by item id (so a path names the item, not its position); every
    optional fact is present (null when unset), so a change is a replace, not an add."""
    header = order.header
    return {
        "id": str(order.id),
        "state": order.state.value,
        "stateSince": iso(order.state_since),
        "header": {
            "externalId": header.external_id,
            "category": header.category,
            "description": header.description,
            "priority": header.priority,
            "requestedStartDate": iso(header.requested_start_date),
            "requestedCompletionDate": iso(header.requested_completion_date),
            "notificationContact": header.notification_contact,
            "relatedParties": [
                {"id": p.id, "name": p.name, "role": p.role, "referredType": p.referred_type}
                for p in header.related_parties
            ],
            "orderRelationships": [
                {"id": r.id, "relationshipType": r.relationship_type}
                for r in header.order_relationships
            ],
        },
        "items": {
            item.id: {
                "action": item.action.value,
                "specification": (
                    {
                        "id": item.specification.id,
                        "name": item.specification.name,
                        "version": item.specification.version,
                    }
                    if item.specification
                    else None
                ),
                "serviceId": item.service_id,
                "serviceName": item.service_name,
                "characteristics": dict(item.characteristics),
                "place": (
                    {"id": item.place.id, "name": item.place.name, "role": item.place.role}
                    if item.place
                    else None
                ),
                "quantity": item.quantity,
                "dependsOn": list(item.depends_on),
                "state": item.state.value if item.state else None,
            }
            for item in order.items.values()
        },
        "flags": [
            {
                "code": p.code,
                "message": p.message,
                "itemId": p.item_id,
                "characteristic": p.characteristic,
                "structural": p.structural,
            }
            for p in order.flags
        ],
        "notes": [{"text": n.text, "author": n.author, "date": iso(n.date)} for n in order.notes],
        "submittedBy": actor_view(order.submitted_by),
        "submittedAt": iso(order.submitted_at),
        "decidedBy": actor_view(order.decided_by),
        "decidedAt": iso(order.decided_at),
        "rejectionReason": order.rejection_reason,
        "waitingReason": order.waiting_reason,
        "priorState": order.prior_state.value if order.prior_state else None,
        "cancellation": {
            "requestId": order.cancellation_request_id,
            "reason": order.cancellation_reason,
            "requestedBy": actor_view(order.cancellation_requested_by),
        },
        "pointOfNoReturn": order.point_of_no_return,
        "deleted": order.deleted,
        "revision": order.revision,
        "contributors": list(order.contributors),
        "proposal": _proposal_view(order),
    }


def _proposal_view(order: ServiceOrder) -> dict[str, Any] | None:
    """The waiting proposal: who proposed it, when, on which version, and its diff."""
    proposal = order.proposal
    if proposal is None:
        return None
    return {
        "id": proposal.id,
        "proposedBy": actor_view(proposal.proposed_by),
        "proposedAt": iso(proposal.proposed_at),
        "baseVersion": proposal.base_version,
        "changes": [c.as_json() for c in proposal_diff(order.header, order.items, proposal)],
    }


def summary(order: ServiceOrder) -> dict[str, Any]:
    """A compact picture of the order: state, each item's state, counts and flags."""
    body: dict[str, Any] = {
        "state": order.state.value,
        "items": {
            item.id: item.state.value if item.state else None for item in order.items.values()
        },
        "flags": len(order.flags),
        "notes": len(order.notes),
        "revision": order.revision,
        "pointOfNoReturn": order.point_of_no_return,
        "deleted": order.deleted,
    }
    if order.waiting_reason:
        body["waitingReason"] = order.waiting_reason
    if order.cancellation_request_id:
        body["cancellationRequestId"] = order.cancellation_request_id
    if order.proposal is not None:
        body["proposalId"] = order.proposal.id
    return body


def document(order: ServiceOrder) -> tuple[str, dict[str, Any]]:
    """(`documentKind`, document): the TMF641 ServiceOrder past `draft`, else the
    canonical view (a draft is no TMF641 resource)."""
    if order.state is OrderState.DRAFT:
        return "draft", canonical(order)
    return "tmf641", order_to_tmf641(order)


def event_view(event: OrderEvent) -> dict[str, Any]:
    state = event.stored_state()
    return {
        "version": event.originator_version,
        "type": type(event).__name__,
        "timestamp": iso(event.timestamp),
        "actor": actor_view(event.actor),
        "source": source_view(event.source),
        "correlationId": event.correlation_id,
        "causationId": event.causation_id,
        "hash": event.hash,
        "prevHash": event.prev_hash,
        "data": {k: v for k, v in state.items() if k not in ENVELOPE},
    }


# ---------------------------------------------------------------------- replay
def _events(app: ServiceOrders, order_id: UUID) -> list[OrderEvent]:
    return app.history(order_id)  # OrderNotFound for an unknown order


def _replay(events: list[OrderEvent]) -> Iterator[tuple[OrderEvent, ServiceOrder]]:
    """Each event with the order right after it. The same aggregate object moves on with
    each step: read what you need from it before taking the next."""
    order: Any = None
    for event in events:
        order = event.mutate(order)
        yield event, order


def _fold(events: list[OrderEvent], version: int) -> ServiceOrder:
    order: Any = None
    for event in events[:version]:
        order = event.mutate(order)
    folded: ServiceOrder = order
    return folded


# -------------------------------------------------------------------- queries
def timeline(app: ServiceOrders, order_id: UUID, *, documents: bool = True) -> list[dict[str, Any]]:
    """Every event, oldest first, with the order after it (see the module docstring)."""
    entries = []
    for event, order in _replay(_events(app, order_id)):
        entry = event_view(event)
        entry["stateAfter"] = order.state.value
        entry["summaryAfter"] = summary(order)
        if documents:
            entry["documentKind"], entry["documentAfter"] = document(order)
        entries.append(entry)
    return entries


@dataclass(frozen=True)
class PastOrder:
    """The order as it was: after `event` (its version), looked up by version or instant."""

    order: ServiceOrder
    event: OrderEvent
    latest_version: int
    as_of: datetime | None = None

    @property
    def version(self) -> int:
        return self.event.originator_version

    def view(self) -> dict[str, Any]:
        kind, doc = document(self.order)
        return {
            "orderId": str(self.order.id),
            "version": self.version,
            "latestVersion": self.latest_version,
            "asOf": iso(self.as_of),
            "event": {
                "version": self.version,
                "type": type(self.event).__name__,
                "timestamp": iso(self.event.timestamp),
                "actor": actor_view(self.event.actor),
                "hash": self.event.hash,
            },
            "state": self.order.state.value,
            "summary": summary(self.order),
            "order": canonical(self.order),
            "documentKind": kind,
            "document": doc,
        }


def at_version(app: ServiceOrders, order_id: UUID, version: int) -> PastOrder:
    """The order as it was right after its event `version` (1 = the first)."""
    events = _events(app, order_id)
    latest = len(events)
    if not 1 <= version <= latest:
        raise HistoryQueryError(
            f"version {version} is out of range: order {order_id} has versions 1 to {latest}"
        )
    return PastOrder(_fold(events, version), events[version - 1], latest)


def as_of(app: ServiceOrders, order_id: UUID, when: datetime) -> PastOrder:
    """The order exactly as it was at `when` (a naive time is UTC): every event up to the
    first one recorded later than `when`."""
    when = utc(when)
    events = _events(app, order_id)
    version = 0
    for event in events:
        if utc(event.timestamp) > when:
            break
        version = event.originator_version
    if version == 0:
        raise HistoryQueryError(
            f"order {order_id} did not exist yet at {iso(when)}: it was "
            f"created at {iso(events[0].timestamp)}"
        )
    return PastOrder(_fold(events, version), events[version - 1], len(events), when)


def diff(app: ServiceOrders, order_id: UUID, a: int, b: int) -> dict[str, Any]:
    """What changed from version `a` to version `b` (0 <= a <= b <= the latest version):
    `changes` [{op: add | remove | replace, path (JSON Pointer over `canonical`), before,
    after}] and the `events` a+1..b that made them."""
    events = _events(app, order_id)
    latest = len(events)
    if a > b:
        raise HistoryQueryError(
            f"the diff goes from an earlier version to a later one: {a} is after {b}"
        )
    for version in (a, b):
        if not 0 <= version <= latest:
            raise HistoryQueryError(
                f"version {version} is out of range: order {order_id} "
                f"has versions 1 to {latest} (0: before it existed)"
            )
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for event, order in _replay(events[:b]):
        if event.originator_version == a:
            before = canonical(order)
        if event.originator_version == b:
            after = canonical(order)
    if a == b:
        before = after
    changes: list[dict[str, Any]] = []
    _compare(before, after, "", changes)
    return {
        "orderId": str(order_id),
        "from": a,
        "to": b,
        "latestVersion": latest,
        "changes": changes,
        "events": [event_view(e) for e in events[a:b]],
    }


# ----------------------------------------------------------------------- diffing
def pointer(path: str, key: str | int) -> str:
    """`path` extended by one JSON Pointer (RFC 6901) token."""
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _same(x: Any, y: Any) -> bool:
    return type(x) is type(y) and x == y  # 1 is not True, 1 is not 1.0


def _compare(before: Any, after: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            here = pointer(path, key)
            if key not in after:
                out.append({"op": "remove", "path": here, "before": before[key], "after": None})
            elif key not in before:
                out.append({"op": "add", "path": here, "before": None, "after": after[key]})
            else:
                _compare(before[key], after[key], here, out)
    elif isinstance(before, list) and isinstance(after, list):
        for index in range(max(len(before), len(after))):
            here = pointer(path, index)
            if index >= len(after):
                out.append({"op": "remove", "path": here, "before": before[index], "after": None})
            elif index >= len(before):
                out.append({"op": "add", "path": here, "before": None, "after": after[index]})
            else:
                _compare(before[index], after[index], here, out)
    elif not _same(before, after):
        out.append({"op": "replace", "path": path, "before": before, "after": after})

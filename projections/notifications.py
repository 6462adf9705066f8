"""TMF641 notifications, derived from the event log: the `notification_outbox` projection.

Each domain event becomes zero or more TMF641 notification envelopes, stored in log order
(`position`, then `seq` within the event). The outbox is a projection like the others:
applied by the Projector in the page's transaction (exactly once), rebuildable and
verifiable. The hub's delivery worker (`hub.py`) fans it out to listeners; the Kafka
outbound topic can publish the same rows with the same `eventId`s.

Which domain events produce which notifications is documented in docs/notifications.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID, uuid5

from serviceorders.domain import events as ev
from serviceorders.projections.base import Projection
from serviceorders.projections.decoding import is_a
from serviceorders.projections.log import Batch, Step, replay
from serviceorders.storage.db import ReadDb, Table
from serviceorders.support.isotime import iso_or_none
from serviceorders.tmf.tmf641 import BASE_PATH

CREATE = "ServiceOrderCreateEvent"
STATE_CHANGE = "ServiceOrderStateChangeEvent"
ATTRIBUTE_VALUE_CHANGE = "ServiceOrderAttributeValueChangeEvent"
DELETE = "ServiceOrderDeleteEvent"
INFORMATION_REQUIRED = "ServiceOrderInformationRequiredEvent"
CANCEL_CREATE = "CancelServiceOrderCreateEvent"
CANCEL_STATE_CHANGE = "CancelServiceOrderStateChangeEvent"
MILESTONE = "ServiceOrderMilestoneEvent"
CANCEL_INFORMATION_REQUIRED = "CancelServiceOrderInformationRequiredEvent"
# Not sent: a jeopardy is a predicted delay, which needs lead times (a later issue).
JEOPARDY = "ServiceOrderJeopardyEvent"

# The v4.1 notification types this engine sends (every one but JEOPARDY).
EVENT_TYPES: tuple[str, ...] = (
    CREATE,
    STATE_CHANGE,
    ATTRIBUTE_VALUE_CHANGE,
    DELETE,
    INFORMATION_REQUIRED,
    MILESTONE,
    CANCEL_CREATE,
    CANCEL_STATE_CHANGE,
    CANCEL_INFORMATION_REQUIRED,
)
DOMAIN = "serviceOrdering"

# Fixed namespace of notification event ids: never change it (listeners and the Kafka
# outbound topic deduplicate on these ids).
EVENT_ID_NAMESPACE = UUID("3b0e5d0c-64a1-5f3e-8f0a-9a1c2b7d4e61")


def notification_event_id(order_id: UUID | str, version: int, event_type: str) -> str:
    """The stable `eventId` of the notification of type `event_type` that the order's
    event `version` produced: uuid5(namespace, "<order id>:<version>:<eventType>").

    The one derivation, for the hub and for any other outbound channel: the same domain
    event always yields the same id, across rebuilds, restarts and redeliveries."""
    return str(uuid5(EVENT_ID_NAMESPACE, f"{UUID(str(order_id))}:{int(version)}:{event_type}"))


def listener_name(event_type: str) -> str:
    """`ServiceOrderCreateEvent` -> `serviceOrderCreateEvent` (the TMF listener path)."""
    return event_type[:1].lower() + event_type[1:]


def order_href(order_id: Any) -> str:
    return f"{BASE_PATH}/serviceOrder/{order_id}"


def cancel_href(request_id: str) -> str:
    return f"{BASE_PATH}/cancelServiceOrder/{request_id}"


# ------------------------------------------------------------------ the outbox
class NotificationOutbox(Projection):
    """Every TMF641 notification the log implies, in log order."""

    # 2: the documents carry `errorMessage` (a rejection, failed items; issue 19)
    # 3: ServiceOrderMilestoneEvent, CancelServiceOrderInformationRequiredEvent; every
    #    outcome in `errorMessage`, `milestone` filled, items' cancellation states (issue 19)
    VERSION = 3

    table = Table(
        name="notification_outbox",
        columns=(
            ("position", "bigint"),
            ("seq", "int"),
            ("event_id", "text"),
            ("order_id", "uuid"),
            ("order_version", "int"),
            ("event_type", "text"),
            ("event_time", "timestamptz"),
            ("payload", "json"),
        ),
        primary_key=("position", "seq"),
        indexes={"order": ("order_id", "position"), "event_id": ("event_id",)},
    )
    needs_steps = True  # the fold notes each event's documents (Batch.steps)

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        rows = outbox_rows(batch)
        if batch.fresh:  # keyed by log position: no row of this page can exist yet
            db.insert(self.table, table, rows)
        else:
            db.insert_new(self.table, table, rows, guard=None)


def outbox_rows(batch: Batch) -> list[dict[str, Any]]:
    if batch.steps is None:  # a batch folded without steps: replay its orders again
        again = Batch(
            start=batch.start,
            end=batch.end,
            events=batch.events,
            earlier=batch.earlier,
            docs=batch.docs,
        )
        for order_id, history in batch.earlier.items():
            order: Any = None
            for event in history:
                order = event.mutate(order)
            again.orders[order_id] = order
        replay(again, steps=True)
        steps: list[Step] = again.steps or []
    else:
        steps = batch.steps
    cancels: dict[UUID, _Cancels] = {}
    rows: list[dict[str, Any]] = []
    for step in steps:
        event = step.event
        oid = event.originator_id
        found = cancels.get(oid)
        if found is None:
            found = cancels[oid] = _Cancels(batch.earlier.get(oid, ()))
        for seq, body in enumerate(notifications_of_step(step, found.advance(event))):
            rows.append(
                {
                    "position": step.position,
                    "seq": seq,
                    "event_id": body["eventId"],
                    "order_id": oid,
                    "order_version": event.originator_version,
                    "event_type": body["eventType"],
                    "event_time": event.timestamp,
                    "payload": body,
                }
            )
    return rows


class _Cancels:
    """An order's cancellation requests (TMF641 cancelServiceOrder resources)."""

    def __init__(self, history: Iterable[ev.OrderEvent]) -> None:
        self.cancels: dict[str, dict[str, Any]] = {}
        for event in history:
            self.advance(event)

    def advance(self, event: ev.OrderEvent) -> dict[str, Any] | None:
        """Note the event; returns the cancelServiceOrder it created or changed."""
        if is_a(event, ev.CancellationRequested):
            self.cancels[event.request_id] = {
                "id": event.request_id,
                "href": cancel_href(event.request_id),
                "state": "accepted",
                "cancellationReason": event.reason,
                "requestedCancellationDate": iso_or_none(event.requested_date),
                "serviceOrder": {
                    "id": str(event.originator_id),
                    "href": order_href(event.originator_id),
                    "@referredType": "ServiceOrder",
                },
                "@type": "CancelServiceOrder",
            }
            return _compact(self.cancels[event.request_id])
        if is_a(event, (ev.CancellationInformationRequested, ev.CancellationInformationProvided)):
            # v4.1's TaskStateType has no "waiting" state: the request stays `accepted`
            # (not yet carried out) while the requester is asked and answers; what was
            # asked travels in the notification's `description`.
            found = self.cancels.get(event.request_id)
            return None if found is None else _compact(found)
        if is_a(event, (ev.CancellationApproved, ev.CancellationDenied)):
            found = self.cancels.get(event.request_id)
            if found is None:
                return None
            approved = is_a(event, ev.CancellationApproved)
            reason = event.note if is_a(event, ev.CancellationApproved) else event.reason
            found["state"] = "inProgress" if approved else "done"
            found["completionMessage"] = f"cancellation {'approved' if approved else 'denied'}" + (
                f": {reason}" if reason else ""
            )
            return _compact(found)
        if is_a(event, ev.OrderCancelled) and event.request_id:
            found = self.cancels.get(event.request_id)
            if found is None:
                return None
            found["state"] = "done"
            found["effectiveCancellationDate"] = iso_or_none(event.timestamp)
            return _compact(found)
        return None


def notifications_of_step(step: Step, cancel: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The notifications of one event, in the order a listener should see them."""
    event = step.event
    out: list[dict[str, Any]] = []

    def emit(event_type: str, body: dict[str, Any], **extra: Any) -> None:
        out.append(envelope(event, event_type, body, **extra))

    doc_before = step.doc_before
    if is_a(event, ev.OrderDeleted):
        if step.visible_before and doc_before is not None:  # a discarded draft says nothing
            emit(DELETE, {"serviceOrder": _with_href(doc_before)})
        return out
    doc = step.doc
    if doc is None:  # drafts are not TMF641 orders
        return out
    if not step.visible_before:  # submitted: the order now exists for TMF641
        emit(CREATE, {"serviceOrder": _with_href(doc)})
        return out
    if cancel is not None:
        if is_a(event, ev.CancellationRequested):
            emit(CANCEL_CREATE, {"cancelServiceOrder": cancel})
        elif is_a(event, ev.CancellationInformationRequested):
            emit(
                CANCEL_INFORMATION_REQUIRED,
                {"cancelServiceOrder": cancel},
                description=event.information,
            )
        elif not is_a(event, ev.CancellationInformationProvided):  # its state is kept
            emit(CANCEL_STATE_CHANGE, {"cancelServiceOrder": cancel})
    before = doc_before or {}
    if step.state != step.state_before:
        emit(STATE_CHANGE, {"serviceOrder": _with_href(doc)})
    else:
        # A milestone alone is told by its own notification (below), not as a change.
        changed = sorted(
            k for k in {*doc, *before} if k != "milestone" and doc.get(k) != before.get(k)
        )
        if changed:
            emit(
                ATTRIBUTE_VALUE_CHANGE,
                {"serviceOrder": _with_href(doc)},
                fieldPath=",".join(changed),
            )
    if is_a(event, ev.InformationRequested):
        emit(INFORMATION_REQUIRED, {"serviceOrder": _with_href(doc)}, description=event.information)
    if len(doc.get("milestone", ())) > len(before.get("milestone", ())):
        emit(MILESTONE, {"serviceOrder": _with_href(doc)})
    return out


def _with_href(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "href": order_href(doc["id"]),
        **{k: v for k, v in doc.items() if k != "id"},
    }


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def envelope(
    event: ev.OrderEvent, event_type: str, body: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A TMF641 notification: the envelope around the resource (`body`)."""
    found = {
        "eventId": notification_event_id(event.originator_id, event.originator_version, event_type),
        "eventTime": iso_or_none(event.timestamp),
        "eventType": event_type,
        "correlationId": event.correlation_id,
        "domain": DOMAIN,
        **{k: v for k, v in extra.items() if v},
        "event": body,
    }
    return found


def notifications_of(events: Sequence[ev.OrderEvent]) -> list[dict[str, Any]]:
    """Every notification of one order's events (version order, from its first event):
    the same derivation as the outbox, for tests and tools."""
    batch = Batch(start=0, end=len(events), events=list(enumerate(events, 1)))
    replay(batch, steps=True)
    return [row["payload"] for row in outbox_rows(batch)]


def absolute_hrefs(payload: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    """The envelope with its resources' relative `href`s made absolute under `base_url`."""
    if not base_url:
        return payload
    base = base_url.rstrip("/")

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    base + v if k == "href" and isinstance(v, str) and v.startswith("/") else fix(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return {**payload, "event": fix(payload.get("event"))}

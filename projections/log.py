"""Reading the application's event log for projections, in pages, and folding each page
into the orders it touches (state after the page, and every state transition in it).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from serviceorders.domain.codec import UnknownEvent
from serviceorders.domain.events import ChainedEvent, OrderDeleted, OrderEvent
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.service import Service, ServiceEvent
from serviceorders.domain.values import Actor, OrderState
from serviceorders.projections.decoding import SLOW, FastDecoder, is_a
from serviceorders.storage.db import ReadDb

if TYPE_CHECKING:
    from serviceorders.tmf.tmf641 import Renders

SLOW_TOPICS = frozenset(cls.TOPIC for cls in SLOW)


@dataclass(frozen=True)
class Transition:
    """An event that moved an order into another state (or created it)."""

    position: int
    order_id: UUID
    version: int
    from_state: OrderState | None
    to_state: OrderState
    at: datetime
    previous_since: datetime | None
    actor: Actor
    category: str | None
    specifications: tuple[str, ...]
    sites: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One event of the page as a TMF641 listener sees it: the order's TMF641 document
    before and after it (None while the order is not a TMF641 order: a draft, deleted)."""

    position: int
    event: OrderEvent
    visible_before: bool
    state_before: OrderState | None
    doc_before: dict[str, Any] | None  # set whenever visible_before
    state: OrderState
    doc: dict[str, Any] | None  # None: not visible after the event


@dataclass
class Batch:
    """One page of the log, folded: what each projection needs to apply it."""

    start: int  # position before the page
    end: int  # position of the page's last event (an order's or a service's)
    events: list[tuple[int, OrderEvent]]  # the page's order events
    orders: dict[UUID, ServiceOrder] = field(default_factory=dict)  # state at `end`
    # The page's service events (domain/service.py), and the services they touch as they
    # are at `end` (by aggregate id); `services_before`: those that existed before the
    # page, as they were then (None: new in the page).
    service_events: list[tuple[int, ServiceEvent]] = field(default_factory=list)
    services: dict[UUID, Service] = field(default_factory=dict)
    services_before: dict[UUID, Service | None] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    # the earlier events (before the page) of the orders that already existed, in version
    # order: for projections that replay an order event by event (notifications)
    earlier: dict[UUID, list[OrderEvent]] = field(default_factory=dict)
    # TMF641 documents rendered while applying the page, by (order id, version): rendered
    # once, shared by the projections that need the same one
    docs: dict[tuple[UUID, int], dict[str, Any]] = field(default_factory=dict)
    # every event with the documents before and after it (when a projection asked)
    steps: list[Step] | None = None
    # the orders whose first event is in this page (no row of theirs can exist yet)
    new: set[UUID] = field(default_factory=set)
    # the target tables were empty when the projector started and only it writes them
    # (rebuild, verify): rows that cannot exist yet are inserted without conflict checks
    fresh: bool = False
    # each order's items and milestones as its last document rendered them: the next
    # document of the order renders again only those that changed (tmf641.Renders)
    renders: dict[UUID, Renders] = field(default_factory=dict)

    def document(self, order: ServiceOrder) -> dict[str, Any]:
        from serviceorders.tmf.tmf641 import Renders, order_to_tmf641

        key = (order.id, order.version)
        found = self.docs.get(key)
        if found is None:
            renders = self.renders.get(order.id)
            if renders is None:
                renders = self.renders[order.id] = Renders()
            found = self.docs[key] = order_to_tmf641(order, renders)
        return found

    def last_event_per_order(self) -> dict[UUID, OrderEvent]:
        return {event.originator_id: event for _, event in self.events}


def log_head(db: ReadDb) -> int:
    """The position of the log's last event (0: no event yet)."""
    row = db.fetchone(f"SELECT MAX({db.log_position}) FROM {db.events_table}")
    return int(row[0]) if row and row[0] is not None else 0


def events_after(db: ReadDb, position: int) -> int:
    """How many events the log holds after this position."""
    row = db.fetchone(
        f"SELECT COUNT(*) FROM {db.events_table} WHERE {db.log_position} > %s", (position,)
    )
    return int(row[0]) if row else 0


@dataclass(slots=True)
class Kept:
    """An order as a page left it: its state, its events, its last TMF641 document."""

    version: int
    order: ServiceOrder
    events: list[OrderEvent]  # every event of the order up to `version`, in order
    slow: bool  # decoded the pydantic way (EventLog._slow_orders)
    doc: dict[str, Any] | None  # the document at `version`, if a projection rendered it
    renders: Renders | None  # its document's parts as rendered (Batch.renders)


class OrderCache:
    """The orders the projector folded, as the last page that touched each left them, so
    that the next page with events of one of them starts from there instead of reading,
    decoding and folding its history again (issue 21). An entry is used only for the
    version just before the order's first event in the page (an event is immutable, so
    the state at a version is the same whoever folded it), and is taken out while the page
    uses it: a page that fails leaves nothing half-applied behind. Least recently used
    entries go first beyond `size` orders. The entries hold revealed personal data: the
    whole cache is dropped when an erasure is recorded (`EventLog.read`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[UUID, Kept] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def peek(self, order_id: UUID, version: int) -> Kept | None:
        kept = self.entries.get(order_id)
        return kept if kept is not None and kept.version == version else None

    def take(self, order_id: UUID, version: int) -> Kept | None:
        kept = self.entries.pop(order_id, None)
        if kept is None or kept.version != version:
            self.misses += 1
            return None
        self.hits += 1
        return kept

    def keep(self, kept: Kept, order_id: UUID) -> None:
        entries = self.entries
        entries[order_id] = kept
        entries.move_to_end(order_id)
        while len(entries) > self.size:
            entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


class EventLog:
    """The events table, read directly (same database as the read models)."""

    def __init__(self, db: ReadDb, mapper: Mapper[Any], fast: bool = True, keep: int = 0) -> None:
        """`keep`: how many folded orders to keep between pages (`OrderCache`; 0: none,
        every page reads the history of the orders it touches)."""
        self.db = db
        if getattr(mapper, "reveal", False) is None:
            # Personal data is sealed in the log (domain/privacy.py): the read models hold
            # it revealed, with the keys from this same database.
            from serviceorders.audit.pii import KeyStore, Vault

            mapper = copy.copy(mapper)
            mapper.reveal = Vault(KeyStore(db=db)).reveal  # type: ignore[attr-defined]
        self.mapper = mapper
        self.table, self.position = db.events_table, db.log_position
        # Order events decoded into mirrors, without pydantic (projections/decoding.py);
        # the orders of the page read last that must be decoded the pydantic way.
        self.decoder = FastDecoder(mapper) if fast and mapper is not None else None
        self._slow: set[UUID] = set()
        self.kept = OrderCache(keep) if keep > 0 else None
        self._erasures: int | None = None  # erasures recorded when the cache was checked
        self._erasure_table: bool | None = None

    def head(self) -> int:
        return log_head(self.db)

    def count_after(self, position: int) -> int:
        return events_after(self.db, position)

    def read(
        self, after: int, limit: int, stop: int | None = None
    ) -> list[tuple[int, ChainedEvent]]:
        """The next page of the log: every event (orders' and services'), in log order."""
        sql = (
            f"SELECT {self.position}, originator_id, originator_version, topic, state "
            f"FROM {self.table} WHERE {self.position} > %s"
        )
        params: list[Any] = [after]
        if stop is not None:
            sql += f" AND {self.position} <= %s"
            params.append(stop)
        sql += f" ORDER BY {self.position} LIMIT %s"
        params.append(limit)
        rows = self.db.fetchall(sql, params)
        if self.kept is not None:
            self._check_erasures()
        self._slow = self._slow_orders(rows)
        events: list[tuple[int, ChainedEvent]] = []
        for row in rows:
            try:
                events.append((int(row[0]), self._event(row[1:], int(row[0]))))
            except UnknownEvent:
                if not events:
                    raise
                break  # the page ends before it; the next page starts (and stops) there
        return events

    def _check_erasures(self) -> None:
        """Drop the kept orders when an erasure was recorded since the last page: they
        hold revealed values of the customer (audit/erasure.py, docs/audit.md)."""
        if self._erasure_table is None:
            self._erasure_table = self.db.table_exists("pii_erasure")
        if not self._erasure_table:
            return
        row = self.db.fetchone("SELECT COUNT(*) FROM pii_erasure")
        count = int(row[0]) if row else 0
        if count != self._erasures and self.kept is not None:
            self.kept.clear()
        self._erasures = count

    def _slow_orders(self, rows: Sequence[Sequence[Any]]) -> set[UUID]:
        """The page's orders that have an event (in the page or before it) whose `apply`
        needs pydantic models: decoded the pydantic way, all their events."""
        if self.decoder is None:
            return set()
        slow: set[Any] = set()
        later: dict[Any, int] = {}  # orders with events before the page: first version
        for row in rows:
            originator_id, version, topic = row[1], row[2], row[3]
            if topic in SLOW_TOPICS:
                slow.add(originator_id)
            elif int(version) > 1:
                later.setdefault(originator_id, int(version))
        kept = self.kept
        ids = []
        for key, version in later.items():
            if key in slow:
                continue
            entry = kept.peek(_uuid(key), version - 1) if kept is not None else None
            if entry is None:
                ids.append(key)  # not kept: whether it is slow is in the log
            elif entry.slow:
                slow.add(key)
        if ids:
            for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
                marks = ", ".join(["%s"] * len(chunk))
                topics = ", ".join(["%s"] * len(SLOW_TOPICS))
                found = self.db.fetchall(
                    f"SELECT DISTINCT originator_id FROM {self.table} "
                    f"WHERE originator_id IN ({marks}) AND topic IN ({topics}) "
                    f"AND {self.position} < %s",
                    [*chunk, *sorted(SLOW_TOPICS), int(rows[0][0])],
                )
                slow.update(r[0] for r in found)
        return {_uuid(k) for k in slow}

    def history(self, order_ids: Iterable[UUID], before: int) -> dict[UUID, list[Any]]:
        """Every event of the given orders (or services) earlier than `before`, in version
        order."""
        ids = list(order_ids)
        found: dict[UUID, list[Any]] = {i: [] for i in ids}
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            keys = [i if self.db.dialect == "postgres" else i.hex for i in chunk]
            marks = ", ".join(["%s"] * len(keys))
            rows = self.db.fetchall(
                f"SELECT originator_id, originator_version, topic, state, {self.position} "
                f"FROM {self.table} WHERE originator_id IN ({marks}) AND {self.position} < %s "
                f"ORDER BY originator_id, originator_version",
                [*keys, before],
            )
            for row in rows:
                event = self._event(row[:4], int(row[4]))
                found[event.originator_id].append(event)
        return found

    def _event(self, row: Sequence[Any], position: int) -> ChainedEvent:
        originator_id, version, topic, state = row
        if type(originator_id) is not UUID:
            originator_id = UUID(str(originator_id))
        stored = StoredEvent(
            originator_id=originator_id,
            originator_version=int(version),
            topic=topic,
            state=bytes(state),
        )
        try:
            if self.decoder is not None and originator_id not in self._slow:
                return cast(ChainedEvent, self.decoder.decode(stored))
            return cast(ChainedEvent, self.mapper.to_domain_event(stored))
        except UnknownEvent as e:
            # Never skipped: the read models would silently miss it. The projector stops.
            raise UnknownEvent(
                f"{e}, at log position {position}: this serviceorders cannot "
                "project it (written by a newer release?); upgrade "
                "serviceorders"
            ) from e


def _uuid(key: Any) -> UUID:
    return key if type(key) is UUID else UUID(str(key))


def visible(order: ServiceOrder | None) -> bool:
    """Whether the order is a TMF641 order: submitted, not deleted (drafts are not)."""
    return order is not None and order.state is not OrderState.DRAFT and not order.deleted


def fold(
    log: EventLog,
    start: int,
    events: Sequence[tuple[int, ChainedEvent]],
    steps: bool = False,
    fresh: bool = False,
) -> Batch:
    """Replay the page onto the orders and services it touches, loaded as they were
    before it; with `steps`, also note each event's TMF641 documents (`Batch.steps`)."""
    order_events = [(p, e) for p, e in events if is_a(e, OrderEvent)]
    service_events = [(p, e) for p, e in events if is_a(e, ServiceEvent)]
    batch = Batch(
        start=start,
        end=events[-1][0],
        events=order_events,
        service_events=service_events,
        fresh=fresh,
    )
    first = events[0][0]
    first_version: dict[UUID, int] = {}
    for _, event in order_events:
        first_version.setdefault(event.originator_id, event.originator_version)
    earlier = []
    kept = log.kept
    for oid, version in first_version.items():
        if version == 1:
            batch.new.add(oid)
            continue
        found = kept.take(oid, version - 1) if kept is not None else None
        if found is None or found.slow != (oid in log._slow):
            earlier.append(oid)
            continue
        batch.earlier[oid] = found.events
        batch.orders[oid] = found.order
        if found.doc is not None:
            batch.docs[(oid, found.version)] = found.doc
        if found.renders is not None:
            batch.renders[oid] = found.renders
    if earlier:
        history = log.history(earlier, before=first)
        batch.earlier.update(history)
        for order_id in earlier:
            order: Any = None
            for event in history[order_id]:
                order = event.mutate(order)
            batch.orders[order_id] = order
    replay(batch, steps)
    if service_events:
        _fold_services(log, batch, first)
    return batch


def keep_orders(log: EventLog, batch: Batch) -> None:
    """After the page: its orders, as it left them, kept for the next page (OrderCache)."""
    kept = log.kept
    if kept is None:
        return
    page: dict[UUID, list[OrderEvent]] = {}
    for _, event in batch.events:
        page.setdefault(event.originator_id, []).append(event)
    for oid, events in page.items():
        order = batch.orders.get(oid)
        if order is None:
            continue
        history = batch.earlier.get(oid)
        kept.keep(
            Kept(
                version=order.version,
                order=order,
                events=[*history, *events] if history else events,
                slow=oid in log._slow,
                doc=batch.docs.get((oid, order.version)),
                renders=batch.renders.get(oid),
            ),
            oid,
        )


def _fold_services(log: EventLog, batch: Batch, first: int) -> None:
    """`batch.services` (at the page's end) and `batch.services_before`."""
    first_version: dict[UUID, int] = {}
    for _, event in batch.service_events:
        first_version.setdefault(event.originator_id, event.originator_version)
    earlier = [k for k, version in first_version.items() if version > 1]
    history = log.history(earlier, before=first) if earlier else {}
    for key in first_version:
        service: Any = None
        for event in history.get(key, ()):
            service = event.mutate(service)
        batch.services_before[key] = None if service is None else copy.deepcopy(service)
        batch.services[key] = service
    for _, event in batch.service_events:
        key = event.originator_id
        batch.services[key] = event.mutate(batch.services[key])


def replay(batch: Batch, steps: bool = False) -> None:
    """Apply the page's events to `batch.orders` (the orders as they were before it),
    noting the state transitions and, with `steps`, each event's documents."""
    orders = batch.orders
    transitions = batch.transitions
    step_list: list[Step] = []
    if steps:
        batch.steps = step_list
        docs: dict[UUID, dict[str, Any] | None] = {}  # each order's current document
    for position, event in batch.events:
        oid = event.originator_id
        order = orders.get(oid)
        before_state: OrderState | None
        before_since: datetime | None
        if order is not None:
            before_state, before_since = order.state, order.state_since
        else:
            before_state = before_since = None
        if steps:
            was_visible = visible(order)
            if oid not in docs:
                docs[oid] = batch.document(order) if was_visible else None  # type: ignore[arg-type]
            doc_before = docs[oid]
        order = event.mutate(order)
        orders[oid] = order
        state = order.state
        if state != before_state:
            transitions.append(_transition(position, event, order, before_state, before_since))
        if steps:
            doc = None
            if is_a(event, OrderDeleted):
                docs[oid] = None
            elif visible(order):
                doc = docs[oid] = batch.document(order)
            step_list.append(
                Step(
                    position,
                    event,
                    was_visible,
                    before_state,
                    doc_before,
                    state,
                    doc,
                )
            )


def _transition(
    position: int,
    event: OrderEvent,
    order: ServiceOrder,
    before: OrderState | None,
    before_since: datetime | None,
) -> Transition:
    items = order.items.values()
    return Transition(
        position=position,
        order_id=order.id,
        version=order.version,
        from_state=before,
        to_state=order.state,
        at=event.timestamp,
        previous_since=before_since,
        actor=event.actor,
        category=order.header.category,
        specifications=tuple(sorted({i.specification.id for i in items if i.specification})),
        sites=tuple(sorted({i.place.id for i in items if i.place})),
    )

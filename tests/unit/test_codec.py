"""Events and snapshots stored as JSON through the pydantic mapper, and read back."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4

import orjson
import pytest
from builders import item as build_item
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from serviceorders.domain import events as ev
from serviceorders.domain import values as v
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper, decode_state
from serviceorders.domain.inventory import Inventory
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.service import Service, ServiceEvent, ServiceState
from serviceorders.domain.snapshot import OrderSnapshot

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()
MAPPER = PydanticMapper(transcoder=OrjsonTranscoder())

UPSTREAM = v.CommandContext.for_actor("crm", v.Role.UPSTREAM, v.Channel.KAFKA, causation_id="msg-1")
AGENT = v.CommandContext.for_actor("agent-ann", v.Role.AGENT, v.Channel.API)
MANAGER = v.CommandContext.for_actor("manager-mo", v.Role.MANAGER)
FULFILMENT = v.CommandContext.for_actor("activator", v.Role.FULFILMENT, v.Channel.SYSTEM)

HEADER = v.OrderHeader(
    external_id="crm-1",
    category="business",
    description="Two sites",
    priority="1",
    requested_start_date=date(2030, 1, 15),
    requested_completion_date=datetime(2030, 3, 1, 9, 30, tzinfo=UTC),
    notification_contact="noc@example.com",
    related_parties=(v.Party(id="cust-9", name="ACME", referred_type="Organization"),),
    order_relationships=(v.OrderRelationship(id="po-1", relationship_type="succeeds"),),
)


def internet(item_id: str, bandwidth: int = 100, depends_on: tuple[str, ...] = ()) -> v.OrderItem:
    return build_item(
        item_id,
        "internet-access",
        characteristics={
            "bandwidthMbps": bandwidth,
            "accessType": "fibre",
            "ipv6Enabled": False,
            "activationDate": "2030-01-20",
        },
        place=v.Place(id=f"site-{item_id}", name="Main St", role="installation"),
        quantity=2,
        depends_on=depends_on,
    )


def round_trip(domain_event, mapper: PydanticMapper = MAPPER):
    return mapper.to_domain_event(mapper.to_stored_event(domain_event))


def orders_with_every_kind_of_event() -> list[ServiceOrder]:
    """Orders whose histories hold every event class at least once (with pending events)."""
    captured = ServiceOrder.draft(AGENT, HEADER.model_copy(update={"external_id": None}))
    captured.add_line(AGENT, internet("1"))
    captured.add_line(AGENT, internet("2", depends_on=("1",)))
    captured.add_line(AGENT, internet("3"))
    captured.configure_line(
        AGENT,
        "2",
        {"bandwidthMbps": 123},
        cleared=["ipv6Enabled"],
        place=v.Place(id="hq"),
        quantity=1,
        depends_on=["1"],
    )
    captured.remove_line(AGENT, "3")
    captured.submit(AGENT, CATALOG)  # flagged: 123 is not an allowed bandwidth
    captured.approve(MANAGER, note="fine")
    captured.hold(FULFILMENT, "site closed")
    captured.resume(FULFILMENT, note="site open")
    captured.request_information(FULFILMENT, "which rack?")
    captured.provide_information(UPSTREAM, "rack 4")
    captured.reach_point_of_no_return(FULFILMENT, note="shipped")
    captured.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED, reason="done")
    captured.change_item_state(FULFILMENT, "2", v.ItemState.COMPLETED)
    captured.add_note(AGENT, "thanks")

    rejected = ServiceOrder.receive(UPSTREAM, HEADER, [internet("1")], CATALOG)
    rejected.reject(MANAGER, "no coverage")
    rejected.resubmitted_as(UPSTREAM, uuid4())
    rejected.delete(MANAGER, "archived")

    cancelled = ServiceOrder.receive(
        UPSTREAM,
        HEADER.model_copy(update={"external_id": "c"}),
        [internet("1"), internet("2")],
        CATALOG,
    )
    cancelled.revise(UPSTREAM, CATALOG, header=v.HeaderChange(description="in review"))
    cancelled.approve(MANAGER)
    cancelled.revise(  # after approval: a proposal (RevisionProposed), approved
        UPSTREAM,
        CATALOG,
        items=[internet("1", 1000), internet("4")],
        removed_item_ids=["2"],
        header=v.HeaderChange(priority="2", requested_start_date=date(2030, 2, 1)),
    )
    cancelled.approve_proposal(MANAGER, CATALOG, note="fine")
    cancelled.revise(UPSTREAM, CATALOG, items=[internet("5")])
    cancelled.refuse_proposal(MANAGER, "not now")
    cancelled.revise(UPSTREAM, CATALOG, items=[internet("6")])
    cancelled.withdraw_proposal(UPSTREAM, "sent by mistake")
    cancelled.request_cancellation(UPSTREAM, "budget", datetime(2030, 1, 1, tzinfo=UTC))
    cancelled.deny_cancellation(MANAGER, "too late")
    cancelled.request_cancellation(UPSTREAM, "budget, really", request_id="cr-2")
    cancelled.request_cancellation_information(MANAGER, "which budget line?")
    cancelled.provide_cancellation_information(UPSTREAM, "line 7")
    cancelled.approve_cancellation(MANAGER, note="ok")
    cancelled.cancel(FULFILMENT)

    failed = ServiceOrder.receive(
        UPSTREAM,
        v.OrderHeader(),
        [internet("1")],
        CATALOG,
        notes=[
            v.Note(text="call before", author="crm", date=datetime(2030, 1, 2, 3, 4, tzinfo=UTC))
        ],
    )
    failed.approve(MANAGER)
    failed.change_item_state(FULFILMENT, "1", v.ItemState.FAILED, reason="no fibre")

    partial = ServiceOrder.receive(
        UPSTREAM, v.OrderHeader(), [internet("1"), internet("2")], CATALOG
    )
    partial.approve(MANAGER)
    partial.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    partial.change_item_state(FULFILMENT, "2", v.ItemState.FAILED)

    # a change order checked against the inventory (InventoryChecked)
    service = Service.create(
        UPSTREAM,
        "SVC-1",
        specification=v.SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 100},
        customer=v.Party(id="cust-9"),
    )
    change = ServiceOrder.receive(
        UPSTREAM,
        HEADER.model_copy(update={"external_id": "crm-change"}),
        [internet("1").model_copy(update={"action": v.ItemAction.MODIFY, "service_id": "SVC-1"})],
        CATALOG,
        inventory=Inventory({"SVC-1": service}),
    )

    return [captured, rejected, cancelled, failed, partial, change]


def a_service_with_every_kind_of_event() -> Service:
    """A service whose history holds every service event class."""
    service = Service.create(
        UPSTREAM,
        "SVC-9",
        name="ACME line",
        specification=v.SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 100},
        places=(v.Place(id="site-1", name="Main St"),),
        customer=v.Party(id="cust-9", name="ACME"),
        depends_on=("SVC-0",),
        imported=True,
        extra={"category": "business"},
    )
    service.open_order(UPSTREAM, "order-1", ("1",), "modify")
    service.modify(UPSTREAM, "order-1", "1", {"bandwidthMbps": 200}, v.Place(id="site-2"))
    service.open_order(UPSTREAM, "order-2", ("1",), "noChange")
    service.close_order(UPSTREAM, "order-2", "failed")
    service.add_dependent(UPSTREAM, "SVC-10")
    service.remove_dependent(UPSTREAM, "SVC-10")
    service.terminate(UPSTREAM, "order-3", "1")
    return service


SERVICE_EVENTS = a_service_with_every_kind_of_event().collect_events()


def test_the_service_sample_holds_every_service_event_class() -> None:
    assert {type(e) for e in SERVICE_EVENTS} == set(ServiceEvent.__subclasses__())


@pytest.mark.parametrize("event", SERVICE_EVENTS, ids=[type(e).__name__ for e in SERVICE_EVENTS])
def test_every_service_event_round_trips_and_chains(event) -> None:
    back = round_trip(event)
    assert back == event
    assert back.hash == back.compute_hash()
    assert event.TOPIC.startswith("serviceorders.service:")


def test_a_service_replays_from_its_stored_events() -> None:
    events = [round_trip(e) for e in SERVICE_EVENTS]
    service = None
    for event in events:
        service = event.mutate(service)
    assert service.state is ServiceState.TERMINATED
    assert service.characteristics == {"bandwidthMbps": 200}
    assert [p.id for p in service.places] == ["site-2"]  # moved: its place is the item's
    assert service.open_orders == {}
    assert service.dependents == ()
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


def all_events() -> list[ev.OrderEvent]:
    return [e for order in orders_with_every_kind_of_event() for e in order.collect_events()]


EVENTS = all_events()


def test_the_sample_holds_every_event_class() -> None:
    assert {type(e) for e in EVENTS} == set(ev.ALL_EVENTS)


@pytest.mark.parametrize(
    "event", EVENTS, ids=[f"{type(e).__name__}-v{e.originator_version}" for e in EVENTS]
)
def test_every_event_round_trips_through_the_mapper_unchanged(event) -> None:
    stored = MAPPER.to_stored_event(event)
    loaded = MAPPER.to_domain_event(stored)

    assert type(loaded) is type(event)
    assert loaded == event
    assert loaded.model_dump() == event.model_dump()
    assert loaded.hash == event.hash
    assert loaded.compute_hash() == event.hash
    assert stored.topic == type(event).TOPIC
    assert stored.originator_id == event.originator_id
    assert stored.originator_version == event.originator_version


@pytest.mark.parametrize(
    "event", EVENTS, ids=[f"{type(e).__name__}-v{e.originator_version}" for e in EVENTS]
)
def test_every_event_is_stored_as_the_json_of_its_state(event) -> None:
    state = orjson.loads(MAPPER.to_stored_event(event).state)

    assert "originator_id" not in state
    assert "originator_version" not in state
    assert state["hash"] == event.hash
    assert state["prev_hash"] == event.prev_hash
    assert state["actor"] == event.actor.model_dump(mode="json")
    if type(event).class_version > 1:
        assert state["class_version"] == type(event).class_version
    else:
        assert "class_version" not in state


def test_events_round_trip_with_a_compressor_too() -> None:
    mapper = PydanticMapper(transcoder=OrjsonTranscoder(), compressor=ZlibCompressor())

    for event in EVENTS:
        stored = mapper.to_stored_event(event)
        assert stored.state != MAPPER.to_stored_event(event).state
        assert mapper.to_domain_event(stored) == event
    assert decode_state(mapper, mapper.to_stored_event(EVENTS[0]))["hash"] == EVENTS[0].hash


def test_header_dates_and_datetimes_keep_their_types_through_storage() -> None:
    drafted = next(e for e in EVENTS if isinstance(e, ev.OrderDrafted) and e.header.external_id)

    loaded = round_trip(drafted)

    assert type(loaded.header.requested_start_date) is date
    assert type(loaded.header.requested_completion_date) is datetime
    assert loaded.header == drafted.header


def test_a_version_1_note_is_upcast_when_it_is_read() -> None:
    note = next(e for e in EVENTS if isinstance(e, ev.NoteAdded))
    state = note.stored_state()
    del state["class_version"]
    del state["note"]
    state["text"] = "written by an old version"
    stored = StoredEvent(
        originator_id=note.originator_id,
        originator_version=note.originator_version,
        topic=ev.NoteAdded.TOPIC,
        state=orjson.dumps(state),
    )

    loaded = MAPPER.to_domain_event(stored)

    assert loaded.note == v.Note(text="written by an old version", author=note.actor.id, date=None)
    assert loaded.hash == note.hash  # the stored hash is kept as it was written


def test_a_stored_event_that_does_not_fit_its_class_is_refused() -> None:
    event = EVENTS[0]
    state = {**event.stored_state(), "unexpected": 1}
    stored = StoredEvent(
        originator_id=event.originator_id,
        originator_version=1,
        topic=type(event).TOPIC,
        state=orjson.dumps(state),
    )

    with pytest.raises(MapperDeserialisationError, match="does not fit its class"):
        MAPPER.to_domain_event(stored)


def test_a_stored_event_that_is_not_json_is_refused() -> None:
    stored = StoredEvent(
        originator_id=uuid4(),
        originator_version=1,
        topic=ev.OrderApproved.TOPIC,
        state=b"\x00not json",
    )

    with pytest.raises(MapperDeserialisationError, match="cannot decode"):
        MAPPER.to_domain_event(stored)


# --------------------------------------------------------------------------- replay
def test_every_order_rebuilds_from_its_stored_events() -> None:
    for order in orders_with_every_kind_of_event():
        stored = [MAPPER.to_stored_event(e) for e in order.collect_events()]

        rebuilt = None
        for s in stored:
            rebuilt = MAPPER.to_domain_event(s).mutate(rebuilt)

        assert rebuilt == order
        assert rebuilt.state is order.state


# -------------------------------------------------------------------------- snapshots
def test_the_sample_orders_end_in_the_expected_states() -> None:
    assert [o.state for o in orders_with_every_kind_of_event()] == [
        v.OrderState.COMPLETED,
        v.OrderState.REJECTED,
        v.OrderState.CANCELLED,
        v.OrderState.FAILED,
        v.OrderState.PARTIAL,
        v.OrderState.ACKNOWLEDGED,
    ]


@pytest.mark.parametrize(
    "index", range(6), ids=["completed", "rejected", "cancelled", "failed", "partial", "change"]
)
def test_a_snapshot_round_trip_restores_the_order(index) -> None:
    order = orders_with_every_kind_of_event()[index]
    order.collect_events()

    snapshot = OrderSnapshot.take(order)
    stored = MAPPER.to_stored_event(snapshot)
    restored = MAPPER.to_domain_event(stored).mutate(None)

    assert stored.topic == OrderSnapshot.TOPIC
    assert type(restored) is ServiceOrder
    assert restored == order
    assert restored.id == order.id
    assert restored.version == order.version
    assert restored.header == order.header
    assert restored.items == order.items


def test_a_snapshot_of_a_waiting_order_keeps_every_detail() -> None:
    order = ServiceOrder.receive(UPSTREAM, HEADER, [internet("1"), internet("2")], CATALOG)
    order.approve(MANAGER)
    order.change_item_state(FULFILMENT, "1", v.ItemState.IN_PROGRESS)
    order.add_note(AGENT, "call first")
    order.request_cancellation(UPSTREAM, "budget", request_id="cr-1")
    order.collect_events()

    restored = round_trip(OrderSnapshot.take(order)).mutate(None)

    assert restored == order
    assert restored.state is v.OrderState.ASSESSING_CANCELLATION
    assert restored.prior_state is v.OrderState.IN_PROGRESS
    assert restored.cancellation_request_id == "cr-1"
    assert restored.notes == order.notes
    assert restored.submitted_by == order.submitted_by
    assert type(restored.header.requested_start_date) is date


def test_a_restored_snapshot_takes_later_events_like_the_original() -> None:
    order = ServiceOrder.receive(UPSTREAM, HEADER, [internet("1")], CATALOG)
    order.approve(MANAGER)
    events = order.collect_events()
    restored = round_trip(OrderSnapshot.take(order)).mutate(None)

    order.hold(FULFILMENT, "site closed")
    order.resume(FULFILMENT)
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    later = order.collect_events()
    for e in later:
        restored = round_trip(e).mutate(restored)

    replayed = None
    for e in [*events, *later]:
        replayed = e.mutate(replayed)
    assert restored == order == replayed
    assert restored.state is v.OrderState.COMPLETED


def test_a_restored_snapshot_accepts_new_commands() -> None:
    order = ServiceOrder.receive(UPSTREAM, HEADER, [internet("1")], CATALOG)
    order.collect_events()
    restored = round_trip(OrderSnapshot.take(order)).mutate(None)

    restored.approve(MANAGER)

    new_events = restored.collect_events()
    assert [type(e).__name__ for e in new_events] == ["OrderApproved"]
    assert new_events[0].originator_version == order.version + 1
    assert new_events[0].prev_hash == order.head_hash

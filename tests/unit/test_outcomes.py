"""The outcomes an order tells back (`order.outcomes`, TMF641 errorMessage) and the
milestones it reaches (`order.milestones`), derived from its events only (issue 19):
each from the event that carries it, the same on a replay, from a snapshot plus the
events after it, and on events stored before the attributes existed."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from builders import item
from serviceorders.domain import events as ev
from serviceorders.domain import values as v
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.snapshot import FORMAT, OrderSnapshot

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()
MAPPER = PydanticMapper(transcoder=OrjsonTranscoder())
UPSTREAM = v.CommandContext.for_actor("crm", v.Role.UPSTREAM, v.Channel.KAFKA)
MANAGER = v.CommandContext.for_actor("manager-mo", v.Role.MANAGER)
MANAGER_2 = v.CommandContext.for_actor("manager-max", v.Role.MANAGER)
FULFILMENT = v.CommandContext.for_actor("activator", v.Role.FULFILMENT)
NEW_ATTRIBUTES = {"outcomes", "milestones", "cancellation_information"}


def received(*items: v.OrderItem) -> ServiceOrder:
    return ServiceOrder.receive(UPSTREAM, v.OrderHeader(), items or [item("1"), item("2")], CATALOG)


def approved(*items: v.OrderItem) -> ServiceOrder:
    order = received(*items)
    order.approve(MANAGER)
    return order


def events_of(order: ServiceOrder) -> list[ev.OrderEvent]:
    return list(order.collect_events())


def last(order: ServiceOrder, event_class: type[Any]) -> Any:
    return [e for e in order.pending_events if isinstance(e, event_class)][-1]


def replay(events: list[ev.OrderEvent]) -> ServiceOrder:
    """The order from its events, each read back from storage first."""
    stored = [MAPPER.to_domain_event(MAPPER.to_stored_event(e)) for e in events]
    order: Any = functools.reduce(lambda agg, e: e.mutate(agg), stored, None)
    return order


def test_a_rejection_is_an_outcome_with_the_managers_reason() -> None:
    order = received()
    order.reject(MANAGER, "  no coverage at the site ")
    rejected = last(order, ev.OrderRejected)
    assert order.outcomes == (
        v.OrderOutcome(code="rejected", message="no coverage at the site", date=rejected.timestamp),
    )


def test_a_failed_item_is_an_outcome_naming_it_with_fulfilments_reason() -> None:
    order = approved()
    order.change_item_state(FULFILMENT, "1", v.ItemState.FAILED, reason="no fibre in the street")
    failed = last(order, ev.ItemStateChanged)
    assert order.outcomes == (
        v.OrderOutcome(
            code="item_failed",
            message="no fibre in the street",
            date=failed.timestamp,
            item_ids=("1",),
        ),
    )
    order.change_item_state(FULFILMENT, "2", v.ItemState.FAILED)  # no reason given
    assert [(o.code, o.message, o.item_ids) for o in order.outcomes] == [
        ("item_failed", "no fibre in the street", ("1",)),
        ("item_failed", "order item 2 failed", ("2",)),
    ]
    assert order.state is v.OrderState.FAILED


def test_a_refused_proposal_and_a_denied_cancellation_are_outcomes() -> None:
    order = approved()
    order.revise(UPSTREAM, CATALOG, items=[item("3")])  # after approval: a proposal
    order.refuse_proposal(MANAGER, "not this month")
    order.request_cancellation(UPSTREAM, "budget")
    order.deny_cancellation(MANAGER_2, "work has started")
    refused, denied = last(order, ev.ProposalRefused), last(order, ev.CancellationDenied)
    assert order.outcomes == (
        v.OrderOutcome(code="proposal_refused", message="not this month", date=refused.timestamp),
        v.OrderOutcome(
            code="cancellation_denied", message="work has started", date=denied.timestamp
        ),
    )


def test_nothing_else_is_an_outcome() -> None:
    order = approved()
    order.hold(FULFILMENT, "site closed")
    order.resume(FULFILMENT)
    order.request_cancellation(UPSTREAM, "budget")
    order.approve_cancellation(MANAGER_2)
    order.cancel(FULFILMENT)
    assert order.outcomes == ()


def test_milestones_approved_items_started_and_completed_point_of_no_return() -> None:
    order = approved(item("1"), item("2"))
    order.change_item_state(FULFILMENT, "1", v.ItemState.IN_PROGRESS)
    order.reach_point_of_no_return(FULFILMENT, note="equipment shipped")
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.change_item_state(FULFILMENT, "2", v.ItemState.COMPLETED)  # straight to completed
    by_type = {type(e): e for e in order.pending_events}
    assert [(m.name, m.item_ids, m.message) for m in order.milestones] == [
        ("approved", (), None),
        ("itemStarted", ("1",), None),
        ("pointOfNoReturn", (), "equipment shipped"),
        ("itemCompleted", ("1",), None),
        ("itemCompleted", ("2",), None),
    ]
    approved_event = by_type[ev.OrderApproved]
    assert order.milestones[0].id == str(approved_event.originator_version)
    assert order.milestones[0].date == approved_event.timestamp
    assert len({m.id for m in order.milestones}) == len(order.milestones)  # stable, distinct
    assert order.state is v.OrderState.COMPLETED


def test_a_replay_and_a_snapshot_plus_later_events_give_the_same_outcomes() -> None:
    order = approved(item("1"), item("2"))
    order.change_item_state(FULFILMENT, "1", v.ItemState.IN_PROGRESS)
    events = list(order.pending_events)
    snapshot = MAPPER.to_domain_event(MAPPER.to_stored_event(OrderSnapshot.take(order)))
    assert snapshot.state.format == FORMAT == 4  # issue 20 added the inventory checks
    order.request_cancellation(UPSTREAM, "budget")
    order.request_cancellation_information(MANAGER, "which budget line?")
    order.deny_cancellation(MANAGER_2, "work has started")
    order.change_item_state(FULFILMENT, "1", v.ItemState.FAILED, reason="no fibre")
    order.change_item_state(FULFILMENT, "2", v.ItemState.COMPLETED)
    events = events_of(order)
    replayed = replay(events)
    from_snapshot = functools.reduce(
        lambda agg, e: e.mutate(agg),
        [
            MAPPER.to_domain_event(MAPPER.to_stored_event(e))
            for e in events[snapshot.originator_version :]
        ],
        snapshot.mutate(None),
    )
    assert replayed.outcomes == order.outcomes == from_snapshot.outcomes
    assert replayed.milestones == order.milestones == from_snapshot.milestones
    assert replayed.snapshot_state() == order.snapshot_state() == from_snapshot.snapshot_state()
    assert [o.code for o in order.outcomes] == ["cancellation_denied", "item_failed"]
    assert order.state is v.OrderState.PARTIAL


def test_outcomes_come_from_fields_the_events_had_before_issue_19() -> None:
    """No event gained a field for them: what is stored is what an older release stored
    (nothing named outcome, milestone or parent), and a replay of the stored events
    derives them. (The upgrade fixture's test, tests/e2e/test_upgrade_outcomes.py, does
    the same on events an older release wrote.)"""
    order = approved(item("1"), item("2"))
    order.reach_point_of_no_return(FULFILMENT, note="shipped")
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.change_item_state(FULFILMENT, "2", v.ItemState.FAILED, reason="no fibre")
    rejected = received()
    rejected.reject(MANAGER, "no coverage")
    replays = []
    for o in (order, rejected):
        events = events_of(o)
        for event in events:
            state = MAPPER.to_stored_event(event).state
            assert b"outcome" not in state and b"milestone" not in state, type(event).__name__
            assert b"parent" not in state and b"before_cancellation" not in state
        replays.append(replay(events))
        assert replays[-1].snapshot_state() == o.snapshot_state()
    assert [(x.code, x.message) for x in replays[0].outcomes] == [("item_failed", "no fibre")]
    assert [m.name for m in replays[0].milestones] == [
        "approved",
        "pointOfNoReturn",
        "itemCompleted",
    ]
    assert [(x.code, x.message) for x in replays[1].outcomes] == [("rejected", "no coverage")]
    assert replays[1].milestones == ()

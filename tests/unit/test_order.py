"""Behaviour of the ServiceOrder aggregate, one behaviour per test."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from functools import partial
from uuid import UUID

import pytest
from builders import item as build_item
from eventsourcing.utils import resolve_topic
from serviceorders.domain import errors as err
from serviceorders.domain import events as ev
from serviceorders.domain import values as v
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.chain import GENESIS
from serviceorders.domain.order import ServiceOrder, order_id_for

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()

AGENT = v.CommandContext.for_actor("agent-ann", v.Role.AGENT)
UPSTREAM = v.CommandContext.for_actor("crm", v.Role.UPSTREAM, v.Channel.KAFKA)
MANAGER = v.CommandContext.for_actor("manager-mo", v.Role.MANAGER)
MANAGER_2 = v.CommandContext.for_actor("manager-max", v.Role.MANAGER)
FULFILMENT = v.CommandContext.for_actor("activator", v.Role.FULFILMENT)
OPERATOR = v.CommandContext.for_actor("ops-olga", v.Role.OPERATOR)
AUDITOR = v.CommandContext.for_actor("auditor-al", v.Role.AUDITOR)


def internet(
    item_id: str = "1", *, depends_on: tuple[str, ...] = (), place: bool = True, **characteristics
) -> v.OrderItem:
    return build_item(
        item_id,
        "internet-access",
        characteristics={"bandwidthMbps": 100, "accessType": "fibre", **characteristics},
        place=v.Place(id=f"site-{item_id}") if place else None,
        depends_on=depends_on,
    )


def received(*items: v.OrderItem, external_id: str | None = None) -> ServiceOrder:
    order = ServiceOrder.receive(
        UPSTREAM, v.OrderHeader(external_id=external_id), items or [internet()], CATALOG
    )
    order.collect_events()
    return order


def in_state(state: v.OrderState, *items: v.OrderItem) -> ServiceOrder:
    """An order brought to `state` through the lifecycle (acknowledged, inProgress,
    pending or held)."""
    order = received(*items)
    if state is not v.OrderState.ACKNOWLEDGED:
        order.approve(MANAGER)
    if state is v.OrderState.PENDING:
        order.request_information(FULFILMENT, "which rack?")
    if state is v.OrderState.HELD:
        order.hold(FULFILMENT, "site not ready")
    order.collect_events()
    assert order.state is state
    return order


def names(events) -> list[str]:
    return [type(e).__name__ for e in events]


def refused_unchanged(order: ServiceOrder, error: type[err.DomainError], call) -> err.DomainError:
    """`call` is refused with `error` and the order is left exactly as it was."""
    order.collect_events()  # start with nothing pending
    before, version = dict(order.__dict__), order.version
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert order.version == version
    assert order.__dict__ == before
    assert order.collect_events() == []
    return info.value


def item_move_refused(order: ServiceOrder, item_id: str, to: v.ItemState) -> err.DomainError:
    """Fulfilment moving item `item_id` to `to` is an IllegalTransition; nothing changes."""
    return refused_unchanged(
        order, err.IllegalTransition, lambda: order.change_item_state(FULFILMENT, item_id, to)
    )


# ------------------------------------------------------------------------ manual capture
def test_draft_starts_an_empty_order_in_draft() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader(external_id="ext-draft", description="new"))

    events = order.collect_events()
    assert names(events) == ["OrderDrafted"]
    assert events[0].items == ()
    assert order.state is v.OrderState.DRAFT
    assert order.items == {}
    assert order.header.description == "new"


def test_add_line_records_the_item_without_a_state() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.collect_events()

    order.add_line(AGENT, internet("1").with_state(v.ItemState.COMPLETED))

    events = order.collect_events()
    assert names(events) == ["LineAdded"]
    assert events[0].item.id == "1"
    assert events[0].item.state is None
    assert order.items["1"].state is None


def test_add_line_refuses_an_item_id_already_on_the_order() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1"))
    order.collect_events()

    refused_unchanged(order, err.InvalidCommand, lambda: order.add_line(AGENT, internet("1")))


def test_configure_line_sets_and_clears_characteristics_and_changes_the_line() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1", serviceLevel="premium"))
    order.add_line(AGENT, internet("2"))
    order.collect_events()

    order.configure_line(
        AGENT,
        "2",
        {"bandwidthMbps": 1000},
        cleared=["accessType"],
        place=v.Place(id="hq", name="Head office"),
        quantity=2,
        depends_on=["1"],
    )

    events = order.collect_events()
    assert names(events) == ["LineConfigured"]
    assert events[0].item_id == "2"
    item = order.items["2"]
    assert item.characteristics == {"bandwidthMbps": 1000}
    assert item.place == v.Place(id="hq", name="Head office")
    assert item.quantity == 2
    assert item.depends_on == ("1",)
    assert order.items["1"].characteristics["serviceLevel"] == "premium"


def test_configure_line_with_nothing_to_change_is_refused() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1"))
    order.collect_events()

    refused_unchanged(order, err.InvalidCommand, lambda: order.configure_line(AGENT, "1"))


def test_configure_line_refuses_a_quantity_below_one() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1"))
    order.collect_events()

    refused_unchanged(
        order, err.InvalidCommand, lambda: order.configure_line(AGENT, "1", quantity=0)
    )


def test_configure_line_of_an_unknown_item_is_refused() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.collect_events()

    error = refused_unchanged(
        order, err.UnknownItem, lambda: order.configure_line(AGENT, "9", {"bandwidthMbps": 10})
    )
    assert error.item_id == "9"


def test_remove_line_drops_the_item() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1"))
    order.add_line(AGENT, internet("2"))
    order.collect_events()

    order.remove_line(AGENT, "1")

    assert names(order.collect_events()) == ["LineRemoved"]
    assert list(order.items) == ["2"]


def test_remove_line_of_an_unknown_item_is_refused() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.collect_events()

    refused_unchanged(order, err.UnknownItem, lambda: order.remove_line(AGENT, "1"))


def test_submit_puts_the_captured_order_into_review() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1"))
    order.add_line(AGENT, internet("2", depends_on=("1",)))
    order.collect_events()

    order.submit(AGENT, CATALOG)

    events = order.collect_events()
    assert names(events) == ["OrderSubmitted"]
    assert events[0].flags == ()
    assert order.state is v.OrderState.ACKNOWLEDGED
    assert order.submitted_by == AGENT.actor
    assert order.submitted_at == events[0].timestamp
    assert {i.state for i in order.items.values()} == {v.ItemState.ACKNOWLEDGED}


def test_manual_capture_emits_one_item_level_event_per_step() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1"))
    order.add_line(AGENT, internet("2"))
    order.configure_line(AGENT, "1", {"bandwidthMbps": 200})
    order.remove_line(AGENT, "2")
    order.submit(AGENT, CATALOG)

    assert names(order.collect_events()) == [
        "OrderDrafted",
        "LineAdded",
        "LineAdded",
        "LineConfigured",
        "LineRemoved",
        "OrderSubmitted",
    ]
    assert order.version == 6


@pytest.mark.parametrize(
    "capture",
    [
        lambda o: o.add_line(AGENT, internet("2")),
        lambda o: o.configure_line(AGENT, "1", {"bandwidthMbps": 10}),
        lambda o: o.remove_line(AGENT, "1"),
        lambda o: o.submit(AGENT, CATALOG),
    ],
    ids=["add_line", "configure_line", "remove_line", "submit"],
)
def test_capture_commands_are_refused_once_the_order_is_submitted(capture) -> None:
    order = received(internet("1"))

    refused_unchanged(order, err.IllegalTransition, lambda: capture(order))


def test_draft_needs_a_capturing_role() -> None:
    with pytest.raises(err.NotPermitted):
        ServiceOrder.draft(UPSTREAM, v.OrderHeader())


# ------------------------------------------------------------------------------ receive
def test_a_complete_order_is_recorded_with_exactly_two_events() -> None:
    items = [internet("1"), internet("2", depends_on=("1",))]
    order = ServiceOrder.receive(UPSTREAM, v.OrderHeader(external_id="crm-1"), items, CATALOG)

    events = order.collect_events()
    assert names(events) == ["OrderDrafted", "OrderSubmitted"]
    assert [i.id for i in events[0].items] == ["1", "2"]
    assert events[0].items == tuple(CATALOG.resolve(i) for i in items)
    assert order.state is v.OrderState.ACKNOWLEDGED
    assert {k: line.state for k, line in order.items.items()} == {
        "1": v.ItemState.ACKNOWLEDGED,
        "2": v.ItemState.ACKNOWLEDGED,
    }


def test_receive_records_the_specification_name_and_version_from_the_catalog() -> None:
    order = received(internet("1"))

    assert order.items["1"].specification == v.SpecRef(
        id="internet-access", name="Dedicated Internet Access", version="2.1"
    )


def test_notes_received_with_the_order_are_recorded_with_it() -> None:
    note = v.Note(text="ring the bell twice", author="crm-user")

    order = ServiceOrder.receive(UPSTREAM, v.OrderHeader(), [internet()], CATALOG, notes=[note])

    assert order.collect_events()[0].notes == (note,)
    assert order.notes == (note,)


def test_receive_needs_a_requesting_role() -> None:
    with pytest.raises(err.NotPermitted):
        ServiceOrder.receive(FULFILMENT, v.OrderHeader(), [internet()], CATALOG)


# --------------------------------------------------------------------------- validation
def test_structural_problems_refuse_the_order_listing_every_problem_at_once() -> None:
    items = [
        build_item("unknown-spec", "nope", characteristics={}, place=v.Place(id="s")),
        build_item(
            "missing-char",
            "internet-access",
            characteristics={"bandwidthMbps": 100},
            place=v.Place(id="s"),
        ),
        v.OrderItem(id="modify", action=v.ItemAction.MODIFY, place=v.Place(id="s")),
        v.OrderItem(id="delete", action=v.ItemAction.DELETE, place=v.Place(id="s")),
        internet("orphan", depends_on=("ghost",)),
        internet("x", depends_on=("y",)),
        internet("y", depends_on=("x",)),
    ]

    with pytest.raises(err.ValidationFailed) as info:
        ServiceOrder.receive(UPSTREAM, v.OrderHeader(), items, CATALOG)

    found = {(p.code, p.item_id) for p in info.value.problems}
    assert found == {
        ("unknown_specification", "unknown-spec"),
        ("missing_characteristic", "missing-char"),
        ("missing_service_ref", "modify"),
        ("missing_service_ref", "delete"),
        ("unknown_dependency", "orphan"),
        ("dependency_cycle", "x"),
    }
    assert all(p.structural for p in info.value.problems)
    assert len(info.value.problems) == 6
    for problem in info.value.problems:
        assert problem.message in str(info.value)


def test_an_order_without_items_is_refused() -> None:
    with pytest.raises(err.ValidationFailed) as info:
        ServiceOrder.receive(UPSTREAM, v.OrderHeader(), [], CATALOG)

    assert [p.code for p in info.value.problems] == ["no_items"]


def test_submitting_a_draft_with_structural_problems_is_refused() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.add_line(AGENT, internet("1", depends_on=("2",)))
    order.add_line(AGENT, v.OrderItem(id="2", action=v.ItemAction.MODIFY, place=v.Place(id="s")))
    order.collect_events()

    error = refused_unchanged(order, err.ValidationFailed, lambda: order.submit(AGENT, CATALOG))
    assert {p.code for p in error.problems} == {"missing_service_ref"}
    assert error.order_id == order.id


def test_submitting_an_empty_draft_is_refused() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.collect_events()

    error = refused_unchanged(order, err.ValidationFailed, lambda: order.submit(AGENT, CATALOG))
    assert [p.code for p in error.problems] == ["no_items"]


def test_value_problems_let_the_order_in_flagged_for_the_reviewer() -> None:
    items = [
        internet("wrong-type", bandwidthMbps="fast"),
        internet("not-allowed", accessType="carrier-pigeon"),
        build_item(
            "out-of-range",
            "sdwan-site",
            characteristics={"bandwidthProfile": "small", "siteRole": "hub", "underlayLinks": 9},
            place=v.Place(id="s"),
        ),
        internet("unknown-char", colour="blue"),
        internet("no-place", place=False),
    ]

    order = ServiceOrder.receive(UPSTREAM, v.OrderHeader(), items, CATALOG)

    events = order.collect_events()
    assert order.state is v.OrderState.ACKNOWLEDGED
    assert {(p.code, p.item_id) for p in order.flags} == {
        ("wrong_type", "wrong-type"),
        ("value_not_allowed", "not-allowed"),
        ("out_of_range", "out-of-range"),
        ("unknown_characteristic", "unknown-char"),
        ("missing_place", "no-place"),
    }
    assert not any(p.structural for p in order.flags)
    assert events[1].flags == order.flags


def test_a_clean_order_carries_no_flags() -> None:
    assert received(internet("1")).flags == ()


# ------------------------------------------------------------------------------- review
def test_approval_starts_fulfilment() -> None:
    order = received()

    order.approve(MANAGER, note="looks good")

    events = order.collect_events()
    assert names(events) == ["OrderApproved"]
    assert events[0].note == "looks good"
    assert order.state is v.OrderState.IN_PROGRESS
    assert order.decided_by == MANAGER.actor


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_rejection_needs_a_reason(reason) -> None:
    order = received()

    refused_unchanged(order, err.InvalidCommand, lambda: order.reject(MANAGER, reason))


def test_rejection_records_the_reason_and_rejects_every_item() -> None:
    order = received(internet("1"), internet("2"))

    order.reject(MANAGER, "  no coverage at the site  ")

    events = order.collect_events()
    assert names(events) == ["OrderRejected"]
    assert events[0].reason == "no coverage at the site"
    assert order.state is v.OrderState.REJECTED
    assert order.rejection_reason == "no coverage at the site"
    assert {i.state for i in order.items.values()} == {v.ItemState.REJECTED}


@pytest.mark.parametrize(
    "decide",
    [
        lambda o, ctx: o.approve(ctx),
        lambda o, ctx: o.reject(ctx, "no"),
    ],
    ids=["approve", "reject"],
)
def test_four_eyes_the_submitter_may_not_decide_their_own_order(decide) -> None:
    order = ServiceOrder.receive(MANAGER, v.OrderHeader(), [internet()], CATALOG)
    order.collect_events()

    error = refused_unchanged(order, err.NotPermitted, lambda: decide(order, MANAGER))
    assert "four-eyes" in str(error)
    assert error.actor == MANAGER.actor.id


def test_four_eyes_is_about_the_person_not_the_role() -> None:
    order = ServiceOrder.receive(MANAGER, v.OrderHeader(), [internet()], CATALOG)
    order.collect_events()

    order.approve(MANAGER_2)

    assert order.state is v.OrderState.IN_PROGRESS


def test_without_four_eyes_the_submitter_may_approve() -> None:
    order = ServiceOrder.draft(MANAGER, v.OrderHeader())
    order.add_line(MANAGER, internet())
    order.submit(MANAGER, CATALOG)
    order.collect_events()

    order.approve(MANAGER, four_eyes=False)

    assert order.state is v.OrderState.IN_PROGRESS
    assert order.submitted_by == order.decided_by == MANAGER.actor


@pytest.mark.parametrize("ctx", [AGENT, UPSTREAM, FULFILMENT, AUDITOR], ids=lambda c: c.actor.role)
def test_only_managers_and_operators_decide(ctx) -> None:
    order = received()

    refused_unchanged(order, err.NotPermitted, lambda: order.approve(ctx))
    refused_unchanged(order, err.NotPermitted, lambda: order.reject(ctx, "no"))


def test_an_operator_may_decide() -> None:
    order = received()

    order.approve(OPERATOR)

    assert order.state is v.OrderState.IN_PROGRESS


def test_the_message_of_an_illegal_transition_names_order_state_and_action() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.collect_events()

    error = refused_unchanged(order, err.IllegalTransition, lambda: order.approve(MANAGER))

    message = str(error)
    assert str(order.id) in message
    assert "draft" in message
    assert "approve" in message
    assert (error.order_id, error.state, error.action) == (order.id, "draft", "approve")


def test_the_message_of_a_refused_role_names_actor_role_and_action() -> None:
    order = received()

    error = refused_unchanged(order, err.NotPermitted, lambda: order.approve(AUDITOR))

    assert "auditor-al" in str(error)
    assert "auditor" in str(error)
    assert "approve" in str(error)
    assert str(order.id) in str(error)


# --------------------------------------------------------------------------- fulfilment
def test_hold_and_resume() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)

    order.hold(FULFILMENT, "site not ready")
    assert order.state is v.OrderState.HELD
    assert order.waiting_reason == "site not ready"

    order.resume(FULFILMENT)
    assert order.state is v.OrderState.IN_PROGRESS
    assert order.waiting_reason is None
    assert names(order.collect_events()) == ["OrderHeld", "OrderResumed"]


def test_holding_needs_a_reason() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)

    refused_unchanged(order, err.InvalidCommand, lambda: order.hold(FULFILMENT, " "))


def test_a_manager_may_hold_and_resume() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)

    order.hold(MANAGER, "budget review")
    order.resume(MANAGER)

    assert order.state is v.OrderState.IN_PROGRESS


def test_information_request_and_answer() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)

    order.request_information(FULFILMENT, "which VLAN?")
    assert order.state is v.OrderState.PENDING
    assert order.waiting_reason == "which VLAN?"

    order.provide_information(UPSTREAM, "VLAN 42")
    assert order.state is v.OrderState.IN_PROGRESS
    assert order.waiting_reason is None
    assert names(order.collect_events()) == ["InformationRequested", "InformationProvided"]


def test_only_fulfilment_reports_item_progress_and_asks_for_information() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)

    for actor in (UPSTREAM, MANAGER):
        report = partial(order.change_item_state, actor, "1", v.ItemState.COMPLETED)
        refused_unchanged(order, err.NotPermitted, report)
    refused_unchanged(order, err.NotPermitted, lambda: order.request_information(AGENT, "?"))


def test_item_state_change_of_an_unknown_item_is_refused() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)

    refused_unchanged(
        order,
        err.UnknownItem,
        lambda: order.change_item_state(FULFILMENT, "9", v.ItemState.COMPLETED),
    )


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (None, v.ItemState.ACKNOWLEDGED),
        (None, v.ItemState.REJECTED),
        (v.ItemState.PENDING, v.ItemState.COMPLETED),
        (v.ItemState.HELD, v.ItemState.COMPLETED),
        (v.ItemState.COMPLETED, v.ItemState.IN_PROGRESS),
        (v.ItemState.FAILED, v.ItemState.COMPLETED),
    ],
)
def test_item_transitions_outside_the_table_are_refused(start, to) -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))
    if start is not None:
        order.change_item_state(FULFILMENT, "1", start)
        order.collect_events()

    error = item_move_refused(order, "1", to)
    assert "item 1" in str(error)


def test_item_states_are_changed_only_while_the_order_is_in_progress() -> None:
    order = in_state(v.OrderState.HELD)

    item_move_refused(order, "1", v.ItemState.COMPLETED)


def test_an_item_waits_for_the_items_it_depends_on() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2", depends_on=("1",)))

    for to in (v.ItemState.IN_PROGRESS, v.ItemState.COMPLETED):
        error = item_move_refused(order, "2", to)
        assert "waits for item(s) 1" in str(error)

    order.change_item_state(FULFILMENT, "2", v.ItemState.PENDING)  # waiting is allowed
    order.change_item_state(FULFILMENT, "1", v.ItemState.IN_PROGRESS)
    item_move_refused(order, "2", v.ItemState.IN_PROGRESS)

    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.change_item_state(FULFILMENT, "2", v.ItemState.IN_PROGRESS)
    order.change_item_state(FULFILMENT, "2", v.ItemState.COMPLETED)
    assert order.state is v.OrderState.COMPLETED


def test_a_failed_dependency_blocks_the_dependent_item_but_it_may_fail_or_cancel() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2", depends_on=("1",)))
    order.change_item_state(FULFILMENT, "1", v.ItemState.FAILED)

    item_move_refused(order, "2", v.ItemState.COMPLETED)
    order.change_item_state(FULFILMENT, "2", v.ItemState.CANCELLED)
    assert order.state is v.OrderState.FAILED


@pytest.mark.parametrize(
    ("finals", "outcome", "event"),
    [
        ((v.ItemState.COMPLETED, v.ItemState.COMPLETED), v.OrderState.COMPLETED, "OrderCompleted"),
        ((v.ItemState.FAILED, v.ItemState.FAILED), v.OrderState.FAILED, "OrderFailed"),
        (
            (v.ItemState.COMPLETED, v.ItemState.FAILED),
            v.OrderState.PARTIAL,
            "OrderPartiallyCompleted",
        ),
        ((v.ItemState.COMPLETED, v.ItemState.CANCELLED), v.OrderState.COMPLETED, "OrderCompleted"),
        ((v.ItemState.FAILED, v.ItemState.CANCELLED), v.OrderState.FAILED, "OrderFailed"),
        ((v.ItemState.CANCELLED, v.ItemState.CANCELLED), v.OrderState.CANCELLED, "OrderCancelled"),
    ],
)
def test_the_last_final_item_decides_the_outcome(finals, outcome, event) -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))

    order.change_item_state(FULFILMENT, "1", finals[0])
    assert order.state is v.OrderState.IN_PROGRESS
    order.change_item_state(FULFILMENT, "2", finals[1])

    assert order.state is outcome
    assert names(order.collect_events()) == ["ItemStateChanged", "ItemStateChanged", event]


def test_all_items_cancelled_cancels_the_order() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))

    order.change_item_state(FULFILMENT, "1", v.ItemState.CANCELLED)
    order.change_item_state(FULFILMENT, "2", v.ItemState.CANCELLED)

    assert order.state is v.OrderState.CANCELLED
    assert names(order.collect_events())[-1] == "OrderCancelled"


def test_the_point_of_no_return_is_reached_once() -> None:
    order = in_state(v.OrderState.PENDING)

    order.reach_point_of_no_return(FULFILMENT, "equipment shipped")
    assert order.point_of_no_return is True
    assert names(order.collect_events()) == ["PointOfNoReturnReached"]

    refused_unchanged(
        order, err.IllegalTransition, lambda: order.reach_point_of_no_return(FULFILMENT)
    )


def test_the_point_of_no_return_is_not_reached_before_approval() -> None:
    order = received()

    refused_unchanged(
        order, err.IllegalTransition, lambda: order.reach_point_of_no_return(FULFILMENT)
    )


@pytest.mark.parametrize(
    ("state", "blocked"),
    [
        (
            v.OrderState.IN_PROGRESS,
            lambda o: o.revise(UPSTREAM, CATALOG, header=v.HeaderChange(priority="1")),
        ),
        (v.OrderState.IN_PROGRESS, lambda o: o.request_cancellation(UPSTREAM, "changed my mind")),
        # a direct cancellation is fulfilment's exit from held (or pending)
        (v.OrderState.HELD, lambda o: o.cancel(FULFILMENT, "changed my mind")),
    ],
    ids=["revise", "request_cancellation", "cancel"],
)
def test_after_the_point_of_no_return_changes_and_cancellation_are_refused(state, blocked) -> None:
    order = in_state(state)
    order.reach_point_of_no_return(FULFILMENT)
    order.collect_events()

    error = refused_unchanged(order, err.IllegalTransition, lambda: blocked(order))
    assert "point of no return" in str(error)


def test_after_the_point_of_no_return_fulfilment_still_finishes_the_order() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)
    order.reach_point_of_no_return(FULFILMENT)

    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)

    assert order.state is v.OrderState.COMPLETED


# ------------------------------------------------------------------------------ revision
def test_revision_replaces_named_items_and_keeps_the_others() -> None:
    order = received(internet("1"), internet("2"))
    kept = order.items["2"]

    order.revise(UPSTREAM, CATALOG, items=[internet("1", bandwidthMbps=1000)])

    events = order.collect_events()
    assert names(events) == ["OrderRevised"]
    assert order.items["1"].characteristics["bandwidthMbps"] == 1000
    assert order.items["1"].state is v.ItemState.ACKNOWLEDGED
    assert order.items["2"] == kept
    assert order.revision == 1
    assert order.state is v.OrderState.ACKNOWLEDGED


def test_revision_adds_items_it_does_not_know_yet() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"))

    order.revise(UPSTREAM, CATALOG, items=[internet("2", depends_on=("1",))])
    order.approve_proposal(MANAGER_2, CATALOG)  # after approval: a proposal, decided

    assert list(order.items) == ["1", "2"]
    assert order.items["2"].state is v.ItemState.ACKNOWLEDGED
    assert order.state is v.OrderState.IN_PROGRESS


def test_revision_changes_only_the_header_fields_given() -> None:
    order = ServiceOrder.receive(
        UPSTREAM, v.OrderHeader(description="old", priority="3"), [internet()], CATALOG
    )

    order.revise(UPSTREAM, CATALOG, header=v.HeaderChange(priority="1"))

    assert order.header.priority == "1"
    assert order.header.description == "old"


def test_a_revision_that_changes_nothing_is_refused() -> None:
    order = received()

    refused_unchanged(order, err.InvalidCommand, lambda: order.revise(UPSTREAM, CATALOG))


def test_a_revision_with_structural_problems_is_refused() -> None:
    order = received(internet("1"))

    error = refused_unchanged(
        order,
        err.ValidationFailed,
        lambda: order.revise(UPSTREAM, CATALOG, items=[internet("2", depends_on=("9",))]),
    )
    assert [p.code for p in error.problems] == ["unknown_dependency"]


def test_a_revision_that_replaces_and_removes_the_same_item_is_refused() -> None:
    order = received(internet("1"), internet("2"))

    refused_unchanged(
        order,
        err.InvalidCommand,
        lambda: order.revise(UPSTREAM, CATALOG, items=[internet("1")], removed_item_ids=["1"]),
    )


def test_revising_a_final_item_is_refused() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.collect_events()

    refused_unchanged(
        order, err.IllegalTransition, lambda: order.revise(UPSTREAM, CATALOG, items=[internet("1")])
    )
    refused_unchanged(
        order,
        err.IllegalTransition,
        lambda: order.revise(UPSTREAM, CATALOG, removed_item_ids=["1"]),
    )


def test_removal_before_approval_drops_the_item() -> None:
    order = received(internet("1"), internet("2"))

    order.revise(UPSTREAM, CATALOG, removed_item_ids=["2"])

    assert list(order.items) == ["1"]


def test_removal_after_approval_cancels_the_item_and_keeps_it_on_record() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))

    order.revise(UPSTREAM, CATALOG, removed_item_ids=["2"])
    order.approve_proposal(MANAGER_2, CATALOG)  # after approval: a proposal, decided

    assert order.items["2"].state is v.ItemState.CANCELLED
    assert order.items["1"].state is v.ItemState.ACKNOWLEDGED
    assert order.state is v.OrderState.IN_PROGRESS


def test_removing_every_item_is_refused() -> None:
    order = received(internet("1"))

    error = refused_unchanged(
        order, err.ValidationFailed, lambda: order.revise(UPSTREAM, CATALOG, removed_item_ids=["1"])
    )
    assert [p.code for p in error.problems] == ["no_items"]


def test_removing_an_item_others_depend_on_is_refused() -> None:
    order = received(internet("1"), internet("2", depends_on=("1",)))

    refused_unchanged(
        order, err.ValidationFailed, lambda: order.revise(UPSTREAM, CATALOG, removed_item_ids=["1"])
    )


def test_removing_the_last_open_item_finishes_an_order_in_progress() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.collect_events()

    order.revise(UPSTREAM, CATALOG, removed_item_ids=["2"])
    order.approve_proposal(MANAGER_2, CATALOG)  # after approval: a proposal, decided

    assert names(order.collect_events()) == [
        "RevisionProposed",
        "ProposalApproved",
        "OrderCompleted",
    ]
    assert order.state is v.OrderState.COMPLETED


@pytest.mark.parametrize(
    ("waiting", "back"),
    [
        (v.OrderState.HELD, lambda o: o.resume(FULFILMENT)),
        (v.OrderState.PENDING, lambda o: o.provide_information(UPSTREAM, "here it is")),
    ],
    ids=["held", "pending"],
)
def test_a_waiting_order_whose_last_open_item_was_removed_finishes_when_work_resumes(
    waiting, back
) -> None:
    # Regression: the order used to come back to inProgress with nothing left to do, and
    # stayed there for good (no item could change any more).
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    if waiting is v.OrderState.HELD:
        order.hold(FULFILMENT, "site closed")
    else:
        order.request_information(FULFILMENT, "still wanted?")
    order.revise(UPSTREAM, CATALOG, removed_item_ids=["2"])
    order.approve_proposal(MANAGER_2, CATALOG)  # after approval: a proposal, decided
    assert order.state is waiting
    order.collect_events()

    back(order)

    assert order.state is v.OrderState.COMPLETED
    assert names(order.collect_events())[-1] == "OrderCompleted"


# -------------------------------------------------------------------------- cancellation
ACTIVE_STATES = [
    v.OrderState.ACKNOWLEDGED,
    v.OrderState.IN_PROGRESS,
    v.OrderState.PENDING,
    v.OrderState.HELD,
]


@pytest.mark.parametrize("prior", ACTIVE_STATES, ids=str)
def test_a_denied_cancellation_request_returns_the_order_to_its_prior_state(prior) -> None:
    order = in_state(prior)

    request_id = order.request_cancellation(UPSTREAM, "budget cut", request_id="cr-1")
    assert request_id == "cr-1"
    assert order.state is v.OrderState.ASSESSING_CANCELLATION
    assert order.prior_state is prior

    order.deny_cancellation(MANAGER, "work is nearly done")

    events = order.collect_events()
    assert names(events) == ["CancellationRequested", "CancellationDenied"]
    assert events[1].restored_state is prior
    assert events[1].request_id == "cr-1"
    assert order.state is prior
    assert order.prior_state is None
    assert order.cancellation_request_id is None


@pytest.mark.parametrize("prior", ACTIVE_STATES, ids=str)
def test_an_approved_cancellation_request_ends_with_the_order_cancelled(prior) -> None:
    order = in_state(prior, internet("1"), internet("2"))
    request_id = order.request_cancellation(UPSTREAM, "budget cut")

    order.approve_cancellation(MANAGER)
    assert order.state is v.OrderState.PENDING_CANCELLATION
    order.cancel(FULFILMENT)

    events = order.collect_events()
    assert names(events) == ["CancellationRequested", "CancellationApproved", "OrderCancelled"]
    assert events[1].request_id == events[2].request_id == request_id
    assert events[2].reason == "budget cut"
    assert order.state is v.OrderState.CANCELLED
    assert {i.state for i in order.items.values()} == {v.ItemState.CANCELLED}


@pytest.mark.parametrize("prior", [v.OrderState.PENDING, v.OrderState.HELD], ids=str)
def test_fulfilment_may_cancel_directly_from_held_or_pending(prior) -> None:
    # TMF641's exits "issue cannot be solved" / "information cannot be supplied".
    order = in_state(prior)

    order.cancel(FULFILMENT, "duplicate order")

    events = order.collect_events()
    assert names(events) == ["OrderCancelled"]
    assert events[0].reason == "duplicate order"
    assert events[0].request_id is None
    assert order.state is v.OrderState.CANCELLED


@pytest.mark.parametrize("ctx", [FULFILMENT, MANAGER, OPERATOR], ids=lambda c: c.actor.role)
@pytest.mark.parametrize("prior", [v.OrderState.ACKNOWLEDGED, v.OrderState.IN_PROGRESS], ids=str)
def test_an_order_may_not_be_cancelled_directly_from_acknowledged_or_in_progress(
    prior, ctx
) -> None:
    # Issue 17: a cancellation there is requested and decided by a second person.
    order = in_state(prior)

    refused_unchanged(order, err.IllegalTransition, lambda: order.cancel(ctx, "duplicate order"))


@pytest.mark.parametrize("ctx", [MANAGER, OPERATOR], ids=lambda c: c.actor.role)
@pytest.mark.parametrize("prior", [v.OrderState.PENDING, v.OrderState.HELD], ids=str)
def test_only_fulfilment_cancels_directly_from_held_or_pending(prior, ctx) -> None:
    order = in_state(prior)

    error = refused_unchanged(order, err.NotPermitted, lambda: order.cancel(ctx, "duplicate"))
    assert "second person" in str(error)


def test_cancellation_keeps_items_that_already_finished() -> None:
    order = in_state(v.OrderState.IN_PROGRESS, internet("1"), internet("2"))
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.request_cancellation(UPSTREAM, "budget cut")
    order.approve_cancellation(MANAGER)

    order.cancel(OPERATOR)

    assert order.items["1"].state is v.ItemState.COMPLETED
    assert order.items["2"].state is v.ItemState.CANCELLED


def test_a_cancellation_request_needs_a_decision_before_anything_else() -> None:
    order = in_state(v.OrderState.IN_PROGRESS)
    order.request_cancellation(UPSTREAM)
    order.collect_events()

    for attempt in (
        lambda: order.hold(FULFILMENT, "x"),
        lambda: order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED),
        lambda: order.request_cancellation(UPSTREAM),
        lambda: order.revise(UPSTREAM, CATALOG, header=v.HeaderChange(priority="1")),
    ):
        refused_unchanged(order, err.IllegalTransition, attempt)


def test_denying_a_cancellation_needs_a_reason() -> None:
    order = in_state(v.OrderState.ACKNOWLEDGED)
    order.request_cancellation(UPSTREAM)
    order.collect_events()

    refused_unchanged(order, err.InvalidCommand, lambda: order.deny_cancellation(MANAGER, ""))


def test_requesters_may_not_decide_on_cancellation() -> None:
    order = in_state(v.OrderState.ACKNOWLEDGED)
    order.request_cancellation(UPSTREAM)
    order.collect_events()

    refused_unchanged(order, err.NotPermitted, lambda: order.approve_cancellation(UPSTREAM))
    refused_unchanged(order, err.NotPermitted, lambda: order.deny_cancellation(FULFILMENT, "no"))


# ------------------------------------------------------------------------- final states
def _completed() -> ServiceOrder:
    order = in_state(v.OrderState.IN_PROGRESS)
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    order.collect_events()
    return order


def _rejected() -> ServiceOrder:
    order = received()
    order.reject(MANAGER, "no")
    order.collect_events()
    return order


def _cancelled() -> ServiceOrder:
    order = received()
    order.request_cancellation(UPSTREAM)
    order.approve_cancellation(MANAGER)
    order.cancel(FULFILMENT)
    order.collect_events()
    return order


def commands_as(ctx: v.CommandContext) -> dict:
    """Every command but add_note, each with arguments that are valid in itself."""
    return {
        "approve": lambda o: o.approve(ctx),
        "reject": lambda o: o.reject(ctx, "no"),
        "hold": lambda o: o.hold(ctx, "x"),
        "resume": lambda o: o.resume(ctx),
        "request_information": lambda o: o.request_information(ctx, "x"),
        "provide_information": lambda o: o.provide_information(ctx, "x"),
        "change_item_state": lambda o: o.change_item_state(ctx, "1", v.ItemState.FAILED),
        "reach_point_of_no_return": lambda o: o.reach_point_of_no_return(ctx),
        "revise": lambda o: o.revise(ctx, CATALOG, header=v.HeaderChange(priority="1")),
        "request_cancellation": lambda o: o.request_cancellation(ctx),
        "approve_cancellation": lambda o: o.approve_cancellation(ctx),
        "deny_cancellation": lambda o: o.deny_cancellation(ctx, "no"),
        "cancel": lambda o: o.cancel(ctx),
        "approve_proposal": lambda o: o.approve_proposal(ctx, CATALOG),
        "refuse_proposal": lambda o: o.refuse_proposal(ctx, "no"),
        "withdraw_proposal": lambda o: o.withdraw_proposal(ctx),
        "add_line": lambda o: o.add_line(ctx, internet("9")),
        "configure_line": lambda o: o.configure_line(ctx, "1", {"bandwidthMbps": 10}),
        "remove_line": lambda o: o.remove_line(ctx, "1"),
        "submit": lambda o: o.submit(ctx, CATALOG),
    }


COMMANDS = sorted(commands_as(OPERATOR))


@pytest.mark.parametrize(
    "final", [_completed, _rejected, _cancelled], ids=["completed", "rejected", "cancelled"]
)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_final_order_refuses_every_command_but_a_note_or_archiving(final, command) -> None:
    order = final()

    refused_unchanged(order, err.IllegalTransition, lambda: commands_as(OPERATOR)[command](order))


@pytest.mark.parametrize(
    "final", [_completed, _rejected, _cancelled], ids=["completed", "rejected", "cancelled"]
)
def test_a_final_order_still_takes_notes(final) -> None:
    order = final()
    state = order.state

    order.add_note(AGENT, "customer called about the invoice")

    assert order.state is state
    assert order.notes[-1].text == "customer called about the invoice"
    assert order.notes[-1].author == AGENT.actor.id


def test_a_note_needs_text() -> None:
    order = received()

    refused_unchanged(order, err.InvalidCommand, lambda: order.add_note(AGENT, "  "))


@pytest.mark.parametrize("state", [v.OrderState.ACKNOWLEDGED, v.OrderState.IN_PROGRESS], ids=str)
@pytest.mark.parametrize("command", [*COMMANDS, "add_note"])
def test_an_auditor_may_do_nothing(state, command) -> None:
    order = in_state(state)
    calls = {**commands_as(AUDITOR), "add_note": lambda o: o.add_note(AUDITOR, "hello")}

    refused_unchanged(order, err.NotPermitted, lambda: calls[command](order))


def test_an_auditor_may_neither_draft_nor_receive() -> None:
    with pytest.raises(err.NotPermitted):
        ServiceOrder.draft(AUDITOR, v.OrderHeader())
    with pytest.raises(err.NotPermitted):
        ServiceOrder.receive(AUDITOR, v.OrderHeader(), [internet()], CATALOG)


# ------------------------------------------------------------------------------ deletion
def test_an_agent_may_discard_a_draft() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    order.collect_events()

    order.delete(AGENT, "started by mistake")

    events = order.collect_events()
    assert names(events) == ["OrderDeleted"]
    assert events[0].reason == "started by mistake"
    assert order.deleted is True
    assert order.state is v.OrderState.DRAFT


@pytest.mark.parametrize(
    "final", [_completed, _rejected, _cancelled], ids=["completed", "rejected", "cancelled"]
)
def test_a_manager_may_archive_a_final_order(final) -> None:
    order = final()
    state = order.state

    order.delete(MANAGER)

    assert order.deleted is True
    assert order.state is state


def test_an_agent_may_not_archive_a_final_order() -> None:
    order = _completed()

    error = refused_unchanged(order, err.NotPermitted, lambda: order.delete(AGENT))
    assert "drafts only" in str(error)


@pytest.mark.parametrize("state", ACTIVE_STATES, ids=str)
def test_an_active_order_is_cancelled_not_deleted(state) -> None:
    order = in_state(state)

    refused_unchanged(order, err.IllegalTransition, lambda: order.delete(OPERATOR))


@pytest.mark.parametrize("command", [*COMMANDS, "add_note", "delete"])
def test_a_deleted_order_takes_no_command_at_all(command) -> None:
    order = _completed()
    order.delete(MANAGER)
    calls = {
        **commands_as(OPERATOR),
        "add_note": lambda o: o.add_note(OPERATOR, "hello"),
        "delete": lambda o: o.delete(OPERATOR),
    }

    error = refused_unchanged(order, err.IllegalTransition, lambda: calls[command](order))
    assert "deleted" in str(error)


# ----------------------------------------------------------------------------------- ids
def test_the_order_id_is_derived_from_the_external_id() -> None:
    assert order_id_for("X") == order_id_for("X")
    assert order_id_for("X") != order_id_for("Y")
    assert isinstance(order_id_for("X"), UUID)


def test_without_an_external_id_every_order_gets_a_new_id() -> None:
    assert order_id_for(None) != order_id_for(None)
    assert order_id_for("") != order_id_for("")


def test_receiving_the_same_external_id_twice_gives_the_same_order_id() -> None:
    first = received(external_id="crm-42")
    second = received(external_id="crm-42")

    assert first.id == second.id == order_id_for("crm-42")


def test_a_drafted_order_gets_the_same_id_for_the_same_external_id() -> None:
    drafted = ServiceOrder.draft(AGENT, v.OrderHeader(external_id="crm-43"))

    assert drafted.id == received(external_id="crm-43").id


def test_an_explicit_order_id_wins() -> None:
    order_id = UUID("12345678-1234-5678-1234-567812345678")

    order = ServiceOrder.receive(
        UPSTREAM, v.OrderHeader(external_id="crm-44"), [internet()], CATALOG, order_id=order_id
    )

    assert order.id == order_id


# -------------------------------------------------------------------------- the envelope
def test_every_event_carries_the_envelope_of_its_command() -> None:
    def ctx(actor: str, role: v.Role, n: int) -> v.CommandContext:
        return v.CommandContext.for_actor(
            actor, role, v.Channel.KAFKA, correlation_id="corr-7", causation_id=f"msg-{n}"
        )

    commands = [
        (ctx("crm", v.Role.UPSTREAM, 0), None),
        (ctx("boss", v.Role.MANAGER, 1), lambda o, c: o.approve(c)),
        (ctx("activator", v.Role.FULFILMENT, 2), lambda o, c: o.hold(c, "site closed")),
        (ctx("boss", v.Role.MANAGER, 3), lambda o, c: o.resume(c)),
        (ctx("crm", v.Role.UPSTREAM, 4), lambda o, c: o.add_note(c, "hello")),
        (
            ctx("activator", v.Role.FULFILMENT, 5),
            lambda o, c: o.change_item_state(c, "1", v.ItemState.COMPLETED),
        ),
    ]
    before = datetime.now(UTC)
    order = ServiceOrder.receive(commands[0][0], v.OrderHeader(), [internet("1")], CATALOG)
    for c, call in commands[1:]:
        call(order, c)
    after = datetime.now(UTC)

    events = order.collect_events()
    expected_ctx = [commands[0][0], *(c for c, _ in commands[1:])]
    expected_ctx.insert(1, commands[0][0])  # receive: OrderDrafted and OrderSubmitted
    expected_ctx.append(commands[-1][0])  # the last item change also completes the order
    assert names(events)[-1] == "OrderCompleted"
    assert len(events) == len(expected_ctx)
    for e, c in zip(events, expected_ctx, strict=True):
        assert e.actor == c.actor
        assert e.actor.role is c.actor.role
        assert e.source == c.source
        assert e.source.channel is v.Channel.KAFKA
        assert e.correlation_id == "corr-7"
        assert e.causation_id == c.causation_id
        assert e.timestamp.tzinfo is not None
        assert before <= e.timestamp <= after
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_the_events_are_chained_by_hash() -> None:
    order = ServiceOrder.receive(UPSTREAM, v.OrderHeader(), [internet()], CATALOG)
    order.approve(MANAGER)
    order.add_note(AGENT, "x")

    events = order.collect_events()

    assert events[0].prev_hash == GENESIS
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    for event in events:
        assert event.hash == event.compute_hash()
        assert len(event.hash) == 64
    assert len({e.hash for e in events}) == len(events)
    assert order.head_hash == events[-1].hash


def test_a_changed_event_no_longer_matches_its_hash() -> None:
    order = ServiceOrder.receive(UPSTREAM, v.OrderHeader(), [internet()], CATALOG)
    event = order.collect_events()[1]

    tampered = event.model_copy(update={"correlation_id": "forged"})

    assert tampered.hash == event.hash
    assert tampered.compute_hash() != event.hash


# ------------------------------------------------------------------------ event classes
EVENT_CLASS_NAMES = [
    "OrderDrafted",
    "LineAdded",
    "LineConfigured",
    "LineRemoved",
    "OrderSubmitted",
    "OrderApproved",
    "OrderRejected",
    "OrderHeld",
    "OrderResumed",
    "InformationRequested",
    "InformationProvided",
    "ItemStateChanged",
    "OrderRevised",
    "PointOfNoReturnReached",
    "CancellationRequested",
    "CancellationApproved",
    "CancellationDenied",
    "OrderCancelled",
    "OrderCompleted",
    "OrderFailed",
    "OrderPartiallyCompleted",
    "NoteAdded",
]
# Issue 17: proposals (revisions after approval) and correct-and-resubmit.
ISSUE_17_EVENT_CLASS_NAMES = [
    "RevisionProposed",
    "ProposalApproved",
    "ProposalRefused",
    "ProposalWithdrawn",
    "OrderResubmitted",
]


def test_there_are_at_least_the_22_named_event_classes() -> None:
    assert len(EVENT_CLASS_NAMES) == 22
    assert set(EVENT_CLASS_NAMES) <= {cls.__name__ for cls in ev.ALL_EVENTS}
    assert len(ev.ALL_EVENTS) >= 22
    assert set(ISSUE_17_EVENT_CLASS_NAMES) <= {cls.__name__ for cls in ev.ALL_EVENTS}


@pytest.mark.parametrize("name", [*EVENT_CLASS_NAMES, *ISSUE_17_EVENT_CLASS_NAMES])
def test_every_event_class_has_a_stable_topic_and_an_int_class_version(name) -> None:
    cls = getattr(ev, name)

    assert f"serviceorders.order:{name}" == cls.TOPIC
    assert resolve_topic(cls.TOPIC) is cls
    assert type(cls.class_version) is int
    assert cls.class_version >= 1
    assert issubclass(cls, ev.OrderEvent)


def test_the_note_event_is_at_class_version_2() -> None:
    assert ev.NoteAdded.class_version == 2
    named = [*EVENT_CLASS_NAMES, *ISSUE_17_EVENT_CLASS_NAMES]
    assert all(getattr(ev, n).class_version == 1 for n in named if n != "NoteAdded")


def test_the_aggregate_has_a_stable_topic() -> None:
    assert ServiceOrder.TOPIC == "serviceorders.order:ServiceOrder"
    assert resolve_topic(ServiceOrder.TOPIC) is ServiceOrder


# --------------------------------------------------------------------- header values
def test_header_dates_stay_dates_and_datetimes_stay_datetimes() -> None:
    header = v.OrderHeader.model_validate(
        {"requested_start_date": "2030-01-15", "requested_completion_date": "2030-02-01T12:00:00Z"}
    )

    assert type(header.requested_start_date) is date
    assert header.requested_start_date == date(2030, 1, 15)
    assert type(header.requested_completion_date) is datetime
    assert header.requested_completion_date == datetime(2030, 2, 1, 12, tzinfo=UTC)

"""The v4.1 item states in the domain (issue 19): items mirror the order's cancellation
(assessingCancellation, pendingCancellation, restored on denial); an item with nested
items settles by the order's rule once they are all final (`partial` among them); the
cancellation's requester can be asked for information and answers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from builders import item, manager, memory_app, operator, upstream
from serviceorders.domain import commands as cmd
from serviceorders.domain import errors as err
from serviceorders.domain import events as ev
from serviceorders.domain import values as v
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.snapshot import OrderSnapshot

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()
MAPPER = PydanticMapper(transcoder=OrjsonTranscoder())
AGENT = v.CommandContext.for_actor("agent-ann", v.Role.AGENT)
UPSTREAM = v.CommandContext.for_actor("crm", v.Role.UPSTREAM, v.Channel.KAFKA)
MANAGER = v.CommandContext.for_actor("manager-mo", v.Role.MANAGER)
MANAGER_2 = v.CommandContext.for_actor("manager-max", v.Role.MANAGER)
FULFILMENT = v.CommandContext.for_actor("activator", v.Role.FULFILMENT)
OPERATOR = v.CommandContext.for_actor("ops-olga", v.Role.OPERATOR)
S = v.ItemState


def nested(item_id: str, parent: str | None) -> v.OrderItem:
    return item(item_id).model_copy(update={"parent": parent})


def received(*items: v.OrderItem) -> ServiceOrder:
    order = ServiceOrder.receive(
        UPSTREAM, v.OrderHeader(), items or [item("1"), item("2"), item("3")], CATALOG
    )
    return order


def approved(*items: v.OrderItem) -> ServiceOrder:
    order = received(*items)
    order.approve(MANAGER)
    return order


def states(order: ServiceOrder) -> dict[str, v.ItemState | None]:
    return {k: i.state for k, i in order.items.items()}


def refused_unchanged(order: ServiceOrder, error: type[Exception], call: Callable[[], Any]) -> str:
    before, pending = dict(vars(order)), len(order.pending_events)
    with pytest.raises(error) as info:
        call()
    assert vars(order) == before and len(order.pending_events) == pending
    return str(info.value)


def replay(order: ServiceOrder) -> ServiceOrder:
    stored = [MAPPER.to_domain_event(MAPPER.to_stored_event(e)) for e in order.pending_events]
    result: Any = functools.reduce(lambda agg, e: e.mutate(agg), stored, None)
    return result


# --------------------------------------------------- items mirror the cancellation
def test_a_cancellation_request_puts_every_open_item_in_assessing_and_denial_restores_them() -> (
    None
):
    order = approved()
    order.change_item_state(FULFILMENT, "1", S.IN_PROGRESS)
    order.change_item_state(FULFILMENT, "2", S.COMPLETED)
    order.request_cancellation(UPSTREAM, "budget")
    assert states(order) == {
        "1": S.ASSESSING_CANCELLATION,
        "2": S.COMPLETED,  # final: not assessed
        "3": S.ASSESSING_CANCELLATION,
    }
    order.deny_cancellation(MANAGER, "work has started")
    assert states(order) == {"1": S.IN_PROGRESS, "2": S.COMPLETED, "3": S.ACKNOWLEDGED}
    assert order.item_states_before_cancellation == {}
    assert replay(order).snapshot_state() == order.snapshot_state()


def test_denial_restores_the_items_of_an_order_still_in_review() -> None:
    order = received()
    order.request_cancellation(UPSTREAM, "duplicate")
    assert set(states(order).values()) == {S.ASSESSING_CANCELLATION}
    order.deny_cancellation(MANAGER, "not a duplicate")
    assert set(states(order).values()) == {S.ACKNOWLEDGED}
    assert order.state is v.OrderState.ACKNOWLEDGED


def test_an_approved_cancellation_puts_them_in_pending_then_the_cancellation_cancels_them() -> None:
    order = approved()
    order.change_item_state(FULFILMENT, "2", S.FAILED)
    order.request_cancellation(UPSTREAM, "budget")
    order.approve_cancellation(MANAGER)
    assert states(order) == {
        "1": S.PENDING_CANCELLATION,
        "2": S.FAILED,
        "3": S.PENDING_CANCELLATION,
    }
    order.cancel(FULFILMENT)
    assert states(order) == {"1": S.CANCELLED, "2": S.FAILED, "3": S.CANCELLED}


def test_fulfilment_cannot_move_an_item_while_the_cancellation_is_assessed() -> None:
    order = approved()
    order.request_cancellation(UPSTREAM, "budget")
    for state in (S.IN_PROGRESS, S.COMPLETED, S.FAILED, S.ASSESSING_CANCELLATION):
        refused_unchanged(
            order,
            err.IllegalTransition,
            lambda s=state: order.change_item_state(FULFILMENT, "1", s),
        )


def test_fulfilment_never_reports_the_engines_item_states() -> None:
    order = approved()
    for state in (S.ASSESSING_CANCELLATION, S.PENDING_CANCELLATION, S.PARTIAL):
        message = refused_unchanged(
            order,
            err.IllegalTransition,
            lambda s=state: order.change_item_state(FULFILMENT, "1", s),
        )
        assert f"cannot go from acknowledged to {state}" in message


def test_a_snapshot_taken_while_assessing_plus_the_denial_equals_a_replay() -> None:
    order = approved()
    order.change_item_state(FULFILMENT, "1", S.PENDING)
    order.request_cancellation(UPSTREAM, "budget")
    snapshot = MAPPER.to_domain_event(MAPPER.to_stored_event(OrderSnapshot.take(order)))
    assert snapshot.state.item_states_before_cancellation == {
        "1": S.PENDING,
        "2": S.ACKNOWLEDGED,
        "3": S.ACKNOWLEDGED,
    }
    order.deny_cancellation(MANAGER, "no")
    later = [
        MAPPER.to_domain_event(MAPPER.to_stored_event(e))
        for e in order.pending_events[snapshot.originator_version :]
    ]
    restored = functools.reduce(lambda agg, e: e.mutate(agg), later, snapshot.mutate(None))
    assert restored.snapshot_state() == order.snapshot_state() == replay(order).snapshot_state()
    assert states(restored)["1"] is S.PENDING


# ------------------------------------------------------- cancellation information
def assessing() -> ServiceOrder:
    order = approved()
    order.request_cancellation(UPSTREAM, "budget")
    return order


def test_a_manager_asks_the_requester_who_answers_and_the_order_stays_assessing() -> None:
    order = assessing()
    request_id = order.cancellation_request_id
    order.request_cancellation_information(MANAGER, "  which budget line? ")
    asked = order.pending_events[-1]
    assert isinstance(asked, ev.CancellationInformationRequested)
    assert (asked.request_id, asked.information) == (request_id, "which budget line?")
    assert order.cancellation_information == "which budget line?"
    assert order.state is v.OrderState.ASSESSING_CANCELLATION
    order.provide_cancellation_information(UPSTREAM, "line 7")
    answered = order.pending_events[-1]
    assert isinstance(answered, ev.CancellationInformationProvided)
    assert (answered.request_id, answered.information) == (request_id, "line 7")
    assert order.cancellation_information is None
    assert order.state is v.OrderState.ASSESSING_CANCELLATION
    assert set(states(order).values()) == {S.ASSESSING_CANCELLATION}
    order.approve_cancellation(MANAGER)  # assessed again, then decided
    assert order.state is v.OrderState.PENDING_CANCELLATION


def test_cancellation_information_refusals() -> None:
    order = assessing()
    # Not the requester (four-eyes), not a role that decides, not a blank question.
    refused_unchanged(
        order, err.NotPermitted, lambda: order.request_cancellation_information(UPSTREAM, "?")
    )
    refused_unchanged(
        order, err.NotPermitted, lambda: order.request_cancellation_information(FULFILMENT, "?")
    )
    refused_unchanged(
        order, err.InvalidCommand, lambda: order.request_cancellation_information(MANAGER, " ")
    )
    # Nothing to answer yet.
    refused_unchanged(
        order,
        err.IllegalTransition,
        lambda: order.provide_cancellation_information(UPSTREAM, "line 7"),
    )
    order.request_cancellation_information(MANAGER, "which budget line?")
    # One question at a time.
    refused_unchanged(
        order,
        err.IllegalTransition,
        lambda: order.request_cancellation_information(MANAGER_2, "and when?"),
    )
    # Only the requester answers (or an operator); not blank.
    message = refused_unchanged(
        order, err.NotPermitted, lambda: order.provide_cancellation_information(AGENT, "x")
    )
    assert "requested the cancellation" in message
    refused_unchanged(
        order, err.InvalidCommand, lambda: order.provide_cancellation_information(UPSTREAM, "")
    )
    order.provide_cancellation_information(OPERATOR, "line 7, says the customer")
    assert order.cancellation_information is None


def test_cancellation_information_only_while_assessing() -> None:
    order = approved()
    refused_unchanged(
        order,
        err.IllegalTransition,
        lambda: order.request_cancellation_information(MANAGER, "why?"),
    )
    refused_unchanged(
        order,
        err.IllegalTransition,
        lambda: order.provide_cancellation_information(UPSTREAM, "because"),
    )


def test_a_decision_while_a_question_waits_closes_it() -> None:
    order = assessing()
    order.request_cancellation_information(MANAGER, "which budget line?")
    order.deny_cancellation(MANAGER_2, "we keep it")
    assert order.cancellation_information is None
    assert order.state is v.OrderState.IN_PROGRESS


@pytest.fixture
def app() -> Iterator[ServiceOrders]:
    application = memory_app()
    yield application
    application.close()


def test_the_commands_through_the_one_door(app: ServiceOrders) -> None:
    order_id = app.handle(upstream(), cmd.ReceiveOrder(v.OrderHeader(), (item("1"),))).order_id
    app.handle(manager("carol"), cmd.Approve(order_id))
    app.handle(upstream(), cmd.RequestCancellation(order_id, "budget"))
    asked = app.handle(
        manager("carol"), cmd.RequestCancellationInformation(order_id, "which budget line?")
    )
    assert asked.order.cancellation_information == "which budget line?"
    with pytest.raises(err.NotPermitted):  # not the requester
        app.handle(manager("dave"), cmd.ProvideCancellationInformation(order_id, "line 7"))
    answered = app.handle(upstream(), cmd.ProvideCancellationInformation(order_id, "line 7"))
    assert answered.order.cancellation_information is None
    assert [type(e).__name__ for e in app.history(order_id)][-2:] == [
        "CancellationInformationRequested",
        "CancellationInformationProvided",
    ]
    app.handle(operator(), cmd.RequestCancellationInformation(order_id, "and the date?"))
    assert app.get_order(order_id).cancellation_information == "and the date?"


# ------------------------------------------------------------------ nested items
def family() -> list[v.OrderItem]:
    """p holds a and b; b holds b1 and b2 (three levels); s stands alone."""
    return [
        item("p"),
        nested("a", "p"),
        nested("b", "p"),
        nested("b1", "b"),
        nested("b2", "b"),
        item("s"),
    ]


def test_reporting_on_a_parent_with_open_nested_items_is_refused_naming_them() -> None:
    order = approved(*family())
    message = refused_unchanged(
        order, err.IllegalTransition, lambda: order.change_item_state(FULFILMENT, "p", S.COMPLETED)
    )
    assert "open nested item(s) a, b, b1, b2" in message
    order.change_item_state(FULFILMENT, "b1", S.COMPLETED)
    message = refused_unchanged(
        order, err.IllegalTransition, lambda: order.change_item_state(FULFILMENT, "b", S.FAILED)
    )
    assert "open nested item(s) b2" in message


def test_parents_settle_by_the_orders_rule_partial_among_them() -> None:
    order = approved(*family())
    order.change_item_state(FULFILMENT, "b1", S.COMPLETED)
    order.change_item_state(FULFILMENT, "b2", S.FAILED, reason="no port")
    assert states(order)["b"] is S.PARTIAL  # settled by the engine
    settled = [e for e in order.pending_events if isinstance(e, ev.ItemStateChanged)][-1]
    assert (settled.item_id, settled.state, settled.actor) == ("b", S.PARTIAL, FULFILMENT.actor)
    assert states(order)["p"] is S.ACKNOWLEDGED  # a is open
    order.change_item_state(FULFILMENT, "a", S.COMPLETED)
    assert states(order)["p"] is S.PARTIAL  # a completed, b partial
    order.change_item_state(FULFILMENT, "s", S.COMPLETED)
    assert order.state is v.OrderState.PARTIAL
    assert replay(order).snapshot_state() == order.snapshot_state()


def test_a_parent_whose_nested_items_all_completed_completes() -> None:
    order = approved(*family())
    for item_id in ("b1", "b2", "a", "s"):
        order.change_item_state(FULFILMENT, item_id, S.COMPLETED)
    assert set(states(order).values()) == {S.COMPLETED}
    assert order.state is v.OrderState.COMPLETED
    completed = [m.item_ids for m in order.milestones if m.name == "itemCompleted"]
    assert completed == [("b1",), ("b2",), ("b",), ("a",), ("p",), ("s",)]


def test_a_parent_whose_nested_items_all_failed_fails_with_an_outcome_naming_them() -> None:
    order = approved(item("p"), nested("a", "p"), nested("b", "p"))
    order.change_item_state(FULFILMENT, "a", S.FAILED)
    order.change_item_state(FULFILMENT, "b", S.FAILED, reason="no fibre")
    assert states(order)["p"] is S.FAILED
    assert order.outcomes[-1].item_ids == ("p",)
    assert order.outcomes[-1].message == "its nested item(s) a, b failed"
    assert order.state is v.OrderState.FAILED


def test_the_order_counts_a_partial_item_as_partial() -> None:
    order = approved(item("p"), nested("a", "p"), nested("b", "p"))
    order.change_item_state(FULFILMENT, "a", S.COMPLETED)
    order.change_item_state(FULFILMENT, "b", S.FAILED)
    assert states(order) == {"p": S.PARTIAL, "a": S.COMPLETED, "b": S.FAILED}
    assert order.state is v.OrderState.PARTIAL


def test_removing_a_parent_in_review_removes_its_nested_items() -> None:
    order = received(*family())
    order.revise(UPSTREAM, CATALOG, removed_item_ids=["b"])
    assert sorted(order.items) == ["a", "p", "s"]
    assert replay(order).snapshot_state() == order.snapshot_state()


def test_removing_a_parent_of_a_draft_removes_its_nested_items() -> None:
    order = ServiceOrder.draft(AGENT, v.OrderHeader())
    for line in family():
        order.add_line(AGENT, line)
    order.remove_line(AGENT, "p")
    assert sorted(order.items) == ["s"]


def test_removing_a_parent_after_approval_cancels_its_open_nested_items() -> None:
    order = approved(*family())
    order.change_item_state(FULFILMENT, "b1", S.COMPLETED)
    order.revise(UPSTREAM, CATALOG, removed_item_ids=["b"])  # a proposal after approval
    order.approve_proposal(MANAGER, CATALOG)
    assert states(order) == {
        "p": S.ACKNOWLEDGED,
        "a": S.ACKNOWLEDGED,
        "b": S.CANCELLED,
        "b1": S.COMPLETED,  # final: kept
        "b2": S.CANCELLED,
        "s": S.ACKNOWLEDGED,
    }
    order.change_item_state(FULFILMENT, "a", S.COMPLETED)
    assert states(order)["p"] is S.COMPLETED  # a completed, b cancelled (not counted)

"""The ServiceOrders application against real stores: every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from builders import id_created
from builders import item as build_item
from serviceorders.domain import chain
from serviceorders.domain import commands as cmd
from serviceorders.domain import values as v
from serviceorders.domain.errors import (
    ConcurrencyConflict,
    IllegalTransition,
    InvalidCommand,
    NotPermitted,
    OrderNotFound,
    ResendConflict,
    ValidationFailed,
)
from serviceorders.domain.order import order_id_for, order_id_for_request

pytestmark = pytest.mark.integration

T = "serviceorders.order:"


def topics(app, order_id):
    return [s.topic.removeprefix(T) for s in app.recorder.select_events(order_id)]


@pytest.fixture
def received(app, actors, samples):
    """A complete order received from upstream (acknowledged, in review)."""
    order_id, created = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header(), tuple(samples.items())))
    )
    assert created
    return order_id


@pytest.fixture
def approved(app, actors, received):
    app.handle(actors.manager, cmd.Approve(received, "looks fine"))
    return received


# ------------------------------------------------------------------------ intake
def test_receive_complete_order_is_idempotent_by_external_id(app, actors, samples):
    header = samples.header("crm-4711")
    order_id, created = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(header, tuple(samples.items())))
    )

    assert created is True
    assert order_id == order_id_for("crm-4711")
    assert topics(app, order_id) == ["OrderDrafted", "OrderSubmitted"]
    order = app.get_order(order_id)
    assert order.version == 2
    assert order.state is v.OrderState.ACKNOWLEDGED
    assert order.header == header
    assert set(order.items) == {"1", "2"}
    assert {i.state for i in order.items.values()} == {v.ItemState.ACKNOWLEDGED}
    assert order.submitted_by == actors.upstream.actor
    assert order.flags == ()

    # The same order again creates nothing and stores nothing; other content under its
    # external id is refused (ResendConflict, tests/unit/test_resend.py) and stores nothing.
    before = [(s.originator_version, s.state) for s in app.recorder.select_events(order_id)]
    again_id, again = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(header, tuple(samples.items())))
    )
    assert (again_id, again) == (order_id, False)
    with pytest.raises(ResendConflict):
        app.handle(actors.upstream, cmd.ReceiveOrder(header, (samples.internet_item("9"),)))
    after = [(s.originator_version, s.state) for s in app.recorder.select_events(order_id)]
    assert after == before
    assert app.recorder.max_notification_id() == 2

    found = app.find_by_external_id("crm-4711")
    assert found.id == order_id
    assert found.header.external_id == "crm-4711"
    assert [type(e).__name__ for e in app.history(order_id)] == ["OrderDrafted", "OrderSubmitted"]


def test_orders_without_external_id_are_always_new(app, actors, samples):
    first, created1 = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header(None), tuple(samples.items())))
    )
    second, created2 = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header(None), tuple(samples.items())))
    )
    assert created1 and created2
    assert first != second


def test_receive_with_a_given_order_id_is_idempotent(app, actors, samples):
    """An id given by the caller (e.g. derived from an idempotency key) names the order:
    receiving it again returns the first order and stores nothing new; other content under
    it is refused."""
    given = order_id_for_request("crm", "retry-key-1")
    first = id_created(
        app.handle(
            actors.upstream,
            cmd.ReceiveOrder(samples.header(None), tuple(samples.items()), order_id=given),
        )
    )
    again = id_created(
        app.handle(
            actors.upstream,
            cmd.ReceiveOrder(samples.header(None), tuple(samples.items()), order_id=given),
        )
    )
    assert first == (given, True) and again == (given, False)
    with pytest.raises(ResendConflict) as refused:
        app.handle(
            actors.upstream,
            cmd.ReceiveOrder(samples.header(None), tuple(samples.items()[:1]), order_id=given),
        )
    assert refused.value.paths == ("items[2]",)
    assert len(app.recorder.select_events(given)) == 2
    assert len(app.get_order(given).items) == 2


def test_receive_flags_value_problems_and_refuses_structural_ones(app, actors, samples):
    flagged = samples.internet_item("1", place=None).model_copy(
        update={"characteristics": {"bandwidthMbps": 7, "accessType": "fibre"}}
    )
    order_id, _ = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header("flagged"), (flagged,)))
    )
    codes = {p.code for p in app.get_order(order_id).flags}
    assert codes == {"missing_place", "value_not_allowed"}

    unknown = build_item("1", "no-such", characteristics={}, place=None)
    with pytest.raises(ValidationFailed) as refused:
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header("refused"), (unknown,)))
    assert {p.code for p in refused.value.problems} == {"unknown_specification"}
    assert not app.exists(order_id_for("refused"))


# --------------------------------------------------------------- manual capture
def test_manual_capture_through_the_application(app, actors, samples):
    agent = actors.agent
    order_id = app.handle(
        agent, cmd.DraftOrder(v.OrderHeader(external_id="manual-1", priority="1"))
    ).order.id
    assert app.get_order(order_id).state is v.OrderState.DRAFT

    app.handle(agent, cmd.AddLine(order_id, samples.internet_item("1", place=None)))
    app.handle(agent, cmd.AddLine(order_id, samples.router_item("2")))
    app.handle(agent, cmd.AddLine(order_id, samples.router_item("3")))
    with pytest.raises(InvalidCommand):
        app.handle(agent, cmd.AddLine(order_id, samples.router_item("3")))
    app.handle(
        agent,
        cmd.ConfigureLine(
            order_id,
            "1",
            characteristics={"bandwidthMbps": 1000},
            cleared=("accessType",),
            place=v.Place(id="site-9"),
            quantity=2,
        ),
    )
    app.handle(agent, cmd.ConfigureLine(order_id, "1", characteristics={"accessType": "copper"}))
    app.handle(agent, cmd.ConfigureLine(order_id, "2", depends_on=("1",)))
    app.handle(agent, cmd.RemoveLine(order_id, "3"))
    with pytest.raises(InvalidCommand):
        app.handle(agent, cmd.ConfigureLine(order_id, "1"))  # nothing to configure

    order = app.get_order(order_id)
    assert order.state is v.OrderState.DRAFT
    assert set(order.items) == {"1", "2"}
    line = order.items["1"]
    assert line.characteristics == {"bandwidthMbps": 1000, "accessType": "copper"}
    assert (line.place, line.quantity, line.state) == (v.Place(id="site-9"), 2, None)
    assert order.items["2"].depends_on == ("1",)

    order = app.handle(agent, cmd.Submit(order_id)).order
    assert order.state is v.OrderState.ACKNOWLEDGED
    assert order.submitted_by == agent.actor
    assert {i.state for i in app.get_order(order_id).items.values()} == {v.ItemState.ACKNOWLEDGED}
    assert topics(app, order_id) == [
        "OrderDrafted",
        "LineAdded",
        "LineAdded",
        "LineAdded",
        "LineConfigured",
        "LineConfigured",
        "LineConfigured",
        "LineRemoved",
        "OrderSubmitted",
    ]
    with pytest.raises(IllegalTransition):
        app.handle(agent, cmd.AddLine(order_id, samples.router_item("4")))


def test_submitting_an_invalid_draft_stores_nothing(app, actors):
    order_id = app.handle(actors.agent, cmd.DraftOrder(v.OrderHeader(external_id="empty"))).order.id
    with pytest.raises(ValidationFailed) as refused:
        app.handle(actors.agent, cmd.Submit(order_id))
    assert {p.code for p in refused.value.problems} == {"no_items"}
    assert topics(app, order_id) == ["OrderDrafted"]


def test_four_eyes_the_submitter_may_not_decide(app, actors, samples):
    manager = actors.manager
    order_id = app.handle(manager, cmd.DraftOrder(v.OrderHeader(external_id="own"))).order.id
    app.handle(manager, cmd.AddLine(order_id, samples.internet_item("1")))
    app.handle(manager, cmd.Submit(order_id))
    with pytest.raises(NotPermitted):
        app.handle(manager, cmd.Approve(order_id))
    assert (
        app.handle(actors.other_manager, cmd.Approve(order_id)).order.state
        is v.OrderState.IN_PROGRESS
    )


def test_roles_are_enforced(app, actors, received):
    with pytest.raises(NotPermitted):
        app.handle(actors.upstream, cmd.Approve(received))
    with pytest.raises(NotPermitted):
        app.handle(actors.manager, cmd.ChangeItemStates.one(received, "1", v.ItemState.IN_PROGRESS))
    assert app.get_order(received).version == 2


# ------------------------------------------------------------------- lifecycle
def test_happy_path_to_completed(app, actors, received):
    ful = actors.fulfilment
    order = app.handle(actors.manager, cmd.Approve(received, "ok")).order
    assert order.state is v.OrderState.IN_PROGRESS
    assert order.decided_by == actors.manager.actor

    app.handle(ful, cmd.ReachPointOfNoReturn(received, "equipment shipped"))
    with pytest.raises(IllegalTransition):
        app.handle(actors.upstream, cmd.RequestCancellation(received, reason="too late"))
    with pytest.raises(IllegalTransition):  # item 2 waits for item 1
        app.handle(ful, cmd.ChangeItemStates.one(received, "2", v.ItemState.IN_PROGRESS))
    app.handle(ful, cmd.ChangeItemStates.one(received, "1", v.ItemState.IN_PROGRESS))
    app.handle(ful, cmd.ChangeItemStates.one(received, "1", v.ItemState.COMPLETED))
    with pytest.raises(IllegalTransition):  # completed is final
        app.handle(ful, cmd.ChangeItemStates.one(received, "1", v.ItemState.FAILED))
    assert app.get_order(received).state is v.OrderState.IN_PROGRESS
    app.handle(ful, cmd.ChangeItemStates.one(received, "2", v.ItemState.IN_PROGRESS))
    order = app.handle(ful, cmd.ChangeItemStates.one(received, "2", v.ItemState.COMPLETED)).order

    assert order.state is v.OrderState.COMPLETED
    loaded = app.get_order(received)
    assert loaded.state is v.OrderState.COMPLETED
    assert loaded.point_of_no_return is True
    assert {i.state for i in loaded.items.values()} == {v.ItemState.COMPLETED}
    assert topics(app, received) == [
        "OrderDrafted",
        "OrderSubmitted",
        "OrderApproved",
        "PointOfNoReturnReached",
        "ItemStateChanged",
        "ItemStateChanged",
        "ItemStateChanged",
        "ItemStateChanged",
        "OrderCompleted",
    ]
    with pytest.raises(IllegalTransition):
        app.handle(ful, cmd.Hold(received, "no"))


def test_failed_and_partial_outcomes(app, actors, samples):
    ful = actors.fulfilment
    failed, _ = id_created(
        app.handle(
            actors.upstream, cmd.ReceiveOrder(samples.header("f"), (samples.internet_item(),))
        )
    )
    app.handle(actors.manager, cmd.Approve(failed))
    assert (
        app.handle(ful, cmd.ChangeItemStates.one(failed, "1", v.ItemState.FAILED)).order.state
        is v.OrderState.FAILED
    )

    partial, _ = id_created(
        app.handle(
            actors.upstream,
            cmd.ReceiveOrder(
                samples.header("p"), (samples.internet_item("1"), samples.router_item("2"))
            ),
        )
    )
    app.handle(actors.manager, cmd.Approve(partial))
    app.handle(ful, cmd.ChangeItemStates.one(partial, "1", v.ItemState.COMPLETED))
    app.handle(ful, cmd.ChangeItemStates.one(partial, "2", v.ItemState.FAILED))
    assert app.get_order(partial).state is v.OrderState.PARTIAL


def test_reject_with_reason(app, actors, received):
    with pytest.raises(InvalidCommand):
        app.handle(actors.manager, cmd.Reject(received, "   "))
    order = app.handle(actors.manager, cmd.Reject(received, "  no budget  ")).order
    assert order.state is v.OrderState.REJECTED

    loaded = app.get_order(received)
    assert loaded.state is v.OrderState.REJECTED
    assert loaded.rejection_reason == "no budget"
    assert loaded.decided_by == actors.manager.actor
    assert {i.state for i in loaded.items.values()} == {v.ItemState.REJECTED}
    with pytest.raises(IllegalTransition):
        app.handle(actors.manager, cmd.Approve(received))
    assert topics(app, received)[-1] == "OrderRejected"


def test_cancellation_request_deny_then_approve_and_cancel(app, actors, approved):
    request_id = app.handle(
        actors.upstream, cmd.RequestCancellation(approved, reason="moving office")
    ).request_id
    order = app.get_order(approved)
    assert order.state is v.OrderState.ASSESSING_CANCELLATION
    assert order.prior_state is v.OrderState.IN_PROGRESS
    assert order.cancellation_request_id == request_id
    assert order.cancellation_reason == "moving office"
    with pytest.raises(IllegalTransition):
        app.handle(
            actors.fulfilment, cmd.ChangeItemStates.one(approved, "1", v.ItemState.IN_PROGRESS)
        )

    with pytest.raises(InvalidCommand):
        app.handle(actors.manager, cmd.DenyCancellation(approved, ""))
    app.handle(actors.manager, cmd.DenyCancellation(approved, "work has started"))
    order = app.get_order(approved)
    assert order.state is v.OrderState.IN_PROGRESS
    assert (order.prior_state, order.cancellation_request_id, order.cancellation_reason) == (
        None,
        None,
        None,
    )

    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(approved, "1", v.ItemState.COMPLETED))
    second = app.handle(
        actors.upstream, cmd.RequestCancellation(approved, reason="really moving")
    ).request_id
    assert second != request_id
    app.handle(actors.manager, cmd.ApproveCancellation(approved, "fine"))
    assert app.get_order(approved).state is v.OrderState.PENDING_CANCELLATION
    with pytest.raises(IllegalTransition):
        app.handle(actors.fulfilment, cmd.Hold(approved, "no"))
    order = app.handle(actors.fulfilment, cmd.Cancel(approved)).order
    assert order.state is v.OrderState.CANCELLED

    loaded = app.get_order(approved)
    assert loaded.state is v.OrderState.CANCELLED
    assert loaded.items["1"].state is v.ItemState.COMPLETED  # final items stay as they were
    assert loaded.items["2"].state is v.ItemState.CANCELLED
    cancelled = app.history(approved)[-1]
    assert type(cancelled).__name__ == "OrderCancelled"
    assert (cancelled.reason, cancelled.request_id) == ("really moving", second)


def test_cancellation_of_an_acknowledged_order(app, actors, received):
    """No direct cancellation from review (issue 17): requested, decided by a manager, then
    carried out; every item is cancelled."""
    with pytest.raises(IllegalTransition):
        app.handle(actors.manager, cmd.Cancel(received, "duplicate"))
    app.handle(actors.upstream, cmd.RequestCancellation(received, reason="duplicate"))
    app.handle(actors.manager, cmd.ApproveCancellation(received))
    app.handle(actors.manager, cmd.Cancel(received))
    order = app.get_order(received)
    assert order.state is v.OrderState.CANCELLED
    assert {i.state for i in order.items.values()} == {v.ItemState.CANCELLED}


def test_direct_cancellation_is_fulfilments_exit_from_held(app, actors, approved):
    app.handle(actors.fulfilment, cmd.Hold(approved, "the site was demolished"))
    with pytest.raises(NotPermitted):  # a manager's direct cancel needs a second person
        app.handle(actors.manager, cmd.Cancel(approved, "cannot be built"))
    app.handle(actors.fulfilment, cmd.Cancel(approved, "cannot be built"))
    order = app.get_order(approved)
    assert order.state is v.OrderState.CANCELLED
    assert {i.state for i in order.items.values()} == {v.ItemState.CANCELLED}


def test_hold_and_resume(app, actors, approved):
    ful = actors.fulfilment
    with pytest.raises(InvalidCommand):
        app.handle(ful, cmd.Hold(approved, ""))
    app.handle(ful, cmd.Hold(approved, "site not ready"))
    order = app.get_order(approved)
    assert (order.state, order.waiting_reason) == (v.OrderState.HELD, "site not ready")
    with pytest.raises(IllegalTransition):
        app.handle(ful, cmd.ChangeItemStates.one(approved, "1", v.ItemState.IN_PROGRESS))
    app.handle(ful, cmd.Resume(approved, "site ready"))
    order = app.get_order(approved)
    assert (order.state, order.waiting_reason) == (v.OrderState.IN_PROGRESS, None)
    assert topics(app, approved)[-2:] == ["OrderHeld", "OrderResumed"]


def test_information_requested_and_provided(app, actors, approved):
    app.handle(actors.fulfilment, cmd.RequestInformation(approved, "which floor?"))
    order = app.get_order(approved)
    assert (order.state, order.waiting_reason) == (v.OrderState.PENDING, "which floor?")
    with pytest.raises(IllegalTransition):
        app.handle(actors.fulfilment, cmd.RequestInformation(approved, "and the room?"))
    app.handle(actors.upstream, cmd.ProvideInformation(approved, "third floor"))
    order = app.get_order(approved)
    assert (order.state, order.waiting_reason) == (v.OrderState.IN_PROGRESS, None)
    provided = app.history(approved)[-1]
    assert (type(provided).__name__, provided.information) == ("InformationProvided", "third floor")


def test_revisions(app, actors, samples, received):
    up = actors.upstream
    with pytest.raises(InvalidCommand):
        app.handle(up, cmd.Revise(received))
    faster = samples.internet_item("1").model_copy(
        update={"characteristics": {"bandwidthMbps": 1000, "accessType": "fibre"}}
    )
    app.handle(
        up,
        cmd.Revise(
            received,
            items=(faster, samples.router_item("3")),
            header=v.HeaderChange(priority="high"),
        ),
    )
    order = app.get_order(received)
    assert order.state is v.OrderState.ACKNOWLEDGED
    assert order.revision == 1
    assert order.header.priority == "high"
    assert order.header.description == "two services"  # unchanged fields stay
    assert order.items["1"].characteristics["bandwidthMbps"] == 1000
    assert order.items["3"].state is v.ItemState.ACKNOWLEDGED

    app.handle(up, cmd.Revise(received, removed_item_ids=("3",)))  # before approval: gone
    assert set(app.get_order(received).items) == {"1", "2"}
    with pytest.raises(ValidationFailed):  # item 2 depends on item 1
        app.handle(up, cmd.Revise(received, removed_item_ids=("1",)))

    app.handle(actors.manager, cmd.Approve(received))
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(received, "1", v.ItemState.COMPLETED))
    with pytest.raises(IllegalTransition):  # a final item cannot be revised
        app.handle(up, cmd.Revise(received, items=(faster,)))
    # After approval a revision is a proposal (issue 17), applied once a second person
    # approves it: a removed item stays on record, cancelled; it was the last open one.
    proposed = app.handle(up, cmd.Revise(received, removed_item_ids=("2",)))
    assert proposed.proposal_id is not None
    assert proposed.order.items["2"].state is v.ItemState.ACKNOWLEDGED
    order = app.handle(actors.other_manager, cmd.ApproveProposal(received)).order
    assert order.state is v.OrderState.COMPLETED
    loaded = app.get_order(received)
    assert loaded.revision == 3
    assert loaded.items["2"].state is v.ItemState.CANCELLED
    assert loaded.state is v.OrderState.COMPLETED
    assert topics(app, received)[-3:] == ["RevisionProposed", "ProposalApproved", "OrderCompleted"]


def test_notes(app, actors, received):
    with pytest.raises(InvalidCommand):
        app.handle(actors.upstream, cmd.AddNote(received, " "))
    app.handle(actors.upstream, cmd.AddNote(received, "customer calls back at 3pm"))
    app.handle(actors.manager, cmd.Reject(received, "no"))
    app.handle(actors.fulfilment, cmd.AddNote(received, "noted"))  # notes are allowed in any state
    with pytest.raises(NotPermitted):
        app.handle(
            v.CommandContext.for_actor("eve", v.Role.AUDITOR), cmd.AddNote(received, "read only")
        )
    notes = app.get_order(received).notes
    assert notes == (
        v.Note(text="customer calls back at 3pm", author="crm"),
        v.Note(text="noted", author="fulfil-1"),
    )


# ----------------------------------------------------------------------- reads
def test_get_order_at_a_version(app, actors, received):
    app.handle(actors.manager, cmd.Approve(received))
    app.handle(actors.fulfilment, cmd.Hold(received, "waiting for a crane"))
    app.handle(actors.fulfilment, cmd.Resume(received))
    app.handle(actors.fulfilment, cmd.AddNote(received, "crane arrived"))
    expected = {
        1: v.OrderState.DRAFT,
        2: v.OrderState.ACKNOWLEDGED,
        3: v.OrderState.IN_PROGRESS,
        4: v.OrderState.HELD,
        5: v.OrderState.IN_PROGRESS,
        6: v.OrderState.IN_PROGRESS,
    }
    for version, state in expected.items():
        order = app.get_order(received, version=version)
        assert (order.version, order.state) == (version, state)
    assert app.get_order(received, version=4).waiting_reason == "waiting for a crane"
    assert app.get_order(received, version=5).notes == ()
    assert len(app.get_order(received, version=6).notes) == 1
    assert app.get_order(received).version == 6


def test_order_not_found(app, actors):
    unknown = uuid4()
    with pytest.raises(OrderNotFound):
        app.get_order(unknown)
    with pytest.raises(OrderNotFound):
        app.history(unknown)
    with pytest.raises(OrderNotFound):
        app.find_by_external_id("never-seen")
    with pytest.raises(OrderNotFound):
        app.handle(actors.upstream, cmd.AddNote(unknown, "hello?"))
    assert not app.exists(unknown)
    assert app.recorder.select_events(unknown) == []


# ------------------------------------------------------------------ concurrency
def test_optimistic_concurrency_two_copies(app, actors, received, monkeypatch):
    """Two commands, each on its own copy of the same version: the later save loses."""
    copies = iter([app.get_order(received), app.get_order(received)])
    monkeypatch.setattr(app.repository, "get", lambda *a, **kw: next(copies))
    app.handle(actors.upstream, cmd.AddNote(received, "from the first copy"))
    with pytest.raises(ConcurrencyConflict):
        app.handle(actors.fulfilment, cmd.AddNote(received, "from the second copy"))
    monkeypatch.undo()
    assert app.get_order(received).notes == (v.Note(text="from the first copy", author="crm"),)
    assert topics(app, received) == ["OrderDrafted", "OrderSubmitted", "NoteAdded"]


def test_optimistic_concurrency_two_applications(
    app, settings, open_app, actors, received, monkeypatch
):
    """Two processes on the same store: the later writer of the same version loses."""
    other = open_app(settings)
    mine = app.get_order(received)  # read before the other process writes
    other.handle(actors.other_manager, cmd.Reject(received, "theirs"))
    monkeypatch.setattr(app.repository, "get", lambda *a, **kw: mine)
    with pytest.raises(ConcurrencyConflict):
        app.handle(actors.manager, cmd.Approve(received, "mine"))
    monkeypatch.undo()
    assert app.get_order(received).state is v.OrderState.REJECTED


def test_a_use_case_on_a_stale_order_conflicts(app, actors, received, monkeypatch):
    stale = app.get_order(received)
    app.handle(actors.upstream, cmd.AddNote(received, "meanwhile"))
    monkeypatch.setattr(app.repository, "get", lambda *a, **kw: stale)
    with pytest.raises(ConcurrencyConflict):
        app.handle(actors.manager, cmd.Approve(received))
    monkeypatch.undo()
    assert app.get_order(received).state is v.OrderState.ACKNOWLEDGED


# ------------------------------------------------------------------- hash chain
def drive_some_events(app, actors, order_id):
    app.handle(actors.manager, cmd.Approve(order_id))
    app.handle(actors.fulfilment, cmd.AddNote(order_id, "started"))
    app.handle(actors.fulfilment, cmd.Hold(order_id, "weather"))
    app.handle(actors.fulfilment, cmd.Resume(order_id))
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(order_id, "1", v.ItemState.COMPLETED))


def test_stored_events_form_a_verifiable_hash_chain(app, actors, received, chain_tools):
    drive_some_events(app, actors, received)
    rows = chain_tools.stored_rows(app, received)
    assert len(rows) == 7

    previous = chain.GENESIS
    for topic, order_id, version, state in rows:
        recomputed = chain.event_hash(topic, order_id, version, state)
        assert state["hash"] == recomputed
        assert state["prev_hash"] == previous
        previous = recomputed

    hashes = chain_tools.verify(app, received)
    assert app.get_order(received).head_hash == hashes[-1]
    assert [e.hash for e in app.history(received)] == hashes
    assert [e.prev_hash for e in app.history(received)] == [chain.GENESIS, *hashes[:-1]]
    assert len(set(hashes)) == len(hashes)

    # The chain carries on from the head after a reload.
    app.handle(actors.upstream, cmd.AddNote(received, "one more"))
    assert chain_tools.verify(app, received)[:-1] == hashes


def test_chains_of_different_orders_are_independent(app, actors, samples, chain_tools):
    a, _ = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header("a"), tuple(samples.items())))
    )
    b, _ = id_created(
        app.handle(actors.upstream, cmd.ReceiveOrder(samples.header("b"), tuple(samples.items())))
    )
    ha, hb = chain_tools.verify(app, a), chain_tools.verify(app, b)
    assert set(ha).isdisjoint(hb)  # the order id is part of every hash


@pytest.mark.parametrize(
    "tamper", ["reason", "actor", "add_field", "timestamp", "version", "topic", "relink"]
)
def test_editing_a_stored_event_is_detected(app, actors, received, chain_tools, tamper):
    drive_some_events(app, actors, received)
    rows = chain_tools.stored_rows(app, received)
    assert chain_tools.chain_break(rows) is None

    forged = copy.deepcopy(rows)
    index = next(i for i, r in enumerate(forged) if r[0] == T + "OrderHeld")
    topic, order_id, version, state = forged[index]
    if tamper == "reason":
        state["reason"] = "no reason at all"
    elif tamper == "actor":
        state["actor"]["id"] = "mallory"
    elif tamper == "add_field":
        state["approved_by"] = "mallory"
    elif tamper == "timestamp":
        state["timestamp"] = state["timestamp"].replace("20", "19", 1)
    elif tamper == "version":
        forged[index] = (topic, order_id, version + 100, state)
    elif tamper == "topic":
        forged[index] = (T + "OrderResumed", order_id, version, state)
    elif tamper == "relink":
        # A forger who also rewrites this event's own hash still breaks the next link.
        state["reason"] = "no reason at all"
        state["hash"] = chain.event_hash(topic, order_id, version, state)

    problem = chain_tools.chain_break(forged)
    assert problem is not None
    broken_at = version + 1 if tamper == "relink" else version
    expected = f"v{broken_at}:" if tamper != "version" else f"v{version + 100}:"
    assert problem.startswith(expected), problem
    # The store itself is untouched and still verifies.
    assert chain_tools.chain_break(chain_tools.stored_rows(app, received)) is None


# ------------------------------------------------------------------- round trip
def test_an_order_reloads_exactly_as_it_was_built(app, actors, samples, chain_tools):
    """Whatever goes into events survives the store: dates, parties, unicode, numbers."""
    header = v.OrderHeader(
        external_id="rich-1",
        category="enterprise",
        description="Zugang über Hof, 3. OG 🚪",
        priority="2",
        requested_start_date=date(2031, 2, 3),
        requested_completion_date=datetime(2031, 3, 4, 17, 30, tzinfo=timezone(timedelta(hours=2))),
        notification_contact="noc@example.com",
        related_parties=(
            v.Party(id="c-1", name="ACME GmbH"),
            v.Party(id="p-9", role="partner", referred_type="Organization"),
        ),
        order_relationships=(v.OrderRelationship(id="o-0", relationship_type="follows"),),
    )
    voice = build_item(
        "v",
        "sip-trunk",
        characteristics={
            "channels": 30,
            "emergencyAddressValidated": True,
            "portingDateTime": "2031-02-03T08:00:00+01:00",
        },
        place=v.Place(id="hq", name="Zentrale", role="installation"),
    )
    # the service it changes, in the inventory (issue 20: an unknown one is refused)
    record = v.ServiceRecord(id="svc-42", customer=v.Party(id="c-1", role="customer"))
    app.handle(actors.operator, cmd.ImportService(record))
    modify = v.OrderItem(
        id="m",
        action=v.ItemAction.MODIFY,
        service_id="svc-42",
        service_name="old line",
        characteristics={"ratio": 0.75},
    )
    order_id, _ = id_created(app.handle(actors.upstream, cmd.ReceiveOrder(header, (voice, modify))))
    app.handle(actors.manager, cmd.Approve(order_id))
    in_memory = app.handle(actors.fulfilment, cmd.AddNote(order_id, "ünïcödé ✓")).order

    loaded = app.get_order(order_id)
    assert vars(loaded) == vars(in_memory)
    assert loaded.header == header
    assert isinstance(loaded.header.requested_start_date, date)
    assert loaded.header.requested_completion_date == header.requested_completion_date
    assert loaded.items["m"].characteristics == {"ratio": 0.75}
    chain_tools.verify(app, order_id)


def test_receive_racing_another_door_reports_not_created(app, actors, samples, monkeypatch):
    """Both doors saw no order; the loser's insert fails and it reports created=False."""
    order_id, created = id_created(
        app.handle(
            actors.upstream, cmd.ReceiveOrder(samples.header("race-1"), tuple(samples.items()))
        )
    )
    assert created
    monkeypatch.setattr(app, "exists", lambda _id: False)  # it looked before the other wrote
    again_id, again = id_created(
        app.handle(
            actors.upstream, cmd.ReceiveOrder(samples.header("race-1"), tuple(samples.items()))
        )
    )
    assert (again_id, again) == (order_id, False)
    assert len(app.recorder.select_events(order_id)) == 2

"""Every use case once through the one door, `ServiceOrders.handle`, on the library's
in-memory recorders (no database): events stored, state, version, refusals; the unit of
work (one save for many commands over many orders, a failed command undone); the answer
table every door reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from builders import (
    MemorySealer,
    agent,
    customer,
    fulfilment,
    header,
    item,
    manager,
    memory_app,
    operator,
    receive,
    router,
    topics,
    upstream,
)
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import _HANDLERS, Outcome, ServiceOrders
from serviceorders.domain.commands import COMMANDS
from serviceorders.domain.errors import (
    ANSWERS,
    ConcurrencyConflict,
    DomainError,
    IllegalTransition,
    InvalidCommand,
    NotPermitted,
    OrderNotFound,
    ResendConflict,
    StaleVersion,
    UnknownItem,
    ValidationFailed,
    WriteTimeout,
    answer_for,
)
from serviceorders.domain.order import order_id_for, order_id_for_request
from serviceorders.domain.values import (
    HeaderChange,
    ItemState,
    Note,
    OrderState,
    Place,
    SpecRef,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def app() -> Iterator[ServiceOrders]:
    application = memory_app()
    yield application
    application.close()


def received(app: ServiceOrders, external_id: str = "ext-1") -> UUID:
    outcome = app.handle(upstream(), receive(external_id))
    assert outcome.created
    return outcome.order_id


def in_progress(app: ServiceOrders, external_id: str = "ext-1") -> UUID:
    order_id = received(app, external_id)
    app.handle(manager(), cmd.Approve(order_id))
    return order_id


def stored(app: ServiceOrders) -> int:
    """How many events the store holds (all orders)."""
    return app.recorder.max_notification_id() or 0  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ creation
def test_receive_order_creates_and_submits_it(app: ServiceOrders) -> None:
    outcome = app.handle(upstream(), receive("crm-1"))

    assert outcome.created is True and outcome.request_id is None
    assert outcome.order_id == order_id_for("crm-1")
    assert outcome.order.state is OrderState.ACKNOWLEDGED and outcome.order.version == 2
    assert topics(app, outcome.order_id) == ["OrderDrafted", "OrderSubmitted"]
    assert app.get_order(outcome.order_id).submitted_by == upstream().actor


def test_receive_order_again_changes_nothing(app: ServiceOrders) -> None:
    first = app.handle(upstream(), receive("crm-1"))
    again = app.handle(upstream(), receive("crm-1"))  # the same content, same id

    assert (again.order_id, again.created) == (first.order_id, False)
    assert again.order.version == 2 and set(again.order.items) == {"1", "2"}
    assert stored(app) == 2
    with pytest.raises(ResendConflict):  # other content, same id (tests/unit/test_resend.py)
        app.handle(upstream(), receive("crm-1", [item("9")]))
    assert stored(app) == 2


def test_receive_order_with_an_idempotency_id_and_without_any(app: ServiceOrders) -> None:
    key_id = order_id_for_request("alice", "key-1")
    command = cmd.ReceiveOrder(header(None), (item(),), order_id=key_id)
    assert app.handle(agent(), command).created
    assert app.handle(agent(), command).created is False

    random = [app.handle(agent(), cmd.ReceiveOrder(header(None), (item(),))) for _ in range(2)]
    assert all(o.created for o in random) and random[0].order_id != random[1].order_id


def test_receive_order_refused_stores_nothing(app: ServiceOrders) -> None:
    bad = item(specification=SpecRef(id="no-such-spec"))
    with pytest.raises(ValidationFailed) as refused:
        app.handle(upstream(), receive("crm-1", [bad]))

    assert refused.value.order_id == order_id_for("crm-1")
    assert stored(app) == 0


def test_receive_order_keeps_its_notes(app: ServiceOrders) -> None:
    note = Note(text="call first", author="crm")
    outcome = app.handle(upstream(), cmd.ReceiveOrder(header(), (item(),), [note]))
    assert app.get_order(outcome.order_id).notes == (note,)


def test_a_new_order_has_no_version_to_expect(app: ServiceOrders) -> None:
    with pytest.raises(InvalidCommand):
        app.handle(upstream(), receive(), expected_version=0)
    with pytest.raises(InvalidCommand):
        app.handle(agent(), cmd.DraftOrder(header()), expected_version=0)
    assert stored(app) == 0


def test_draft_order_then_capture_and_submit(app: ServiceOrders) -> None:
    draft = app.handle(agent(), cmd.DraftOrder(header("draft-1")))
    assert draft.created and draft.order.state is OrderState.DRAFT and draft.order.version == 1
    order_id = draft.order_id

    added = app.handle(agent(), cmd.AddLine(order_id, item("1")))
    assert set(added.order.items) == {"1"} and added.order.items["1"].state is None
    app.handle(agent(), cmd.AddLine(order_id, router("2")))
    configured = app.handle(
        agent(),
        cmd.ConfigureLine(order_id, "1", {"bandwidthMbps": 500}, quantity=2, depends_on=["2"]),
    )
    line = configured.order.items["1"]
    assert (line.characteristics["bandwidthMbps"], line.quantity) == (500, 2)
    assert line.depends_on == ("2",)
    removed = app.handle(agent(), cmd.RemoveLine(order_id, "2"))
    assert set(removed.order.items) == {"1"}
    app.handle(agent(), cmd.ConfigureLine(order_id, "1", depends_on=()))
    submitted = app.handle(agent(), cmd.Submit(order_id))

    assert submitted.order.state is OrderState.ACKNOWLEDGED
    assert topics(app, order_id) == [
        "OrderDrafted",
        "LineAdded",
        "LineAdded",
        "LineConfigured",
        "LineRemoved",
        "LineConfigured",
        "OrderSubmitted",
    ]
    assert app.get_order(order_id).version == submitted.order.version == 7


def test_a_draft_under_a_taken_external_id_is_a_conflict(app: ServiceOrders) -> None:
    received(app, "taken")
    with pytest.raises(ConcurrencyConflict):
        app.handle(agent(), cmd.DraftOrder(header("taken")))
    assert topics(app, order_id_for("taken")) == ["OrderDrafted", "OrderSubmitted"]


def test_submit_with_a_structural_problem_is_refused(app: ServiceOrders) -> None:
    order_id = app.handle(agent(), cmd.DraftOrder(header(None))).order_id
    with pytest.raises(ValidationFailed):
        app.handle(agent(), cmd.Submit(order_id))  # no items
    assert app.get_order(order_id).state is OrderState.DRAFT


# -------------------------------------------------------------------------- review
def test_approve_and_reject(app: ServiceOrders) -> None:
    approved = app.handle(manager(), cmd.Approve(received(app, "a"), "fine"))
    assert approved.order.state is OrderState.IN_PROGRESS
    assert approved.order.decided_by == manager().actor

    rejected = app.handle(manager(), cmd.Reject(received(app, "b"), "no budget"))
    assert rejected.order.state is OrderState.REJECTED
    assert rejected.order.rejection_reason == "no budget"


def test_four_eyes_comes_from_the_application_setting() -> None:
    boss = manager("boss")
    strict, lenient = memory_app(), memory_app(four_eyes=False)
    try:
        for app in (strict, lenient):
            app.handle(boss, receive("own-1"))
            app.handle(boss, receive("own-2"))
        with pytest.raises(NotPermitted, match="four-eyes"):
            strict.handle(boss, cmd.Approve(order_id_for("own-1")))
        with pytest.raises(NotPermitted, match="four-eyes"):
            strict.handle(boss, cmd.Reject(order_id_for("own-2"), "mine"))
        assert strict.get_order(order_id_for("own-1")).state is OrderState.ACKNOWLEDGED

        assert lenient.handle(boss, cmd.Approve(order_id_for("own-1"))).order.state is (
            OrderState.IN_PROGRESS
        )
        assert lenient.handle(boss, cmd.Reject(order_id_for("own-2"), "mine")).order.state is (
            OrderState.REJECTED
        )
    finally:
        strict.close()
        lenient.close()


def test_a_role_that_may_not_act_is_refused(app: ServiceOrders) -> None:
    with pytest.raises(NotPermitted):
        app.handle(fulfilment(), cmd.Approve(received(app)))


# ---------------------------------------------------------------------- fulfilment
def test_hold_resume_request_and_provide_information(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    held = app.handle(fulfilment(), cmd.Hold(order_id, "no access to the site"))
    assert (held.order.state, held.order.waiting_reason) == (
        OrderState.HELD,
        "no access to the site",
    )
    assert app.handle(fulfilment(), cmd.Resume(order_id)).order.state is OrderState.IN_PROGRESS
    asked = app.handle(fulfilment(), cmd.RequestInformation(order_id, "the rack number"))
    assert asked.order.state is OrderState.PENDING
    answered = app.handle(upstream(), cmd.ProvideInformation(order_id, "rack 7"))
    assert answered.order.state is OrderState.IN_PROGRESS
    assert topics(app, order_id)[-4:] == [
        "OrderHeld",
        "OrderResumed",
        "InformationRequested",
        "InformationProvided",
    ]


def test_change_item_states_settles_the_order(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    command = cmd.ChangeItemStates(
        order_id,
        (
            cmd.ItemStateChange("1", ItemState.COMPLETED),
            cmd.ItemStateChange("2", ItemState.COMPLETED, "installed"),
        ),
    )
    outcome = app.handle(fulfilment(), command)

    assert outcome.order.state is OrderState.COMPLETED
    assert topics(app, order_id)[-3:] == ["ItemStateChanged", "ItemStateChanged", "OrderCompleted"]


def test_change_item_states_is_all_or_nothing(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    command = cmd.ChangeItemStates(
        order_id, [("1", ItemState.COMPLETED, None), ("2", ItemState.ACKNOWLEDGED, None)]
    )
    with pytest.raises(IllegalTransition):
        app.handle(fulfilment(), command)
    assert app.get_order(order_id).items["1"].state is ItemState.ACKNOWLEDGED
    assert app.get_order(order_id).version == 3


def test_change_item_states_skip_unchanged(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    app.handle(fulfilment(), cmd.ChangeItemStates.one(order_id, "1", ItemState.COMPLETED))
    again = [("1", ItemState.COMPLETED, None), ("2", ItemState.IN_PROGRESS, None)]

    with pytest.raises(IllegalTransition):  # completed -> completed, without the flag
        app.handle(fulfilment(), cmd.ChangeItemStates(order_id, again))
    outcome = app.handle(fulfilment(), cmd.ChangeItemStates(order_id, again, skip_unchanged=True))
    assert outcome.order.items["2"].state is ItemState.IN_PROGRESS
    assert outcome.order.version == 5  # only item 2's change

    with pytest.raises(UnknownItem):  # an item the order lacks is still refused
        app.handle(
            fulfilment(),
            cmd.ChangeItemStates(order_id, [("9", ItemState.COMPLETED, None)], skip_unchanged=True),
        )


def test_point_of_no_return_blocks_revision(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    outcome = app.handle(fulfilment(), cmd.ReachPointOfNoReturn(order_id, "kit shipped"))
    assert outcome.order.point_of_no_return is True
    with pytest.raises(IllegalTransition):
        app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(priority="1")))


# ------------------------------------------------------------------------ revision
def test_revise_items_removals_and_header(app: ServiceOrders) -> None:
    order_id = received(app)
    outcome = app.handle(
        upstream(),
        cmd.Revise(
            order_id,
            items=[item("3", characteristics={"bandwidthMbps": 50, "accessType": "copper"})],
            removed_item_ids=["2"],
            header=HeaderChange(priority="1"),
        ),
    )
    assert set(outcome.order.items) == {"1", "3"}
    assert outcome.order.header.priority == "1" and outcome.order.revision == 1
    assert topics(app, order_id)[-1] == "OrderRevised"


def test_revise_with_notes_only_adds_notes_and_nothing_is_refused(app: ServiceOrders) -> None:
    order_id = received(app)
    outcome = app.handle(upstream(), cmd.Revise(order_id, notes=["first", "second"]))
    assert [n.text for n in outcome.order.notes] == ["first", "second"]
    assert topics(app, order_id)[-2:] == ["NoteAdded", "NoteAdded"]

    with pytest.raises(InvalidCommand, match="changes nothing"):
        app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange()))


def test_revise_and_notes_are_one_transaction(app: ServiceOrders) -> None:
    order_id = received(app)
    before = stored(app)
    with pytest.raises(InvalidCommand):  # the note is refused (blank): no revision either
        app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(priority="1"), notes=[" "]))
    assert stored(app) == before


# -------------------------------------------------------------------- cancellation
def test_request_and_approve_cancellation_then_cancel(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    requested = app.handle(upstream(), cmd.RequestCancellation(order_id, "moved out", when))
    assert requested.request_id is not None
    assert requested.order.state is OrderState.ASSESSING_CANCELLATION
    assert requested.order.cancellation_request_id == requested.request_id

    approved = app.handle(manager("carol"), cmd.ApproveCancellation(order_id, "ok"))
    assert approved.order.state is OrderState.PENDING_CANCELLATION
    cancelled = app.handle(fulfilment(), cmd.Cancel(order_id))
    assert cancelled.order.state is OrderState.CANCELLED
    assert cancelled.order.cancellation_reason == "moved out"


def test_request_cancellation_keeps_a_given_request_id(app: ServiceOrders) -> None:
    order_id = received(app)
    outcome = app.handle(upstream(), cmd.RequestCancellation(order_id, request_id="req-7"))
    assert outcome.request_id == "req-7" == app.get_order(order_id).cancellation_request_id


def test_deny_cancellation_restores_the_prior_state(app: ServiceOrders) -> None:
    order_id = in_progress(app)
    app.handle(upstream(), cmd.RequestCancellation(order_id))
    denied = app.handle(manager("carol"), cmd.DenyCancellation(order_id, "already installed"))
    assert denied.order.state is OrderState.IN_PROGRESS


def test_cancel_directly(app: ServiceOrders) -> None:
    """A direct cancellation is fulfilment's exit from held (issue 17: was a manager's
    from acknowledged, now refused there: a cancellation is requested and decided)."""
    order_id = received(app)
    with pytest.raises(IllegalTransition):
        app.handle(manager(), cmd.Cancel(order_id, "duplicate"))
    app.handle(manager("carol"), cmd.Approve(order_id))
    app.handle(fulfilment(), cmd.Hold(order_id, "no access to the site"))
    with pytest.raises(NotPermitted):
        app.handle(manager(), cmd.Cancel(order_id, "duplicate"))
    outcome = app.handle(fulfilment(), cmd.Cancel(order_id, "issue cannot be solved"))
    assert outcome.order.state is OrderState.CANCELLED


# ---------------------------------------------------------------- notes, deletion
def test_add_note_in_any_state(app: ServiceOrders) -> None:
    order_id = received(app)
    outcome = app.handle(agent(), cmd.AddNote(order_id, "  customer called  "))
    # Kept as sent since issue 19 (33c202e: a note's text is what its author wrote, as at
    # every TMF641 door); only an all-blank text is refused.
    assert outcome.order.notes[-1] == Note(text="  customer called  ", author="alice")


def test_delete_a_draft_and_a_final_order(app: ServiceOrders) -> None:
    draft_id = app.handle(agent(), cmd.DraftOrder(header(None))).order_id
    assert app.handle(agent(), cmd.Delete(draft_id, "discarded")).order.deleted is True

    order_id = received(app)
    app.handle(manager(), cmd.Reject(order_id, "no"))
    with pytest.raises(NotPermitted, match="drafts only"):
        app.handle(agent(), cmd.Delete(order_id))
    assert app.handle(operator(), cmd.Delete(order_id)).order.deleted is True


# ------------------------------------------------------------------ targets, errors
def test_an_order_ref_finds_the_order_by_our_id_else_its_external_id(app: ServiceOrders) -> None:
    order_id = received(app, "crm-9")
    by_external = cmd.OrderRef(None, "crm-9")
    by_both = cmd.OrderRef(uuid4(), "crm-9")  # our id unknown: the external id decides

    assert app.handle(upstream(), cmd.AddNote(by_external, "one")).order_id == order_id
    assert app.handle(upstream(), cmd.AddNote(by_both, "two")).order_id == order_id
    assert (
        app.handle(upstream(), cmd.AddNote(cmd.OrderRef(order_id, None), "three")).order.version
        == 5
    )


def test_an_unknown_order_is_named_as_the_door_gave_it(app: ServiceOrders) -> None:
    unknown = uuid4()
    with pytest.raises(OrderNotFound) as by_id:
        app.handle(agent(), cmd.AddNote(unknown, "x"))
    assert str(by_id.value) == f"no order {unknown}"

    with pytest.raises(OrderNotFound) as by_ref:
        app.handle(upstream(), cmd.AddNote(cmd.OrderRef(unknown, "crm-0"), "x"))
    assert str(by_ref.value) == f"no order with id {unknown} or externalId 'crm-0'"
    assert answer_for(by_ref.value).category == "unknown_order"


def test_not_a_command(app: ServiceOrders) -> None:
    with pytest.raises(TypeError, match="not a command"):
        app.handle(agent(), "approve")  # type: ignore[arg-type]


def test_every_command_has_a_handler() -> None:
    handlers = set(_HANDLERS) | {cmd.ReceiveOrder, cmd.DraftOrder, cmd.Resubmit, cmd.ImportService}
    assert handlers == set(COMMANDS)


# ------------------------------------------------------------------ versions, conflicts
def test_expected_version_matches(app: ServiceOrders) -> None:
    order_id = received(app)
    assert app.handle(manager(), cmd.Approve(order_id), expected_version=2).order.version == 3
    assert (
        app.handle(upstream(), cmd.AddNote(order_id, "x"), expected_version=[1, 3]).order.version
        == 4
    )


def test_a_stale_expected_version_is_refused_and_nothing_is_written(app: ServiceOrders) -> None:
    order_id = received(app)
    app.handle(upstream(), cmd.AddNote(order_id, "meanwhile"))  # now at version 3

    with pytest.raises(StaleVersion) as stale:
        app.handle(manager(), cmd.Approve(order_id), expected_version=2)
    assert isinstance(stale.value, ConcurrencyConflict)
    assert (stale.value.expected, stale.value.actual) == (2, 3)
    assert stale.value.code == "precondition_failed"
    with pytest.raises(StaleVersion):
        app.handle(manager(), cmd.Approve(order_id), expected_version={1, 2})
    assert app.get_order(order_id).state is OrderState.ACKNOWLEDGED
    assert app.get_order(order_id).version == 3


def test_a_write_between_load_and_save_is_a_conflict(
    app: ServiceOrders, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = received(app)
    real_save = app.save

    def save(*objs: Any, **kw: Any) -> Any:  # someone else writes the order first
        other = app.get_order(order_id)
        other.add_note(operator(), "written meanwhile")
        monkeypatch.setattr(app, "save", real_save)
        real_save(other)
        return real_save(*objs, **kw)

    monkeypatch.setattr(app, "save", save)
    with pytest.raises(ConcurrencyConflict, match="reload the order and try again"):
        app.handle(manager(), cmd.Approve(order_id))
    assert topics(app, order_id)[-1] == "NoteAdded"
    assert app.get_order(order_id).state is OrderState.ACKNOWLEDGED


def test_receive_order_created_concurrently_is_not_created_again(
    app: ServiceOrders, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = app.save

    def save(*objs: Any, **kw: Any) -> Any:  # another door creates the same order first
        monkeypatch.setattr(app, "save", real_save)
        app.handle(agent("other"), receive(external, [item("7")]))
        return real_save(*objs, **kw)

    external = "crm-1"
    monkeypatch.setattr(app, "save", save)
    outcome = app.handle(upstream(), receive(external, [item("7")]))

    assert outcome.created is False and set(outcome.order.items) == {"7"}
    assert outcome.order.submitted_by == agent("other").actor
    # The other door's order has other content: refused, naming what differs.
    external = "crm-2"
    monkeypatch.setattr(app, "save", save)
    with pytest.raises(ResendConflict) as refused:
        app.handle(upstream(), receive(external))
    assert refused.value.paths == ("items[1]", "items[2]", "items[7]")


def test_a_random_id_that_is_taken_is_a_conflict(
    app: ServiceOrders, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = received(app, "crm-1")
    monkeypatch.setattr("serviceorders.domain.commands.order_id_for", lambda _: taken)
    with pytest.raises(ConcurrencyConflict, match="the order id is taken"):
        app.handle(agent(), cmd.ReceiveOrder(header(None), (item(),)))


# -------------------------------------------------------------------- unit of work
def test_a_unit_of_work_saves_many_commands_over_many_orders_once(
    app: ServiceOrders, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = received(app, "a"), received(app, "b")
    calls: list[int] = []
    real_insert = app.recorder.insert_events

    def insert_events(stored_events: Any, **kw: Any) -> Any:
        calls.append(len(stored_events))
        return real_insert(stored_events, **kw)

    monkeypatch.setattr(app.recorder, "insert_events", insert_events)
    uow = app.unit_of_work()
    uow.apply(manager(), cmd.Approve(first))
    uow.apply(fulfilment(), cmd.Hold(first, "waiting for the landlord"))
    uow.apply(upstream(), cmd.RequestCancellation(second))
    created = uow.apply(upstream(), receive("c"))
    uow.apply(upstream(), cmd.AddNote(cmd.OrderRef(None, "c"), "same batch"))
    assert stored(app) == 4  # nothing written before the commit
    assert {o.id for o in uow.pending()} == {first, second, created.order_id}

    recordings = uow.commit()

    assert calls == [6]  # one insert: one transaction
    ids = [r.notification.id for r in recordings]
    assert ids == list(range(5, 11))
    assert app.get_order(first).state is OrderState.HELD
    assert app.get_order(second).state is OrderState.ASSESSING_CANCELLATION
    assert topics(app, created.order_id) == ["OrderDrafted", "OrderSubmitted", "NoteAdded"]


def test_a_unit_of_work_passes_its_rows_on_to_the_one_save(
    app: ServiceOrders, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    real_save = app.save

    def save(*objs: Any, **kw: Any) -> Any:
        seen.append(kw)
        return real_save(*objs)

    monkeypatch.setattr(app, "save", save)
    uow = app.unit_of_work()
    uow.apply(upstream(), receive("a"))
    uow.commit(intake="rows")
    assert seen == [{"intake": "rows"}]


def test_a_failed_command_leaves_the_order_as_it_was_in_the_unit_of_work(
    app: ServiceOrders,
) -> None:
    order_id = in_progress(app)
    uow = app.unit_of_work()
    uow.apply(upstream(), cmd.AddNote(order_id, "kept"))
    half = cmd.ChangeItemStates(
        order_id, [("1", ItemState.COMPLETED, None), ("2", ItemState.ACKNOWLEDGED, None)]
    )
    with pytest.raises(IllegalTransition):
        uow.apply(fulfilment(), half)  # item 1's change happened in memory, then undone

    order = uow.resolve(order_id)
    assert order.items["1"].state is ItemState.ACKNOWLEDGED
    assert [type(e).__name__ for e in order.pending_events] == ["NoteAdded"]
    assert order.version == 4
    after = uow.apply(fulfilment(), cmd.ChangeItemStates.one(order_id, "1", ItemState.COMPLETED))
    assert after.order.version == 5
    uow.commit()
    assert topics(app, order_id)[-2:] == ["NoteAdded", "ItemStateChanged"]


def test_a_failed_command_on_an_order_created_in_the_unit_of_work(app: ServiceOrders) -> None:
    uow = app.unit_of_work()
    order_id = uow.apply(upstream(), receive("new")).order_id
    with pytest.raises(InvalidCommand):
        uow.apply(upstream(), cmd.Revise(order_id, header=HeaderChange(priority="1"), notes=[" "]))
    order = uow.resolve(order_id)
    assert order.header.priority is None and order.revision == 0
    assert [type(e).__name__ for e in order.pending_events] == ["OrderDrafted", "OrderSubmitted"]
    uow.commit()
    assert topics(app, order_id) == ["OrderDrafted", "OrderSubmitted"]


def test_a_unit_of_work_with_known_ids_reads_only_those(
    app: ServiceOrders, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = received(app, "known")
    reads: list[UUID] = []
    real_get = app.repository.get

    def get(order_id: UUID, **kw: Any) -> Any:
        reads.append(order_id)
        return real_get(order_id, **kw)

    monkeypatch.setattr(app.repository, "get", get)
    uow = app.unit_of_work(existing={known})
    again = uow.apply(upstream(), receive("known"))
    fresh = uow.apply(upstream(), receive("fresh"))
    uow.apply(upstream(), cmd.AddNote(known, "x"))
    with pytest.raises(OrderNotFound):
        uow.apply(upstream(), cmd.AddNote(uuid4(), "x"))  # not known: no read, not found

    assert (again.created, fresh.created) == (False, True)
    assert reads == [known]  # once, for the whole unit of work


def test_receive_twice_in_one_unit_of_work(app: ServiceOrders) -> None:
    uow = app.unit_of_work(existing=set())
    first = uow.apply(upstream(), receive("dup"))
    second = uow.apply(upstream(), receive("dup"))
    assert (first.created, second.created) == (True, False)
    assert second.order is first.order
    with pytest.raises(ConcurrencyConflict):
        uow.apply(agent(), cmd.DraftOrder(header("dup")))


# ------------------------------------------------------------------- personal data
@pytest.fixture
def sealed() -> Iterator[tuple[ServiceOrders, MemorySealer]]:
    sealer = MemorySealer()
    application = memory_app(sealer=sealer)
    yield application, sealer
    application.close()


def _stored_text(app: ServiceOrders, order_id: UUID) -> str:
    return b"".join(s.state for s in app.recorder.select_events(order_id)).decode()  # type: ignore[attr-defined]


def test_personal_data_is_sealed_by_handle(sealed: tuple[ServiceOrders, MemorySealer]) -> None:
    app, sealer = sealed
    named = item(place=Place(id="site-1", name="Acme HQ"))
    command = receive("p-1", [named], related_parties=(customer(name="Ann Example"),))
    outcome = app.handle(upstream(), command)
    order_id = outcome.order_id

    assert outcome.order.header.customer.name == "Ann Example"  # revealed for the door
    assert outcome.order.items["1"].place == Place(id="site-1", name="Acme HQ")
    text = _stored_text(app, order_id)
    assert "Ann Example" not in text and "Acme HQ" not in text
    assert set(sealer.scopes) == {"CUST-1"}

    app.handle(
        upstream(),
        cmd.Revise(
            order_id,
            items=[item("2", place=Place(id="s2", name="Branch office"))],
            header=HeaderChange(notification_contact="ann@example.org"),
        ),
    )
    draft_id = app.handle(
        agent(), cmd.DraftOrder(header(None, notification_contact="d@x"))
    ).order_id
    app.handle(agent(), cmd.AddLine(draft_id, item("1", place=Place(id="s", name="Back yard"))))
    configured = app.handle(
        agent(), cmd.ConfigureLine(draft_id, "1", place=Place(id="s", name="Front yard"))
    )
    assert configured.order.items["1"].place.name == "Front yard"
    for secret in ("Branch office", "ann@example.org", "Back yard", "Front yard", "d@x"):
        assert secret not in _stored_text(app, order_id) + _stored_text(app, draft_id)
    assert app.get_order(order_id).header.notification_contact == "ann@example.org"


# ------------------------------------------------------------------ the answer table
@pytest.mark.parametrize(
    ("error", "http", "category", "console", "title"),
    [
        (ValidationFailed([]), 400, "refused", 400, "Refused"),
        (InvalidCommand("x"), 400, "invalid_command", 400, "Refused"),
        (NotPermitted(None, "a", "agent", "approve"), 403, "not_permitted", 403, "Not permitted"),
        (OrderNotFound(uuid4()), 404, "unknown_order", 404, "Not found"),
        (UnknownItem(uuid4(), "9"), 404, "invalid_command", 404, "Not found"),
        (IllegalTransition(uuid4(), "draft", "approve"), 409, "illegal_transition", 409, None),
        (ConcurrencyConflict(uuid4()), 409, "invalid_command", 400, "Refused"),
        (StaleVersion(uuid4(), 1, 2), 412, "invalid_command", 409, None),
        (DomainError("x"), 400, "invalid_command", 400, "Refused"),
    ],
)
def test_one_answer_per_error_as_the_doors_answer_today(
    error: DomainError, http: int, category: str, console: int, title: str | None
) -> None:
    answer = answer_for(error)
    assert (answer.code, answer.http_status, answer.category) == (error.code, http, category)
    assert answer.console_status == console and answer.cli_exit == 1
    if title is not None:
        assert answer.console_title == title
    assert answer.message(error) == str(error)


def test_answers_name_the_class_or_the_fixed_reason() -> None:
    assert answer_for(ValidationFailed([])).http_reason == "ValidationFailed"
    assert answer_for(StaleVersion(uuid4(), 1, 2)).http_reason == "Precondition Failed"
    timeout = answer_for(WriteTimeout("slow"))
    assert (timeout.http_status, timeout.category, timeout.cli_exit) == (503, None, 3)


def test_a_subclass_outside_the_domain_is_answered_as_its_base() -> None:
    class HistoryQueryError(InvalidCommand):
        code = "invalid_history_query"

    class ErasedScope(InvalidCommand):
        pass

    own = answer_for(HistoryQueryError("bad query"))
    assert (own.code, own.http_status, own.http_reason) == (
        "invalid_history_query",
        400,
        "HistoryQueryError",
    )
    inherited = answer_for(ErasedScope("erased"))
    assert (inherited.code, inherited.http_reason, inherited.category) == (
        "invalid_command",
        "ErasedScope",
        "invalid_command",
    )
    assert set(ANSWERS) >= {"conflict", "precondition_failed", "write_timeout", "domain_error"}


# ---------------------------------------------------------------------- commands
def test_commands_are_immutable_values() -> None:
    command = cmd.Revise(uuid4(), items=[item()], removed_item_ids=["2"], notes=["n"])
    assert isinstance(command.items, tuple) and command.removed_item_ids == ("2",)
    with pytest.raises(AttributeError):
        command.notes = ()  # type: ignore[misc]
    states = cmd.ChangeItemStates(uuid4(), [("1", ItemState.COMPLETED, None)])
    assert states.changes == (cmd.ItemStateChange("1", ItemState.COMPLETED, None),)
    assert cmd.OrderRef(None, None).describe() == "no id" and cmd.OrderRef().candidates() == []


def test_outcome_of_handle_is_saved_and_revealed(app: ServiceOrders) -> None:
    outcome = app.handle(upstream(), receive())
    assert isinstance(outcome, Outcome) and not outcome.order.pending_events

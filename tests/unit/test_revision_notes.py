"""A revision's notes (the TMF641 PATCH's and the Kafka revision's `note`): each text the
order does not hold yet is added once; a note sent again with a later revision is not added
twice; a revision with nothing but known notes records nothing. On the in-memory recorders."""

from __future__ import annotations

import pytest
from builders import header, items, manager, memory_app, receive, upstream
from serviceorders.domain import commands as cmd
from serviceorders.domain.values import HeaderChange, Note

pytestmark = pytest.mark.unit


def texts(app, order_id) -> list[str]:
    return [n.text for n in app.get_order(order_id).notes]


def topics(app, order_id) -> list[str]:
    return [type(e).__name__ for e in app.history(order_id)]


def test_each_new_note_once_known_notes_not_again() -> None:
    app = memory_app()
    received = cmd.ReceiveOrder(header("rn-1"), tuple(items()), (Note(text="captured upstream"),))
    order_id = app.handle(upstream(), received).order.id
    app.handle(
        upstream(),
        cmd.Revise(
            order_id,
            header=HeaderChange(description="faster"),
            notes=("captured upstream", "call before 9", "call before 9"),
        ),
    )
    assert texts(app, order_id) == ["captured upstream", "call before 9"]
    assert topics(app, order_id)[-2:] == ["OrderRevised", "NoteAdded"]

    # notes only, one new: the note alone, no revision
    app.handle(upstream(), cmd.Revise(order_id, notes=("call before 9", "gate code 1234")))
    assert texts(app, order_id) == ["captured upstream", "call before 9", "gate code 1234"]
    assert topics(app, order_id)[-1] == "NoteAdded"

    # nothing but known notes: nothing recorded
    before = topics(app, order_id)
    app.handle(upstream(), cmd.Revise(order_id, notes=("gate code 1234",)))
    assert topics(app, order_id) == before


def test_notes_of_a_revision_of_an_approved_order_are_added_beside_the_proposal() -> None:
    app = memory_app()
    order_id = app.handle(upstream(), receive("rn-2")).order.id
    app.handle(manager(), cmd.Approve(order_id))
    app.handle(
        upstream(),
        cmd.Revise(order_id, header=HeaderChange(priority="1"), notes=("please hurry",)),
    )
    order = app.get_order(order_id)
    assert order.proposal is not None  # the change waits for a second person
    assert texts(app, order_id)[-1] == "please hurry"  # a note is not a change to decide

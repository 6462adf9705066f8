"""Free text and attributes kept as sent, sealed with the application's vault (issue 19,
deliverable 4; docs/audit.md, "Erasing personal data"): stored as tokens only, read
revealed through the mapper and the read models, and after the customer's erasure read as
`[erased]` everywhere, while not one stored byte changes and every hash chain verifies.
After the erasure a command bringing new free text for that customer is refused, nothing
stored; a cancellation without a reason still goes through (the request's reason reads
`[erased]`, and that is what it records). On both backends."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from builders import item
from serviceorders.audit.erasure import erase_customer
from serviceorders.audit.pii import ErasedScope
from serviceorders.bootstrap import build_projector, event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.privacy import ERASED
from serviceorders.domain.values import (
    CommandContext,
    Note,
    OrderHeader,
    Party,
    Role,
)
from serviceorders.projections.maintenance import rebuild
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

UPSTREAM = CommandContext.for_actor("crm", Role.UPSTREAM)
MANAGER = CommandContext.for_actor("mgr", Role.MANAGER)
FULFILMENT = CommandContext.for_actor("fulfil", Role.FULFILMENT)

DESCRIPTION = "Fibre for Dora Diaz, flat 3"
NOTE = "call Dora on 0170 555 0101 first"
AUTHOR = "Dora's assistant Ed"
APPOINTMENT = "Dora's slot: Tuesday morning"
REFERENCE = "CRM ticket of Dora Diaz"
REJECTION = "Dora Diaz asked us to stop"
CANCELLATION = "Dora Diaz moved to Lisbon"
TEXTS = (DESCRIPTION, NOTE, AUTHOR, APPOINTMENT, REFERENCE, REJECTION, CANCELLATION)


def _order(external_id: str) -> cmd.ReceiveOrder:
    header = OrderHeader(
        external_id=external_id,
        description=DESCRIPTION,
        related_parties=(Party(id="CUST-D", name="Dora Diaz"),),
        extra={"externalReference": [{"id": "T-1", "name": REFERENCE, "n": 7}]},
    )
    line = item("1", extra={"appointment": {"id": "A-1", "description": APPOINTMENT}})
    return cmd.ReceiveOrder(header, (line,), (Note(text=NOTE, author=AUTHOR),))


def _raw(settings: Settings) -> bytes:
    db = open_read_db(settings)
    try:
        table = "serviceorders_events" if db.dialect == "postgres" else "stored_events"
        return b"\n".join(bytes(r[0]) for r in db.fetchall(f"SELECT state FROM {table}"))
    finally:
        db.close()


def _read_models(settings: Settings) -> str:
    db = open_read_db(settings)
    try:
        docs = [str(r[0]) for r in db.fetchall("SELECT document FROM order_document")]
        outbox = [str(r[0]) for r in db.fetchall("SELECT payload FROM notification_outbox")]
        return " ".join(docs + outbox)
    finally:
        db.close()


def _erase(settings: Settings, customer_id: str) -> Any:
    db = open_read_db(settings)
    try:
        return erase_customer(
            db, customer_id, actor="dpo", rebuild=lambda d: rebuild(d, event_mapper()), wait=0
        )
    finally:
        db.close()


@pytest.fixture
def orders(app: ServiceOrders, settings: Settings) -> tuple[UUID, UUID]:
    """A rejected order and one whose cancellation was approved, of customer CUST-D."""
    rejected = app.handle(UPSTREAM, _order("D-1")).order_id
    app.handle(MANAGER, cmd.Reject(rejected, REJECTION))
    cancelling = app.handle(UPSTREAM, _order("D-2")).order_id
    app.handle(UPSTREAM, cmd.RequestCancellation(cancelling, reason=CANCELLATION))
    app.handle(MANAGER, cmd.ApproveCancellation(cancelling))
    build_projector(settings).catch_up()
    return rejected, cancelling


def test_free_text_is_stored_sealed_and_read_revealed(
    app: ServiceOrders, settings: Settings, orders: tuple[UUID, UUID]
) -> None:
    rejected, cancelling = orders
    raw = _raw(settings)
    assert [t for t in TEXTS if t.encode() in raw] == []
    order = app.get_order(rejected)
    assert order.header.description == DESCRIPTION
    assert order.notes[0].text == NOTE and order.notes[0].author == AUTHOR
    assert order.header.extra["externalReference"] == [{"id": "T-1", "name": REFERENCE, "n": 7}]
    assert order.items["1"].extra["appointment"]["description"] == APPOINTMENT
    assert order.rejection_reason == REJECTION
    assert [o.message for o in order.outcomes] == [REJECTION]
    assert app.get_order(cancelling).cancellation_reason == CANCELLATION
    models = _read_models(settings)
    assert all(t in models for t in (DESCRIPTION, NOTE, APPOINTMENT, REFERENCE, REJECTION))


def test_erasure_reaches_the_free_text_and_keeps_every_chain(
    app: ServiceOrders, settings: Settings, orders: tuple[UUID, UUID], chain_tools: Any
) -> None:
    rejected, cancelling = orders
    hashes = {o: chain_tools.verify(app, o) for o in orders}
    raw = _raw(settings)

    done = _erase(settings, "CUST-D")
    assert sorted(done.orders) == sorted(orders)
    app.sealer.forget("CUST-D")  # this process cached the key

    assert _raw(settings) == raw  # not one stored byte changed
    assert {o: chain_tools.verify(app, o) for o in orders} == hashes
    order = app.get_order(rejected)
    assert order.header.description == ERASED
    assert (order.notes[0].text, order.notes[0].author) == (ERASED, ERASED)
    assert order.header.extra["externalReference"] == [{"id": ERASED, "name": ERASED, "n": 7}]
    assert order.items["1"].extra["appointment"] == {"id": ERASED, "description": ERASED}
    assert order.rejection_reason == ERASED
    assert [o.message for o in order.outcomes] == [ERASED]
    models = _read_models(settings)
    assert [t for t in TEXTS if t in models] == []

    # New free text for the erased customer cannot be sealed: refused, nothing stored.
    before = len(app.history(cancelling))
    with pytest.raises(ErasedScope):
        app.handle(UPSTREAM, cmd.AddNote(cancelling, "Dora's new number"))
    assert len(app.history(cancelling)) == before
    # Carrying out the approved cancellation needs no new text: it records what the
    # request's reason reads now.
    cancelled = app.handle(FULFILMENT, cmd.Cancel(cancelling)).order
    assert cancelled.cancellation_reason == ERASED
    assert chain_tools.verify(app, cancelling)[: len(hashes[cancelling])] == hashes[cancelling]

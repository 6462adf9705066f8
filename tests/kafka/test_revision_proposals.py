"""Revisions over Kafka after approval are proposals (issue 17, deliverable 1;
docs/kafka.md, "Mapping"): a `ServiceOrderAttributeValueChangeEvent` for an approved order
is applied as a proposal (the order keeps its items and state, the proposal waits for a
second person, the message is no dead letter), a second revision while one waits is an
`illegal_transition` dead letter whose reason names the waiting proposal, and a revision
of an order still in review applies at once, as before. Through a consumer on the real
broker; the hold policy through the intake itself."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from builders import manager, wait_for
from serviceorders.bootstrap import build_application
from serviceorders.consumers import envelope as env
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import create_event, envelope, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain import commands as cmd
from serviceorders.domain.order import ServiceOrder, order_id_for
from serviceorders.domain.values import OrderState
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import produce

pytestmark = pytest.mark.kafka

NEW_BANDWIDTH = 9999


def _revision(event_id: str, body: dict[str, Any], **header: Any) -> bytes:
    """A revision of `body`'s order (named by its externalId): item 1 with another
    bandwidth, and `header`'s attributes."""
    line = copy.deepcopy(body["serviceOrderItem"][0])
    for characteristic in line["service"]["serviceCharacteristic"]:
        if characteristic["name"] == "bandwidthMbps":
            characteristic["value"] = NEW_BANDWIDTH
    resource = {"externalId": body["externalId"], "serviceOrderItem": [line], **header}
    return orjson.dumps(envelope(event_id, env.REVISE, {"serviceOrder": resource}))


def _stored(settings: Settings, external_id: str) -> tuple[list[str], ServiceOrder]:
    """The order's event types and the order now."""
    app = build_application(settings)
    try:
        order_id = order_id_for(external_id)
        return [type(e).__name__ for e in app.events.get(order_id)], app.get_order(order_id)
    finally:
        app.close()


def _bandwidth(found: ServiceOrder) -> Any:
    return found.items["1"].characteristics["bandwidthMbps"]


def test_a_revision_of_an_approved_order_waits_as_a_proposal(
    ks: Settings, db: ReadDb, run_worker: Callable[..., Any]
) -> None:
    approved, in_review = order("KP-1", random.Random(21)), order("KP-2", random.Random(22))
    produce(
        ks,
        [
            (b"KP-1", create_event("kp-1-create", approved)),
            (b"KP-2", create_event("kp-2-create", in_review)),
        ],
    )
    store = IntakeStore(db)
    running = run_worker(ks)
    app = build_application(ks)
    try:
        wait_for(
            lambda: app.exists(order_id_for("KP-1")) and app.exists(order_id_for("KP-2")),
            what="both orders",
        )
        app.handle(manager(), cmd.Approve(order_id_for("KP-1")))
        before = _bandwidth(app.get_order(order_id_for("KP-1")))
        assert before != NEW_BANDWIDTH
        first = _revision("kp-1-rev-1", approved, description="upgrade to 10G")
        produce(
            ks,
            [
                (b"KP-1", first),
                (b"KP-1", first),  # the same message again: a duplicate, not a second proposal
                (b"KP-1", _revision("kp-1-rev-2", approved, priority="1")),
                (b"KP-2", _revision("kp-2-rev-1", in_review, description="in review")),
            ],
        )
        wait_for(lambda: sum(store.positions(ks.inbound_topic).values()) >= 6, what="6 messages")
        running.stop()

        # The approved order: a proposal waits; items, header and state as approved.
        types, kp1 = _stored(ks, "KP-1")
        assert types[-2:] == ["OrderApproved", "RevisionProposed"]
        assert kp1.state is OrderState.IN_PROGRESS
        assert _bandwidth(kp1) == before and kp1.header.description == approved["description"]
        proposal = kp1.proposal
        assert proposal is not None
        assert proposal.items[0].characteristics["bandwidthMbps"] == NEW_BANDWIDTH
        assert proposal.header.description == "upgrade to 10G"
        history = app.history(kp1.id)
        created, proposed = history[0], history[-1]
        assert proposal.proposed_by == created.actor  # the inbound topic's upstream actor
        assert proposal.proposed_by.role == "upstream"
        assert (proposed.source.channel, proposed.source.event_id) == ("kafka", "kp-1-rev-1")

        # The second revision while it waits: one dead letter naming the proposal.
        (dead,) = store.dead_letters()
        assert (dead["event_id"], dead["category"]) == ("kp-1-rev-2", env.ILLEGAL_TRANSITION)
        assert f"proposal {proposal.id} waits for a decision" in dead["reason"]
        assert kp1.header.priority == approved["priority"]

        # The order in review: revised at once, as before approval always was.
        types, kp2 = _stored(ks, "KP-2")
        assert types[-1] == "OrderRevised" and "RevisionProposed" not in types
        assert (kp2.state, kp2.proposal) == (OrderState.ACKNOWLEDGED, None)
        assert _bandwidth(kp2) == NEW_BANDWIDTH and kp2.header.description == "in review"

        # A second person approves the proposal: now it applies.
        app.handle(manager("dave"), cmd.ApproveProposal(kp1.id))
        kp1 = app.get_order(kp1.id)
        assert (_bandwidth(kp1), kp1.header.description) == (NEW_BANDWIDTH, "upgrade to 10G")
        assert kp1.proposal is None
    finally:
        app.close()


def test_the_hold_policy_holds_the_order_while_a_kafka_proposal_waits(
    ks: Settings, db: ReadDb
) -> None:
    """With SERVICEORDERS_HOLD_ON_PROPOSAL the approved order is held while the proposal
    from Kafka waits, and resumed when it is refused."""
    held = ks.model_copy(update={"hold_on_proposal": True})
    body = order("KH-1", random.Random(23))
    topic = ks.inbound_topic
    app = build_application(held)
    try:
        intake = Intake(app, IntakeStore(db), ks.events_topic)
        intake.process(
            [Message(topic, 0, 0, b"KH-1", create_event("kh-create", body))], {(topic, 0): None}
        )
        app.handle(manager(), cmd.Approve(order_id_for("KH-1")))
        result = intake.process(
            [Message(topic, 0, 1, b"KH-1", _revision("kh-rev", body))], {(topic, 0): 1}
        )
        assert (result.applied, result.dead_letters) == (1, 0)
        found = app.get_order(order_id_for("KH-1"))
        assert found.proposal is not None
        assert (found.state, found.held_for_proposal) == (OrderState.HELD, found.proposal.id)
        app.handle(manager("dave"), cmd.RefuseProposal(found.id, "not this quarter"))
        found = app.get_order(found.id)
        assert (found.state, found.proposal) == (OrderState.IN_PROGRESS, None)
        assert _bandwidth(found) != NEW_BANDWIDTH
    finally:
        app.close()


def test_a_revision_keeps_its_notes_once(
    ks: Settings, db: ReadDb, run_worker: Callable[..., Any]
) -> None:
    """`note` in a Kafka revision was dropped without a word (issue 19: nothing upstream
    sends is lost): each new text is added once, one already on the order is not."""
    body = order("KN-1", random.Random(24))
    known = body["note"][0]["text"]
    notes = [{"text": known}, {"text": "call before 9", "author": "crm"}]
    produce(
        ks,
        [
            (b"KN-1", create_event("kn-1-create", body)),
            (b"KN-1", _revision("kn-1-rev-1", body, note=notes)),
            (b"KN-1", _revision("kn-1-rev-2", body, note=[*notes, {"text": "gate 1234"}])),
        ],
    )
    store = IntakeStore(db)
    running = run_worker(ks)
    try:
        wait_for(lambda: sum(store.positions(ks.inbound_topic).values()) >= 3, what="3 messages")
    finally:
        running.stop()
    assert store.dead_letters() == []
    types, kn1 = _stored(ks, "KN-1")
    assert [n.text for n in kn1.notes] == [known, "call before 9", "gate 1234"]
    assert types.count("NoteAdded") == 2 and _bandwidth(kn1) == NEW_BANDWIDTH

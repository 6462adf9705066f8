"""Re-sends over Kafka never drop an order (issue 17, deliverable 4; docs/lifecycle.md,
"Re-sends and external ids"): a ServiceOrderCreateEvent whose `externalId` names an order
already created is applied (changing nothing) when it brings the same content, and
dead-lettered with category `resend_conflict` when it brings other content, the reason
naming the key and the paths that differ, never their values; an `externalId` held by a
draft is dead-lettered as `external_id_taken`. Through a consumer on the real broker, and
within one batch (one unit of work) through the intake itself."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import pytest
from builders import agent, header, wait_for
from serviceorders.bootstrap import build_application
from serviceorders.consumers import envelope as env
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import create_event, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain import commands as cmd
from serviceorders.domain.order import order_id_for
from serviceorders.notifications.kafka import Publisher
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import produce, read_topic

pytestmark = pytest.mark.kafka


def _bodies(external_id: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """An order, the same order with another bandwidth and customer name, and the values
    that must never appear in a reason (both bandwidths, both names)."""
    first = order(external_id, random.Random(11))
    other = copy.deepcopy(first)
    line = other["serviceOrderItem"][0]["service"]["serviceCharacteristic"]
    bandwidth = next(c for c in line if c["name"] == "bandwidthMbps")
    old_bandwidth = bandwidth["value"]
    bandwidth["value"] = 7777
    old_name = other["relatedParty"][0]["name"]
    other["relatedParty"][0]["name"] = "Hooli Secret"
    return first, other, [str(old_bandwidth), "7777", old_name, "Hooli Secret"]


def _stored(settings: Settings, external_id: str) -> tuple[list[str], Any]:
    """The order's event types and its state now (personal values revealed)."""
    app = build_application(settings)
    try:
        order_id = order_id_for(external_id)
        return [type(e).__name__ for e in app.events.get(order_id)], app.get_order(order_id)
    finally:
        app.close()


def _assert_conflict_reason(reason: str, external_id: str, hidden: list[str]) -> None:
    assert f"externalId '{external_id}'" in reason, reason
    assert "related_parties[0].name" in reason and "characteristics.bandwidthMbps" in reason
    for value in hidden:
        assert value not in reason, (value, reason)


def test_a_resend_with_other_content_is_dead_lettered_the_same_is_applied(
    ks: Settings, db: ReadDb, run_worker: Callable[..., Any]
) -> None:
    first, other, hidden = _bodies("KR-1")
    produce(
        ks,
        [
            (b"KR-1", create_event("kr-1-a", first)),
            (b"KR-1", create_event("kr-1-b", first)),  # the same order, a new eventId
            (b"KR-1", create_event("kr-1-c", other)),  # other content, same externalId
        ],
    )
    store = IntakeStore(db)
    running = run_worker(ks)
    wait_for(
        lambda: sum(store.positions(ks.inbound_topic).values()) >= 3, what="3 messages consumed"
    )
    running.stop()

    (dead,) = store.dead_letters()
    assert (dead["category"], dead["event_id"], dead["key"]) == (
        env.RESEND_CONFLICT,
        "kr-1-c",
        b"KR-1",
    )
    _assert_conflict_reason(dead["reason"], "KR-1", hidden)
    types, stored = _stored(ks, "KR-1")
    assert types == ["OrderDrafted", "OrderSubmitted"]
    assert stored.header.customer.name == first["relatedParty"][0]["name"]

    # The dead letter reaches the DLQ topic with its reason and category.
    publisher = Publisher(ks, notifications=False)
    try:
        publisher.drain()
    finally:
        publisher.close()
    (record,) = read_topic(ks, ks.dead_letter_topic, expect=1)
    assert record.headers["dlq.category"] == env.RESEND_CONFLICT.encode()
    assert record.headers["dlq.reason"].decode() == dead["reason"]


def test_within_one_batch(ks: Settings, db: ReadDb) -> None:
    """One batch, one unit of work: the order created by its first message (not saved yet)
    answers the second (the same content: applied) and the third (other content: a dead
    letter); a create under a draft's externalId is a dead letter too. Nothing of the
    refused messages is written."""
    first, other, hidden = _bodies("KB-1")
    app = build_application(ks)
    try:
        draft_id = app.handle(agent(), cmd.DraftOrder(header("KB-DRAFT"))).order_id
        topic = ks.inbound_topic
        messages = [
            Message(topic, 0, 0, b"KB-1", create_event("kb-1-a", first)),
            Message(topic, 0, 1, b"KB-1", create_event("kb-1-b", first)),
            Message(topic, 0, 2, b"KB-1", create_event("kb-1-c", other)),
            Message(
                topic, 0, 3, b"KB-DRAFT", create_event("kb-d", order("KB-DRAFT", random.Random(3)))
            ),
        ]
        result = Intake(app, IntakeStore(db), ks.events_topic).process(messages, {(topic, 0): None})
    finally:
        app.close()
    assert (result.applied, result.dead_letters) == (2, 2)
    assert result.dead_categories == {env.RESEND_CONFLICT: 1, env.EXTERNAL_ID_TAKEN: 1}
    dead = {d["event_id"]: d for d in IntakeStore(db).dead_letters()}
    assert set(dead) == {"kb-1-c", "kb-d"}
    _assert_conflict_reason(dead["kb-1-c"]["reason"], "KB-1", hidden)
    assert "externalId 'KB-DRAFT' is held by a draft" in dead["kb-d"]["reason"]
    assert dead["kb-d"]["category"] == env.EXTERNAL_ID_TAKEN

    types, stored = _stored(ks, "KB-1")
    assert types == ["OrderDrafted", "OrderSubmitted"]
    assert stored.header.customer.name == first["relatedParty"][0]["name"]
    draft_types, draft = _stored(ks, "KB-DRAFT")
    assert draft.id == draft_id and draft_types == ["OrderDrafted"]


def test_a_later_batch_compares_with_the_stored_order(ks: Settings, db: ReadDb) -> None:
    """The order created by an earlier batch is read from the store (prefetched as
    existing, personal values revealed by the mapper): other content is a dead letter, the
    same content is applied (changing nothing)."""
    first, other, hidden = _bodies("KX-1")
    app = build_application(ks)
    try:
        topic = ks.inbound_topic
        intake = Intake(app, IntakeStore(db), ks.events_topic)
        intake.process(
            [Message(topic, 0, 0, b"KX-1", create_event("kx-a", first))], {(topic, 0): None}
        )
        # A later batch: the order is read from the store (prefetched as existing).
        result = intake.process(
            [
                Message(topic, 0, 1, b"KX-1", create_event("kx-b", other)),
                Message(topic, 0, 2, b"KX-1", create_event("kx-c", first)),
            ],
            {(topic, 0): 1},
        )
    finally:
        app.close()
    assert (result.applied, result.dead_letters) == (1, 1)
    (dead,) = IntakeStore(db).dead_letters()
    assert (dead["event_id"], dead["category"]) == ("kx-b", env.RESEND_CONFLICT)
    _assert_conflict_reason(dead["reason"], "KX-1", hidden)
    assert _stored(ks, "KX-1")[0] == ["OrderDrafted", "OrderSubmitted"]

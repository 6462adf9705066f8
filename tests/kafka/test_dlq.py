"""Dead letters: the DLQ topic keeps the original record (key, bytes, headers) and says why
(`dlq.*` headers); one dead letter per bad message, however often it is read; the
`serviceorders dlq list` and `dlq replay` commands."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from builders import wait_for
from click.testing import CliRunner, Result
from kafka import KafkaProducer
from serviceorders.bootstrap import build_application
from serviceorders.cli import main
from serviceorders.consumers import envelope as env
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import create_event, envelope, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain.order import order_id_for
from serviceorders.notifications.kafka import Publisher, client_options
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import DLQ_HEADERS, kafka_env, read_topic

pytestmark = pytest.mark.kafka

TRACE = [
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("binary", bytes(range(1, 256))),
]  # any bytes round-trip (NUL: see below)


def send(
    settings: Settings, messages: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
) -> None:
    producer = KafkaProducer(acks="all", **client_options(settings))
    try:
        for key, value, headers in messages:  # one at a time: offsets in this order
            producer.send(settings.inbound_topic, key=key, value=value, headers=headers).get(
                timeout=30
            )
    finally:
        producer.close(timeout=10)


def message(event_type: str, body: dict[str, Any], event_id: str) -> bytes:
    return orjson.dumps(envelope(event_id, event_type, body))


def bad_create(external_id: str, spec: str) -> bytes:
    body = order(external_id, random.Random(4))
    body["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = spec
    return create_event(f"{external_id}-create", body)


# key -> (value, headers, category, reason fragment, eventId)
BAD: dict[bytes, tuple[bytes | None, list[tuple[str, bytes]], str, str, str]] = {
    b"K-NOT-JSON": (b'{"eventId": "half', TRACE, env.NOT_JSON, "not JSON", ""),
    b"K-TOMBSTONE": (None, [], env.NOT_JSON, "tombstone", ""),
    b"K-ARRAY": (b"[1, 2, 3]", TRACE[:1], env.NOT_ENVELOPE, "not an object", ""),
    b"K-UNKNOWN-TYPE": (
        message("ServiceOrderMilestoneEvent", {"serviceOrder": {}}, "e-ut"),
        [],
        env.UNKNOWN_EVENT_TYPE,
        "'ServiceOrderMilestoneEvent'",
        "e-ut",
    ),
    b"K-REFUSED": (
        bad_create("K-REFUSED", "teleporter"),
        TRACE,
        env.REFUSED,
        "teleporter",
        "K-REFUSED-create",
    ),
    b"K-UNKNOWN-ORDER": (
        message(
            env.CANCEL,
            {
                "cancelServiceOrder": {
                    "serviceOrder": {"id": "5b0e4a4e-9f6c-4d4e-8a43-7f5e4b3c2a10"}
                }
            },
            "e-uo",
        ),
        [],
        env.UNKNOWN_ORDER,
        "no order with id 5b0e4a4e-9f6c-4d4e-8a43-7f5e4b3c2a10",
        "e-uo",
    ),
}
GOOD = (b"K-GOOD", create_event("good-create", order("K-GOOD", random.Random(5))), TRACE)


def dead_letters(db: ReadDb) -> list[dict[str, Any]]:
    return IntakeStore(db).dead_letters(limit=1000)


def drain(settings: Settings, db: ReadDb, run_worker: Callable[..., Any], total: int) -> Any:
    """Run a worker until the database's positions cover `total` messages; return it."""
    running = run_worker(settings)
    wait_for(
        lambda: sum(IntakeStore(db).positions(settings.inbound_topic).values()) >= total,
        what=f"{total} messages consumed",
    )
    return running


def cli(settings: Settings, broker: EmbeddedBroker, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=kafka_env(settings, broker))


def test_dead_letters_keep_the_original_record_and_say_why(ks, db, run_worker):
    send(ks, [(k, v, h) for k, (v, h, *_) in BAD.items()] + [GOOD])
    drain(ks, db, run_worker, len(BAD) + 1).stop()
    inbound = {r.key: r for r in read_topic(ks, ks.inbound_topic, expect=len(BAD) + 1, idle=0.5)}
    stored = {d["key"]: d for d in dead_letters(db)}
    assert set(stored) == set(BAD), "exactly the bad messages, each once"

    publisher = Publisher(ks, notifications=False)
    try:
        publisher.drain()
    finally:
        publisher.close()
    records = read_topic(ks, ks.dead_letter_topic, expect=len(BAD))
    assert len(records) == len(BAD)
    for r in records:
        value, headers, category, reason, event_id = BAD[r.key]
        source, row = inbound[r.key], stored[r.key]
        assert r.value == value  # the original bytes (None for the tombstone)
        for name, original in headers:
            assert r.headers[name] == original
        assert set(r.headers) == {name for name, _ in headers} | set(DLQ_HEADERS)
        assert r.headers["dlq.category"] == category.encode()
        assert reason in r.headers["dlq.reason"].decode()
        assert r.headers["dlq.reason"].decode() == row["reason"]
        assert r.headers["dlq.source.topic"] == ks.inbound_topic.encode()
        assert int(r.headers["dlq.source.partition"]) == source.partition
        assert int(r.headers["dlq.source.offset"]) == source.offset
        assert r.headers["dlq.event_id"] == event_id.encode()
        assert int(r.headers["dlq.id"]) == row["id"]
    # Marked published once the broker acknowledged; the good message took effect.
    assert all(d["published_at"] is not None for d in dead_letters(db))
    assert IntakeStore(db).counts()["dead_letter_unpublished"] == 0
    app = build_application(ks)
    try:
        assert app.exists(order_id_for("K-GOOD"))
        assert not app.exists(order_id_for("K-REFUSED"))
    finally:
        app.close()


def test_a_batch_read_again_dead_letters_each_bad_message_once(ks, db, run_worker):
    send(ks, [(k, v, h) for k, (v, h, *_) in BAD.items()] + [GOOD])
    drain(ks, db, run_worker, len(BAD) + 1).stop()
    first = dead_letters(db)
    outbox = IntakeStore(db).counts()["kafka_outbox"]
    assert len(first) == len(BAD)
    assert outbox == 2  # the refused create and the cancellation of an unknown order

    # The whole partition read again (as after a rewind): nothing is recorded twice.
    db.execute("UPDATE intake_position SET next_offset = 0 WHERE topic = %s", (ks.inbound_topic,))
    running = drain(ks, db, run_worker, len(BAD) + 1)
    wait_for(lambda: running.worker.stats.messages >= len(BAD) + 1, what="the second reading")
    running.stop()
    assert running.worker.stats.duplicates == 1  # the good one
    assert running.worker.stats.applied == 0
    again = dead_letters(db)
    assert [(d["id"], d["key"], d["reason"]) for d in again] == [
        (d["id"], d["key"], d["reason"]) for d in first
    ]
    assert IntakeStore(db).counts()["kafka_outbox"] == outbox


def test_dlq_list_shows_the_dead_letters_with_their_reasons(ks, db, run_worker, broker):
    send(ks, [(k, v, h) for k, (v, h, *_) in BAD.items()] + [GOOD])
    drain(ks, db, run_worker, len(BAD) + 1).stop()
    rows = dead_letters(db)

    listed = cli(ks, broker, "dlq", "list")
    assert listed.exit_code == 0, listed.output
    for d in rows:
        assert f"#{d['id']}" in listed.output
        assert d["reason"] in listed.output
        assert d["category"] in listed.output
    assert "K-GOOD" not in listed.output

    as_json = cli(ks, broker, "dlq", "list", "--json")
    assert as_json.exit_code == 0, as_json.output
    found = {d["key"]: d for d in json.loads(as_json.stdout)}
    assert set(found) == {k.decode() for k in BAD}
    for key, (value, headers, category, _, event_id) in BAD.items():
        d = found[key.decode()]
        assert d["category"] == category
        assert d["event_id"] == (event_id or None)
        assert d["source_topic"] == ks.inbound_topic
        assert d["value"] == ("" if value is None else value.decode())
        assert set(d["headers"]) == {name for name, _ in headers}
        assert d["replay_count"] == 0 and d["replayed_at"] is None

    refused = cli(ks, broker, "dlq", "list", "--category", "refused", "--json")
    assert [d["key"] for d in json.loads(refused.stdout)] == ["K-REFUSED"]
    none = cli(ks, broker, "dlq", "list", "--category", "too_large")
    assert none.exit_code == 0 and "no dead letters" in none.output


def test_a_replayed_dead_letter_takes_effect_once_its_order_exists(ks, db, run_worker, broker):
    body = order("CRM-LATE", random.Random(6))
    revised = orjson.loads(orjson.dumps(body["serviceOrderItem"][1]))
    revised["service"]["serviceCharacteristic"] = [{"name": "model", "value": "isr4331"}]
    revision = message(
        env.REVISE,
        {
            "serviceOrder": {
                "externalId": "CRM-LATE",
                "description": "revised before it was created",
                "serviceOrderItem": [revised],
            }
        },
        "crm-late-revise",
    )
    running = run_worker(ks)
    # The revision overtakes its order: refused, the order is unknown.
    send(ks, [(b"CRM-LATE", revision, TRACE)])
    (dead,) = wait_for(lambda: dead_letters(db), what="the dead letter")
    assert dead["category"] == env.UNKNOWN_ORDER
    assert dead["reason"] == "no order with externalId 'CRM-LATE'"
    assert dead["event_id"] == "crm-late-revise"
    # Then the order arrives.
    send(ks, [(b"CRM-LATE", create_event("crm-late-create", body), [])])
    app = build_application(ks)
    try:
        wait_for(lambda: app.exists(order_id_for("CRM-LATE")), what="the order")
        assert app.get_order(order_id_for("CRM-LATE")).header.description != (
            "revised before it was created"
        )

        unknown = cli(ks, broker, "dlq", "replay", "999999")
        assert unknown.exit_code == 2
        assert "no dead letter #999999" in unknown.output
        nothing = cli(ks, broker, "dlq", "replay")
        assert nothing.exit_code == 2
        assert "name dead letter ids, or give --all" in nothing.output
        mixed = cli(ks, broker, "dlq", "replay", str(dead["id"]), "999999")
        assert mixed.exit_code == 2  # all or nothing: the known one is not replayed either
        assert IntakeStore(db).dead_letter(dead["id"])["replayed_at"] is None

        replayed = cli(ks, broker, "dlq", "replay", str(dead["id"]))
        assert replayed.exit_code == 0, replayed.output
        assert f"replayed 1 dead letter(s) to {ks.inbound_topic}" in replayed.output

        def revised_order() -> bool:
            found = app.get_order(order_id_for("CRM-LATE"))
            return found.header.description == "revised before it was created"

        wait_for(revised_order, what="the replayed revision to take effect")
        after = app.get_order(order_id_for("CRM-LATE"))
        assert after.items["2"].characteristics == {"model": "isr4331"}
        assert set(after.items) == {i["id"] for i in body["serviceOrderItem"]}
    finally:
        app.close()
    wait_for(lambda: running.worker.stats.messages >= 3, what="the replay consumed")
    running.stop()
    assert running.worker.stats.duplicates == 0  # the replayed eventId was never applied
    assert IntakeStore(db).applied_ids(["crm-late-revise"]) == {"crm-late-revise"}
    (row,) = dead_letters(db)  # the replay took effect: no new dead letter
    assert row["replay_count"] == 1 and row["replayed_at"] is not None
    pending = cli(ks, broker, "dlq", "list", "--pending")
    assert pending.exit_code == 0 and "no dead letters" in pending.output
    listed = cli(ks, broker, "dlq", "list")
    assert "replayedx1" in listed.output
    # The replayed record: the original key, bytes and headers, and where it came from.
    inbound = read_topic(ks, ks.inbound_topic, expect=3, idle=0.5)
    replay = [r for r in inbound if "dlq.replay_of" in r.headers]
    assert len(replay) == 1
    assert (replay[0].key, replay[0].value) == (b"CRM-LATE", revision)
    assert replay[0].headers == {**dict(TRACE), "dlq.replay_of": str(dead["id"]).encode()}
    # Nothing pending: --all replays nothing more.
    again = cli(ks, broker, "dlq", "replay", "--all")
    assert again.exit_code == 0 and "replayed 0 dead letter(s)" in again.output


def test_a_header_with_a_nul_byte_is_kept_in_the_dead_letter(ks, db):
    headers = (("schema-id", b"\x00\x00\x00\x07"), *TRACE)
    app = build_application(ks)
    try:
        result = Intake(app, IntakeStore(db), ks.events_topic).process(
            [Message(ks.inbound_topic, 0, 0, b"K", b"not json", headers)],
            {(ks.inbound_topic, 0): None},
        )
    finally:
        app.close()
    assert result.dead_letters == 1
    (dead,) = dead_letters(db)
    assert dead["headers"] == list(headers)

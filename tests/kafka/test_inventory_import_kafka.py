"""The inventory import topic (SERVICEORDERS_INVENTORY_TOPIC; docs/kafka.md, "The inventory
import topic"): TMF638 services, bare or in a ServiceCreateEvent envelope, consumed by the
same consumer as the TMF641 traffic under the same rules. On the real broker: lines with
duplicates and junk make each service once, the junk is dead-lettered with its reasons (and
published to the DLQ topic), a batch read again applies nothing twice, and `dlq replay` sends
an import's dead letter back to the import topic."""

from __future__ import annotations

import json
import secrets
from hashlib import sha256
from typing import Any

import orjson
import pytest
from builders import wait_for
from click.testing import CliRunner
from serviceorders.bootstrap import build_application
from serviceorders.cli import main
from serviceorders.consumers import envelope as env
from serviceorders.consumers.kafka import ensure_topics
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain.values import ServiceState
from serviceorders.notifications.kafka import Publisher
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import DLQ_HEADERS, kafka_env, produce, read_topic

pytestmark = pytest.mark.kafka

HQ = {
    "id": "LEG-1",
    "name": "Acme HQ line",
    "serviceSpecification": {"id": "internet-access"},
    "serviceCharacteristic": [{"name": "bandwidthMbps", "value": 50}],
    "place": [{"id": "site-1", "name": "HQ"}],
    "relatedParty": [{"id": "CUST-1", "name": "Acme", "role": "customer"}],
}
ROUTER = {"id": "LEG-2", "state": "inactive"}
SPARE = {"id": "LEG-3", "state": "reserved"}


def envelope(event_id: str, service: Any, event_type: str = env.SERVICE_CREATE) -> bytes:
    return orjson.dumps(
        {"eventId": event_id, "eventType": event_type, "event": {"service": service}}
    )


def bare_id(service: dict[str, Any]) -> str:
    """The eventId the intake gives a bare service: its content's digest."""
    return (
        env.BARE_SERVICE_PREFIX
        + sha256(orjson.dumps(service, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )


HQ_BYTES = orjson.dumps(HQ)
# (key, value); the services keyed by their id (one service's lines in one partition, in order)
MESSAGES: list[tuple[bytes | None, bytes]] = [
    (b"LEG-1", HQ_BYTES),  # 0: imported
    (b"LEG-2", orjson.dumps(ROUTER)),  # 1: imported
    (b"LEG-1", HQ_BYTES),  # 2: the same bytes again: a duplicate eventId
    (
        b"LEG-1",
        json.dumps(dict(reversed(list(HQ.items())))).encode(),
    ),  # 3: same JSON: the same eventId
    (b"LEG-1", envelope("INV-7", HQ)),  # 4: the same service in an envelope: taken, no change
    (b"LEG-1", envelope("INV-7", HQ)),  # 5: the same eventId again: a duplicate
    (b"LEG-1", orjson.dumps({**HQ, "name": "Someone else"})),  # 6: service_conflict
    (b"junk", b"not json"),  # 7
    (b"junk", b"[1, 2]"),  # 8
    (b"junk", orjson.dumps({"name": "no id"})),  # 9
    (b"junk", envelope("INV-9", HQ, "ServiceStateChangeEvent")),  # 10
    (b"LEG-3", envelope("INV-8", SPARE)),  # 11: imported
]
APPLIED = {bare_id(HQ), bare_id(ROUTER), "INV-7", "INV-8"}
# message index -> (category, reason fragment, the dead letter's eventId)
JUNK: dict[int, tuple[str, str, str | None]] = {
    6: (env.SERVICE_CONFLICT, "service LEG-1 exists with other content", None),
    7: (env.NOT_JSON, "the value is not JSON", None),
    8: (env.INVALID_SERVICE, "a TMF638 Service is a JSON object, not an array", None),
    9: (env.INVALID_SERVICE, "not a TMF638 Service: id: Field required", None),
    10: (
        env.UNKNOWN_EVENT_TYPE,
        "'ServiceStateChangeEvent' is not taken on the inventory",
        "INV-9",
    ),
}


@pytest.fixture
def inv(ks: Settings) -> Settings:
    """The test's settings with an import topic of its own."""
    found = ks.model_copy(update={"inventory_topic": f"inv-{secrets.token_hex(4)}"})
    ensure_topics(found)
    return found


def consumed(settings: Settings, db: ReadDb) -> int:
    return sum(IntakeStore(db).positions(settings.inventory_topic).values())


def state(settings: Settings, db: ReadDb) -> dict[str, Any]:
    """Everything the intake writes, to compare before and after a second reading."""
    return {
        "events": sorted(
            (str(o), int(v))
            for o, v in db.fetchall(
                f"SELECT originator_id, originator_version FROM {db.events_table}"
            )
        ),
        "applied": sorted(r[0] for r in db.fetchall("SELECT event_id FROM intake_applied")),
        "dead": [
            (d["id"], d["source_offset"], d["category"], d["reason"])
            for d in IntakeStore(db).dead_letters(limit=100)
        ],
    }


def test_services_with_duplicates_and_junk_apply_once_and_the_junk_is_dead_lettered(
    inv: Settings, db: ReadDb, run_worker: Any
) -> None:
    produce(inv, MESSAGES, topic=inv.inventory_topic)
    running = run_worker(inv)
    wait_for(lambda: consumed(inv, db) >= len(MESSAGES), what="the import topic consumed")
    running.stop()
    stats = running.worker.stats
    assert (stats.applied, stats.duplicates, stats.dead_letters) == (4, 3, 5)

    app = build_application(inv)
    try:
        for service_id in ("LEG-1", "LEG-2", "LEG-3"):
            kinds = [type(e).__name__ for e in app.service_history(service_id)]
            assert kinds.count("ServiceCreated") == 1, (service_id, kinds)
        hq = app.unseal_service(app.get_service("LEG-1"))
        assert (
            hq.imported
            and hq.name == "Acme HQ line"
            and hq.characteristics == {"bandwidthMbps": 50}
        )
        assert hq.customer is not None and hq.customer.id == "CUST-1"
        assert app.get_service("LEG-2").state is ServiceState.INACTIVE
        assert app.get_service("LEG-3").state is ServiceState.RESERVED
        (created, *_) = app.service_history("LEG-3")
        assert created.source.topic == inv.inventory_topic and created.source.event_id == "INV-8"
        assert created.actor.id == f"kafka:{inv.inventory_topic}"
    finally:
        app.close()

    assert set(state(inv, db)["applied"]) == APPLIED
    dead = IntakeStore(db).dead_letters(limit=100)
    assert len(dead) == len(JUNK)
    by_value = {d["value"]: d for d in dead}
    for index, (category, reason, event_id) in JUNK.items():
        key, value = MESSAGES[index]
        d = by_value[value]
        assert (d["category"], d["key"], d["event_id"]) == (category, key, event_id)
        assert reason in d["reason"], d["reason"]
        assert d["source_topic"] == inv.inventory_topic and d["published_at"] is None

    # published to the DLQ topic like the order intake's, with their reasons
    publisher = Publisher(inv, notifications=False)
    try:
        publisher.drain()
    finally:
        publisher.close()
    records = read_topic(inv, inv.dead_letter_topic, expect=len(JUNK), idle=0.5)
    assert sorted(r.headers["dlq.category"].decode() for r in records) == sorted(
        c for c, _, _ in JUNK.values()
    )
    for r in records:
        assert set(DLQ_HEADERS) <= set(r.headers)
        assert r.headers["dlq.source.topic"] == inv.inventory_topic.encode()
        assert r.value in {MESSAGES[i][1] for i in JUNK}


def test_a_batch_read_again_applies_nothing_twice(
    inv: Settings, db: ReadDb, run_worker: Any
) -> None:
    produce(inv, MESSAGES, topic=inv.inventory_topic)
    running = run_worker(inv)
    wait_for(lambda: consumed(inv, db) >= len(MESSAGES), what="the import topic consumed")
    running.stop()
    before = state(inv, db)
    assert len(before["applied"]) == 4 and len(before["dead"]) == len(JUNK)

    # every partition of the import topic read again from its start (as after a rewind)
    db.execute(
        "UPDATE intake_position SET next_offset = 0 WHERE topic = %s", (inv.inventory_topic,)
    )
    again = run_worker(inv)
    wait_for(
        lambda: again.worker.stats.messages >= len(MESSAGES) and consumed(inv, db) >= len(MESSAGES),
        what="the second reading",
    )
    again.stop()
    assert again.worker.stats.applied == 0
    assert again.worker.stats.duplicates == len(MESSAGES) - len(JUNK)
    assert state(inv, db) == before  # no event, applied id or dead letter twice


def test_dlq_replay_sends_an_imports_dead_letter_back_to_the_import_topic(
    inv: Settings, db: ReadDb, run_worker: Any, broker: Any
) -> None:
    produce(inv, [(b"junk", b'{"name": "no id"}')], topic=inv.inventory_topic)
    running = run_worker(inv)
    wait_for(lambda: consumed(inv, db) >= 1, what="the import topic consumed")
    running.stop()
    (dead,) = IntakeStore(db).dead_letters()
    replayed = CliRunner().invoke(
        main,
        ["dlq", "replay", str(dead["id"])],
        env=kafka_env(inv, broker, SERVICEORDERS_INVENTORY_TOPIC=inv.inventory_topic),
    )
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed 1 dead letter(s) to {inv.inventory_topic}" in replayed.output
    records = read_topic(inv, inv.inventory_topic, expect=2, idle=0.5)
    assert [r.value for r in records] == [b'{"name": "no id"}'] * 2
    assert records[-1].headers["dlq.replay_of"] == str(dead["id"]).encode()
    assert read_topic(inv, inv.inbound_topic, idle=0.5) == []

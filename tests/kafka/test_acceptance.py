"""Acceptance of the Kafka intake against the real broker (tansu) and the real databases.

1. Realistic traffic (duplicates, bad messages of every kind) drains into exactly the
   distinct valid orders, the right dead letters and the DLQ topic.
2. The same with the consumer process SIGKILLed at random points and restarted.
3. The same with two consumer processes sharing the partitions of one group.
4. A consumer that lost its partitions never commits the batch it held (stale batch).
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from kafka import TopicPartition
from serviceorders.bootstrap import build_application, build_projector, init_database, open_read_db
from serviceorders.consumers import intake as intake_module
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.kafka import ConsumerWorker, Publisher
from serviceorders.consumers.sample import Traffic, traffic
from serviceorders.consumers.store import IntakeStore, StaleBatch, headers_from_json
from serviceorders.domain.order import order_id_for
from serviceorders.domain.values import OrderState
from serviceorders.settings import Settings

from .conftest import kafka_env, produce, read_topic, spawn_consume, wait_for

pytestmark = pytest.mark.kafka

DLQ_HEADERS = ("dlq.reason", "dlq.category", "dlq.source.topic", "dlq.source.partition",
               "dlq.source.offset", "dlq.event_id", "dlq.id")
ANNOUNCED = ("refused", "invalid_order", "unknown_order")  # refusals told to the upstream


# ------------------------------------------------------------------------- helpers
@pytest.fixture
def ks(kafka_settings: Settings) -> Settings:
    """The test's Kafka settings with every table in place (SQLite starts with none)."""
    init_database(kafka_settings)
    return kafka_settings




@dataclass(frozen=True)
class Expected:
    """What a drained intake must hold for this traffic."""

    traffic: Traffic
    applied: frozenset[str]  # eventIds that take effect (the first of each eventId)
    duplicates: int  # messages repeating an eventId: recorded nowhere
    bad: dict[str, str]  # key -> dead-letter category

    @classmethod
    def of(cls, t: Traffic) -> Expected:
        ids = [orjson.loads(m.value)["eventId"] for m in t.messages
               if m.kind in ("valid", "duplicate")]
        bad = {m.key.decode(): m.kind for m in t.bad if m.key}
        assert len(bad) == len(t.bad)
        return cls(t, frozenset(ids), len(ids) - len(set(ids)), bad)


def events_table(settings: Settings) -> str:
    return "serviceorders_events" if settings.database.kind == "postgres" else "stored_events"


def counts(settings: Settings) -> tuple[int, int]:
    db = open_read_db(settings)
    try:
        c = IntakeStore(db).counts()
        return c["intake_applied"], c["dead_letter"]
    finally:
        db.close()


def drained(settings: Settings, expected: Expected) -> bool:
    applied, dead = counts(settings)
    assert applied <= len(expected.applied) and dead <= len(expected.bad), \
        f"more than the traffic accounts for: {applied} applied, {dead} dead letters"
    return (applied, dead) == (len(expected.applied), len(expected.bad))


def publish(settings: Settings, t: Traffic) -> None:
    produce(settings, [(m.key, m.value) for m in t.messages])


def as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def assert_outcome(settings: Settings, expected: Expected) -> None:
    """Every acceptance assertion on a drained intake (database, read models, DLQ topic)."""
    t = expected.traffic
    wanted = {order_id_for(ext): ext for ext in t.orders}
    assert len(wanted) == len(t.orders)
    db = open_read_db(settings)
    try:
        # --- the event store: exactly the distinct valid orders, two events each, no doubles
        rows = db.fetchall(f"SELECT originator_id, originator_version FROM "
                           f"{events_table(settings)} ORDER BY originator_id, "
                           f"originator_version")
        versions: dict[UUID, list[int]] = {}
        for oid, version in rows:
            versions.setdefault(as_uuid(oid), []).append(int(version))
        assert set(versions) == set(wanted), (
            f"{len(versions)} order streams, expected {len(wanted)}; missing "
            f"{len(set(wanted) - set(versions))}, unexpected {len(set(versions) - set(wanted))}")
        wrong = {str(k): v for k, v in versions.items() if v != [1, 2]}
        assert not wrong, f"orders without exactly the events v1, v2: {list(wrong.items())[:5]}"

        # --- applied eventIds: each exactly once, exactly the distinct ones of the traffic
        applied = db.fetchall("SELECT event_id, order_id FROM intake_applied")
        ids = Counter(r[0] for r in applied)
        assert not [i for i, n in ids.items() if n > 1]
        assert set(ids) == expected.applied
        assert {as_uuid(r[1]) for r in applied} == set(wanted)
        positions = IntakeStore(db).positions(settings.inbound_topic)
        assert sum(positions.values()) == len(t.messages), positions

        # --- dead letters: exactly the bad messages, by key and category, with a reason
        dead = IntakeStore(db).dead_letters(limit=10**6)
        assert len(dead) == len(expected.bad)
        by_key = {d["key"].decode(): d for d in dead}
        assert len(by_key) == len(dead)
        assert {k: d["category"] for k, d in by_key.items()} == expected.bad
        values = {m.key.decode(): m.value for m in t.bad}
        for key, d in by_key.items():
            assert d["reason"].strip(), f"dead letter {key} has no reason"
            assert d["value"] == values[key]
            assert d["source_topic"] == settings.inbound_topic
        assert Counter(expected.bad.values()).keys() >= {"not_json", "not_envelope",
                                                          "unknown_event_type", "refused",
                                                          "invalid_order", "unknown_order"}
        # refusals of upstream commands are announced once each on the outbound topic
        outbox = [dict(headers_from_json(h)) for (h,) in
                  db.fetchall("SELECT headers FROM kafka_outbox")]
        announced = {orjson.loads(m.value)["eventId"]: m.kind for m in t.bad
                     if m.kind in ANNOUNCED}
        assert sorted(h["refusal.event_id"].decode() for h in outbox) == sorted(announced)
        assert {h["refusal.event_id"].decode(): h["refusal.category"].decode()
                for h in outbox} == announced
    finally:
        db.close()

    # --- each order: acknowledged, with the items exactly as published
    app = build_application(settings)
    try:
        for order_id, ext in wanted.items():
            order = app.get_order(order_id)
            body = t.orders[ext]
            assert order.id == order_id and order.header.external_id == ext
            assert order.state is OrderState.ACKNOWLEDGED, (ext, order.state)
            assert order.version == 2
            assert order.header.priority == body["priority"]
            assert order.header.description == body["description"]
            published = {i["id"]: i for i in body["serviceOrderItem"]}
            assert list(order.items) == list(published), ext
            for item_id, item in order.items.items():
                src = published[item_id]
                service = src["service"]
                assert item.action.value == src["action"]
                assert item.specification is not None
                assert item.specification.id == service["serviceSpecification"]["id"]
                assert item.characteristics == {c["name"]: c["value"]
                                                for c in service["serviceCharacteristic"]}
                place = service["place"][0]
                assert item.place is not None
                assert (item.place.id, item.place.name, item.place.role) == (
                    place["id"], place["name"], place["role"])
                assert item.service_id == service.get("id")
                assert item.depends_on == tuple(
                    r["orderItem"]["itemId"] for r in src.get("serviceOrderItemRelationship", ()))
    finally:
        app.close()

    # --- projections: the review queue holds exactly these orders, awaiting approval
    projector = build_projector(settings)
    try:
        projector.catch_up()
    finally:
        projector.db.close()
    db = open_read_db(settings)
    try:
        queue = db.fetchall("SELECT order_id, kind, external_id, item_count FROM review_queue")
    finally:
        db.close()
    assert len(queue) == len(wanted)
    assert {as_uuid(r[0]): r[2] for r in queue} == wanted
    assert {r[1] for r in queue} == {"approval"}
    assert all(r[3] == len(t.orders[r[2]]["serviceOrderItem"]) for r in queue)

    # --- the DLQ topic: one record per bad message, original key and bytes, dlq.* headers
    publisher = Publisher(settings, notifications=False)
    try:
        publisher.drain()
    finally:
        publisher.close()
    records = read_topic(settings, settings.dead_letter_topic, expect=len(expected.bad),
                         idle=1.0)
    unique = {r.headers.get("dlq.id"): r for r in records}  # at least once: dedupe by id
    assert len(unique) == len(expected.bad), (len(records), len(unique))
    by_key = {r.key.decode(): r for r in unique.values() if r.key}
    assert set(by_key) == set(expected.bad)
    values = {m.key.decode(): m.value for m in t.bad}
    for key, r in by_key.items():
        assert r.value == values[key]
        missing = [h for h in DLQ_HEADERS if h not in r.headers]
        assert not missing, f"DLQ record {key} lacks headers {missing}"
        assert r.headers["dlq.category"].decode() == expected.bad[key]
        assert r.headers["dlq.reason"].strip()
        assert r.headers["dlq.source.topic"].decode() == settings.inbound_topic
        assert int(r.headers["dlq.source.partition"]) in range(settings.topic_partitions)
        assert int(r.headers["dlq.source.offset"]) >= 0
    # the source coordinates are distinct: one record per source message
    assert len({(r.headers["dlq.source.partition"], r.headers["dlq.source.offset"])
                for r in by_key.values()}) == len(by_key)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=10)


# ------------------------------------------------------- 1. draining realistic traffic
def _drain_in_process(ks: Settings, count: int, prefix: str) -> None:
    t = traffic(count, seed=11, prefix=prefix)
    expected = Expected.of(t)
    publish(ks, t)
    worker = ConsumerWorker(ks, threading.Event())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: drained(ks, expected), timeout=180, every=0.5, what="the intake")
    finally:
        worker.stopping.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert worker.stats.stale_batches == 0 and worker.stats.failures == 0
    assert worker.stats.dead_letters == len(expected.bad)
    assert worker.stats.applied == len(expected.applied)
    assert worker.stats.duplicates == expected.duplicates
    assert_outcome(ks, expected)


def test_traffic_drains_into_exactly_the_valid_orders(ks: Settings) -> None:
    _drain_in_process(ks, 150, "SMALL")


@pytest.mark.slow
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_thousand_orders_with_duplicates_and_bad_messages(ks: Settings) -> None:
    _drain_in_process(ks, 1000, "BULK")

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
from builders import wait_for
from serviceorders.bootstrap import build_application, build_projector, open_read_db
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.kafka import ConsumerWorker
from serviceorders.consumers.sample import Traffic, traffic
from serviceorders.consumers.store import IntakeStore, StaleBatch
from serviceorders.domain.order import order_id_for
from serviceorders.domain.values import OrderState
from serviceorders.notifications.kafka import Publisher
from serviceorders.notifications.kafka_headers import headers_from_json
from serviceorders.settings import Settings

from .conftest import DLQ_HEADERS, kafka_env, produce, read_topic, spawn_consume

pytestmark = pytest.mark.kafka

ANNOUNCED = ("refused", "invalid_order", "unknown_order")  # refusals told to the upstream


# ------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class Expected:
    """What a drained intake must hold for this traffic."""

    traffic: Traffic
    # eventIds recorded as applied: each distinct one of the valid messages and duplicates
    # (a duplicate under a new eventId is applied, changing nothing; the same bytes again
    # are a duplicate, recorded nowhere)
    applied: frozenset[str]
    duplicates: int  # messages repeating an eventId: recorded nowhere
    bad: dict[str, str]  # key -> dead-letter category

    @classmethod
    def of(cls, t: Traffic) -> Expected:
        ids = [
            orjson.loads(m.value)["eventId"] for m in t.messages if m.kind in ("valid", "duplicate")
        ]
        bad = {m.key.decode(): m.kind for m in t.bad if m.key}
        assert len(bad) == len(t.bad)
        assert len(set(ids)) > len(t.orders), "no duplicate under a new eventId"
        assert len(ids) > len(set(ids)), "no redelivered duplicate"
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
    assert applied <= len(expected.applied) and dead <= len(expected.bad), (
        f"more than the traffic accounts for: {applied} applied, {dead} dead letters"
    )
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
        rows = db.fetchall(
            f"SELECT originator_id, originator_version FROM "
            f"{events_table(settings)} ORDER BY originator_id, "
            f"originator_version"
        )
        versions: dict[UUID, list[int]] = {}
        for oid, version in rows:
            versions.setdefault(as_uuid(oid), []).append(int(version))
        assert set(versions) == set(wanted), (
            f"{len(versions)} order streams, expected {len(wanted)}; missing "
            f"{len(set(wanted) - set(versions))}, unexpected {len(set(versions) - set(wanted))}"
        )
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
        assert Counter(expected.bad.values()).keys() >= {
            "not_json",
            "not_envelope",
            "unknown_event_type",
            "refused",
            "invalid_order",
            "unknown_order",
        }
        # refusals of upstream commands are announced once each on the outbound topic
        outbox = [
            dict(headers_from_json(h)) for (h,) in db.fetchall("SELECT headers FROM kafka_outbox")
        ]
        announced = {orjson.loads(m.value)["eventId"]: m.kind for m in t.bad if m.kind in ANNOUNCED}
        got = Counter(h["refusal.event_id"].decode() for h in outbox)
        assert got == Counter(announced.keys()), (
            f"announcements missing {sorted(set(announced) - set(got))}, unexpected "
            f"{sorted(set(got) - set(announced))}, doubled {[k for k, n in got.items() if n > 1]}"
        )
        assert {
            h["refusal.event_id"].decode(): h["refusal.category"].decode() for h in outbox
        } == announced
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
                assert item.characteristics == {
                    c["name"]: c["value"] for c in service["serviceCharacteristic"]
                }
                place = service["place"][0]
                assert item.place is not None
                assert (item.place.id, item.place.name, item.place.role) == (
                    place["id"],
                    place["name"],
                    place["role"],
                )
                assert item.service_id == service.get("id")
                assert item.depends_on == tuple(
                    r["orderItem"]["itemId"] for r in src.get("serviceOrderItemRelationship", ())
                )
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
    records = read_topic(settings, settings.dead_letter_topic, expect=len(expected.bad), idle=1.0)
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
    assert len(
        {
            (r.headers["dlq.source.partition"], r.headers["dlq.source.offset"])
            for r in by_key.values()
        }
    ) == len(by_key)


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
    worker = ConsumerWorker(ks, threading.Event(), app=build_application(ks))
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


# ------------------------------------------------------ 2. SIGKILL at random points
@pytest.mark.slow
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_consumer_killed_at_random_points_changes_nothing(
    ks: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    t = traffic(1000, seed=23, prefix="KILL")
    expected = Expected.of(t)
    publish(ks, t)
    # tiny batches: many short transactions, so that the kills land amid the drain (and
    # often amid a transaction); each restart waits ~6 s for the dead member's session
    env = kafka_env(ks, broker, SERVICEORDERS_CONSUME_BATCH="5")
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kills: list[tuple[float, int]] = []  # (delay after the first commit seen, progress)
    while len(kills) < 5 and not drained(ks, expected):
        before = sum(counts(ks))
        log = tmp_path / f"consume-{len(kills)}.log"
        proc = spawn_consume(env, log)
        try:
            wait_for(
                lambda: proc.poll() is not None or sum(counts(ks)) > before,  # noqa: B023
                timeout=90,
                every=0.05,
                what=f"progress of consumer #{len(kills)}",
            )
            assert proc.poll() is None, log.read_text()[-3000:]
            delay = rng.uniform(0.0, 0.4)
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        kills.append((round(delay, 3), sum(counts(ks))))
    mid_drain = [k for k in kills if k[1] < len(expected.applied) + len(expected.bad)]
    assert len(mid_drain) >= 4, f"seed {seed}: the kills missed the drain: {kills}"
    log = tmp_path / "consume-final.log"
    final = spawn_consume(env, log)
    try:
        wait_for(
            lambda: drained(ks, expected) and "partitions assigned" in log.read_text(),
            timeout=120,
            every=0.5,
            what=f"the intake after {len(kills)} kills (seed {seed}: {kills})",
        )
    finally:
        code = stop_process(final)
    assert code == 0, log.read_text()[-3000:]
    assert_outcome(ks, expected)


# ---------------------------------------------------- 3. two consumers, one group
def _assignment(log: Path) -> set[str]:
    """The partitions a consumer holds now, from its log."""
    held: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        for what in ("partitions revoked: ", "partitions assigned: "):
            if what in line:
                names = {n.strip() for n in line.split(what, 1)[1].split(",") if n.strip()}
                held = held - names if "revoked" in what else held | names
    return held


def _stopped_messages(log: Path) -> int:
    lines = [
        x.split("stopped: ", 1)[1]
        for x in log.read_text(errors="replace").splitlines()
        if "stopped: " in x
    ]
    assert lines, f"no final statistics in {log.name}: {log.read_text()[-3000:]}"
    return int(lines[-1].split()[0])


def _two_consumers(ks: Settings, broker: EmbeddedBroker, tmp_path: Path, count: int) -> None:
    t = traffic(count, seed=31, prefix="PAIR")
    expected = Expected.of(t)
    env = kafka_env(ks, broker, SERVICEORDERS_CONSUME_BATCH="50")
    logs = [tmp_path / "consume-a.log", tmp_path / "consume-b.log"]
    procs = [spawn_consume(env, log) for log in logs]
    # the order topic's partitions and, since issue 20, the service import topic's
    topics = (ks.inbound_topic, ks.inventory_topic)
    every = {f"{t}[{p}]" for t in topics for p in range(ks.topic_partitions)}
    try:

        def shared() -> bool:
            assert all(p.poll() is None for p in procs), [x.read_text()[-2000:] for x in logs]
            a, b = (_assignment(x) for x in logs)
            return bool(a) and bool(b) and not a & b and a | b == every

        wait_for(shared, timeout=90, every=0.2, what="both consumers holding partitions")
        publish(ks, t)
        wait_for(lambda: drained(ks, expected), timeout=120, every=0.5, what="the intake")
    finally:
        codes = [stop_process(p) for p in procs]
    assert codes == [0, 0], [x.read_text()[-3000:] for x in logs]
    consumed = [_stopped_messages(x) for x in logs]
    assert all(n > 0 for n in consumed), consumed  # both did part of the work
    assert sum(consumed) >= len(t.messages)
    assert_outcome(ks, expected)


def test_two_consumers_share_the_partitions(
    ks: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    _two_consumers(ks, broker, tmp_path, 150)


@pytest.mark.slow
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_two_consumers_share_a_thousand_orders(
    ks: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    _two_consumers(ks, broker, tmp_path, 1000)


# ------------------------------------------------------------------ 4. stale batches
def _store_state(settings: Settings) -> dict[str, Any]:
    """Everything a batch writes, to compare before and after."""
    db = open_read_db(settings)
    try:
        events = db.fetchall(
            f"SELECT originator_id, originator_version FROM {events_table(settings)}"
        )
        state: dict[str, Any] = {"events": sorted((str(as_uuid(o)), int(v)) for o, v in events)}
        for table, column in (
            ("intake_applied", "event_id"),
            ("dead_letter", "source_offset"),
            ("kafka_outbox", "event_id"),
        ):
            state[table] = sorted(r[0] for r in db.fetchall(f"SELECT {column} FROM {table}"))
        state["positions"] = IntakeStore(db).positions(settings.inbound_topic)
        return state
    finally:
        db.close()


def test_stale_batch_is_refused_and_writes_nothing(
    ks: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consumer A reads a batch; meanwhile B (who took the partition over) applies the same
    range and commits; A's commit must raise StaleBatch and leave no trace."""
    t = traffic(30, duplicates=0.2, bad=0.2, seed=5, prefix="STALE")
    expected = Expected.of(t)
    topic = ks.inbound_topic
    tp = (topic, 0)
    messages = [Message(topic, 0, offset, m.key, m.value) for offset, m in enumerate(t.messages)]
    half = len(messages) // 2
    apps = [build_application(ks), build_application(ks)]
    dbs = [open_read_db(ks), open_read_db(ks)]
    a, b = (
        Intake(app, IntakeStore(db), ks.events_topic) for app, db in zip(apps, dbs, strict=True)
    )
    try:
        for batch, read_at in ((messages[:half], None), (messages[half:], half)):
            stored = {tp: read_at}  # what A saw when it read the batch
            seen: dict[str, Any] = {}
            real_save = apps[0].save

            def save_after_b(
                *orders: Any,
                intake: Any,
                batch: Any = batch,
                stored: Any = stored,
                seen: Any = seen,
                real_save: Any = real_save,
            ) -> Any:
                assert orders, "A's batch has orders to write"
                b_result = b.process(batch, dict(stored))  # B commits the same range first
                assert b_result.applied and b_result.positions == {tp: batch[-1].offset + 1}
                seen.update(_store_state(ks))
                return real_save(*orders, intake=intake)

            monkeypatch.setattr(apps[0], "save", save_after_b)
            with pytest.raises(StaleBatch):
                a.process(batch, stored)
            monkeypatch.undo()
            assert seen, "B ran inside A's batch"
            assert _store_state(ks) == seen  # A wrote nothing at all
            assert seen["positions"] == {0: batch[-1].offset + 1}
            # A, resumed from the database's position, skips what B applied
            again = a.process(batch, {tp: batch[-1].offset + 1})
            assert again.skipped == len(batch) and not again.positions
            assert _store_state(ks) == seen
    finally:
        for app in apps:
            app.close()
        for db in dbs:
            db.close()
    # the outcome is that of one consumer that read everything once
    state = _store_state(ks)
    assert set(state["intake_applied"]) == expected.applied
    assert len(state["intake_applied"]) == len(expected.applied)
    assert len(state["dead_letter"]) == len(expected.bad)
    per_order = Counter(o for o, _ in state["events"])
    assert {UUID(o) for o in per_order} == {order_id_for(e) for e in t.orders}
    assert sorted(state["events"]) == sorted(
        (str(order_id_for(e)), v) for e in t.orders for v in (1, 2)
    )


@pytest.mark.slow
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_consumer_that_lost_its_partitions_drops_its_batch(
    ks: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real broker: A reads its first batch and freezes before writing it (its heartbeats
    stop too, as in a long GC pause or a network partition), so its session expires; B
    takes every partition over and drains the topic; when A wakes up, its batch must be
    dropped, not written."""
    t = traffic(150, seed=41, prefix="TAKEOVER")
    expected = Expected.of(t)
    publish(ks, t)
    real_process = Intake.process
    holding, released = threading.Event(), threading.Event()
    workers = {
        name: ConsumerWorker(ks, threading.Event(), app=build_application(ks))
        for name in ("a", "b")
    }

    def process(self: Intake, messages: Any, stored: Any) -> Any:
        if threading.current_thread().name == "worker-a" and not holding.is_set():
            consumer = workers["a"].consumer
            # kafka-python's heartbeat runs on its own thread: stop it, as a frozen process
            # would (private attribute: fail loudly if the client changes)
            coordinator = consumer._coordinator  # type: ignore[union-attr]
            assert hasattr(coordinator, "_heartbeat_enabled")
            coordinator._heartbeat_enabled = False
            holding.set()
            try:
                wait_for(
                    lambda: drained(ks, expected),
                    timeout=60,
                    every=0.2,
                    what="B draining the topic while A is frozen",
                )
            finally:
                released.set()
        return real_process(self, messages, stored)

    monkeypatch.setattr(Intake, "process", process)
    threads = {
        name: threading.Thread(target=w.run, name=f"worker-{name}", daemon=True)
        for name, w in workers.items()
    }
    try:
        threads["a"].start()
        wait_for(holding.is_set, timeout=60, what="A reading its first batch")
        threads["b"].start()
        wait_for(released.is_set, timeout=90, what="A's freeze to end")
        wait_for(
            lambda: (
                workers["a"].stats.stale_batches > 0
                or workers["a"].stats.batches
                or not threads["a"].is_alive()
            ),
            timeout=30,
            what="A's commit",
        )
        time.sleep(1.0)  # anything A might still (wrongly) write lands now
    finally:
        for w in workers.values():
            w.stopping.set()
        for th in threads.values():
            if th.is_alive():
                th.join(timeout=30)
    assert not any(th.is_alive() for th in threads.values())
    a, b = workers["a"].stats, workers["b"].stats
    assert a.stale_batches == 1, a
    # no trace of A: its only later batches re-read records B had applied (skipped)
    assert (a.applied, a.duplicates, a.dead_letters) == (0, 0, 0), a
    assert b.applied == len(expected.applied) and b.dead_letters == len(expected.bad), b
    assert b.stale_batches == 0, b
    assert_outcome(ks, expected)

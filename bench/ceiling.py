"""The ceiling: the same TMF641 messages consumed, validated and written as the same
number of rows with the fastest plain code (no domain logic), in one process.

- `pipeline`: KafkaConsumer (manual assign, no group) poll -> pydantic
  `model_validate_json` of the envelope with the engine's own `ServiceOrderCreate` ->
  binary COPY of `rows_per_order` rows per message (the events the engine writes per order
  plus its intake row) into scratch tables, one transaction per poll batch. The reference
  the intake figures are divided by.
- the pieces alone (consume only, validate only, COPY only), for the record.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import BaseModel, ConfigDict
from serviceorders.tmf.tmf641_in import ServiceOrderCreate

from .common import log

SECTION = "ceiling"
NAMESPACE = uuid.UUID("b3c0c0de-0000-5000-8000-000000000641")

DDL = (
    """CREATE TABLE IF NOT EXISTS ceiling_events (
        originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text,
        state bytea, notification_id bigserial UNIQUE,
        PRIMARY KEY (originator_id, originator_version))""",
    """CREATE TABLE IF NOT EXISTS ceiling_applied (
        event_id text PRIMARY KEY, topic text NOT NULL, partition integer NOT NULL,
        "offset" bigint NOT NULL, order_id uuid, event_type text NOT NULL,
        applied_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ceiling_position (
        topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,
        PRIMARY KEY (topic, partition))""",
)


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")
    serviceOrder: ServiceOrderCreate


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    eventId: str
    eventType: str
    event: _Event


def publish(bootstrap: str, topic: str, messages: list[Any]) -> float:
    """Publish the messages (fast settings); returns msgs/s."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024
    )
    t = time.perf_counter()
    try:
        for m in messages:
            producer.send(topic, key=m.key, value=m.value)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    return len(messages) / (time.perf_counter() - t)


def _consumer(bootstrap: str, topic: str) -> tuple[KafkaConsumer, list[TopicPartition]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    parts = sorted(consumer.partitions_for_topic(topic) or ())
    tps = [TopicPartition(topic, p) for p in parts]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer, tps


def _poll_all(consumer: KafkaConsumer, count: int, timeout: float = 120) -> list[list[Any]]:
    batches: list[list[Any]] = []
    got, deadline = 0, time.monotonic() + timeout
    while got < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ceiling: {got} of {count} messages consumed")
        records = consumer.poll(timeout_ms=500, max_records=2000)
        batch = [r for rs in records.values() for r in rs]
        if batch:
            batches.append(batch)
            got += len(batch)
    return batches


def _rows(
    record: Any, env: Envelope, events_per_order: int, now: datetime
) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    body = env.event.serviceOrder
    order_id = (
        uuid.uuid5(NAMESPACE, body.external_id or env.eventId)
        if hasattr(body, "external_id")
        else uuid.uuid5(NAMESPACE, env.eventId)
    )
    first = body.model_dump_json(by_alias=True, exclude_none=True).encode()
    small = orjson.dumps({"at": now.isoformat(), "by": "kafka", "eventId": env.eventId})
    events = [(order_id, 1, "OrderReceived", first)]
    events.extend((order_id, v, "OrderChanged", small) for v in range(2, events_per_order + 1))
    applied = (
        env.eventId,
        record.topic,
        record.partition,
        record.offset,
        order_id,
        env.eventType,
        now,
    )
    return events, applied


def _write(
    conn: psycopg.Connection[Any],
    events: list[tuple[Any, ...]],
    applied: list[tuple[Any, ...]],
    positions: dict[tuple[str, int], int],
) -> None:
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(
            "COPY ceiling_events (originator_id, originator_version, topic, state) "
            "FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["uuid", "int8", "text", "bytea"])
            for row in events:
                cp.write_row(row)
        with cur.copy(
            'COPY ceiling_applied (event_id, topic, partition, "offset", order_id, '
            "event_type, applied_at) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["text", "text", "int4", "int8", "uuid", "text", "timestamptz"])
            for row in applied:
                cp.write_row(row)
        cur.executemany(
            "INSERT INTO ceiling_position (topic, partition, next_offset) VALUES (%s, %s, %s) "
            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(t, p, o) for (t, p), o in positions.items()],
        )


def prepare(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        for statement in DDL:
            c.execute(statement)


def _truncate(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("TRUNCATE ceiling_events, ceiling_applied, ceiling_position RESTART IDENTITY")


def pipeline(
    bootstrap: str, topic: str, count: int, database_url: str, events_per_order: int
) -> dict[str, float]:
    """consume -> validate -> COPY, one transaction per poll batch; returns rates."""
    _truncate(database_url)
    consumer, _ = _consumer(bootstrap, topic)
    conn = psycopg.connect(database_url)
    try:
        consumer.poll(timeout_ms=0)  # metadata and the first fetch request, untimed
        got, t0 = 0, None
        deadline = time.monotonic() + 180
        while got < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ceiling: {got} of {count} messages")
            records = consumer.poll(timeout_ms=500, max_records=2000)
            if not records:
                continue
            if t0 is None:
                t0 = time.perf_counter()
            now = datetime.now(UTC)
            events: list[tuple[Any, ...]] = []
            applied: list[tuple[Any, ...]] = []
            positions: dict[tuple[str, int], int] = {}
            for tp, rs in records.items():
                for r in rs:
                    env = Envelope.model_validate_json(r.value)
                    ev, ap = _rows(r, env, events_per_order, now)
                    events.extend(ev)
                    applied.append(ap)
                positions[(tp.topic, tp.partition)] = rs[-1].offset + 1
                got += len(rs)
            _write(conn, events, applied, positions)
        elapsed = time.perf_counter() - (t0 or time.perf_counter())
        # the first poll's records arrived before t0: count from the second batch on would
        # be stricter; with >= 2000 messages per poll the difference is one batch.
        rows = count * (events_per_order + 1)
        return {"msgs_per_s": count / elapsed, "rows_per_s": rows / elapsed}
    finally:
        conn.close()
        consumer.close()


def consume_only(bootstrap: str, topic: str, count: int) -> float:
    consumer, _ = _consumer(bootstrap, topic)
    try:
        consumer.poll(timeout_ms=0)
        t = time.perf_counter()
        _poll_all(consumer, count)
        return count / (time.perf_counter() - t)
    finally:
        consumer.close()


def validate_only(values: list[bytes]) -> float:
    t = time.perf_counter()
    for v in values:
        Envelope.model_validate_json(v)
    return len(values) / (time.perf_counter() - t)


def copy_only(database_url: str, values: list[bytes], events_per_order: int) -> float:
    """The COPY of pre-built rows (the rows the pipeline writes), 2,000 messages per
    transaction: rows/s."""
    _truncate(database_url)
    now = datetime.now(UTC)

    class R:  # a record stand-in
        topic, partition = "t", 0

    events, applied = [], []
    for n, v in enumerate(values):
        env = Envelope.model_validate_json(v)
        r = R()
        r.offset = n  # type: ignore[attr-defined]
        ev, ap = _rows(r, env, events_per_order, now)
        events.append(ev)
        applied.append(ap)
    conn = psycopg.connect(database_url)
    try:
        t = time.perf_counter()
        for i in range(0, len(values), 2000):
            chunk = [row for ev in events[i : i + 2000] for row in ev]
            _write(conn, chunk, applied[i : i + 2000], {("t", 0): i + 2000})
        elapsed = time.perf_counter() - t
    finally:
        conn.close()
    return len(values) * (events_per_order + 1) / elapsed


def run_once(
    bootstrap: str,
    topic: str,
    count: int,
    database_url: str,
    values: list[bytes],
    events_per_order: int,
) -> dict[str, float]:
    out = pipeline(bootstrap, topic, count, database_url, events_per_order)
    out["consume_msgs_per_s"] = consume_only(bootstrap, topic, count)
    out["validate_msgs_per_s"] = validate_only(values)
    out["copy_rows_per_s"] = copy_only(database_url, values, events_per_order)
    log(
        f"ceiling: pipeline {out['msgs_per_s']:,.0f} msgs/s, consume "
        f"{out['consume_msgs_per_s']:,.0f}/s, validate {out['validate_msgs_per_s']:,.0f}/s, "
        f"COPY {out['copy_rows_per_s']:,.0f} rows/s"
    )
    return out

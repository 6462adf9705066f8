"""Notification delivery to Kafka: the publishers of the database outboxes, and the Kafka
client options every Kafka client of ours uses (the consumer's too: consumers/kafka.py).

`Publisher` publishes, at least once and in order:
- dead letters (the `dead_letter` table the Kafka intake writes) -> the DLQ topic, with the
  original key, bytes and headers plus `dlq.*`;
- `kafka_outbox` (refused orders announced upstream) -> its topic;
- `notification_outbox` (the TMF641 notifications projection) -> the events topic.
docs/kafka.md explains the guarantees. The inbound side (the consumer, topic creation,
undecodable batches) is consumers/kafka.py.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.partitioner.default import DefaultPartitioner
from serviceorders.notifications.kafka_headers import headers_from_json
from serviceorders.projections.notifications import absolute_hrefs
from serviceorders.settings import Settings
from serviceorders.storage.db import Busy, ReadDb
from serviceorders.support import logs

log = logging.getLogger("serviceorders.kafka")

OUTBOUND_LOCK = "serviceorders.kafka.outbound"
# How the DLQ publisher opens a dead letter's sealed bytes: db -> ((scope, bytes) -> bytes,
# None once the scope's key is erased). The keys are the audit room's, above this one: the
# Kafka intake registers it (consumers/kafka.py; docs/kafka.md "Dead letters and erasure").
DeadLetterOpener = Callable[[ReadDb], Callable[[str, bytes | None], bytes | None]]
_dead_letter_opener: list[DeadLetterOpener] = []


def open_dead_letters_with(opener: DeadLetterOpener) -> None:
    _dead_letter_opener[:] = [opener]


NOTIFICATIONS = "notifications"  # the outbound_position row of the notification outbox


# ================================================================= record values
def notification_value(body: Any, base_url: str | None) -> bytes:
    """The outbound record's value of a `notification_outbox` payload (decoded): the
    envelope as orjson writes it (compact, keys in the stored order), its
    resource's `href`s absolute under `base_url`, as `absolute_hrefs` makes them.

    The publisher reads the payloads as text and decodes them one at a time: psycopg's
    json loader decoded a whole page of them first, all alive at once (about 30 us per
    3 KB notification, against 11 for decoding and encoding one by one: measured,
    docs/performance.md "Issue 21: the notification publisher").

    With a base URL the `event` is encoded on its own and each `"href":"/` that follows a
    `{` or a `,` gets the base in front (a bytes replace): in orjson's compact output that
    is exactly a key `href` (a quote inside a string is always escaped, so a quote after
    `{` or `,` opens a string, and a string followed by `:` is a key) whose string starts
    with `/` (orjson never escapes `/`), at any depth of `event`, which is what
    `absolute_hrefs` rewrites; the envelope around it is encoded as before (the event's
    bytes as an orjson.Fragment, in its place, or last when absent, as `absolute_hrefs`
    adds it), and JSON encodes a string character by character, so base + href encodes
    as the base's encoding followed by the href's."""
    if not base_url:
        return orjson.dumps(body)
    if not isinstance(body, dict):
        return orjson.dumps(absolute_hrefs(body, base_url))
    base = orjson.dumps(base_url.rstrip("/"))[1:-1]
    event = orjson.dumps(body.get("event"))
    for before in (b"{", b","):
        event = event.replace(before + b'"href":"/', before + b'"href":"' + base + b"/")
    return orjson.dumps({**body, "event": orjson.Fragment(event)})


# ================================================================= Kafka clients
def producer_options(settings: Settings) -> dict[str, Any]:
    """Every KafkaProducer's options: the client's, and the batches' codec
    (SERVICEORDERS_KAFKA_COMPRESSION)."""
    codec = settings.kafka_compression
    return {**client_options(settings), "compression_type": None if codec == "none" else codec}


def client_options(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_bootstrap_servers:
        raise KafkaNotConfigured("KAFKA_BOOTSTRAP_SERVERS is not set")
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers.split(",")}
    for name, value in settings.kafka_options.items():
        options[name] = (
            value.lower() in ("1", "y", "yes", "true", "on")
            if name == "ssl_check_hostname"
            else value
        )
    return options


class KeyPartitioner(DefaultPartitioner):
    """kafka-python's DefaultPartitioner, with the same choice for a keyed record (Java's:
    murmur2 of the key's bytes, made positive, modulo the topic's partition count, among
    its partitions in order), for less of the publisher's CPU: the hash by `murmur2` below
    (the words read by struct, not byte by byte: 3.7 us for an order id instead of 5.9),
    remembered per key (an order's notifications share its key; up to `remember` keys, about
    2 MB, then forgotten all at once). A record without a key (or a key not of bytes), or a
    topic the metadata does not know, is the DefaultPartitioner's, as before."""

    def __init__(self, remember: int = 16384) -> None:
        super().__init__()
        self.remember = remember
        self._hashes: dict[bytes, int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: Any,
        cluster: Any,
    ) -> Any:
        if not isinstance(serialized_key, bytes):
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        found = cluster.partitions_for_topic(topic)
        if not found:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= self.remember:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        ordered = sorted(found)
        return ordered[hashed % len(ordered)]


_M32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """kafka.partitioner.default.murmur2 (the Java client's Utils.murmur2, seed 0x9747b28c),
    the same value for every input, with the 4-byte words unpacked at once."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & _M32
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & _M32
        k = ((k ^ (k >> 24)) * m) & _M32
        h = ((h * m) & _M32) ^ k
    extra = length % 4
    tail = length & ~3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h = ((h ^ data[tail]) * m) & _M32
    h ^= h >> 13
    h = (h * m) & _M32
    return h ^ (h >> 15)


class KafkaNotConfigured(RuntimeError):
    pass


class Backoff:
    """Exponential backoff with a cap, reset by a success."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        self.failures += 1
        return min(self.cap, self.base * 2 ** (self.failures - 1))

    def reset(self) -> None:
        self.failures = 0


# ==================================================================== publishers
class Publisher:
    """Publishes the database outboxes to Kafka, at least once, in order:
    - dead letters -> the DLQ topic (original key, bytes and headers, plus `dlq.*`);
    - `kafka_outbox` -> its topic (refused orders announced upstream);
    - `notification_outbox` (the TMF641 notifications projection) -> the events topic, keyed
      by order id, with the same `eventId`s as the hub; its position in `outbound_position`.
    A row is marked published only after the broker acknowledged it."""

    def __init__(
        self,
        settings: Settings,
        *,
        dead_letters: bool = True,
        notifications: bool = True,
        batch: int = 500,
    ) -> None:
        self.settings = settings
        self.dead_letters, self.notifications, self.batch = dead_letters, notifications, batch
        self._db: ReadDb | None = None
        self._producer: KafkaProducer | None = None
        self.backoff = Backoff()
        self.published = 0

    @property
    def db(self) -> ReadDb:
        if self._db is None:
            settings = self.settings  # (as bootstrap's open_read_db: no import of the runtime)
            self._db = ReadDb.connect(settings.database, settings.lock_timeout_seconds)
        return self._db

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            # Large batches (a notification is 1-4 KB; the default 16 KB batch filled every
            # few records and woke the sender thread each time): fewer produce requests and
            # wake-ups for the same records.
            self._producer = KafkaProducer(
                acks="all",
                linger_ms=5,
                retries=5,
                batch_size=256 * 1024,
                partitioner=KeyPartitioner(),
                **producer_options(self.settings),
            )
        return self._producer

    def run(self, stopping: threading.Event, poll_seconds: float = 0.2) -> None:
        while not stopping.is_set():
            try:
                busy = self.tick()
                self.backoff.reset()
            except Busy:
                busy = False
            except Exception as e:
                self.close(quiet=True)
                wait = self.backoff.next()
                log.warning(
                    "publishing paused (%s: %s); retrying in %.1fs", type(e).__name__, e, wait
                )
                stopping.wait(wait)
                continue
            if not busy:
                stopping.wait(poll_seconds)
        self.close()

    def tick(self) -> bool:
        """Publish one round of each outbox; True when there may be more."""
        more = False
        if self.dead_letters:
            more |= self._publish_dead_letters()
            more |= self._publish_outbox()
        if self.notifications:
            more |= self._publish_notifications()
        return more

    def drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.tick():
            if time.monotonic() > deadline:
                raise TimeoutError("the outboxes did not drain")

    def _now(self) -> Any:
        return self.db.adapt(datetime.now(UTC), "timestamptz")

    def _mark_published(self, table: str, ids: list[Any]) -> None:
        marks = ", ".join(["%s"] * len(ids))
        self.db.execute(
            f"UPDATE {table} SET published_at = %s WHERE id IN ({marks})", [self._now(), *ids]
        )

    def _lock_clause(self) -> str:
        return " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""

    def _send_all(
        self,
        records: Sequence[
            tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]
        ],
    ) -> None:
        futures = [
            self.producer.send(topic, key=key, value=value, headers=headers)
            for topic, key, value, headers in records
        ]
        self.producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)  # raises if the broker refused it: the rows stay unpublished

    def _publish_dead_letters(self) -> bool:
        db = self.db
        with db.transaction():
            rows = db.fetchall(
                "SELECT id, source_topic, source_partition, source_offset, key, value, headers, "
                "reason, category, event_id, sealed_scope FROM dead_letter WHERE "
                f"published_at IS NULL ORDER BY id LIMIT %s{self._lock_clause()}",
                (self.batch,),
            )
            if not rows:
                return False
            opened = None
            if any(r[-1] is not None for r in rows):
                if not _dead_letter_opener:
                    raise RuntimeError("sealed dead letters, and no opener registered")
                opened = _dead_letter_opener[0](db)
            records = []
            for (
                dl_id,
                topic,
                partition,
                offset,
                key,
                value,
                headers,
                reason,
                category,
                event_id,
                scope,
            ) in rows:
                key, value = (
                    None if key is None else bytes(key),
                    None if value is None else bytes(value),
                )
                erased = False
                if scope is not None and opened is not None:  # sealed: the original bytes
                    sealed = (key, value)
                    key, value = opened(scope, key), opened(scope, value)
                    erased = (sealed[0] is not None and key is None) or (
                        sealed[1] is not None and value is None
                    )
                    if erased:  # its key was erased meanwhile: the record says so, empty
                        key, value = None, b""
                hdrs = [
                    *headers_from_json(headers),
                    ("dlq.reason", reason.encode()),
                    ("dlq.category", category.encode()),
                    ("dlq.source.topic", topic.encode()),
                    ("dlq.source.partition", str(partition).encode()),
                    ("dlq.source.offset", str(offset).encode()),
                    ("dlq.event_id", (event_id or "").encode()),
                    ("dlq.id", str(dl_id).encode()),
                    *([("dlq.erased", b"true")] if erased else []),
                ]
                records.append((self.settings.dead_letter_topic, key, value, hdrs))
            self._send_all(records)
            self._mark_published("dead_letter", [r[0] for r in rows])
        self.published += len(rows)
        return len(rows) == self.batch

    def _publish_outbox(self) -> bool:
        db = self.db
        with db.transaction():
            rows = db.fetchall(
                "SELECT id, topic, key, value, headers FROM kafka_outbox WHERE published_at IS "
                f"NULL ORDER BY id LIMIT %s{self._lock_clause()}",
                (self.batch,),
            )
            if not rows:
                return False
            self._send_all(
                [
                    (
                        topic,
                        None if key is None else bytes(key),
                        bytes(value),
                        headers_from_json(headers),
                    )
                    for _, topic, key, value, headers in rows
                ]
            )
            self._mark_published("kafka_outbox", [r[0] for r in rows])
        self.published += len(rows)
        return len(rows) == self.batch

    def _publish_notifications(self) -> bool:
        db = self.db
        with db.transaction(lock=OUTBOUND_LOCK):
            found = db.fetchone(
                "SELECT position, seq FROM outbound_position WHERE name = %s", (NOTIFICATIONS,)
            )
            position, seq = (int(found[0]), int(found[1])) if found else (0, -1)
            # The payload as its JSON text (jsonb's, not decoded by psycopg for the whole
            # page at once), decoded one at a time: see notification_value.
            payload = "payload::text" if db.dialect == "postgres" else "payload"
            rows = db.fetchall(
                f"SELECT position, seq, order_id, event_type, {payload} FROM notification_outbox "
                "WHERE position > %s OR (position = %s AND seq > %s) ORDER BY position, seq "
                "LIMIT %s",
                (position, position, seq, self.batch),
            )
            if not rows:
                return False
            topic, base = self.settings.events_topic, self.settings.public_base_url
            records = []
            for _, _, order_id, event_type, text in rows:
                body = text if isinstance(text, dict) else orjson.loads(text)
                records.append(
                    (
                        topic,
                        str(order_id).encode(),
                        notification_value(body, base),
                        [("eventType", event_type.encode()), ("eventId", body["eventId"].encode())],
                    )
                )
            self._send_all(records)
            last_position, last_seq = int(rows[-1][0]), int(rows[-1][1])
            db.execute(
                "INSERT INTO outbound_position (name, position, seq, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "position = excluded.position, seq = excluded.seq, "
                "updated_at = excluded.updated_at",
                (NOTIFICATIONS, last_position, last_seq, self._now()),
            )
        self.published += len(rows)
        return len(rows) == self.batch

    def close(self, quiet: bool = False) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:
                if not quiet:
                    raise
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()


def start_publisher(settings: Settings, stopping: threading.Event, **kw: Any) -> threading.Thread:
    publisher = Publisher(settings, **kw)
    return logs.start_worker("outbound publisher", "kafka-publisher", publisher.run, stopping)

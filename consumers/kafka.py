"""The Kafka edge's inbound side: the consumer (`serviceorders consume`), topic creation,
publishing upstream traffic to the inbound topic (`publish-sample`, tests), and the
undecodable record batches an operator skips. docs/kafka.md explains the guarantees. The
publishers of the database outboxes (dead letters, refusals, TMF641 notifications) and the
Kafka client options are notification delivery's: notifications/kafka.py. These two modules
are the only ones that import kafka-python.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import Fetcher
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from serviceorders.audit.pii import KeyStore, Vault
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.store import (
    DeadLetter,
    IntakeStore,
    IntakeWrite,
    StaleBatch,
    digest,
    open_dead_letters,
    seal_dead_letters,
    utcnow,
)
from serviceorders.domain.application import ServiceOrders
from serviceorders.notifications.kafka import (
    Backoff,
    client_options,
    open_dead_letters_with,
    producer_options,
)
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

log = logging.getLogger("serviceorders.kafka")
# The DLQ publisher (notifications/kafka.py, a room below this one) opens the sealed dead
# letters it publishes with the intake's keys (consumers/store.py).
open_dead_letters_with(open_dead_letters)

# Group membership tuned for prompt rebalances (and the test broker's slow first join).
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 2000
MAX_POLL_INTERVAL_MS = 120_000
PROBE_SECONDS = 5.0
# A paused (stalled) partition's database position is read again this often: an operator's
# `dlq skip` moves it, and the partition resumes from there.
STALL_RECHECK_SECONDS = 5.0
UNDECODABLE = "undecodable"  # the dead-letter category of a skipped record batch
# A skipped batch's raw bytes are kept in its dead letter up to this size (the DLQ topic must
# take the record); a larger batch stays in its topic until retention, the reason says so.
MAX_RAW_BATCH = 512 * 1024


def ensure_topics(
    settings: Settings, stopping: threading.Event | None = None, timeout: float = 120.0
) -> list[str]:
    """Create the inbound, inventory import, dead-letter and events topics (never relying on
    auto-creation); those that exist are left as they are. Retries while the broker is
    unavailable."""
    wanted = list(
        dict.fromkeys(
            [
                settings.inbound_topic,
                settings.inventory_topic,
                settings.dead_letter_topic,
                settings.events_topic,
            ]
        )
    )
    backoff, deadline = Backoff(), time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
            break
        except KafkaError as e:
            if time.monotonic() > deadline or (stopping and stopping.is_set()):
                raise
            wait = backoff.next()
            log.warning("Kafka unavailable (%s); retrying in %.1fs", e, wait)
            time.sleep(wait)
    created = []
    try:
        existing = set(admin.list_topics())
        for name in wanted:
            if name in existing:
                continue
            try:
                admin.create_topics(
                    [NewTopic(name, settings.topic_partitions, settings.topic_replication)]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    if created:
        log.info("created topics %s (%d partitions)", ", ".join(created), settings.topic_partitions)
    return created


def publish_inbound(settings: Settings, records: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Send (key, value) records, in order, to the inbound topic, as an upstream system
    would; return once the broker has acknowledged them all."""
    producer = KafkaProducer(acks="all", linger_ms=5, **producer_options(settings))
    try:
        for key, value in records:
            producer.send(settings.inbound_topic, key=key, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


# ============================================================= undecodable batches
class UndecodableBatch(KafkaError):
    """A record batch of one partition that cannot be read: its CRC does not match, its
    compressed payload does not decompress, or its codec's library is missing. Raised by
    `poll()` of a consumer made by `guarded()` instead of the library's error, naming the
    partition, the offset the consumer is stuck at and the batch's offsets."""

    retriable = False

    def __init__(
        self,
        tp: TopicPartition,
        offset: int,
        start: int | None,
        end: int | None,
        raw: bytes | None,
        cause: BaseException,
    ) -> None:
        super().__init__(
            f"{tp.topic}[{tp.partition}] offset {offset}: record batch "
            f"cannot be decoded ({type(cause).__name__}: {cause})"
        )
        self.tp, self.offset, self.start, self.end = tp, offset, start, end
        self.raw, self.cause = raw, cause

    @property
    def why(self) -> str:
        return f"{type(self.cause).__name__}: {self.cause}"

    @property
    def offsets(self) -> str:
        """The batch's offsets, as the log line and the dead letter name them."""
        if self.start is None or self.end is None:
            return f"from {self.offset}"
        return f"{self.start}-{self.end - 1}"


class _Tracked:
    """The fetched records of one partition, remembering the batch being read (and its raw
    bytes, a view without a copy) for the error of a batch that cannot be decoded."""

    def __init__(self, records: Any) -> None:
        self._records, self.batch, self.raw = records, None, None

    def next_batch(self) -> Any:
        self.batch = None
        self.raw = getattr(self._records, "_next_slice", None)
        self.batch = self._records.next_batch()
        return self.batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)


class _GuardedRecords(Fetcher.PartitionRecords):
    """kafka-python decodes a partition's batches lazily, inside `poll()`, and an error there
    (UnsupportedCodecError, CorruptRecordError, a codec library's own) escaped `poll()` with
    no partition named, for every partition of the fetch. Here it becomes `UndecodableBatch`
    for its partition alone, and the partition's fetched data is dropped (it is fetched
    again from the same offset unless the partition is paused)."""

    def _unpack_records(
        self, tp: TopicPartition, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Any:
        tracked = _Tracked(records)
        try:
            yield from super()._unpack_records(tp, tracked, key_deserializer, value_deserializer)
        except Exception as e:
            batch = tracked.batch
            start = getattr(batch, "base_offset", None) if batch is not None else None
            end = getattr(batch, "next_offset", None) if batch is not None else None
            raw = bytes(tracked.raw) if batch is not None and tracked.raw is not None else None
            offset = max(self.next_fetch_offset, self.fetch_offset)
            self.drain()
            raise UndecodableBatch(tp, offset, start, end, raw, e) from e


def guarded(consumer: KafkaConsumer) -> KafkaConsumer:
    """The consumer, its undecodable batches reported per partition (`UndecodableBatch`)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "PartitionRecords"):
        raise RuntimeError(
            "this kafka-python has no Fetcher.PartitionRecords: the guard "
            "against undecodable batches needs updating"
        )
    fetcher.PartitionRecords = _GuardedRecords
    return consumer


def read_undecodable(
    settings: Settings, topic: str, partition: int, offset: int, timeout: float = 30.0
) -> UndecodableBatch | None:
    """The batch at `offset` of topic[partition] if it cannot be decoded; None when the
    record there reads fine. Raises LookupError when the offset is not in the log."""
    consumer = guarded(
        KafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="earliest", **client_options(settings)
        )
    )
    try:
        tp = TopicPartition(topic, partition)
        deadline = time.monotonic() + timeout
        known_by = time.monotonic() + min(timeout, 5.0)
        partitions = consumer.partitions_for_topic(topic)
        while partitions is None and time.monotonic() < known_by:
            time.sleep(0.2)  # the first metadata answer may not know the topic yet
            partitions = consumer.partitions_for_topic(topic)
        if partition not in (partitions or set()):
            raise LookupError(f"{topic} has no partition {partition}")
        first = consumer.beginning_offsets([tp]).get(tp) or 0
        end = consumer.end_offsets([tp]).get(tp) or 0
        if not first <= offset < end:
            raise LookupError(
                f"offset {offset} is not in the log of {topic}[{partition}] "
                f"(offsets {first} to {end - 1})"
            )
        consumer.assign([tp])
        consumer.seek(tp, offset)
        while time.monotonic() < deadline:
            try:
                records = consumer.poll(timeout_ms=500)
            except UndecodableBatch as e:
                return e
            if any(r.offset >= offset for batch in records.values() for r in batch):
                return None
        raise TimeoutError(
            f"no answer from the broker for {topic}[{partition}] offset "
            f"{offset} within {timeout:.0f}s"
        )
    finally:
        consumer.close()


class SkipRefused(RuntimeError):
    pass


def skip_batch(db: ReadDb, bad: UndecodableBatch, actor: str, reason: str) -> int:
    """An operator's decision on an undecodable batch, in one transaction: a dead letter of
    category `undecodable` holding the batch's raw bytes, and the intake position moved past
    the batch (compare-and-set from the offset the consumer is stuck at). Returns the dead
    letter's id. A consumer that has the partition paused resumes from the new position."""
    if bad.end is None:
        raise SkipRefused(
            f"the batch at {bad.tp.topic}[{bad.tp.partition}] offset {bad.offset} "
            "cannot even be framed: its end is unknown, nothing skipped"
        )
    topic, partition = bad.tp.topic, bad.tp.partition
    raw = bad.raw
    kept = (
        ""
        if raw is None or len(raw) <= MAX_RAW_BATCH
        else (
            f" (its {len(raw)} bytes are not kept here: larger than {MAX_RAW_BATCH}; they stay "
            "in the topic until its retention)"
        )
    )
    if kept:
        raw = None
    text = (
        f"undecodable record batch (offsets {bad.offsets}){kept}: {bad.why}; skipped by "
        f"{actor}: {reason}"
    )
    headers = (
        ("skip.actor", actor.encode()),
        ("skip.reason", reason.encode()),
        ("skip.batch_offsets", bad.offsets.encode()),
    )
    dead = DeadLetter(topic, partition, bad.offset, None, raw, headers, text, UNDECODABLE)
    # Its bytes sealed under the month's dead-letter key, as the intake's (consumers/store.py)
    (dead,) = seal_dead_letters([dead], Vault(KeyStore(db=db)))
    with db.transaction():
        found = db.fetchone(
            "SELECT next_offset FROM intake_position WHERE topic = %s AND partition = %s",
            (topic, partition),
        )
        expected = None if found is None else int(found[0])
        if expected is not None and expected != bad.offset:
            raise SkipRefused(
                f"the intake position of {topic}[{partition}] is {expected}, not "
                f"{bad.offset}: nothing skipped"
            )
        write = IntakeWrite(
            positions={(topic, partition): (expected, bad.end, None)}, dead_letters=[dead]
        )
        cursor = db.conn.cursor()  # type: ignore[attr-defined]
        try:
            write.write(cursor, db.dialect)
        except StaleBatch:
            raise SkipRefused(
                f"the intake position of {topic}[{partition}] moved meanwhile: nothing skipped"
            ) from None
        row = db.fetchone(
            "SELECT id FROM dead_letter WHERE source_topic = %s AND "
            "source_partition = %s AND source_offset = %s AND digest = %s",
            (topic, partition, bad.offset, digest(None, raw)),
        )
    assert row is not None
    return int(row[0])


# ====================================================================== consumer
@dataclass
class Stats:
    batches: int = 0
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    stale_batches: int = 0
    failures: int = 0
    rewinds: int = 0


@dataclass
class _Probe:
    """A partition resumed at a stored position: the broker must still hold the record just
    before it, or its log is behind the database (topic recreated, broker data lost)."""

    expected: int
    deadline: float
    digest: str | None = None  # of the record applied last: the one the probe must find


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: ConsumerWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self.worker.stored.pop(tp, None)
            self.worker.probes.pop(tp, None)
            self.worker.unstall(tp)
        if revoked:
            log.info("partitions revoked: %s", _names(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        if assigned:
            log.info("partitions assigned: %s", _names(assigned))
            self.worker.resume_from_database(assigned)


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))


@dataclass
class ConsumerWorker:
    """Joins the group, resumes every assigned partition from the database's position, and
    applies micro-batches (one transaction each) until `stopping` is set.

    `app`: the application it applies the batches with, built by the composition root
    (`bootstrap.build_application(settings)`: this room imports no runtime); the worker
    owns it and closes it in `close`."""

    settings: Settings
    stopping: threading.Event = field(default_factory=threading.Event)
    consumer: KafkaConsumer | None = None
    stats: Stats = field(default_factory=Stats)
    stored: dict[TopicPartition, int | None] = field(default_factory=dict)
    probes: dict[TopicPartition, _Probe] = field(default_factory=dict)
    # Paused partitions whose next batch cannot be decoded, until their position moves.
    stalled: dict[TopicPartition, UndecodableBatch] = field(default_factory=dict)
    exit_code: int = 0
    # The process's EngineMetrics (serviceorders.metrics), or None: batch_done(), lag()
    metrics: Any = None
    app: ServiceOrders = field(kw_only=True)

    def __post_init__(self) -> None:
        self._db: ReadDb | None = None
        self.backoff = Backoff()
        self._stall_check = 0.0

    # -------------------------------------------------------------- database
    @property
    def db(self) -> ReadDb:
        if self._db is None:  # (as bootstrap's open_read_db: no import of the runtime)
            settings = self.settings
            self._db = ReadDb.connect(settings.database, settings.lock_timeout_seconds)
        return self._db

    def _drop_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
        self._db = None

    @property
    def topics(self) -> list[str]:
        """The topics consumed: the inbound (TMF641) and the inventory import (TMF638)."""
        return list(dict.fromkeys([self.settings.inbound_topic, self.settings.inventory_topic]))

    def _stored_positions(self) -> dict[tuple[str, int], int]:
        store = IntakeStore(self.db)
        return {
            (topic, partition): offset
            for topic in self.topics
            for partition, offset in store.positions(topic).items()
        }

    def _positions(self) -> dict[tuple[str, int], int]:
        """The database's positions, retried until the database answers (or we stop)."""
        while True:
            try:
                return self._stored_positions()
            except Exception as e:
                self._drop_db()
                if self.stopping.is_set():
                    raise
                wait = self.backoff.next()
                log.warning("database unavailable (%s); retrying in %.1fs", e, wait)
                self._wait(wait)

    def _digests(self) -> dict[tuple[str, int], str | None]:
        try:
            store = IntakeStore(self.db)
            return {
                (topic, partition): found
                for topic in self.topics
                for partition, found in store.last_digests(topic).items()
            }
        except Exception:
            self._drop_db()
            return {}

    def _wait(self, seconds: float) -> None:
        """Sleep without dropping out of the group: poll paused partitions meanwhile."""
        deadline = time.monotonic() + seconds
        consumer = self.consumer
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if consumer is not None and consumer.assignment():
                consumer.pause(*consumer.assignment())
                consumer.poll(
                    timeout_ms=int(min(0.5, max(0.0, deadline - time.monotonic())) * 1000)
                )
            else:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if consumer is not None and consumer.assignment():
            consumer.resume(*[tp for tp in consumer.assignment() if tp not in self.stalled])

    def resume_from_database(self, partitions: Iterable[TopicPartition]) -> None:
        """Seek each partition to what the database recorded (the truth), and probe that
        the broker's log still reaches it."""
        assert self.consumer is not None
        positions = self._positions()
        digests = self._digests()
        for tp in partitions:
            position = positions.get((tp.topic, tp.partition))
            self.stored[tp] = position
            self.probes.pop(tp, None)
            stalled = self.stalled.get(tp)
            if stalled is not None:
                if position in (None, stalled.offset):  # stays paused until it moves
                    self.consumer.seek(tp, stalled.offset)
                    continue
                self.unstall(tp)
                self.consumer.resume(tp)
            if position is None:
                self.consumer.seek_to_beginning(tp)
            elif position == 0:
                self.consumer.seek(tp, 0)
            else:  # re-read the last applied record: it must still be there
                self.consumer.seek(tp, position - 1)
                self.probes[tp] = _Probe(
                    position,
                    time.monotonic() + PROBE_SECONDS,
                    digests.get((tp.topic, tp.partition)),
                )

    # ------------------------------------------------------------------ loop
    def connect(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            max_poll_records=self.settings.consume_batch,
            **client_options(self.settings),
        )
        guarded(consumer)
        consumer.subscribe(self.topics, listener=_Listener(self))
        self.consumer = consumer
        return consumer

    def run(self, on_batch: Callable[[Stats], None] | None = None) -> int:
        """Consume until `stopping` is set; the batch in hand is finished and committed."""
        log.info("consuming %s as group %s", ", ".join(self.topics), self.settings.consumer_group)
        while not self.stopping.is_set():
            try:
                consumer = self.consumer or self.connect()
                records = consumer.poll(timeout_ms=500, max_records=self.settings.consume_batch)
            except UndecodableBatch as e:
                self._stall(e)
                continue
            except KafkaError as e:
                wait = self.backoff.next()
                log.warning("Kafka unavailable (%s); retrying in %.1fs", e, wait)
                self._close_consumer()
                self._wait(wait)
                continue
            messages = self._messages(records)
            self._check_probes()
            if self.metrics is not None:
                self._report_lag()  # the batch in hand is not applied yet
            if messages:
                self.step(messages)
                if on_batch is not None:
                    on_batch(self.stats)
                if self.metrics is not None:
                    self._report_lag()
            if self.stalled:
                self._recheck_stalled()
        self.close()
        return self.exit_code

    # ------------------------------------------------------ undecodable batches
    def _stall(self, bad: UndecodableBatch) -> None:
        """Pause the partition of a batch that cannot be decoded; the others go on."""
        consumer, tp = self.consumer, bad.tp
        if consumer is None or tp not in self.stored:
            return  # no longer ours
        probe = self.probes.get(tp)
        if probe is not None and bad.offset < probe.expected:
            # The probe's record (the one before the stored position) is in this batch: the
            # broker's log reaches the position, which is all the probe asks.
            self.probes.pop(tp, None)
            log.warning(
                "%s[%d]: the record before the stored position %d is in a batch that "
                "cannot be decoded; reading on from %d",
                tp.topic,
                tp.partition,
                probe.expected,
                probe.expected,
            )
            consumer.seek(tp, probe.expected)
            return
        known = self.stalled.get(tp)
        self.stalled[tp] = bad
        consumer.pause(tp)
        self._stall_check = time.monotonic() + STALL_RECHECK_SECONDS
        if known is not None and known.offset == bad.offset:
            return
        log.error(
            "!!! %s[%d] offset %d: the record batch (offsets %s) cannot be decoded "
            "(%s). This partition is paused, the others go on. To dead-letter the batch "
            "and move past it: serviceorders dlq skip --topic %s --partition %d "
            "--offset %d --actor NAME --reason TEXT (docs/kafka.md)",
            tp.topic,
            tp.partition,
            bad.offset,
            bad.offsets,
            bad.why,
            tp.topic,
            tp.partition,
            bad.offset,
            extra={
                "kafka_topic": tp.topic,
                "kafka_partition": tp.partition,
                "kafka_offset": bad.offset,
            },
        )
        if self.metrics is not None:
            self.metrics.stalled(tp.topic, tp.partition, bad.offset)

    def unstall(self, tp: TopicPartition) -> None:
        if self.stalled.pop(tp, None) is not None and self.metrics is not None:
            self.metrics.stalled(tp.topic, tp.partition, None)

    def _recheck_stalled(self) -> None:
        """Resume a stalled partition whose database position moved (`dlq skip`)."""
        if time.monotonic() < self._stall_check or self.consumer is None:
            return
        self._stall_check = time.monotonic() + STALL_RECHECK_SECONDS
        try:
            positions = self._stored_positions()
        except Exception as e:
            self._drop_db()
            log.warning("database unavailable (%s); stalled partitions checked again later", e)
            return
        for tp, bad in list(self.stalled.items()):
            position = positions.get((tp.topic, tp.partition))
            if position is None or position == bad.offset:
                continue
            log.warning(
                "%s[%d]: the intake position moved from %d to %d (skipped): resuming",
                tp.topic,
                tp.partition,
                bad.offset,
                position,
            )
            self.unstall(tp)
            self.stored[tp] = position
            self.probes.pop(tp, None)
            self.consumer.seek(tp, position)
            self.consumer.resume(tp)

    def _report_lag(self) -> None:
        """Per assigned partition: the broker's high watermark (from the last fetch) minus
        the position the database recorded."""
        consumer = self.consumer
        if consumer is None:
            return
        lags = {}
        for tp, position in list(self.stored.items()):
            high = consumer.highwater(tp)
            if high is not None:
                lags[(tp.topic, tp.partition)] = max(0, high - (position or 0))
        self.metrics.lag(lags)

    def _messages(self, records: dict[TopicPartition, list[Any]]) -> list[Message]:
        out = []
        for tp, batch in records.items():
            if not batch:
                continue
            probe = self.probes.pop(tp, None)
            if (
                probe is not None
                and probe.digest is not None
                and batch[0].offset == probe.expected - 1
                and digest(batch[0].key, batch[0].value) != probe.digest
            ):
                # A record at that offset, but not the one applied there: the log was
                # replaced (an emptied broker that already refilled past the position).
                self._log_behind(tp, probe.expected)
                continue
            if probe is not None and batch[0].offset < probe.expected - 1:
                # Reset to before the record we sought (Kafka's answer to a fetch beyond the
                # log's end, with auto_offset_reset): these records are not ours to skip.
                self._log_behind(tp, probe.expected)
                continue
            if probe is not None and batch[0].offset > probe.expected - 1:
                log.warning(
                    "%s[%d]: resumed at %d but the broker's first record is %d",
                    tp.topic,
                    tp.partition,
                    probe.expected,
                    batch[0].offset,
                )
            for r in batch:
                out.append(
                    Message(
                        tp.topic,
                        tp.partition,
                        r.offset,
                        r.key,
                        r.value,
                        tuple((k, v) for k, v in (r.headers or ())),
                    )
                )
        return out

    def _check_probes(self) -> None:
        now = time.monotonic()
        for tp, probe in list(self.probes.items()):
            if now < probe.deadline:
                continue
            self.probes.pop(tp, None)
            end = self._end_offset(tp)
            if end is not None and end >= probe.expected:
                # The log reaches the position; only the records before it are gone
                # (retention): nothing to rewind, nothing to stop for.
                log.warning(
                    "%s[%d]: no record before the stored position %d, but the log "
                    "ends at %d: reading on",
                    tp.topic,
                    tp.partition,
                    probe.expected,
                    end,
                )
                continue
            self._log_behind(tp, probe.expected)

    def _end_offset(self, tp: TopicPartition) -> int | None:
        assert self.consumer is not None
        try:
            return self.consumer.end_offsets([tp]).get(tp)
        except KafkaError:
            return None

    def _log_behind(self, tp: TopicPartition, expected: int) -> None:
        """The broker's log for `tp` ends before the stored position."""
        policy = self.settings.log_behind_policy
        log.error(
            "!!! %s[%d]: the broker's log ends before the stored position %d: the topic "
            "was recreated or the broker lost its data. Policy %r: %s",
            tp.topic,
            tp.partition,
            expected,
            policy,
            "re-reading the partition from its first offset; eventIds already applied are skipped"
            if policy == "rewind"
            else "stopping the consumer",
        )
        if policy == "stop":
            self.exit_code = 3
            self.stopping.set()
            return
        assert self.consumer is not None
        start = self.consumer.beginning_offsets([tp]).get(tp) or 0
        while not self.stopping.is_set():
            try:
                with self.db.transaction():
                    moved = self.db.execute(
                        "UPDATE intake_position SET next_offset = %s, updated_at = %s, "
                        "last_digest = NULL WHERE topic = %s AND partition = %s AND "
                        "next_offset = %s",
                        (
                            start,
                            self.db.adapt(utcnow(), "timestamptz"),
                            tp.topic,
                            tp.partition,
                            expected,
                        ),
                    )
                    del moved
                break
            except Exception as e:
                self._drop_db()
                log.warning("database unavailable (%s); retrying", e)
                self._wait(self.backoff.next())
        self.stats.rewinds += 1
        self.resume_from_database([tp])

    def step(self, messages: list[Message]) -> None:
        """One micro-batch: one transaction, then the Kafka commit."""
        consumer = self.consumer
        assert consumer is not None
        mine = [m for m in messages if TopicPartition(m.topic, m.partition) in self.stored]
        stored = {(tp.topic, tp.partition): pos for tp, pos in self.stored.items()}
        started = time.perf_counter()
        try:
            intake = Intake(
                self.app,
                IntakeStore(self.db),
                self.settings.events_topic,
                inventory_topic=self.settings.inventory_topic,
            )
            result = intake.process(mine, stored)
        except StaleBatch as e:
            self.stats.stale_batches += 1
            log.warning("batch dropped, nothing written: %s", e)
            self.resume_from_database(list(self.stored))
            return
        except Exception as e:
            self.stats.failures += 1
            self._drop_db()
            wait = self.backoff.next()
            log.warning(
                "batch not written (%s: %s); reading it again in %.1fs", type(e).__name__, e, wait
            )
            self._wait(wait)
            self.resume_from_database(list(self.stored))
            return
        self.backoff.reset()
        self.stats.batches += 1
        self.stats.messages += len(mine)
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.dead_letters += result.dead_letters
        if self.metrics is not None:
            self.metrics.batch_done(
                result.applied,
                result.duplicates,
                result.dead_categories,
                time.perf_counter() - started,
            )
        offsets = {}
        for (topic, partition), new in result.positions.items():
            tp = TopicPartition(topic, partition)
            self.stored[tp] = new
            offsets[tp] = OffsetAndMetadata(new, "", -1)
        if offsets:
            try:  # the database is the truth; Kafka's committed offsets only follow it
                consumer.commit(offsets)
            except KafkaError as e:
                log.info("offset commit to Kafka failed (%s); the database holds the position", e)
        if mine:
            log.info(
                "batch: %d messages, %d applied, %d duplicates, %d dead letters in %.1f ms",
                len(mine),
                result.applied,
                result.duplicates,
                result.dead_letters,
                (time.perf_counter() - started) * 1000,
                extra=_batch_fields(mine, result, time.perf_counter() - started),
            )

    def _close_consumer(self) -> None:
        consumer, self.consumer = self.consumer, None
        self.stored.clear()
        self.probes.clear()
        for tp in list(self.stalled):
            self.unstall(tp)
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)

    def close(self) -> None:
        self._close_consumer()
        self._drop_db()
        self.app.close()


def _batch_fields(messages: list[Message], result: Any, seconds: float) -> dict[str, Any]:
    """The batch's log fields: its counts and duration; its Kafka position (topic, and the
    partition and first / last offsets when it holds one partition); the correlation id and
    order when all its applied messages share one."""
    fields: dict[str, Any] = {
        "messages": len(messages),
        "applied": result.applied,
        "duplicates": result.duplicates,
        "dead_letters": result.dead_letters,
        "duration_ms": round(seconds * 1000, 1),
    }
    topics = {m.topic for m in messages}
    partitions = {(m.topic, m.partition) for m in messages}
    if len(topics) == 1:
        fields["kafka_topic"] = messages[0].topic
    if len(partitions) == 1:
        fields["kafka_partition"] = messages[0].partition
        fields["kafka_offset"] = min(m.offset for m in messages)
        fields["kafka_last_offset"] = max(m.offset for m in messages)
    else:
        fields["kafka_partitions"] = ",".join(f"{t}[{p}]" for t, p in sorted(partitions))
    if len(result.correlation_ids) == 1:
        fields["correlation_id"] = next(iter(result.correlation_ids))
    if len(result.order_ids) == 1:
        fields["order_id"] = str(next(iter(result.order_ids)))
    else:
        fields["orders"] = len(result.order_ids)
    return fields

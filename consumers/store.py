"""What the Kafka edge keeps in the database, beside the events (docs/kafka.md, "Tables").

- `intake_position`: per inbound (topic, partition), the next offset to read. The truth the
  consumer resumes from; Kafka's committed offsets only follow it.
- `intake_applied`: every inbound `eventId` that took effect (unique: the same `eventId` at
  another offset is a duplicate).
- `dead_letter`: every refused message, its key and bytes sealed (below), headers, reason
  and category; also the outbox from which the DLQ topic is published (`published_at`).
- `kafka_outbox`: other records to publish (a refused order's announcement upstream).
- `outbound_position`: how far the `notification_outbox` was published to Kafka.

All but the last are written by `IntakeWrite.write`, inside the transaction that stores
the batch's events (`app.save(*orders, intake=write)`: an IntakeWrite is the storage's
`TransactionalRows`, storage/recorders.py), so a batch takes effect whole or not at all.

A dead letter's key and bytes are sealed (`seal_dead_letters`, issue 19; docs/kafka.md,
"Dead letters and erasure") with the Vault of audit/pii.py: under the customer's key when
the message names one (a related party with role customer in the order it carries, or the
known customer of the order it names), else under the month's dead-letter key
(`deadletter:<yyyy-mm>`), whose rows `purge_dead_letters` drops after
SERVICEORDERS_DLQ_RETENTION_DAYS before deleting the key. `sealed_scope` names the key;
NULL is a row written before (plain bytes). Reads reveal them (`IntakeStore.dead_letters`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import orjson
from serviceorders.audit.pii import ErasedScope, KeyStore, Vault, erase
from serviceorders.notifications.kafka_headers import headers_from_json, headers_json
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

__all__ = [
    "TABLES",
    "Applied",
    "DeadLetter",
    "IntakeStore",
    "IntakeWrite",
    "OutboxRecord",
    "StaleBatch",
    "create_tables",
    "customer_named",
    "digest",
    "erase_dead_letters",
    "erase_intake_rows",
    "headers_from_json",  # the tables' header format (notifications/kafka_headers.py)
    "open_dead_letters",
    "purge_dead_letters",
    "purge_hourly",
    "record_dead_letters",
    "seal_dead_letters",
    "utcnow",
]

POSTGRES_DDL = (
    """CREATE TABLE IF NOT EXISTS intake_position (
        topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,
        updated_at timestamptz NOT NULL, last_digest text, PRIMARY KEY (topic, partition))""",
    "ALTER TABLE intake_position ADD COLUMN IF NOT EXISTS last_digest text",
    """CREATE TABLE IF NOT EXISTS intake_applied (
        event_id text PRIMARY KEY, topic text NOT NULL, partition integer NOT NULL,
        "offset" bigint NOT NULL, order_id uuid, event_type text NOT NULL,
        applied_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dead_letter (
        id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,
        source_topic text NOT NULL, source_partition integer NOT NULL,
        source_offset bigint NOT NULL, digest text NOT NULL, key bytea, value bytea,
        headers jsonb NOT NULL, reason text NOT NULL, category text NOT NULL, event_id text,
        published_at timestamptz, replayed_at timestamptz, replay_count integer NOT NULL DEFAULT 0,
        sealed_scope text, UNIQUE (source_topic, source_partition, source_offset, digest))""",
    "ALTER TABLE dead_letter ADD COLUMN IF NOT EXISTS sealed_scope text",
    "CREATE INDEX IF NOT EXISTS dead_letter__unpublished ON dead_letter (id) "
    "WHERE published_at IS NULL",
    """CREATE TABLE IF NOT EXISTS kafka_outbox (
        id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, created_at timestamptz NOT NULL,
        topic text NOT NULL, key bytea, value bytea NOT NULL, headers jsonb NOT NULL,
        published_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS kafka_outbox__unpublished ON kafka_outbox (id) "
    "WHERE published_at IS NULL",
    """CREATE TABLE IF NOT EXISTS outbound_position (
        name text PRIMARY KEY, position bigint NOT NULL, seq integer NOT NULL,
        updated_at timestamptz NOT NULL)""",
)

SQLITE_DDL = (
    """CREATE TABLE IF NOT EXISTS intake_position (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
        updated_at TEXT NOT NULL, last_digest TEXT, PRIMARY KEY (topic, partition))""",
    """CREATE TABLE IF NOT EXISTS intake_applied (
        event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,
        "offset" INTEGER NOT NULL, order_id TEXT, event_type TEXT NOT NULL,
        applied_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dead_letter (
        id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
        source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL,
        source_offset INTEGER NOT NULL, digest TEXT NOT NULL, key BLOB, value BLOB,
        headers TEXT NOT NULL, reason TEXT NOT NULL, category TEXT NOT NULL, event_id TEXT,
        published_at TEXT, replayed_at TEXT, replay_count INTEGER NOT NULL DEFAULT 0,
        sealed_scope TEXT, UNIQUE (source_topic, source_partition, source_offset, digest))""",
    """CREATE TABLE IF NOT EXISTS kafka_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL, topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL,
        headers TEXT NOT NULL, published_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS outbound_position (
        name TEXT PRIMARY KEY, position INTEGER NOT NULL, seq INTEGER NOT NULL,
        updated_at TEXT NOT NULL)""",
)

TABLES = ("intake_position", "intake_applied", "dead_letter", "kafka_outbox", "outbound_position")


def create_tables(db: ReadDb) -> None:
    with db.transaction():
        for statement in POSTGRES_DDL if db.dialect == "postgres" else SQLITE_DDL:
            db.execute(statement)
        if db.dialect == "sqlite":  # a file made before the column existed
            columns = {r[1] for r in db.fetchall("PRAGMA table_info(intake_position)")}
            if "last_digest" not in columns:
                db.execute("ALTER TABLE intake_position ADD COLUMN last_digest TEXT")
            columns = {r[1] for r in db.fetchall("PRAGMA table_info(dead_letter)")}
            if "sealed_scope" not in columns:
                db.execute("ALTER TABLE dead_letter ADD COLUMN sealed_scope TEXT")


def utcnow() -> datetime:
    return datetime.now(UTC)


def digest(key: bytes | None, value: bytes | None) -> str:
    h = hashlib.sha256()
    for part in (key, value):
        h.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


class StaleBatch(Exception):
    """The stored position of a partition is not the one the batch started from: another
    consumer (after a rebalance) or an earlier attempt got there first. Nothing was written."""


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str
    category: str
    event_id: str | None = None
    # Set by `seal_dead_letters`: the key that sealed `key` and `value` (None: plain), and
    # the digest of the original bytes (the row's identity).
    sealed_scope: str | None = None
    original_digest: str | None = None
    # False: not for the DLQ topic (a line of an `inventory import` file, which came from no
    # topic): written as published.
    publish: bool = True

    @property
    def digest(self) -> str:
        return self.original_digest or digest(self.key, self.value)


@dataclass(frozen=True)
class Applied:
    event_id: str
    topic: str
    partition: int
    offset: int
    order_id: UUID | None
    event_type: str


@dataclass(frozen=True)
class OutboxRecord:
    event_id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class IntakeWrite:
    """Everything a batch records beside its events, written in their transaction.

    `positions` maps (topic, partition) to (expected stored next offset or None when the
    batch started with no stored position, new next offset, digest of the last record or
    None when it is not known: an operator's skip of an undecodable batch)."""

    positions: dict[tuple[str, int], tuple[int | None, int, str | None]] = field(
        default_factory=dict
    )
    applied: list[Applied] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)

    def write(self, cursor: Any, dialect: str) -> None:
        """Run on the recorder's cursor, before its events are inserted (the storage's
        `TransactionalRows`)."""
        pg = dialect == "postgres"
        q = (lambda sql: sql) if pg else (lambda sql: sql.replace("%s", "?"))
        now: Any = utcnow() if pg else utcnow().isoformat(timespec="microseconds")
        blob: Any = bytes if pg else (lambda b: b)
        for (topic, partition), (expected, new, last) in sorted(self.positions.items()):
            if expected is None:  # first batch of this partition: the row must not exist
                cursor.execute(
                    q(
                        "INSERT INTO intake_position (topic, partition, next_offset, "
                        "updated_at, last_digest) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (topic, partition) DO NOTHING RETURNING 1"
                    ),
                    (topic, partition, new, now, last),
                )
            else:  # compare-and-set: only from the position the batch started from
                cursor.execute(
                    q(
                        "UPDATE intake_position SET next_offset = %s, updated_at = %s, "
                        "last_digest = %s WHERE topic = %s AND partition = %s AND "
                        "next_offset = %s RETURNING 1"
                    ),
                    (new, now, last, topic, partition, expected),
                )
            if cursor.fetchone() is None:
                raise StaleBatch(
                    f"{topic}[{partition}]: the stored position is no longer "
                    f"{expected}; another consumer took over this partition"
                )
        if self.applied:
            cursor.executemany(
                q(
                    'INSERT INTO intake_applied (event_id, topic, partition, "offset", order_id, '
                    "event_type, applied_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ),
                [
                    (
                        a.event_id,
                        a.topic,
                        a.partition,
                        a.offset,
                        a.order_id if pg or a.order_id is None else str(a.order_id),
                        a.event_type,
                        now,
                    )
                    for a in self.applied
                ],
            )
        if self.dead_letters:
            cursor.executemany(
                q(
                    "INSERT INTO dead_letter (created_at, source_topic, source_partition, "
                    "source_offset, digest, key, value, headers, reason, category, event_id, "
                    "sealed_scope, published_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (source_topic, source_partition, source_offset, digest) "
                    "DO NOTHING"
                ),
                [
                    (
                        now,
                        d.topic,
                        d.partition,
                        d.offset,
                        d.digest,
                        None if d.key is None else blob(d.key),
                        None if d.value is None else blob(d.value),
                        headers_json(d.headers),
                        d.reason,
                        d.category,
                        d.event_id,
                        d.sealed_scope,
                        None if d.publish else now,
                    )
                    for d in self.dead_letters
                ],
            )
        if self.outbox:
            cursor.executemany(
                q(
                    "INSERT INTO kafka_outbox (event_id, created_at, topic, key, value, headers) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
                ),
                [
                    (
                        o.event_id,
                        now,
                        o.topic,
                        None if o.key is None else blob(o.key),
                        blob(o.value),
                        headers_json(o.headers),
                    )
                    for o in self.outbox
                ],
            )
        # No fetch after these: in the recorder's pipeline a fetch may pick up the result
        # of an earlier statement. Their errors surface at the library's sync or at commit.


class IntakeStore:
    """Reads of the intake tables (the writes go through `IntakeWrite`)."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db

    @property
    def events_table(self) -> str:
        return self.db.events_table

    def positions(self, topic: str, partitions: Iterable[int] | None = None) -> dict[int, int]:
        rows = self.db.fetchall(
            "SELECT partition, next_offset FROM intake_position WHERE topic = %s", (topic,)
        )
        wanted = None if partitions is None else set(partitions)
        return {int(p): int(o) for p, o in rows if wanted is None or p in wanted}

    def last_digests(self, topic: str) -> dict[int, str | None]:
        """Per partition, the digest of the last record applied (None: not known)."""
        return {
            int(p): d
            for p, d in self.db.fetchall(
                "SELECT partition, last_digest FROM intake_position WHERE topic = %s", (topic,)
            )
        }

    def applied_ids(self, event_ids: Sequence[str]) -> set[str]:
        if self.db.dialect == "postgres":  # one array parameter: one plan, any length
            return {
                r[0]
                for r in self.db.fetchall(
                    "SELECT event_id FROM intake_applied WHERE event_id = ANY(%s)",
                    (list(event_ids),),
                )
            }
        found: set[str] = set()
        for i in range(0, len(event_ids), 500):
            chunk = list(event_ids[i : i + 500])
            marks = ", ".join(["%s"] * len(chunk))
            found.update(
                r[0]
                for r in self.db.fetchall(
                    f"SELECT event_id FROM intake_applied WHERE event_id IN ({marks})", chunk
                )
            )
        return found

    def existing_orders(self, order_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these orders have events (one query, not one per order)."""
        found: set[UUID] = set()
        ids = list(dict.fromkeys(order_ids))
        if self.db.dialect == "postgres":
            return {
                UUID(str(r[0]))
                for r in self.db.fetchall(
                    f"SELECT originator_id FROM {self.events_table} WHERE originator_id = ANY(%s) "
                    "AND originator_version = 1",
                    (ids,),
                )
            }
        for i in range(0, len(ids), 500):  # SQLite: ids as it stores them (hex)
            chunk = [u.hex for u in ids[i : i + 500]]
            marks = ", ".join(["%s"] * len(chunk))
            found.update(
                UUID(str(r[0]))
                for r in self.db.fetchall(
                    f"SELECT DISTINCT originator_id FROM {self.events_table} "
                    f"WHERE originator_id IN ({marks}) AND originator_version = 1",
                    chunk,
                )
            )
        return found

    # ----------------------------------------------------------------- dead letters
    def customer_of(self, order_id: str | None, external_id: str | None) -> str | None:
        """The customer of a known order (order_summary), for sealing a dead letter that
        names its order but not its customer (a revision, a cancellation, item states)."""
        if order_id is not None:
            try:
                key = UUID(order_id)
            except ValueError:
                key = None
            if key is not None:
                row = self.db.fetchone(
                    "SELECT customer_id FROM order_summary WHERE id = %s",
                    (self.db.adapt(key, "uuid"),),
                )
                if row is not None and row[0]:
                    return str(row[0])
        if external_id:
            row = self.db.fetchone(
                "SELECT customer_id FROM order_summary WHERE external_id = %s "
                "AND customer_id IS NOT NULL LIMIT 1",
                (external_id,),
            )
            if row is not None and row[0]:
                return str(row[0])
        return None

    def dead_letters(
        self,
        *,
        since_id: int = 0,
        limit: int = 100,
        category: str | None = None,
        include_replayed: bool = True,
        reveal: bool = True,
    ) -> list[dict[str, Any]]:
        """Dead letters, oldest first. `key` and `value` are the message's bytes (revealed;
        with `reveal=False` as stored); `sealed_scope` names the key that seals them (None:
        a row written before dead letters were sealed); `erased` is true when that key is
        gone (the bytes cannot be read any more: key and value None)."""
        where = ["id > %s"]
        params: list[Any] = [since_id]
        if category:
            where.append("category = %s")
            params.append(category)
        if not include_replayed:
            where.append("replayed_at IS NULL")
        params.append(limit)
        rows = self.db.fetchall(
            "SELECT id, created_at, source_topic, source_partition, source_offset, key, value, "
            "headers, reason, category, event_id, published_at, replayed_at, replay_count, "
            f"sealed_scope FROM dead_letter WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",
            params,
        )
        names = (
            "id",
            "created_at",
            "source_topic",
            "source_partition",
            "source_offset",
            "key",
            "value",
            "headers",
            "reason",
            "category",
            "event_id",
            "published_at",
            "replayed_at",
            "replay_count",
            "sealed_scope",
        )
        out = []
        opened = open_dead_letters(self.db) if reveal else None
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["key"] = None if item["key"] is None else bytes(item["key"])
            item["value"] = None if item["value"] is None else bytes(item["value"])
            item["headers"] = headers_from_json(item["headers"])
            item["erased"] = False
            scope = item["sealed_scope"]
            if opened is not None and scope is not None:
                key, value = opened(scope, item["key"]), opened(scope, item["value"])
                erased = (item["key"] is not None and key is None) or (
                    item["value"] is not None and value is None
                )
                item["key"], item["value"] = (None, None) if erased else (key, value)
                item["erased"] = erased
            out.append(item)
        return out

    def dead_letter(self, dl_id: int) -> dict[str, Any] | None:
        found = self.dead_letters(since_id=dl_id - 1, limit=1)
        return found[0] if found and found[0]["id"] == dl_id else None

    def mark_replayed(self, dl_id: int) -> None:
        self.db.execute(
            "UPDATE dead_letter SET replayed_at = %s, replay_count = replay_count + 1 "
            "WHERE id = %s",
            (self.db.adapt(utcnow(), "timestamptz"), dl_id),
        )

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("intake_applied", "dead_letter", "kafka_outbox"):
            row = self.db.fetchone(f"SELECT count(*) FROM {table}")
            out[table] = int(row[0]) if row else 0
        row = self.db.fetchone("SELECT count(*) FROM dead_letter WHERE published_at IS NULL")
        out["dead_letter_unpublished"] = int(row[0]) if row else 0
        row = self.db.fetchone("SELECT count(*) FROM kafka_outbox WHERE published_at IS NULL")
        out["kafka_outbox_unpublished"] = int(row[0]) if row else 0
        return out


# ---------------------------------------------------------- sealed dead letters
DEAD_LETTER_SCOPE = "deadletter:"  # + yyyy-mm: the key of dead letters naming no customer


@runtime_checkable
class ByteSealer(Protocol):
    def seal_bytes(self, scope: str, data: bytes) -> bytes: ...


def _resources(data: Any) -> Iterable[dict[str, Any]]:
    """The order bodies a message may carry, where the envelope puts them (consumers/
    envelope.py): event.serviceOrder (create, revision, state change) and
    event.cancelServiceOrder.serviceOrder, in either spelling."""
    event = data.get("event") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        return
    for name in ("serviceOrder", "ServiceOrder"):
        if isinstance(found := event.get(name), dict):
            yield found
    for name in ("cancelServiceOrder", "CancelServiceOrder"):
        if isinstance(cancel := event.get(name), dict):
            yield cancel
            if isinstance(found := cancel.get("serviceOrder"), dict):
                yield found


def _parsed(value: bytes | None) -> Any:
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _services(data: Any) -> Iterable[dict[str, Any]]:
    """The TMF638 service a message of the inventory import topic (or a line of an import
    file) carries: the value itself when it is no envelope, else event.service."""
    if not isinstance(data, dict):
        return
    event = data.get("event")
    if event is None:
        yield data
    elif isinstance(event, dict):
        for name in ("service", "Service"):
            if isinstance(found := event.get(name), dict):
                yield found


def customer_named(value: bytes | None) -> str | None:
    """The customer a message names, best effort: the id of the first related party with
    role customer in an order body it carries (the rule of domain/privacy.scope_of), or in
    the TMF638 service it imports (the scope its service's data is sealed under)."""
    data = _parsed(value)
    for resource in [*_resources(data), *_services(data)]:
        parties = resource.get("relatedParty")
        for party in parties if isinstance(parties, list) else ():
            if not isinstance(party, dict):
                continue
            role, party_id = party.get("role"), party.get("id")
            if (
                isinstance(role, str)
                and role.lower() == "customer"
                and isinstance(party_id, str)
                and 0 < len(party_id) <= 200
            ):
                return party_id
    return None


def order_named(value: bytes | None, key: bytes | None) -> tuple[str | None, str | None]:
    """(order id, external id) of the order a message names, best effort (its key is the
    upstream's order reference)."""
    for resource in _resources(_parsed(value)):
        order_id, external = resource.get("id"), resource.get("externalId")
        if isinstance(order_id, str) or isinstance(external, str):
            return (
                order_id if isinstance(order_id, str) else None,
                external if isinstance(external, str) else None,
            )
    try:
        return None, key.decode() if key else None
    except UnicodeDecodeError:
        return None, None


def dead_letter_scope(now: datetime | None = None) -> str:
    return f"{DEAD_LETTER_SCOPE}{(now or utcnow()):%Y-%m}"


def seal_dead_letters(
    dead: Sequence[DeadLetter],
    sealer: object,
    customer_of: Callable[[str | None, str | None], str | None] | None = None,
) -> list[DeadLetter]:
    """The dead letters with their key and bytes sealed: under the customer the message
    names (else, through `customer_of`, the customer of the order it names), else under
    the month's dead-letter key. A sealer without `seal_bytes` (None: an application
    without keys, some tests) leaves them plain."""
    if not isinstance(sealer, ByteSealer):
        return list(dead)
    out = []
    for d in dead:
        if d.sealed_scope is not None:
            out.append(d)
            continue
        scope = customer_named(d.value)
        if scope is None and customer_of is not None:
            scope = customer_of(*order_named(d.value, d.key))
        sealed = None
        if scope is not None:
            try:
                sealed = _sealed(sealer, scope, d)
            except ErasedScope:  # the customer was erased: kept under the retention key
                sealed = None
        out.append(sealed or _sealed(sealer, dead_letter_scope(), d))
    return out


def _sealed(sealer: ByteSealer, scope: str, d: DeadLetter) -> DeadLetter:
    return replace(
        d,
        key=None if d.key is None else sealer.seal_bytes(scope, d.key),
        value=None if d.value is None else sealer.seal_bytes(scope, d.value),
        sealed_scope=scope,
        original_digest=digest(d.key, d.value),
    )


def open_dead_letters(db: ReadDb) -> Callable[[str, bytes | None], bytes | None]:
    """(scope, sealed bytes) -> the bytes, None once the scope's key is erased; reads the
    keys on `db` (inside the caller's transaction, if any). The DLQ publisher opens the
    rows it publishes with it (notifications/kafka.py, registered by consumers/kafka.py)."""
    vault = Vault(KeyStore(db=db), cache_seconds=60.0)

    def opened(scope: str, data: bytes | None) -> bytes | None:
        return None if data is None else vault.reveal_bytes(scope, data)

    return opened


@dataclass(frozen=True)
class Purge:
    rows: int
    keys: list[str]


def purge_dead_letters(
    db: ReadDb, retention_days: int, now: datetime | None = None, actor: str = "dlq purge"
) -> Purge:
    """Drop the dead letters that name no customer (sealed under a dead-letter key, or
    written plain before dead letters were sealed) once older than `retention_days`; then
    delete each month's dead-letter key once every row it can have sealed is past the
    retention (the month ended more than `retention_days` ago). Customers' dead letters
    stay until replayed away or erased with their customer (`audit erase`)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    with db.transaction():
        cursor = db.execute(
            "DELETE FROM dead_letter WHERE created_at < %s AND "
            "(sealed_scope IS NULL OR sealed_scope LIKE %s)",
            (db.adapt(cutoff, "timestamptz"), DEAD_LETTER_SCOPE + "%"),
        )
        rows = max(getattr(cursor, "rowcount", 0) or 0, 0)
    keys = []
    for (scope,) in db.fetchall(
        "SELECT scope FROM pii_key WHERE scope LIKE %s AND key IS NOT NULL ORDER BY scope",
        (DEAD_LETTER_SCOPE + "%",),
    ):
        try:
            month = datetime.strptime(scope[len(DEAD_LETTER_SCOPE) :], "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            continue
        month_end = (month + timedelta(days=32)).replace(day=1)
        if month_end < cutoff:
            with db.transaction():
                db.execute(
                    "DELETE FROM dead_letter WHERE sealed_scope = %s", (scope,)
                )  # none left: each was past the retention
            erase(db, scope, actor, f"dead-letter retention of {retention_days} days", 0)
            keys.append(scope)
    return Purge(rows, keys)


PURGE_SECONDS = 3600.0
log = logging.getLogger("serviceorders.kafka")


def purge_hourly(
    settings: Settings, stopping: threading.Event, every: float = PURGE_SECONDS
) -> None:
    """`dlq purge` at start and then every hour until `stopping` (the `consume` process and
    `serve` with its Kafka intake run it in a thread): the dead letters that name no customer
    do not outlive SERVICEORDERS_DLQ_RETENTION_DAYS by more than an hour."""
    while not stopping.is_set():
        try:
            db = ReadDb.connect(settings.database, settings.lock_timeout_seconds)
            try:
                done = purge_dead_letters(db, settings.dlq_retention_days, actor="consume")
            finally:
                db.close()
            if done.rows or done.keys:
                log.info(
                    "purged %d dead letter(s) past %d days; keys deleted: %s",
                    done.rows,
                    settings.dlq_retention_days,
                    ", ".join(done.keys) or "none",
                )
        except Exception as e:  # the next round tries again
            log.warning("dead-letter purge failed (%s: %s)", type(e).__name__, e)
        stopping.wait(every)


def erase_dead_letters(db: ReadDb, customer_id: str) -> int:
    """`audit erase`'s part: delete the customer's dead letters, those sealed under its key
    and those written plain before (best effort: the message names the customer). Returns
    how many were deleted."""
    deleted = 0
    with db.transaction():
        cursor = db.execute("DELETE FROM dead_letter WHERE sealed_scope = %s", (customer_id,))
        deleted += max(getattr(cursor, "rowcount", 0) or 0, 0)
        plain = [
            int(r[0])
            for r in db.fetchall("SELECT id, value FROM dead_letter WHERE sealed_scope IS NULL")
            if customer_named(None if r[1] is None else bytes(r[1])) == customer_id
        ]
        for dl_id in plain:
            db.execute("DELETE FROM dead_letter WHERE id = %s", (dl_id,))
        deleted += len(plain)
    return deleted


def erase_intake_rows(db: ReadDb, customer_id: str, orders: list[UUID]) -> dict[str, int]:
    """`audit erase`'s step for the Kafka intake's tables (audit/erasure.py): the customer's
    dead letters (`erase_dead_letters`) and the refusal announcements (`kafka_outbox`,
    published or not) keyed by one of its orders' external ids or ids."""
    keys: set[bytes] = {str(o).encode() for o in orders}
    for i in range(0, len(orders), 500):
        chunk = [db.adapt(o, "uuid") for o in orders[i : i + 500]]
        marks = ", ".join(["%s"] * len(chunk))
        keys.update(
            str(r[0]).encode()
            for r in db.fetchall(
                f"SELECT external_id FROM order_summary WHERE id IN ({marks}) "
                "AND external_id IS NOT NULL",
                chunk,
            )
        )
    outbox = 0
    with db.transaction():
        for key in sorted(keys):
            cursor = db.execute("DELETE FROM kafka_outbox WHERE key = %s", (key,))
            outbox += max(getattr(cursor, "rowcount", 0) or 0, 0)
    return {"dead_letter": erase_dead_letters(db, customer_id), "kafka_outbox": outbox}


def record_dead_letters(db: ReadDb, dead: Sequence[DeadLetter]) -> None:
    """Dead letters recorded outside a Kafka batch (the junk lines of `inventory import`):
    sealed as the intake's (`seal_dead_letters`), written in one transaction; one already
    recorded (the same source, position and bytes: the same file imported again) is not
    written twice."""
    if not dead:
        return
    sealed = seal_dead_letters(dead, Vault(KeyStore(db=db)))
    with db.transaction():
        cursor = db.conn.cursor()  # type: ignore[attr-defined]
        IntakeWrite(dead_letters=sealed).write(cursor, db.dialect)

"""The TMF641 hub: listener subscriptions, their delivery queues and the delivery worker.

* `hub_subscription` is written by the API (register / unregister) and by operators
  (resume); it is not a projection. Each subscription has a cursor into the
  `notification_outbox` projection (`notifications.py`): what has been fanned out to it.
* `hub_delivery` holds one row per (subscription, outbox notification) that passed the
  subscription's `query` filter: attempts, next attempt, last error, delivered time.
* `DeliveryWorker` (a thread in `serve` and `project`) fans new outbox rows out into
  deliveries, POSTs them to `{callback}/listener/{eventName}` in log order per order,
  retries with exponential backoff, and suspends a listener that keeps failing (its
  backlog is kept and delivered once an operator resumes it). Nothing is ever dropped.

The guarantees, settings and operator commands are documented in docs/notifications.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from uuid import UUID, uuid4

import httpx

from ..settings import Settings
from .db import ReadDb, Table
from .log import EventLog
from .notifications import EVENT_TYPES, NotificationOutbox, absolute_hrefs, listener_name

log = logging.getLogger(__name__)

OUTBOX = NotificationOutbox.table.name
ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
END_OF_POSITION = 2_000_000_000  # a cursor (position, END) is past every row of position

SUBSCRIPTIONS = Table(
    name="hub_subscription",
    columns=(("id", "text"), ("callback", "text"), ("query", "text"), ("actor", "text"),
             ("created_at", "timestamptz"), ("state", "text"),
             ("cursor_position", "bigint"), ("cursor_seq", "int"),
             ("failures", "int"), ("failing_since", "timestamptz"),
             ("retry_at", "timestamptz"), ("last_error", "text"),
             ("last_attempt_at", "timestamptz"), ("last_delivered_at", "timestamptz"),
             ("delivered", "bigint"), ("suspended_at", "timestamptz"),
             ("deleted_at", "timestamptz")),
    primary_key=("id",),
    indexes={"state": ("state",)},
)
DELIVERIES = Table(
    name="hub_delivery",
    columns=(("subscription_id", "text"), ("position", "bigint"), ("seq", "int"),
             ("order_id", "uuid"), ("event_id", "text"), ("event_type", "text"),
             ("created_at", "timestamptz"), ("attempts", "int"),
             ("next_attempt_at", "timestamptz"), ("last_error", "text"),
             ("last_attempt_at", "timestamptz"), ("delivered_at", "timestamptz")),
    primary_key=("subscription_id", "position", "seq"),
    indexes={"pending": ("subscription_id", "delivered_at", "position", "seq")},
)
WORKERS = Table(
    name="hub_worker",
    columns=(("name", "text"), ("owner", "text"), ("lease_until", "timestamptz")),
    primary_key=("name",),
)
TABLES = (SUBSCRIPTIONS, DELIVERIES, WORKERS)


def create_tables(db: ReadDb) -> None:
    """The hub's tables (idempotent); `serviceorders db init` calls this."""
    with db.transaction():
        for table in TABLES:
            db.create_table(table)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ===================================================================== the query filter
class QueryError(ValueError):
    """A subscription `query` that does not parse; the message says why."""


_RESOURCES = ("serviceOrder", "cancelServiceOrder")
_MAX_QUERY = 1000


@dataclass(frozen=True)
class Filter:
    """A subscription's `query`: `key=value[,value...]` terms joined by `&`; every term
    must hold (AND), any of a term's values may match (OR).

    * `eventType=ServiceOrderStateChangeEvent,ServiceOrderCreateEvent`
    * any other key is a path into the notification's resource (`state`,
      `serviceOrderItem.state`, `relatedParty.id`...), optionally prefixed with `event.`
      and / or the resource name (`serviceOrder.` or `cancelServiceOrder.`, which then
      only matches that resource). Through a list, any element may match.
    """

    event_types: frozenset[str] | None = None
    terms: tuple[tuple[str | None, tuple[str, ...], frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, query: str | None) -> Filter:
        if query is None or not query.strip():
            return cls()
        if len(query) > _MAX_QUERY:
            raise QueryError(f"the query is longer than {_MAX_QUERY} characters")
        try:
            pairs = parse_qsl(query.strip(), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise QueryError(f"the query {query!r} is not key=value terms joined by &") from None
        types: set[str] | None = None
        terms: dict[tuple[str | None, tuple[str, ...]], set[str]] = {}
        for key, raw in pairs:
            key = key.strip()
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if not key or not values:
                raise QueryError(f"the term {key}={raw} needs a key and a value")
            if key in ("eventType", "event.eventType"):
                known = {t.lower(): t for t in EVENT_TYPES}
                unknown = sorted(v for v in values if v.lower() not in known)
                if unknown:
                    raise QueryError(f"unknown eventType {', '.join(unknown)} "
                                     f"(one of {', '.join(EVENT_TYPES)})")
                wanted = {known[v.lower()] for v in values}
                types = wanted if types is None else types | wanted
                continue
            parts = key.split(".")
            if not all(p and (p.replace("_", "").replace("@", "").isalnum()) for p in parts):
                raise QueryError(f"the key {key!r} is not an attribute path")
            if parts[0] == "event":
                parts = parts[1:]
            resource = None
            if parts and parts[0] in _RESOURCES:
                resource, parts = parts[0], parts[1:]
            if not parts:
                raise QueryError(f"the key {key!r} names no attribute")
            terms.setdefault((resource, tuple(parts)), set()).update(values)
        return cls(frozenset(types) if types is not None else None,
                   tuple((r, p, frozenset(v)) for (r, p), v in terms.items()))

    def matches(self, payload: dict[str, Any]) -> bool:
        if self.event_types is not None and payload.get("eventType") not in self.event_types:
            return False
        body = payload.get("event") or {}
        for resource, path, values in self.terms:
            name = resource or next((r for r in _RESOURCES if r in body), None)
            if name is None or name not in body:
                return False
            if not any(_text(v) in values for v in _walk(body[name], path)):
                return False
        return True


def _walk(node: Any, path: tuple[str, ...]) -> list[Any]:
    if isinstance(node, list):
        return [found for element in node for found in _walk(element, path)]
    if not path:
        return [node]
    if not isinstance(node, dict) or path[0] not in node:
        return []
    return _walk(node[path[0]], path[1:])


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ================================================================ callbacks, allow-list
class CallbackError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _host(value: str) -> str:
    return value.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AllowList:
    """`SERVICEORDERS_HUB_ALLOWED_HOSTS`: comma-separated `host`, `host:port`,
    `*.domain[:port]`, `[ipv6][:port]` or `*` (any host). Empty: loopback hosts only
    (localhost, 127.0.0.0/8, ::1). A pattern without a port allows every port."""

    patterns: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        patterns = []
        for raw in (text or "").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            host, port = entry, None
            if entry.startswith("["):  # [ipv6] or [ipv6]:port
                inside, _, rest = entry[1:].partition("]")
                host = inside
                if rest.startswith(":"):
                    port = _port(rest[1:], raw)
            elif entry.count(":") == 1:
                host, _, number = entry.partition(":")
                port = _port(number, raw)
            patterns.append((_host(host), port))
        return cls(tuple(patterns))

    def allows(self, host: str, port: int) -> bool:
        host = _host(host)
        if not self.patterns:
            return _is_loopback(host)
        return any(_host_matches(pattern, host) and (wanted is None or wanted == port)
                   for pattern, wanted in self.patterns)

    def describe(self) -> str:
        if not self.patterns:
            return "loopback hosts only (SERVICEORDERS_HUB_ALLOWED_HOSTS is empty)"
        return ", ".join(f"{h}:{p}" if p else h for h, p in self.patterns)


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"SERVICEORDERS_HUB_ALLOWED_HOSTS: bad port in {raw.strip()!r}")
    return int(text)


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    try:
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(host)
    except ValueError:
        return pattern == host


def check_callback(url: str, allowed: AllowList) -> str:
    """The callback as registered, or CallbackError: http(s) only, a host, no credentials,
    no fragment, and a host (and port) the allow-list names."""
    url = (url or "").strip()
    if not url or len(url) > 2000:
        raise CallbackError("invalid_callback", "the callback must be a URL of at most 2000 "
                                                "characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackError("invalid_callback", f"the callback {url!r} is not a URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise CallbackError("invalid_callback",
                            f"the callback must be an http or https URL, not {url!r}")
    if not parts.hostname:
        raise CallbackError("invalid_callback", f"the callback {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise CallbackError("invalid_callback", "the callback must not carry credentials")
    if parts.fragment or "#" in url:
        raise CallbackError("invalid_callback", "the callback must not have a fragment")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise CallbackError("invalid_callback",
                            "the callback must not contain spaces or control characters")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    if not allowed.allows(parts.hostname, port):
        raise CallbackError("callback_not_allowed",
                            f"callbacks to {parts.hostname}:{port} are not allowed; the hub "
                            f"calls {allowed.describe()}")
    return url


def listener_url(callback: str, event_type: str) -> str:
    """TMF's convention: the callback is the listener's base; each notification goes to
    `{callback}/listener/{lowerCamelEventType}` (the callback's query string is kept)."""
    parts = urlsplit(callback)
    path = f"{parts.path.rstrip('/')}/listener/{listener_name(event_type)}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


# ========================================================================= the store
class HubStore:
    """Subscriptions as the API and operators see them (bound parameters throughout)."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db

    def _ts(self, value: datetime | None) -> Any:
        return self.db.adapt(value, "timestamptz")

    def register(self, callback: str, query: str | None, actor: str,
                 now: datetime | None = None) -> dict[str, Any]:
        """A new subscription; it receives the notifications of events committed after
        this moment (its cursor starts at the log head)."""
        now = now or utcnow()
        sub_id = str(uuid4())
        head = EventLog(self.db, None).head()  # type: ignore[arg-type]
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO {SUBSCRIPTIONS.name} (id, callback, query, actor, created_at, "
                f"state, cursor_position, cursor_seq, failures, delivered) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0)",
                (sub_id, callback, query, actor, self._ts(now), ACTIVE, head, END_OF_POSITION))
        found = self.get(sub_id)
        assert found is not None
        return found

    def get(self, sub_id: str) -> dict[str, Any] | None:
        rows = self._select("WHERE s.id = %s", (sub_id,))
        return rows[0] if rows else None

    def list(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        where = "" if include_deleted else f"WHERE s.state <> '{DELETED}'"
        return self._select(where, ())

    def _select(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        cols = SUBSCRIPTIONS.column_names
        rows = self.db.fetchall(
            f"SELECT {', '.join('s.' + c for c in cols)}, "
            f"(SELECT COUNT(*) FROM {DELIVERIES.name} d WHERE d.subscription_id = s.id "
            f" AND d.delivered_at IS NULL), "
            f"(SELECT MIN(d.created_at) FROM {DELIVERIES.name} d "
            f" WHERE d.subscription_id = s.id AND d.delivered_at IS NULL) "
            f"FROM {SUBSCRIPTIONS.name} s {where} ORDER BY s.created_at, s.id", params)
        types = SUBSCRIPTIONS.types()
        found = []
        for row in rows:
            item = {c: self.db.decode(v, types[c]) for c, v in zip(cols, row, strict=False)}
            item["pending"] = int(row[len(cols)] or 0)
            item["oldest_pending_at"] = self.db.decode(row[len(cols) + 1], "timestamptz")
            found.append(item)
        return found

    def delete(self, sub_id: str, now: datetime | None = None) -> bool:
        """Unregister: no more deliveries; its queue is pruned by the worker."""
        with self.db.transaction():
            done = self.db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET state = %s, deleted_at = %s "
                f"WHERE id = %s AND state <> %s",
                (DELETED, self._ts(now or utcnow()), sub_id, DELETED))
            return bool(done.rowcount)

    def resume(self, sub_id: str, now: datetime | None = None) -> bool:
        """Reactivate a suspended (or backing-off) listener: its whole backlog is due now,
        in order, with fresh attempt counts."""
        now = now or utcnow()
        with self.db.transaction():
            done = self.db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET state = %s, failures = 0, "
                f"failing_since = NULL, retry_at = NULL, suspended_at = NULL "
                f"WHERE id = %s AND state IN (%s, %s)", (ACTIVE, sub_id, ACTIVE, SUSPENDED))
            if not done.rowcount:
                return False
            self.db.execute(
                f"UPDATE {DELIVERIES.name} SET next_attempt_at = %s, attempts = 0 "
                f"WHERE subscription_id = %s AND delivered_at IS NULL",
                (self._ts(now), sub_id))
        log.info("hub listener %s resumed: its backlog is due now", sub_id,
                 extra={"subscription_id": sub_id})
        return True


# ======================================================================== the worker
@dataclass(frozen=True)
class HubConfig:
    allowed: AllowList = field(default_factory=AllowList)
    timeout: float = 5.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    suspend_after_failures: int = 20
    suspend_after_seconds: float = 3600.0
    poll: float = 0.5
    concurrency: int = 4
    retention: timedelta = timedelta(hours=24)
    public_base_url: str | None = None
    lease_seconds: float = 30.0
    round_size: int = 100  # notifications per listener per round
    fan_out_size: int = 1000  # outbox rows per subscription per transaction

    @classmethod
    def from_settings(cls, settings: Settings) -> HubConfig:
        return cls(allowed=AllowList.parse(settings.hub_allowed_hosts),
                   timeout=settings.hub_timeout_seconds,
                   backoff_base=settings.hub_backoff_base_seconds,
                   backoff_max=settings.hub_backoff_max_seconds,
                   suspend_after_failures=settings.hub_suspend_after_failures,
                   suspend_after_seconds=settings.hub_suspend_after_seconds,
                   poll=settings.hub_poll_seconds, concurrency=settings.hub_concurrency,
                   retention=timedelta(hours=settings.hub_retention_hours),
                   public_base_url=settings.public_base_url,
                   lease_seconds=max(30.0, settings.hub_timeout_seconds * 6))

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next attempt after `attempts` failed ones: base * 2^(n-1),
        at most `backoff_max`."""
        exponent = min(max(attempts - 1, 0), 62)
        return timedelta(seconds=min(self.backoff_base * (2 ** exponent), self.backoff_max))


@dataclass(frozen=True)
class _Due:
    position: int
    seq: int
    order_id: str
    event_type: str
    attempts: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Result:
    due: _Due
    ok: bool
    error: str | None
    unreachable: bool  # the listener could not be reached (or may not be called) at all
    at: datetime


@dataclass
class _Round:
    subscription_id: str
    future: Future[list[_Result]]


class DeliveryWorker:
    """Delivers the outbox to listeners. One worker process at a time holds the delivery
    lease (`hub_worker`); the others stand by. HTTP calls run on a small thread pool, one
    round per listener at a time, so a slow listener delays nobody else."""

    LEASE = "delivery"

    def __init__(self, config: HubConfig, connect: Callable[[], ReadDb],
                 client: httpx.Client | None = None, owner: str | None = None) -> None:
        self.config = config
        self.connect = connect
        self.db: ReadDb | None = None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(config.timeout), follow_redirects=False, trust_env=False,
            headers={"User-Agent": "serviceorders-hub/1", "Accept": "application/json"})
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                       thread_name_prefix="hub-delivery")
        self.rounds: dict[str, _Round] = {}
        self.stopping = threading.Event()
        self._lease_until: datetime | None = None
        self._pruned_at: datetime | None = None
        self._filters: dict[str | None, Filter] = {}

    @classmethod
    def from_settings(cls, settings: Settings, connect: Callable[[], ReadDb],
                      **kw: Any) -> DeliveryWorker:
        return cls(HubConfig.from_settings(settings), connect, **kw)

    # ------------------------------------------------------------------ the loop
    def run(self, stopping: threading.Event,
            on_error: Callable[[Exception], None] | None = None) -> None:
        """Deliver until `stopping` is set; survives database and listener failures."""
        try:
            while not stopping.is_set():
                try:
                    busy = self.tick()
                except Exception as e:  # the database restarting, a lost connection...
                    (on_error or (lambda x: log.exception("hub delivery error")))(e)
                    self._drop_db()
                    stopping.wait(1.0)
                    continue
                if busy:
                    continue
                pending = [r.future for r in self.rounds.values()]
                if pending:
                    wait(pending, timeout=self.config.poll, return_when=FIRST_COMPLETED)
                else:
                    stopping.wait(self.config.poll)
        finally:
            self.close()

    def tick(self) -> bool:
        """One pass: record finished rounds, fan out, start due rounds. True if it did
        something (the caller loops again at once)."""
        db = self._db()
        busy = self._collect(db)
        now = utcnow()
        if not self._lease(db, now):
            return busy
        busy |= self._fan_out(db) > 0
        if self._pruned_at is None or now - self._pruned_at > timedelta(minutes=1):
            self._prune(db, now)
            self._pruned_at = now
        for sub_id, callback, retry_at, failures in db.fetchall(
                f"SELECT id, callback, retry_at, failures FROM {SUBSCRIPTIONS.name} "
                f"WHERE state = %s ORDER BY id", (ACTIVE,)):
            if sub_id in self.rounds or self.stopping.is_set():
                continue
            retry_at = db.decode(retry_at, "timestamptz")
            if retry_at is not None and retry_at > now:
                continue
            plan = self._plan(db, sub_id, now)
            if plan:
                self.rounds[sub_id] = _Round(sub_id, self.pool.submit(
                    self._deliver, callback, plan, int(failures or 0)))
                busy = True
        return busy

    def drain(self, timeout: float = 10.0) -> None:
        """Tick until nothing is due or in flight (tests and `--once` style use)."""
        deadline = utcnow() + timedelta(seconds=timeout)
        while utcnow() < deadline:
            if not self.tick() and not self.rounds:
                return
            if self.rounds:
                wait([r.future for r in self.rounds.values()], timeout=0.5,
                     return_when=FIRST_COMPLETED)

    def close(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        try:
            db = self._db()
            self._collect(db)
            if self._lease_until is not None:  # hand the lease over at once
                with db.transaction():
                    db.execute(f"UPDATE {WORKERS.name} SET lease_until = NULL "
                               f"WHERE name = %s AND owner = %s", (self.LEASE, self.owner))
        except Exception:
            log.warning("hub delivery worker could not record its last round", exc_info=True)
        finally:
            self._drop_db()
            self.client.close()

    # ---------------------------------------------------------------- the steps
    def _db(self) -> ReadDb:
        if self.db is None:
            self.db = self.connect()
        return self.db

    def _drop_db(self) -> None:
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
        self.db = None
        self._lease_until = None

    def _lease(self, db: ReadDb, now: datetime) -> bool:
        """Hold (or renew, once half spent) the delivery lease; False: another worker has it."""
        lease = timedelta(seconds=self.config.lease_seconds)
        if self._lease_until is not None and self._lease_until - now > lease / 2:
            return True
        until = now + lease
        with db.transaction():
            got = db.execute(
                f"INSERT INTO {WORKERS.name} (name, owner, lease_until) VALUES (%s, %s, %s) "
                f"ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                f"lease_until = excluded.lease_until WHERE {WORKERS.name}.owner = "
                f"excluded.owner OR {WORKERS.name}.lease_until IS NULL "
                f"OR {WORKERS.name}.lease_until < %s",
                (self.LEASE, self.owner, db.adapt(until, "timestamptz"),
                 db.adapt(now, "timestamptz")))
        self._lease_until = until if got.rowcount == 1 else None
        return self._lease_until is not None

    def _filter(self, query: str | None) -> Filter:
        if query not in self._filters:
            try:
                self._filters[query] = Filter.parse(query)
            except QueryError:  # validated at registration; never deliver on a bad filter
                self._filters[query] = Filter(event_types=frozenset())
        return self._filters[query]

    def _fan_out(self, db: ReadDb) -> int:
        """New outbox rows into each live subscription's queue (filtered); returns rows
        looked at. Suspended listeners keep queueing: their backlog is kept."""
        top = db.fetchone(f"SELECT MAX(position) FROM {OUTBOX}")
        if top is None or top[0] is None:
            return 0
        seen = 0
        now = db.adapt(utcnow(), "timestamptz")
        for sub_id, query, position, seq in db.fetchall(
                f"SELECT id, query, cursor_position, cursor_seq FROM {SUBSCRIPTIONS.name} "
                f"WHERE state IN (%s, %s)", (ACTIVE, SUSPENDED)):
            if int(top[0]) < int(position) or (int(top[0]) == int(position)
                                                and int(seq) >= END_OF_POSITION):
                continue
            rows = db.fetchall(
                f"SELECT position, seq, order_id, event_id, event_type, payload FROM {OUTBOX} "
                f"WHERE (position, seq) > (%s, %s) ORDER BY position, seq LIMIT %s",
                (position, seq, self.config.fan_out_size))
            if not rows:
                continue
            wanted = self._filter(query)
            queued = [(sub_id, r[0], r[1], db.adapt(UUID(str(r[2])), "uuid"), r[3], r[4], now,
                       0, now) for r in rows if wanted.matches(db.decode(r[5], "json"))]
            last = rows[-1]
            with db.transaction():
                moved = db.execute(
                    f"UPDATE {SUBSCRIPTIONS.name} SET cursor_position = %s, cursor_seq = %s "
                    f"WHERE id = %s AND cursor_position = %s AND cursor_seq = %s",
                    (last[0], last[1], sub_id, position, seq))
                if moved.rowcount == 1 and queued:
                    db.executemany(
                        f"INSERT INTO {DELIVERIES.name} (subscription_id, position, seq, "
                        f"order_id, event_id, event_type, created_at, attempts, "
                        f"next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        f"ON CONFLICT (subscription_id, position, seq) DO NOTHING", queued)
            seen += len(rows)
        return seen

    def _plan(self, db: ReadDb, sub_id: str, now: datetime) -> list[_Due]:
        """What to send in this round, in log order: for each order whose oldest pending
        notification is due, its pending notifications from the oldest on."""
        rows = db.fetchall(
            f"SELECT d.position, d.seq, d.order_id, d.event_type, d.attempts, "
            f"d.next_attempt_at, o.payload FROM {DELIVERIES.name} d JOIN {OUTBOX} o "
            f"ON o.position = d.position AND o.seq = d.seq "
            f"WHERE d.subscription_id = %s AND d.delivered_at IS NULL "
            f"ORDER BY d.position, d.seq LIMIT %s", (sub_id, self.config.round_size))
        plan: list[_Due] = []
        blocked: set[str] = set()
        started: set[str] = set()
        for position, seq, order_id, event_type, attempts, next_at, payload in rows:
            order = str(order_id)
            if order in blocked:
                continue
            next_at = db.decode(next_at, "timestamptz")
            if order not in started and next_at is not None and next_at > now:
                blocked.add(order)  # its oldest is backing off: the rest of it waits
                continue
            started.add(order)
            plan.append(_Due(int(position), int(seq), order, event_type, int(attempts or 0),
                             db.decode(payload, "json")))
        return plan

    def _deliver(self, callback: str, plan: list[_Due], failures: int = 0) -> list[_Result]:
        """One round for one listener (on the pool, no database): POST in order; a failed
        notification holds back the rest of its order; an unreachable listener ends the
        round, and so does reaching the consecutive failures that suspend it."""
        results: list[_Result] = []
        failed: set[str] = set()
        limit = self.config.suspend_after_failures
        budget = utcnow() + timedelta(seconds=self.config.lease_seconds / 2)
        for due in plan:
            if self.stopping.is_set() or utcnow() > budget:
                break
            if due.order_id in failed:
                continue
            ok, error, unreachable = self._post(callback, due)
            results.append(_Result(due, ok, error, unreachable, utcnow()))
            failures = 0 if ok else failures + 1
            if not ok:
                failed.add(due.order_id)
                if unreachable or (limit and failures >= limit):
                    break
        return results

    def _post(self, callback: str, due: _Due) -> tuple[bool, str | None, bool]:
        try:
            parts = urlsplit(callback)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            allowed = parts.scheme in ("http", "https") and parts.hostname is not None and \
                self.config.allowed.allows(parts.hostname, port)
        except ValueError:
            allowed = False
        if not allowed:
            return False, ("callback refused: its host is not in SERVICEORDERS_HUB_ALLOWED_"
                           f"HOSTS ({self.config.allowed.describe()})"), True
        body = absolute_hrefs(due.payload, self.config.public_base_url)
        try:
            with self.client.stream("POST", listener_url(callback, due.event_type), json=body,
                                    headers={"X-Event-Id": str(body.get("eventId"))}) as reply:
                status = reply.status_code
        except httpx.TimeoutException as e:
            return False, f"timeout ({type(e).__name__}) after {self.config.timeout}s", True
        except httpx.HTTPError as e:
            return False, f"{type(e).__name__}: {e}"[:500], True
        except Exception as e:  # never let one listener kill the worker
            return False, f"{type(e).__name__}: {e}"[:500], True
        if 200 <= status < 300:
            return True, None, False
        return False, f"HTTP {status}", False

    def _collect(self, db: ReadDb) -> bool:
        """Record every finished round: deliveries, backoff, the listener's health."""
        busy = False
        for sub_id, done in [(s, r) for s, r in self.rounds.items() if r.future.done()]:
            del self.rounds[sub_id]
            try:
                results = done.future.result()
            except Exception:  # a bug, not a listener failure: the rows stay pending
                log.exception("hub delivery round failed")
                continue
            if results:
                self._record(db, sub_id, results)
                busy = True
        return busy

    def _record(self, db: ReadDb, sub_id: str, results: list[_Result]) -> None:
        cfg = self.config
        ts = lambda v: db.adapt(v, "timestamptz")  # noqa: E731
        with db.transaction():
            row = db.fetchone(f"SELECT failures, failing_since FROM {SUBSCRIPTIONS.name} "
                              f"WHERE id = %s", (sub_id,))
            failures = int(row[0] or 0) if row else 0
            failing_since = db.decode(row[1], "timestamptz") if row else None
            delivered, last_ok, last_error = 0, None, None
            for r in results:
                key = (sub_id, r.due.position, r.due.seq)
                if r.ok:
                    db.execute(
                        f"UPDATE {DELIVERIES.name} SET attempts = attempts + 1, "
                        f"delivered_at = %s, last_attempt_at = %s, last_error = NULL "
                        f"WHERE subscription_id = %s AND position = %s AND seq = %s",
                        (ts(r.at), ts(r.at), *key))
                    delivered += 1
                    last_ok = r.at
                    failures, failing_since = 0, None
                else:
                    attempts = r.due.attempts + 1
                    db.execute(
                        f"UPDATE {DELIVERIES.name} SET attempts = %s, next_attempt_at = %s, "
                        f"last_error = %s, last_attempt_at = %s "
                        f"WHERE subscription_id = %s AND position = %s AND seq = %s "
                        f"AND delivered_at IS NULL",
                        (attempts, ts(r.at + cfg.backoff(attempts)), r.error, ts(r.at), *key))
                    failures += 1
                    failing_since = failing_since or r.at
                    last_error = r.error
            last = results[-1]
            now = last.at
            retry_at = now + cfg.backoff(failures) if (not last.ok and last.unreachable) \
                else None
            suspend = failures > 0 and (
                (cfg.suspend_after_failures and failures >= cfg.suspend_after_failures)
                or (cfg.suspend_after_seconds and failing_since is not None
                    and (now - failing_since).total_seconds() >= cfg.suspend_after_seconds))
            if suspend:
                log.warning("hub listener %s suspended after %d consecutive failures (%s)",
                            sub_id, failures, last_error, extra={"subscription_id": sub_id})
            db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET failures = %s, failing_since = %s, "
                f"retry_at = %s, last_attempt_at = %s, "
                f"last_error = COALESCE(%s, last_error), "
                f"last_delivered_at = COALESCE(%s, last_delivered_at), "
                f"delivered = delivered + %s, state = %s, suspended_at = %s "
                f"WHERE id = %s AND state = %s",
                (failures, ts(failing_since), ts(retry_at), ts(now), last_error, ts(last_ok),
                 delivered, SUSPENDED if suspend else ACTIVE, ts(now) if suspend else None,
                 sub_id, ACTIVE))

    def _prune(self, db: ReadDb, now: datetime) -> None:
        """Delivered rows older than the retention, and the queues of deleted listeners."""
        with db.transaction():
            db.execute(f"DELETE FROM {DELIVERIES.name} WHERE delivered_at IS NOT NULL "
                       f"AND delivered_at < %s", (db.adapt(now - self.config.retention,
                                                           "timestamptz"),))
            db.execute(f"DELETE FROM {DELIVERIES.name} WHERE subscription_id IN "
                       f"(SELECT id FROM {SUBSCRIPTIONS.name} WHERE state = %s)", (DELETED,))


def start_worker(settings: Settings, connect: Callable[[], ReadDb], stopping: threading.Event,
                 on_error: Callable[[Exception], None] | None = None
                 ) -> threading.Thread | None:
    """The delivery worker in a daemon thread (None when SERVICEORDERS_HUB_DELIVERY=no)."""
    if not settings.hub_delivery:
        return None
    worker = DeliveryWorker.from_settings(settings, connect)
    from ..logs import worker as logged

    thread = threading.Thread(target=logged("hub delivery", worker.run),
                              args=(stopping, on_error), name="hub-delivery", daemon=True)
    thread.start()
    return thread

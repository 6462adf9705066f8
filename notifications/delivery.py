"""The hub's delivery worker (docs/notifications.md).

`DeliveryWorker` (a thread in `serve` and `project`) fans new outbox rows out into
deliveries, POSTs them to `{callback}/listener/{eventName}` in log order per order, retries
with exponential backoff, and suspends a listener that keeps failing (its backlog is kept
and delivered once an operator resumes it). Nothing is ever dropped. It takes its settings
as values (`HubConfig`, `HubSettings`): the room does not import the runtime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

import httpx
from serviceorders.notifications.callbacks import (
    REFUSED,
    UNREACHABLE,
    Target,
    listener_url,
    parse_callback,
    resolve,
)
from serviceorders.notifications.filters import Filter, QueryError
from serviceorders.notifications.store import (
    ACTIVE,
    DELETED,
    DELIVERIES,
    END_OF_POSITION,
    OUTBOX,
    SUBSCRIPTIONS,
    SUSPENDED,
    WORKERS,
    utcnow,
)
from serviceorders.projections.notifications import absolute_hrefs
from serviceorders.storage.db import ReadDb
from serviceorders.support.hosts import AllowList, CallbackError, IPAddress

log = logging.getLogger(__name__)


class HubSettings(Protocol):
    """The settings the worker reads (the runtime's `Settings` is one): values, so that the
    room does not import the runtime."""

    @property
    def hub_delivery(self) -> bool: ...
    @property
    def hub_allowed_hosts(self) -> str: ...
    @property
    def hub_timeout_seconds(self) -> float: ...
    @property
    def hub_backoff_base_seconds(self) -> float: ...
    @property
    def hub_backoff_max_seconds(self) -> float: ...
    @property
    def hub_suspend_after_failures(self) -> int: ...
    @property
    def hub_suspend_after_seconds(self) -> float: ...
    @property
    def hub_poll_seconds(self) -> float: ...
    @property
    def hub_concurrency(self) -> int: ...
    @property
    def hub_retention_hours(self) -> float: ...
    @property
    def public_base_url(self) -> str | None: ...


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
    verify: Any = True  # httpx `verify` for https listeners (an ssl.SSLContext in tests)
    fan_out_size: int = 1000  # outbox rows per subscription per transaction

    @classmethod
    def from_settings(cls, settings: HubSettings) -> HubConfig:
        return cls(
            allowed=AllowList.parse(settings.hub_allowed_hosts),
            timeout=settings.hub_timeout_seconds,
            backoff_base=settings.hub_backoff_base_seconds,
            backoff_max=settings.hub_backoff_max_seconds,
            suspend_after_failures=settings.hub_suspend_after_failures,
            suspend_after_seconds=settings.hub_suspend_after_seconds,
            poll=settings.hub_poll_seconds,
            concurrency=settings.hub_concurrency,
            retention=timedelta(hours=settings.hub_retention_hours),
            public_base_url=settings.public_base_url,
            lease_seconds=max(30.0, settings.hub_timeout_seconds * 6),
        )

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next attempt after `attempts` failed ones: base * 2^(n-1),
        at most `backoff_max`."""
        exponent = min(max(attempts - 1, 0), 62)
        return timedelta(seconds=min(self.backoff_base * (2**exponent), self.backoff_max))


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

    def __init__(
        self,
        config: HubConfig,
        connect: Callable[[], ReadDb],
        client: httpx.Client | None = None,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.connect = connect
        self.db: ReadDb | None = None
        self.client = client or self._new_client()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.pool = ThreadPoolExecutor(
            max_workers=config.concurrency, thread_name_prefix="hub-delivery"
        )
        self.rounds: dict[str, _Round] = {}
        self.stopping = threading.Event()
        self._lease_until: datetime | None = None
        self._pruned_at: datetime | None = None
        self._filters: dict[str | None, Filter] = {}

    @classmethod
    def from_settings(
        cls, settings: HubSettings, connect: Callable[[], ReadDb], **kw: Any
    ) -> DeliveryWorker:
        return cls(HubConfig.from_settings(settings), connect, **kw)

    # ------------------------------------------------------------------ the loop
    def run(
        self, stopping: threading.Event, on_error: Callable[[Exception], None] | None = None
    ) -> None:
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
            f"WHERE state = %s ORDER BY id",
            (ACTIVE,),
        ):
            if sub_id in self.rounds or self.stopping.is_set():
                continue
            retry_at = db.decode(retry_at, "timestamptz")
            if retry_at is not None and retry_at > now:
                continue
            plan = self._plan(db, sub_id, now)
            if plan:
                self.rounds[sub_id] = _Round(
                    sub_id,
                    self.pool.submit(self._deliver, sub_id, callback, plan, int(failures or 0)),
                )
                busy = True
        return busy

    def drain(self, timeout: float = 10.0) -> None:
        """Tick until nothing is due or in flight (tests and `--once` style use)."""
        deadline = utcnow() + timedelta(seconds=timeout)
        while utcnow() < deadline:
            if not self.tick() and not self.rounds:
                return
            if self.rounds:
                wait(
                    [r.future for r in self.rounds.values()],
                    timeout=0.5,
                    return_when=FIRST_COMPLETED,
                )

    def close(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        try:
            db = self._db()
            self._collect(db)
            if self._lease_until is not None:  # hand the lease over at once
                with db.transaction():
                    db.execute(
                        f"UPDATE {WORKERS.name} SET lease_until = NULL "
                        f"WHERE name = %s AND owner = %s",
                        (self.LEASE, self.owner),
                    )
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
                (
                    self.LEASE,
                    self.owner,
                    db.adapt(until, "timestamptz"),
                    db.adapt(now, "timestamptz"),
                ),
            )
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
            f"WHERE state IN (%s, %s)",
            (ACTIVE, SUSPENDED),
        ):
            if int(top[0]) < int(position) or (
                int(top[0]) == int(position) and int(seq) >= END_OF_POSITION
            ):
                continue
            rows = db.fetchall(
                f"SELECT position, seq, order_id, event_id, event_type, payload FROM {OUTBOX} "
                f"WHERE (position, seq) > (%s, %s) ORDER BY position, seq LIMIT %s",
                (position, seq, self.config.fan_out_size),
            )
            if not rows:
                continue
            wanted = self._filter(query)
            queued = [
                (sub_id, r[0], r[1], db.adapt(UUID(str(r[2])), "uuid"), r[3], r[4], now, 0, now)
                for r in rows
                if wanted.matches(db.decode(r[5], "json"))
            ]
            last = rows[-1]
            with db.transaction():
                moved = db.execute(
                    f"UPDATE {SUBSCRIPTIONS.name} SET cursor_position = %s, cursor_seq = %s "
                    f"WHERE id = %s AND cursor_position = %s AND cursor_seq = %s",
                    (last[0], last[1], sub_id, position, seq),
                )
                if moved.rowcount == 1 and queued:
                    db.executemany(
                        f"INSERT INTO {DELIVERIES.name} (subscription_id, position, seq, "
                        f"order_id, event_id, event_type, created_at, attempts, "
                        f"next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        f"ON CONFLICT (subscription_id, position, seq) DO NOTHING",
                        queued,
                    )
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
            f"ORDER BY d.position, d.seq LIMIT %s",
            (sub_id, self.config.round_size),
        )
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
            plan.append(
                _Due(
                    int(position),
                    int(seq),
                    order,
                    event_type,
                    int(attempts or 0),
                    db.decode(payload, "json"),
                )
            )
        return plan

    def _deliver(
        self, sub_id: str, callback: str, plan: list[_Due], failures: int = 0
    ) -> list[_Result]:
        """One round for one listener (on the pool, no database): check the callback and
        resolve it once (every address checked, `resolve`), then POST in order to the
        checked addresses only; a failed notification holds back the rest of its order;
        an unreachable (or refused) listener ends the round, and so does reaching the
        consecutive failures that suspend it."""
        if not plan or self.stopping.is_set():
            return []
        try:
            target = parse_callback(callback)
            addresses = resolve(target, self.config.allowed, self.config.timeout)
        except CallbackError as e:  # the policy (or the allow-list) changed since
            log.warning(
                "hub listener %s not called: %s", sub_id, e, extra={"subscription_id": sub_id}
            )
            return [_Result(plan[0], False, REFUSED, True, utcnow())]
        except Exception as e:  # the name does not resolve (in time)
            log.info(
                "hub listener %s unreachable: %s",
                sub_id,
                _detail(e),
                extra={"subscription_id": sub_id},
            )
            return [_Result(plan[0], False, UNREACHABLE, True, utcnow())]
        # A TLS connection is verified for one name: https names get a client of their own
        # for the round, so that no pooled connection is shared between two names.
        own = target.scheme == "https" and target.address is None
        client = self._new_client() if own else self.client
        results: list[_Result] = []
        failed: set[str] = set()
        limit = self.config.suspend_after_failures
        budget = utcnow() + timedelta(seconds=self.config.lease_seconds / 2)
        try:
            for due in plan:
                if self.stopping.is_set() or utcnow() > budget:
                    break
                if due.order_id in failed:
                    continue
                ok, error, unreachable = self._post(client, sub_id, target, addresses, due)
                results.append(_Result(due, ok, error, unreachable, utcnow()))
                failures = 0 if ok else failures + 1
                if not ok:
                    failed.add(due.order_id)
                    if unreachable or (limit and failures >= limit):
                        break
        finally:
            if own:
                client.close()
        return results

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.config.timeout),
            follow_redirects=False,
            trust_env=False,
            verify=self.config.verify,
            headers={"User-Agent": "serviceorders-hub/1", "Accept": "application/json"},
        )

    def _post(
        self,
        client: httpx.Client,
        sub_id: str,
        target: Target,
        addresses: list[IPAddress],
        due: _Due,
    ) -> tuple[bool, str | None, bool]:
        """POST one notification to the checked addresses (the next one only when the
        connection is refused); the error is `unreachable` or `HTTP <status>`, the detail
        goes to the log."""
        body = absolute_hrefs(due.payload, self.config.public_base_url)
        headers = {"X-Event-Id": str(body.get("eventId")), "Host": target.netloc}
        extensions = (
            {"sni_hostname": target.host}
            if target.scheme == "https" and target.address is None
            else {}
        )
        problem: Exception | None = None
        for address in addresses[:3]:
            try:
                with client.stream(
                    "POST",
                    listener_url(target.pinned(address), due.event_type),
                    json=body,
                    headers=headers,
                    extensions=extensions,
                ) as reply:
                    status = reply.status_code
            except httpx.ConnectError as e:  # refused, no route...: the next address
                problem = e
                continue
            except Exception as e:  # timeouts, TLS, protocol errors...; never a crash
                problem = e
                break
            if 200 <= status < 300:
                return True, None, False
            return False, f"HTTP {status}", False
        log.info(
            "hub listener %s unreachable at %s: %s",
            sub_id,
            target.netloc,
            _detail(problem),
            extra={"subscription_id": sub_id},
        )
        return False, UNREACHABLE, True

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

        def ts(value: datetime | None) -> Any:
            return db.adapt(value, "timestamptz")

        with db.transaction():
            row = db.fetchone(
                f"SELECT failures, failing_since FROM {SUBSCRIPTIONS.name} WHERE id = %s", (sub_id,)
            )
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
                        (ts(r.at), ts(r.at), *key),
                    )
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
                        (attempts, ts(r.at + cfg.backoff(attempts)), r.error, ts(r.at), *key),
                    )
                    failures += 1
                    failing_since = failing_since or r.at
                    last_error = r.error
            last = results[-1]
            now = last.at
            retry_at = now + cfg.backoff(failures) if (not last.ok and last.unreachable) else None
            suspend = failures > 0 and (
                (cfg.suspend_after_failures and failures >= cfg.suspend_after_failures)
                or (
                    cfg.suspend_after_seconds
                    and failing_since is not None
                    and (now - failing_since).total_seconds() >= cfg.suspend_after_seconds
                )
            )
            if suspend:
                log.warning(
                    "hub listener %s suspended after %d consecutive failures (%s)",
                    sub_id,
                    failures,
                    last_error,
                    extra={"subscription_id": sub_id},
                )
            db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET failures = %s, failing_since = %s, "
                f"retry_at = %s, last_attempt_at = %s, "
                f"last_error = COALESCE(%s, last_error), "
                f"last_delivered_at = COALESCE(%s, last_delivered_at), "
                f"delivered = delivered + %s, state = %s, suspended_at = %s "
                f"WHERE id = %s AND state = %s",
                (
                    failures,
                    ts(failing_since),
                    ts(retry_at),
                    ts(now),
                    last_error,
                    ts(last_ok),
                    delivered,
                    SUSPENDED if suspend else ACTIVE,
                    ts(now) if suspend else None,
                    sub_id,
                    ACTIVE,
                ),
            )

    def _prune(self, db: ReadDb, now: datetime) -> None:
        """Delivered rows older than the retention, and the queues of deleted listeners."""
        with db.transaction():
            db.execute(
                f"DELETE FROM {DELIVERIES.name} WHERE delivered_at IS NOT NULL "
                f"AND delivered_at < %s",
                (db.adapt(now - self.config.retention, "timestamptz"),),
            )
            db.execute(
                f"DELETE FROM {DELIVERIES.name} WHERE subscription_id IN "
                f"(SELECT id FROM {SUBSCRIPTIONS.name} WHERE state = %s)",
                (DELETED,),
            )


def _detail(error: Exception | None) -> str:
    """An error for the log (operators only): its type and text, shortened."""
    if error is None:
        return "no address to connect to"
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return f"timeout ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"[:300]


def start_worker(
    settings: HubSettings,
    connect: Callable[[], ReadDb],
    stopping: threading.Event,
    on_error: Callable[[Exception], None] | None = None,
) -> threading.Thread | None:
    """The delivery worker in a daemon thread (None when SERVICEORDERS_HUB_DELIVERY=no)."""
    if not settings.hub_delivery:
        return None
    worker = DeliveryWorker.from_settings(settings, connect)
    from serviceorders.support.logs import start_worker

    return start_worker("hub delivery", "hub-delivery", worker.run, stopping, on_error)

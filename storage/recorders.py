"""The event store's recorders, extended through the library's own hook (`_insert_events`,
called inside the transaction that inserts the events): `app.save(*orders, intake=rows)`
also writes `rows`, any `TransactionalRows` (the Kafka intake's positions, applied
`eventId`s, dead letters and outbox records of a batch: consumers/store.py), so that all of
it commits together or not at all. The recorders know nothing of those tables.

Without an `intake` argument they behave exactly like the library's recorders (the API and
the CLI save through them too). The table lock that keeps notification ids in commit order
is untouched: the PostgreSQL recorder still takes it before inserting the events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from eventsourcing.utils import retry
from psycopg import errors as pg_errors
from psycopg import generators
from psycopg.sql import SQL, Identifier
from serviceorders.domain.errors import WriteTimeout

__all__ = [
    "GroupCommit",
    "IntakePostgresRecorder",
    "IntakeSqliteRecorder",
    "TransactionalRows",
    "WriteTimeout",
]


class TransactionalRows(Protocol):
    """Rows a save writes in its events' transaction (`app.save(*objs, intake=rows)`), so
    that they commit with the events or not at all.

    `write` runs on the recorder's cursor (a psycopg cursor, in pipeline mode, or an
    sqlite3 cursor), before the events are inserted; `%s` placeholders are the caller's to
    adapt to the dialect. It may raise to abort the whole transaction (nothing is written).
    In pipeline mode, it must not fetch the result of an earlier statement."""

    def write(self, cursor: Any, dialect: Literal["postgres", "sqlite"]) -> None: ...


# The library's insert without its retry decorator (10 attempts on any OperationalError):
# a write that timed out must not take ten times its bound. Other OperationalErrors (a
# connection lost) are still retried as the library does, below.
_library_insert_events = PostgresApplicationRecorder.insert_events.__wrapped__


def _flush(curs: Any) -> None:
    """Send everything libpq still buffers for this connection. In pipeline mode psycopg
    stops flushing once its queue of commands is empty and then waits only for results, so
    a statement larger than the socket buffers could stay half-sent while the server waits
    for the rest: both sides wait forever with the events-table lock held (psycopg issue
    685; reproduced with a 12 MB event). `generators.send` flushes, reading whatever the
    server sends meanwhile."""
    conn = curs.connection
    conn.wait(generators.send(conn.pgconn))


@dataclass
class _Write:
    events: Sequence[StoredEvent]
    done: bool = False
    ids: Sequence[int] | None = None
    error: BaseException | None = None


@dataclass
class GroupCommit:
    """Concurrent saves share one transaction (group commit).

    Each writer queues its events, then waits for the write lock. Whoever holds it takes
    every queued write, inserts them all in one transaction (one table lock, one commit)
    and hands each writer its notification ids. A writer that gets the lock and finds its
    events already written leaves at once. Under load, the writes that arrive while one
    transaction runs are committed together by the next, so the cost of a commit is shared
    instead of serialised one save at a time.

    If the shared transaction fails (an IntegrityError: an order version taken, maybe by
    another write in the same group), nothing of it was committed; each write is then
    retried alone, so that only the writes that really conflict fail, each with its own
    error, exactly as without grouping.
    """

    insert: Callable[[Sequence[StoredEvent]], Sequence[int] | None]
    max_events: int = 2_000
    _queue: list[_Write] = field(default_factory=list)
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _write_lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, events: Sequence[StoredEvent]) -> Sequence[int] | None:
        mine = _Write(events)
        with self._queue_lock:
            self._queue.append(mine)
        while not mine.done:
            with self._write_lock:
                if mine.done:
                    break
                self._run(self._take())
        if mine.error is not None:
            raise mine.error
        return mine.ids

    def _take(self) -> list[_Write]:
        taken: list[_Write] = []
        count = 0
        with self._queue_lock:
            while self._queue and (
                not taken or count + len(self._queue[0].events) <= self.max_events
            ):
                write = self._queue.pop(0)
                taken.append(write)
                count += len(write.events)
        return taken

    def _run(self, group: list[_Write]) -> None:
        if len(group) > 1:
            try:
                ids = self.insert([e for w in group for e in w.events])
            except (IntegrityError, WriteTimeout):
                pass  # nothing was committed: each write alone, below (a slow one fails alone)
            except BaseException as e:  # the database is down...: the same for every write
                for write in group:
                    write.error, write.done = e, True
                return
            else:
                at = 0
                for write in group:
                    n = len(write.events)
                    write.ids = None if ids is None else list(ids[at : at + n])
                    write.done, at = True, at + n
                return
        for write in group:
            try:
                write.ids = self.insert(write.events)
            except BaseException as e:  # handed to its own writer
                write.error = e
            write.done = True


class IntakePostgresRecorder(PostgresApplicationRecorder):
    # How long one write transaction may run, the events-table lock included
    # (SERVICEORDERS_DB_WRITE_TIMEOUT, set by runtime/bootstrap.py; 0: no bound).
    write_timeout_ms: int = 0
    # The server has lz4 (storage/db.py use_lz4, set by runtime/bootstrap.py): the events'
    # states above about 2 KB are compressed with it.
    toast_lz4: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._group = GroupCommit(self._insert_retrying)
        # The library's statement passes the events as an array of a composite type, whose
        # text dumping costs about 0.1 ms of client CPU per event; four arrays of plain
        # types do the same insert, in the same order. `%b`: binary arrays (with `%s`,
        # psycopg dumps uuid, text and bytea lists as text, escaping every state byte by
        # byte: about 18 us of client CPU per event).
        self.fast_insert_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT i, v, t, s FROM unnest(%b::uuid[], %b::integer[], %b::text[], %b::bytea[]) "
            "WITH ORDINALITY AS e(i, v, t, s, n) ORDER BY n RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Exactly the library's steps (table lock, NOTIFY, insert), with the faster insert.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.fast_insert_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )
        _flush(curs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The library always passes `tracking` (None outside process applications); the
        # intake passes `intake` and batches its own writes.
        if not stored_events or any(v is not None for v in kwargs.values()):
            return self._insert_retrying(stored_events, **kwargs)
        return self._group.write(stored_events)

    def _insert_once(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        try:
            return _library_insert_events(self, stored_events, **kwargs)
        except OperationalError as e:
            cause = e.__cause__
            if isinstance(cause, pg_errors.QueryCanceled):  # statement_timeout
                raise WriteTimeout(
                    f"the write ran longer than its {self.write_timeout_ms / 1000:g} s bound "
                    "and was rolled back"
                ) from e
            if isinstance(cause, pg_errors.LockNotAvailable):  # lock_timeout
                raise WriteTimeout(
                    f"the events-table lock was not granted within "
                    f"{self.datastore.lock_timeout} s; the write was rolled back"
                ) from e
            raise

    _insert_retrying = retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)(
        _insert_once
    )

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The first statement of every write transaction: from here to its commit, the
        # transaction (the events-table lock with it) is bounded. In pipeline mode the
        # timer runs until the pipeline's sync, so it bounds lock wait, insert and all.
        if self.write_timeout_ms:
            curs.execute(
                SQL("SET LOCAL statement_timeout = {0}").format(self.write_timeout_ms), prepare=True
            )
        if self.toast_lz4:
            curs.execute(SQL("SET LOCAL default_toast_compression = lz4"), prepare=True)
        rows: TransactionalRows | None = kwargs.get("intake")
        if rows is not None:
            rows.write(curs, "postgres")
            _flush(curs)
        super()._insert_events(curs, stored_events, **kwargs)


class IntakeSqliteRecorder(SQLiteApplicationRecorder):
    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        rows: TransactionalRows | None = kwargs.get("intake")
        if rows is not None:
            rows.write(c.sqlite_cursor, "sqlite")
        return super()._insert_events(c, stored_events, **kwargs)

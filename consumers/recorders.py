"""The event store's recorders, extended through the library's own hook (`_insert_events`,
called inside the transaction that inserts the events): `app.save(*orders, intake=write)`
also writes the Kafka positions, applied `eventId`s, dead letters and outbox records of a
batch, so that all of it commits together or not at all.

Without an `intake` argument they behave exactly like the library's recorders (the API and
the CLI save through them too). The table lock that keeps notification ids in commit order
is untouched: the PostgreSQL recorder still takes it before inserting the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg.sql import SQL, Identifier

from .store import IntakeWrite


class IntakePostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The library's statement passes the events as an array of a composite type, whose
        # text dumping costs about 0.1 ms of client CPU per event; four arrays of plain
        # types (binary-dumped by psycopg) do the same insert, in the same order.
        self.fast_insert_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT i, v, t, s FROM unnest(%s::uuid[], %s::integer[], %s::text[], %s::bytea[]) "
            "WITH ORDINALITY AS e(i, v, t, s, n) ORDER BY n RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema),
                 table=Identifier(self.events_table_name))

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                              **kwargs: Any) -> None:
        # Exactly the library's steps (table lock, NOTIFY, insert), with the faster insert.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self.fast_insert_statement,
                     ([e.originator_id for e in stored_events],
                      [e.originator_version for e in stored_events],
                      [e.topic for e in stored_events], [e.state for e in stored_events]),
                     prepare=True)

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        intake: IntakeWrite | None = kwargs.get("intake")
        if intake is not None:
            intake.apply(curs, "postgres")
        super()._insert_events(curs, stored_events, **kwargs)


class IntakeSqliteRecorder(SQLiteApplicationRecorder):
    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        intake: IntakeWrite | None = kwargs.get("intake")
        if intake is not None:
            intake.apply(c.sqlite_cursor, "sqlite")
        return super()._insert_events(c, stored_events, **kwargs)

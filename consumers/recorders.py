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

from .store import IntakeWrite


class IntakePostgresRecorder(PostgresApplicationRecorder):
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

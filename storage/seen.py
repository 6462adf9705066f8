"""The chain heads the projector has read (docs/audit.md, "Threat model").

Each projection page records, in the same transaction that moves the projections'
positions, the newest event it read of every order it touched: (order id, version, hash,
log position). `audit verify` then requires the store's chain of each such order to reach
that (version, hash): an event the projector has read cannot vanish unnoticed, even before
the next checkpoint.

This is audit evidence, not a read model: it is never rebuilt or cleared (a rebuild reads
the log again and only moves a head forward), and a row never goes back to an older version.
It lives in storage, below both the projector that writes it and the audit room that reads
it (neither imports the other).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from serviceorders.storage.db import ReadDb, Table


class Event(Protocol):
    """What is recorded of an event (an order event, as the projector decoded it)."""

    @property
    def originator_id(self) -> UUID: ...
    @property
    def originator_version(self) -> int: ...
    @property
    def hash(self) -> str: ...


SEEN_HEADS = Table(
    name="audit_seen_head",
    columns=(
        ("order_id", "uuid"),
        ("version", "bigint"),
        ("head_hash", "text"),
        ("position", "bigint"),  # the log position of that event
        ("seen_at", "timestamptz"),  # when a projector first read it
    ),
    primary_key=("order_id",),
)


def create_tables(db: ReadDb) -> None:
    """The table (idempotent): `serviceorders db init` (schema migrations) calls this."""
    db.create_table(SEEN_HEADS)


def record(db: ReadDb, events: Sequence[tuple[int, Event]]) -> None:
    """Note the newest event of each order in the page (one statement for the page); a
    head already recorded at the same or a later version is left as it is."""
    newest: dict[UUID, tuple[int, Event]] = {}
    for position, event in events:
        newest[event.originator_id] = (position, event)
    now = datetime.now(UTC)
    db.upsert(
        SEEN_HEADS,
        SEEN_HEADS.name,
        [
            {
                "order_id": oid,
                "version": event.originator_version,
                "head_hash": event.hash,
                "position": position,
                "seen_at": now,
            }
            for oid, (position, event) in sorted(newest.items())
        ],
        guard="version",
    )


def load(db: ReadDb) -> dict[str, tuple[int, str, int]]:
    """Every recorded head: order id (str) -> (version, hash, log position); empty when the
    table does not exist (a database not upgraded yet)."""
    if not db.table_exists(SEEN_HEADS.name):
        return {}
    found: dict[str, tuple[int, str, int]] = {}
    for oid, version, head, position in db.fetchall(
        f"SELECT order_id, version, head_hash, position FROM {SEEN_HEADS.name}"
    ):
        found[str(UUID(str(oid)))] = (int(version), str(head), int(position))
    return found


def covered_position(heads: dict[str, tuple[int, str, int]]) -> int:
    """The newest log position the projector has read (0: none)."""
    return max((h[2] for h in heads.values()), default=0)

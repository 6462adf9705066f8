"""The hub's tables and the listeners' subscriptions (docs/notifications.md).

* `hub_subscription` is written by the API (register / unregister) and by operators
  (resume); it is not a projection. Each subscription has a cursor into the
  `notification_outbox` projection (`projections/notifications.py`): what has been fanned
  out to it.
* `hub_delivery` holds one row per (subscription, outbox notification) that passed the
  subscription's `query` filter: attempts, next attempt, last error, delivered time.
* `hub_worker` holds the delivery lease (one delivering process at a time).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from serviceorders.notifications.callbacks import public_error
from serviceorders.projections.log import EventLog
from serviceorders.projections.notifications import (
    NotificationOutbox,
)
from serviceorders.storage.db import ReadDb, Table

log = logging.getLogger(__name__)

OUTBOX = NotificationOutbox.table.name
ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
END_OF_POSITION = 2_000_000_000  # a cursor (position, END) is past every row of position

SUBSCRIPTIONS = Table(
    name="hub_subscription",
    columns=(
        ("id", "text"),
        ("callback", "text"),
        ("query", "text"),
        ("actor", "text"),
        ("created_at", "timestamptz"),
        ("state", "text"),
        ("cursor_position", "bigint"),
        ("cursor_seq", "int"),
        ("failures", "int"),
        ("failing_since", "timestamptz"),
        ("retry_at", "timestamptz"),
        ("last_error", "text"),
        ("last_attempt_at", "timestamptz"),
        ("last_delivered_at", "timestamptz"),
        ("delivered", "bigint"),
        ("suspended_at", "timestamptz"),
        ("deleted_at", "timestamptz"),
    ),
    primary_key=("id",),
    indexes={"state": ("state",)},
)
DELIVERIES = Table(
    name="hub_delivery",
    columns=(
        ("subscription_id", "text"),
        ("position", "bigint"),
        ("seq", "int"),
        ("order_id", "uuid"),
        ("event_id", "text"),
        ("event_type", "text"),
        ("created_at", "timestamptz"),
        ("attempts", "int"),
        ("next_attempt_at", "timestamptz"),
        ("last_error", "text"),
        ("last_attempt_at", "timestamptz"),
        ("delivered_at", "timestamptz"),
    ),
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


Rows = list[dict[str, Any]]  # (the store's `list` method hides the builtin in its body)


class HubStore:
    """Subscriptions as the API and operators see them (bound parameters throughout)."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db

    def _ts(self, value: datetime | None) -> Any:
        return self.db.adapt(value, "timestamptz")

    def register(
        self, callback: str, query: str | None, actor: str, now: datetime | None = None
    ) -> dict[str, Any]:
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
                (sub_id, callback, query, actor, self._ts(now), ACTIVE, head, END_OF_POSITION),
            )
        found = self.get(sub_id)
        assert found is not None
        return found

    def get(self, sub_id: str) -> dict[str, Any] | None:
        rows = self._select("WHERE s.id = %s", (sub_id,))
        return rows[0] if rows else None

    def list(self, include_deleted: bool = False) -> Rows:
        where = "" if include_deleted else f"WHERE s.state <> '{DELETED}'"
        return self._select(where, ())

    def _select(self, where: str, params: tuple[Any, ...]) -> Rows:
        cols = SUBSCRIPTIONS.column_names
        rows = self.db.fetchall(
            f"SELECT {', '.join('s.' + c for c in cols)}, "
            f"(SELECT COUNT(*) FROM {DELIVERIES.name} d WHERE d.subscription_id = s.id "
            f" AND d.delivered_at IS NULL), "
            f"(SELECT MIN(d.created_at) FROM {DELIVERIES.name} d "
            f" WHERE d.subscription_id = s.id AND d.delivered_at IS NULL) "
            f"FROM {SUBSCRIPTIONS.name} s {where} ORDER BY s.created_at, s.id",
            params,
        )
        types = SUBSCRIPTIONS.types()
        found = []
        for row in rows:
            item = {c: self.db.decode(v, types[c]) for c, v in zip(cols, row, strict=False)}
            item["last_error"] = public_error(item["last_error"])
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
                (DELETED, self._ts(now or utcnow()), sub_id, DELETED),
            )
            return bool(done.rowcount)

    def resume(self, sub_id: str, now: datetime | None = None) -> bool:
        """Reactivate a suspended (or backing-off) listener: its whole backlog is due now,
        in order, with fresh attempt counts."""
        now = now or utcnow()
        with self.db.transaction():
            done = self.db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET state = %s, failures = 0, "
                f"failing_since = NULL, retry_at = NULL, suspended_at = NULL "
                f"WHERE id = %s AND state IN (%s, %s)",
                (ACTIVE, sub_id, ACTIVE, SUSPENDED),
            )
            if not done.rowcount:
                return False
            self.db.execute(
                f"UPDATE {DELIVERIES.name} SET next_attempt_at = %s, attempts = 0 "
                f"WHERE subscription_id = %s AND delivered_at IS NULL",
                (self._ts(now), sub_id),
            )
        log.info(
            "hub listener %s resumed: its backlog is due now",
            sub_id,
            extra={"subscription_id": sub_id},
        )
        return True

"""The events and snapshots tables read directly, exactly as stored (before any upcasting).

The SQL is portable through `ReadDb` (`%s` placeholders); the events table is read in
(order id, version) order with keyset pagination, so verification is one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from serviceorders.storage.db import ReadDb

PAGE = 2000


class Row(NamedTuple):
    """One stored event: its state decoded exactly as stored (None: not decodable)."""

    order_id: str
    version: int
    topic: str
    state: dict[str, Any] | None
    position: int
    raw: bytes | None = None  # the stored bytes (kept for snapshot replay)


def as_order_id(value: Any) -> str:
    return str(value) if isinstance(value, UUID) else str(UUID(str(value)))


def decode_state(data: bytes) -> dict[str, Any] | None:
    try:
        state = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return state if isinstance(state, dict) else None


def stored_hash(state: dict[str, Any] | None) -> str | None:
    value = state.get("hash") if state is not None else None
    return value if isinstance(value, str) else None


class Store:
    """The events and snapshots tables of either dialect, read directly."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db
        self.events, self.snapshots = db.events_table, db.snapshots_table
        self.position = db.log_position

    def key(self, order_id: UUID) -> Any:
        return order_id if self.db.dialect == "postgres" else order_id.hex

    def head(self) -> int:
        row = self.db.fetchone(f"SELECT MAX({self.position}) FROM {self.events}")
        return int(row[0]) if row and row[0] is not None else 0

    def count(self) -> int:
        row = self.db.fetchone(f"SELECT COUNT(*) FROM {self.events}")
        return int(row[0]) if row else 0

    def rows(self, order_id: UUID | None = None, *, keep_raw: bool = False) -> Iterator[Row]:
        """Every stored event in (order id, version) order, page by page (keyset)."""
        sql = (
            f"SELECT originator_id, originator_version, topic, state, {self.position} "
            f"FROM {self.events}"
        )
        where: list[str] = []
        base: list[Any] = []
        if order_id is not None:
            where.append("originator_id = %s")
            base.append(self.key(order_id))
        last: tuple[Any, int] | None = None
        while True:
            clauses, params = list(where), list(base)
            if last is not None:
                clauses.append("(originator_id, originator_version) > (%s, %s)")
                params.extend(last)
            page = self.db.fetchall(
                sql
                + (" WHERE " + " AND ".join(clauses) if clauses else "")
                + " ORDER BY originator_id, originator_version LIMIT %s",
                [*params, PAGE],
            )
            for oid, version, topic, state, position in page:
                data = bytes(state)
                yield Row(
                    as_order_id(oid),
                    int(version),
                    topic,
                    decode_state(data),
                    int(position),
                    data if keep_raw else None,
                )
            if len(page) < PAGE:
                return
            last = (page[-1][0], page[-1][1])

    def snapshot_rows(self) -> Iterator[tuple[str, int, str, bytes]]:
        last: tuple[Any, int] | None = None
        sql = f"SELECT originator_id, originator_version, topic, state FROM {self.snapshots}"
        while True:
            where, params = "", []
            if last is not None:
                where, params = " WHERE (originator_id, originator_version) > (%s, %s)", [*last]
            page = self.db.fetchall(
                sql + where + " ORDER BY originator_id, originator_version LIMIT %s",
                [*params, PAGE],
            )
            for oid, version, topic, state in page:
                yield as_order_id(oid), int(version), topic, bytes(state)
            if len(page) < PAGE:
                return
            last = (page[-1][0], page[-1][1])

    def heads_as_of(self, position: int) -> dict[str, tuple[int, str | None]]:
        """Every order's newest event at or before `position`: (version, stored hash)."""
        rows = self.db.fetchall(
            f"SELECT e.originator_id, e.originator_version, e.state FROM {self.events} e "
            f"JOIN (SELECT originator_id AS oid, MAX(originator_version) AS v FROM "
            f"{self.events} WHERE {self.position} <= %s GROUP BY originator_id) m "
            f"ON e.originator_id = m.oid AND e.originator_version = m.v",
            (position,),
        )
        return {
            as_order_id(oid): (int(v), stored_hash(decode_state(bytes(state))))
            for oid, v, state in rows
        }

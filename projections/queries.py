"""Read-side queries the API and the console use: the review queue, order search, counts.

Every filter value is a bound parameter; sort orders come from fixed lists, never from
the caller's text. Ages are computed at query time from `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

from serviceorders.projections.views import (
    CancellationRequests,
    OrderDocument,
    OrderSummary,
    ReviewQueue,
)
from serviceorders.storage.db import ReadDb, Table

T = TypeVar("T")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class QueueFilter:
    kind: str | None = None  # approval | cancellation | proposal
    site: str | None = None
    customer: str | None = None
    priority: str | None = None
    specification: str | None = None
    older_than: timedelta | None = None
    younger_than: timedelta | None = None


@dataclass(frozen=True)
class OrderFilter:
    state: str | None = None
    states: tuple[str, ...] = ()
    external_id: str | None = None
    category: str | None = None
    priority: str | None = None
    customer: str | None = None
    order_date_from: datetime | None = None  # inclusive
    order_date_to: datetime | None = None  # exclusive
    ids: tuple[UUID, ...] = ()
    include_drafts: bool = False


class ReadModels:
    def __init__(self, db: ReadDb) -> None:
        self.db = db

    # ---------------------------------------------------------------- review queue
    def review_queue(
        self,
        where: QueueFilter = QueueFilter(),
        offset: int = 0,
        limit: int = 50,
        now: datetime | None = None,
    ) -> Page[dict[str, Any]]:
        """What awaits a manager: highest priority first, then oldest first."""
        now = now or datetime.now(UTC)
        clauses, params = _equal(
            ("q.kind", where.kind),
            ("q.customer_id", where.customer),
            ("q.priority", where.priority),
        )
        for column, value in (("place_id", where.site), ("specification_id", where.specification)):
            if value is not None:
                clauses.append(
                    f"EXISTS (SELECT 1 FROM order_item i WHERE i.order_id = "
                    f"q.order_id AND i.{column} = %s)"
                )
                params.append(value)
        if where.older_than is not None:
            clauses.append("q.submitted_at <= %s")
            params.append(self._time(now - where.older_than))
        if where.younger_than is not None:
            clauses.append("q.submitted_at > %s")
            params.append(self._time(now - where.younger_than))
        page = self._page(
            ReviewQueue.table,
            "q",
            clauses,
            params,
            "q.priority IS NULL, q.priority, q.submitted_at, q.order_id",
            offset,
            limit,
        )
        for row in page.items:
            row["age_seconds"] = (
                (now - row["submitted_at"]).total_seconds() if row["submitted_at"] else None
            )
        return page

    # ---------------------------------------------------------------------- orders
    def search_orders(
        self, where: OrderFilter = OrderFilter(), offset: int = 0, limit: int = 50
    ) -> Page[dict[str, Any]]:
        """order_summary rows, newest order first."""
        clauses, params = self._order_clauses(where, "o", "id")
        return self._page(
            OrderSummary.table,
            "o",
            clauses,
            params,
            "o.order_date IS NULL, o.order_date DESC, o.id",
            offset,
            limit,
        )

    def documents(
        self, where: OrderFilter = OrderFilter(), offset: int = 0, limit: int = 50
    ) -> Page[dict[str, Any]]:
        """TMF641 documents (never drafts), newest order first."""
        clauses, params = self._order_clauses(where, "o", "order_id", documents=True)
        return self._page(
            OrderDocument.table,
            "o",
            clauses,
            params,
            "o.order_date DESC, o.order_id",
            offset,
            limit,
        )

    def document(self, order_id: UUID) -> dict[str, Any] | None:
        cols = OrderDocument.table.column_names
        row = self.db.fetchone(
            f"SELECT {', '.join(cols)} FROM {OrderDocument.table.name} WHERE order_id = %s",
            [self.db.adapt(order_id, "uuid")],
        )
        if row is None:
            return None
        types = OrderDocument.table.types()
        return {c: self.db.decode(v, types[c]) for c, v in zip(cols, row, strict=True)}

    def counts(self, by: str = "state", include_drafts: bool = False) -> dict[str | None, int]:
        """Number of orders per state, category, priority or customer."""
        column = {
            "state": "state",
            "category": "category",
            "priority": "priority",
            "customer": "customer_id",
        }.get(by)
        if column is None:
            raise ValueError(f"cannot count orders by {by!r}")
        where = "" if include_drafts else "WHERE state <> 'draft'"
        rows = self.db.fetchall(
            f"SELECT {column}, COUNT(*) FROM order_summary {where} "
            f"GROUP BY {column} ORDER BY {column}"
        )
        return {key: int(n) for key, n in rows}

    def cancellation_requests(
        self, order_id: UUID | None = None, offset: int = 0, limit: int = 50
    ) -> Page[dict[str, Any]]:
        clauses, params = [], []
        if order_id is not None:
            clauses.append("c.order_id = %s")
            params.append(self.db.adapt(order_id, "uuid"))
        return self._page(
            CancellationRequests.table,
            "c",
            clauses,
            params,
            "c.requested_at DESC, c.id",
            offset,
            limit,
        )

    def cancellation_request(self, request_id: str) -> dict[str, Any] | None:
        page = self._page(
            CancellationRequests.table, "c", ["c.id = %s"], [request_id], "c.id", 0, 1
        )
        return page.items[0] if page.items else None

    # ------------------------------------------------------------------- plumbing
    def _order_clauses(
        self, where: OrderFilter, alias: str, id_column: str, documents: bool = False
    ) -> tuple[list[str], list[Any]]:
        clauses, params = _equal(
            (f"{alias}.state", where.state),
            (f"{alias}.external_id", where.external_id),
            (f"{alias}.category", where.category),
            (f"{alias}.priority", where.priority),
        )
        if where.customer is not None:
            clauses.append(
                f"EXISTS (SELECT 1 FROM order_summary s WHERE s.id = "
                f"{alias}.order_id AND s.customer_id = %s)"
                if documents
                else f"{alias}.customer_id = %s"
            )
            params.append(where.customer)
        if where.states:
            clauses.append(f"{alias}.state IN ({', '.join(['%s'] * len(where.states))})")
            params += list(where.states)
        if where.ids:
            clauses.append(f"{alias}.{id_column} IN ({', '.join(['%s'] * len(where.ids))})")
            params += [self.db.adapt(i, "uuid") for i in where.ids]
        if where.order_date_from is not None:
            clauses.append(f"{alias}.order_date >= %s")
            params.append(self._time(where.order_date_from))
        if where.order_date_to is not None:
            clauses.append(f"{alias}.order_date < %s")
            params.append(self._time(where.order_date_to))
        if not where.include_drafts and not documents:
            clauses.append(f"{alias}.state <> 'draft'")
        return clauses, params

    def _time(self, value: datetime) -> Any:
        return self.db.adapt(value, "timestamptz")

    def _page(
        self,
        table: Table,
        alias: str,
        clauses: list[str],
        params: list[Any],
        order_by: str,
        offset: int,
        limit: int,
    ) -> Page[dict[str, Any]]:
        offset = max(0, offset)
        limit = max(0, min(limit, MAX_LIMIT))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        total = self.db.fetchone(f"SELECT COUNT(*) FROM {table.name} {alias}{where}", params)
        cols = table.column_names
        rows = self.db.fetchall(
            f"SELECT {', '.join(f'{alias}.{c}' for c in cols)} FROM {table.name} {alias}"
            f"{where} ORDER BY {order_by} LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        types = table.types()
        items = [
            {c: self.db.decode(v, types[c]) for c, v in zip(cols, row, strict=True)} for row in rows
        ]
        return Page(items=items, total=int(total[0]) if total else 0, offset=offset, limit=limit)


def _equal(*pairs: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The clauses `column = %s` and their parameters, for each (column, value) given (a
    value of None: no clause)."""
    given = [(column, value) for column, value in pairs if value is not None]
    return [f"{column} = %s" for column, _ in given], [value for _, value in given]

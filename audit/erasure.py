"""Erasing a customer's personal data (`serviceorders audit erase --customer ID`).

1. The customer's key is deleted and the erasure recorded (`pii_key`, `pii_erasure`): from
   then on every sealed value of that customer reveals as `[erased]`; the stored events,
   and so the hash chains and checkpoints, do not change.
2. The snapshots of the customer's orders are deleted: they are a cache of replayed state,
   outside the chain, and may hold revealed values.
3. The copies outside the log that the caller names (`also`: the CLI passes the Kafka
   intake's, consumers/store.py `erase_intake_rows`: the customer's dead letters and the
   refusal announcements of its orders) are deleted.
4. After every process had time to drop the key from its cache, the read models are
   rebuilt from the log, so that no table keeps a revealed value.

docs/audit.md, "What erasure reaches", lists every table and what erasure does to it
(tests/e2e/test_erasure_scan.py scans them all afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from serviceorders.audit.pii import CACHE_SECONDS, erase
from serviceorders.domain.privacy import ORDER_SCOPE
from serviceorders.storage.db import ReadDb


@dataclass(frozen=True)
class Erasure:
    customer_id: str
    orders: list[UUID]
    had_key: bool
    snapshots_deleted: int
    deleted: dict[str, int] = field(default_factory=dict)  # rows deleted by `also`, by table


# A step of erasure outside the log: (db, customer, its orders) -> rows deleted, by table.
Step = Callable[[ReadDb, str, list[UUID]], dict[str, int]]


def erase_customer(
    db: ReadDb,
    customer_id: str,
    actor: str,
    reason: str | None = None,
    *,
    rebuild: Callable[[ReadDb], object],
    also: Sequence[Step] = (),
    wait: float = CACHE_SECONDS + 1.0,
) -> Erasure:
    """Erase the customer's personal data on `db` (steps 1 to 4 above). `rebuild` rebuilds
    the read models from the log on that connection (the caller's projections, with its
    progress bar): the audit room does not import the projections, which reveal sealed
    values through `pii`."""
    rows = db.fetchall("SELECT id FROM order_summary WHERE customer_id = %s", (customer_id,))
    if customer_id.startswith(ORDER_SCOPE) and len(customer_id) > len(ORDER_SCOPE):
        # An order without a customer seals under `order:<external id>` (scope_of): its
        # snapshots and dead letters go with that key too.
        rows += db.fetchall(
            "SELECT id FROM order_summary WHERE customer_id IS NULL AND external_id = %s",
            (customer_id[len(ORDER_SCOPE) :],),
        )
    orders = [UUID(str(r[0])) for r in rows]
    had_key = erase(db, customer_id, actor, reason, len(orders))
    deleted = 0
    table = db.snapshots_table
    for i in range(0, len(orders), 500):
        chunk = orders[i : i + 500]
        keys = [o if db.dialect == "postgres" else o.hex for o in chunk]
        marks = ", ".join(["%s"] * len(keys))
        cursor = db.execute(f"DELETE FROM {table} WHERE originator_id IN ({marks})", keys)
        deleted += max(getattr(cursor, "rowcount", 0) or 0, 0)
    others: dict[str, int] = {}
    for step in also:
        for table, count in step(db, customer_id, orders).items():
            others[table] = others.get(table, 0) + count
    time.sleep(wait)  # running processes cache a key for at most CACHE_SECONDS
    rebuild(db)
    return Erasure(customer_id, orders, had_key, deleted, others)

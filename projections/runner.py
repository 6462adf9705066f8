"""Runs projections: pages of the log applied in one transaction each, with each
projection's position recorded in that same transaction (exactly once), a lock so that
two projector processes never apply the same page, and a compare-and-set on the position
in case a lock was ever bypassed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Mapper
from serviceorders.domain.codec import UnknownEvent
from serviceorders.projections.log import EventLog, events_after, fold, keep_orders, log_head
from serviceorders.projections.views import PROJECTIONS, Projection
from serviceorders.storage import seen
from serviceorders.storage.db import Busy, ReadDb, Table
from serviceorders.support.gcpause import gc_paused

log = logging.getLogger(__name__)

POSITIONS = Table(
    name="projection_position",
    columns=(("name", "text"), ("position", "bigint"), ("updated_at", "timestamptz")),
    primary_key=("name",),
)
LOCK = "serviceorders.projections"


class PositionMoved(Exception):
    """The stored position changed under a batch: another writer got there first."""


@dataclass(frozen=True)
class Status:
    name: str
    position: int
    head: int
    lag: int  # events behind the log head


def create_tables(db: ReadDb, projections: Sequence[Projection] = PROJECTIONS) -> None:
    with db.transaction():
        db.create_table(POSITIONS)
        seen.create_tables(db)  # audit evidence the projector writes (not a read model)
        for projection in projections:
            db.create_table(projection.table)
        for projection in projections:
            db.execute(
                f"INSERT INTO {POSITIONS.name} (name, position) VALUES (%s, 0) "
                f"ON CONFLICT (name) DO NOTHING",
                (projection.name,),
            )


def read_positions(db: ReadDb, names: Sequence[str]) -> dict[str, int]:
    """The log position each named projection table has reached."""
    rows = db.fetchall(
        f"SELECT name, position FROM {POSITIONS.name} WHERE name IN "
        f"({', '.join(['%s'] * len(names))})",
        list(names),
    )
    found = {name: int(position) for name, position in rows}
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(
            f"projection tables not set up ({', '.join(missing)}): run `serviceorders db init`"
        )
    return found


def status(
    db: ReadDb,
    projections: Sequence[Projection] = PROJECTIONS,
    tables: dict[str, str] | None = None,
) -> list[Status]:
    """Where each projection is, the log head and how many events it is behind. A read of
    positions and of the events table that maps no event, so the metrics, the operators'
    API and `projections status` need no mapper (nor the composition root) for it."""
    tables = tables or {p.name: p.name for p in projections}
    head = log_head(db)
    positions = read_positions(db, [tables[p.name] for p in projections])
    return [
        Status(
            p.name,
            positions[tables[p.name]],
            head,
            events_after(db, positions[tables[p.name]]),
        )
        for p in projections
    ]


class Projector:
    """Applies the log to a set of projections, each into its table (`tables` may map a
    projection to another table, as rebuild and verify do)."""

    def __init__(
        self,
        db: ReadDb,
        mapper: Mapper[Any],
        projections: Sequence[Projection] = PROJECTIONS,
        tables: dict[str, str] | None = None,
        batch_size: int = 500,
        lock: str | None = LOCK,
        fresh: bool = False,
        fast: bool = True,
        keep: int = 0,
    ) -> None:
        """`fresh`: the tables are empty and only this projector writes them (rebuild,
        verify), so rows that cannot exist yet are inserted without conflict checks.
        `fast`: order events decoded without pydantic (projections/decoding.py); False
        decodes every event into its pydantic model (the reference the tests compare with).
        `keep`: how many orders, as folded by the pages, to keep for the next pages
        (projections/log.py `OrderCache`; 0: each page reads its orders' histories)."""
        self.db = db
        self.log = EventLog(db, mapper, fast=fast, keep=keep)
        self.projections = list(projections)
        self.tables = tables or {p.name: p.name for p in projections}
        self.batch_size = batch_size
        self.lock = lock
        self.fresh = fresh
        # The process's EngineMetrics (serviceorders.metrics), or None: page_done()
        self.metrics: Any = None

    def positions(self) -> dict[str, int]:
        return read_positions(self.db, [self.tables[p.name] for p in self.projections])

    def status(self) -> list[Status]:
        return status(self.db, self.projections, self.tables)

    def run_once(self, stop: int | None = None) -> int:
        """Apply the next page (to the projections furthest behind); returns its size."""
        started = time.perf_counter()
        with self.db.transaction(lock=self.lock):
            applied = self.step(stop)
        if applied and self.metrics is not None:
            self.metrics.page_done(applied, time.perf_counter() - started)
        return applied

    def step(self, stop: int | None = None) -> int:
        """`run_once` inside a transaction the caller holds."""
        with gc_paused():  # (the page is freed before the collector is back on)
            return self._step(stop)

    def _step(self, stop: int | None) -> int:
        positions = self.positions()
        start = min(positions.values())
        behind = [p for p in self.projections if positions[self.tables[p.name]] == start]
        ahead = [pos for pos in positions.values() if pos > start]
        limit_to = min([*ahead, stop] if stop is not None else ahead, default=None)
        if limit_to is not None and limit_to <= start:
            return 0
        events = self.log.read(after=start, limit=self.batch_size, stop=limit_to)
        if not events:
            return 0
        batch = fold(
            self.log,
            start,
            events,
            fresh=self.fresh,
            steps=any(getattr(p, "needs_steps", False) for p in behind),
        )
        for projection in behind:
            projection.apply(self.db, batch, self.tables[projection.name])
        # The chain heads read, in the transaction that moves the positions: `audit verify`
        # then sees an event the projector read vanish (docs/audit.md, "Threat model").
        seen.record(self.db, events)
        self._advance([self.tables[p.name] for p in behind], start, batch.end)
        keep_orders(self.log, batch)
        return len(events)

    def _advance(self, names: list[str], expected: int, new: int) -> None:
        marks = ", ".join(["%s"] * len(names))
        moved = self.db.execute(
            f"UPDATE {POSITIONS.name} SET position = %s, updated_at = CURRENT_TIMESTAMP "
            f"WHERE name IN ({marks}) AND position = %s",
            (new, *names, expected),
        )
        if moved.rowcount != len(names):
            raise PositionMoved(f"{', '.join(names)}: no longer all at {expected}")

    def catch_up(
        self,
        stop: int | None = None,
        progress: Callable[[int], None] | None = None,
        stopping: threading.Event | None = None,
    ) -> int:
        """Apply pages until the log head (or `stop`, or until `stopping` is set);
        returns the events applied."""
        total = 0
        while stopping is None or not stopping.is_set():
            try:
                applied = self.run_once(stop)
            except (Busy, PositionMoved) as e:
                log.info("projections busy (%s); retrying", e)
                time.sleep(0.2)
                continue
            if not applied:
                return total
            total += applied
            if progress:
                progress(applied)
        return total

    def wait_until(self, target: int, timeout: float = 10.0) -> None:
        """Return once every projection has reached `target` (applying pages itself when
        no other projector is busy); TimeoutError when that takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while min(self.positions().values()) < target:
            try:
                if self.run_once():
                    continue
            except Busy:
                # Another projector is applying a page (likely with our events in it):
                # wake up when it lets go of the lock, not at the next poll.
                if self.lock is not None:
                    left = deadline - time.monotonic()
                    self.db.wait_for_lock(self.lock, max(0.001, min(left, 1.0)))
                    if left > 0:
                        continue
            except PositionMoved:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"read models did not reach {target} in {timeout}s")
            time.sleep(0.01)

    def follow(
        self,
        stopping: threading.Event,
        poll_seconds: float = 0.2,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Catch up, then keep following new events until `stopping` is set. A catch-up
        after a gap (the first one, one after an error, one of more than a page) is logged
        at INFO; the ordinary rounds at DEBUG."""
        gap = True
        while not stopping.is_set():
            try:
                started = time.monotonic()
                applied = self.catch_up(stopping=stopping)
                if applied:
                    level = logging.INFO if gap or applied > self.batch_size else logging.DEBUG
                    if log.isEnabledFor(level):
                        log.log(
                            level,
                            "projections caught up%s: %d events in %.2fs",
                            " after a gap" if level == logging.INFO else "",
                            applied,
                            time.monotonic() - started,
                            extra={"events": applied, "position": min(self.positions().values())},
                        )
                gap = False
                if not applied:
                    stopping.wait(poll_seconds)
            except UnknownEvent:  # written by a newer release: stop here, never skip it
                raise
            except Exception as e:  # the database restarting, a lost connection...
                gap = True
                if on_error is None:
                    raise
                on_error(e)
                stopping.wait(1.0)

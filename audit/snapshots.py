"""Snapshots checked against a replay of the events up to their version (docs/audit.md)."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from serviceorders.audit.pii import KeyStore, Vault
from serviceorders.audit.report import Report, SnapshotProblem
from serviceorders.audit.store import Row, Store
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.snapshot import OrderSnapshot

log = logging.getLogger(__name__)


class SnapshotCheck:
    """Snapshots, merged in (order id, version) order with the events: each must equal a
    replay of the order's events up to its version."""

    def __init__(self, store: Store, mapper: PydanticMapper | None = None) -> None:
        self.mapper = mapper or PydanticMapper(transcoder=OrjsonTranscoder())
        if getattr(self.mapper, "reveal", False) is None:
            # personal data sealed in the stored states: compare revealed values, as the
            # application loads them (same keys, same database; see projections/log.py)
            self.mapper.reveal = Vault(KeyStore(db=store.db)).reveal
        self.pending = store.snapshot_rows()
        self.peeked: tuple[str, int, str, bytes] | None = next(self.pending, None)
        self.problems: list[SnapshotProblem] = []
        self.count = 0
        self.unchecked = 0

    def _take(self, order_id: str) -> list[tuple[str, int, str, bytes]]:
        """The snapshots of this order; those of orders without events are problems."""
        found = []
        while self.peeked is not None and UUID(self.peeked[0]) <= UUID(order_id):
            if self.peeked[0] == order_id:
                found.append(self.peeked)
            else:
                self._orphan(self.peeked)
            self.peeked = next(self.pending, None)
        return found

    def _orphan(self, snap: tuple[str, int, str, bytes]) -> None:
        self.count += 1
        self.problems.append(
            SnapshotProblem(snap[0], snap[1], "no_events", "a snapshot of an order without events")
        )

    def order(self, order_id: str, rows: list[Row], broken_at: int | None) -> None:
        snaps = self._take(order_id)
        if not snaps:
            return
        uid = UUID(order_id)
        order: Any = None
        replayed = 0
        rows_iter = iter(rows)
        for _, version, topic, state in snaps:
            self.count += 1
            if broken_at is not None and broken_at <= version:
                self.unchecked += 1
                continue
            if version > rows[-1].version:
                self.problems.append(
                    SnapshotProblem(
                        order_id, version, "beyond_head", f"the newest event is v{rows[-1].version}"
                    )
                )
                continue
            try:
                while replayed < version:
                    row = next(rows_iter)
                    event = self.mapper.to_domain_event(
                        StoredEvent(
                            originator_id=uid,
                            originator_version=row.version,
                            topic=row.topic,
                            state=row.raw or b"",
                        )
                    )
                    order = event.mutate(order)
                    replayed = row.version
            except Exception as e:
                self.unchecked += 1
                log.debug("cannot replay %s: %s", order_id, e)
                continue
            try:
                snap = self.mapper.to_domain_event(
                    StoredEvent(
                        originator_id=uid, originator_version=version, topic=topic, state=state
                    )
                )
            except Exception as e:
                self.problems.append(SnapshotProblem(order_id, version, "undecodable", str(e)))
                continue
            if not isinstance(snap, OrderSnapshot):
                self.problems.append(
                    SnapshotProblem(
                        order_id, version, "undecodable", f"not an order snapshot: {topic}"
                    )
                )
                continue
            expected = order.snapshot_state()
            if snap.state != expected or snap.topic != get_topic(type(order)):
                fields = [
                    k
                    for k in type(expected).model_fields
                    if getattr(snap.state, k) != getattr(expected, k)
                ]
                if snap.topic != get_topic(type(order)):
                    fields.append("topic")
                self.problems.append(
                    SnapshotProblem(
                        order_id,
                        version,
                        "differs",
                        f"differs from a replay of v1..v{version} in: {', '.join(fields)}",
                    )
                )

    def finish(self, report: Report) -> None:
        while self.peeked is not None:
            self._orphan(self.peeked)
            self.peeked = next(self.pending, None)
        report.snapshots = self.count
        report.snapshot_problems += self.problems
        if self.unchecked:
            report.notes.append(
                f"{self.unchecked} snapshot(s) not checked: their order's "
                "chain is broken at or before them"
            )

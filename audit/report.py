"""What a verification found: each problem classified, and the report the CLI and the
tests read (docs/audit.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OrderProblem:
    order_id: str
    version: int  # the first bad version
    kind: str  # altered, deleted, inserted, reordered, head_moved_back, missing, rewritten
    detail: str


@dataclass(frozen=True)
class CheckpointProblem:
    seq: int
    kind: str  # digest, chain, hmac, unsigned, changes, root, order_count, anchor, position
    detail: str


@dataclass(frozen=True)
class SnapshotProblem:
    order_id: str
    version: int
    kind: str  # differs, undecodable, beyond_head, no_events
    detail: str


@dataclass
class Report:
    orders: int = 0
    events: int = 0
    checkpoints: int = 0
    snapshots: int = 0
    seen_heads: int = 0  # chain heads the projector read, each checked against the store
    order_problems: list[OrderProblem] = field(default_factory=list)
    checkpoint_problems: list[CheckpointProblem] = field(default_factory=list)
    snapshot_problems: list[SnapshotProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not (or could not be) checked
    # what the verification could not rule out at all (a log never checkpointed): the
    # report can be OK with warnings; `audit verify --strict` fails on any
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.order_problems or self.checkpoint_problems or self.snapshot_problems)

    def broken_orders(self) -> dict[str, OrderProblem]:
        """Each broken order's earliest problem (its first bad version)."""
        found: dict[str, OrderProblem] = {}
        for p in self.order_problems:
            if p.order_id not in found or p.version < found[p.order_id].version:
                found[p.order_id] = p
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "orders": self.orders,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "snapshots": self.snapshots,
            "seen_heads": self.seen_heads,
            "broken_orders": [
                vars(p) for p in sorted(self.broken_orders().values(), key=lambda p: p.order_id)
            ],
            "order_problems": [vars(p) for p in self.order_problems],
            "checkpoint_problems": [vars(p) for p in self.checkpoint_problems],
            "snapshot_problems": [vars(p) for p in self.snapshot_problems],
            "warnings": self.warnings,
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        out = []
        for p in sorted(self.broken_orders().values(), key=lambda p: p.order_id):
            out.append(f"order {p.order_id}: first bad version {p.version}: {p.kind}: {p.detail}")
            out += [
                f"  also v{q.version}: {q.kind}: {q.detail}"
                for q in self.order_problems
                if q.order_id == p.order_id and q is not p
            ]
        out += [f"checkpoint {p.seq}: {p.kind}: {p.detail}" for p in self.checkpoint_problems]
        out += [
            f"snapshot {p.order_id} v{p.version}: {p.kind}: {p.detail}"
            for p in self.snapshot_problems
        ]
        return out

"""Snapshots of a ServiceOrder: a typed copy of its state at one version.

Snapshots sit outside the hash chain; a snapshot plus the later events must equal a
full replay (tested), and the audit verifies snapshots against a replay.

`FORMAT` versions the snapshot's shape (stored as `format` in each snapshot's state).
A change of shape deletes the older snapshots in a schema migration (runtime/schema.py,
migration 5): each order is then replayed from its events and snapshotted again at its
next interval; a process refuses a database whose schema is older than its code, so an
older snapshot is never read. Format 2
(issue 17) added `contributors`, `proposal` and `held_for_proposal`, which no older
snapshot can supply (an empty list of contributors would open four-eyes). Format 3
(issue 19) added `outcomes`, `milestones`, `cancellation_information` and
`item_states_before_cancellation` (migration 7 deletes the format-2 snapshots: an older
snapshot has no outcomes or milestones, which the events before it would have filled).
Format 4 (issue 20) added `inventory` (what the inventory held of each item naming an
existing service; migration 9 deletes the format-3 snapshots).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.utils import get_topic, register_topic, resolve_topic
from pydantic import BaseModel, ConfigDict

from .values import (
    Actor,
    ItemCheck,
    ItemState,
    Milestone,
    Note,
    OrderHeader,
    OrderItem,
    OrderOutcome,
    OrderState,
    Problem,
    Proposal,
)

FORMAT = 4


class OrderSnapshotState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    created_on: datetime
    modified_on: datetime
    header: OrderHeader
    state: OrderState
    state_since: datetime | None
    items: dict[str, OrderItem]
    flags: tuple[Problem, ...]
    notes: tuple[Note, ...]
    submitted_by: Actor | None
    decided_by: Actor | None
    submitted_at: datetime | None
    decided_at: datetime | None
    rejection_reason: str | None
    waiting_reason: str | None
    prior_state: OrderState | None
    cancellation_request_id: str | None
    cancellation_reason: str | None
    cancellation_requested_by: Actor | None
    point_of_no_return: bool
    deleted: bool
    revision: int
    head_hash: str
    contributors: tuple[str, ...]
    proposal: Proposal | None
    held_for_proposal: str | None
    outcomes: tuple[OrderOutcome, ...]
    milestones: tuple[Milestone, ...]
    cancellation_information: str | None
    item_states_before_cancellation: dict[str, ItemState]
    inventory: dict[str, ItemCheck]
    format: int = FORMAT


_PRIVATE = {"created_on", "modified_on"}


class OrderSnapshot(BaseModel, CanSnapshotAggregate[UUID]):
    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str] = "serviceorders.order:OrderSnapshot"

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    topic: str
    state: OrderSnapshotState

    @classmethod
    def take(cls, aggregate: Any) -> OrderSnapshot:
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=aggregate.snapshot_state(),
        )

    def mutate(self, _: None) -> Any:
        cls = resolve_topic(self.topic)
        state = {("_" + k if k in _PRIVATE else k): v for k, v in self.state if k != "format"}
        state.update(_id=self.originator_id, _version=self.originator_version, _pending_events=[])
        order = object.__new__(cls)
        object.__setattr__(order, "__dict__", state)
        return order


register_topic(OrderSnapshot.TOPIC, OrderSnapshot)

"""The ServiceOrder's events: explicit, past tense, with stable topics and class versions.

Every event carries the same envelope (who, from where, correlation and causation, time)
and the hash chaining it to the previous event of the same order (see `chain.py`).
Events are pydantic models; `codec.py` stores them as JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.domain import CanInitAggregate, CanMutateAggregate
from eventsourcing.utils import register_topic
from pydantic import BaseModel, ConfigDict

from .chain import HASH_RULE, event_hash
from .copying import replace
from .errors import InvalidCommand
from .lifecycle import TARGET, Action
from .values import (
    Actor,
    Decision,
    HeaderChange,
    ItemCheck,
    ItemState,
    Milestone,
    Note,
    OrderHeader,
    OrderItem,
    OrderOutcome,
    OrderRelationship,
    OrderState,
    Problem,
    Proposal,
    Source,
)

if TYPE_CHECKING:
    from .order import ServiceOrder

TOPIC_PREFIX = "serviceorders.order:"


class ChainedEvent(BaseModel, CanMutateAggregate[UUID]):
    """Base of every event of the log (an order's, a service's: domain/service.py): the
    envelope and the hash chain of its aggregate. Its topic is `TOPIC_PREFIX` + the
    class's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # The stored state, dumped once (see model_post_init): a slot, not a pydantic private
    # attribute, whose per-instance set-up cost more than the rest of the event's init.
    __slots__ = ("_stored",)

    TOPIC: ClassVar[str]
    TOPIC_PREFIX: ClassVar[str] = TOPIC_PREFIX
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    actor: Actor
    source: Source
    correlation_id: str
    causation_id: str | None = None
    prev_hash: str
    hash: str = ""
    # The canonical rule the hash was computed with (docs/audit.md): "jcs" for every event
    # written now; None for one stored before the rule was named (stored without the member).
    hash_rule: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.TOPIC = cls.TOPIC_PREFIX + cls.__name__
        register_topic(cls.TOPIC, cls)

    def model_post_init(self, context: Any, /) -> None:
        if not self.hash:  # a new event; a stored one arrives with its hash
            object.__setattr__(self, "hash_rule", HASH_RULE)
            state = self._dump()
            try:
                digest = event_hash(self.TOPIC, self.originator_id, self.originator_version, state)
            except ValueError as e:  # not I-JSON: RFC 8785 cannot write it exactly
                raise InvalidCommand(
                    f"a value cannot be recorded exactly ({e}): numbers must be integers "
                    "within +-(2^53-1) or finite doubles; send larger integers as text"
                ) from None
            object.__setattr__(self, "hash", digest)
            state["hash"] = digest  # same key order as a fresh dump
            object.__setattr__(self, "_stored", state)  # the mapper stores exactly this

    def __eq__(self, other: object) -> bool:  # the fields (the stored state is a slot)
        if not isinstance(other, ChainedEvent):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), self.originator_id, self.originator_version, self.hash))

    def _dump(self) -> dict[str, Any]:
        state = self.model_dump(mode="json", exclude={"originator_id", "originator_version"})
        if state["hash_rule"] is None:  # stored before the rule was named: as stored
            del state["hash_rule"]
        if self.class_version > 1:
            state["class_version"] = self.class_version
        return state

    def stored_state(self) -> dict[str, Any]:
        """The event state as the store keeps it (JSON types, no id or version)."""
        return dict(self.state_for_storage())

    def state_for_storage(self) -> dict[str, Any]:
        """The same, computed once and shared: never change it."""
        try:
            stored: dict[str, Any] = self._stored  # type: ignore[attr-defined]
            return stored
        except AttributeError:  # a stored event (it came with its hash), or a copy
            state = self._dump()
            object.__setattr__(self, "_stored", state)
            return state

    def compute_hash(self) -> str:
        return event_hash(
            self.TOPIC, self.originator_id, self.originator_version, self._dump()
        )  # from the fields, never a cached copy

    def mutate(self, aggregate: Any) -> Any:
        state_before = aggregate.state if aggregate is not None else None
        aggregate = super().mutate(aggregate)
        aggregate.head_hash = self.hash
        if aggregate.state != state_before:
            aggregate.state_since = self.timestamp
        return aggregate

    def apply(self, aggregate: Any) -> None:
        """How the event changes its aggregate; overridden by each event."""


class OrderEvent(ChainedEvent):
    """Base of all order events."""

    def apply(self, order: ServiceOrder) -> None:
        """How the event changes the order; overridden by each event."""


class OrderDrafted(OrderEvent, CanInitAggregate[UUID]):
    """An order was started: by an agent (no items yet) or complete from an upstream system."""

    originator_topic: str
    header: OrderHeader
    items: tuple[OrderItem, ...] = ()
    notes: tuple[Note, ...] = ()

    def apply(self, order: ServiceOrder) -> None:
        order.header = self.header
        order.items = {item.id: item for item in self.items}
        order.notes = self.notes
        order.contributors = (self.actor.id,)


class LineAdded(OrderEvent):
    item: OrderItem

    def apply(self, order: ServiceOrder) -> None:
        order.items = {**order.items, self.item.id: self.item}
        _contributed(order, self.actor)


class LineConfigured(OrderEvent):
    """Characteristics set or cleared, or the site, quantity or dependencies changed."""

    item_id: str
    characteristics: dict[str, Any] = {}
    cleared: tuple[str, ...] = ()
    changes: dict[str, Any] = {}

    def apply(self, order: ServiceOrder) -> None:
        item = order.items[self.item_id]
        values = {k: v for k, v in item.characteristics.items() if k not in self.cleared}
        values.update(self.characteristics)
        updated = OrderItem.model_validate(
            {**item.model_dump(), **self.changes, "characteristics": values}
        )
        order.items = {**order.items, self.item_id: updated}
        _contributed(order, self.actor)


class LineRemoved(OrderEvent):
    item_id: str

    def apply(self, order: ServiceOrder) -> None:
        gone = {self.item_id, *nested_in(order.items, self.item_id)}
        order.items = {k: v for k, v in order.items.items() if k not in gone}
        _contributed(order, self.actor)


def nested_in(items: dict[str, OrderItem], item_id: str) -> list[str]:
    """The ids of the items nested in `item_id`, at any depth (items are kept flat, each
    naming its `parent`), parents before their own nested items."""
    found: list[str] = []
    parents = [item_id]
    while parents:
        children = [k for k, v in items.items() if v.parent in parents and k not in found]
        found.extend(children)
        parents = children
    return found


class InventoryChecked(OrderEvent):
    """The items naming existing services were checked against the inventory as the order
    (or its revision) was accepted (domain/inventory.py): what each service was then."""

    checks: tuple[ItemCheck, ...]

    def apply(self, order: ServiceOrder) -> None:
        order.inventory = {**order.inventory, **{c.item_id: c for c in self.checks}}


class OrderSubmitted(OrderEvent):
    """The order entered review (`acknowledged`); `flags` are the reviewer's warnings."""

    flags: tuple[Problem, ...] = ()

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.SUBMIT]
        order.flags = self.flags
        order.submitted_by = self.actor
        order.submitted_at = self.timestamp
        _contributed(order, self.actor)
        order.items = {k: replace(v, state=ItemState.ACKNOWLEDGED) for k, v in order.items.items()}


class OrderApproved(OrderEvent):
    note: str | None = None
    decision: Decision | None = None  # None in events of releases before issue 17

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.APPROVE]
        order.decided_by = self.actor
        order.decided_at = self.timestamp
        _milestone(order, self, "approved")


class OrderRejected(OrderEvent):
    reason: str
    decision: Decision | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.REJECT]
        order.decided_by = self.actor
        order.decided_at = self.timestamp
        order.rejection_reason = self.reason
        order.items = {k: replace(v, state=ItemState.REJECTED) for k, v in order.items.items()}
        _outcome(order, self, "rejected", self.reason)


class OrderHeld(OrderEvent):
    reason: str
    proposal_id: str | None = None  # held while this proposal waits (policy)

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.HOLD]
        order.waiting_reason = self.reason
        order.held_for_proposal = self.proposal_id


class OrderResumed(OrderEvent):
    note: str | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.RESUME]
        order.waiting_reason = None
        order.held_for_proposal = None


class InformationRequested(OrderEvent):
    information: str

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.REQUEST_INFORMATION]
        order.waiting_reason = self.information


class InformationProvided(OrderEvent):
    information: str

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.PROVIDE_INFORMATION]
        order.waiting_reason = None


class ItemStateChanged(OrderEvent):
    item_id: str
    state: ItemState
    reason: str | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.items = {
            **order.items,
            self.item_id: replace(order.items[self.item_id], state=self.state),
        }
        if self.state is ItemState.FAILED:
            reason = self.reason or f"order item {self.item_id} failed"
            _outcome(order, self, "item_failed", reason, (self.item_id,))
        elif self.state is ItemState.IN_PROGRESS:
            _milestone(order, self, "itemStarted", item_ids=(self.item_id,))
        elif self.state is ItemState.COMPLETED:
            _milestone(order, self, "itemCompleted", item_ids=(self.item_id,))


def _outcome(
    order: ServiceOrder,
    event: OrderEvent,
    code: str,
    message: str,
    item_ids: tuple[str, ...] = (),
) -> None:
    """An outcome told back (`errorMessage`), derived from the event (issue 19)."""
    told = OrderOutcome(code=code, message=message, date=event.timestamp, item_ids=item_ids)
    order.outcomes = (*order.outcomes, told)


def _milestone(
    order: ServiceOrder,
    event: OrderEvent,
    name: str,
    message: str | None = None,
    item_ids: tuple[str, ...] = (),
) -> None:
    """A milestone the order reached (`milestone`), derived from the event: its id is the
    event's version (stable across replays)."""
    reached = Milestone(
        id=str(event.originator_version),
        name=name,
        date=event.timestamp,
        message=message,
        item_ids=item_ids,
    )
    order.milestones = (*order.milestones, reached)


class OrderRevised(OrderEvent):
    """Items named replace those items (or are added); `removed_item_ids` leave the order."""

    items: tuple[OrderItem, ...] = ()
    removed_item_ids: tuple[str, ...] = ()
    header: HeaderChange = HeaderChange()
    flags: tuple[Problem, ...] = ()

    def apply(self, order: ServiceOrder) -> None:
        _merge(order, self.items, self.removed_item_ids, self.header, self.flags)
        _contributed(order, self.actor)


def _merge(
    order: ServiceOrder,
    new: tuple[OrderItem, ...],
    removed: tuple[str, ...],
    header: HeaderChange,
    flags: tuple[Problem, ...],
) -> None:
    """A revision's change: items named replace those items (or are added), removed ones
    leave (before approval) or stay on record cancelled (after)."""
    items = dict(order.items)
    for item in new:
        items[item.id] = item
    for item_id in removed:
        if item_id not in items:  # nested in an item removed before it
            continue
        nested = nested_in(items, item_id)
        if order.state is OrderState.ACKNOWLEDGED:
            for k in (item_id, *nested):
                items.pop(k, None)
        else:  # after approval the item stays on record, cancelled, with its open nested items
            items[item_id] = replace(items[item_id], state=ItemState.CANCELLED)
            for k in nested:
                state = items[k].state
                if not (state and state.is_final):
                    items[k] = replace(items[k], state=ItemState.CANCELLED)
    order.items = items
    order.header = header.apply_to(order.header)
    order.flags = flags
    order.revision += 1


def _contributed(order: ServiceOrder, actor: Actor) -> None:
    """`actor` shaped the order's content: four-eyes keeps them from deciding it."""
    if actor.id not in order.contributors:
        order.contributors = (*order.contributors, actor.id)


class RevisionProposed(OrderEvent):
    """A revision of an approved order, waiting for a second person's decision: the
    order's items do not change (yet)."""

    proposal_id: str
    items: tuple[OrderItem, ...] = ()
    removed_item_ids: tuple[str, ...] = ()
    header: HeaderChange = HeaderChange()
    flags: tuple[Problem, ...] = ()

    def apply(self, order: ServiceOrder) -> None:
        order.proposal = Proposal(
            id=self.proposal_id,
            items=self.items,
            removed_item_ids=self.removed_item_ids,
            header=self.header,
            flags=self.flags,
            proposed_by=self.actor,
            proposed_at=self.timestamp,
            base_version=self.originator_version - 1,
        )


class ProposalApproved(OrderEvent):
    """A second person approved the waiting proposal: its change applies now (`flags`:
    the order's, re-validated against its items at approval)."""

    proposal_id: str
    note: str | None = None
    flags: tuple[Problem, ...] = ()
    decision: Decision

    def apply(self, order: ServiceOrder) -> None:
        proposal = order.proposal
        if proposal is not None:
            _merge(order, proposal.items, proposal.removed_item_ids, proposal.header, self.flags)
        order.proposal = None


class ProposalRefused(OrderEvent):
    proposal_id: str
    reason: str
    decision: Decision

    def apply(self, order: ServiceOrder) -> None:
        order.proposal = None
        _outcome(order, self, "proposal_refused", self.reason)


class ProposalWithdrawn(OrderEvent):
    """The proposal no longer waits: taken back, or the order ended (cancelled, completed)
    before anyone decided it."""

    proposal_id: str
    reason: str | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.proposal = None


class PointOfNoReturnReached(OrderEvent):
    note: str | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.point_of_no_return = True
        _milestone(order, self, "pointOfNoReturn", message=self.note)


class CancellationRequested(OrderEvent):
    request_id: str
    reason: str | None = None
    requested_date: datetime | None = None
    prior_state: OrderState

    def apply(self, order: ServiceOrder) -> None:
        order.prior_state = self.prior_state
        order.state = TARGET[Action.REQUEST_CANCELLATION]
        order.cancellation_request_id = self.request_id
        order.cancellation_reason = self.reason
        order.cancellation_requested_by = self.actor
        order.cancellation_information = None
        # The items mirror the order (v4.1): every open item is assessed with it; the
        # states before are kept to restore them if the cancellation is denied.
        order.item_states_before_cancellation = {
            k: v.state for k, v in order.items.items() if v.state and not v.state.is_final
        }
        order.items = _items_in(order, ItemState.ASSESSING_CANCELLATION)


def _items_in(order: ServiceOrder, state: ItemState) -> dict[str, OrderItem]:
    """The order's items, each one the cancellation assesses (see above) in `state`."""
    before = order.item_states_before_cancellation
    return {k: replace(v, state=state) if k in before else v for k, v in order.items.items()}


class CancellationInformationRequested(OrderEvent):
    """A decider asks the cancellation's requester for information (the order stays
    assessingCancellation; the request waits for the answer)."""

    request_id: str
    information: str

    def apply(self, order: ServiceOrder) -> None:
        order.cancellation_information = self.information


class CancellationInformationProvided(OrderEvent):
    """The requester's answer: the cancellation request is assessed again."""

    request_id: str
    information: str

    def apply(self, order: ServiceOrder) -> None:
        order.cancellation_information = None


class CancellationApproved(OrderEvent):
    request_id: str
    note: str | None = None
    decision: Decision | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.APPROVE_CANCELLATION]
        order.prior_state = None
        order.cancellation_information = None
        order.items = _items_in(order, ItemState.PENDING_CANCELLATION)
        order.item_states_before_cancellation = {}


class CancellationDenied(OrderEvent):
    request_id: str
    reason: str
    restored_state: OrderState
    decision: Decision | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.state = self.restored_state
        order.prior_state = None
        order.cancellation_request_id = None
        order.cancellation_reason = None
        order.cancellation_requested_by = None
        order.cancellation_information = None
        before = order.item_states_before_cancellation
        order.items = {
            k: replace(v, state=before[k]) if k in before else v for k, v in order.items.items()
        }
        order.item_states_before_cancellation = {}
        _outcome(order, self, "cancellation_denied", self.reason)


class OrderCancelled(OrderEvent):
    reason: str | None = None
    request_id: str | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.state = TARGET[Action.CANCEL]
        if self.reason:  # a direct cancellation's reason, or the request's
            order.cancellation_reason = self.reason
        order.cancellation_information = None
        order.item_states_before_cancellation = {}
        order.items = {
            k: v if v.state and v.state.is_final else replace(v, state=ItemState.CANCELLED)
            for k, v in order.items.items()
        }


class OrderCompleted(OrderEvent):
    def apply(self, order: ServiceOrder) -> None:
        order.state = OrderState.COMPLETED


class OrderFailed(OrderEvent):
    def apply(self, order: ServiceOrder) -> None:
        order.state = OrderState.FAILED


class OrderPartiallyCompleted(OrderEvent):
    def apply(self, order: ServiceOrder) -> None:
        order.state = OrderState.PARTIAL


class NoteAdded(OrderEvent):
    """v2 carries a structured `note`; v1 (kept in old stores) carried plain `text`."""

    class_version: ClassVar[int] = 2
    note: Note

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["note"] = {"text": state.pop("text"), "author": state["actor"]["id"], "date": None}

    def apply(self, order: ServiceOrder) -> None:
        order.notes = (*order.notes, self.note)


class OrderResubmitted(OrderEvent):
    """The rejected order was corrected and resubmitted as a new order (linked both ways
    by `orderRelationship`)."""

    new_order_id: UUID
    relationship_type: str

    def apply(self, order: ServiceOrder) -> None:
        link = OrderRelationship(
            id=str(self.new_order_id), relationship_type=self.relationship_type
        )
        order.header = order.header.model_copy(
            update={"order_relationships": (*order.header.order_relationships, link)}
        )


class OrderDeleted(OrderEvent):
    """A draft discarded, or a final order archived: it leaves the TMF641 resources, its
    history stays."""

    reason: str | None = None

    def apply(self, order: ServiceOrder) -> None:
        order.deleted = True


ALL_EVENTS: tuple[type[OrderEvent], ...] = tuple(OrderEvent.__subclasses__())

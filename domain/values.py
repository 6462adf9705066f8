"""Value objects of the order domain: who acts, from where, and what an order holds.

Everything here is an immutable pydantic model, so it can travel inside stored events
and snapshots and be compared by value.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import uuid4

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from .copying import replace


def _date_only_as_date(value: Any) -> Any:
    """A date-only ISO string is a date, not midnight: `date` values survive JSON storage."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    return value


DateOrDateTime = Annotated[datetime | date, BeforeValidator(_date_only_as_date)]


def _empty(value: Any) -> bool:
    return not value


# Attributes a door received with a value that the domain does not interpret (issue 19,
# "lossless"): kept as sent and returned as sent. They may hold personal data: the
# application seals every text in them (domain/privacy.py) before the domain sees them.
# Left out of the stored JSON when empty, so values stored before they existed hash, and
# store, exactly as before. (A plain `= Field(...)` on each, which mypy reads as a default.)


class Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    """Who may act on an order; the permission table is in `lifecycle.py`."""

    AGENT = "agent"  # captures and submits orders by hand
    UPSTREAM = "upstream"  # an upstream order system (Kafka or API intake)
    MANAGER = "manager"  # decides the review queue
    FULFILMENT = "fulfilment"  # a fulfilment system reporting progress
    OPERATOR = "operator"  # a person with database access (the CLI)
    AUDITOR = "auditor"  # reads history, never writes


class Channel(StrEnum):
    API = "api"
    KAFKA = "kafka"
    CLI = "cli"
    SYSTEM = "system"


class Actor(Value):
    id: str = Field(min_length=1, max_length=200)
    role: Role


class Source(Value):
    """Where a command came from; for Kafka the exact message position."""

    channel: Channel
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    event_id: str | None = None
    request_id: str | None = None


class CommandContext(Value):
    """Envelope every command carries and every event records."""

    actor: Actor
    source: Source
    correlation_id: str = Field(default_factory=lambda: str(uuid4()), min_length=1)
    causation_id: str | None = None
    # The operating-system user behind a CLI command (beside the declared actor): recorded
    # on the decisions it takes (`Decision.os_user`); None from the other doors.
    os_user: str | None = Field(default=None, max_length=200)

    @classmethod
    def for_actor(
        cls, actor_id: str, role: Role, channel: Channel = Channel.CLI, **kw: Any
    ) -> CommandContext:
        return cls(actor=Actor(id=actor_id, role=role), source=Source(channel=channel), **kw)


class OrderState(StrEnum):
    """The order lifecycle: `draft`, then exactly the TMF641 ServiceOrderStateType."""

    DRAFT = "draft"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    IN_PROGRESS = "inProgress"
    PENDING = "pending"
    HELD = "held"
    ASSESSING_CANCELLATION = "assessingCancellation"
    PENDING_CANCELLATION = "pendingCancellation"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIAL = "partial"

    @property
    def is_final(self) -> bool:
        return self in FINAL_ORDER_STATES


FINAL_ORDER_STATES = frozenset(
    {
        OrderState.REJECTED,
        OrderState.CANCELLED,
        OrderState.COMPLETED,
        OrderState.FAILED,
        OrderState.PARTIAL,
    }
)


class ItemState(StrEnum):
    """Order item states (TMF641 v4.1 ServiceOrderItemStateType). `assessingCancellation`
    and `pendingCancellation` mirror the order's cancellation states; `partial` is an
    item with nested items of which some completed and some failed."""

    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    IN_PROGRESS = "inProgress"
    PENDING = "pending"
    HELD = "held"
    ASSESSING_CANCELLATION = "assessingCancellation"
    PENDING_CANCELLATION = "pendingCancellation"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIAL = "partial"

    @property
    def is_final(self) -> bool:
        return self in FINAL_ITEM_STATES


FINAL_ITEM_STATES = frozenset(
    {
        ItemState.REJECTED,
        ItemState.CANCELLED,
        ItemState.COMPLETED,
        ItemState.FAILED,
        ItemState.PARTIAL,
    }
)


class ItemAction(StrEnum):
    ADD = "add"  # a new service
    MODIFY = "modify"  # a change to an existing service
    DELETE = "delete"  # a disconnect
    NO_CHANGE = "noChange"  # informational


Scalar = str | int | float | bool | None


class Place(Value):
    """The site an order item is delivered at."""

    id: str = Field(min_length=1, max_length=200)
    name: str | None = None
    role: str | None = None


class EntityRef(Value):
    """A reference to an entity another system owns (TMF's EntityRef): its id, and its name
    as that system gave it; `extra`: the reference's other attributes, as sent."""

    id: str = Field(min_length=1)
    name: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, exclude_if=_empty)


class SpecRef(EntityRef):
    """A service specification of the catalog."""

    version: str | None = None


class Party(EntityRef):
    """A related party (a customer, a contact); `name` is personal data (sealed). `role` as
    sent: None when the sender gave none (only a party whose role is `customer` is the
    order's customer)."""

    role: str | None = "customer"
    referred_type: str | None = None

    @property
    def is_customer(self) -> bool:
        return self.role is not None and self.role.lower() == "customer"


class Note(Value):
    """A note; `text` and `author` may hold personal data (sealed in new events)."""

    text: str = Field(min_length=1)
    author: str | None = None
    date: datetime | None = None
    extra: dict[str, Any] = Field(default_factory=dict, exclude_if=_empty)


class OrderRelationship(Value):
    id: str = Field(min_length=1)
    relationship_type: str = Field(min_length=1)
    extra: dict[str, Any] = Field(
        default_factory=dict, exclude_if=_empty
    )  # e.g. `@referredType` (ServiceOrder when absent), `href`, as sent


class ItemRelation(Value):
    """One relationship of an order item as sent (TMF serviceOrderItemRelationship):
    `dependency` ones also make the item's `depends_on`."""

    relationship_type: str | None = None
    item_id: str | None = None
    extra: dict[str, Any] = Field(
        default_factory=dict, exclude_if=_empty
    )  # the relationship's other attributes; its orderItem's under "orderItem"


class OrderItem(Value):
    """One order item: what to do (action), to which service or specification, where."""

    id: str = Field(min_length=1, max_length=100)
    action: ItemAction
    specification: SpecRef | None = None
    service_id: str | None = None  # the existing service, for modify / delete / noChange
    service_name: str | None = None
    characteristics: dict[str, Any] = Field(default_factory=dict)
    place: Place | None = None
    quantity: int = Field(default=1, ge=1)
    depends_on: tuple[str, ...] = ()
    state: ItemState | None = None  # None while the order is a draft
    # Issue 19 (lossless TMF641), each left out of the stored JSON when empty:
    # the item this one is nested in (TMF641 serviceOrderItem.serviceOrderItem); items are
    # kept flat, by id, unique across the order.
    parent: str | None = Field(default=None, exclude_if=_empty)
    relationships: tuple[ItemRelation, ...] = Field(default=(), exclude_if=_empty)
    extra: dict[str, Any] = Field(
        default_factory=dict, exclude_if=_empty
    )  # the item's other attributes as sent (e.g. appointment, @type)
    service_extra: dict[str, Any] = Field(
        default_factory=dict, exclude_if=_empty
    )  # its service's other attributes as sent (every place among them)
    # each characteristic's other attributes as sent (id, valueType, @type, ...), by name
    characteristic_extra: dict[str, dict[str, Any]] = Field(default_factory=dict, exclude_if=_empty)

    @field_validator("depends_on")
    @classmethod
    def _no_duplicate_dependencies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) < 2:  # nothing to repeat (the common case, on every item decoded)
            return value
        return tuple(dict.fromkeys(value))

    def with_state(self, state: ItemState | None) -> OrderItem:
        return replace(self, state=state)  # = model_copy(update={"state": state})


class OrderHeader(Value):
    """Order-level attributes that are not items."""

    external_id: str | None = Field(default=None, max_length=200)
    category: str | None = None
    description: str | None = None
    priority: str | None = None
    requested_start_date: DateOrDateTime | None = None
    requested_completion_date: DateOrDateTime | None = None
    notification_contact: str | None = None
    related_parties: tuple[Party, ...] = ()
    order_relationships: tuple[OrderRelationship, ...] = ()
    extra: dict[str, Any] = Field(
        default_factory=dict, exclude_if=_empty
    )  # the order's other attributes as sent (externalReference, @type, ...)

    @property
    def customer(self) -> Party | None:
        return next((p for p in self.related_parties if p.is_customer), None)


class HeaderChange(Value):
    """A revision of header attributes: only the fields given change."""

    category: str | None = None
    description: str | None = None
    priority: str | None = None
    requested_start_date: DateOrDateTime | None = None
    requested_completion_date: DateOrDateTime | None = None
    notification_contact: str | None = None
    related_parties: tuple[Party, ...] | None = None
    # The order's other attributes a patch sets (None as a value: removes the attribute).
    extra: dict[str, Any] | None = Field(default=None, exclude_if=_empty)

    def apply_to(self, header: OrderHeader) -> OrderHeader:
        changed = {name: getattr(self, name) for name in self.model_fields_set}
        update = {k: v for k, v in changed.items() if v is not None and k != "extra"}
        if self.extra:  # merged by attribute (a JSON merge patch: the patch's null removes;
            # a null the order keeps as sent stays)
            kept = {k: v for k, v in header.extra.items() if k not in self.extra}
            update["extra"] = {**kept, **{k: v for k, v in self.extra.items() if v is not None}}
        return header.model_copy(update=update)


class Problem(Value):
    """One validation finding; `structural` problems refuse the order, others flag it."""

    code: str
    message: str
    item_id: str | None = None
    characteristic: str | None = None
    structural: bool = True


class ServiceState(StrEnum):
    """TMF638 v4 service states (../shared/tmf638/service_lifecycle.png)."""

    FEASIBILITY_CHECKED = "feasibilityChecked"
    DESIGNED = "designed"
    RESERVED = "reserved"
    INACTIVE = "inactive"
    ACTIVE = "active"
    TERMINATED = "terminated"


class ServiceRecord(Value):
    """A service as an import brings it (a TMF638 Service that existed before the engine):
    `extra` holds its other attributes as sent (category, serviceType, startDate, ...)."""

    id: str = Field(min_length=1, max_length=200)
    name: str | None = None
    state: ServiceState = ServiceState.ACTIVE
    specification: SpecRef | None = None
    characteristics: dict[str, Any] = Field(default_factory=dict)
    places: tuple[Place, ...] = ()
    customer: Party | None = None
    depends_on: tuple[str, ...] = ()
    extra: dict[str, Any] = Field(default_factory=dict, exclude_if=_empty)


class ItemCheck(Value):
    """What the inventory held when an order item naming an existing service was accepted
    (domain/inventory.py): the service's version (None: no such service) and, for a
    `modify`, each characteristic the item changes with the service's value then (TMF
    `previousValue`; a characteristic the service did not have is not in it)."""

    item_id: str
    service_id: str
    service_version: int | None = None
    previous: dict[str, Any] = Field(default_factory=dict, exclude_if=_empty)


class Decision(Value):
    """What a decider saw: the order's version and content hash when they decided (the
    door's If-Match or form version makes sure it is what they were shown), and the
    operating-system user behind a CLI decision."""

    version: int
    content_hash: str
    os_user: str | None = None


class Proposal(Value):
    """A revision of an approved order, waiting for a second person (docs/lifecycle.md,
    "Revisions after approval"): applied to the items only when approved."""

    id: str
    items: tuple[OrderItem, ...] = ()
    removed_item_ids: tuple[str, ...] = ()
    header: HeaderChange = HeaderChange()
    flags: tuple[Problem, ...] = ()
    proposed_by: Actor
    proposed_at: datetime
    base_version: int  # the order's version the proposal was made on


class Milestone(Value):
    """A milestone the order reached (TMF641 v4.1 ServiceOrderMilestone): `approved`,
    `itemStarted`, `itemCompleted`, `pointOfNoReturn`; the items it is about, if any."""

    id: str
    name: str
    date: datetime
    message: str | None = None
    item_ids: tuple[str, ...] = ()


class OrderOutcome(Value):
    """An outcome told back in `errorMessage` (TMF641 v4.1 ServiceOrderErrorMessage):
    `rejected`, `item_failed`, `proposal_refused`, `cancellation_denied`, ...; `message` is
    the decider's or fulfilment's reason (free text: sealed in the events); the items it is
    about, if any (an item's own errorMessage lists the outcomes naming it)."""

    code: str
    message: str
    date: datetime
    item_ids: tuple[str, ...] = ()

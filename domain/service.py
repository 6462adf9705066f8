"""The Service aggregate: one service of the inventory (TMF638), derived only from its events.

A service is created when an order's `add` item completes (or by an import of services that
existed before the engine), changed by a completed `modify`, terminated by a completed
`delete`. Its events are chained like an order's (the same hash chain, `audit verify`
checks them) and live in the same log, so that an order's completion and the services it
changes are saved in one transaction (`UnitOfWork` in application.py): a change order sent
right after sees the truth, not a projection. Why an aggregate of its own, not events of
the order: docs/architecture.md ("Services").

The service's id (`service_id`, TMF638 `id`) is a text; the aggregate's id is derived from
it (`service_key`), whoever creates it. A service made by an order item without an id of
its own gets `service_id_for(order, item)`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import BaseAggregate, CanInitAggregate
from pydantic import Field

from .chain import GENESIS
from .events import ChainedEvent
from .privacy import reveal_deep
from .values import CommandContext, Party, Place, ServiceState, SpecRef, _empty

__all__ = ["ServiceState"]

SERVICE_TOPIC_PREFIX = "serviceorders.service:"
# Fixed namespaces: a service's aggregate id from its id; the id of a service an add item
# creates, from the order and the item.
SERVICE_KEY_NAMESPACE = UUID("2f6f5f0e-3b8a-5c59-a5f4-8e7f1c0b9d21")


def service_key(service_id: str) -> UUID:
    """The aggregate id of the service whose TMF638 id is `service_id`."""
    return uuid5(SERVICE_KEY_NAMESPACE, service_id)


def service_id_for(order_id: UUID, item_id: str) -> str:
    """The id of the service an `add` item creates when the item names none."""
    return str(uuid5(order_id, item_id))


class ServiceEvent(ChainedEvent):
    """Base of every service event."""

    TOPIC_PREFIX: ClassVar[str] = SERVICE_TOPIC_PREFIX

    def apply(self, service: Service) -> None:
        """How the event changes the service; overridden by each event."""


class ServiceCreated(ServiceEvent, CanInitAggregate[UUID]):
    """A service came to be: an order's `add` item completed (`order_id`, `item_id`), or
    an import brought one that existed before the engine (`imported`: True; `state` as
    imported)."""

    originator_topic: str
    service_id: str
    name: str | None = None  # personal data (sealed)
    state: ServiceState = ServiceState.ACTIVE
    specification: SpecRef | None = None
    characteristics: dict[str, Any] = Field(default_factory=dict)
    places: tuple[Place, ...] = ()
    customer: Party | None = None
    depends_on: tuple[str, ...] = ()  # the ids of the services this one depends on
    order_id: str | None = None
    item_id: str | None = None
    imported: bool = Field(default=False, exclude_if=_empty)
    # every other attribute as imported (TMF638: category, serviceType, startDate, ...;
    # texts sealed)
    extra: dict[str, Any] = Field(default_factory=dict, exclude_if=_empty)

    def apply(self, service: Service) -> None:
        service.service_id = self.service_id
        service.name = self.name
        service.state = self.state
        service.specification = self.specification
        service.characteristics = dict(self.characteristics)
        service.places = self.places
        service.customer = self.customer
        service.depends_on = self.depends_on
        service.created_by = (self.order_id, self.item_id) if self.order_id else None
        service.imported = self.imported
        service.extra = dict(self.extra)
        service.created_at = self.timestamp


class ServiceOrderOpened(ServiceEvent):
    """An accepted order names this service in a `modify`, `delete` or `noChange` item:
    until the order ends, another order changing the service is flagged to its reviewer."""

    order_id: str
    item_ids: tuple[str, ...]
    action: str

    def apply(self, service: Service) -> None:
        service.open_orders = {**service.open_orders, self.order_id: self.item_ids}


class ServiceOrderClosed(ServiceEvent):
    """The order no longer holds the service: it ended without changing it (failed,
    rejected, cancelled, deleted; or a `noChange` item), or a revision took away the items
    that named it."""

    order_id: str
    order_state: str

    def apply(self, service: Service) -> None:
        service.open_orders = {k: v for k, v in service.open_orders.items() if k != self.order_id}


class ServiceModified(ServiceEvent):
    """A completed `modify` item changed the service: `characteristics` as the item set
    them, `previous` each one's value before (absent: it had none); a new `place`,
    `specification` or `name` when the item gave another."""

    order_id: str
    item_id: str
    characteristics: dict[str, Any] = Field(default_factory=dict)
    previous: dict[str, Any] = Field(default_factory=dict)
    place: Place | None = None
    specification: SpecRef | None = None
    name: str | None = None

    def apply(self, service: Service) -> None:
        service.characteristics = {**service.characteristics, **self.characteristics}
        if self.place is not None:  # the service's (first) place is the item's
            others = tuple(p for p in service.places[1:] if p.id != self.place.id)
            service.places = (self.place, *others)
        if self.specification is not None:
            service.specification = self.specification
        if self.name is not None:
            service.name = self.name
        service.open_orders = {k: v for k, v in service.open_orders.items() if k != self.order_id}
        service.modified_by = (self.order_id, self.item_id)


class ServiceTerminated(ServiceEvent):
    """A completed `delete` item disconnected the service."""

    order_id: str
    item_id: str

    def apply(self, service: Service) -> None:
        service.state = ServiceState.TERMINATED
        service.open_orders = {k: v for k, v in service.open_orders.items() if k != self.order_id}
        service.modified_by = (self.order_id, self.item_id)
        service.terminated_at = self.timestamp


class ServiceDependentAdded(ServiceEvent):
    """Another service (`dependent`) depends on this one."""

    dependent: str

    def apply(self, service: Service) -> None:
        if self.dependent not in service.dependents:
            service.dependents = (*service.dependents, self.dependent)


class ServiceDependentRemoved(ServiceEvent):
    """A service that depended on this one was terminated."""

    dependent: str

    def apply(self, service: Service) -> None:
        service.dependents = tuple(d for d in service.dependents if d != self.dependent)


class Service(BaseAggregate[UUID]):
    """One service of the inventory. Not snapshotted: a service has few events."""

    TOPIC = "serviceorders.service:Service"
    class_version = 1

    def __init__(self) -> None:
        self.service_id = ""
        self.name: str | None = None
        self.state = ServiceState.ACTIVE
        self.state_since: datetime | None = None
        self.specification: SpecRef | None = None
        self.characteristics: dict[str, Any] = {}
        self.places: tuple[Place, ...] = ()
        self.customer: Party | None = None
        self.depends_on: tuple[str, ...] = ()
        self.dependents: tuple[str, ...] = ()
        self.created_by: tuple[str, str | None] | None = None  # (order id, item id)
        self.modified_by: tuple[str, str] | None = None  # the last order that changed it
        self.imported = False
        self.extra: dict[str, Any] = {}
        self.open_orders: dict[str, tuple[str, ...]] = {}  # order id -> its item ids
        self.created_at: datetime | None = None
        self.terminated_at: datetime | None = None
        self.head_hash = GENESIS

    @property
    def customer_id(self) -> str | None:
        return self.customer.id if self.customer is not None else None

    @property
    def active(self) -> bool:
        return self.state is ServiceState.ACTIVE

    # ------------------------------------------------------------------ commands
    @classmethod
    def create(
        cls,
        ctx: CommandContext,
        service_id: str,
        *,
        name: str | None = None,
        state: ServiceState = ServiceState.ACTIVE,
        specification: SpecRef | None = None,
        characteristics: dict[str, Any] | None = None,
        places: tuple[Place, ...] = (),
        customer: Party | None = None,
        depends_on: tuple[str, ...] = (),
        order_id: str | None = None,
        item_id: str | None = None,
        imported: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Service:
        from .order import envelope

        return cls._create(
            ServiceCreated,
            id=service_key(service_id),
            service_id=service_id,
            name=name,
            state=state,
            specification=specification,
            characteristics=dict(characteristics or {}),
            places=places,
            customer=customer,
            depends_on=depends_on,
            order_id=order_id,
            item_id=item_id,
            imported=imported,
            extra=dict(extra or {}),
            prev_hash=GENESIS,
            **envelope(ctx),
        )

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        super().trigger_event(event_class, prev_hash=self.head_hash, **kwargs)

    def open_order(
        self, ctx: CommandContext, order_id: str, item_ids: tuple[str, ...], action: str
    ) -> None:
        if self.open_orders.get(order_id) == item_ids:
            return
        from .order import envelope

        self.trigger_event(
            ServiceOrderOpened,
            order_id=order_id,
            item_ids=item_ids,
            action=action,
            **envelope(ctx),
        )

    def close_order(self, ctx: CommandContext, order_id: str, order_state: str) -> None:
        if order_id not in self.open_orders:
            return
        from .order import envelope

        self.trigger_event(
            ServiceOrderClosed, order_id=order_id, order_state=order_state, **envelope(ctx)
        )

    def modify(
        self,
        ctx: CommandContext,
        order_id: str,
        item_id: str,
        characteristics: dict[str, Any],
        place: Place | None = None,
        specification: SpecRef | None = None,
        name: str | None = None,
        reveal: Callable[[str], str] | None = None,
    ) -> None:
        """`place` and `name` may be sealed (tokens differ for one text): they are
        compared with the service's as `reveal` shows both."""
        from .order import envelope

        def plain(value: Any) -> Any:
            return value if reveal is None else reveal_deep(value, reveal)

        moved = place is not None and plain(self.places[:1]) != (plain(place),)
        renamed = name is not None and plain(name) != plain(self.name)
        previous = {
            k: self.characteristics[k]
            for k in characteristics
            if k in self.characteristics and self.characteristics[k] != characteristics[k]
        }
        changed = {
            k: v
            for k, v in characteristics.items()
            if k not in self.characteristics or self.characteristics[k] != v
        }
        self.trigger_event(
            ServiceModified,
            order_id=order_id,
            item_id=item_id,
            characteristics=changed,
            previous=previous,
            place=place if moved else None,
            specification=(
                specification
                if specification is not None
                and (self.specification is None or specification.id != self.specification.id)
                else None
            ),
            name=name if renamed else None,
            **envelope(ctx),
        )

    def terminate(self, ctx: CommandContext, order_id: str, item_id: str) -> None:
        from .order import envelope

        self.trigger_event(ServiceTerminated, order_id=order_id, item_id=item_id, **envelope(ctx))

    def add_dependent(self, ctx: CommandContext, dependent: str) -> None:
        if dependent in self.dependents:
            return
        from .order import envelope

        self.trigger_event(ServiceDependentAdded, dependent=dependent, **envelope(ctx))

    def remove_dependent(self, ctx: CommandContext, dependent: str) -> None:
        if dependent not in self.dependents:
            return
        from .order import envelope

        self.trigger_event(ServiceDependentRemoved, dependent=dependent, **envelope(ctx))

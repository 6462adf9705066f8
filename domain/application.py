"""ServiceOrders: the one application object every door (API, console, Kafka, CLI) calls.

Writes have one door: `handle(ctx, command, expected_version)` with a command of
domain/commands.py. It loads the order, checks the version the caller saw, seals personal
data, calls the aggregate with the application's policies (four-eyes), saves, and maps a
store conflict. Its apply phase is a `UnitOfWork`, so that many commands over many orders
can end in one save and one transaction (`unit_of_work()`: the Kafka batch). Reads
(`get_order`, `history`, ...) are not commands. Persistence is configured entirely by the
`env` the composition root passes in (never `os.environ`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, TypeAlias, TypeVar, overload
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import Environment, get_topic

from . import privacy, resend, sealing
from .catalog import Catalog, duplicate_ids
from .codec import OrjsonTranscoder, PydanticMapper
from .commands import (
    AddLine,
    AddNote,
    Approve,
    ApproveCancellation,
    ApproveProposal,
    Cancel,
    ChangeItemStates,
    Command,
    ConfigureLine,
    CreationCommand,
    Delete,
    DenyCancellation,
    DraftOrder,
    Hold,
    ImportService,
    OrderCommand,
    ProvideCancellationInformation,
    ProvideInformation,
    ReachPointOfNoReturn,
    ReceiveOrder,
    RefuseProposal,
    Reject,
    RemoveLine,
    RequestCancellation,
    RequestCancellationInformation,
    RequestInformation,
    Resubmit,
    Resume,
    Revise,
    Submit,
    Target,
    WithdrawProposal,
)
from .errors import (
    ConcurrencyConflict,
    InvalidCommand,
    NotPermitted,
    OrderNotFound,
    ServiceConflict,
    ServiceNotFound,
    StaleVersion,
    ValidationFailed,
)
from .events import (
    CancellationApproved,
    CancellationDenied,
    OrderApproved,
    OrderCancelled,
    OrderEvent,
    OrderRejected,
    ProposalApproved,
    ProposalRefused,
)
from .inventory import NAMES_A_SERVICE, CheckMode, Inventory, named_services
from .order import ServiceOrder, order_id_for
from .policy import Policy
from .privacy import Sealer
from .service import Service, ServiceEvent, service_id_for, service_key
from .values import (
    CommandContext,
    EntityRef,
    HeaderChange,
    ItemAction,
    ItemState,
    Note,
    OrderHeader,
    OrderItem,
    OrderState,
    Party,
    Place,
    Role,
    ServiceRecord,
    ServiceState,
)

log = logging.getLogger("serviceorders.decisions")

_A = TypeVar("_A", ServiceOrder, Service)

# The decisions logged at INFO once saved (by whichever door took them): event -> decision.
DECISIONS: dict[type[OrderEvent], str] = {
    OrderApproved: "approve",
    OrderRejected: "reject",
    CancellationApproved: "approve cancellation",
    CancellationDenied: "deny cancellation",
    OrderCancelled: "cancel",
    ProposalApproved: "approve proposal",
    ProposalRefused: "refuse proposal",
}


class ServiceOrders(Application[UUID]):
    name = "serviceorders"
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
        "IS_SNAPSHOTTING_ENABLED": "y",
    }

    def __init__(
        self,
        env: Mapping[str, str],
        catalog: Catalog | None = None,
        snapshot_interval: int = 50,
        four_eyes: bool = True,
        sealer: Sealer | None = None,
        policy: Policy | None = None,
        inventory_check: CheckMode = CheckMode.REFUSE,
    ) -> None:
        self.catalog = catalog or Catalog.default()
        # What a failed inventory check does (domain/inventory.py): refuse, or flag.
        self.inventory_check = CheckMode(inventory_check)
        # The review policies (domain/policy.py); `four_eyes` overrides the policy's.
        self.policy = Policy(
            four_eyes=four_eyes,
            direct_fields=policy.direct_fields if policy else frozenset(),
            hold_on_proposal=policy.hold_on_proposal if policy else False,
        )
        self.sealer = sealer
        # Per application (a setting), where the library has a class variable.
        self.snapshotting_intervals = (  # type: ignore[misc]
            {ServiceOrder: snapshot_interval} if snapshot_interval else {}
        )
        super().__init__(env=dict(env))

    @property
    def four_eyes(self) -> bool:
        return self.policy.four_eyes

    def construct_mapper(self) -> Any:
        mapper = super().construct_mapper()
        if self.sealer is not None and isinstance(mapper, PydanticMapper):
            mapper.reveal = self.sealer.reveal
        return mapper

    def close(self) -> None:
        super().close()
        close = getattr(self.sealer, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------ personal data
    def unseal(self, aggregate: _A) -> _A:
        """The in-memory order (or service) with its personal values revealed (after a
        command, it holds the tokens its new events carry)."""
        if self.sealer is None:
            return aggregate
        reveal = self.sealer.reveal
        # Every attribute of its state (header, items, notes, reasons, proposal, outcomes;
        # a service's name, places, customer, ...): whatever holds a token is revealed,
        # whatever holds none is kept.
        for name, value in list(vars(aggregate).items()):
            if not name.startswith("_"):
                revealed = privacy.reveal_deep(value, reveal)
                if revealed is not value:
                    setattr(aggregate, name, revealed)
        return aggregate

    unseal_service = unseal  # (the name the inventory's readers use)

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Unlike the library default, never merge os.environ: the settings are complete.
        return Environment(name, {**type(self).env, **(env or {})})

    # ------------------------------------------------------------ the one door
    @overload
    def handle(
        self, ctx: CommandContext, command: ImportService, expected_version: None = None
    ) -> ServiceOutcome: ...

    @overload
    def handle(
        self,
        ctx: CommandContext,
        command: CreationCommand | OrderCommand,
        expected_version: ExpectedVersion = None,
    ) -> Outcome: ...

    def handle(
        self,
        ctx: CommandContext,
        command: Command,
        expected_version: ExpectedVersion = None,
    ) -> Any:
        """Apply one command and save it: the use case every door runs.

        Loads the order (or resolves its `OrderRef`), checks `expected_version` (the
        door's If-Match or form version: `StaleVersion` when the order is elsewhere), seals
        the personal data the command brings, calls the aggregate with the application's
        policies (four-eyes: `self.four_eyes`), saves its new events in one transaction and
        returns the order with its personal values revealed.

        A store conflict (someone wrote the order since it was loaded) is a
        `ConcurrencyConflict` ("reload the order and try again"). A `ReceiveOrder` reads
        nothing first: its id is the order's key, so saving a second order under it fails,
        and that failure is the answer: with a determined id (external id, or `order_id`
        from an idempotency key) the order was created before or concurrently through
        another door: `Outcome(order=<the stored order>, created=False)` when it was
        created with the same content, else `ResendConflict` (other content) or
        `ExternalIdTaken` (a draft, a deleted order: domain/resend.py); a random id that
        is taken is a `ConcurrencyConflict` ("the order id is taken").
        """
        uow = UnitOfWork(self, single=True)
        if isinstance(command, ImportService):
            imported = uow.apply(ctx, command)
            if imported.created:
                try:
                    uow.commit()
                except IntegrityError as e:
                    raise ConcurrencyConflict(
                        None, f"service {command.service.id} was imported concurrently"
                    ) from e
            return replace(imported, service=self.unseal(imported.service))
        try:
            outcome = uow.apply(ctx, command, expected_version)
        except ValidationFailed:
            # The same order again, refused only because the inventory moved on since it
            # was accepted (its delete completed, say): answered as the order it is.
            if not isinstance(command, ReceiveOrder) or not command.deterministic:
                raise
            order_id = command.target_id()
            if not self.exists(order_id):
                raise
            found = self.get_order(order_id)
            events = resend.creation_events(self.events, order_id, found.version)
            _check_resend(self, command, found, events)
            return Outcome(found, created=False)
        if not isinstance(command, ReceiveOrder):
            # Every order the command changed (a Resubmit: the new order and the rejected
            # one), in one transaction.
            try:
                uow.commit()
            except IntegrityError as e:
                taken = "the order id is taken" if outcome.created else None
                raise ConcurrencyConflict(
                    outcome.order.id, taken or "reload the order and try again"
                ) from e
            return replace(outcome, order=self.unseal(outcome.order))
        try:
            self.save(outcome.order, *uow.pending_services())
        except IntegrityError:
            order_id = outcome.order.id
            if uow.pending_services() and not self.exists(order_id):
                # a service it names was changed meanwhile, not the order's id
                raise ConcurrencyConflict(
                    order_id, "a service it names changed meanwhile; try again"
                ) from None
            if command.deterministic:  # created before, or concurrently through another door
                # The same content: that order; else ResendConflict / ExternalIdTaken.
                found = self.get_order(order_id)
                events = resend.creation_events(self.events, order_id, found.version)
                _check_resend(self, command, found, events)
                return Outcome(found, created=False)
            raise ConcurrencyConflict(order_id, "the order id is taken") from None
        return Outcome(self.unseal(outcome.order), created=True)

    def unit_of_work(self, existing: Collection[UUID] | None = None) -> UnitOfWork:
        """Many commands over many orders, saved by one `commit` (one transaction): the
        Kafka intake's batch. `existing`: the ids known to exist (prefetched in one query);
        any other id is taken as new without a read. None: ask the repository."""
        return UnitOfWork(self, existing)

    # --------------------------------------------------------------------- reads
    def get_order(self, order_id: UUID, version: int | None = None) -> ServiceOrder:
        found: Any
        try:
            found = self.repository.get(order_id, version=version)
        except AggregateNotFoundError:
            raise OrderNotFound(order_id) from None
        if not isinstance(found, ServiceOrder):  # a service's id (the log holds both)
            raise OrderNotFound(order_id)
        return found

    def get_service(self, service_id: str, version: int | None = None) -> Service:
        """The service of the inventory with this id (TMF638 `id`), at `version` (None:
        the latest). ServiceNotFound when there is none."""
        found: Any
        try:
            found = self.repository.get(service_key(service_id), version=version)
        except AggregateNotFoundError:
            raise ServiceNotFound(service_id) from None
        if not isinstance(found, Service):
            raise ServiceNotFound(service_id)
        return found

    def service_as_of(self, service_id: str, when: datetime) -> Service | None:
        """The service as it was at `when` (its events up to then replayed): None when it
        did not exist yet. ServiceNotFound when it never existed. A time without an
        offset is taken as UTC."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        service: Any = None
        for event in self.service_history(service_id):
            if event.timestamp > when:
                break
            service = event.mutate(service)
        return service  # type: ignore[no-any-return]

    def service_history(self, service_id: str) -> list[Any]:
        """Every event of the service, oldest first. ServiceNotFound when there is none."""
        events = list(self.events.get(service_key(service_id)))
        if not events or not isinstance(events[0], ServiceEvent):
            raise ServiceNotFound(service_id)
        return events

    def find_by_external_id(self, external_id: str) -> ServiceOrder:
        return self.get_order(order_id_for(external_id))

    def exists(self, order_id: UUID) -> bool:
        return bool(self.recorder.select_events(order_id, limit=1))

    def history(self, order_id: UUID) -> list[OrderEvent]:
        events = list(self.events.get(order_id))
        if not events:
            raise OrderNotFound(order_id)
        return events  # type: ignore[return-value]

    # -------------------------------------------------------------------- saving
    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """The library's save, then one INFO record per decision it stored: the order, who
        decided, what, and the correlation id (never a reason or a note: free text)."""
        recordings = super().save(*objs, **kwargs)
        if log.isEnabledFor(logging.INFO):
            for recording in recordings:
                event = recording.domain_event
                if not isinstance(event, OrderEvent):
                    continue
                decision = DECISIONS.get(type(event))
                if decision is not None:
                    log.info(
                        "decision: %s order %s by %s (%s)",
                        decision,
                        event.originator_id,
                        event.actor.id,
                        event.actor.role,
                        extra={
                            "order_id": str(event.originator_id),
                            "correlation_id": event.correlation_id,
                            "decision": decision,
                            "actor": event.actor.id,
                            "role": str(event.actor.role),
                            "version": event.originator_version,
                        },
                    )
        return recordings


# ------------------------------------------------------------------ unit of work
ExpectedVersion: TypeAlias = int | Collection[int] | None
"""The version the caller saw: one, or several any of which will do (an If-Match list);
None: no check."""


@dataclass(frozen=True, slots=True)
class ServiceOutcome:
    """What a door needs to answer an `ImportService`: the service, and whether the
    command created it (False: the same service was imported before)."""

    service: Service
    created: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a door needs to answer a command.

    `order`: the order after the command. From `ServiceOrders.handle` its personal values
    are revealed (saved already); from `UnitOfWork.apply` it is the live in-memory order
    (not saved yet; values the command brought are still sealed tokens: reveal with
    `app.unseal` after the commit if needed). `created`: whether the command created the
    order (a `ReceiveOrder` of an order that exists already: False; `DraftOrder`: True).
    `request_id`: the cancellation request's id (`RequestCancellation`), else None.
    `proposal_id`: the proposal a `Revise` of an approved order made (its change waits for
    a second person; the order is as approved so far), else None.
    """

    order: ServiceOrder
    created: bool = False
    request_id: str | None = None
    proposal_id: str | None = None

    @property
    def order_id(self) -> UUID:
        return self.order.id


class UnitOfWork:
    """Commands applied in memory, then saved in one `commit` (one transaction).

    Each order is loaded once and kept: a second command on it sees the first one's
    events. `apply` never writes; a command the domain refuses raises and leaves the order
    as it was before that command (its events so far undone), so the next command (or the
    commit) goes on from there. `commit(**save_kwargs)` saves every order with new events
    in ONE `app.save(...)` call, passing `save_kwargs` on (the Kafka intake's
    `intake=IntakeWrite(...)`: its rows in the events' transaction), and returns the
    recordings. The commit raises what the store raises (IntegrityError when an order was
    written meanwhile or a new order's id is taken, WriteTimeout, the intake's
    StaleBatch), having written nothing; only `ServiceOrders.handle` maps them for one
    command.

    Get one from `app.unit_of_work(existing)`: `existing` is the set of ids known to exist
    (the Kafka batch prefetches it in one query), so a new id costs no read; None: ask the
    repository (one read per order, as a load does anyway).
    """

    def __init__(
        self, app: ServiceOrders, existing: Collection[UUID] | None = None, *, single: bool = False
    ) -> None:
        self.app = app
        self._existing = existing
        # single: the unit of work of one command (`handle`), discarded when it fails: a
        # ReceiveOrder / DraftOrder reads nothing (the commit's IntegrityError answers) and
        # a failed command is not undone.
        self._single = single
        self._orders: dict[UUID, ServiceOrder | None] = {}  # None: known not to exist
        self._stored: dict[UUID, int] = {}  # the version each order had in the store
        # The services of the inventory the commands read or changed (by aggregate id);
        # None: known not to exist. Saved with the orders, in the same transaction.
        self._services: dict[UUID, Service | None] = {}

    # ------------------------------------------------------------------ phases
    @overload
    def apply(
        self, ctx: CommandContext, command: ImportService, expected_version: None = None
    ) -> ServiceOutcome: ...

    @overload
    def apply(
        self,
        ctx: CommandContext,
        command: CreationCommand | OrderCommand,
        expected_version: ExpectedVersion = None,
    ) -> Outcome: ...

    def apply(
        self, ctx: CommandContext, command: Command, expected_version: ExpectedVersion = None
    ) -> Any:
        """Apply one command in memory (nothing is written until `commit`).

        Raises the domain's refusal (NotPermitted, IllegalTransition, ValidationFailed,
        InvalidCommand, UnknownItem), OrderNotFound (naming the `OrderRef` as given),
        StaleVersion (a ConcurrencyConflict) when the order is not at `expected_version`;
        the order is then as it was before this command."""
        if isinstance(command, ReceiveOrder | DraftOrder):
            if expected_version is not None:
                raise InvalidCommand("a new order has no version to expect")
            if isinstance(command, ReceiveOrder):
                return self._receive(ctx, command)
            return self._draft(ctx, command)
        if isinstance(command, Resubmit):
            return self._resubmit(ctx, command, expected_version)
        if isinstance(command, ImportService):
            return self._import_service(ctx, command)
        try:
            handler = _HANDLERS[type(command)]
        except KeyError:
            raise TypeError(f"not a command: {type(command).__name__}") from None
        order = self.resolve(command.order_id)
        if expected_version is not None:
            _check_version(order, expected_version)
        seal = self._sealer_of(order)
        if seal is not None:  # the free text it brings (domain/sealing.py)
            command = sealing.seal_command(command, seal, order.cancellation_reason)
        before = len(order.pending_events)
        services_before = self._service_marks()
        state_before, deleted_before = order.state, order.deleted
        try:
            made = handler(self, ctx, command, order)
            if order.state is not state_before or order.deleted is not deleted_before:
                self._services_after(ctx, order)
        except BaseException:
            if not self._single:
                if len(order.pending_events) != before:
                    self._restore(order, before)
                self._restore_services(services_before)
            raise
        if isinstance(command, Revise):
            return Outcome(order, proposal_id=made)
        return Outcome(order, request_id=made)

    def commit(self, **save_kwargs: Any) -> list[Recording[UUID]]:
        """Save every order and service with new events, and `save_kwargs`' rows, in one
        transaction."""
        orders = self.pending()
        services = self.pending_services()
        recordings: list[Recording[UUID]] = self.app.save(*orders, *services, **save_kwargs)
        for aggregate in [*orders, *services]:  # what a failed command after this is undone to
            self._stored[aggregate.id] = aggregate.version
        return recordings

    def pending(self) -> list[ServiceOrder]:
        """The orders the commit will save (those with new events)."""
        return [o for o in self._orders.values() if o is not None and o.pending_events]

    def pending_services(self) -> list[Service]:
        """The services the commit will save (those with new events)."""
        return [s for s in self._services.values() if s is not None and s.pending_events]

    # ------------------------------------------------------------------ orders
    def resolve(self, target: Target) -> ServiceOrder:
        """The order a command names (loaded once): by id, or an OrderRef's first candidate
        that exists. OrderNotFound otherwise."""
        if isinstance(target, UUID):
            order = self._load(target)
            if order is None:
                raise OrderNotFound(target)
            return order
        for candidate in target.candidates():
            order = self._load(candidate)
            if order is not None:
                return order
        raise OrderNotFound(
            target.order_id or target.external_id or "", described=f"with {target.describe()}"
        )

    def _load(self, order_id: UUID) -> ServiceOrder | None:
        if order_id in self._orders:
            return self._orders[order_id]
        order: ServiceOrder | None = None
        if self._existing is None or order_id in self._existing:
            try:
                order = self.app.repository.get(order_id)
            except AggregateNotFoundError:
                order = None
            if not isinstance(order, ServiceOrder):  # a service's id: no such order
                order = None
            if order is not None:
                self._stored[order_id] = order.version
        self._orders[order_id] = order
        return order

    def _restore(self, order: ServiceOrder, keep: int) -> None:
        """Undo a command that failed half-way: the order as it was before it (as stored,
        plus the events of the earlier commands of this unit of work)."""
        self._orders[order.id] = self._rebuilt(order.id, order.pending_events[:keep])

    def _rebuilt(self, key: UUID, events: list[Any]) -> Any:
        """An aggregate as stored (the version this unit of work loaded; None when new),
        plus `events` (those of the earlier commands), pending again."""
        version = self._stored.get(key)
        base: Any = None if version is None else self.app.repository.get(key, version=version)
        for event in events:
            base = event.mutate(base)
        if base is not None:
            base.pending_events.extend(events)
        return base

    # ------------------------------------------------------------------ services
    def service(self, service_id: str) -> Service | None:
        """The inventory's service with this id (loaded once), None when there is none."""
        key = service_key(service_id)
        if key in self._services:
            return self._services[key]
        found: Any
        try:
            found = self.app.repository.get(key)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Service):
            found = None
        if found is not None:
            self._stored[key] = found.version
        self._services[key] = found
        return found  # type: ignore[no-any-return]

    def add_service(self, service: Service) -> None:
        """A new service (created by an import), saved by the commit."""
        if self._services.get(service.id) is not None:
            raise ConcurrencyConflict(None, f"service {service.service_id} exists already")
        self._services[service.id] = service

    def _import_service(self, ctx: CommandContext, c: ImportService) -> ServiceOutcome:
        """A service that existed before the engine; the same one again changes nothing."""
        if ctx.actor.role not in IMPORTERS:
            raise NotPermitted(
                None,
                ctx.actor.id,
                ctx.actor.role,
                "import a service",
                "only an upstream system or an operator imports services",
            )
        record = c.service
        found = self.service(record.id)
        if found is not None:
            reveal = self.app.sealer.reveal if self.app.sealer is not None else None
            if _record_of(found, reveal) != record:
                raise ServiceConflict(record.id)
            return ServiceOutcome(found, created=False)
        sealer = self.app.sealer
        if sealer is not None:
            scope = record.customer.id if record.customer is not None else SERVICE_SCOPE + record.id
            seal = partial(_seal, sealer.seal, scope)
            record = privacy.map_service_record(record, seal)
        service = Service.create(
            ctx,
            record.id,
            name=record.name,
            state=record.state,
            specification=record.specification,
            characteristics=dict(record.characteristics),
            places=record.places,
            customer=record.customer,
            depends_on=record.depends_on,
            imported=True,
            extra=dict(record.extra),
        )
        self._services[service.id] = service
        for supplier in record.depends_on:
            found = self.service(supplier)
            if found is not None:
                found.add_dependent(ctx, record.id)
        return ServiceOutcome(service, created=True)

    def _inventory(self, items: Iterable[OrderItem]) -> Inventory | None:
        """The services the items name, with the services that depend on those a `delete`
        disconnects; None when no item names one (nothing to check)."""
        items = list(items)
        named = named_services(items)
        if not named:
            return None
        services: dict[str, Service | None] = {sid: self.service(sid) for sid in named}
        for item in items:
            found = services.get(item.service_id or "")
            if item.action is ItemAction.DELETE and found is not None:
                for dependent in found.dependents:
                    services.setdefault(dependent, self.service(dependent))
        return Inventory(services, self.app.inventory_check)

    def _open_services(self, ctx: CommandContext, order: ServiceOrder) -> None:
        """Each existing service an accepted order's items name learns of the open order."""
        by_service: dict[str, list[OrderItem]] = {}
        for item in order.items.values():
            if item.action in NAMES_A_SERVICE and item.service_id:
                by_service.setdefault(item.service_id, []).append(item)
        for service_id, items in by_service.items():
            service = self.service(service_id)
            if service is not None:
                ids = tuple(i.id for i in items)
                service.open_order(ctx, str(order.id), ids, str(items[0].action))

    def _hold_services(
        self, ctx: CommandContext, order: ServiceOrder, before: Collection[str]
    ) -> None:
        """After a revision or an approved proposal: the services the order's items name
        hold it (`_open_services`), and one it named `before` and names no more (the item
        removed, or naming another service now) lets go of it, as when an order ends."""
        self._open_services(ctx, order)
        now = _named_services(order)
        for service_id in before:
            service = self.service(service_id) if service_id not in now else None
            if service is not None:
                service.close_order(ctx, str(order.id), str(order.state))

    def _services_after(self, ctx: CommandContext, order: ServiceOrder) -> None:
        """An order that ended changes the inventory in the same transaction: a completed
        `add` item creates its service, a completed `modify` changes it, a completed
        `delete` terminates it; every other service it named is released."""
        if not (order.state.is_final or order.deleted):
            return
        done = order.state in (OrderState.COMPLETED, OrderState.PARTIAL)
        reseal = self._resealer_of(order)
        oid = str(order.id)
        for item in order.items.values():
            completed = done and item.state is ItemState.COMPLETED
            if completed and item.action is ItemAction.ADD:
                # (sealed only when a service is made: no crypto for orders that make none)
                customer = reseal(order.header.customer)
                self._create_service(ctx, order, item, customer, reseal)
            elif completed and item.action is ItemAction.MODIFY and item.service_id:
                service = self.service(item.service_id)
                # a terminated service is final (TMF638): a modify that completes after
                # another order's delete changes nothing (it is released below)
                if service is not None and service.state is not ServiceState.TERMINATED:
                    service.modify(
                        ctx,
                        oid,
                        item.id,
                        dict(item.characteristics),
                        reseal(item.place),
                        reseal(item.specification),
                        reseal(item.service_name),
                        self.app.sealer.reveal if self.app.sealer is not None else None,
                    )
            elif completed and item.action is ItemAction.DELETE and item.service_id:
                service = self.service(item.service_id)
                # any state but terminated goes to terminated (TMF638): a disconnect of an
                # inactive or reserved service came in flagged, its reviewer approved it
                if service is not None and service.state is not ServiceState.TERMINATED:
                    service.terminate(ctx, oid, item.id)
                    for supplier in service.depends_on:
                        found = self.service(supplier)
                        if found is not None:
                            found.remove_dependent(ctx, service.service_id)
        for item in order.items.values():  # released: every service still holding it
            if item.service_id and item.action in NAMES_A_SERVICE:
                service = self.service(item.service_id)
                if service is not None:
                    service.close_order(ctx, oid, str(order.state))

    def _create_service(
        self,
        ctx: CommandContext,
        order: ServiceOrder,
        item: OrderItem,
        customer: Any,
        reseal: Callable[[Any], Any],
    ) -> None:
        service_id = item.service_id or service_id_for(order.id, item.id)
        if self.service(service_id) is not None:
            return  # named an existing service (flagged at intake): left as it is
        depends_on: list[str] = []
        for other_id in item.depends_on:
            other = order.items.get(other_id)
            if other is not None:
                depends_on.append(other.service_id or service_id_for(order.id, other.id))
        service = Service.create(
            ctx,
            service_id,
            name=reseal(item.service_name),
            specification=reseal(item.specification),
            characteristics=dict(item.characteristics),
            places=(reseal(item.place),) if item.place is not None else (),
            customer=customer,
            depends_on=tuple(depends_on),
            order_id=str(order.id),
            item_id=item.id,
            extra=reseal(dict(item.service_extra)),
        )
        self._services[service.id] = service
        for supplier in depends_on:
            found = self.service(supplier)
            if found is not None:
                found.add_dependent(ctx, service_id)

    def _resealer_of(self, order: ServiceOrder) -> Callable[[Any], Any]:
        """Personal values copied from the order into its services' events, sealed under
        the order's scope (whether the order holds them revealed, as loaded, or sealed, as
        this unit of work's commands brought them)."""
        sealer = self.app.sealer
        if sealer is None:
            return _same_value
        scope = privacy.scope_of(order.header, str(order.id))

        def one(text: str) -> str:
            if not text:
                return text
            plain = sealer.reveal(text)
            # an erased customer's value stays erased: nothing of it is sealed again
            return plain if plain == privacy.ERASED else sealer.seal(scope, plain)

        def reseal(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                return one(value)
            if isinstance(value, dict):
                return privacy.map_json(value, one)
            if isinstance(value, Place):
                return privacy.map_place(value, one)
            if isinstance(value, Party):
                return privacy.map_party(value, one)
            if isinstance(value, EntityRef) and value.extra:
                return value.model_copy(update={"extra": privacy.map_json(value.extra, one)})
            return value

        return reseal

    def _service_marks(self) -> dict[UUID, int]:
        return {k: len(v.pending_events) for k, v in self._services.items() if v is not None}

    def _restore_services(self, marks: dict[UUID, int]) -> None:
        """Undo what a failed command did to services (as `_restore` does to orders)."""
        for key, service in list(self._services.items()):
            if service is None or len(service.pending_events) == marks.get(key, 0):
                continue
            keep = marks.get(key)
            if keep is None:  # loaded or created by the failed command: read again if asked
                del self._services[key]
                continue
            self._services[key] = self._rebuilt(key, service.pending_events[:keep])

    # ------------------------------------------------------------ personal data
    # Personal values a command brings are sealed here (the app's sealer, docs/audit.md)
    # before the domain sees them, never by a door: a new order's under its own scope, a
    # change's under its order's.
    def _seal_new(
        self, header: OrderHeader, items: Iterable[OrderItem] = (), notes: Iterable[Note] = ()
    ) -> tuple[OrderHeader, list[OrderItem], tuple[Note, ...]]:
        """A new order's header, items and notes (text, author, other attributes), sealed
        under its scope."""
        sealer = self.app.sealer
        if sealer is None:
            return header, list(items), tuple(notes)
        seal = partial(_seal, sealer.seal, privacy.scope_of(header))
        return (
            privacy.map_header(header, seal),
            [privacy.map_item(i, seal) for i in items],
            tuple(privacy.map_note(n, seal) for n in notes),
        )

    def _sealer_of(self, order: ServiceOrder) -> Callable[[str], str] | None:
        sealer = self.app.sealer
        if sealer is None:
            return None
        return partial(_seal, sealer.seal, privacy.scope_of(order.header, str(order.id)))

    def _seal_change(
        self,
        order: ServiceOrder,
        items: Iterable[OrderItem] = (),
        header: HeaderChange | None = None,
    ) -> tuple[list[OrderItem], HeaderChange | None]:
        seal = self._sealer_of(order)
        if seal is None:
            return list(items), header
        return (
            [privacy.map_item(i, seal) for i in items],
            None if header is None else privacy.map_change(header, seal),
        )

    # ------------------------------------------------------------------ creation
    def _receive(self, ctx: CommandContext, command: ReceiveOrder) -> Outcome:
        order_id = command.target_id()
        # One command reads nothing: the commit's IntegrityError answers (see `handle`).
        found = None if self._single else self._load(order_id)
        if found is not None:  # the same order again: changes nothing, not an error
            stored = self._stored.get(order_id)
            events = resend.creation_events(self.app.events, order_id, stored, found.pending_events)
            _check_resend(self.app, command, found, events)  # else a ResendConflict
            return Outcome(found, created=False)
        header, items, notes = self._seal_new(command.header, command.items, command.notes)
        catalog = self.app.catalog
        inventory = self._inventory(items)
        order = ServiceOrder.receive(ctx, header, items, catalog, order_id, notes, inventory)
        self._orders[order_id] = order
        self._open_services(ctx, order)
        return Outcome(order, created=True)

    def _draft(self, ctx: CommandContext, command: DraftOrder) -> Outcome:
        header, _, _ = self._seal_new(command.header)
        order = ServiceOrder.draft(ctx, header, command.order_id)
        known = self._orders.get(order.id)
        if known is not None or (self._existing is not None and order.id in self._existing):
            # The id derives from the external id: it is taken (as the save would say).
            raise ConcurrencyConflict(order.id, "reload the order and try again")
        self._orders[order.id] = order
        return Outcome(order, created=True)

    # ------------------------------------------------------------------ handlers
    # Each: (ctx, command, order) -> the cancellation request id or None.
    def _add_line(self, ctx: CommandContext, c: AddLine, order: ServiceOrder) -> None:
        [item], _ = self._seal_change(order, [c.item])
        order.add_line(ctx, item, self.app.catalog)

    def _configure_line(self, ctx: CommandContext, c: ConfigureLine, order: ServiceOrder) -> None:
        seal = self._sealer_of(order)
        place = c.place if seal is None else privacy.map_place(c.place, seal)
        characteristics = None if c.characteristics is None else dict(c.characteristics)
        order.configure_line(
            ctx, c.item_id, characteristics, c.cleared, place, c.quantity, c.depends_on
        )

    def _submit(self, ctx: CommandContext, c: Submit, order: ServiceOrder) -> None:
        order.submit(ctx, self.app.catalog, self._inventory(order.items.values()))
        self._open_services(ctx, order)

    def _approve(self, ctx: CommandContext, c: Approve, order: ServiceOrder) -> None:
        order.approve(ctx, c.note, four_eyes=self.app.four_eyes)

    def _reject(self, ctx: CommandContext, c: Reject, order: ServiceOrder) -> None:
        order.reject(ctx, c.reason, four_eyes=self.app.four_eyes)

    def _approve_cancellation(
        self, ctx: CommandContext, c: ApproveCancellation, order: ServiceOrder
    ) -> None:
        order.approve_cancellation(ctx, c.note, four_eyes=self.app.four_eyes)

    def _deny_cancellation(
        self, ctx: CommandContext, c: DenyCancellation, order: ServiceOrder
    ) -> None:
        order.deny_cancellation(ctx, c.reason, four_eyes=self.app.four_eyes)

    def _request_cancellation_information(
        self, ctx: CommandContext, c: RequestCancellationInformation, order: ServiceOrder
    ) -> None:
        order.request_cancellation_information(ctx, c.information, four_eyes=self.app.four_eyes)

    def _approve_proposal(
        self, ctx: CommandContext, c: ApproveProposal, order: ServiceOrder
    ) -> None:
        before = _named_services(order)
        order.approve_proposal(ctx, self.app.catalog, c.note, four_eyes=self.app.four_eyes)
        self._hold_services(ctx, order, before)

    def _refuse_proposal(self, ctx: CommandContext, c: RefuseProposal, order: ServiceOrder) -> None:
        order.refuse_proposal(ctx, c.reason, four_eyes=self.app.four_eyes)

    def _change_item_states(
        self, ctx: CommandContext, c: ChangeItemStates, order: ServiceOrder
    ) -> None:
        changes = c.changes
        if c.skip_unchanged:  # decided on the order as it was before any of them
            items = order.items
            changes = tuple(
                x
                for x in changes
                if x.item_id not in items or items[x.item_id].state is not x.state
            )
        for change in changes:
            order.change_item_state(ctx, change.item_id, change.state, change.reason)

    def _revise(self, ctx: CommandContext, c: Revise, order: ServiceOrder) -> str | None:
        items, header = self._seal_change(order, c.items, c.header)
        before = _named_services(order)
        changes = items or c.removed_item_ids or (header is not None and header.model_fields_set)
        proposal_id = None
        if changes or not c.notes:  # nothing but notes: no revision (see `Revise`)
            catalog, policy = self.app.catalog, self.app.policy
            inventory = self._inventory(items)
            proposal_id = order.revise(
                ctx, catalog, items, c.removed_item_ids, header, policy, inventory
            )
            if proposal_id is None:
                self._hold_services(ctx, order, before)
        # A note resent with a revision: once. Compared as revealed (the notes and the
        # command's texts may be sealed: tokens differ for one text).
        reveal = self.app.sealer.reveal if self.app.sealer is not None else _same
        known = {reveal(note.text).strip() for note in order.notes}
        for text in c.notes:
            plain = reveal(text).strip()
            if plain not in known:
                known.add(plain)
                order.add_note(ctx, text)
        return proposal_id

    def _resubmit(
        self, ctx: CommandContext, c: Resubmit, expected_version: ExpectedVersion
    ) -> Outcome:
        """The new order correcting a rejected one, and the link on the rejected one."""
        rejected = self.resolve(c.order_id)
        if expected_version is not None:
            _check_version(rejected, expected_version)
        before = len(rejected.pending_events)
        reveal = self.app.sealer.reveal if self.app.sealer is not None else None
        header = rejected.header
        items = dict(rejected.items)
        if reveal is not None:  # the copy is sealed again under the new order's own scope
            header = privacy.reveal_deep(header, reveal)
            items = {k: privacy.reveal_deep(v, reveal) for k, v in items.items()}
        header = (c.header or HeaderChange()).apply_to(header)
        header = header.model_copy(update={"external_id": c.external_id})
        if twice := duplicate_ids(c.items):  # two versions of one item: neither is taken
            raise ValidationFailed(twice, rejected.id)
        for item in c.items:
            items[item.id] = item
        for item_id in c.removed_item_ids:
            if items.pop(item_id, None) is None:
                raise InvalidCommand(f"the rejected order {rejected.id} has no item {item_id}")
        header, new_items, _ = self._seal_new(header, items.values())
        inventory = self._inventory(new_items) if c.submit else None
        new = ServiceOrder.resubmission(
            ctx, rejected, header, new_items, self.app.catalog, c.submit, inventory
        )
        if new.id in self._orders or (self._existing is not None and new.id in self._existing):
            raise ConcurrencyConflict(new.id, "the order id is taken")
        try:
            rejected.resubmitted_as(ctx, new.id)
        except BaseException:
            if not self._single and len(rejected.pending_events) != before:
                self._restore(rejected, before)
            raise
        self._orders[new.id] = new
        if c.submit:
            self._open_services(ctx, new)
        return Outcome(new, created=True)

    def _request_cancellation(
        self, ctx: CommandContext, c: RequestCancellation, order: ServiceOrder
    ) -> str:
        return order.request_cancellation(ctx, c.reason, c.requested_date, c.request_id)


Handler: TypeAlias = Callable[[UnitOfWork, CommandContext, Any, ServiceOrder], str | None]


def _seal(seal: Callable[[str, str], str], scope: str, value: str) -> str:
    """`seal(scope, value)`; an empty text is left as it is. A text a command brings that
    looks like a sealed value is refused: stored as it is, it would read `[erased]`."""
    if not value:
        return value
    if privacy.is_sealed(value):
        raise InvalidCommand(sealing.LOOKALIKE)
    return seal(scope, value)


def _same(value: str) -> str:
    return value


def _named_services(order: ServiceOrder) -> set[str]:
    """The existing services the order's `modify`, `delete` and `noChange` items name."""
    return {
        i.service_id for i in order.items.values() if i.action in NAMES_A_SERVICE and i.service_id
    }


def _same_value(value: Any) -> Any:
    return value


# Who may import services: an upstream system (the Kafka import topic) or an operator (the CLI).
IMPORTERS = frozenset({Role.UPSTREAM, Role.OPERATOR})
SERVICE_SCOPE = privacy.SERVICE_SCOPE


def _record_of(service: Service, reveal: Callable[[str], str] | None) -> ServiceRecord:
    """The import that would have created `service` as it is now (revealed)."""
    record = ServiceRecord(
        id=service.service_id,
        name=service.name,
        state=service.state,
        specification=service.specification,
        characteristics=service.characteristics,
        places=service.places,
        customer=service.customer,
        depends_on=service.depends_on,
        extra=service.extra,
    )
    return record if reveal is None else privacy.reveal_deep(record, reveal)


def _forward(method: Callable[[ServiceOrder, CommandContext, Any], None], field: str) -> Handler:
    """The handler of a command the aggregate takes as it is: `method(order, ctx, <the
    command's field>)` (a note, a reason, information, an item id, a text)."""

    def handler(uow: UnitOfWork, ctx: CommandContext, c: Any, order: ServiceOrder) -> None:
        method(order, ctx, getattr(c, field))

    return handler


# command class -> its handler (a UnitOfWork method, or the aggregate's method of the same
# action with the command's one field): one lookup per command.
_HANDLERS: dict[type[Any], Handler] = {
    AddLine: UnitOfWork._add_line,
    ConfigureLine: UnitOfWork._configure_line,
    RemoveLine: _forward(ServiceOrder.remove_line, "item_id"),
    Submit: UnitOfWork._submit,
    Approve: UnitOfWork._approve,
    Reject: UnitOfWork._reject,
    Hold: _forward(ServiceOrder.hold, "reason"),
    Resume: _forward(ServiceOrder.resume, "note"),
    RequestInformation: _forward(ServiceOrder.request_information, "information"),
    ProvideInformation: _forward(ServiceOrder.provide_information, "information"),
    ChangeItemStates: UnitOfWork._change_item_states,
    ReachPointOfNoReturn: _forward(ServiceOrder.reach_point_of_no_return, "note"),
    Revise: UnitOfWork._revise,
    RequestCancellation: UnitOfWork._request_cancellation,
    ApproveCancellation: UnitOfWork._approve_cancellation,
    DenyCancellation: UnitOfWork._deny_cancellation,
    RequestCancellationInformation: UnitOfWork._request_cancellation_information,
    ProvideCancellationInformation: _forward(
        ServiceOrder.provide_cancellation_information, "information"
    ),
    ApproveProposal: UnitOfWork._approve_proposal,
    RefuseProposal: UnitOfWork._refuse_proposal,
    WithdrawProposal: _forward(ServiceOrder.withdraw_proposal, "reason"),
    Cancel: _forward(ServiceOrder.cancel, "reason"),
    AddNote: _forward(ServiceOrder.add_note, "text"),
    Delete: _forward(ServiceOrder.delete, "reason"),
}


def _check_version(order: ServiceOrder, expected: int | Collection[int]) -> None:
    if isinstance(expected, int):
        if order.version != expected:
            raise StaleVersion(order.id, expected, order.version)
    elif order.version not in expected:
        raise StaleVersion(order.id, frozenset(expected), order.version)


def _check_resend(
    app: ServiceOrders, command: ReceiveOrder, found: ServiceOrder, events: Iterable[OrderEvent]
) -> None:
    """A `ReceiveOrder` whose id `found` holds: the same order sent again (nothing to do),
    else `ResendConflict` (other content) or `ExternalIdTaken` (a draft, a deleted order);
    domain/resend.py."""
    reveal = app.sealer.reveal if app.sealer is not None else None
    received = resend.Content(command.header, command.items, command.notes)
    resend.check(received, found, events, reveal)

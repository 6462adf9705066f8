"""ServiceOrders: the one application object every door (API, Kafka, CLI) calls.

Each method is a use case: load the order, call one domain method, save. Persistence is
configured entirely by the `env` the composition root passes in (never `os.environ`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import Environment, get_topic

from . import privacy
from .catalog import Catalog
from .codec import OrjsonTranscoder, PydanticMapper
from .errors import ConcurrencyConflict, OrderNotFound
from .events import (
    CancellationApproved,
    CancellationDenied,
    OrderApproved,
    OrderCancelled,
    OrderEvent,
    OrderRejected,
)
from .order import ServiceOrder, order_id_for
from .privacy import Sealer
from .values import (
    CommandContext,
    HeaderChange,
    ItemState,
    Note,
    OrderHeader,
    OrderItem,
    Place,
)

log = logging.getLogger("serviceorders.decisions")

# The decisions logged at INFO once saved (by whichever door took them): event -> decision.
DECISIONS: dict[type[OrderEvent], str] = {
    OrderApproved: "approve",
    OrderRejected: "reject",
    CancellationApproved: "approve cancellation",
    CancellationDenied: "deny cancellation",
    OrderCancelled: "cancel",
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
    ) -> None:
        self.catalog = catalog or Catalog.default()
        self.four_eyes = four_eyes
        self.sealer = sealer
        self.snapshotting_intervals = {ServiceOrder: snapshot_interval} if snapshot_interval else {}
        super().__init__(env=dict(env))

    def construct_mapper(self) -> Any:
        mapper = super().construct_mapper()
        if self.sealer is not None:
            mapper.reveal = self.sealer.reveal
        return mapper

    def close(self) -> None:
        super().close()
        close = getattr(self.sealer, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------ personal data
    def protect(
        self, header: OrderHeader, items: Iterable[OrderItem] = ()
    ) -> tuple[OrderHeader, list[OrderItem]]:
        """Seal the personal values of a new order (docs/audit.md); every door calls this
        before the domain sees them."""
        if self.sealer is None:
            return header, list(items)
        scope = privacy.scope_of(header)
        seal = partial(self.sealer.seal, scope)
        return privacy.map_header(header, seal), [privacy.map_item(i, seal) for i in items]

    def protect_change(
        self,
        order: ServiceOrder,
        items: Iterable[OrderItem] = (),
        header: HeaderChange | None = None,
    ) -> tuple[list[OrderItem], HeaderChange | None]:
        if self.sealer is None:
            return list(items), header
        seal = partial(self.sealer.seal, privacy.scope_of(order.header, str(order.id)))
        return (
            [privacy.map_item(i, seal) for i in items],
            None if header is None else privacy.map_change(header, seal),
        )

    def protect_place(self, order: ServiceOrder, place: Place | None) -> Place | None:
        if self.sealer is None:
            return place
        seal = partial(self.sealer.seal, privacy.scope_of(order.header, str(order.id)))
        return privacy.map_place(place, seal)

    def unseal(self, order: ServiceOrder) -> ServiceOrder:
        """The in-memory order with its personal values revealed (after a command, the
        order holds the tokens its new events carry)."""
        if self.sealer is None:
            return order
        reveal = self.sealer.reveal
        order.header = privacy.map_header(order.header, reveal)
        order.items = {k: privacy.map_item(v, reveal) for k, v in order.items.items()}
        return order

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Unlike the library default, never merge os.environ: the settings are complete.
        return Environment(name, {**type(self).env, **(env or {})})

    # ------------------------------------------------------------------ creation
    def receive_order(
        self,
        ctx: CommandContext,
        header: OrderHeader,
        items: Iterable[OrderItem],
        order_id: UUID | None = None,
        notes: Iterable[Note] = (),
    ) -> tuple[UUID, bool]:
        """Create and submit a complete order; the same order again changes nothing.

        The id derives from the external id when there is one, else it is `order_id` when
        given (e.g. derived from an idempotency key), else new. Returns the order id and
        whether it was created now.
        """
        if header.external_id:  # the external id decides, whatever door the order used
            order_id = order_id_for(header.external_id)
        deterministic = order_id is not None
        order_id = order_id or order_id_for(None)
        # No "does it exist?" read first: the id is the order's key, so saving a second
        # order under it fails, and that failure is the answer (one round trip fewer).
        header, items = self.protect(header, items)
        order = ServiceOrder.receive(ctx, header, items, self.catalog, order_id, notes)
        try:
            self.save(order)
        except IntegrityError:
            if deterministic:  # created concurrently through another door
                return order_id, False
            raise ConcurrencyConflict(order_id, "the order id is taken") from None
        return order_id, True

    def draft_order(self, ctx: CommandContext, header: OrderHeader) -> UUID:
        header, _ = self.protect(header)
        order = ServiceOrder.draft(ctx, header)
        self._save(order)
        return order.id

    # ------------------------------------------------------------ manual capture
    def add_line(self, ctx: CommandContext, order_id: UUID, item: OrderItem) -> ServiceOrder:
        order = self.get_order(order_id)
        [item], _ = self.protect_change(order, [item])
        order.add_line(ctx, item, self.catalog)
        return self._save(order)

    def configure_line(
        self,
        ctx: CommandContext,
        order_id: UUID,
        item_id: str,
        characteristics: dict[str, Any] | None = None,
        cleared: Iterable[str] = (),
        place: Place | None = None,
        quantity: int | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        place = self.protect_place(order, place)
        order.configure_line(ctx, item_id, characteristics, cleared, place, quantity, depends_on)
        return self._save(order)

    def remove_line(self, ctx: CommandContext, order_id: UUID, item_id: str) -> ServiceOrder:
        order = self.get_order(order_id)
        order.remove_line(ctx, item_id)
        return self._save(order)

    def submit(self, ctx: CommandContext, order_id: UUID) -> ServiceOrder:
        order = self.get_order(order_id)
        order.submit(ctx, self.catalog)
        return self._save(order)

    # -------------------------------------------------------------------- review
    def approve(self, ctx: CommandContext, order_id: UUID, note: str | None = None) -> ServiceOrder:
        order = self.get_order(order_id)
        order.approve(ctx, note, four_eyes=self.four_eyes)
        return self._save(order)

    def reject(self, ctx: CommandContext, order_id: UUID, reason: str) -> ServiceOrder:
        order = self.get_order(order_id)
        order.reject(ctx, reason, four_eyes=self.four_eyes)
        return self._save(order)

    # ---------------------------------------------------------------- fulfilment
    def hold(self, ctx: CommandContext, order_id: UUID, reason: str) -> ServiceOrder:
        order = self.get_order(order_id)
        order.hold(ctx, reason)
        return self._save(order)

    def resume(self, ctx: CommandContext, order_id: UUID, note: str | None = None) -> ServiceOrder:
        order = self.get_order(order_id)
        order.resume(ctx, note)
        return self._save(order)

    def request_information(
        self, ctx: CommandContext, order_id: UUID, information: str
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.request_information(ctx, information)
        return self._save(order)

    def provide_information(
        self, ctx: CommandContext, order_id: UUID, information: str
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.provide_information(ctx, information)
        return self._save(order)

    def change_item_state(
        self,
        ctx: CommandContext,
        order_id: UUID,
        item_id: str,
        state: ItemState,
        reason: str | None = None,
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.change_item_state(ctx, item_id, state, reason)
        return self._save(order)

    def reach_point_of_no_return(
        self, ctx: CommandContext, order_id: UUID, note: str | None = None
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.reach_point_of_no_return(ctx, note)
        return self._save(order)

    def revise(
        self,
        ctx: CommandContext,
        order_id: UUID,
        items: Iterable[OrderItem] = (),
        removed_item_ids: Iterable[str] = (),
        header: HeaderChange | None = None,
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        items, header = self.protect_change(order, items, header)
        order.revise(ctx, self.catalog, items, removed_item_ids, header)
        return self._save(order)

    def amend(
        self,
        ctx: CommandContext,
        order: ServiceOrder,
        items: Iterable[OrderItem] = (),
        header: HeaderChange | None = None,
        notes: Iterable[str] = (),
    ) -> ServiceOrder:
        """A revision and new notes applied to `order` as the caller loaded it (and checked
        its version), saved in one transaction: all or nothing, and a ConcurrencyConflict
        when the order moved since it was loaded (the TMF641 PATCH)."""
        items, header = self.protect_change(order, items, header)
        if items or (header is not None and header.model_fields_set):
            order.revise(ctx, self.catalog, items, (), header)
        for text in notes:
            order.add_note(ctx, text)
        return self._save(order)

    # -------------------------------------------------------------- cancellation
    def request_cancellation(
        self,
        ctx: CommandContext,
        order_id: UUID,
        reason: str | None = None,
        requested_date: datetime | None = None,
    ) -> str:
        order = self.get_order(order_id)
        request_id = order.request_cancellation(ctx, reason, requested_date)
        self._save(order)
        return request_id

    def approve_cancellation(
        self, ctx: CommandContext, order_id: UUID, note: str | None = None
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.approve_cancellation(ctx, note)
        return self._save(order)

    def deny_cancellation(self, ctx: CommandContext, order_id: UUID, reason: str) -> ServiceOrder:
        order = self.get_order(order_id)
        order.deny_cancellation(ctx, reason)
        return self._save(order)

    def cancel(
        self, ctx: CommandContext, order_id: UUID, reason: str | None = None
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.cancel(ctx, reason)
        return self._save(order)

    def delete(
        self, ctx: CommandContext, order_id: UUID, reason: str | None = None
    ) -> ServiceOrder:
        order = self.get_order(order_id)
        order.delete(ctx, reason)
        return self._save(order)

    def add_note(self, ctx: CommandContext, order_id: UUID, text: str) -> ServiceOrder:
        order = self.get_order(order_id)
        order.add_note(ctx, text)
        return self._save(order)

    # --------------------------------------------------------------------- reads
    def get_order(self, order_id: UUID, version: int | None = None) -> ServiceOrder:
        try:
            return self.repository.get(order_id, version=version)
        except AggregateNotFoundError:
            raise OrderNotFound(order_id) from None

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

    def _save(self, order: ServiceOrder) -> ServiceOrder:
        try:
            self.save(order)
        except IntegrityError as e:
            raise ConcurrencyConflict(order.id, "reload the order and try again") from e
        return self.unseal(order)

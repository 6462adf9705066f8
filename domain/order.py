"""The ServiceOrder aggregate: the order lifecycle, enforced, derived only from events.

Each public method is a command: it checks the actor's permission and the order's state,
validates, then triggers one or more events. `lifecycle.py` holds the tables it obeys.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import BaseAggregate

from . import events as ev
from .catalog import Catalog, flags, structural
from .chain import GENESIS
from .copying import replace
from .errors import (
    IllegalTransition,
    InvalidCommand,
    NotPermitted,
    UnknownItem,
    ValidationFailed,
)
from .lifecycle import (
    ALLOWED_FROM,
    BLOCKED_AFTER_POINT_OF_NO_RETURN,
    ITEM_TRANSITIONS,
    NEEDS_DEPENDENCIES_DONE,
    Action,
    may,
    outcome,
)
from .snapshot import OrderSnapshot, OrderSnapshotState
from .values import (
    Actor,
    CommandContext,
    HeaderChange,
    ItemState,
    Note,
    OrderHeader,
    OrderItem,
    OrderState,
    Place,
    Problem,
    Role,
)

# Fixed namespace: an order's id is derived from its external id, whatever door it uses.
ORDER_ID_NAMESPACE = UUID("7c1f4b8e-5a0d-5d7e-9b53-0d5f1f0a6411")


def order_id_for(external_id: str | None) -> UUID:
    return uuid5(ORDER_ID_NAMESPACE, external_id) if external_id else uuid4()


def order_id_for_request(actor_id: str, idempotency_key: str) -> UUID:
    """The id of an order created with an idempotency key (and no external id)."""
    return uuid5(ORDER_ID_NAMESPACE, f"idempotency-key:{actor_id}:{idempotency_key}")


def envelope(ctx: CommandContext) -> dict[str, Any]:
    return {
        "actor": ctx.actor,
        "source": ctx.source,
        "correlation_id": ctx.correlation_id,
        "causation_id": ctx.causation_id,
    }


class ServiceOrder(BaseAggregate[UUID]):
    TOPIC = "serviceorders.order:ServiceOrder"
    class_version = 1
    Snapshot = OrderSnapshot

    @staticmethod
    def create_id(external_id: str | None = None) -> UUID:
        return order_id_for(external_id)

    def __init__(self) -> None:
        self.header = OrderHeader()
        self.state = OrderState.DRAFT
        self.state_since: datetime | None = None  # when the order entered its state
        self.items: dict[str, OrderItem] = {}
        self.flags: tuple[Problem, ...] = ()
        self.notes: tuple[Note, ...] = ()
        self.submitted_by: Actor | None = None
        self.decided_by: Actor | None = None
        self.submitted_at: datetime | None = None
        self.decided_at: datetime | None = None
        self.rejection_reason: str | None = None
        self.waiting_reason: str | None = None
        self.prior_state: OrderState | None = None
        self.cancellation_request_id: str | None = None
        self.cancellation_reason: str | None = None
        self.cancellation_requested_by: Actor | None = None
        self.point_of_no_return = False
        self.deleted = False
        self.revision = 0
        self.head_hash = GENESIS

    # ----------------------------------------------------------------- creation
    @classmethod
    def draft(
        cls, ctx: CommandContext, header: OrderHeader, order_id: UUID | None = None
    ) -> ServiceOrder:
        """An agent starts capturing an order by hand; items follow one by one."""
        _check_role(None, ctx, Action.DRAFT)
        return cls._new(ctx, header, (), order_id)

    @classmethod
    def receive(
        cls,
        ctx: CommandContext,
        header: OrderHeader,
        items: Iterable[OrderItem],
        catalog: Catalog,
        order_id: UUID | None = None,
        notes: Iterable[Note] = (),
    ) -> ServiceOrder:
        """A complete order from an upstream system or the API: two events, into review."""
        _check_role(None, ctx, Action.RECEIVE)
        items = tuple(catalog.resolve(i) for i in items)
        problems = catalog.validate_items(items)
        if refused := structural(problems):
            raise ValidationFailed(refused, order_id)
        order = cls._new(ctx, header, items, order_id, tuple(notes))
        order.trigger_event(ev.OrderSubmitted, flags=tuple(flags(problems)), **envelope(ctx))
        return order

    @classmethod
    def _new(
        cls,
        ctx: CommandContext,
        header: OrderHeader,
        items: tuple[OrderItem, ...],
        order_id: UUID | None,
        notes: tuple[Note, ...] = (),
    ) -> ServiceOrder:
        order_id = order_id or order_id_for(header.external_id)
        return cls._create(
            ev.OrderDrafted,
            id=order_id,
            header=header,
            items=tuple(_without_state(i) for i in items),
            notes=notes,
            prev_hash=GENESIS,
            **envelope(ctx),
        )

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        super().trigger_event(event_class, prev_hash=self.head_hash, **kwargs)

    # ------------------------------------------------------------- manual capture
    def add_line(
        self, ctx: CommandContext, item: OrderItem, catalog: Catalog | None = None
    ) -> None:
        self._check(ctx, Action.ADD_LINE)
        if item.id in self.items:
            raise InvalidCommand(f"order {self.id} already has an item {item.id}")
        if catalog is not None:
            item = catalog.resolve(item)
        self.trigger_event(ev.LineAdded, item=_without_state(item), **envelope(ctx))

    def configure_line(
        self,
        ctx: CommandContext,
        item_id: str,
        characteristics: dict[str, Any] | None = None,
        cleared: Iterable[str] = (),
        place: Place | None = None,
        quantity: int | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        self._check(ctx, Action.CONFIGURE_LINE)
        self._item(item_id)
        changes: dict[str, Any] = {}
        if place is not None:
            changes["place"] = place.model_dump(mode="json")
        if quantity is not None:
            if quantity < 1:
                raise InvalidCommand("quantity must be at least 1")
            changes["quantity"] = quantity
        if depends_on is not None:
            changes["depends_on"] = list(depends_on)
        if not (characteristics or cleared or changes):
            raise InvalidCommand(f"nothing to configure on item {item_id}")
        self.trigger_event(
            ev.LineConfigured,
            item_id=item_id,
            characteristics=dict(characteristics or {}),
            cleared=tuple(cleared),
            changes=changes,
            **envelope(ctx),
        )

    def remove_line(self, ctx: CommandContext, item_id: str) -> None:
        self._check(ctx, Action.REMOVE_LINE)
        self._item(item_id)
        self.trigger_event(ev.LineRemoved, item_id=item_id, **envelope(ctx))

    def validate(self, catalog: Catalog) -> list[Problem]:
        """Every problem of the order as it stands, structural and flags alike."""
        return catalog.validate_items(self.items.values())

    def submit(self, ctx: CommandContext, catalog: Catalog) -> None:
        self._check(ctx, Action.SUBMIT)
        problems = self.validate(catalog)
        if refused := structural(problems):
            raise ValidationFailed(refused, self.id)
        self.trigger_event(ev.OrderSubmitted, flags=tuple(flags(problems)), **envelope(ctx))

    # -------------------------------------------------------------------- review
    def approve(self, ctx: CommandContext, note: str | None = None, four_eyes: bool = True) -> None:
        self._check(ctx, Action.APPROVE)
        self._check_four_eyes(ctx, Action.APPROVE, four_eyes)
        self.trigger_event(ev.OrderApproved, note=note, **envelope(ctx))

    def reject(self, ctx: CommandContext, reason: str, four_eyes: bool = True) -> None:
        self._check(ctx, Action.REJECT)
        self._check_four_eyes(ctx, Action.REJECT, four_eyes)
        self.trigger_event(
            ev.OrderRejected, reason=_required(reason, "a rejection"), **envelope(ctx)
        )

    # --------------------------------------------------------------- fulfilment
    def hold(self, ctx: CommandContext, reason: str) -> None:
        self._check(ctx, Action.HOLD)
        self.trigger_event(
            ev.OrderHeld, reason=_required(reason, "holding an order"), **envelope(ctx)
        )

    def resume(self, ctx: CommandContext, note: str | None = None) -> None:
        self._check(ctx, Action.RESUME)
        self.trigger_event(ev.OrderResumed, note=note, **envelope(ctx))
        self._settle(ctx)  # a revision may have closed the last open items meanwhile

    def request_information(self, ctx: CommandContext, information: str) -> None:
        self._check(ctx, Action.REQUEST_INFORMATION)
        self.trigger_event(
            ev.InformationRequested,
            information=_required(information, "an information request"),
            **envelope(ctx),
        )

    def provide_information(self, ctx: CommandContext, information: str) -> None:
        self._check(ctx, Action.PROVIDE_INFORMATION)
        self.trigger_event(
            ev.InformationProvided,
            information=_required(information, "providing information"),
            **envelope(ctx),
        )
        self._settle(ctx)  # a revision may have closed the last open items meanwhile

    def change_item_state(
        self, ctx: CommandContext, item_id: str, state: ItemState, reason: str | None = None
    ) -> None:
        """Fulfilment reports an item's progress; the last final item decides the order."""
        self._check(ctx, Action.CHANGE_ITEM_STATE)
        item = self._item(item_id)
        current = item.state or ItemState.ACKNOWLEDGED
        if state not in ITEM_TRANSITIONS.get(current, frozenset()):
            raise IllegalTransition(
                self.id,
                self.state,
                Action.CHANGE_ITEM_STATE,
                f"item {item_id} cannot go from {current} to {state}",
            )
        if state in NEEDS_DEPENDENCIES_DONE:
            waiting = [d for d in item.depends_on if self.items[d].state is not ItemState.COMPLETED]
            if waiting:
                raise IllegalTransition(
                    self.id,
                    self.state,
                    Action.CHANGE_ITEM_STATE,
                    f"item {item_id} waits for item(s) {', '.join(waiting)}",
                )
        self.trigger_event(
            ev.ItemStateChanged, item_id=item_id, state=state, reason=reason, **envelope(ctx)
        )
        self._settle(ctx)

    def _settle(self, ctx: CommandContext) -> None:
        final = outcome([i.state or ItemState.ACKNOWLEDGED for i in self.items.values()])
        event_class = {
            OrderState.COMPLETED: ev.OrderCompleted,
            OrderState.FAILED: ev.OrderFailed,
            OrderState.PARTIAL: ev.OrderPartiallyCompleted,
            OrderState.CANCELLED: ev.OrderCancelled,
        }.get(final)  # type: ignore[arg-type]
        if event_class is not None:
            self.trigger_event(event_class, **envelope(ctx))

    def reach_point_of_no_return(self, ctx: CommandContext, note: str | None = None) -> None:
        self._check(ctx, Action.REACH_POINT_OF_NO_RETURN)
        if self.point_of_no_return:
            raise IllegalTransition(
                self.id,
                self.state,
                Action.REACH_POINT_OF_NO_RETURN,
                "it has already passed its point of no return",
            )
        self.trigger_event(ev.PointOfNoReturnReached, note=note, **envelope(ctx))

    # ------------------------------------------------------------------ revision
    def revise(
        self,
        ctx: CommandContext,
        catalog: Catalog,
        items: Iterable[OrderItem] = (),
        removed_item_ids: Iterable[str] = (),
        header: HeaderChange | None = None,
    ) -> None:
        """Merge a revision by item id; the order keeps its state (see docs/lifecycle.md)."""
        self._check(ctx, Action.REVISE)
        items = tuple(catalog.resolve(i) for i in items)
        removed = tuple(dict.fromkeys(removed_item_ids))
        header = header or HeaderChange()
        if not (items or removed or header.model_fields_set):
            raise InvalidCommand(f"the revision of order {self.id} changes nothing")
        for item_id in [*(i.id for i in items if i.id in self.items), *removed]:
            current = self._item(item_id).state
            if current is not None and current.is_final:
                raise IllegalTransition(
                    self.id, self.state, Action.REVISE, f"item {item_id} is already {current}"
                )
        if set(removed) & {i.id for i in items}:
            raise InvalidCommand("a revision cannot both replace and remove the same item")
        merged = {**self.items, **{i.id: i for i in items}}
        remaining = [item for item_id, item in merged.items() if item_id not in removed]
        problems = catalog.validate_items(remaining)
        if refused := structural(problems):
            raise ValidationFailed(refused, self.id)
        self.trigger_event(
            ev.OrderRevised,
            items=tuple(replace(i, state=ItemState.ACKNOWLEDGED) for i in items),
            removed_item_ids=removed,
            header=header,
            flags=tuple(flags(problems)),
            **envelope(ctx),
        )
        if self.state is OrderState.IN_PROGRESS:
            self._settle(ctx)  # removing the last open items may finish the order

    # -------------------------------------------------------------- cancellation
    def request_cancellation(
        self,
        ctx: CommandContext,
        reason: str | None = None,
        requested_date: datetime | None = None,
        request_id: str | None = None,
    ) -> str:
        self._check(ctx, Action.REQUEST_CANCELLATION)
        request_id = request_id or str(uuid4())
        self.trigger_event(
            ev.CancellationRequested,
            request_id=request_id,
            reason=reason,
            requested_date=requested_date,
            prior_state=self.state,
            **envelope(ctx),
        )
        return request_id

    def approve_cancellation(self, ctx: CommandContext, note: str | None = None) -> None:
        self._check(ctx, Action.APPROVE_CANCELLATION)
        self.trigger_event(
            ev.CancellationApproved,
            request_id=self.cancellation_request_id,
            note=note,
            **envelope(ctx),
        )

    def deny_cancellation(self, ctx: CommandContext, reason: str) -> None:
        self._check(ctx, Action.DENY_CANCELLATION)
        self.trigger_event(
            ev.CancellationDenied,
            request_id=self.cancellation_request_id,
            reason=_required(reason, "denying a cancellation"),
            restored_state=self.prior_state,
            **envelope(ctx),
        )

    def cancel(self, ctx: CommandContext, reason: str | None = None) -> None:
        """Cancellation done (after an approved request), or the order directly cancelled."""
        self._check(ctx, Action.CANCEL)
        self.trigger_event(
            ev.OrderCancelled,
            reason=reason or self.cancellation_reason,
            request_id=self.cancellation_request_id,
            **envelope(ctx),
        )

    # ---------------------------------------------------------------------- notes
    def add_note(self, ctx: CommandContext, text: str) -> None:
        self._check(ctx, Action.ADD_NOTE)
        note = Note(text=_required(text, "a note"), author=ctx.actor.id)
        self.trigger_event(ev.NoteAdded, note=note, **envelope(ctx))

    # ------------------------------------------------------------------- deletion
    def delete(self, ctx: CommandContext, reason: str | None = None) -> None:
        """Discard a draft or archive a final order; its history stays for auditors."""
        self._check(ctx, Action.DELETE)
        if ctx.actor.role is Role.AGENT and self.state is not OrderState.DRAFT:
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                Action.DELETE,
                "agents may delete drafts only",
            )
        self.trigger_event(ev.OrderDeleted, reason=reason, **envelope(ctx))

    # --------------------------------------------------------------------- checks
    def _check(self, ctx: CommandContext, action: Action) -> None:
        _check_role(self.id, ctx, action)
        if self.deleted:
            raise IllegalTransition(self.id, self.state, action, "the order was deleted")
        if self.state not in ALLOWED_FROM[action]:
            raise IllegalTransition(self.id, self.state, action)
        if self.point_of_no_return and action in BLOCKED_AFTER_POINT_OF_NO_RETURN:
            raise IllegalTransition(
                self.id, self.state, action, "the order has passed its point of no return"
            )

    def _check_four_eyes(self, ctx: CommandContext, action: Action, four_eyes: bool) -> None:
        if four_eyes and self.submitted_by is not None and self.submitted_by.id == ctx.actor.id:
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                action,
                "the submitter may not decide their own order (four-eyes)",
            )

    def _item(self, item_id: str) -> OrderItem:
        try:
            return self.items[item_id]
        except KeyError:
            raise UnknownItem(self.id, item_id) from None

    # ------------------------------------------------------------------ snapshots
    def snapshot_state(self) -> OrderSnapshotState:
        return OrderSnapshotState.model_validate(
            {k.lstrip("_"): v for k, v in vars(self).items() if k not in _NOT_IN_SNAPSHOT}
        )


_NOT_IN_SNAPSHOT = {"_id", "_version", "_pending_events"}


def _check_role(order_id: UUID | None, ctx: CommandContext, action: Action) -> None:
    if not may(ctx.actor.role, action):
        raise NotPermitted(order_id, ctx.actor.id, ctx.actor.role, action)


def _without_state(item: OrderItem) -> OrderItem:
    """The item as a draft holds it (no state); the same item when it has none."""
    return item if item.state is None else replace(item, state=None)


def _required(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise InvalidCommand(f"{what} needs a reason or text")
    return text.strip()

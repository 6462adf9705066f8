"""The ServiceOrder aggregate: the order lifecycle, enforced, derived only from events.

Each public method is a command: it checks the actor's permission and the order's state,
validates, then triggers one or more events. `lifecycle.py` holds the tables it obeys.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from hashlib import sha256
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import BaseAggregate

from . import events as ev
from .catalog import Catalog, duplicate_ids, flags, structural
from .chain import GENESIS, canonical
from .copying import replace
from .errors import (
    IllegalTransition,
    InvalidCommand,
    NotPermitted,
    UnknownItem,
    ValidationFailed,
)
from .inventory import CODES as INVENTORY_CODES
from .inventory import Inventory, kept_flags
from .lifecycle import (
    ALLOWED_FROM,
    BLOCKED_AFTER_POINT_OF_NO_RETURN,
    DIRECT_CANCEL_ROLES,
    ITEM_TRANSITIONS,
    NEEDS_DEPENDENCIES_DONE,
    Action,
    may,
    outcome,
)
from .policy import Policy
from .snapshot import OrderSnapshot, OrderSnapshotState
from .values import (
    Actor,
    CommandContext,
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
    Place,
    Problem,
    Proposal,
    Role,
)

# orderRelationship types of a correction: the new order `resubmits` the rejected one,
# which is `resubmittedAs` the new one.
RESUBMITS = "resubmits"
RESUBMITTED_AS = "resubmittedAs"

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
        # Who shaped the content before the decision (drafted, added, configured, removed,
        # submitted, revised): four-eyes keeps each of them from deciding the order.
        self.contributors: tuple[str, ...] = ()
        self.proposal: Proposal | None = None  # a revision after approval, waiting
        self.held_for_proposal: str | None = None  # held while that proposal waits
        # Issue 19 (snapshot format 3): what is told back (errorMessage, milestone), the
        # question on the cancellation that waits for its requester's answer, and the item
        # states a denied cancellation restores.
        self.outcomes: tuple[OrderOutcome, ...] = ()
        self.milestones: tuple[Milestone, ...] = ()
        self.cancellation_information: str | None = None
        self.item_states_before_cancellation: dict[str, ItemState] = {}
        # Issue 20 (snapshot format 4): what the inventory held of each item naming an
        # existing service when it was accepted (domain/inventory.py).
        self.inventory: dict[str, ItemCheck] = {}

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
        inventory: Inventory | None = None,
    ) -> ServiceOrder:
        """A complete order from an upstream system or the API: two events, into review
        (three when items name existing services: `InventoryChecked` between)."""
        _check_role(None, ctx, Action.RECEIVE)
        items = tuple(catalog.resolve(i) for i in items)
        problems = catalog.validate_items(items)
        if inventory is not None:
            order_id = order_id or order_id_for(header.external_id)
            customer = header.customer
            problems += inventory.problems(order_id, customer.id if customer else None, items)
        if refused := structural(problems):
            raise ValidationFailed(refused, order_id)
        order = cls._new(ctx, header, items, order_id, tuple(notes))
        order._record_checks(ctx, inventory, items)
        order.trigger_event(ev.OrderSubmitted, flags=tuple(flags(problems)), **envelope(ctx))
        return order

    def _record_checks(
        self, ctx: CommandContext, inventory: Inventory | None, items: Iterable[OrderItem]
    ) -> None:
        if inventory is not None and (checks := inventory.checks(items)):
            self.trigger_event(ev.InventoryChecked, checks=checks, **envelope(ctx))

    def _inventory_problems(
        self, inventory: Inventory | None, items: Iterable[OrderItem]
    ) -> list[Problem]:
        if inventory is None:
            return []
        customer = self.header.customer
        return inventory.problems(self.id, customer.id if customer else None, items)

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

    def submit(
        self, ctx: CommandContext, catalog: Catalog, inventory: Inventory | None = None
    ) -> None:
        self._check(ctx, Action.SUBMIT)
        problems = self.validate(catalog)
        problems += self._inventory_problems(inventory, self.items.values())
        if refused := structural(problems):
            raise ValidationFailed(refused, self.id)
        self._record_checks(ctx, inventory, self.items.values())
        self.trigger_event(ev.OrderSubmitted, flags=tuple(flags(problems)), **envelope(ctx))

    # -------------------------------------------------------------------- review
    def approve(self, ctx: CommandContext, note: str | None = None, four_eyes: bool = True) -> None:
        self._check(ctx, Action.APPROVE)
        self._check_contributors(ctx, Action.APPROVE, four_eyes)
        self.trigger_event(
            ev.OrderApproved, note=note, decision=self.decision(ctx), **envelope(ctx)
        )

    def reject(self, ctx: CommandContext, reason: str, four_eyes: bool = True) -> None:
        self._check(ctx, Action.REJECT)
        self._check_contributors(ctx, Action.REJECT, four_eyes)
        self.trigger_event(
            ev.OrderRejected,
            reason=_required(reason, "a rejection"),
            decision=self.decision(ctx),
            **envelope(ctx),
        )

    def decision(self, ctx: CommandContext) -> Decision:
        """What the decider decides on: this version and content (see `content_hash`)."""
        return Decision(version=self.version, content_hash=self.content_hash(), os_user=ctx.os_user)

    def content_hash(self) -> str:
        """SHA-256 of the order's content as a decider sees it: the header, the items (with
        their states) and the waiting proposal, in canonical JSON (domain/chain.py)."""
        content = {
            "header": self.header.model_dump(mode="json"),
            "items": [self.items[k].model_dump(mode="json") for k in sorted(self.items)],
            "proposal": None if self.proposal is None else self.proposal.model_dump(mode="json"),
        }
        return sha256(canonical(content)).hexdigest()

    # --------------------------------------------------------------- fulfilment
    def hold(self, ctx: CommandContext, reason: str) -> None:
        self._check(ctx, Action.HOLD)
        self.trigger_event(
            ev.OrderHeld, reason=_required(reason, "holding an order"), **envelope(ctx)
        )

    def resume(self, ctx: CommandContext, note: str | None = None) -> None:
        self._check(ctx, Action.RESUME)
        if self.held_for_proposal is not None:  # the hold policy's: lifted by the decision
            raise IllegalTransition(
                self.id,
                self.state,
                Action.RESUME,
                f"it is held while proposal {self.held_for_proposal} waits: the proposal's "
                "decision (or its withdrawal) resumes it",
            )
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
        open_nested = [k for k in ev.nested_in(self.items, item_id) if _open(self.items[k])]
        if open_nested:
            raise IllegalTransition(
                self.id,
                self.state,
                Action.CHANGE_ITEM_STATE,
                f"item {item_id} has open nested item(s) {', '.join(open_nested)}: "
                "fulfilment reports on those; the item settles when they are final",
            )
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
        self._settle_parents(ctx)
        final = outcome([i.state or ItemState.ACKNOWLEDGED for i in self.items.values()])
        event_class = {
            OrderState.COMPLETED: ev.OrderCompleted,
            OrderState.FAILED: ev.OrderFailed,
            OrderState.PARTIAL: ev.OrderPartiallyCompleted,
            OrderState.CANCELLED: ev.OrderCancelled,
        }.get(final)  # type: ignore[arg-type]
        if event_class is not None:
            self._withdraw_waiting(ctx, "the order ended before the proposal was decided")
            self.trigger_event(event_class, **envelope(ctx))

    def _settle_parents(self, ctx: CommandContext) -> None:
        """Each open item whose nested items are all final settles by the order's rule
        (`outcome`): completed, failed, partial or cancelled, as an ItemStateChanged by the
        acting context; repeated until none settles, so a parent of parents settles too."""
        settled = True
        while settled:
            settled = False
            nested_by_parent: dict[str, list[OrderItem]] = {}
            for item in self.items.values():
                if item.parent is not None:
                    nested_by_parent.setdefault(item.parent, []).append(item)
            for item_id, nested in nested_by_parent.items():
                if item_id not in self.items or not _open(self.items[item_id]):
                    continue
                final = outcome([i.state or ItemState.ACKNOWLEDGED for i in nested])
                if final is None:
                    continue
                state = ItemState(final.value)
                failed = [i.id for i in nested if i.state is ItemState.FAILED]
                reason = (
                    f"its nested item(s) {', '.join(failed)} failed"
                    if state is ItemState.FAILED
                    else None
                )
                self.trigger_event(
                    ev.ItemStateChanged,
                    item_id=item_id,
                    state=state,
                    reason=reason,
                    **envelope(ctx),
                )
                settled = True
                break  # the items changed: look again

    def _withdraw_waiting(self, ctx: CommandContext, reason: str) -> None:
        if self.proposal is not None:
            self.trigger_event(
                ev.ProposalWithdrawn, proposal_id=self.proposal.id, reason=reason, **envelope(ctx)
            )

    def reach_point_of_no_return(self, ctx: CommandContext, note: str | None = None) -> None:
        self._check(ctx, Action.REACH_POINT_OF_NO_RETURN)
        if self.proposal is not None:
            raise IllegalTransition(
                self.id,
                self.state,
                Action.REACH_POINT_OF_NO_RETURN,
                f"proposal {self.proposal.id} waits for a decision",
            )
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
        policy: Policy | None = None,
        inventory: Inventory | None = None,
    ) -> str | None:
        """Merge a revision by item id; the order keeps its state (see docs/lifecycle.md).

        After approval the change is a proposal (unless `policy` exempts it): recorded,
        not applied, until a second person approves it; returns the proposal's id."""
        self._check(ctx, Action.REVISE)
        policy = policy or Policy()
        items = tuple(catalog.resolve(i) for i in items)
        removed = tuple(dict.fromkeys(removed_item_ids))
        header = header or HeaderChange()
        if not (items or removed or header.model_fields_set):
            raise InvalidCommand(f"the revision of order {self.id} changes nothing")
        if twice := duplicate_ids(items):  # two versions of one item: neither is taken
            raise ValidationFailed(twice, self.id)
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
        problems += self._inventory_problems(inventory, items)  # the items it brings
        problems += kept_flags(self.flags, [*(i.id for i in items), *removed])
        if refused := structural(problems):
            raise ValidationFailed(refused, self.id)
        change = {
            "items": tuple(replace(i, state=ItemState.ACKNOWLEDGED) for i in items),
            "removed_item_ids": removed,
            "header": header,
            "flags": tuple(flags(problems)),
        }
        if self.state is not OrderState.ACKNOWLEDGED and policy.needs_proposal(
            items, removed, header
        ):
            return self._propose(ctx, catalog, policy, change)
        self.trigger_event(ev.OrderRevised, **change, **envelope(ctx))
        self._record_checks(ctx, inventory, items)
        if self.state is OrderState.IN_PROGRESS:
            self._settle(ctx)  # removing the last open items may finish the order
        return None

    def _propose(
        self, ctx: CommandContext, catalog: Catalog, policy: Policy, change: dict[str, Any]
    ) -> str:
        if self.proposal is not None:
            raise IllegalTransition(
                self.id,
                self.state,
                Action.REVISE,
                f"proposal {self.proposal.id} waits for a decision: it is decided or "
                "withdrawn first (one proposal at a time)",
            )
        proposal_id = str(uuid4())
        self.trigger_event(ev.RevisionProposed, proposal_id=proposal_id, **change, **envelope(ctx))
        items = [*self.items.values(), *change["items"]]
        specs = [catalog.get(i.specification.id) for i in items if i.specification]
        held = policy.hold_on_proposal or any(s.hold_on_proposal for s in specs if s)
        if held and self.state is OrderState.IN_PROGRESS:
            self.trigger_event(
                ev.OrderHeld,
                reason=f"held while proposal {proposal_id} waits for review",
                proposal_id=proposal_id,
                **envelope(ctx),
            )
        return proposal_id

    # ------------------------------------------------------------------ proposals
    def approve_proposal(
        self,
        ctx: CommandContext,
        catalog: Catalog,
        note: str | None = None,
        four_eyes: bool = True,
    ) -> None:
        """A second person approves the waiting proposal: re-validated against the
        current items, then applied."""
        proposal = self._waiting(ctx, Action.APPROVE_PROPOSAL, four_eyes)
        for item_id in [
            *(i.id for i in proposal.items if i.id in self.items),
            *proposal.removed_item_ids,
        ]:
            current = self._item(item_id).state
            if current is not None and current.is_final:
                raise IllegalTransition(
                    self.id,
                    self.state,
                    Action.APPROVE_PROPOSAL,
                    f"item {item_id} is already {current}: refuse the proposal",
                )
        merged = {**self.items, **{i.id: i for i in proposal.items}}
        removed = set(proposal.removed_item_ids)
        problems = catalog.validate_items(v for k, v in merged.items() if k not in removed)
        # the inventory's flags: the proposal's for the items it brings, the order's others
        changed = [*(i.id for i in proposal.items), *removed]
        problems += [
            f for f in proposal.flags if f.code in INVENTORY_CODES and f.item_id in changed
        ]
        problems += kept_flags(self.flags, changed)
        if refused := structural(problems):
            raise ValidationFailed(refused, self.id)
        self.trigger_event(
            ev.ProposalApproved,
            proposal_id=proposal.id,
            note=note,
            flags=tuple(flags(problems)),
            decision=self.decision(ctx),
            **envelope(ctx),
        )
        self._after_proposal(ctx, proposal)
        if self.state is OrderState.IN_PROGRESS:
            self._settle(ctx)  # removing the last open items may finish the order

    def refuse_proposal(self, ctx: CommandContext, reason: str, four_eyes: bool = True) -> None:
        proposal = self._waiting(ctx, Action.REFUSE_PROPOSAL, four_eyes)
        self.trigger_event(
            ev.ProposalRefused,
            proposal_id=proposal.id,
            reason=_required(reason, "refusing a proposal"),
            decision=self.decision(ctx),
            **envelope(ctx),
        )
        self._after_proposal(ctx, proposal)

    def withdraw_proposal(self, ctx: CommandContext, reason: str | None = None) -> None:
        """Its proposer (or a manager) takes the waiting proposal back."""
        self._check(ctx, Action.WITHDRAW_PROPOSAL)
        proposal = self._proposal_of(Action.WITHDRAW_PROPOSAL)
        if proposal.proposed_by.id != ctx.actor.id and ctx.actor.role not in _OVERSEERS:
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                Action.WITHDRAW_PROPOSAL,
                "only its proposer or a manager may withdraw a proposal",
            )
        self.trigger_event(
            ev.ProposalWithdrawn, proposal_id=proposal.id, reason=reason, **envelope(ctx)
        )
        self._after_proposal(ctx, proposal)

    def _waiting(self, ctx: CommandContext, action: Action, four_eyes: bool) -> Proposal:
        self._check(ctx, action)
        proposal = self._proposal_of(action)
        if four_eyes and proposal.proposed_by.id == ctx.actor.id:
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                action,
                "the proposer may not decide their own proposal (four-eyes)",
            )
        return proposal

    def _proposal_of(self, action: Action) -> Proposal:
        if self.proposal is None:
            raise IllegalTransition(self.id, self.state, action, "no proposal waits")
        return self.proposal

    def _after_proposal(self, ctx: CommandContext, proposal: Proposal) -> None:
        """Resume the order if the proposal held it (and it is still held for it)."""
        if self.state is OrderState.HELD and self.held_for_proposal == proposal.id:
            self.trigger_event(
                ev.OrderResumed, note=f"proposal {proposal.id} decided", **envelope(ctx)
            )

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

    def approve_cancellation(
        self, ctx: CommandContext, note: str | None = None, four_eyes: bool = True
    ) -> None:
        self._check(ctx, Action.APPROVE_CANCELLATION)
        self._check_requester(ctx, Action.APPROVE_CANCELLATION, four_eyes)
        self.trigger_event(
            ev.CancellationApproved,
            request_id=self.cancellation_request_id,
            note=note,
            decision=self.decision(ctx),
            **envelope(ctx),
        )

    def deny_cancellation(self, ctx: CommandContext, reason: str, four_eyes: bool = True) -> None:
        self._check(ctx, Action.DENY_CANCELLATION)
        self._check_requester(ctx, Action.DENY_CANCELLATION, four_eyes)
        self.trigger_event(
            ev.CancellationDenied,
            request_id=self.cancellation_request_id,
            reason=_required(reason, "denying a cancellation"),
            restored_state=self.prior_state,
            decision=self.decision(ctx),
            **envelope(ctx),
        )

    def request_cancellation_information(
        self, ctx: CommandContext, information: str, four_eyes: bool = True
    ) -> None:
        """A decider asks the cancellation's requester for information (one question at a
        time); the order stays assessingCancellation."""
        self._check(ctx, Action.REQUEST_CANCELLATION_INFORMATION)
        self._check_requester(ctx, Action.REQUEST_CANCELLATION_INFORMATION, four_eyes)
        if self.cancellation_information is not None:
            raise IllegalTransition(
                self.id,
                self.state,
                Action.REQUEST_CANCELLATION_INFORMATION,
                "a question on the cancellation already waits for its requester's answer",
            )
        self.trigger_event(
            ev.CancellationInformationRequested,
            request_id=self.cancellation_request_id,
            information=_required(information, "a cancellation information request"),
            **envelope(ctx),
        )

    def provide_cancellation_information(self, ctx: CommandContext, information: str) -> None:
        """The requester's answer (or an operator's); the cancellation is assessed again."""
        self._check(ctx, Action.PROVIDE_CANCELLATION_INFORMATION)
        requester = self.cancellation_requested_by
        if (
            requester is not None
            and requester.id != ctx.actor.id
            and ctx.actor.role is not Role.OPERATOR
        ):
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                Action.PROVIDE_CANCELLATION_INFORMATION,
                "only whoever requested the cancellation (or an operator) answers its question",
            )
        if self.cancellation_information is None:
            raise IllegalTransition(
                self.id,
                self.state,
                Action.PROVIDE_CANCELLATION_INFORMATION,
                "no question on the cancellation waits for an answer",
            )
        self.trigger_event(
            ev.CancellationInformationProvided,
            request_id=self.cancellation_request_id,
            information=_required(information, "providing cancellation information"),
            **envelope(ctx),
        )

    def cancel(self, ctx: CommandContext, reason: str | None = None) -> None:
        """Carry out an approved cancellation (`pendingCancellation`), or fulfilment's exit
        from `held` / `pending` (the order cannot be fulfilled); any other cancellation is
        requested and decided by a second person."""
        self._check(ctx, Action.CANCEL)
        if self.state is not OrderState.PENDING_CANCELLATION and (
            ctx.actor.role not in DIRECT_CANCEL_ROLES
        ):
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                Action.CANCEL,
                "a direct cancellation is fulfilment's exit from held or pending; "
                "request the cancellation and let a second person decide it",
            )
        self._withdraw_waiting(ctx, "the order was cancelled")
        self.trigger_event(
            ev.OrderCancelled,
            reason=reason or self.cancellation_reason,
            request_id=self.cancellation_request_id,
            **envelope(ctx),
        )

    # ------------------------------------------------------------ correct and resubmit
    def resubmitted_as(self, ctx: CommandContext, new_order_id: UUID) -> None:
        """Link this rejected order to the new order that corrects it."""
        self._check(ctx, Action.RESUBMIT)
        self.trigger_event(
            ev.OrderResubmitted,
            new_order_id=new_order_id,
            relationship_type=RESUBMITTED_AS,
            **envelope(ctx),
        )

    @classmethod
    def resubmission(
        cls,
        ctx: CommandContext,
        rejected: ServiceOrder,
        header: OrderHeader,
        items: Iterable[OrderItem],
        catalog: Catalog,
        submit: bool,
        inventory: Inventory | None = None,
    ) -> ServiceOrder:
        """The new order correcting `rejected` (its content, corrected, as `header` and
        `items`): into review at once (`submit`), else a draft to correct further. Its
        header links it to the rejected order (`resubmits`)."""
        _check_role(rejected.id, ctx, Action.RESUBMIT)
        link = OrderRelationship(id=str(rejected.id), relationship_type=RESUBMITS)
        kept = [r for r in header.order_relationships if r.relationship_type != RESUBMITTED_AS]
        header = header.model_copy(update={"order_relationships": (*kept, link)})
        if submit:
            return cls.receive(ctx, header, items, catalog, inventory=inventory)
        _check_role(None, ctx, Action.DRAFT)
        return cls._new(ctx, header, tuple(catalog.resolve(i) for i in items), None)

    # ---------------------------------------------------------------------- notes
    def add_note(self, ctx: CommandContext, text: str) -> None:
        self._check(ctx, Action.ADD_NOTE)
        # Kept as sent (leading and trailing whitespace too, like the notes of a creation);
        # only an all-blank text is refused.
        _required(text, "a note")
        note = Note(text=text, author=ctx.actor.id)
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

    def _check_contributors(self, ctx: CommandContext, action: Action, four_eyes: bool) -> None:
        if four_eyes and ctx.actor.id in self.contributors:
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                action,
                "whoever drafted, configured, submitted or changed the order may not "
                "decide it (four-eyes)",
            )

    def _check_requester(self, ctx: CommandContext, action: Action, four_eyes: bool) -> None:
        requester = self.cancellation_requested_by
        if four_eyes and requester is not None and requester.id == ctx.actor.id:
            raise NotPermitted(
                self.id,
                ctx.actor.id,
                ctx.actor.role,
                action,
                "whoever requested the cancellation may not decide it (four-eyes)",
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


_OVERSEERS = frozenset({Role.MANAGER, Role.OPERATOR})


def _check_role(order_id: UUID | None, ctx: CommandContext, action: Action) -> None:
    if not may(ctx.actor.role, action):
        raise NotPermitted(order_id, ctx.actor.id, ctx.actor.role, action)


def _without_state(item: OrderItem) -> OrderItem:
    """The item as a draft holds it (no state); the same item when it has none."""
    return item if item.state is None else replace(item, state=None)


def _open(item: OrderItem) -> bool:
    return not (item.state and item.state.is_final)


def _required(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise InvalidCommand(f"{what} needs a reason or text")
    return text.strip()

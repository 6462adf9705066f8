"""The command vocabulary: one small immutable value per action of the order lifecycle.

Every door (the Kafka envelope parser, the TMF641 and /api/v1 routes, the console, the
CLI) only parses its input into one of these and hands it to
`ServiceOrders.handle(ctx, command, expected_version)` (domain/application.py), which
loads the order, checks the version, seals personal data, calls the aggregate and saves.
So a rule (sealing, four-eyes, the store conflict) is applied in one place.

They are plain dataclasses of the domain's values (`OrderHeader`, `OrderItem`, `Place`,
`HeaderChange`, `Note`, `ItemState` from values.py), never a wire format: a change of
codec or of a door's spelling does not change them. Who acts and from where travels
beside the command, in its `CommandContext`; the application's policies (four-eyes) are
its settings, never part of a command.

A command that targets an existing order names it by `Target`: our id, or an `OrderRef`
(our id, else the external id) when the door only knows the upstream's reference.
Sequences given as lists are kept as tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, get_args
from uuid import UUID

from .order import order_id_for
from .values import HeaderChange, ItemState, Note, OrderHeader, OrderItem, Place, ServiceRecord


def _freeze(obj: Any, *names: str) -> None:
    """Store the named fields as tuples (a door may pass a list; commands stay immutable)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not isinstance(value, tuple):
            object.__setattr__(obj, name, tuple(value))


@dataclass(frozen=True, slots=True)
class OrderRef:
    """How a door names an existing order when it may only know the upstream's reference:
    our id, else the order's external id (the id derives from it, `order_id_for`)."""

    order_id: UUID | None = None
    external_id: str | None = None

    def candidates(self) -> list[UUID]:
        """The ids to try, in order: ours first."""
        found = []
        if self.order_id is not None:
            found.append(self.order_id)
        if self.external_id:
            found.append(order_id_for(self.external_id))
        return found

    def describe(self) -> str:
        """The reference as a person reads it: `id <uuid> or externalId 'x'`."""
        parts = []
        if self.order_id is not None:
            parts.append(f"id {self.order_id}")
        if self.external_id:
            parts.append(f"externalId {self.external_id!r}")
        return " or ".join(parts) or "no id"


Target: TypeAlias = UUID | OrderRef


# ------------------------------------------------------- what the commands share
# The commands on an existing order extend these, each keeping its own name and fields in
# this order (the order, then its own), so `Approve(order_id, note)` reads as before.
@dataclass(frozen=True, slots=True)
class _OnOrder:
    order_id: Target


@dataclass(frozen=True, slots=True)
class _WithNote(_OnOrder):
    note: str | None = None


@dataclass(frozen=True, slots=True)
class _WithReason(_OnOrder):
    reason: str


@dataclass(frozen=True, slots=True)
class _WithOptionalReason(_OnOrder):
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _WithInformation(_OnOrder):
    information: str


# ------------------------------------------------------------------------- creation
@dataclass(frozen=True, slots=True)
class ReceiveOrder:
    """A complete order (from upstream, the TMF641 API, a file): created and submitted in
    one step, into review. Its id derives from the header's external id when there is one,
    else it is `order_id` when given (e.g. derived from an idempotency key), else new. The
    same order again changes nothing (`Outcome.created` is False); other content under
    that id is refused (`ResendConflict`, domain/resend.py)."""

    header: OrderHeader
    items: tuple[OrderItem, ...]
    notes: tuple[Note, ...] = ()
    order_id: UUID | None = None

    def __post_init__(self) -> None:
        _freeze(self, "items", "notes")

    def target_id(self) -> UUID:
        """The id the order gets (a new random one when nothing determines it)."""
        if self.header.external_id:  # the external id decides, whatever door the order used
            return order_id_for(self.header.external_id)
        return self.order_id or order_id_for(None)

    @property
    def deterministic(self) -> bool:
        """Whether the id is determined (the same order again gets the same id)."""
        return bool(self.header.external_id) or self.order_id is not None


@dataclass(frozen=True, slots=True)
class ImportService:
    """A service that existed before the engine, into the inventory (TMF638 import: the
    CLI's `inventory import`, the Kafka import topic). The same service again changes
    nothing (`ServiceOutcome.created` False); other content under its id is refused
    (`ServiceConflict`)."""

    service: ServiceRecord


@dataclass(frozen=True, slots=True)
class DraftOrder:
    """An agent starts capturing an order by hand: the header only, items follow. Its id
    derives from the external id when there is one (taken: a ConcurrencyConflict)."""

    header: OrderHeader
    order_id: UUID | None = None


# ------------------------------------------------------------------- manual capture
@dataclass(frozen=True, slots=True)
class AddLine:
    order_id: Target
    item: OrderItem


@dataclass(frozen=True, slots=True)
class ConfigureLine:
    """Change a draft's item: characteristics to set, `cleared` names to remove, and the
    place, quantity and dependencies when given (None: unchanged)."""

    order_id: Target
    item_id: str
    characteristics: Mapping[str, Any] | None = None
    cleared: tuple[str, ...] = ()
    place: Place | None = None
    quantity: int | None = None
    depends_on: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _freeze(self, "cleared", "depends_on")


@dataclass(frozen=True, slots=True)
class RemoveLine:
    order_id: Target
    item_id: str


@dataclass(frozen=True, slots=True)
class Submit(_OnOrder):
    """A draft into review (every structural problem refuses it)."""


# --------------------------------------------------------------------------- review
@dataclass(frozen=True, slots=True)
class Approve(_WithNote):
    """The reviewer approves the order into fulfilment (four-eyes: not its submitter)."""


@dataclass(frozen=True, slots=True)
class Reject(_WithReason):
    """The reviewer rejects the order (four-eyes: not its submitter)."""


# ----------------------------------------------------------------------- fulfilment
@dataclass(frozen=True, slots=True)
class Hold(_WithReason):
    """Fulfilment puts the order on hold."""


@dataclass(frozen=True, slots=True)
class Resume(_WithNote):
    """Fulfilment resumes an order on hold."""


@dataclass(frozen=True, slots=True)
class RequestInformation(_WithInformation):
    """Fulfilment asks for information the order lacks (it waits for it)."""


@dataclass(frozen=True, slots=True)
class ProvideInformation(_WithInformation):
    """The information fulfilment asked for."""


@dataclass(frozen=True, slots=True)
class ItemStateChange:
    item_id: str
    state: ItemState
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeItemStates:
    """Fulfilment reports the state of one or more items, applied in order, all or none.

    `skip_unchanged` (the Kafka door): an item already in the reported state is left out
    instead of refused (a fulfilment system re-sends the whole order's states); an item the
    order does not have is still refused."""

    order_id: Target
    changes: tuple[ItemStateChange, ...]
    skip_unchanged: bool = False

    def __post_init__(self) -> None:
        # (item_id, state, reason) tuples are taken too (the Kafka envelope's shape).
        object.__setattr__(
            self,
            "changes",
            tuple(
                c if isinstance(c, ItemStateChange) else ItemStateChange(*c) for c in self.changes
            ),
        )

    @classmethod
    def one(
        cls, order_id: Target, item_id: str, state: ItemState, reason: str | None = None
    ) -> ChangeItemStates:
        return cls(order_id, (ItemStateChange(item_id, state, reason),))


@dataclass(frozen=True, slots=True)
class ReachPointOfNoReturn(_WithNote):
    """Fulfilment records that the order passed its point of no return (no revision or
    cancellation from then on)."""


# ------------------------------------------------------------------------- revision
@dataclass(frozen=True, slots=True)
class Revise:
    """A revision: items merged by id, items removed, header attributes changed, and new
    notes (the TMF641 PATCH's `note`), all in one transaction.

    With notes, the order is revised only when items, removals or header fields are given
    (a PATCH that only adds notes); without notes, a revision that changes nothing is
    refused (InvalidCommand)."""

    order_id: Target
    items: tuple[OrderItem, ...] = ()
    removed_item_ids: tuple[str, ...] = ()
    header: HeaderChange | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, "items", "removed_item_ids", "notes")


# ------------------------------------------------------------------------ proposals
@dataclass(frozen=True, slots=True)
class ApproveProposal(_WithNote):
    """A second person approves the waiting proposal (a revision of an approved order):
    re-validated against the current items, then applied (four-eyes: not its proposer)."""


@dataclass(frozen=True, slots=True)
class RefuseProposal(_WithReason):
    """A second person refuses the waiting proposal (four-eyes: not its proposer)."""


@dataclass(frozen=True, slots=True)
class WithdrawProposal(_WithOptionalReason):
    """Its proposer (or a manager) takes the waiting proposal back."""


# --------------------------------------------------------------- correct and resubmit
@dataclass(frozen=True, slots=True)
class Resubmit:
    """Correct and resubmit a rejected order: a new order prefilled from it, corrected by
    `header` / `items` (merged by id) / `removed_item_ids`, with its own `external_id`
    (None: none), linked both ways by `orderRelationship` (`resubmits` /
    `resubmittedAs`). `submit`: into review at once (an upstream system sends the
    corrected order); else a draft the agent corrects further and submits.
    `Outcome.order` is the NEW order (created)."""

    order_id: Target
    external_id: str | None = None
    header: HeaderChange | None = None
    items: tuple[OrderItem, ...] = ()
    removed_item_ids: tuple[str, ...] = ()
    submit: bool = False

    def __post_init__(self) -> None:
        _freeze(self, "items", "removed_item_ids")


# --------------------------------------------------------------------- cancellation
@dataclass(frozen=True, slots=True)
class RequestCancellation:
    """Ask for the order's cancellation (a manager decides). `request_id` names the
    request (the Kafka door derives it from the message's eventId); new when None.
    `Outcome.request_id` is the request's id."""

    order_id: Target
    reason: str | None = None
    requested_date: datetime | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApproveCancellation(_WithNote):
    """A manager approves the requested cancellation."""


@dataclass(frozen=True, slots=True)
class DenyCancellation(_WithReason):
    """A manager denies the requested cancellation."""


@dataclass(frozen=True, slots=True)
class RequestCancellationInformation(_WithInformation):
    """A manager asks the cancellation's requester for information (four-eyes: not the
    requester; one question at a time); the order stays assessingCancellation."""


@dataclass(frozen=True, slots=True)
class ProvideCancellationInformation(_WithInformation):
    """The cancellation's requester (or an operator) answers the waiting question; the
    cancellation is assessed again."""


@dataclass(frozen=True, slots=True)
class Cancel(_WithOptionalReason):
    """Carry out an approved cancellation, or cancel the order directly."""


# ---------------------------------------------------------------- notes and deletion
@dataclass(frozen=True, slots=True)
class AddNote:
    order_id: Target
    text: str


@dataclass(frozen=True, slots=True)
class Delete(_WithOptionalReason):
    """Discard a draft or archive a final order; its history stays for auditors."""


CreationCommand: TypeAlias = ReceiveOrder | DraftOrder
OrderCommand: TypeAlias = (
    AddLine
    | ConfigureLine
    | RemoveLine
    | Submit
    | Approve
    | Reject
    | Hold
    | Resume
    | RequestInformation
    | ProvideInformation
    | ChangeItemStates
    | ReachPointOfNoReturn
    | Revise
    | RequestCancellation
    | ApproveCancellation
    | DenyCancellation
    | RequestCancellationInformation
    | ProvideCancellationInformation
    | Cancel
    | AddNote
    | Delete
    | ApproveProposal
    | RefuseProposal
    | WithdrawProposal
    | Resubmit
)
"""The commands on an existing order (each has `order_id: Target`)."""

ServiceCommand: TypeAlias = ImportService
"""The commands on the inventory's services (domain/service.py)."""

Command: TypeAlias = CreationCommand | OrderCommand | ServiceCommand
"""Every command `ServiceOrders.handle` takes."""

COMMANDS: tuple[type[Any], ...] = get_args(Command)

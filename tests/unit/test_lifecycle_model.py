"""Model-based test of the ServiceOrder lifecycle.

A hypothesis state machine drives random command sequences (legal and illegal, with the
right and the wrong roles) through one `ServiceOrder` and checks every outcome against an
independent model of the TMF641 lifecycle written out below. The model deliberately does
not import `domain/lifecycle.py`: its tables are transcribed from the TMF641 diagram.

The model follows issue 17's rules too (docs/lifecycle.md, "Four eyes"): nobody decides
what they contributed to (drafted, added, configured, removed a line, submitted, revised),
what they proposed or the cancellation they requested; a revision of an approved order is
a proposal, applied only when a second person approves it (one at a time, none past the
point of no return, optionally holding the order while it waits); a direct cancellation is
fulfilment's exit from held or pending only.

After every step the order is rebuilt from all of its events (directly, and after a round
trip of every event through the JSON mapper) and its hash chain is verified.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from uuid import UUID

import pytest
from builders import item as build_item
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.chain import GENESIS
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.errors import (
    DomainError,
    IllegalTransition,
    InvalidCommand,
    NotPermitted,
    UnknownItem,
    ValidationFailed,
)
from serviceorders.domain.order import RESUBMITTED_AS, ServiceOrder
from serviceorders.domain.policy import Policy
from serviceorders.domain.snapshot import OrderSnapshot
from serviceorders.domain.values import (
    CommandContext,
    HeaderChange,
    ItemState,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    Role,
)

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()
MAPPER = PydanticMapper(transcoder=OrjsonTranscoder())

# --------------------------------------------------------------------------------------
# The independent model: TMF641 ServiceOrder states, written as plain strings.
# --------------------------------------------------------------------------------------
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

FINAL_STATES = {REJECTED, CANCELLED, COMPLETED, FAILED, PARTIAL}
ALL_STATES = {
    DRAFT,
    ACKNOWLEDGED,
    IN_PROGRESS,
    PENDING,
    HELD,
    ASSESSING_CANCELLATION,
    PENDING_CANCELLATION,
} | FINAL_STATES
WORKING = {IN_PROGRESS, PENDING, HELD}
CANCELLABLE = {ACKNOWLEDGED} | WORKING

# command -> the states it may be given in (the target is applied by each rule below).
ALLOWED_IN: dict[str, set[str]] = {
    "add_line": {DRAFT},
    "configure_line": {DRAFT},
    "remove_line": {DRAFT},
    "submit": {DRAFT},
    "approve": {ACKNOWLEDGED},
    "reject": {ACKNOWLEDGED},
    "hold": {IN_PROGRESS},
    "resume": {HELD},
    "request_information": {IN_PROGRESS},
    "provide_information": {PENDING},
    "change_item_state": {IN_PROGRESS},
    "reach_point_of_no_return": WORKING,
    "revise": CANCELLABLE,
    "request_cancellation": CANCELLABLE,
    "approve_cancellation": {ASSESSING_CANCELLATION},
    "deny_cancellation": {ASSESSING_CANCELLATION},
    # Issue 19: a decider asks the cancellation's requester for information; they answer.
    "request_cancellation_information": {ASSESSING_CANCELLATION},
    "provide_cancellation_information": {ASSESSING_CANCELLATION},
    # Carrying out an approved cancellation, or fulfilment's exits from held / pending
    # (DIRECT_CANCEL below); from acknowledged / inProgress a cancellation is requested.
    "cancel": {HELD, PENDING, PENDING_CANCELLATION},
    "add_note": ALL_STATES,
    # The project's own addition to TMF641: a draft may be discarded and a final order
    # archived ("deleted"); after that the order takes no command at all, not even a note.
    "delete": {DRAFT} | FINAL_STATES,
    # Issue 17: a revision of an approved order waits as a proposal for a second person.
    "approve_proposal": WORKING,
    "refuse_proposal": WORKING,
    "withdraw_proposal": WORKING,
    # Correct and resubmit: a rejected order is linked to the new order correcting it.
    "resubmit": {REJECTED},
}
# Final states allow nothing but a note (and being archived; a rejected order, resubmitted).
assert all(
    s not in states
    for s in FINAL_STATES
    for cmd, states in ALLOWED_IN.items()
    if cmd not in ("add_note", "delete", "resubmit")
)
PROPOSAL_COMMANDS = {"approve_proposal", "refuse_proposal", "withdraw_proposal"}

BLOCKED_AFTER_POINT_OF_NO_RETURN = {"revise", "request_cancellation", "cancel"}

# Item states (TMF641 ServiceOrderItemStateType subset).
ITEM_MOVES: dict[str, set[str]] = {
    "acknowledged": {"inProgress", "pending", "held", "completed", "failed", "cancelled"},
    "inProgress": {"pending", "held", "completed", "failed", "cancelled"},
    "pending": {"inProgress", "held", "failed", "cancelled"},
    "held": {"inProgress", "pending", "failed", "cancelled"},
}
FINAL_ITEM_STATES = {"completed", "failed", "cancelled", "rejected", "partial"}
ITEM_STATE_NAMES = [
    "acknowledged",
    "inProgress",
    "pending",
    "held",
    "completed",
    "failed",
    "cancelled",
    "rejected",
    # v4.1 (issue 19): set by the engine only (the cancellation's mirror; a parent item's
    # outcome), never reported by fulfilment
    "assessingCancellation",
    "pendingCancellation",
    "partial",
]
NEEDS_DEPENDENCIES_COMPLETED = {"inProgress", "completed"}
OUTCOME_EVENT = {
    COMPLETED: "OrderCompleted",
    FAILED: "OrderFailed",
    PARTIAL: "OrderPartiallyCompleted",
    CANCELLED: "OrderCancelled",
}

# Who may do what.
CAPTURE = {"draft", "add_line", "configure_line", "remove_line", "submit", "delete", "resubmit"}
REQUESTER = {
    "receive",
    "revise",
    "withdraw_proposal",
    "resubmit",
    "request_cancellation",
    "provide_cancellation_information",
    "provide_information",
    "add_note",
}
DECISIONS = {
    "approve",
    "reject",
    "approve_cancellation",
    "deny_cancellation",
    "request_cancellation_information",
    "approve_proposal",
    "refuse_proposal",
}
FULFILMENT = {
    "hold",
    "resume",
    "request_information",
    "provide_information",
    "change_item_state",
    "reach_point_of_no_return",
    "cancel",
    "add_note",
}
EVERYTHING = CAPTURE | REQUESTER | DECISIONS | FULFILMENT
MAY: dict[Role, set[str]] = {
    Role.AGENT: CAPTURE | REQUESTER,
    Role.UPSTREAM: REQUESTER,
    Role.MANAGER: CAPTURE | REQUESTER | DECISIONS | {"hold", "resume", "cancel"},
    Role.FULFILMENT: FULFILMENT,
    Role.OPERATOR: EVERYTHING,
    Role.AUDITOR: set(),
}
# Who may cancel an order directly (not carrying out an approved request).
DIRECT_CANCEL = {Role.FULFILMENT}
# Besides its proposer, who may withdraw a proposal.
OVERSEERS = {Role.MANAGER, Role.OPERATOR}

ACTORS: dict[str, Role] = {
    "agent-1": Role.AGENT,
    "upstream-1": Role.UPSTREAM,
    "manager-1": Role.MANAGER,
    "manager-2": Role.MANAGER,
    "fulfil-1": Role.FULFILMENT,
    "operator-1": Role.OPERATOR,
    "operator-2": Role.OPERATOR,
    "auditor-1": Role.AUDITOR,
}


def actors_for(command: str) -> st.SearchStrategy[str]:
    """Half the time an actor whose role fits, otherwise anyone (often the wrong role)."""
    fitting = sorted(a for a, role in ACTORS.items() if command in MAY[role])
    return st.one_of(st.sampled_from(fitting), st.sampled_from(sorted(ACTORS)))


@cache
def ctx_of(actor_id: str) -> CommandContext:
    return CommandContext.for_actor(actor_id, ACTORS[actor_id])


def outcome(item_states: list[str]) -> str | None:
    if not item_states or any(s not in FINAL_ITEM_STATES for s in item_states):
        return None
    counted = [s for s in item_states if s != "cancelled"]
    if not counted:
        return CANCELLED
    if all(s == "completed" for s in counted):
        return COMPLETED
    if all(s == "failed" for s in counted):
        return FAILED
    return PARTIAL


# Items: every item is internet access; "b" needs "a", "c" needs "a" and "b".
DEPENDS_ON = {"a": (), "b": ("a",), "c": ("a", "b"), "d": ()}
ITEM_IDS = sorted(DEPENDS_ON)


def make_item(item_id: str, bandwidth: int = 100) -> OrderItem:
    return build_item(
        item_id,
        "internet-access",
        characteristics={"bandwidthMbps": bandwidth, "accessType": "fibre"},
        place=Place(id=f"site-{item_id}", name=f"Site {item_id.upper()}"),
        depends_on=DEPENDS_ON[item_id],
    )


HEADER = OrderHeader(
    description="model-based test order",
    priority="2",
    requested_start_date=date(2030, 1, 15),
    requested_completion_date=datetime(2030, 2, 1, 12, 30, tzinfo=UTC),
    related_parties=(Party(id="cust-1", name="ACME"),),
)

# Texts: blank ones are refused where a reason or text is required.
REASONS = st.sampled_from(
    [
        "waiting for the site survey",
        "customer asked",
        "access to the building",
        "  spare part on order ",
        "",
        "   ",
    ]
)
# Bandwidths: 100 is valid; 123 is not an allowed value (a flag, not a refusal).
BANDWIDTHS = st.sampled_from([100, 200, 123])


def structurally_valid(item_ids: set[str]) -> bool:
    return bool(item_ids) and all(d in item_ids for i in item_ids for d in DEPENDS_ON[i])


# Every command rule is registered twice: as a rule enabled only where the model says the
# order's state allows the command (so that random runs get deep into the lifecycle), and
# inside `any_command_in_any_state`, which fires any command in whatever state (and so
# covers the illegal transitions). Roles and arguments are random in both.
COMMAND_RULES: dict[str, dict[str, st.SearchStrategy]] = {}


def command(name: str, ends_the_order: bool = False, **arguments: st.SearchStrategy):
    """Register a command rule. Commands that quickly end an order's life (reject, cancel,
    request cancellation) only get their state-gated rule once the order has lived
    `self.patience` steps, so that many runs get deep into fulfilment first."""

    def enabled(self: OrderLifecycle) -> bool:
        return self.state_allows(name) and (not ends_the_order or self.steps >= self.patience)

    def decorate(method):
        COMMAND_RULES[method.__name__] = arguments
        return precondition(enabled)(rule(**arguments)(method))

    return decorate


class OrderLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.order: ServiceOrder | None = None
        self.events: list = []  # every event of the order, as collected
        self.reloaded: list = []  # the same, each after a round trip through the mapper
        # the model
        self.state: str | None = None
        self.items: dict[str, str | None] = {}
        self.prior_state: str | None = None
        self.point_of_no_return = False
        self.deleted = False
        self.submitter: str | None = None
        # four-eyes: who shaped the content before the decision, who proposed the waiting
        # revision, who requested the cancellation
        self.contributors: set[str] = set()
        self.proposer: str | None = None
        self.proposal: tuple[str, str] | None = None  # ("replace" | "remove" | "header", id)
        self.held_for_proposal = False  # held by the hold policy while the proposal waits
        self.hold_policy = False
        self.requester: str | None = None
        # issue 19: the item states a denied cancellation restores; a question waiting
        self.items_before: dict[str, str | None] = {}
        self.question = False
        self.resubmitted = 0
        self.steps = 0
        self.patience = 0
        self.snapshot: OrderSnapshot | None = None  # taken once the order has
        self.snapshot_at = 0  # this many events
        self.probed: set = set()
        self.is_probe = False

    # ------------------------------------------------------------------ helpers
    def state_allows(self, command_name: str) -> bool:
        return (
            not self.deleted
            and self.state in ALLOWED_IN[command_name]
            and not (self.point_of_no_return and command_name in BLOCKED_AFTER_POINT_OF_NO_RETURN)
            and not (command_name in PROPOSAL_COMMANDS and self.proposer is None)
        )

    @rule(data=st.data())
    def any_command_in_any_state(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(COMMAND_RULES)), label="command")
        arguments = data.draw(st.fixed_dictionaries(COMMAND_RULES[name]), label="arguments")
        getattr(self, name)(**arguments)

    def record(self, new_events: list) -> None:
        """Keep the new events, as produced and as read back after storing them as JSON."""
        stored = [MAPPER.to_stored_event(e) for e in new_events]
        self.events.extend(new_events)
        self.reloaded.extend(MAPPER.to_domain_event(s) for s in stored)

    def refusal(
        self, command: str, actor: str, text: str | None = None
    ) -> type[DomainError] | None:
        """The refusal every command shares: role, then deletion, then state, then point
        of no return; then, for a command that takes a text (a reason, a note, the
        information), a blank one."""
        if command not in MAY[ACTORS[actor]]:
            return NotPermitted
        if self.deleted or self.state not in ALLOWED_IN[command]:
            return IllegalTransition
        if self.point_of_no_return and command in BLOCKED_AFTER_POINT_OF_NO_RETURN:
            return IllegalTransition
        if text is not None and not text.strip():
            return InvalidCommand
        return None

    def attempt(
        self,
        command: str,
        refused: type[DomainError] | None,
        call,
        expected_events,
        apply_model=lambda: None,
    ) -> None:
        """Run `call`; either it is refused with `refused` and nothing changes, or it emits
        exactly `expected_events` (class names) and the order matches the model."""
        assert self.order is not None
        if not self.is_probe:
            event(f"{command}: {'refused ' + refused.__name__ if refused else 'applied'}")
        self.steps += 1
        before = dict(self.order.__dict__)
        version = self.order.version
        if refused is not None:
            with pytest.raises(DomainError) as info:
                call()
            assert type(info.value) is refused, (command, info.value)
            assert self.order.version == version
            assert self.order.__dict__ == before
            assert self.order.collect_events() == []
        else:
            call()
            new_events = self.order.collect_events()
            expected = expected_events() if callable(expected_events) else expected_events
            apply_model()
            assert [type(e).__name__ for e in new_events] == expected, command
            for e in new_events:  # a decision records the version it was taken on
                if getattr(e, "decision", None) is not None:
                    assert e.decision.version == version
                    assert len(e.decision.content_hash) == 64
            self.record(new_events)
        assert self.order.state == self.state
        assert self.order.version == len(self.events)

    def settle(self) -> list[str]:
        """The order is in progress: once every item is final, it takes the outcome."""
        final = outcome(list(self.items.values()))  # type: ignore[arg-type]
        if final is None:
            return []
        self.state = final
        return [*self.withdraw_waiting(), OUTCOME_EVENT[final]]

    def withdraw_waiting(self) -> list[str]:
        """The order ends: a proposal still waiting is withdrawn."""
        if self.proposer is None:
            return []
        self.proposer = self.proposal = None
        return ["ProposalWithdrawn"]

    # ---------------------------------------------------------------- creation
    @initialize(
        how=st.sampled_from(["receive", "draft", "receive"]),
        creator=st.sampled_from(sorted(ACTORS)),
        item_ids=st.sampled_from(
            [
                ("a",),
                ("a", "b"),
                ("a", "b", "c"),
                ("a", "d"),
                ("a", "b", "c", "d"),
                ("b",),
                ("c", "d"),
            ]
        ),
        bandwidth=BANDWIDTHS,
        patience=st.sampled_from([0, 8, 16, 24, 99]),
        snapshot_at=st.sampled_from([2, 3, 5, 8, 13]),
        hold_policy=st.booleans(),
    )
    def create(
        self,
        how: str,
        creator: str,
        item_ids: tuple[str, ...],
        bandwidth: int,
        patience: int,
        snapshot_at: int,
        hold_policy: bool,
    ) -> None:
        self.patience, self.snapshot_at = patience, snapshot_at
        self.hold_policy = hold_policy
        items = [make_item(i, bandwidth) for i in item_ids]
        command = "receive" if how == "receive" else "draft"

        def create_as(actor: str) -> ServiceOrder:
            if how == "receive":
                return ServiceOrder.receive(ctx_of(actor), HEADER, items, CATALOG)
            return ServiceOrder.draft(ctx_of(actor), HEADER)

        if command not in MAY[ACTORS[creator]]:
            with pytest.raises(NotPermitted):
                create_as(creator)
            creator = "operator-1"
        if how == "receive" and not structurally_valid(set(item_ids)):
            with pytest.raises(ValidationFailed) as info:
                create_as(creator)
            assert {p.code for p in info.value.problems} == {"unknown_dependency"}
            items = [make_item("a", bandwidth)]
            item_ids = ("a",)
        self.order = create_as(creator)
        new_events = self.order.collect_events()
        if how == "receive":
            assert [type(e).__name__ for e in new_events] == ["OrderDrafted", "OrderSubmitted"]
            self.state = ACKNOWLEDGED
            self.items = dict.fromkeys(item_ids, "acknowledged")
            self.submitter = creator
            flagged = bandwidth not in (100, 200)
            assert bool(new_events[1].flags) is flagged
        else:
            assert [type(e).__name__ for e in new_events] == ["OrderDrafted"]
            self.state = DRAFT
        self.contributors = {creator}
        self.record(new_events)
        assert self.order.state == self.state

    # ---------------------------------------------------------- manual capture
    @command(
        "add_line",
        actor=actors_for("add_line"),
        item_id=st.sampled_from(ITEM_IDS),
        bandwidth=BANDWIDTHS,
    )
    def add_line(self, actor: str, item_id: str, bandwidth: int) -> None:
        refused = self.refusal("add_line", actor)
        if refused is None and item_id in self.items:
            refused = InvalidCommand

        def model() -> None:
            self.items[item_id] = None
            self.contributors.add(actor)

        self.attempt(
            "add_line",
            refused,
            lambda: self.order.add_line(ctx_of(actor), make_item(item_id, bandwidth)),
            ["LineAdded"],
            model,
        )

    @command(
        "configure_line",
        actor=actors_for("configure_line"),
        item_id=st.sampled_from([*ITEM_IDS, "zz"]),
        bandwidth=BANDWIDTHS,
    )
    def configure_line(self, actor: str, item_id: str, bandwidth: int) -> None:
        refused = self.refusal("configure_line", actor)
        if refused is None and item_id not in self.items:
            refused = UnknownItem
        self.attempt(
            "configure_line",
            refused,
            lambda: self.order.configure_line(ctx_of(actor), item_id, {"bandwidthMbps": bandwidth}),
            ["LineConfigured"],
            lambda: self.contributors.add(actor),
        )
        if refused is None:
            assert self.order.items[item_id].characteristics["bandwidthMbps"] == bandwidth

    @command(
        "remove_line", actor=actors_for("remove_line"), item_id=st.sampled_from([*ITEM_IDS, "zz"])
    )
    def remove_line(self, actor: str, item_id: str) -> None:
        refused = self.refusal("remove_line", actor)
        if refused is None and item_id not in self.items:
            refused = UnknownItem

        def model() -> None:
            del self.items[item_id]
            self.contributors.add(actor)

        self.attempt(
            "remove_line",
            refused,
            lambda: self.order.remove_line(ctx_of(actor), item_id),
            ["LineRemoved"],
            model,
        )

    @command("submit", actor=actors_for("submit"))
    def submit(self, actor: str) -> None:
        refused = self.refusal("submit", actor)
        if refused is None and not structurally_valid(set(self.items)):
            refused = ValidationFailed

        def model() -> None:
            self.state = ACKNOWLEDGED
            self.items = dict.fromkeys(self.items, "acknowledged")
            self.submitter = actor
            self.contributors.add(actor)

        self.attempt(
            "submit",
            refused,
            lambda: self.order.submit(ctx_of(actor), CATALOG),
            ["OrderSubmitted"],
            model,
        )

    # Duplicates of the rules that move an order forward, under their own names, so that
    # hypothesis' swarm testing (which switches some rules off for a whole run) seldom
    # leaves a run with no way forward.
    @command(
        "add_line",
        actor=st.sampled_from(["agent-1", "manager-1"]),
        pick=st.integers(0, 3),
        bandwidth=BANDWIDTHS,
    )
    def add_a_missing_line(self, actor: str, pick: int, bandwidth: int) -> None:
        missing = [i for i in ITEM_IDS if i not in self.items] or ITEM_IDS
        self.add_line(actor, missing[pick % len(missing)], bandwidth)

    @command("submit", actor=st.sampled_from(["agent-1", "manager-1", "operator-1"]))
    def submit_the_draft(self, actor: str) -> None:
        self.submit(actor)

    # ------------------------------------------------------------------ review
    def decision_refusal(
        self, command: str, actor: str, four_eyes: bool
    ) -> type[DomainError] | None:
        refused = self.refusal(command, actor)
        if refused is None and four_eyes and actor in self.contributors:
            refused = NotPermitted  # whoever shaped the content may not decide it
        return refused

    @command("approve", actor=actors_for("approve"), four_eyes=st.booleans())
    def approve(self, actor: str, four_eyes: bool) -> None:
        def model() -> None:
            self.state = IN_PROGRESS

        self.attempt(
            "approve",
            self.decision_refusal("approve", actor, four_eyes),
            lambda: self.order.approve(ctx_of(actor), four_eyes=four_eyes),
            ["OrderApproved"],
            model,
        )

    @command("approve", actor=st.sampled_from(["manager-2", "operator-2"]), four_eyes=st.booleans())
    def approve_as_reviewer(self, actor: str, four_eyes: bool) -> None:
        self.approve(actor, four_eyes)

    @command(
        "reject",
        ends_the_order=True,
        actor=actors_for("reject"),
        four_eyes=st.booleans(),
        reason=REASONS,
    )
    def reject(self, actor: str, four_eyes: bool, reason: str) -> None:
        refused = self.decision_refusal("reject", actor, four_eyes)
        if refused is None and not reason.strip():
            refused = InvalidCommand

        def model() -> None:
            self.state = REJECTED
            self.items = dict.fromkeys(self.items, "rejected")

        self.attempt(
            "reject",
            refused,
            lambda: self.order.reject(ctx_of(actor), reason, four_eyes=four_eyes),
            ["OrderRejected"],
            model,
        )
        if refused is None:
            assert self.order.rejection_reason == reason.strip()

    # -------------------------------------------------------------- fulfilment
    @command("hold", actor=actors_for("hold"), reason=REASONS)
    def hold(self, actor: str, reason: str) -> None:
        refused = self.refusal("hold", actor, reason)

        def model() -> None:
            self.state = HELD
            self.held_for_proposal = False

        self.attempt(
            "hold", refused, lambda: self.order.hold(ctx_of(actor), reason), ["OrderHeld"], model
        )

    @command("resume", actor=actors_for("resume"))
    def resume(self, actor: str) -> None:
        def expected() -> list[str]:
            self.state = IN_PROGRESS
            self.held_for_proposal = False
            return ["OrderResumed", *self.settle()]

        refused = self.refusal("resume", actor)
        if refused is None and self.held_for_proposal:  # lifted by the proposal's decision
            refused = IllegalTransition
        self.attempt(
            "resume",
            refused,
            lambda: self.order.resume(ctx_of(actor)),
            expected,
        )

    @command("request_information", actor=actors_for("request_information"), text=REASONS)
    def request_information(self, actor: str, text: str) -> None:
        refused = self.refusal("request_information", actor, text)

        def model() -> None:
            self.state = PENDING

        self.attempt(
            "request_information",
            refused,
            lambda: self.order.request_information(ctx_of(actor), text),
            ["InformationRequested"],
            model,
        )

    @command("provide_information", actor=actors_for("provide_information"), text=REASONS)
    def provide_information(self, actor: str, text: str) -> None:
        refused = self.refusal("provide_information", actor, text)

        def expected() -> list[str]:
            self.state = IN_PROGRESS
            return ["InformationProvided", *self.settle()]

        self.attempt(
            "provide_information",
            refused,
            lambda: self.order.provide_information(ctx_of(actor), text),
            expected,
        )

    def item_refusal(self, actor: str, item_id: str, target: str) -> type[DomainError] | None:
        refused = self.refusal("change_item_state", actor)
        if refused is not None:
            return refused
        if item_id not in self.items:
            return UnknownItem
        if target not in ITEM_MOVES.get(self.items[item_id] or "", set()):
            return IllegalTransition
        if target in NEEDS_DEPENDENCIES_COMPLETED and any(
            self.items[d] != "completed" for d in DEPENDS_ON[item_id]
        ):
            return IllegalTransition
        return None

    def change_item(self, actor: str, item_id: str, target: str) -> None:
        def expected() -> list[str]:
            self.items[item_id] = target
            return ["ItemStateChanged", *self.settle()]

        self.attempt(
            "change_item_state",
            self.item_refusal(actor, item_id, target),
            lambda: self.order.change_item_state(ctx_of(actor), item_id, ItemState(target)),
            expected,
        )

    @command(
        "change_item_state",
        actor=actors_for("change_item_state"),
        item_id=st.sampled_from([*ITEM_IDS, "zz"]),
        to=st.sampled_from(ITEM_STATE_NAMES),
    )
    def change_item_state(self, actor: str, item_id: str, to: str) -> None:
        self.change_item(actor, item_id, to)

    @command(
        "change_item_state",
        actor=st.sampled_from(["fulfil-1", "operator-2"]),
        pick=st.integers(0, 3),
        to=st.sampled_from(
            [
                "inProgress",
                "completed",
                "completed",
                "completed",
                "pending",
                "held",
                "failed",
                "cancelled",
            ]
        ),
    )
    def progress_item(self, actor: str, pick: int, to: str) -> None:
        """Fulfilment moving an open item forward, so that orders often reach an outcome."""
        open_items = sorted(k for k, v in self.items.items() if v not in FINAL_ITEM_STATES)
        self.change_item(actor, open_items[pick % len(open_items)] if open_items else "zz", to)

    @command(
        "change_item_state",
        actor=st.sampled_from(["fulfil-1", "operator-2"]),
        pick=st.integers(0, 3),
        to=st.sampled_from(["completed", "completed", "failed", "cancelled"]),
    )
    def progress_another_item(self, actor: str, pick: int, to: str) -> None:
        self.progress_item(actor, pick, to)

    @command("reach_point_of_no_return", actor=actors_for("reach_point_of_no_return"))
    def reach_point_of_no_return(self, actor: str) -> None:
        refused = self.refusal("reach_point_of_no_return", actor)
        if refused is None and (self.proposer is not None or self.point_of_no_return):
            refused = IllegalTransition  # a proposal waits, or it has passed it already

        def model() -> None:
            self.point_of_no_return = True

        self.attempt(
            "reach_point_of_no_return",
            refused,
            lambda: self.order.reach_point_of_no_return(ctx_of(actor)),
            ["PointOfNoReturnReached"],
            model,
        )

    # ---------------------------------------------------------------- revision
    def revise_as(
        self, actor: str, refused: type[DomainError] | None, change: tuple[str, str], call
    ) -> type[DomainError] | None:
        """A revision: applied before approval; after it, a proposal (one at a time) that
        leaves the items as they are and, under the hold policy, holds an order in
        progress while it waits. `change` is what the proposal would do. Returns the
        refusal expected (and seen)."""
        if refused is None and self.state != ACKNOWLEDGED and self.proposer is not None:
            refused = IllegalTransition  # one proposal at a time

        def expected() -> list[str]:
            if self.state == ACKNOWLEDGED:
                self.contributors.add(actor)
                self.apply_change(change)
                return ["OrderRevised"]
            self.proposer, self.proposal = actor, change
            if self.hold_policy and self.state == IN_PROGRESS:
                self.state, self.held_for_proposal = HELD, True
                return ["RevisionProposed", "OrderHeld"]
            return ["RevisionProposed"]

        self.attempt(
            "revise",
            refused,
            lambda: call(Policy(hold_on_proposal=self.hold_policy)),
            expected,
        )
        return refused

    def apply_change(self, change: tuple[str, str]) -> None:
        kind, item_id = change
        if kind == "replace":
            self.items[item_id] = "acknowledged"
        elif kind == "remove":
            if self.state == ACKNOWLEDGED:
                del self.items[item_id]  # not yet approved: the item simply goes
            else:
                self.items[item_id] = "cancelled"  # approved: it stays, cancelled

    @command("revise", actor=actors_for("revise"), item_id=st.sampled_from([*ITEM_IDS, "zz"]))
    def revise_remove_item(self, actor: str, item_id: str) -> None:
        refused = self.refusal("revise", actor)
        if refused is None:
            if item_id not in self.items:
                refused = UnknownItem
            elif self.items[item_id] in FINAL_ITEM_STATES:
                refused = IllegalTransition
            elif not structurally_valid(set(self.items) - {item_id}):
                refused = ValidationFailed
        self.revise_as(
            actor,
            refused,
            ("remove", item_id),
            lambda policy: self.order.revise(
                ctx_of(actor), CATALOG, removed_item_ids=[item_id], policy=policy
            ),
        )

    @command("revise", actor=st.sampled_from(["upstream-1", "agent-1"]), pick=st.integers(0, 3))
    def revise_remove_an_open_item(self, actor: str, pick: int) -> None:
        open_items = sorted(k for k, v in self.items.items() if v not in FINAL_ITEM_STATES)
        self.revise_remove_item(actor, open_items[pick % len(open_items)] if open_items else "zz")

    @command(
        "revise",
        actor=actors_for("revise"),
        item_id=st.sampled_from(ITEM_IDS),
        bandwidth=BANDWIDTHS,
    )
    def revise_replace_item(self, actor: str, item_id: str, bandwidth: int) -> None:
        refused = self.refusal("revise", actor)
        if refused is None:
            if self.items.get(item_id) in FINAL_ITEM_STATES:
                refused = IllegalTransition
            elif not structurally_valid(set(self.items) | {item_id}):
                refused = ValidationFailed
        proposed = self.state != ACKNOWLEDGED
        refused = self.revise_as(
            actor,
            refused,
            ("replace", item_id),
            lambda policy: self.order.revise(
                ctx_of(actor), CATALOG, items=[make_item(item_id, bandwidth)], policy=policy
            ),
        )
        if refused is None and proposed:  # the items wait in the proposal
            assert self.order.proposal is not None
            [item] = self.order.proposal.items
            assert item.characteristics["bandwidthMbps"] == bandwidth
        elif refused is None:
            assert self.order.items[item_id].characteristics["bandwidthMbps"] == bandwidth

    @command("revise", actor=actors_for("revise"), change_header=st.booleans())
    def revise_header(self, actor: str, change_header: bool) -> None:
        refused = self.refusal("revise", actor)
        if refused is None and not change_header:
            refused = InvalidCommand  # a revision that changes nothing
        header = HeaderChange(priority="1") if change_header else None
        applied_before = self.state == ACKNOWLEDGED
        refused = self.revise_as(
            actor,
            refused,
            ("header", ""),
            lambda policy: self.order.revise(ctx_of(actor), CATALOG, header=header, policy=policy),
        )
        if refused is None and applied_before:
            assert self.order.header.priority == "1"

    # --------------------------------------------------------------- proposals
    def proposal_refusal(
        self, command: str, actor: str, four_eyes: bool
    ) -> type[DomainError] | None:
        refused = self.refusal(command, actor)
        if refused is None and self.proposer is None:
            refused = IllegalTransition  # no proposal waits
        if refused is None and four_eyes and actor == self.proposer:
            refused = NotPermitted  # the proposer may not decide their own proposal
        return refused

    def after_proposal(self) -> list[str]:
        """The proposal is decided or withdrawn: the order resumes if it held it."""
        self.proposer = self.proposal = None
        if self.state == HELD and self.held_for_proposal:
            self.state, self.held_for_proposal = IN_PROGRESS, False
            return ["OrderResumed"]
        return []

    @command("approve_proposal", actor=actors_for("approve_proposal"), four_eyes=st.booleans())
    def approve_proposal(self, actor: str, four_eyes: bool) -> None:
        refused = self.proposal_refusal("approve_proposal", actor, four_eyes)
        if refused is None and self.proposal is not None:
            _kind, item_id = self.proposal
            if self.items.get(item_id) in FINAL_ITEM_STATES:
                refused = IllegalTransition  # re-validated: the item is final meanwhile

        def expected() -> list[str]:
            assert self.proposal is not None
            self.apply_change(self.proposal)
            resumed = self.after_proposal()
            settled = self.settle() if self.state == IN_PROGRESS else []
            return ["ProposalApproved", *resumed, *settled]

        header_proposed = self.proposal is not None and self.proposal[0] == "header"
        self.attempt(
            "approve_proposal",
            refused,
            lambda: self.order.approve_proposal(ctx_of(actor), CATALOG, four_eyes=four_eyes),
            expected,
        )
        if refused is None and header_proposed:
            assert self.order.header.priority == "1"

    @command("approve_proposal", actor=st.sampled_from(["manager-2", "operator-2"]))
    def approve_proposal_as_reviewer(self, actor: str) -> None:
        self.approve_proposal(actor, True)

    @command(
        "refuse_proposal",
        actor=actors_for("refuse_proposal"),
        four_eyes=st.booleans(),
        reason=REASONS,
    )
    def refuse_proposal(self, actor: str, four_eyes: bool, reason: str) -> None:
        refused = self.proposal_refusal("refuse_proposal", actor, four_eyes)
        if refused is None and not reason.strip():
            refused = InvalidCommand
        self.attempt(
            "refuse_proposal",
            refused,
            lambda: self.order.refuse_proposal(ctx_of(actor), reason, four_eyes=four_eyes),
            lambda: ["ProposalRefused", *self.after_proposal()],
        )

    @command("withdraw_proposal", actor=actors_for("withdraw_proposal"))
    def withdraw_proposal(self, actor: str) -> None:
        refused = self.proposal_refusal("withdraw_proposal", actor, four_eyes=False)
        if refused is None and actor != self.proposer and ACTORS[actor] not in OVERSEERS:
            refused = NotPermitted  # only its proposer or a manager
        self.attempt(
            "withdraw_proposal",
            refused,
            lambda: self.order.withdraw_proposal(ctx_of(actor), "not needed after all"),
            lambda: ["ProposalWithdrawn", *self.after_proposal()],
        )

    # ------------------------------------------------------- correct and resubmit
    @command("resubmit", actor=actors_for("resubmit"))
    def resubmit(self, actor: str) -> None:
        new_order_id = UUID(int=self.resubmitted + 1)

        def model() -> None:
            self.resubmitted += 1

        self.attempt(
            "resubmit",
            self.refusal("resubmit", actor),
            lambda: self.order.resubmitted_as(ctx_of(actor), new_order_id),
            ["OrderResubmitted"],
            model,
        )
        links = self.order.header.order_relationships
        assert [r.relationship_type for r in links] == [RESUBMITTED_AS] * self.resubmitted

    # ------------------------------------------------------------ cancellation
    @command("request_cancellation", ends_the_order=True, actor=actors_for("request_cancellation"))
    def request_cancellation(self, actor: str) -> None:
        def model() -> None:
            self.prior_state = self.state
            self.state = ASSESSING_CANCELLATION
            self.requester = actor
            # the open items are assessed with the order (v4.1), restored on denial
            self.items_before = {
                k: v for k, v in self.items.items() if v and v not in FINAL_ITEM_STATES
            }
            self.items = {
                k: "assessingCancellation" if k in self.items_before else v
                for k, v in self.items.items()
            }
            self.question = False

        self.attempt(
            "request_cancellation",
            self.refusal("request_cancellation", actor),
            lambda: self.order.request_cancellation(ctx_of(actor), "no longer needed"),
            ["CancellationRequested"],
            model,
        )

    def cancellation_refusal(
        self, command: str, actor: str, text: str | None = None
    ) -> type[DomainError] | None:
        refused = self.refusal(command, actor)
        if refused is None and actor == self.requester:
            refused = NotPermitted  # whoever requested the cancellation may not decide it
        if refused is None and text is not None and not text.strip():
            refused = InvalidCommand
        return refused

    @command("approve_cancellation", actor=actors_for("approve_cancellation"))
    def approve_cancellation(self, actor: str) -> None:
        def model() -> None:
            self.state = PENDING_CANCELLATION
            self.prior_state = None
            self.items = {
                k: "pendingCancellation" if k in self.items_before else v
                for k, v in self.items.items()
            }
            self.items_before, self.question = {}, False

        self.attempt(
            "approve_cancellation",
            self.cancellation_refusal("approve_cancellation", actor),
            lambda: self.order.approve_cancellation(ctx_of(actor)),
            ["CancellationApproved"],
            model,
        )

    @command("deny_cancellation", actor=actors_for("deny_cancellation"), reason=REASONS)
    def deny_cancellation(self, actor: str, reason: str) -> None:
        refused = self.cancellation_refusal("deny_cancellation", actor, reason)

        def model() -> None:
            self.state, self.prior_state = self.prior_state, None
            self.requester = None
            self.items = {k: self.items_before.get(k, v) for k, v in self.items.items()}
            self.items_before, self.question = {}, False

        self.attempt(
            "deny_cancellation",
            refused,
            lambda: self.order.deny_cancellation(ctx_of(actor), reason),
            ["CancellationDenied"],
            model,
        )

    @command(
        "request_cancellation_information",
        actor=actors_for("request_cancellation_information"),
        text=REASONS,
    )
    def request_cancellation_information(self, actor: str, text: str) -> None:
        refused = self.cancellation_refusal("request_cancellation_information", actor)
        if refused is None and self.question:
            refused = IllegalTransition  # one question at a time
        if refused is None and not text.strip():
            refused = InvalidCommand

        def model() -> None:
            self.question = True

        self.attempt(
            "request_cancellation_information",
            refused,
            lambda: self.order.request_cancellation_information(ctx_of(actor), text),
            ["CancellationInformationRequested"],
            model,
        )
        if refused is None:
            assert self.order.cancellation_information == text.strip()

    @command(
        "provide_cancellation_information",
        actor=actors_for("provide_cancellation_information"),
        text=REASONS,
    )
    def provide_cancellation_information(self, actor: str, text: str) -> None:
        refused = self.refusal("provide_cancellation_information", actor)
        if refused is None and actor != self.requester and ACTORS[actor] is not Role.OPERATOR:
            refused = NotPermitted  # the requester answers (or an operator)
        if refused is None and not self.question:
            refused = IllegalTransition  # no question waits
        if refused is None and not text.strip():
            refused = InvalidCommand

        def model() -> None:
            self.question = False

        self.attempt(
            "provide_cancellation_information",
            refused,
            lambda: self.order.provide_cancellation_information(ctx_of(actor), text),
            ["CancellationInformationProvided"],
            model,
        )
        assert (self.order.cancellation_information is not None) is self.question

    @command("cancel", ends_the_order=True, actor=actors_for("cancel"))
    def cancel(self, actor: str) -> None:
        refused = self.refusal("cancel", actor)
        if (
            refused is None
            and self.state != PENDING_CANCELLATION
            and ACTORS[actor] not in DIRECT_CANCEL
        ):
            refused = NotPermitted  # a direct cancellation is fulfilment's exit only

        def expected() -> list[str]:
            self.state = CANCELLED
            self.prior_state = None
            self.items = {
                k: v if v in FINAL_ITEM_STATES else "cancelled" for k, v in self.items.items()
            }
            return [*self.withdraw_waiting(), "OrderCancelled"]

        self.attempt("cancel", refused, lambda: self.order.cancel(ctx_of(actor)), expected)

    # ------------------------------------------------------------------- notes
    @command("add_note", actor=actors_for("add_note"), text=REASONS)
    def add_note(self, actor: str, text: str) -> None:
        refused = self.refusal("add_note", actor, text)
        notes = len(self.order.notes)
        self.attempt(
            "add_note", refused, lambda: self.order.add_note(ctx_of(actor), text), ["NoteAdded"]
        )
        assert len(self.order.notes) == notes + (refused is None)

    @command("delete", ends_the_order=True, actor=actors_for("delete"))
    def delete(self, actor: str) -> None:
        refused = self.refusal("delete", actor)
        if refused is None and ACTORS[actor] is Role.AGENT and self.state != DRAFT:
            refused = NotPermitted  # an agent discards drafts only

        def model() -> None:
            self.deleted = True

        self.attempt(
            "delete",
            refused,
            lambda: self.order.delete(ctx_of(actor), "not needed"),
            ["OrderDeleted"],
            model,
        )

    # ------------------------------------------------------------------ probes
    def clone(self) -> OrderLifecycle:
        """A throw-away copy of the machine (model and order) to try one command on.

        A shallow copy of the order is enough: its events replace attributes, never change
        them in place, and the copy gets its own list of pending events."""
        order = object.__new__(ServiceOrder)
        order.__dict__.update(self.order.__dict__)
        order.__dict__["_pending_events"] = []
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.order, other.items = order, dict(self.items)
        other.contributors = set(self.contributors)
        other.events, other.reloaded = list(self.events), list(self.reloaded)
        other.is_probe = True
        return other

    def first(self, open_only: bool = False) -> str:
        ids = [k for k, v in self.items.items() if not (open_only and v in FINAL_ITEM_STATES)]
        return sorted(ids)[0] if ids else "zz"

    @invariant()
    def every_command_does_what_the_model_says_in_this_state(self) -> None:
        """The first time a run reaches a state (with or without the point of no return,
        deleted or not), try every command as every actor, each on its own copy."""
        key = (self.state, self.point_of_no_return, self.deleted)
        if self.order is None or key in self.probed:
            return
        self.probed.add(key)
        for name, arguments in PROBES.items():
            for actor in ACTORS:
                getattr(self.clone(), name)(actor=actor, **arguments(self))

    def open_items(self) -> list[str]:
        return sorted(k for k, v in self.items.items() if v not in FINAL_ITEM_STATES)

    def fitting_actor(self, command_name: str) -> str:
        """An actor whose role fits and who is no party to the decision (when there is one)."""
        fitting = [a for a, role in ACTORS.items() if COMMAND_OF[command_name] in MAY[role]]
        parties = {*self.contributors, self.proposer, self.requester}
        return next((a for a in fitting if a not in parties), fitting[0])

    @invariant()
    def every_command_after_a_revision_does_what_the_model_says(self) -> None:
        """A revision may close items while the order waits (pending or held), even its
        last open items. The first time a run has some items waiting (or in progress with
        some items already final, then made to wait), remove each open item on a copy of
        the order, then try every command on that copy."""
        key = ("revised", self.state, self.deleted, frozenset(self.items.items()))
        if self.order is None or self.deleted or key in self.probed:
            return
        if self.state in (PENDING, HELD):
            waiting = [self]
        elif self.state == IN_PROGRESS and len(self.open_items()) < len(self.items):
            waiting = [self.clone(), self.clone()]
            waiting[0].hold("fulfil-1", "site closed")
            waiting[1].request_information("fulfil-1", "still wanted?")
        else:
            return
        self.probed.add(key)
        for order in waiting:
            for item_id in order.open_items():
                revised = order.clone()
                revised.revise_remove_item("upstream-1", item_id)
                if revised.proposer == "upstream-1":  # a proposal: a second person decides
                    revised.approve_proposal("manager-2", four_eyes=True)
                for name, arguments in PROBES.items():
                    getattr(revised.clone(), name)(
                        actor=revised.fitting_actor(name), **arguments(revised)
                    )

    @invariant()
    def every_item_move_does_what_the_model_says(self) -> None:
        """Whenever a run has its items in new states while the order is in progress, try
        every item state change, each on its own copy of the order; the first time, also
        from every state an open item can be moved to."""
        key = ("items", frozenset(self.items.items()))
        if self.order is None or self.state != IN_PROGRESS or key in self.probed:
            return
        self.probed.add(key)
        for item_id in [*self.items, "zz"]:
            for to in ITEM_STATE_NAMES:
                self.clone().change_item("fulfil-1", item_id, to)
        if "items, deep" in self.probed:
            return
        self.probed.add("items, deep")
        for item_id in self.open_items():
            for via in ("inProgress", "pending", "held"):
                moved = self.clone()
                moved.change_item("fulfil-1", item_id, via)
                if moved.items[item_id] == via and moved.state == IN_PROGRESS:
                    for to in ITEM_STATE_NAMES:
                        moved.clone().change_item("fulfil-1", item_id, to)

    # -------------------------------------------------------------- invariants
    @invariant()
    def matches_model(self) -> None:
        if self.order is None:
            return
        event(f"state reached: {self.state}")
        assert self.order.state == self.state
        assert {k: v.state for k, v in self.order.items.items()} == self.items
        assert self.order.point_of_no_return is self.point_of_no_return
        assert self.order.deleted is self.deleted
        if self.state == ASSESSING_CANCELLATION:
            assert self.order.prior_state == self.prior_state
        assert set(self.order.contributors) == self.contributors
        proposal = self.order.proposal
        assert (proposal.proposed_by.id if proposal else None) == self.proposer
        assert (self.order.held_for_proposal is not None) is self.held_for_proposal
        # An order in progress always has something left to do.
        if self.state == IN_PROGRESS:
            assert any(v not in FINAL_ITEM_STATES for v in self.items.values())

    @invariant()
    def rebuilds_from_its_events(self) -> None:
        if self.order is None:
            return
        assert self.order.version == len(self.events)
        assert self.reloaded == self.events
        for events in (self.events, self.reloaded):
            rebuilt = None
            for e in events:
                rebuilt = e.mutate(rebuilt)
            assert rebuilt == self.order

    @invariant()
    def hash_chain_holds(self) -> None:
        if self.order is None:
            return
        previous = GENESIS
        for e, reloaded in zip(self.events, self.reloaded, strict=True):
            assert e.prev_hash == reloaded.prev_hash == previous
            assert e.compute_hash() == e.hash
            assert reloaded.compute_hash() == reloaded.hash == e.hash
            previous = e.hash
        assert self.order.head_hash == previous

    @invariant()
    def snapshot_restores_the_order(self) -> None:
        if self.order is None:
            return
        snapshot = OrderSnapshot.take(self.order)
        restored = MAPPER.to_domain_event(MAPPER.to_stored_event(snapshot)).mutate(None)
        assert restored == self.order
        if self.snapshot is None and self.order.version >= self.snapshot_at:
            self.snapshot = MAPPER.to_domain_event(MAPPER.to_stored_event(snapshot))
        elif self.snapshot is not None:  # an older snapshot plus the events since
            restored = self.snapshot.mutate(None)
            for e in self.events[self.snapshot.originator_version :]:
                restored = e.mutate(restored)
            assert restored == self.order


# One valid set of arguments for each command method, given the machine's current model.
PROBES = {
    "add_line": lambda m: {
        "item_id": next((i for i in ITEM_IDS if i not in m.items), "a"),
        "bandwidth": 100,
    },
    "configure_line": lambda m: {"item_id": m.first(), "bandwidth": 200},
    "remove_line": lambda m: {"item_id": m.first()},
    "submit": lambda m: {},
    "approve": lambda m: {"four_eyes": True},
    "reject": lambda m: {"four_eyes": True, "reason": "no coverage"},
    "hold": lambda m: {"reason": "site closed"},
    "resume": lambda m: {},
    "request_information": lambda m: {"text": "which rack?"},
    "provide_information": lambda m: {"text": "rack 4"},
    "change_item_state": lambda m: {"item_id": m.first(open_only=True), "to": "cancelled"},
    "reach_point_of_no_return": lambda m: {},
    "revise_remove_item": lambda m: {"item_id": m.first(open_only=True)},
    "revise_replace_item": lambda m: {"item_id": "d", "bandwidth": 200},
    "revise_header": lambda m: {"change_header": True},
    "request_cancellation": lambda m: {},
    "approve_cancellation": lambda m: {},
    "deny_cancellation": lambda m: {"reason": "too late"},
    "request_cancellation_information": lambda m: {"text": "which budget?"},
    "provide_cancellation_information": lambda m: {"text": "line 7"},
    "cancel": lambda m: {},
    "approve_proposal": lambda m: {"four_eyes": True},
    "refuse_proposal": lambda m: {"four_eyes": True, "reason": "not now"},
    "withdraw_proposal": lambda m: {},
    "resubmit": lambda m: {},
    "add_note": lambda m: {"text": "a note"},
    "delete": lambda m: {},
}
# The command each command method gives.
COMMAND_OF = {
    **{name: name for name in PROBES},
    "revise_remove_item": "revise",
    "revise_replace_item": "revise",
    "revise_header": "revise",
}

assert set(PROBES) | {
    "progress_item",
    "progress_another_item",
    "approve_as_reviewer",
    "add_a_missing_line",
    "submit_the_draft",
    "revise_remove_an_open_item",
    "approve_proposal_as_reviewer",
} == set(COMMAND_RULES)

# Not less: planting issue 17's bugs in domain/order.py one at a time (issue 18, H7), the
# examples a run needed to find them reached 100-300 (a proposal decided by its proposer,
# the order's contributors deciding it, resume not settling an order a revision emptied),
# and a proposal approved without re-checking its items was found in about half the runs
# of 250; with 20 steps instead of 40 it was found in 1 run of 6, and resume's bug missed once.
OrderLifecycle.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOrderLifecycle = OrderLifecycle.TestCase

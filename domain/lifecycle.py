"""The lifecycle as data: which action moves an order from which state to which,
and which roles may trigger it. `docs/lifecycle.md` is the prose of this module.
"""

from __future__ import annotations

from enum import StrEnum

from .values import ItemState, OrderState, Role

S = OrderState


class Action(StrEnum):
    DRAFT = "draft"
    RECEIVE = "receive"  # a complete order from an upstream system: drafted and submitted
    ADD_LINE = "add_line"
    CONFIGURE_LINE = "configure_line"
    REMOVE_LINE = "remove_line"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    HOLD = "hold"
    RESUME = "resume"
    REQUEST_INFORMATION = "request_information"
    PROVIDE_INFORMATION = "provide_information"
    CHANGE_ITEM_STATE = "change_item_state"
    REVISE = "revise"
    REACH_POINT_OF_NO_RETURN = "reach_point_of_no_return"
    REQUEST_CANCELLATION = "request_cancellation"
    APPROVE_CANCELLATION = "approve_cancellation"
    DENY_CANCELLATION = "deny_cancellation"
    # A decider asks the cancellation's requester for information; the requester answers
    # (the order stays assessingCancellation throughout).
    REQUEST_CANCELLATION_INFORMATION = "request_cancellation_information"
    PROVIDE_CANCELLATION_INFORMATION = "provide_cancellation_information"
    CANCEL = "cancel"
    ADD_NOTE = "add_note"
    DELETE = "delete"
    APPROVE_PROPOSAL = "approve_proposal"  # a revision of an approved order, decided
    REFUSE_PROPOSAL = "refuse_proposal"
    WITHDRAW_PROPOSAL = "withdraw_proposal"  # its proposer (or a manager) takes it back
    RESUBMIT = "resubmit"  # a new order prefilled from a rejected one (correct and resubmit)


ACTIVE = frozenset({S.IN_PROGRESS, S.PENDING, S.HELD})
CANCELLABLE = frozenset({S.ACKNOWLEDGED, *ACTIVE})
ALL_STATES = frozenset(S)

# action -> states it may start from. Where the action moves the order, TARGET says where;
# `deny_cancellation` returns to the state the order had before the request.
ALLOWED_FROM: dict[Action, frozenset[OrderState]] = {
    Action.ADD_LINE: frozenset({S.DRAFT}),
    Action.CONFIGURE_LINE: frozenset({S.DRAFT}),
    Action.REMOVE_LINE: frozenset({S.DRAFT}),
    Action.SUBMIT: frozenset({S.DRAFT}),
    Action.APPROVE: frozenset({S.ACKNOWLEDGED}),
    Action.REJECT: frozenset({S.ACKNOWLEDGED}),
    Action.HOLD: frozenset({S.IN_PROGRESS}),
    Action.RESUME: frozenset({S.HELD}),
    Action.REQUEST_INFORMATION: frozenset({S.IN_PROGRESS}),
    Action.PROVIDE_INFORMATION: frozenset({S.PENDING}),
    Action.CHANGE_ITEM_STATE: frozenset({S.IN_PROGRESS}),
    Action.REVISE: CANCELLABLE,
    Action.REACH_POINT_OF_NO_RETURN: ACTIVE,
    Action.REQUEST_CANCELLATION: CANCELLABLE,
    Action.APPROVE_CANCELLATION: frozenset({S.ASSESSING_CANCELLATION}),
    Action.DENY_CANCELLATION: frozenset({S.ASSESSING_CANCELLATION}),
    Action.REQUEST_CANCELLATION_INFORMATION: frozenset({S.ASSESSING_CANCELLATION}),
    Action.PROVIDE_CANCELLATION_INFORMATION: frozenset({S.ASSESSING_CANCELLATION}),
    # Carrying out an approved cancellation (`pendingCancellation`), or fulfilment's own
    # exits ("issue cannot be solved", "information cannot be supplied"): the order cannot
    # be fulfilled. Any other cancellation is requested and decided by a second person.
    Action.CANCEL: frozenset({S.HELD, S.PENDING, S.PENDING_CANCELLATION}),
    Action.ADD_NOTE: ALL_STATES,
    # Only drafts (discarded) and final orders (archived); an active order is cancelled.
    Action.DELETE: frozenset({S.DRAFT, S.REJECTED, S.CANCELLED, S.COMPLETED, S.FAILED, S.PARTIAL}),
    Action.APPROVE_PROPOSAL: ACTIVE,
    Action.REFUSE_PROPOSAL: ACTIVE,
    Action.WITHDRAW_PROPOSAL: ACTIVE,
    Action.RESUBMIT: frozenset({S.REJECTED}),
}

# action -> the state it moves the order to: the one source of each transition's target
# (the events' `apply` in events.py reads it, so replaying stored events follows this table).
# `receive` ends where `submit` does (it is recorded as drafted + submitted); the final states
# completed / failed / partial follow from the items (`outcome`), not from an action.
TARGET: dict[Action, OrderState] = {
    Action.SUBMIT: S.ACKNOWLEDGED,
    Action.APPROVE: S.IN_PROGRESS,
    Action.REJECT: S.REJECTED,
    Action.HOLD: S.HELD,
    Action.RESUME: S.IN_PROGRESS,
    Action.REQUEST_INFORMATION: S.PENDING,
    Action.PROVIDE_INFORMATION: S.IN_PROGRESS,
    Action.REQUEST_CANCELLATION: S.ASSESSING_CANCELLATION,
    Action.APPROVE_CANCELLATION: S.PENDING_CANCELLATION,
    Action.CANCEL: S.CANCELLED,
}

# Actions refused once the order has passed its point of no return (a proposal cannot
# wait then: the point of no return is refused while one waits).
BLOCKED_AFTER_POINT_OF_NO_RETURN = frozenset(
    {Action.REVISE, Action.REQUEST_CANCELLATION, Action.CANCEL}
)

# Direct cancellations (not carrying out an approved request) are fulfilment's exits only.
DIRECT_CANCEL_ROLES = frozenset({Role.FULFILMENT})

_CAPTURE = {
    Action.DRAFT,
    Action.ADD_LINE,
    Action.CONFIGURE_LINE,
    Action.REMOVE_LINE,
    Action.SUBMIT,
    Action.DELETE,
    Action.RESUBMIT,
}  # an agent deletes drafts only (see order.py)
_REQUESTER = {
    Action.RECEIVE,
    Action.REVISE,
    Action.WITHDRAW_PROPOSAL,
    Action.RESUBMIT,
    Action.REQUEST_CANCELLATION,
    Action.PROVIDE_CANCELLATION_INFORMATION,
    Action.PROVIDE_INFORMATION,
    Action.ADD_NOTE,
}
_DECISIONS = {
    Action.APPROVE,
    Action.REJECT,
    Action.APPROVE_CANCELLATION,
    Action.DENY_CANCELLATION,
    Action.REQUEST_CANCELLATION_INFORMATION,
    Action.APPROVE_PROPOSAL,
    Action.REFUSE_PROPOSAL,
}
_FULFILMENT = {
    Action.HOLD,
    Action.RESUME,
    Action.REQUEST_INFORMATION,
    Action.PROVIDE_INFORMATION,
    Action.CHANGE_ITEM_STATE,
    Action.REACH_POINT_OF_NO_RETURN,
    Action.CANCEL,
    Action.ADD_NOTE,
}

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.AGENT: frozenset(_CAPTURE | _REQUESTER),
    Role.UPSTREAM: frozenset(_REQUESTER),
    Role.MANAGER: frozenset(
        _CAPTURE | _REQUESTER | _DECISIONS | {Action.HOLD, Action.RESUME, Action.CANCEL}
    ),
    Role.FULFILMENT: frozenset(_FULFILMENT),
    Role.OPERATOR: frozenset(Action),
    Role.AUDITOR: frozenset(),
}


def may(role: Role, action: Action) -> bool:
    return action in PERMISSIONS[role]


# Item states a fulfilment system may move an item between.
ITEM_TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    ItemState.ACKNOWLEDGED: frozenset(
        {
            ItemState.IN_PROGRESS,
            ItemState.PENDING,
            ItemState.HELD,
            ItemState.COMPLETED,
            ItemState.FAILED,
            ItemState.CANCELLED,
        }
    ),
    ItemState.IN_PROGRESS: frozenset(
        {
            ItemState.PENDING,
            ItemState.HELD,
            ItemState.COMPLETED,
            ItemState.FAILED,
            ItemState.CANCELLED,
        }
    ),
    ItemState.PENDING: frozenset(
        {ItemState.IN_PROGRESS, ItemState.HELD, ItemState.FAILED, ItemState.CANCELLED}
    ),
    ItemState.HELD: frozenset(
        {ItemState.IN_PROGRESS, ItemState.PENDING, ItemState.FAILED, ItemState.CANCELLED}
    ),
}

# Moving an item into these states needs every item it depends on completed first.
NEEDS_DEPENDENCIES_DONE = frozenset({ItemState.IN_PROGRESS, ItemState.COMPLETED})


def outcome(item_states: list[ItemState]) -> OrderState | None:
    """The final order state once every item is final, else None.

    Cancelled items do not count towards the outcome; an order whose items were all
    cancelled is cancelled. A `partial` item counts as neither completed nor failed: the
    order is partial. The same rule settles an item from its nested items (order.py
    `_settle_parents`), mapped to the item state of the same name.
    """
    if not item_states or not all(s.is_final for s in item_states):
        return None
    counted = [s for s in item_states if s is not ItemState.CANCELLED]
    if not counted:
        return S.CANCELLED
    if all(s is ItemState.COMPLETED for s in counted):
        return S.COMPLETED
    if all(s is ItemState.FAILED for s in counted):
        return S.FAILED
    return S.PARTIAL

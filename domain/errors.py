"""Domain errors: part of the interface. How each door answers one (HTTP status, dead-letter
category, console page, CLI exit) is one table at the end of this module: `answer_for`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from .values import Problem


class DomainError(Exception):
    """Base of every refusal the domain makes."""

    code = "domain_error"


class IllegalTransition(DomainError):
    """The action is not allowed in the order's current state."""

    code = "illegal_transition"

    def __init__(self, order_id: UUID, state: str, action: str, detail: str = "") -> None:
        self.order_id, self.state, self.action = order_id, state, action
        why = f": {detail}" if detail else ""
        super().__init__(f"order {order_id} is {state}; cannot {action.replace('_', ' ')}{why}")


# Each action in the users' words, for "<who> may not ...": the verb, and what it acts on
# when no one order is named (creation names none: "may not create orders").
_ACTION_WORDS: dict[str, tuple[str, str]] = {
    "draft": ("start", "drafts"),
    "receive": ("create", "orders"),
    "add_line": ("add items to", "drafts"),
    "configure_line": ("change the items of", "drafts"),
    "remove_line": ("remove items from", "drafts"),
    "submit": ("submit", "drafts"),
    "approve": ("approve", "orders"),
    "reject": ("reject", "orders"),
    "hold": ("hold", "orders"),
    "resume": ("resume", "orders"),
    "request_information": ("ask for information on", "orders"),
    "provide_information": ("provide information on", "orders"),
    "change_item_state": ("report the item states of", "orders"),
    "revise": ("revise", "orders"),
    "reach_point_of_no_return": ("record the point of no return of", "orders"),
    "request_cancellation": ("request the cancellation of", "orders"),
    "approve_cancellation": ("approve the cancellation of", "orders"),
    "deny_cancellation": ("deny the cancellation of", "orders"),
    "request_cancellation_information": ("ask about the cancellation of", "orders"),
    "provide_cancellation_information": ("answer on the cancellation of", "orders"),
    "cancel": ("cancel", "orders"),
    "add_note": ("add notes to", "orders"),
    "delete": ("delete", "orders"),
    "approve_proposal": ("approve the proposal on", "orders"),
    "refuse_proposal": ("refuse the proposal on", "orders"),
    "withdraw_proposal": ("withdraw the proposal on", "orders"),
    "resubmit": ("correct and resubmit", "orders"),
}
_CREATION = frozenset({"draft", "receive"})


def _may_not(action: str, order_id: UUID | None) -> str:
    """What an actor may not do, as people say it: `approve order <id>`, `create orders`."""
    verb, things = _ACTION_WORDS.get(str(action), (str(action).replace("_", " "), ""))
    if order_id is not None and str(action) not in _CREATION:
        return f"{verb} order {order_id}"
    return f"{verb} {things}".rstrip()


class NotPermitted(DomainError):
    """The actor's role (or identity, for four-eyes) does not allow the action."""

    code = "not_permitted"

    def __init__(
        self, order_id: UUID | None, actor: str, role: str, action: str, detail: str = ""
    ) -> None:
        self.order_id, self.actor, self.role, self.action = order_id, actor, role, action
        why = f": {detail}" if detail else ""
        super().__init__(f"{actor} ({role}) may not {_may_not(action, order_id)}{why}")


class ValidationFailed(DomainError):
    """The order (or change) has structural problems; every one is listed."""

    code = "validation_failed"

    def __init__(self, problems: Sequence[Problem], order_id: UUID | None = None) -> None:
        self.problems = tuple(problems)
        self.order_id = order_id
        listed = "; ".join(p.message for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s): {listed}")


class InvalidCommand(DomainError):
    """A command argument is missing or malformed (e.g. a rejection without a reason)."""

    code = "invalid_command"


class UnknownItem(DomainError):
    code = "unknown_item"

    def __init__(self, order_id: UUID, item_id: str) -> None:
        self.order_id, self.item_id = order_id, item_id
        super().__init__(f"order {order_id} has no item {item_id}")


class OrderNotFound(DomainError):
    code = "order_not_found"

    def __init__(self, order_id: UUID | str, described: str | None = None) -> None:
        """`described` names the order as the caller asked for it when that is not one id
        (an `OrderRef`: "with id ... or externalId '...'")."""
        self.order_id = order_id
        super().__init__(f"no order {described or order_id}")


class ServiceNotFound(DomainError):
    """No service of the inventory has this id (domain/service.py)."""

    code = "service_not_found"

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        super().__init__(f"no service {service_id}")


class ServiceConflict(DomainError):
    """An import brings other content under the id of a service the inventory holds."""

    code = "service_conflict"

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        super().__init__(
            f"service {service_id} exists with other content: an import never changes a "
            "service (a completed modify order does)"
        )


class ConcurrencyConflict(DomainError):
    """Someone else changed the order since it was loaded; reload and retry."""

    code = "conflict"

    def __init__(self, order_id: UUID | None, detail: str = "") -> None:
        self.order_id = order_id
        what = f"order {order_id}" if order_id else "an order"
        super().__init__(f"{what} was changed concurrently{': ' + detail if detail else ''}")


class StaleVersion(ConcurrencyConflict):
    """The order is not at the version the caller saw (an `If-Match`, the console form's
    version): it changed since, so the command was not applied. `expected` is what the
    caller sent (one version, or the versions any of which is acceptable), `actual` the
    order's version when the command was checked."""

    code = "precondition_failed"

    def __init__(self, order_id: UUID, expected: int | frozenset[int], actual: int) -> None:
        self.expected, self.actual = expected, actual
        shown = (
            str(expected) if isinstance(expected, int) else " or ".join(map(str, sorted(expected)))
        )
        DomainError.__init__(
            self,
            f"order {order_id} is at version {actual}, not {shown or 'the one expected'}: "
            "reload it and try again",
        )
        self.order_id = order_id


class ResendConflict(DomainError):
    """A new order under a key already used (the same `externalId`, or the same
    `Idempotency-Key`) with different content than the order created with it: nothing is
    created. `paths` name where the content differs (domain/resend.py), never the values.
    `key_value` is None when the domain does not know it (an idempotency key)."""

    code = "resend_conflict"

    def __init__(
        self, order_id: UUID, key_name: str, key_value: str | None, paths: Sequence[str]
    ) -> None:
        self.order_id, self.key_name, self.key_value = order_id, key_name, key_value
        self.paths = tuple(paths)
        key = f"{key_name} {key_value!r}" if key_value is not None else key_name
        super().__init__(
            f"the {key} was used for order {order_id} with other content (differing: "
            f"{', '.join(self.paths)}); send the same content to get that order back, "
            f"or a new {key_name} for a new order"
        )


class ExternalIdTaken(DomainError):
    """A new order under a key held by an order that is not (or no longer) a TMF641 order:
    a draft, or a deleted one (a discarded draft, an archived order). Its id derives from
    the key, so the key cannot name another order (docs/lifecycle.md)."""

    code = "external_id_taken"

    def __init__(self, order_id: UUID, key_name: str, key_value: str | None, holder: str) -> None:
        self.order_id, self.key_name, self.key_value = order_id, key_name, key_value
        self.holder = holder
        key = f"{key_name} {key_value!r}" if key_value is not None else key_name
        super().__init__(
            f"the {key} is held by {holder} (order {order_id}): it cannot name a new order; "
            f"send a new {key_name}"
        )


class WriteTimeout(PersistenceError):
    """A save ran out of time (the event store's bound on one write transaction, or on the
    wait for its lock): the store rolled it back, nothing of it was written, and the lock
    was released. Not a refusal: the same command may succeed when retried (the API
    answers 503, the Kafka intake reads the batch again)."""

    code = "write_timeout"


# --------------------------------------------------------------------------- answers
@dataclass(frozen=True, slots=True)
class Answer:
    """How every door answers one refusal, so that the doors cannot drift apart.

    Plain values (domain/ imports no HTTP or Kafka library): the door turns them into its
    own form: the API a TMF `Error` body (`code`, `reason`, `message`, `status`), the Kafka
    intake a dead letter (`category`, with `message` as its reason), the console an HTML
    page (`console_status`, `console_title`, `message`), the CLI `refused (CODE): message`
    on stderr and `cli_exit`.
    """

    code: str  # the error's code: the TMF Error's `code`
    http_status: int
    # The TMF Error's `reason`; None in the table means "the error class's name" (today's
    # spelling); `answer_for` always fills it in.
    http_reason: str | None
    # The dead letter's category (the `dlq.category` header); None: never dead-lettered
    # (the write did not happen, the batch is read again).
    category: str | None
    console_status: int
    console_title: str
    cli_exit: int
    template: str = "{error}"  # the message for people; `{error}` is str(error)

    def message(self, error: BaseException) -> str:
        return self.template.format(error=error)


# Dead-letter categories (as consumers/envelope.py names them; plain strings here).
_REFUSED, _ILLEGAL, _NOT_PERMITTED = "refused", "illegal_transition", "not_permitted"
_UNKNOWN_ORDER, _INVALID = "unknown_order", "invalid_command"
_RESEND, _TAKEN = "resend_conflict", "external_id_taken"

# Today's answers, exactly: api/errors.py `_DOMAIN_STATUS` (else 400), console/web.py
# `_DOMAIN_STATUS` (else 400 "Refused"), consumers/intake.py `_category` (else
# invalid_command), the CLI's `refusals` (a refusal exits 1, an infrastructure error 3).
ANSWERS: dict[str, Answer] = {
    a.code: a
    for a in (
        Answer(DomainError.code, 400, None, _INVALID, 400, "Refused", 1),
        Answer(ValidationFailed.code, 400, None, _REFUSED, 400, "Refused", 1),
        Answer(InvalidCommand.code, 400, None, _INVALID, 400, "Refused", 1),
        Answer(NotPermitted.code, 403, None, _NOT_PERMITTED, 403, "Not permitted", 1),
        Answer(OrderNotFound.code, 404, None, _UNKNOWN_ORDER, 404, "Not found", 1),
        Answer(UnknownItem.code, 404, None, _INVALID, 404, "Not found", 1),
        Answer(ServiceNotFound.code, 404, None, _INVALID, 404, "Not found", 1),
        Answer(ServiceConflict.code, 409, None, _RESEND, 409, "Already used", 1),
        Answer(IllegalTransition.code, 409, None, _ILLEGAL, 409, "Not possible now", 1),
        # A key used again with other content, or held by a draft / a deleted order
        # (domain/resend.py): nothing is created.
        Answer(ResendConflict.code, 409, None, _RESEND, 409, "Already used", 1),
        Answer(ExternalIdTaken.code, 409, None, _TAKEN, 409, "Already used", 1),
        # The console shows a concurrent change as a 400 "Refused" today (it has no entry
        # there); the API as a 409.
        Answer(ConcurrencyConflict.code, 409, None, _INVALID, 400, "Refused", 1),
        # The API's 412 for a stale If-Match; the console's 409 for a stale form version.
        # No Kafka message carries a version.
        Answer(
            StaleVersion.code, 412, "Precondition Failed", _INVALID, 409, "Changed meanwhile", 1
        ),
        # Not a refusal: nothing was written, the same command may succeed when retried
        # (the API: 503 with Retry-After; Kafka: the batch is read again, never dead-lettered;
        # the console has no entry for it today: its page for an unexpected error, 500).
        Answer(WriteTimeout.code, 503, "Service Unavailable", None, 500, "Something went wrong", 3),
    )
}


def answer_for(error: DomainError | WriteTimeout) -> Answer:
    """The answer to `error`: the table's entry for its class, else for the nearest base
    class that has one (a subclass defined outside the domain, e.g. an `InvalidCommand`,
    is answered as its base), with `code` the error's own code and `http_reason` filled in
    (the error class's name unless the table fixes it)."""
    for cls in type(error).__mro__:
        own = vars(cls).get("code")
        if isinstance(own, str) and own in ANSWERS:
            found = ANSWERS[own]
            break
    else:  # pragma: no cover - every DomainError has DomainError's entry
        found = ANSWERS[DomainError.code]
    code = getattr(error, "code", found.code)
    reason = found.http_reason or type(error).__name__
    if code == found.code and reason == found.http_reason:
        return found
    return replace(found, code=code, http_reason=reason)

"""Domain errors: part of the interface, mapped once at each edge (HTTP, Kafka, CLI)."""

from __future__ import annotations

from collections.abc import Sequence
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


class NotPermitted(DomainError):
    """The actor's role (or identity, for four-eyes) does not allow the action."""

    code = "not_permitted"

    def __init__(
        self, order_id: UUID | None, actor: str, role: str, action: str, detail: str = ""
    ) -> None:
        self.order_id, self.actor, self.role, self.action = order_id, actor, role, action
        target = f" on order {order_id}" if order_id else ""
        why = f": {detail}" if detail else ""
        super().__init__(f"{actor} ({role}) may not {action.replace('_', ' ')}{target}{why}")


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

    def __init__(self, order_id: UUID | str) -> None:
        self.order_id = order_id
        super().__init__(f"no order {order_id}")


class ConcurrencyConflict(DomainError):
    """Someone else changed the order since it was loaded; reload and retry."""

    code = "conflict"

    def __init__(self, order_id: UUID | None, detail: str = "") -> None:
        self.order_id = order_id
        what = f"order {order_id}" if order_id else "an order"
        super().__init__(f"{what} was changed concurrently{': ' + detail if detail else ''}")


class WriteTimeout(PersistenceError):
    """A save ran out of time (the event store's bound on one write transaction, or on the
    wait for its lock): the store rolled it back, nothing of it was written, and the lock
    was released. Not a refusal: the same command may succeed when retried (the API
    answers 503, the Kafka intake reads the batch again)."""

    code = "write_timeout"

"""The application's review policies, handed to the aggregate with each command.

`four_eyes`: nobody decides what they contributed to (docs/lifecycle.md, "Four eyes").
`direct_fields`: the header attributes an approved order may change without a proposal
(none by default: every change after approval is a proposal). `hold_on_proposal`: hold an
`inProgress` order while its proposal waits (also, whatever this says, when an item of
the order or of the proposal has a specification whose catalog entry says
`hold_on_proposal`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .values import HeaderChange, OrderItem

# The header attributes a policy may exempt from proposals (HeaderChange's fields).
HEADER_FIELDS: frozenset[str] = frozenset(HeaderChange.model_fields)


@dataclass(frozen=True, slots=True)
class Policy:
    four_eyes: bool = True
    direct_fields: frozenset[str] = frozenset()
    hold_on_proposal: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.direct_fields) - HEADER_FIELDS
        if unknown:
            raise ValueError(
                f"not header attributes: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(HEADER_FIELDS))})"
            )

    def needs_proposal(
        self, items: Iterable[OrderItem], removed: Iterable[str], header: HeaderChange | None
    ) -> bool:
        """Whether this change to an approved order waits for a second person."""
        if any(True for _ in items) or any(True for _ in removed):
            return True
        # None leaves an attribute as it is (HeaderChange.apply_to): not a change.
        changed = {n for n in HEADER_FIELDS if header and getattr(header, n) is not None}
        return not changed <= self.direct_fields

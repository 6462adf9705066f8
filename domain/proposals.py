"""A waiting proposal against the order as approved so far: what it would change.

One function for every door that shows a proposal (the review queue, `/api/v1`, the
console): `diff(order)` lists each change as a path with the current and the proposed
value, in a stable order (header attributes, then items by id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .values import OrderHeader, OrderItem, Proposal


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: `path` (e.g. `description`, `items[2].characteristics.bandwidthMbps`,
    `items[3]`), `kind` (`added`, `changed`, `removed`), and the values before and after
    (None where there is none)."""

    path: str
    kind: str
    current: Any = None
    proposed: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "current": self.current,
            "proposed": self.proposed,
        }


_ITEM_STATE = {"state"}  # an item's state is fulfilment's, never proposed


def diff(header: OrderHeader, items: dict[str, OrderItem], proposal: Proposal) -> list[Change]:
    """The changes `proposal` makes to the order with `header` and `items`."""
    changes: list[Change] = []
    for name in sorted(proposal.header.model_fields_set):
        if getattr(proposal.header, name) is None:
            # None leaves the attribute as it is (HeaderChange.apply_to); a change read back
            # from the store names every attribute, the unchanged ones as None.
            continue
        new = _json(getattr(proposal.header, name))
        old = _json(getattr(header, name, None))
        if new != old:
            changes.append(Change(name, "changed" if old is not None else "added", old, new))
    for item in sorted(proposal.items, key=lambda i: i.id):
        new = _item_json(item)
        current = items.get(item.id)
        if current is None:
            changes.append(Change(f"items[{item.id}]", "added", None, new))
            continue
        changes += _nested(f"items[{item.id}]", _item_json(current), new)
    for item_id in sorted(proposal.removed_item_ids):
        current = items.get(item_id)
        before = _item_json(current) if current is not None else None
        changes.append(Change(f"items[{item_id}]", "removed", before, None))
    return changes


def _item_json(item: OrderItem) -> dict[str, Any]:
    dumped: dict[str, Any] = item.model_dump(mode="json", exclude=_ITEM_STATE)
    return dumped


def _json(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _nested(path: str, old: Any, new: Any) -> list[Change]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Change] = []
        for key in sorted({*old, *new}):
            if key not in new:
                out.append(Change(f"{path}.{key}", "removed", old[key], None))
            elif key not in old:
                out.append(Change(f"{path}.{key}", "added", None, new[key]))
            else:
                out += _nested(f"{path}.{key}", old[key], new[key])
        return out
    return [] if old == new else [Change(path, "changed", old, new)]

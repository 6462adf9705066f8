"""Personal data kept sealed in the event log, so that it can be erased without breaking
the hash chain (docs/audit.md, "Erasing personal data").

Personal values (related parties' names, places' names, the notification contact) are
sealed by the application before the domain sees them: the events store an opaque token
(`pii:1:<scope>:<ciphertext>`), encrypted with a key per customer (the scope), and the
chain hashes the token, i.e. what is stored. Readers get the value back through the
mapper (`reveal`); once the customer's key is erased every token of that customer reveals
as `[erased]` and the chain still verifies. The domain only sees this protocol; the keys
and the cipher live outside it (`serviceorders.pii`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .copying import replace
from .values import HeaderChange, OrderHeader, OrderItem, Party, Place

TOKEN_PREFIX = "pii:1:"
ERASED = "[erased]"
UNASSIGNED_SCOPE = "unassigned"


class Sealer(Protocol):
    def seal(self, scope: str, value: str) -> str: ...

    def reveal(self, value: str) -> str: ...


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def scope_of(header: OrderHeader | HeaderChange | None, fallback: str | None = None) -> str:
    """Whose key seals an order's personal data: its customer's (the related party with
    role customer), else the order's external id, else a shared scope."""
    parties: tuple[Party, ...] = (header.related_parties or ()) if header is not None else ()
    customer = next((p for p in parties if p.is_customer), None)
    if customer is not None:
        return customer.id
    external = header.external_id if isinstance(header, OrderHeader) else None
    return f"order:{external}" if external else (fallback or UNASSIGNED_SCOPE)


def _text(fn: Callable[[str], str], value: str | None) -> str | None:
    return None if value is None else fn(value)


def _parties(fn: Callable[[str], str], parties: Iterable[Party]) -> tuple[Party, ...]:
    return tuple(replace(p, name=fn(p.name)) if p.name else p for p in parties)


def map_header(header: OrderHeader, fn: Callable[[str], str]) -> OrderHeader:
    return replace(
        header,
        related_parties=_parties(fn, header.related_parties),
        notification_contact=_text(fn, header.notification_contact),
    )


def map_change(change: HeaderChange, fn: Callable[[str], str]) -> HeaderChange:
    update: dict[str, Any] = {}
    if change.related_parties is not None:
        update["related_parties"] = _parties(fn, change.related_parties)
    if change.notification_contact is not None:
        update["notification_contact"] = fn(change.notification_contact)
    if not update:
        return change
    # Like model_copy, replace keeps model_fields_set (plus the fields it sets, which are
    # set already), so "which fields the change names" is unchanged.
    return replace(change, **update)


def map_place(place: Place | None, fn: Callable[[str], str]) -> Place | None:
    if place is None or not place.name:
        return place
    return replace(place, name=fn(place.name))


def map_item(item: OrderItem, fn: Callable[[str], str]) -> OrderItem:
    if item.place is None or not item.place.name:
        return item
    return replace(item, place=map_place(item.place, fn))


def reveal_json(value: Any, reveal: Callable[[str], str]) -> Any:
    """A JSON value with every sealed string revealed."""
    if isinstance(value, str):
        return reveal(value) if value.startswith(TOKEN_PREFIX) else value
    if isinstance(value, dict):
        return {k: reveal_json(v, reveal) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal_json(v, reveal) for v in value]
    return value

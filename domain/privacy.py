"""Personal data kept sealed in the event log, so that it can be erased without breaking
the hash chain (docs/audit.md, "Erasing personal data").

Personal values (related parties' names, places' names, the notification contact), free
text that may hold personal data (descriptions, notes and their authors, the reasons,
notes and information commands bring) and every text among the attributes kept as sent
(the `extra` dicts of values.py) are sealed by the application before the domain sees
them (docs/audit.md, "What each attribute holds"): the events store an opaque token
(`pii:1:<scope>:<ciphertext>`), encrypted with a key per customer (the scope), and the
chain hashes the token, i.e. what is stored. Readers get the value back through the
mapper (`reveal`); once the customer's key is erased every token of that customer reveals
as `[erased]` and the chain still verifies. The domain only sees this protocol; the keys
and the cipher live outside it (`serviceorders.pii`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel

from .copying import replace
from .values import (
    EntityRef,
    HeaderChange,
    ItemRelation,
    Note,
    OrderHeader,
    OrderItem,
    OrderRelationship,
    Party,
    Place,
    ServiceRecord,
)

TOKEN_PREFIX = "pii:1:"
ERASED = "[erased]"
UNASSIGNED_SCOPE = "unassigned"
ORDER_SCOPE = "order:"  # + the external id: the scope of an order without a customer
SERVICE_SCOPE = "service:"  # + the service id: an imported service without a customer


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
    return f"{ORDER_SCOPE}{external}" if external else (fallback or UNASSIGNED_SCOPE)


def _text(fn: Callable[[str], str], value: str | None) -> str | None:
    return None if value is None else fn(value)


def map_json(value: Any, fn: Callable[[str], str]) -> Any:
    """A JSON value (an attribute kept as sent) with `fn` applied to every string in it:
    keys are kept, numbers, booleans and null are kept as they are."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_json(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(map_json(v, fn) for v in value)
    return value


def _extra(fn: Callable[[str], str], extra: dict[str, Any]) -> dict[str, Any]:
    return map_json(extra, fn) if extra else extra


def map_party(party: Party, fn: Callable[[str], str]) -> Party:
    if not party.name and not party.extra:
        return party
    return replace(party, name=_text(fn, party.name), extra=_extra(fn, party.extra))


def _parties(fn: Callable[[str], str], parties: Iterable[Party]) -> tuple[Party, ...]:
    return tuple(map_party(p, fn) for p in parties)


def map_note(note: Note, fn: Callable[[str], str]) -> Note:
    """A note's text, author and other attributes (free text: may hold personal data)."""
    return replace(
        note, text=fn(note.text), author=_text(fn, note.author), extra=_extra(fn, note.extra)
    )


def _relationships(
    fn: Callable[[str], str], found: Iterable[OrderRelationship]
) -> tuple[OrderRelationship, ...]:
    return tuple(replace(r, extra=_extra(fn, r.extra)) if r.extra else r for r in found)


def map_header(header: OrderHeader, fn: Callable[[str], str]) -> OrderHeader:
    return replace(
        header,
        description=_text(fn, header.description),
        related_parties=_parties(fn, header.related_parties),
        notification_contact=_text(fn, header.notification_contact),
        order_relationships=_relationships(fn, header.order_relationships),
        extra=_extra(fn, header.extra),
    )


def map_change(change: HeaderChange, fn: Callable[[str], str]) -> HeaderChange:
    update: dict[str, Any] = {}
    if change.description is not None:
        update["description"] = fn(change.description)
    if change.related_parties is not None:
        update["related_parties"] = _parties(fn, change.related_parties)
    if change.notification_contact is not None:
        update["notification_contact"] = fn(change.notification_contact)
    if change.extra:  # a None value (removes the attribute) stays None
        update["extra"] = map_json(change.extra, fn)
    if not update:
        return change
    # Like model_copy, replace keeps model_fields_set (plus the fields it sets, which are
    # set already), so "which fields the change names" is unchanged.
    return replace(change, **update)


def map_place(place: Place | None, fn: Callable[[str], str]) -> Place | None:
    if place is None or not place.name:
        return place
    return replace(place, name=fn(place.name))


def map_service_record(record: ServiceRecord, fn: Callable[[str], str]) -> ServiceRecord:
    """An imported service's name, places' names, customer's name and every text among
    its attributes kept as sent."""
    return replace(
        record,
        name=_text(fn, record.name),
        places=tuple(map_place(p, fn) or p for p in record.places),
        customer=map_party(record.customer, fn) if record.customer is not None else None,
        specification=_reference(record.specification, fn),
        extra=_extra(fn, record.extra),
    )


def _reference(ref: EntityRef | None, fn: Callable[[str], str]) -> Any:
    return replace(ref, extra=map_json(ref.extra, fn)) if ref is not None and ref.extra else ref


def _item_relations(
    fn: Callable[[str], str], found: tuple[ItemRelation, ...]
) -> tuple[ItemRelation, ...]:
    return tuple(replace(r, extra=map_json(r.extra, fn)) if r.extra else r for r in found)


def map_item(item: OrderItem, fn: Callable[[str], str]) -> OrderItem:
    """An item's service name, place name and every text among its attributes kept as
    sent (its own, its service's, its characteristics', its specification's, its
    relationships')."""
    update: dict[str, Any] = {}
    if item.service_name:  # the service's name as the sender gave it
        update["service_name"] = fn(item.service_name)
    if item.place is not None and item.place.name:
        update["place"] = map_place(item.place, fn)
    if item.specification is not None and item.specification.extra:
        update["specification"] = _reference(item.specification, fn)
    if item.relationships and any(r.extra for r in item.relationships):
        update["relationships"] = _item_relations(fn, item.relationships)
    if item.extra:
        update["extra"] = map_json(item.extra, fn)
    if item.service_extra:
        update["service_extra"] = map_json(item.service_extra, fn)
    if item.characteristic_extra:
        update["characteristic_extra"] = {
            k: map_json(v, fn) for k, v in item.characteristic_extra.items()
        }
    return replace(item, **update) if update else item


# Values that never hold a token: skipped without a call (reveal_deep runs over the whole
# order after every command).
_PLAIN = (int, float, bool, type(None), datetime, date, UUID)


def reveal_deep(value: Any, reveal: Callable[[str], str]) -> Any:
    """`value` (a value object, a tuple, list or dict of them, a string) with every sealed
    string in it revealed: the same object when it holds none. Keys are kept."""
    if isinstance(value, str):
        return reveal(value) if value.startswith(TOKEN_PREFIX) else value
    if isinstance(value, BaseModel):
        changed = _revealed(value.__dict__.items(), reveal)  # a value object's fields
        return replace(value, **changed) if changed else value
    if isinstance(value, tuple | list):
        found = _revealed(enumerate(value), reveal)
        return type(value)(found.get(i, v) for i, v in enumerate(value)) if found else value
    if isinstance(value, dict):
        mapped = _revealed(value.items(), reveal)
        return {**value, **mapped} if mapped else value
    return value


def _revealed(pairs: Iterable[tuple[Any, Any]], reveal: Callable[[str], str]) -> dict[Any, Any]:
    """The members of `pairs` (key or index, value) that `reveal_deep` changes, by key."""
    changed: dict[Any, Any] = {}
    for key, old in pairs:
        if isinstance(old, _PLAIN):
            continue
        new = reveal_deep(old, reveal)
        if new is not old:
            changed[key] = new
    return changed


def reveal_json(value: Any, reveal: Callable[[str], str]) -> Any:
    """A JSON value with every sealed string revealed."""
    return map_json(value, lambda text: reveal(text) if text.startswith(TOKEN_PREFIX) else text)

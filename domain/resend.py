"""Re-sends: a `ReceiveOrder` whose id is taken (the same `externalId`, or the same
idempotency key) is the order sent again, or a different order under a key already used.

The content a re-send brings (header, items, notes, as the command has them: personal
values in clear) is compared with the content the existing order was created with (as it
entered review: its `OrderDrafted` and what was added before its first `OrderSubmitted`,
never its state now, which revisions and decisions may have changed since). The same
content: the first order is the answer. Different content: `ResendConflict`, naming the
paths that differ, never their values. An id held by a draft, or by a deleted (discarded or
archived) order: `ExternalIdTaken`.

Like with like: the creation fills in a specification's name and version from the catalog
when the sender left them out (`Catalog.resolve`), so those two are compared only when the
re-send states them; an item's state is not content (a draft's items have none); items are
matched by id (their order in the message does not matter); a characteristic's value is
compared whole, as JSON (`true` is not `1`, `100` is `100.0`).

Pure: the events to read are handed in (`creation_events` pages through any store with the
event store's `get(order_id, gt=, lte=, limit=)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel

from . import events as ev
from . import privacy
from .copying import replace
from .errors import ExternalIdTaken, ResendConflict
from .order import ServiceOrder
from .values import Note, OrderHeader, OrderItem, OrderState

EXTERNAL_ID = "externalId"
IDEMPOTENCY_KEY = "Idempotency-Key"
_PAGE = 16  # events read at a time while looking for the first submission


@dataclass(frozen=True, slots=True)
class Content:
    """What an order is made of when it is created: header, items, notes."""

    header: OrderHeader
    items: tuple[OrderItem, ...]
    notes: tuple[Note, ...] = ()

    def revealed(self, reveal: Callable[[str], str] | None) -> Content:
        """The content with its sealed personal values revealed (as it was when sent)."""
        if reveal is None:
            return self
        return Content(
            privacy.reveal_deep(self.header, reveal),
            tuple(privacy.reveal_deep(i, reveal) for i in self.items),
            tuple(privacy.reveal_deep(n, reveal) for n in self.notes),
        )


def key_of(header: OrderHeader) -> tuple[str, str | None]:
    """Which key named the order, and its value: the external id when the header has one,
    else the idempotency key (whose value the domain does not keep: None)."""
    if header.external_id:
        return EXTERNAL_ID, header.external_id
    return IDEMPOTENCY_KEY, None


# -------------------------------------------------------------------- comparison
def differences(received: Content, first: Content) -> tuple[str, ...]:
    """The paths at which `received` differs from `first` (`description`,
    `related_parties[0].name`, `items[1].characteristics.bandwidthMbps`, `notes`), in a
    stable order; never a value. Empty: the same content."""
    paths: list[str] = []
    _model(paths, "", received.header, first.header)
    _items(paths, received.items, first.items)
    _sequence(paths, "notes", received.notes, first.notes)
    return tuple(paths)


def _items(paths: list[str], received: Sequence[OrderItem], first: Sequence[OrderItem]) -> None:
    ids = [i.id for i in received]
    if len(set(ids)) != len(ids):  # the creation refuses duplicates: no pairing by id
        paths.append("items")
        return
    old = {i.id: i for i in first}
    new = {i.id: i for i in received}
    for item_id in sorted(new.keys() | old.keys()):
        where = f"items[{item_id}]"
        if item_id not in new or item_id not in old:
            paths.append(where)
        else:
            _model(paths, where, _like(new[item_id], old[item_id]), _stateless(old[item_id]))


def _stateless(item: OrderItem) -> OrderItem:
    return item if item.state is None else replace(item, state=None)


def _like(received: OrderItem, first: OrderItem) -> OrderItem:
    """`received` as the creation would have stored it next to `first`: no state, and the
    specification's name and version the catalog filled in, where the sender left them out."""
    item = _stateless(received)
    spec, known = item.specification, first.specification
    if spec is None or known is None or spec.id != known.id:
        return item
    filled = {
        name: getattr(known, name)
        for name in ("name", "version")
        if getattr(spec, name) is None and getattr(known, name) is not None
    }
    return replace(item, specification=replace(spec, **filled)) if filled else item


def _model(paths: list[str], where: str, new: BaseModel, old: BaseModel) -> None:
    if type(new) is not type(old):
        paths.append(where or "header")
        return
    for name in type(new).model_fields:
        _value(paths, f"{where}.{name}" if where else name, getattr(new, name), getattr(old, name))


def _value(paths: list[str], where: str, new: Any, old: Any) -> None:
    if isinstance(new, BaseModel) and isinstance(old, BaseModel):
        _model(paths, where, new, old)
    elif where.endswith(".characteristics") and isinstance(new, dict) and isinstance(old, dict):
        # Per characteristic (the names are the catalog's); each value compared whole.
        for name in sorted(new.keys() | old.keys(), key=str):
            if name not in new or name not in old or not _same(new[name], old[name]):
                paths.append(f"{where}.{name}")
    elif isinstance(new, tuple | list) and isinstance(old, tuple | list):
        _sequence(paths, where, new, old)
    elif not _same(new, old):
        paths.append(where)


def _sequence(paths: list[str], where: str, new: Sequence[Any], old: Sequence[Any]) -> None:
    if len(new) != len(old):
        paths.append(where)
        return
    for index, (a, b) in enumerate(zip(new, old, strict=True)):
        _value(paths, f"{where}[{index}]", a, b)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: `True` is not `1` (Python says it is), `100 == 100.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
            return False
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        if not (isinstance(a, list | tuple) and isinstance(b, list | tuple)) or len(a) != len(b):
            return False
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) != isinstance(b, str):
        return False
    return bool(a == b)


# ------------------------------------------------------------ the first content
def first_content(events: Iterable[ev.OrderEvent]) -> Content | None:
    """The content an order entered review with, from its events (oldest first): its
    creation and what was added before its first `OrderSubmitted` (a received order: its
    `OrderDrafted`). None: it never entered review (a draft)."""
    order: Any = None
    for event in events:
        order = event.mutate(order)
        if isinstance(event, ev.OrderSubmitted):
            items = tuple(_stateless(i) for i in order.items.values())
            return Content(order.header, items, tuple(order.notes))
    return None


class EventReader(Protocol):
    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = ...,
        lte: int | None = ...,
        limit: int | None = ...,
    ) -> Iterator[Any]: ...


def creation_events(
    store: EventReader,
    order_id: UUID,
    stored_version: int | None,
    pending: Sequence[Any] = (),
) -> Iterator[ev.OrderEvent]:
    """The order's events, oldest first, read a page at a time as they are consumed: the
    stored ones up to `stored_version` (None: nothing stored yet), then `pending` (new in
    memory, not saved yet)."""
    if stored_version:
        after = 0
        while after < stored_version:
            page = list(store.get(order_id, gt=after, lte=stored_version, limit=_PAGE))
            if not page:
                break
            yield from page
            after = page[-1].originator_version
    yield from pending


# --------------------------------------------------------------------- the check
def check(
    received: Content,
    order: ServiceOrder,
    events: Iterable[ev.OrderEvent],
    reveal: Callable[[str], str] | None = None,
) -> None:
    """Whether `received` may be answered with `order`, the order that holds its id: it
    may when the order is in review or beyond and was created with the same content.
    `events`: the order's events (`creation_events`); `reveal`: the application's sealer's
    (stored events read through the mapper are revealed already; events not saved yet
    hold tokens). Raises ExternalIdTaken (a draft, a deleted order) or ResendConflict."""
    key, value = key_of(received.header)
    if order.deleted or order.state is OrderState.DRAFT:
        holder = (
            ("a discarded draft" if order.state is OrderState.DRAFT else "an archived order")
            if order.deleted
            else "a draft"
        )
        raise ExternalIdTaken(order.id, key, value, holder)
    first = first_content(events)
    if first is None:  # pragma: no cover - an order beyond draft was submitted
        raise ExternalIdTaken(order.id, key, value, "a draft")
    paths = differences(received, first.revealed(reveal))
    if paths:
        raise ResendConflict(order.id, key, value, paths)

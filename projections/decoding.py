"""Stored events decoded for the projector without pydantic (issue 21).

The projector reads every event it applies, and decoding one into its pydantic model
(validating every nested value again) was its largest cost per event (docs/performance.md).
Read-only events do not need the validation: the stored state is a dump of a model that
was valid when it was written, and its hash is checked by `audit verify`, not here.

Here each event class, and each value class it holds, has a *mirror*: a `msgspec.Struct`
with the same field names, types and defaults, generated from the pydantic model's fields,
carrying the model's own methods and properties, so that the domain's own `apply`
functions, the TMF641 rendering and the read models' row functions work on it unchanged
(the projections test an event's class with `is_a`, which knows mirrors). `msgspec`
decodes the stored JSON straight into the mirrors, in C: about 5 us per event against
about 21 us for orjson + pydantic (docs/performance.md).

The fold stays the domain's: `mutate` below does what `ChainedEvent.mutate` and the
library's `mutate` do, and calls the pydantic class's `apply` with the mirror as `self`.

What is not mirrored is decoded as before (`PydanticMapper.to_domain_event`), for the whole
order, so that an order's state never mixes a mirror with code that needs a model:
- event types whose `apply` validates or copies pydantic models (`SLOW`);
- events stored at an older class version (upcasting works on the decoded dict);
- services' events (few, and their aggregate's init takes arguments);
- a state the regex reveal leaves sealed, a cipher or a compressor.
Tests: tests/integration/test_fast_decoding.py (every read model, same rows, on random
histories of every event type; every event type's mirror decodes to the model's fields).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar, get_args, get_origin, overload

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from serviceorders.domain import events as ev
from serviceorders.domain.codec import _SEALED, reveal_tokens
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import DateOrDateTime
from typing_extensions import TypeIs

# Events whose `apply` builds or copies pydantic models from the order's values
# (model_validate, model_copy, model_fields_set), or stores the event's values inside a
# new model: an order with one of them is decoded the pydantic way, whole.
SLOW: frozenset[type[ev.OrderEvent]] = frozenset(
    {
        ev.LineConfigured,
        ev.OrderRevised,
        ev.RevisionProposed,
        ev.ProposalApproved,
        ev.OrderResubmitted,
    }
)


def _date_or_datetime(value: str) -> date | datetime:
    """`DateOrDateTime` as pydantic reads it: a date-only string is a date."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        try:
            return datetime.fromisoformat(value)
        except ValueError as e:
            raise msgspec.ValidationError(f"not a date or date-time: {value!r}") from e


def _dates_after_init(names: tuple[str, ...]) -> Callable[[Any], None]:
    def __post_init__(self: Any) -> None:
        for name in names:
            value = getattr(self, name)
            if type(value) is str:  # decoded; a copy (copy.deepcopy) holds the date already
                msgspec.structs.force_setattr(self, name, _date_or_datetime(value))

    return __post_init__


T = TypeVar("T")
U = TypeVar("U")
_IDENTITY = ("originator_id", "originator_version")
# What a mirror takes from its model's classes: methods, properties and plain class
# attributes (TOPIC, class_version).
_COPIED = (types.FunctionType, property, staticmethod, classmethod, str, int)
_MIRRORS: dict[type[BaseModel], type[msgspec.Struct]] = {}


def _mirror_type(tp: Any) -> Any:
    if tp == DateOrDateTime:
        return str  # made a date or a date-time by the mirror's __post_init__
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return mirror(tp)
    origin = get_origin(tp)
    if origin is None:
        return tp
    if origin is typing.Annotated:
        args = get_args(tp)
        return _mirror_type(args[0])
    args = tuple(_mirror_type(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return typing.Union[args]  # noqa: UP007 (a tuple of types, built at run time)
    if origin is typing.Literal:
        return tp
    return origin[args]


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        factory = info.default_factory
        return msgspec.field(default_factory=lambda: _mirrored(factory()))  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return msgspec.NODEFAULT
    value = info.default
    if isinstance(value, BaseModel):
        return msgspec.field(default_factory=lambda: _mirrored(value))
    return value


def _mirrored(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return msgspec.convert(value.model_dump(mode="json"), mirror(type(value)))
    return value


def _replace(self: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(self, **changes)


def _model_dump(self: Any, *, mode: str = "python", exclude_none: bool = False) -> Any:
    """What the model's `model_dump(mode="json")` gives (the only mode the read side uses
    on a decoded value): fields in order, empty `exclude_if` fields left out."""
    if mode != "json":
        raise NotImplementedError("mirrors dump in JSON mode only")
    model = self._model
    out = {}
    for name, info in model.model_fields.items():
        value = getattr(self, name)
        if exclude_none and value is None:
            continue
        if info.exclude_if is not None and info.exclude_if(value):
            continue
        out[name] = msgspec.to_builtins(value)
    return out


def mirror(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The Struct that mirrors `model` (made once, then cached)."""
    found = _MIRRORS.get(model)
    if found is not None:
        return found
    hints = typing.get_type_hints(model, include_extras=True)
    is_event = issubclass(model, ev.ChainedEvent)
    fields = []
    for name, info in model.model_fields.items():
        if is_event and name in _IDENTITY:  # not in the stored state: set after decoding
            fields.append((name, Any, None))
        else:
            fields.append((name, _mirror_type(hints[name]), _default(info)))
    namespace: dict[str, Any] = {
        "_model": model,
        "__mirror_of__": model,
        "_replace": _replace,
        "model_dump": _model_dump,
        "model_fields_set": property(lambda self: set(self.__struct_fields__)),
    }
    # The model's own methods, properties and class attributes (not pydantic's).
    for klass in reversed(model.__mro__):
        if klass is BaseModel or not issubclass(klass, BaseModel):
            continue
        for key, value in vars(klass).items():
            if key.startswith("__") or key in model.model_fields or key.startswith("model_"):
                continue
            if isinstance(value, _COPIED):
                namespace[key] = value
    if is_event:
        namespace["mutate"] = mutate
    dates = tuple(
        n for n in model.model_fields if DateOrDateTime in (hints[n], *get_args(hints[n]))
    )
    if dates:
        namespace["__post_init__"] = _dates_after_init(dates)
    struct = msgspec.defstruct(
        model.__name__,
        fields,
        namespace=namespace,
        kw_only=True,
        # Events get their id and version after decoding; values stay immutable.
        frozen=not is_event,
        module=__name__,
    )
    _MIRRORS[model] = struct
    return struct


def model_of(event: Any) -> type[Any]:
    """The event's class: the pydantic class a mirror mirrors, or its own."""
    kind = type(event)
    return getattr(kind, "__mirror_of__", kind)


@overload
def is_a(event: object, classes: type[T]) -> TypeIs[T]: ...
@overload
def is_a(event: object, classes: tuple[type[T], type[U]]) -> TypeIs[T | U]: ...
def is_a(event: object, classes: Any) -> bool:
    """`isinstance(event, classes)`, for a pydantic event or its mirror (pydantic's
    metaclass answers no for a virtual subclass, so mirrors cannot be registered)."""
    return issubclass(model_of(event), classes)


def mutate(event: Any, order: ServiceOrder | None) -> ServiceOrder:
    """`event.mutate(order)` for a mirrored order event: the library's checks and
    bookkeeping, then the event class's own `apply`, then `ChainedEvent.mutate`'s."""
    cls = event._model
    if order is None:
        if cls is not ev.OrderDrafted:
            raise ValueError(f"{cls.__name__} cannot start an order")
        order = object.__new__(ServiceOrder)
        order.__base_init__(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            timestamp=event.timestamp,
        )
        order.__init__()  # type: ignore[misc]
        state_before = None
        cls.apply(event, order)
    else:
        if event.originator_id != order.id:
            raise ValueError(f"event of {event.originator_id} applied to order {order.id}")
        if event.originator_version != order.version + 1:
            raise ValueError(
                f"event version {event.originator_version} after order version {order.version}"
            )
        state_before = order.state
        cls.apply(event, order)
        order.version = event.originator_version
        order.modified_on = event.timestamp
    order.head_hash = event.hash
    if order.state != state_before:
        order.state_since = event.timestamp
    return order


class FastDecoder:
    """Decodes stored order events into mirrors where it can (see the module's notes);
    `mapper` decodes the rest, exactly as before."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        self.reveal: Callable[[str], str] | None = getattr(mapper, "reveal", None)
        self.usable = not mapper.cipher and not mapper.compressor
        self._decoders: dict[str, msgspec.json.Decoder[Any] | None] = {}
        self._marks: dict[str, bytes | None] = {}

    def _decoder(self, topic: str) -> msgspec.json.Decoder[Any] | None:
        try:
            return self._decoders[topic]
        except KeyError:
            pass
        decoder = None
        try:
            cls = resolve_topic(topic)
        except Exception:
            cls = None
        if isinstance(cls, type) and issubclass(cls, ev.OrderEvent) and cls not in SLOW:
            decoder = msgspec.json.Decoder(mirror(cls))
            version = getattr(cls, "class_version", 1)
            # Stored at the class's version: no upcasting (a version 1 event has no mark).
            self._marks[topic] = b'"class_version":%d' % version if version > 1 else None
        self._decoders[topic] = decoder
        return decoder

    def decode(self, stored: StoredEvent) -> Any:
        """A mirror of the stored event; the pydantic event when its topic has no mirror
        or its bytes need what only the mapper does (upcasting, a token left sealed)."""
        decoder = self._decoder(stored.topic) if self.usable else None
        data = stored.state
        if decoder is None:
            return self.mapper.to_domain_event(stored)
        mark = self._marks[stored.topic]
        if (mark is None and b'"class_version"' in data) or (mark is not None and mark not in data):
            return self.mapper.to_domain_event(stored)  # upcast (or refused) as before
        if _SEALED in data:
            reveal = self.reveal
            if reveal is None:
                return self.mapper.to_domain_event(stored)
            data = reveal_tokens(data, reveal)
            if _SEALED in data:
                return self.mapper.to_domain_event(stored)
        event = decoder.decode(data)
        event.originator_id = stored.originator_id
        event.originator_version = stored.originator_version
        return event

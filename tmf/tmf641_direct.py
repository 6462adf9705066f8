"""A plain TMF641 `ServiceOrder_Create` straight to the domain values (issue 21: one object
graph per order on the way in).

`decode_create(data)` reads the decoded JSON of a creation into the header, items and
notes `order_to_domain(ServiceOrderCreate.model_validate(data))` makes, without building
the TMF641 models in between. It reads the common shape only, and returns None for
anything else: then the door validates the body with the models as before, which take
or refuse it and name every problem (the one place that words refusals). So it never
refuses anything, and takes only what the models take, giving exactly what they give:

* every text attribute of a model is read with the model's own limits (taken from the
  models' fields, `_Shape`), and must be a JSON string or null where the model allows
  null: no conversion is ever made (any other JSON type: None, the models decide);
* an item's `action` is one of ItemAction's values, `quantity` an integer in the model's
  range; dates go through a pydantic adapter of the model field's own type, then the
  models' timezone rule; characteristic values through the models' `long_text` rule;
* the attributes the models type and the domain keeps elsewhere (`@type`, `href`, a
  party's or note's other typed attributes) and every attribute the models do not
  define are kept as `order_to_domain` keeps them (`Tmf.rest`: at most one typed one,
  first, then the others in the order sent; more typed ones: None);
* None (the models' path) for: a server-owned attribute present at all (even null), a
  Python field name used instead of the attribute's name, nested items, an item
  relationship other than `{"relationshipType": "dependency", "orderItem": {"itemId": ..}}`,
  places other than one with an id and nothing but id / name / role, order
  relationships, a characteristic name given twice, a NUL character (unless the caller
  checked the bytes), JSON of another type where an object or array belongs.

The domain values are built with `trusted` (domain/trusted.py): every check the models
and the domain values make of these attributes was made above. tests/unit/test_direct
compares the result with the models' path on generated and mutated bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from annotated_types import MaxLen, MinLen
from pydantic import TypeAdapter, ValidationError
from serviceorders.domain.trusted import trusted
from serviceorders.domain.values import (
    ItemAction,
    Note,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    SpecRef,
)

from .tmf641_in import (
    _ON_CREATE,
    _ON_ITEM,
    Characteristic,
    NoteIn,
    PlaceRef,
    RelatedParty,
    Service,
    ServiceOrderCreate,
    ServiceOrderItem,
    SpecificationRef,
    Tmf,
    find_nul,
    long_text,
)


class _NotPlain(Exception):
    """Outside what this module reads: the models read the body."""


_ABSENT = object()
_ACTIONS = {a.value: a for a in ItemAction}


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a model defines, by the attribute's name as sent: for a text, (its max length,
    min length, whether the domain types it), for another attribute None with the same
    last member (`fields`); the texts it requires; the Python names a sender may not use
    instead (populate_by_name would take them)."""

    fields: dict[str, tuple[int | None, int, bool] | tuple[None, None, bool]]
    required: tuple[str, ...]
    python_names: frozenset[str]

    @classmethod
    def of(cls, model: type[Tmf]) -> _Shape:
        fields: dict[str, Any] = {}
        required = []
        for name, field in model.model_fields.items():
            sent = field.alias or name
            domain = name in model.DOMAIN
            if field.annotation in (str, str | None):
                longest = next(
                    (m.max_length for m in field.metadata if isinstance(m, MaxLen)), None
                )
                shortest = next((m.min_length for m in field.metadata if isinstance(m, MinLen)), 0)
                fields[sent] = (longest, shortest, domain)
                if field.is_required():
                    required.append(sent)
            else:
                fields[sent] = (None, None, domain)
        return cls(
            fields=fields,
            required=tuple(required),
            python_names=frozenset(n for n, f in model.model_fields.items() if (f.alias or n) != n),
        )


_ORDER, _ITEM, _SERVICE = (
    _Shape.of(ServiceOrderCreate),
    _Shape.of(ServiceOrderItem),
    _Shape.of(Service),
)
_CHAR, _SPEC, _PLACE = _Shape.of(Characteristic), _Shape.of(SpecificationRef), _Shape.of(PlaceRef)
_PARTY, _NOTE = _Shape.of(RelatedParty), _Shape.of(NoteIn)
# The models' own types of the dates (the timezone rule is applied after, as theirs is).
_ORDER_DATE: TypeAdapter[Any] = TypeAdapter(
    ServiceOrderCreate.model_fields["requested_start_date"].annotation
)
_NOTE_DATE: TypeAdapter[Any] = TypeAdapter(NoteIn.model_fields["date"].annotation)
_PLACE_KEYS = frozenset({"id", "name", "role"})
_DEPENDENCY_KEYS = frozenset({"relationshipType", "orderItem"})


def _read(
    data: Any, shape: _Shape, refused: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the attributes the model types, by the name sent, texts checked; what `rest()`
    gives: the one typed attribute the domain does not type, then the others as sent)."""
    if type(data) is not dict:
        raise _NotPlain
    typed: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    kept: str | None = None  # the typed attribute the domain does not type
    fields = shape.fields
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            if key in refused or key in shape.python_names:
                raise _NotPlain
            rest[key] = value
            continue
        longest, shortest, domain = field
        if shortest is not None and value is not None:  # a text
            if type(value) is not str or len(value) < shortest:
                raise _NotPlain
            if longest is not None and len(value) > longest:
                raise _NotPlain
        typed[key] = value
        if not domain:
            if kept is not None:  # (rest() gives two or more in an order of its own)
                raise _NotPlain
            kept = key
    for key in shape.required:
        if typed.get(key) is None:
            raise _NotPlain
    if kept is not None:
        rest = {kept: typed[kept], **rest}
    return typed, rest


def _list(value: Any, longest: int) -> list[Any]:
    if value is _ABSENT:
        return []
    if type(value) is not list or len(value) > longest:
        raise _NotPlain
    return value


def _date(adapter: TypeAdapter[Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        found = adapter.validate_python(value)
    except ValidationError:
        raise _NotPlain from None
    if isinstance(found, datetime) and found.tzinfo is None:
        raise _NotPlain
    return found


def _party(data: Any) -> Party:
    typed, rest = _read(data, _PARTY)
    return trusted(
        Party,
        id=typed["id"],
        name=typed.get("name"),
        role=typed.get("role"),
        referred_type=typed.get("@referredType"),
        extra=rest,
    )


def _note(data: Any) -> Note:
    typed, rest = _read(data, _NOTE)
    return trusted(
        Note,
        text=typed["text"],
        author=typed.get("author"),
        date=_date(_NOTE_DATE, typed.get("date")),
        extra=rest,
    )


def _item(data: Any) -> OrderItem:
    typed, extra = _read(data, _ITEM, _ON_ITEM)
    action = typed.get("action", _ABSENT)
    if type(action) is not str or action not in _ACTIONS:
        raise _NotPlain
    quantity = typed.get("quantity", 1)
    if type(quantity) is not int or not 1 <= quantity <= 100000:
        raise _NotPlain
    if _list(typed.get("serviceOrderItem", _ABSENT), 500):
        raise _NotPlain  # nested items: the models' path
    deps: list[str] = []
    for relation in _list(typed.get("serviceOrderItemRelationship", _ABSENT), 100):
        if type(relation) is not dict or relation.keys() != _DEPENDENCY_KEYS:
            raise _NotPlain
        ref = relation["orderItem"]
        if relation["relationshipType"] != "dependency" or type(ref) is not dict:
            raise _NotPlain
        if ref.keys() != {"itemId"} or type(target := ref["itemId"]) is not str:
            raise _NotPlain
        if len(target) > 100:
            raise _NotPlain
        if target:
            deps.append(target)
    if "service" not in typed:
        raise _NotPlain
    service, service_extra = _read(typed["service"], _SERVICE)
    spec_data = service.get("serviceSpecification")
    specification = None
    if spec_data is not None:
        spec, spec_extra = _read(spec_data, _SPEC)
        fields = {"id": spec["id"], "name": spec.get("name"), "version": spec.get("version")}
        if spec_extra:
            fields["extra"] = spec_extra
        specification = trusted(SpecRef, **fields)
    characteristics: dict[str, Any] = {}
    characteristic_extra: dict[str, dict[str, Any]] = {}
    for found in _list(service.get("serviceCharacteristic", _ABSENT), 500):
        char, char_extra = _read(found, _CHAR)
        name, value = char["name"], char.get("value")
        if name in characteristics or long_text(value) is not None:
            raise _NotPlain  # a name twice, a text too long: the models say so
        characteristics[name] = value
        if char_extra:
            characteristic_extra[name] = char_extra
    place = None
    places = _list(service.get("place", _ABSENT), 50)
    if places:
        if len(places) != 1 or type(places[0]) is not dict or not places[0].keys() <= _PLACE_KEYS:
            raise _NotPlain
        sent, _ = _read(places[0], _PLACE)
        if not sent.get("id"):
            raise _NotPlain
        place = trusted(Place, id=sent["id"], name=sent.get("name"), role=sent.get("role"))
    kept: dict[str, Any] = {}
    if service_extra:
        kept["service_extra"] = service_extra
    if characteristic_extra:
        kept["characteristic_extra"] = characteristic_extra
    if extra:
        kept["extra"] = extra
    return trusted(
        OrderItem,
        id=typed["id"],
        action=_ACTIONS[action],
        specification=specification,
        service_id=service.get("id"),
        service_name=service.get("name"),
        characteristics=characteristics,
        place=place,
        quantity=quantity,
        depends_on=tuple(dict.fromkeys(deps)) if len(deps) > 1 else tuple(deps),
        **kept,
    )


def decode_create(
    data: Any, nul_checked: bool = False
) -> tuple[OrderHeader, list[OrderItem], list[Note]] | None:
    """What `order_to_domain(ServiceOrderCreate.model_validate(data))` gives, read straight
    from `data`; None when `data` is not of the plain shape this module reads (see the
    module's docstring). `nul_checked`: the caller found no NUL in the message's bytes."""
    try:
        if not nul_checked and find_nul(data) is not None:
            return None
        typed, extra = _read(data, _ORDER, _ON_CREATE)
        if "serviceOrderItem" not in typed or _list(typed.get("orderRelationship", _ABSENT), 100):
            return None
        items = [_item(i) for i in _list(typed["serviceOrderItem"], 500)]
        header = trusted(
            OrderHeader,
            description=typed.get("description"),
            priority=typed.get("priority"),
            notification_contact=typed.get("notificationContact"),
            requested_start_date=_date(_ORDER_DATE, typed.get("requestedStartDate")),
            requested_completion_date=_date(_ORDER_DATE, typed.get("requestedCompletionDate")),
            external_id=typed.get("externalId"),
            category=typed.get("category"),
            related_parties=tuple(
                _party(p) for p in _list(typed.get("relatedParty", _ABSENT), 100)
            ),
            order_relationships=(),
            extra=extra,
        )
        notes = [_note(n) for n in _list(typed.get("note", _ABSENT), 100)]
    except _NotPlain:
        return None
    return header, items, notes

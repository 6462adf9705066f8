"""TMF641 v4 request bodies -> domain values, for every door (REST API, Kafka, CLI files).

The models are lenient where TMF641 is (`@type` and friends are optional) and strict where
the domain needs it; every problem is reported at once. Nothing sent is lost (issue 19):
every attribute the domain does not type is kept, as sent, in the `extra` of the value it
belongs to (`Tmf.rest`), and tmf641.py returns it; the few server-owned attributes a
client may not send are refused, naming them (REFUSED_ON_CREATE and friends).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from serviceorders.domain.privacy import reveal_deep
from serviceorders.domain.trusted import trusted
from serviceorders.domain.values import (
    HeaderChange,
    ItemAction,
    ItemRelation,
    Note,
    OrderHeader,
    OrderItem,
    OrderRelationship,
    Party,
    Place,
    SpecRef,
)
from serviceorders.support.limits import MAX_HREF, MAX_ID, MAX_NAME, MAX_TYPE
from serviceorders.tmf.outcomes import item_error_messages

if TYPE_CHECKING:
    from serviceorders.domain.order import ServiceOrder

MAX_ITEMS = 500
MAX_TEXT = 4000

# Issue 19 (lossless TMF641): every attribute a door receives is kept and returned as
# sent, except these, refused (400 naming them; a dead letter at the Kafka door) because
# the server owns them (docs/lifecycle.md, "What the TMF641 doors keep, and the few
# attributes they refuse"). A null value counts as absent.
REFUSED_ON_CREATE = (
    "id",
    "href",
    "state",
    "orderDate",
    "startDate",
    "completionDate",
    "expectedCompletionDate",
    "cancellationDate",
    "cancellationReason",
    "errorMessage",
    "milestone",
    "jeopardyAlert",
)
# On every serviceOrderItem of a create (nested ones too). A patch or revision may send them
# only as an echo (a client sends back the items it read): each equal to what GET shows for
# that existing item is taken and not kept (the server's); any other value, or one on a new
# item, is refused like REFUSED_ON_PATCH, in the same message (`ServiceOrderUpdate.refusal`).
REFUSED_ON_ITEM = ("state", "errorMessage")
# A patch (REST PATCH, a Kafka revision): 400 for these ...
REFUSED_ON_PATCH = (
    "expectedCompletionDate",
    "externalReference",
    "orderRelationship",
    *(n for n in REFUSED_ON_CREATE if n not in ("id", "href", "state", "expectedCompletionDate")),
)
# ... these may only repeat the order's current value (409 otherwise, REST PATCH) ...
PATCH_SAME_VALUE_ONLY = ("state", "externalId")
# ... and these name the order patched (a Kafka revision names it by `id`): not kept.
PATCH_NAMES_THE_ORDER = ("id", "href")
_ON_CREATE, _ON_ITEM = frozenset(REFUSED_ON_CREATE), frozenset(REFUSED_ON_ITEM)


def _with_timezone(value: Any) -> Any:
    """TMF date-times are RFC 3339: with a timezone (a plain date is a day, not a time)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("a date-time needs a timezone (e.g. Z or +01:00)")
    return value


def find_nul(data: Any) -> str | None:
    """Where the first NUL (U+0000) character is in a JSON document (a key or a string),
    as a dotted path; None when there is none. PostgreSQL cannot store NUL in text, so an
    order carrying one would stop the read models: every door refuses them."""
    stack: list[tuple[str, Any]] = [("body", data)]
    while stack:  # iterative: bodies may nest deeper than the recursion limit allows
        where, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    return where
                stack.append((f"{where}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}", item) for i, item in enumerate(value))
    return None


MAX_DEPTH = 64  # JSON nesting, at every door


def long_text(value: Any, where: str = "value", limit: int = MAX_TEXT) -> str | None:
    """Why a free JSON value (a characteristic's) cannot be taken: a string or key in it
    longer than `limit` characters; None when every one fits."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        at, node = stack.pop()
        if isinstance(node, str):
            if len(node) > limit:
                return f"{at}: text of {len(node)} characters; the limit is {limit}"
        elif isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and len(key) > MAX_ID:
                    return f"{at}: a key of {len(key)} characters; the limit is {MAX_ID}"
                stack.append((f"{at}.{key}", item))
        elif isinstance(node, list):
            stack.extend((f"{at}.{i}", item) for i, item in enumerate(node))
    return None


INT_RANGE = (-(2**63), 2**64 - 1)  # what the event store's JSON (orjson) can hold


def json_limits(data: Any, root: str = "body") -> str | None:
    """Why a decoded JSON document cannot be taken (nesting deeper than MAX_DEPTH, an
    integer the store cannot hold), or None; `root` names the document in the answer."""
    stack: list[tuple[Any, int, str]] = [(data, 1, root)]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            return f"{where}: nests deeper than {MAX_DEPTH} levels"
        if isinstance(node, dict):  # every value is a level, leaves included (root = 1)
            stack.extend((v, depth + 1, f"{where}.{k}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, depth + 1, f"{where}.{i}") for i, v in enumerate(node))
        elif (
            isinstance(node, int)
            and not isinstance(node, bool)
            and not (INT_RANGE[0] <= node <= INT_RANGE[1])
        ):
            return f"{where}: the integer is outside {INT_RANGE[0]}..{INT_RANGE[1]}"
        elif isinstance(node, float) and not math.isfinite(node):
            # Python's json reads NaN, Infinity, -Infinity and numbers beyond a double's
            # range (1e400 -> inf); JSON has no such values and the store's JSON would turn
            # them into null: refused before anything is written.
            return (
                f"{where}: {node!r} is not a finite number (NaN, Infinity and numbers "
                f"beyond ±{sys.float_info.max:.4g} are refused)"
            )
    return None


def _server_owned(data: Any, names: tuple[str, ...], where: str = "") -> list[str]:
    """The attributes among `names` that `data` (a JSON object) gives a value."""
    if not isinstance(data, dict):
        return []
    return [f"{where}{n}" for n in names if data.get(n) is not None]


def refusal(found: list[str], on: str) -> str:
    """The one message naming every refused attribute found."""
    return (
        f"{', '.join(found)}: set by the server, not taken {on} "
        "(docs/lifecycle.md, 'What the TMF641 doors keep')"
    )


class Tmf(BaseModel):
    # extra="allow": what a model does not define is kept (`model_extra`), see `rest`.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type_: str | None = Field(default=None, alias="@type", max_length=MAX_TYPE)
    base_type: str | None = Field(default=None, alias="@baseType", max_length=MAX_TYPE)
    schema_location: str | None = Field(default=None, alias="@schemaLocation", max_length=MAX_HREF)

    # The fields (Python names) the domain types; every other attribute set is `rest`.
    DOMAIN: ClassVar[frozenset[str]] = frozenset()

    def rest(self) -> dict[str, Any]:
        """The attributes as sent that the domain does not type: the `extra` of the value
        this becomes (empty, and cheap, when there are none)."""
        given = self.model_fields_set  # (the extra attributes are among them)
        if given <= self.DOMAIN:  # the common case: nothing more was sent
            return {}
        aliases = _aliases(type(self))
        rest = {aliases[name]: getattr(self, name) for name in given if name in aliases}
        if self.model_extra:
            rest.update(self.model_extra)
        return rest


_ALIASES: dict[type[Tmf], dict[str, str]] = {}


def _aliases(model: type[Tmf]) -> dict[str, str]:
    """A model's fields the domain does not type: Python name -> the name sent."""
    found = _ALIASES.get(model)
    if found is None:
        found = _ALIASES[model] = {
            name: field.alias or name
            for name, field in model.model_fields.items()
            if name not in model.DOMAIN
        }
    return found


class Characteristic(Tmf):
    DOMAIN = frozenset({"name", "value"})

    name: str = Field(min_length=1, max_length=200)
    value: Any = None
    value_type: str | None = Field(default=None, alias="valueType", max_length=MAX_TYPE)

    @field_validator("value")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        problem = long_text(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class SpecificationRef(Tmf):
    DOMAIN = frozenset({"id", "name", "version"})

    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    version: str | None = Field(default=None, max_length=100)


class PlaceRef(Tmf):
    DOMAIN = frozenset({"id", "name", "role"})

    id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    role: str | None = Field(default=None, max_length=200)

    def as_sent(self) -> dict[str, Any]:
        typed = {
            type(self).model_fields[n].alias or n: getattr(self, n)
            for n in ("id", "name", "role")
            if n in self.model_fields_set
        }
        return {**typed, **self.rest()}


class Service(Tmf):
    DOMAIN = frozenset({"id", "name", "service_specification", "service_characteristic", "place"})

    id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    service_specification: SpecificationRef | None = Field(
        default=None, alias="serviceSpecification"
    )
    service_characteristic: list[Characteristic] = Field(
        default_factory=list, alias="serviceCharacteristic", max_length=500
    )
    place: list[PlaceRef] = Field(default_factory=list, max_length=50)

    @field_validator("service_characteristic")
    @classmethod
    def _names_once(cls, value: list[Characteristic]) -> list[Characteristic]:
        if len(value) < 2 or len({c.name for c in value}) == len(value):
            return value
        if twice := names_twice(value):
            raise ValueError(
                "serviceCharacteristic: each name once in a service; given more than once: "
                + ", ".join(twice)
            )
        return value


class ItemRef(Tmf):
    DOMAIN = frozenset({"item_id"})

    item_id: str | None = Field(default=None, alias="itemId", max_length=100)

    @property
    def target(self) -> str | None:
        """The item referred to: `itemId`, or (as some senders write it) `id`."""
        if self.item_id is not None:
            return self.item_id
        other = (self.model_extra or {}).get("id")
        return other if isinstance(other, str) and 0 < len(other) <= 100 else None


class ItemRelationship(Tmf):
    DOMAIN = frozenset({"relationship_type", "order_item"})

    relationship_type: str | None = Field(
        default=None, alias="relationshipType", max_length=MAX_TYPE
    )
    order_item: ItemRef | None = Field(default=None, alias="orderItem")


class ServiceOrderItem(Tmf):
    DOMAIN = frozenset(
        {"id", "action", "quantity", "service", "service_order_item_relationship", "nested"}
    )

    id: str = Field(min_length=1, max_length=100)
    action: ItemAction
    quantity: int = Field(default=1, ge=1, le=100000)
    service: Service
    service_order_item_relationship: list[ItemRelationship] = Field(
        default_factory=list, alias="serviceOrderItemRelationship", max_length=100
    )
    # Items nested in this one (TMF641 is recursive): kept flat, with `parent`.
    nested: list[ServiceOrderItem] = Field(
        default_factory=list, alias="serviceOrderItem", max_length=MAX_ITEMS
    )

    def rest(self) -> dict[str, Any]:
        rest = super().rest()
        for name in REFUSED_ON_ITEM:  # the server's (a patch may echo them): not kept
            rest.pop(name, None)
        return rest


class RelatedParty(Tmf):
    DOMAIN = frozenset({"id", "name", "role", "referred_type"})

    id: str = Field(min_length=1, max_length=200)
    href: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=500)
    role: str | None = Field(default=None, max_length=200)
    referred_type: str | None = Field(default=None, alias="@referredType", max_length=MAX_TYPE)


class NoteIn(Tmf):
    DOMAIN = frozenset({"text", "author", "date"})

    id: str | None = Field(default=None, max_length=200)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    author: str | None = Field(default=None, max_length=200)
    date: datetime | None = None

    _aware = field_validator("date")(_with_timezone)


class Relationship(Tmf):
    DOMAIN = frozenset({"id", "relationship_type"})

    id: str = Field(min_length=1, max_length=200)
    href: str | None = Field(default=None, max_length=2000)
    referred_type: str | None = Field(default=None, alias="@referredType", max_length=MAX_TYPE)
    relationship_type: str = Field(min_length=1, alias="relationshipType", max_length=100)


TmfDate = datetime | date


class TmfBody(Tmf):
    """A whole TMF641 request body (a message, for the Kafka door)."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get("nul_checked"):  # the caller checked the bytes
            return data
        where = find_nul(data)
        if where is not None:
            raise ValueError(f"{where}: text must not contain NUL (U+0000) characters")
        return data


class _HeaderAttributes(TmfBody):
    """The header attributes a creation and a patch both carry (none required)."""

    description: str | None = Field(default=None, max_length=MAX_TEXT)
    priority: str | None = Field(default=None, max_length=50)
    notification_contact: str | None = Field(
        default=None, alias="notificationContact", max_length=500
    )
    requested_start_date: TmfDate | None = Field(default=None, alias="requestedStartDate")
    requested_completion_date: TmfDate | None = Field(default=None, alias="requestedCompletionDate")

    _aware = field_validator("requested_start_date", "requested_completion_date")(_with_timezone)

    def header_attributes(self) -> dict[str, Any]:
        """These attributes by the domain's names (OrderHeader's and HeaderChange's), which
        are theirs: a creation's header and a patch's change both start from them."""
        return {name: getattr(self, name) for name in _HEADER_ATTRIBUTES}


# The attributes _HeaderAttributes declares itself (not TmfBody's @type and the like).
_HEADER_ATTRIBUTES = tuple(
    name for name in _HeaderAttributes.model_fields if name not in TmfBody.model_fields
)


class ServiceOrderCreate(_HeaderAttributes):
    """TMF641 v4 `ServiceOrder_Create`."""

    DOMAIN = frozenset(
        {
            *_HEADER_ATTRIBUTES,
            "external_id",
            "category",
            "note",
            "related_party",
            "order_relationship",
            "service_order_item",
        }
    )

    external_id: str | None = Field(default=None, alias="externalId", max_length=200)
    category: str | None = Field(default=None, max_length=200)
    note: list[NoteIn] = Field(default_factory=list, max_length=100)
    related_party: list[RelatedParty] = Field(
        default_factory=list, alias="relatedParty", max_length=100
    )
    order_relationship: list[Relationship] = Field(
        default_factory=list, alias="orderRelationship", max_length=100
    )
    service_order_item: list[ServiceOrderItem] = Field(
        alias="serviceOrderItem", max_length=MAX_ITEMS
    )

    @model_validator(mode="before")
    @classmethod
    def _not_server_owned(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # (the model's validation says what is wrong)
        found = _server_owned(data, REFUSED_ON_CREATE) if data.keys() & _ON_CREATE else []
        stack = [("serviceOrderItem", data.get("serviceOrderItem"))]
        while stack:  # every item, nested ones too (a key lookup each, in the common case)
            where, items = stack.pop()
            for n, item in enumerate(items if isinstance(items, list) else ()):
                if not isinstance(item, dict):
                    continue
                if item.keys() & _ON_ITEM:
                    found += _server_owned(item, REFUSED_ON_ITEM, f"{where}.{n}.")
                if "serviceOrderItem" in item:
                    stack.append((f"{where}.{n}.serviceOrderItem", item["serviceOrderItem"]))
        if found:
            raise ValueError(refusal(found, "on create"))
        return data


class ServiceOrderUpdate(_HeaderAttributes):
    """TMF641 v4 `ServiceOrder_Update` (a JSON merge patch). Attributes it does not define
    (extension attributes, `@type`, ...) are merged into the order's (`header_change`)."""

    DOMAIN = frozenset(
        {
            *_HEADER_ATTRIBUTES,
            "related_party",
            "service_order_item",
            "note",
            "state",
            "external_id",
            "expected_completion_date",
            "external_reference",
            "order_relationship",
        }
    )

    related_party: list[RelatedParty] | None = Field(
        default=None, alias="relatedParty", max_length=100
    )
    service_order_item: list[ServiceOrderItem] | None = Field(
        default=None, alias="serviceOrderItem", max_length=MAX_ITEMS
    )
    note: list[NoteIn] | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=MAX_TYPE)
    external_id: str | None = Field(default=None, alias="externalId", max_length=200)

    # In ServiceOrder_Update, but not changeable here: refused (400) when present.
    expected_completion_date: Any = Field(default=None, alias="expectedCompletionDate")
    external_reference: Any = Field(default=None, alias="externalReference")
    order_relationship: Any = Field(default=None, alias="orderRelationship")

    def unchangeable(self) -> list[str]:
        """The attributes in this patch that PATCH cannot change (REFUSED_ON_PATCH)."""
        typed = [
            type(self).model_fields[name].alias or name
            for name in ("expected_completion_date", "external_reference", "order_relationship")
            if name in self.model_fields_set
        ]
        return typed + _server_owned(self.model_extra, REFUSED_ON_PATCH)

    @model_validator(mode="after")
    def _category_text(self) -> ServiceOrderUpdate:
        category = (self.model_extra or {}).get("category")
        if category is not None and not (isinstance(category, str) and len(category) <= 200):
            raise ValueError("category: must be a text of at most 200 characters")
        return self

    def item_echoes(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The items of this patch (nested ones too) that carry `state` or `errorMessage`
        (REFUSED_ON_ITEM; a null counts as absent): (the path to the item, e.g.
        `serviceOrderItem.0.`, its id, those attributes as sent), in the order sent."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        top = enumerate(self.service_order_item or [])
        stack = [(f"serviceOrderItem.{n}.", item) for n, item in reversed(list(top))]
        while stack:  # depth first, in the order sent
            where, item = stack.pop()
            extra = item.model_extra or {}
            sent = {k: extra[k] for k in REFUSED_ON_ITEM if extra.get(k) is not None}
            if sent:
                found.append((where, item.id, sent))
            nested = enumerate(item.nested)
            stack.extend((f"{where}serviceOrderItem.{n}.", c) for n, c in reversed(list(nested)))
        return found

    def refused_echoes(
        self, order: ServiceOrder | None, reveal: Callable[[str], str] | None = None
    ) -> list[str]:
        """The item attributes of this patch that are no echo of `order` (each named by its
        path, e.g. `serviceOrderItem.0.state`): a `state` or `errorMessage` other than what
        GET shows for the existing item with that id (`reveal`: how the order's sealed texts
        read), or on an item the order does not have (every one, without an order)."""
        refused: list[str] = []
        for where, item_id, sent in self.item_echoes():
            item = order.items.get(item_id) if order is not None else None
            for name, value in sent.items():
                if item is None or order is None:
                    refused.append(f"{where}{name}")
                    continue
                if name == "state":
                    shown: Any = item.state.value if item.state else None
                else:
                    shown = item_error_messages(order, item)
                    if reveal is not None:
                        shown = reveal_deep(shown, reveal)
                if not _same_json(value, shown):
                    refused.append(f"{where}{name}")
        return refused

    def refusal(self, refused_items: Sequence[str] = ()) -> str | None:
        """Why this patch is refused as a whole (400 / a dead letter), or None: the
        attributes PATCH cannot change (`unchangeable`), and `refused_items`, the item
        attributes that are no echo (`refused_echoes`), named together."""
        found = [*self.unchangeable(), *refused_items]
        if not found:
            return None
        items = (
            "an item's state and errorMessage are the server's: a patch may only repeat "
            "what GET shows for that existing item; "
            if refused_items
            else ""
        )
        return (
            f"{', '.join(found)} cannot be changed by PATCH "
            "(expectedCompletionDate and the server-owned attributes are the provider's; "
            f"{items}external references and order relationships are fixed when the order "
            "is created)"
        )


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: a boolean is no number (True != 1), numbers by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class ServiceOrderRef(Tmf):
    id: str = Field(min_length=1, max_length=200)
    href: str | None = Field(default=None, max_length=MAX_HREF)
    name: str | None = Field(default=None, max_length=MAX_NAME)
    referred_type: str | None = Field(default=None, alias="@referredType", max_length=MAX_TYPE)


class CancelServiceOrderCreate(TmfBody):
    cancellation_reason: str | None = Field(
        default=None, alias="cancellationReason", max_length=MAX_TEXT
    )
    requested_cancellation_date: datetime | None = Field(
        default=None, alias="requestedCancellationDate"
    )
    service_order: ServiceOrderRef = Field(alias="serviceOrder")

    _aware = field_validator("requested_cancellation_date")(_with_timezone)


# --------------------------------------------------------------------- mapping
# Issue 21 (one object graph per order on the way in): the domain values below are built
# with `trusted` (domain/trusted.py), not validated a second time. Every value comes from a
# model of this module that every door has just validated (ServiceOrderCreate, or
# ServiceOrderUpdate's items: the API's body_of, the Kafka door's parse, the CLI's
# load_order), and those models' constraints include the domain's: the ids the domain
# requires non-empty are (an item's, 1..100 characters as OrderItem's; a specification's,
# a party's, an order relationship's and its type; a place is taken only with an id, of
# at most 200 as Place's), a quantity is >= 1, an external id at most 200, a note's text
# non-empty, dates are dates or date-times with a timezone, and each other value has the
# domain field's type (text, None, JSON values, the tuples and dicts built here). The one
# domain validator that changes a value (OrderItem's dependencies, each once) is applied
# here. tests/unit/test_tmf641_mapping checks the result against validated construction.
DEPENDENCY_TYPES = ("dependency", "dependson")


def _is_dependency(relationship_type: str | None) -> bool:
    return (relationship_type or "dependency").lower() in DEPENDENCY_TYPES


def _relation(r: ItemRelationship) -> ItemRelation:
    extra = r.rest()
    ref = r.order_item
    if ref is not None:
        extra["orderItem"] = ref.rest()  # (an empty object when only itemId was sent)
    return trusted(
        ItemRelation,
        relationship_type=r.relationship_type,
        item_id=ref.target if ref else None,
        extra=extra,
    )


def _places(places: list[PlaceRef]) -> list[dict[str, Any]] | None:
    """The place list as sent, when the typed `place` (the first with an id) would not
    give it back whole; None when it does (the common case: nothing more to keep)."""
    if not places:
        return None
    if len(places) == 1:
        only = places[0]
        if only.id and not only.model_extra and only.model_fields_set <= PlaceRef.DOMAIN:
            return None
    return [p.as_sent() for p in places]


def item_to_domain(item: ServiceOrderItem, parent: str | None = None) -> OrderItem:
    """One item (its nested items are not among it: `items_to_domain`)."""
    service = item.service
    spec = service.service_specification
    place = next((p for p in service.place if p.id), None)
    relationships = item.service_order_item_relationship
    deps = tuple(
        r.order_item.target
        for r in relationships
        if r.order_item and r.order_item.target and _is_dependency(r.relationship_type)
    )
    if len(deps) > 1:  # each once, as OrderItem's validator keeps them
        deps = tuple(dict.fromkeys(deps))
    # What the domain does not type, only given when there is some (the common case
    # builds the item exactly as before issue 19).
    kept: dict[str, Any] = {}
    service_extra = service.rest()
    sent_places = _places(service.place)
    if sent_places is not None:
        service_extra["place"] = sent_places
    if service_extra:
        kept["service_extra"] = service_extra
    characteristic_extra = {}
    for c in service.service_characteristic:
        rest = c.rest()
        if rest:
            characteristic_extra[c.name] = rest
    if characteristic_extra:
        kept["characteristic_extra"] = characteristic_extra
    if parent is not None:
        kept["parent"] = parent
    if relationships and _kept(relationships):
        kept["relationships"] = tuple(_relation(r) for r in relationships)
    if extra := item.rest():
        kept["extra"] = extra
    spec_extra = spec.rest() if spec else None
    return trusted(  # validated by ServiceOrderItem (see "mapping" above)
        OrderItem,
        id=item.id,
        action=item.action,
        specification=(
            (
                trusted(SpecRef, id=spec.id, name=spec.name, version=spec.version, extra=spec_extra)
                if spec_extra
                else trusted(SpecRef, id=spec.id, name=spec.name, version=spec.version)
            )
            if spec
            else None
        ),
        service_id=service.id,
        service_name=service.name,
        characteristics={c.name: c.value for c in service.service_characteristic},
        place=trusted(Place, id=place.id, name=place.name, role=place.role) if place else None,
        quantity=item.quantity,
        depends_on=deps,
        **kept,
    )


def _kept(relationships: list[ItemRelationship]) -> bool:
    """Whether the relationships need keeping as sent: not when each is a plain
    dependency on an item by its itemId, which `depends_on` gives back (the common case)."""
    for r in relationships:
        ref = r.order_item
        if (
            r.relationship_type != "dependency"
            or ref is None
            or ref.item_id is None
            or not r.model_fields_set <= ItemRelationship.DOMAIN
            or not ref.model_fields_set <= ItemRef.DOMAIN
        ):
            return True
    return False


def items_to_domain(items: list[ServiceOrderItem]) -> list[OrderItem]:
    """Every item, nested ones (any depth) flattened after their parent with `parent`."""
    out: list[OrderItem] = []
    stack: list[tuple[ServiceOrderItem, str | None]] = [(i, None) for i in reversed(items)]
    while stack:  # depth first, in the order sent
        item, parent = stack.pop()
        out.append(item_to_domain(item, parent))
        stack.extend((child, item.id) for child in reversed(item.nested))
    return out


def _party(p: RelatedParty) -> Party:
    return trusted(  # validated by RelatedParty (see "mapping" above)
        Party, id=p.id, name=p.name, role=p.role, referred_type=p.referred_type, extra=p.rest()
    )


def order_to_domain(body: ServiceOrderCreate) -> tuple[OrderHeader, list[OrderItem], list[Note]]:
    header = trusted(  # validated by ServiceOrderCreate (see "mapping" above)
        OrderHeader,
        **body.header_attributes(),
        external_id=body.external_id,
        category=body.category,
        related_parties=tuple(_party(p) for p in body.related_party),
        order_relationships=tuple(
            trusted(
                OrderRelationship, id=r.id, relationship_type=r.relationship_type, extra=r.rest()
            )
            for r in body.order_relationship
        ),
        extra=body.rest(),
    )
    notes = [
        trusted(Note, text=n.text, author=n.author, date=n.date, extra=n.rest()) for n in body.note
    ]
    return header, items_to_domain(body.service_order_item), notes


def header_change(body: ServiceOrderUpdate, current: dict[str, Any] | None = None) -> HeaderChange:
    """The patch's change of the header. `current`: the order's kept attributes when the
    door knows them (a `null` for one the order does not have then changes nothing)."""
    fields: dict[str, Any] = {
        **body.header_attributes(),
        "related_parties": (
            tuple(_party(p) for p in body.related_party) if body.related_party is not None else None
        ),
    }
    extra = body.rest()
    for name in PATCH_NAMES_THE_ORDER:
        extra.pop(name, None)
    category = extra.pop("category", None)  # ServiceOrder_Create's, typed by the header
    if category is not None:  # (text: the model checked it)
        fields["category"] = category
    for name, value in list(extra.items()):
        # null for an attribute the order cannot have (a server-owned one: absent) or does
        # not have: nothing to remove.
        if value is None and (
            name in REFUSED_ON_PATCH or (current is not None and name not in current)
        ):
            del extra[name]
    if extra:  # merged into the order's (null removes one)
        fields["extra"] = extra
    return HeaderChange(**{k: v for k, v in fields.items() if v is not None})


ServiceOrderItem.model_rebuild()


def names_twice(characteristics: Iterable[Characteristic]) -> list[str]:
    """The characteristic names given more than once, each once, in the order sent."""
    seen: set[str] = set()
    twice: list[str] = []
    for c in characteristics:
        if c.name in seen:
            twice.append(c.name)
        seen.add(c.name)
    return list(dict.fromkeys(twice))

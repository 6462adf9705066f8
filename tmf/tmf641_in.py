"""TMF641 v4 request bodies -> domain values, for every door (REST API, Kafka).

The models are lenient where TMF641 is (unknown attributes are ignored, `@type` and friends
are optional) and strict where the domain needs it; every problem is reported at once.
"""

from __future__ import annotations

import math
import sys
from datetime import date, datetime
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from serviceorders.domain.values import (
    HeaderChange,
    ItemAction,
    Note,
    OrderHeader,
    OrderItem,
    OrderRelationship,
    Party,
    Place,
    SpecRef,
)
from serviceorders.support.limits import MAX_HREF, MAX_ID, MAX_NAME, MAX_TYPE

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
# On every serviceOrderItem (nested ones too), of a create and of a patch or revision.
REFUSED_ON_ITEM = ("state", "errorMessage")
# A patch (REST PATCH, a Kafka revision): 400 for these ...
REFUSED_ON_PATCH = (
    "expectedCompletionDate",
    "externalReference",
    "orderRelationship",
    *(n for n in REFUSED_ON_CREATE if n not in ("state", "expectedCompletionDate")),
)
# ... and these may only repeat the order's current value (409 otherwise, REST PATCH).
PATCH_SAME_VALUE_ONLY = ("state", "externalId")


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


class Tmf(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type_: str | None = Field(default=None, alias="@type", max_length=MAX_TYPE)
    base_type: str | None = Field(default=None, alias="@baseType", max_length=MAX_TYPE)
    schema_location: str | None = Field(default=None, alias="@schemaLocation", max_length=MAX_HREF)


class Characteristic(Tmf):
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
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    version: str | None = Field(default=None, max_length=100)


class PlaceRef(Tmf):
    id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    role: str | None = Field(default=None, max_length=200)


class Service(Tmf):
    id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    service_specification: SpecificationRef | None = Field(
        default=None, alias="serviceSpecification"
    )
    service_characteristic: list[Characteristic] = Field(
        default_factory=list, alias="serviceCharacteristic", max_length=500
    )
    place: list[PlaceRef] = Field(default_factory=list, max_length=50)


class ItemRef(Tmf):
    item_id: str | None = Field(
        default=None, alias="itemId", max_length=100, validation_alias=AliasChoices("itemId", "id")
    )


class ItemRelationship(Tmf):
    relationship_type: str | None = Field(
        default=None, alias="relationshipType", max_length=MAX_TYPE
    )
    order_item: ItemRef | None = Field(default=None, alias="orderItem")


class ServiceOrderItem(Tmf):
    id: str = Field(min_length=1, max_length=100)
    action: ItemAction
    quantity: int = Field(default=1, ge=1, le=100000)
    service: Service
    service_order_item_relationship: list[ItemRelationship] = Field(
        default_factory=list, alias="serviceOrderItemRelationship", max_length=100
    )


class RelatedParty(Tmf):
    id: str = Field(min_length=1, max_length=200)
    href: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=500)
    role: str | None = Field(default=None, max_length=200)
    referred_type: str | None = Field(default=None, alias="@referredType", max_length=MAX_TYPE)


class NoteIn(Tmf):
    id: str | None = Field(default=None, max_length=200)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    author: str | None = Field(default=None, max_length=200)
    date: datetime | None = None

    _aware = field_validator("date")(_with_timezone)


class Relationship(Tmf):
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


class ServiceOrderUpdate(_HeaderAttributes):
    """TMF641 v4 `ServiceOrder_Update` (a JSON merge patch)."""

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
        """The attributes in this patch that PATCH cannot change."""
        return [
            type(self).model_fields[name].alias or name
            for name in ("expected_completion_date", "external_reference", "order_relationship")
            if name in self.model_fields_set
        ]


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
def item_to_domain(item: ServiceOrderItem) -> OrderItem:
    service = item.service
    spec = service.service_specification
    place = next((p for p in service.place if p.id), None)
    deps = tuple(
        r.order_item.item_id
        for r in item.service_order_item_relationship
        if r.order_item
        and r.order_item.item_id
        and (r.relationship_type or "dependency").lower() in ("dependency", "dependson")
    )
    return OrderItem(
        id=item.id,
        action=item.action,
        specification=SpecRef(id=spec.id, name=spec.name, version=spec.version) if spec else None,
        service_id=service.id,
        service_name=service.name,
        characteristics={c.name: c.value for c in service.service_characteristic},
        place=Place(id=place.id, name=place.name, role=place.role) if place else None,
        quantity=item.quantity,
        depends_on=deps,
    )


def _party(p: RelatedParty) -> Party:
    return Party(id=p.id, name=p.name, role=p.role or "customer", referred_type=p.referred_type)


def order_to_domain(body: ServiceOrderCreate) -> tuple[OrderHeader, list[OrderItem], list[Note]]:
    header = OrderHeader(
        **body.header_attributes(),
        external_id=body.external_id,
        category=body.category,
        related_parties=tuple(_party(p) for p in body.related_party),
        order_relationships=tuple(
            OrderRelationship(id=r.id, relationship_type=r.relationship_type)
            for r in body.order_relationship
        ),
    )
    notes = [Note(text=n.text, author=n.author, date=n.date) for n in body.note]
    return header, [item_to_domain(i) for i in body.service_order_item], notes


def header_change(body: ServiceOrderUpdate) -> HeaderChange:
    fields = {
        **body.header_attributes(),
        "related_parties": (
            tuple(_party(p) for p in body.related_party) if body.related_party is not None else None
        ),
    }
    return HeaderChange(**{k: v for k, v in fields.items() if v is not None})

"""TMF638 v4 Service JSON -> ServiceRecord (domain/values.py): a service that existed before
the engine, as `inventory import` and the Kafka import topic bring it (docs/inventory.md,
"Import"; docs/kafka.md, "The inventory import topic").

Read like the TMF641 bodies (tmf641_in.py): lenient where TMF638 is, every problem reported
at once, nothing sent lost. The typed attributes become the record's fields:

- `id` (required, text of 1..200 characters), `name`, `state` (a TMF638 service state,
  default `active`);
- `serviceSpecification` -> `specification` (its other attributes in the reference's extra);
- `serviceCharacteristic` [{name, value}] -> `characteristics` (each value kept as JSON,
  each name once; `valueType` is derived again on output);
- `place` [{id, name, role}] -> `places`;
- `relatedParty`: the one party with role `customer` -> `customer`; the others are kept as
  sent in `extra["relatedParty"]`;
- `serviceRelationship` of type `dependsOn` / `reliesOn` and every `supportingService`
  -> `depends_on` (their service ids); other relationships kept as sent in
  `extra["serviceRelationship"]`, `supportingService` kept as sent in `extra` too.

Every other attribute goes to `extra` as sent (category, serviceType, startDate, @type,
...); so do characteristics and places as sent when they carry more than the typed
attributes (the typed ones win when rendered, tmf638.py). The attributes the engine derives
(`href`, `serviceOrderItem`: this inventory's own links; `isServiceEnabled`, `hasStarted`:
from `state`) are ignored, not refused: an export of another TMF638 inventory (a GET) is an
import file as it is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from serviceorders.domain.values import Party, Place, ServiceRecord, ServiceState, SpecRef
from serviceorders.support.limits import MAX_HREF, MAX_ID, MAX_NAME, MAX_TYPE
from serviceorders.tmf.tmf641_in import (
    Characteristic,
    PlaceRef,
    RelatedParty,
    SpecificationRef,
    Tmf,
    find_nul,
    json_limits,
    names_twice,
)

MAX_CHARACTERISTICS = 500
MAX_PLACES = 50
MAX_PARTIES = 100
MAX_RELATIONSHIPS = 500
MAX_PROBLEMS = 20

# Ignored when sent (the engine's own, or derived from `state`): see the module docstring.
IGNORED = ("href", "serviceOrderItem", "isServiceEnabled", "hasStarted")
# serviceRelationship types that make `depends_on` (compared case-insensitively).
DEPENDENCY_TYPES = frozenset({"dependson", "relieson"})
STATES = ", ".join(s.value for s in ServiceState)


class ServiceRefIn(Tmf):
    """The service a relationship or a supporting service names."""

    id: str = Field(min_length=1, max_length=MAX_ID)
    href: str | None = Field(default=None, max_length=MAX_HREF)
    name: str | None = Field(default=None, max_length=MAX_NAME)


class ServiceRelationshipIn(Tmf):
    relationship_type: str = Field(alias="relationshipType", min_length=1, max_length=MAX_TYPE)
    service: ServiceRefIn


class ServiceIn(Tmf):
    """TMF638 v4 `Service` (or `Service_Create`): only `id` is required."""

    DOMAIN = frozenset(
        {
            "id",
            "name",
            "state",
            "service_specification",
            "service_characteristic",
            "place",
            "related_party",
            "service_relationship",
            "supporting_service",
        }
    )

    id: str = Field(min_length=1, max_length=MAX_ID)
    name: str | None = Field(default=None, max_length=MAX_NAME)
    state: str | None = Field(default=None, max_length=MAX_TYPE)
    service_specification: SpecificationRef | None = Field(
        default=None, alias="serviceSpecification"
    )
    service_characteristic: list[Characteristic] = Field(
        default_factory=list, alias="serviceCharacteristic", max_length=MAX_CHARACTERISTICS
    )
    place: list[PlaceRef] = Field(default_factory=list, max_length=MAX_PLACES)
    related_party: list[RelatedParty] = Field(
        default_factory=list, alias="relatedParty", max_length=MAX_PARTIES
    )
    service_relationship: list[ServiceRelationshipIn] = Field(
        default_factory=list, alias="serviceRelationship", max_length=MAX_RELATIONSHIPS
    )
    supporting_service: list[ServiceRefIn] = Field(
        default_factory=list, alias="supportingService", max_length=MAX_RELATIONSHIPS
    )

    @field_validator("state")
    @classmethod
    def _a_state(cls, value: str | None) -> str | None:
        if value is not None and value not in ServiceState._value2member_map_:
            raise ValueError(f"{value!r} is not a TMF638 service state ({STATES})")
        return value

    @field_validator("service_characteristic")
    @classmethod
    def _names_once(cls, value: list[Characteristic]) -> list[Characteristic]:
        if twice := names_twice(value):
            raise ValueError(
                "each characteristic name once; given more than once: " + ", ".join(twice)
            )
        return value

    @field_validator("place")
    @classmethod
    def _places_by_id(cls, value: list[PlaceRef]) -> list[PlaceRef]:
        missing = [str(n) for n, p in enumerate(value) if not p.id]
        if missing:
            raise ValueError(f"a place is kept by its id: place {', '.join(missing)} has none")
        return value


def _errors(e: ValidationError) -> list[str]:
    out = []
    for err in e.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "service"
        message = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {message}")
    return out


def service_problems(data: Any) -> list[str]:
    """Why `data` (a decoded JSON value) is not a TMF638 service this engine imports; an
    empty list when it is one."""
    found = service_from_tmf638(data)
    return found if isinstance(found, list) else []


def service_from_tmf638(data: Any) -> ServiceRecord | list[str]:
    """One TMF638 Service JSON object -> the ServiceRecord it imports, or every problem
    (each `path: what is wrong`, at most MAX_PROBLEMS and a count of the rest)."""
    if not isinstance(data, dict):
        return [f"a TMF638 Service is a JSON object, not {_kind(data)}"]
    limit = json_limits(data, root="service")
    if limit is not None:
        return [limit]
    where = find_nul(data)
    if where is not None:
        return [f"{where.replace('body', 'service', 1)}: text must not contain NUL (U+0000)"]
    try:
        body = ServiceIn.model_validate(data)
    except ValidationError as e:
        return _capped(_errors(e))
    problems: list[str] = []
    record = _record(body, problems)
    return _capped(problems) if problems or record is None else record


def _capped(problems: list[str]) -> list[str]:
    more = len(problems) - MAX_PROBLEMS
    return problems[:MAX_PROBLEMS] + ([f"and {more} more"] if more > 0 else [])


def _kind(data: Any) -> str:
    if isinstance(data, list):
        return "an array"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, bool):
        return "a boolean"
    if data is None:
        return "null"
    return "a number"


def _record(body: ServiceIn, problems: list[str]) -> ServiceRecord | None:
    extra = body.rest()
    for name in IGNORED:
        extra.pop(name, None)

    # the customer, and the other parties as sent
    customers = [p for p in body.related_party if (p.role or "").lower() == "customer"]
    if len(customers) > 1:
        problems.append(
            "relatedParty: more than one party with role customer ("
            + ", ".join(p.id for p in customers)
            + "): a service belongs to one customer"
        )
    customer = customers[0] if customers else None
    others = [p for p in body.related_party if p is not customer]
    if others:
        extra["relatedParty"] = [_as_sent(p) for p in others]

    # what the service depends on
    depends_on: list[str] = []
    kept_relationships = []
    for r in body.service_relationship:
        if r.relationship_type.lower() in DEPENDENCY_TYPES:
            depends_on.append(r.service.id)
        else:
            kept_relationships.append(_as_sent(r))
    if kept_relationships:
        extra["serviceRelationship"] = kept_relationships
    if body.supporting_service:
        depends_on += [s.id for s in body.supporting_service]
        extra["supportingService"] = [_as_sent(s) for s in body.supporting_service]
    if body.id in depends_on:
        problems.append(f"serviceRelationship: service {body.id} cannot depend on itself")

    # characteristics and places: kept as sent too when they carry more than is typed
    characteristics = {c.name: c.value for c in body.service_characteristic}
    if any(_more_than(c, {"name", "value", "value_type"}) for c in body.service_characteristic):
        extra["serviceCharacteristic"] = [_as_sent(c) for c in body.service_characteristic]
    if any(_more_than(p, PlaceRef.DOMAIN) for p in body.place):
        extra["place"] = [p.as_sent() for p in body.place]
    places = tuple(Place(id=p.id, name=p.name, role=p.role) for p in body.place if p.id)

    spec = body.service_specification
    if problems:
        return None
    return ServiceRecord(
        id=body.id,
        name=body.name,
        state=ServiceState(body.state) if body.state is not None else ServiceState.ACTIVE,
        specification=(
            SpecRef(id=spec.id, name=spec.name, version=spec.version, extra=spec.rest())
            if spec is not None
            else None
        ),
        characteristics=characteristics,
        places=places,
        customer=(
            Party(
                id=customer.id,
                name=customer.name,
                role=customer.role,
                referred_type=customer.referred_type,
                extra=customer.rest(),
            )
            if customer is not None
            else None
        ),
        depends_on=tuple(dict.fromkeys(depends_on)),
        extra=extra,
    )


def _more_than(model: Tmf, typed: set[str] | frozenset[str]) -> bool:
    return bool(model.model_extra) or not model.model_fields_set <= typed


def _as_sent(model: BaseModel) -> dict[str, Any]:
    """A nested value as it was sent (by its TMF names, only what was given)."""
    return model.model_dump(by_alias=True, exclude_unset=True, mode="json")

"""The service specification catalog and the validation of order items against it.

The catalog is data (a JSON file); validation reports every problem at once and
separates structural problems (the order is refused) from value problems (the order
goes into review flagged for the reviewer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .copying import replace
from .values import ItemAction, OrderItem, Problem


class ValueType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "dateTime"


class CharacteristicSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    value_type: ValueType
    description: str | None = None
    required: bool = False
    allowed_values: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    unit: str | None = None

    def problems_with(self, value: Any, item_id: str) -> list[Problem]:
        """Value problems of `value` for this characteristic (empty when it fits)."""
        if not _has_type(value, self.value_type):
            return [
                self._flag(
                    "wrong_type", f"expects a {self.value_type} value, got {value!r}", item_id
                )
            ]
        if self.allowed_values and value not in self.allowed_values:
            allowed = ", ".join(map(str, self.allowed_values))
            return [
                self._flag(
                    "value_not_allowed", f"value {value!r} is not one of: {allowed}", item_id
                )
            ]
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            return [
                self._flag(
                    "out_of_range",
                    f"value {value!r} is outside {self.minimum}..{self.maximum}",
                    item_id,
                )
            ]
        return []

    def _flag(self, code: str, detail: str, item_id: str) -> Problem:
        return Problem(
            code=code,
            message=f"item {item_id}: characteristic {self.name} {detail}",
            item_id=item_id,
            characteristic=self.name,
            structural=False,
        )


def _has_type(value: Any, value_type: ValueType) -> bool:
    match value_type:
        case ValueType.STRING:
            return isinstance(value, str)
        case ValueType.INTEGER:
            return isinstance(value, int) and not isinstance(value, bool)
        case ValueType.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        case ValueType.BOOLEAN:
            return isinstance(value, bool)
        case ValueType.DATE:
            return isinstance(value, str) and _parses(date.fromisoformat, value)
        case ValueType.DATETIME:
            return isinstance(value, str) and _parses(datetime.fromisoformat, value)
    return False  # pragma: no cover


def _parses(parser: Any, text: str) -> bool:
    try:
        parser(text)
    except ValueError:
        return False
    return True


class ServiceSpecification(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    version: str = "1.0"
    description: str | None = None
    category: str | None = None
    characteristics: tuple[CharacteristicSpec, ...] = ()
    # Orders with this specification are held while a proposal to change them waits
    # (domain/policy.py; the setting SERVICEORDERS_HOLD_ON_PROPOSAL holds every order).
    hold_on_proposal: bool = False
    # The characteristics by name (issue 21: looked up for every value of every item): a
    # slot, read directly (a pydantic private attribute is read through __getattr__).
    __slots__ = ("_by_name",)

    @model_validator(mode="after")
    def _unique_characteristics(self) -> ServiceSpecification:
        names = [c.name for c in self.characteristics]
        if len(names) != len(set(names)):
            raise ValueError(f"specification {self.id} repeats a characteristic name")
        return self

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.characteristics})

    def characteristic(self, name: str) -> CharacteristicSpec | None:
        try:
            by_name: dict[str, CharacteristicSpec] = self._by_name  # type: ignore[attr-defined]
        except AttributeError:  # a copy (model_copy copies no slot)
            self.model_post_init(None)
            by_name = self._by_name  # type: ignore[attr-defined]
        return by_name.get(name)


class Catalog(BaseModel):
    """The service specifications an order item may name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specifications: tuple[ServiceSpecification, ...]
    # The specifications by id (issue 21: looked up twice for every item received), in a
    # slot as ServiceSpecification's characteristics.
    __slots__ = ("_by_id",)

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalog:
        ids = [s.id for s in self.specifications]
        if len(ids) != len(set(ids)):
            raise ValueError("the catalog repeats a specification id")
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def default(cls) -> Catalog:
        text = resources.files(__package__).joinpath("catalog/default.json").read_text("utf-8")
        return cls.model_validate(json.loads(text))

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.specifications})

    def _index(self) -> dict[str, ServiceSpecification]:
        try:
            by_id: dict[str, ServiceSpecification] = self._by_id  # type: ignore[attr-defined]
        except AttributeError:  # a copy (model_copy copies no slot)
            self.model_post_init(None)
            by_id = self._by_id  # type: ignore[attr-defined]
        return by_id

    def get(self, spec_id: str) -> ServiceSpecification | None:
        return self._index().get(spec_id)

    def __contains__(self, spec_id: object) -> bool:
        return isinstance(spec_id, str) and spec_id in self._index()

    def resolve(self, item: OrderItem) -> OrderItem:
        """The item with its specification's name and version filled in from the catalog,
        so that the order records which version of the specification it was made with."""
        ref = item.specification
        spec = self.get(ref.id) if ref else None
        if ref is None or spec is None or (ref.name and ref.version):
            return item
        # replace = model_copy(update=...), cheaper (domain/copying.py)
        filled = replace(ref, name=ref.name or spec.name, version=ref.version or spec.version)
        return replace(item, specification=filled)

    def validate_items(self, items: Iterable[OrderItem]) -> list[Problem]:
        """Every problem of an order's items, structural and value problems alike."""
        items = list(items)
        problems: list[Problem] = []
        if not items:
            problems.append(Problem(code="no_items", message="the order has no items"))
        problems += duplicate_ids(items)
        for item in items:
            problems += self._item_problems(item)
        problems += _dependency_problems(items)
        return problems

    def _item_problems(self, item: OrderItem) -> list[Problem]:
        problems: list[Problem] = []
        if item.action is not ItemAction.ADD and not item.service_id:
            problems.append(
                Problem(
                    code="missing_service_ref",
                    item_id=item.id,
                    message=f"item {item.id}: action {item.action} needs the id "
                    "of the existing service",
                )
            )
        if item.place is None:
            problems.append(
                Problem(
                    code="missing_place",
                    item_id=item.id,
                    structural=False,
                    message=f"item {item.id}: no site (place) is given",
                )
            )
        if item.specification is None:
            if item.action is ItemAction.ADD:
                problems.append(
                    Problem(
                        code="missing_specification",
                        item_id=item.id,
                        message=f"item {item.id}: action add needs a service specification",
                    )
                )
            return problems
        spec = self.get(item.specification.id)
        if spec is None:
            problems.append(
                Problem(
                    code="unknown_specification",
                    item_id=item.id,
                    message=f"item {item.id}: unknown service specification "
                    f"{item.specification.id!r}",
                )
            )
            return problems
        return problems + _characteristic_problems(spec, item)


def _characteristic_problems(spec: ServiceSpecification, item: OrderItem) -> list[Problem]:
    problems: list[Problem] = []
    values: Mapping[str, Any] = item.characteristics
    for char in spec.characteristics:
        if char.name in values:
            problems += char.problems_with(values[char.name], item.id)
        elif char.required and char.default is None and item.action is ItemAction.ADD:
            problems.append(
                Problem(
                    code="missing_characteristic",
                    item_id=item.id,
                    characteristic=char.name,
                    message=f"item {item.id}: required characteristic "
                    f"{char.name} of {spec.name} is missing",
                )
            )
    for name in values:
        if spec.characteristic(name) is None:
            problems.append(
                Problem(
                    code="unknown_characteristic",
                    item_id=item.id,
                    characteristic=name,
                    structural=False,
                    message=f"item {item.id}: {spec.name} has no characteristic {name}",
                )
            )
    return problems


def duplicate_ids(items: Iterable[OrderItem]) -> list[Problem]:
    """An item id given more than once (in an order, or in one revision's items)."""
    seen: set[str] = set()
    problems = []
    for item in items:
        if item.id in seen:
            problems.append(
                Problem(
                    code="duplicate_item_id",
                    item_id=item.id,
                    message=f"item id {item.id} is used more than once",
                )
            )
        seen.add(item.id)
    return problems


def _dependency_problems(items: list[OrderItem]) -> list[Problem]:
    ids = {item.id for item in items}
    problems = [
        Problem(
            code="unknown_dependency",
            item_id=item.id,
            message=f"item {item.id} depends on item {dep}, which the order does not have",
        )
        for item in items
        for dep in item.depends_on
        if dep not in ids
    ]
    cycle = find_dependency_cycle({item.id: item.depends_on for item in items})
    if cycle:
        problems.append(
            Problem(
                code="dependency_cycle",
                item_id=cycle[0],
                message="items depend on each other in a cycle: " + " -> ".join(cycle),
            )
        )
    return problems


def find_dependency_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in the item dependency graph as a path (first node repeated), or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done or node not in graph:
            return None
        visiting.append(node)
        for dep in graph[node]:
            if found := visit(dep):
                return found
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if found := visit(start):
            return found
    return None


def structural(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.structural]


def flags(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if not p.structural]

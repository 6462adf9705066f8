"""Forms generated from the catalog: one input per characteristic of a specification,
its type, `required`, allowed values, bounds, unit and description taken from the spec,
and the submitted text turned back into typed values.

Only the *shape* of a value is checked here (a whole number, a date, one of the listed
values): whether the item is complete and in range is the domain's validation, shown in
the draft's validation panel, so the rules exist once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from pydantic import ValidationError
from serviceorders.domain.catalog import CharacteristicSpec, ServiceSpecification, ValueType
from serviceorders.support.isotime import iso, parse, utc_iso

PREFIX = "char."  # form names of characteristics: char.<name>
_INTEGER = re.compile(r"[+-]?\d{1,18}")


@dataclass
class FormField:
    """One input as the template draws it."""

    name: str  # the form field name
    label: str
    kind: str  # text | number | checkbox | date | datetime-local | select
    value: str = ""
    checked: bool = False
    required: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    minimum: float | None = None
    maximum: float | None = None
    step: str | None = None
    unit: str | None = None
    hint: str | None = None
    error: str | None = None

    @property
    def dom_id(self) -> str:
        return "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.name)


def _shown(value: Any, spec: CharacteristicSpec) -> str:
    """A stored value as the input shows it."""
    if value is None:
        return ""
    if spec.value_type is ValueType.DATETIME and isinstance(value, str):
        try:
            moment = parse(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M")
    return str(value)


def characteristic_fields(
    spec: ServiceSpecification,
    values: Mapping[str, Any],
    errors: Mapping[str, str] | None = None,
    raw: Mapping[str, str] | None = None,
) -> list[FormField]:
    """The inputs of `spec`'s characteristics, filled with the stored `values`, or with the
    `raw` text just submitted (kept as typed when the form is shown again with errors)."""
    errors = errors or {}
    fields = []
    for char in spec.characteristics:
        name = PREFIX + char.name
        described = f"{char.description.rstrip('.')}." if char.description else None
        hint = " ".join(
            part
            for part in (
                described,
                f"Default: {_default_text(char)}." if char.default is not None else None,
            )
            if part
        )
        item = FormField(
            name=name,
            label=char.name,
            kind=_kind(char),
            required=char.required,
            unit=char.unit,
            hint=hint or None,
            error=errors.get(char.name),
            minimum=char.minimum,
            maximum=char.maximum,
        )
        if raw is not None:
            item.value = raw.get(name, "")
            item.checked = name in raw
        elif char.name in values:
            item.value = _shown(values[char.name], char)
            item.checked = values[char.name] is True
        elif item.kind == "checkbox":
            item.checked = char.default is True
        if item.kind == "select":
            item.options = [(str(v), str(v)) for v in char.allowed_values]
        elif char.value_type is ValueType.INTEGER:
            item.step = "1"
        elif char.value_type is ValueType.NUMBER:
            item.step = "any"
        fields.append(item)
    return fields


def _default_text(char: CharacteristicSpec) -> str:
    if isinstance(char.default, bool):
        return "yes" if char.default else "no"
    return str(char.default)


def _kind(char: CharacteristicSpec) -> str:
    if char.allowed_values:
        return "select"
    return {
        ValueType.INTEGER: "number",
        ValueType.NUMBER: "number",
        ValueType.BOOLEAN: "checkbox",
        ValueType.DATE: "date",
        ValueType.DATETIME: "datetime-local",
    }.get(char.value_type, "text")


def parse_characteristics(
    spec: ServiceSpecification, form: Mapping[str, str]
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """(values given, names left empty, errors by characteristic name)."""
    values: dict[str, Any] = {}
    empty: list[str] = []
    errors: dict[str, str] = {}
    for char in spec.characteristics:
        name = PREFIX + char.name
        if _kind(char) == "checkbox":
            values[char.name] = name in form
            continue
        raw = form.get(name, "").strip()
        if not raw:
            empty.append(char.name)
            continue
        try:
            values[char.name] = _typed(char, raw)
        except ValueError as e:
            errors[char.name] = str(e)
    return values, empty, errors


def _typed(char: CharacteristicSpec, raw: str) -> Any:
    if char.allowed_values:
        for allowed in char.allowed_values:
            if str(allowed) == raw:
                return allowed
        raise ValueError("choose one of the listed values")
    match char.value_type:
        case ValueType.INTEGER:
            if not _INTEGER.fullmatch(raw):
                raise ValueError("must be a whole number")
            return int(raw)
        case ValueType.NUMBER:
            if _INTEGER.fullmatch(raw):
                return int(raw)
            try:
                number = float(raw)
            except ValueError:
                raise ValueError("must be a number") from None
            if not math.isfinite(number):
                raise ValueError("must be a finite number")
            return number
        case ValueType.DATE:
            try:
                return iso(date.fromisoformat(raw))
            except ValueError:
                raise ValueError("must be a date (YYYY-MM-DD)") from None
        case ValueType.DATETIME:
            try:
                moment = parse(raw)
            except ValueError:
                raise ValueError("must be a date and time (YYYY-MM-DDTHH:MM)") from None
            if moment.tzinfo is None:  # the input has no zone: the console speaks UTC
                moment = moment.replace(tzinfo=UTC)
            return utc_iso(moment)
    if len(raw) > 4000:
        raise ValueError("is longer than 4000 characters")
    return raw


def field_errors(error: ValidationError, names: Mapping[str, str]) -> dict[str, str]:
    """Pydantic errors of a request model, keyed by the form field they belong to
    (`names`: the model's location, dotted, -> the form field name)."""
    found: dict[str, str] = {}
    for err in error.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        name = names.get(where) or names.get(str(err["loc"][0]) if err["loc"] else "") or "_form"
        message = err["msg"].removeprefix("Value error, ")
        found.setdefault(name, message)
    return found

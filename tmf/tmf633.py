"""The catalog in TM Forum TMF633 `serviceSpecification` shape, for other systems to build
valid orders from. An edge translation: the domain's catalog knows nothing of TMF633.
"""

from __future__ import annotations

from typing import Any

from serviceorders.domain.catalog import Catalog, CharacteristicSpec, ServiceSpecification


def catalog_to_tmf633(catalog: Catalog) -> list[dict[str, Any]]:
    """A bare list, as a TMF633 `GET /serviceSpecification` would return it."""
    return [specification_to_tmf633(spec) for spec in catalog.specifications]


def specification_to_tmf633(spec: ServiceSpecification) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": spec.id,
        "name": spec.name,
        "version": spec.version,
        "lifecycleStatus": "active",
        "serviceSpecCharacteristic": [_characteristic(c) for c in spec.characteristics],
        "@type": "ServiceSpecification",
    }
    if spec.description:
        body["description"] = spec.description
    if spec.category:
        body["category"] = spec.category
    return body


def _characteristic(char: CharacteristicSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": char.name,
        "valueType": char.value_type.value,
        "minCardinality": 1 if char.required else 0,
        "maxCardinality": 1,
        "configurable": True,
        "serviceSpecCharacteristicValue": _values(char),
        "@type": "CharacteristicSpecification",
    }
    if char.description:
        body["description"] = char.description
    return body


def _values(char: CharacteristicSpec) -> list[dict[str, Any]]:
    values = [_value(char, value=v, isDefault=v == char.default) for v in char.allowed_values]
    if char.minimum is not None or char.maximum is not None:
        values.append(_value(char, valueFrom=char.minimum, valueTo=char.maximum, isDefault=False))
    if char.default is not None and char.default not in char.allowed_values:
        values.append(_value(char, value=char.default, isDefault=True))
    return values


def _value(char: CharacteristicSpec, **fields: Any) -> dict[str, Any]:
    body = {
        "valueType": char.value_type.value,
        **{k: v for k, v in fields.items() if v is not None},
    }
    if char.unit:
        body["unitOfMeasure"] = char.unit
    return body

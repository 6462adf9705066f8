"""Every string taken from outside has a bound (issue 15; docs/security.md, "Limits").

The walk goes through every request model (TMF641 bodies, the workflow's and the hub's),
the Kafka envelope and every event and value model, and fails on a `str` (a field, or a
list's item, or a dict's key or value) without a maximum length, unless `UNBOUNDED` names
the reason it needs none. Then the Kafka door's own checks: a value over its bound is a dead
letter whose reason names the field.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from annotated_types import MaxLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from serviceorders.consumers import envelope as env
from serviceorders.support import limits

# The door models: a value above a bound is refused before anything is written.
DOOR_MODULES = (
    "serviceorders.tmf.tmf641_in",
    "serviceorders.api.bodies",
    "serviceorders.api.hub",
    "serviceorders.consumers.envelope",
)
# Models stored and read back, and the engine's own configuration.
INNER_MODULES = (
    "serviceorders.domain.events",
    "serviceorders.domain.values",
    "serviceorders.domain.snapshot",
    "serviceorders.domain.catalog",
)

STORED = (
    "validated again on every load of a stored event or snapshot: a bound added later "
    "would make old events unreadable; their values come through the door models "
    "(request and envelope), which bound them, or are the engine's own (hashes, topics)"
)
UNBOUNDED: dict[str, str] = {
    "serviceorders.domain.events": STORED,
    "serviceorders.domain.values": STORED,
    "serviceorders.domain.snapshot": STORED,
    "serviceorders.domain.catalog": "the catalog is the operator's configuration file, not "
    "input from a door",
    "envelope.Envelope.event[key]": "the event resource is validated by the TMF641 request "
    "models (ServiceOrderCreate, ...), whose fields are bounded; "
    "a key not in them is ignored (and the message is at most "
    "1 MiB)",
}


def _unbounded(annotation: Any, metadata: list[Any], path: str) -> Iterator[str]:
    origin = typing.get_origin(annotation)
    if annotation is str:
        if not any(isinstance(m, MaxLen) for m in metadata):
            yield path
        return
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        extra: list[Any] = []
        for m in meta:
            extra += m.metadata if isinstance(m, FieldInfo) else [m]
        yield from _unbounded(base, [*metadata, *extra], path)
        return
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _unbounded(arg, metadata, path)
        return
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return  # walked as a model of its own module
    for i, arg in enumerate(typing.get_args(annotation)):  # list, tuple, dict, ...
        if arg is not Ellipsis:
            part = "key" if origin is dict and i == 0 else "item"
            yield from _unbounded(arg, [], f"{path}[{part}]")


def _models(module_name: str) -> list[type[BaseModel]]:
    module = importlib.import_module(module_name)
    return [
        c
        for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, BaseModel) and c.__module__ == module.__name__
    ]


def string_fields_without_bound(module_name: str) -> list[str]:
    found = []
    for model in _models(module_name):
        for name, info in model.model_fields.items():
            found += _unbounded(
                info.annotation,
                list(info.metadata),
                f"{module_name.rsplit('.', 1)[1]}.{model.__name__}.{name}",
            )
    return found


@pytest.mark.parametrize("module_name", DOOR_MODULES + INNER_MODULES)
def test_every_string_field_has_a_maximum_length_or_a_reason(module_name: str) -> None:
    assert _models(module_name), f"{module_name} defines no model: the walk found nothing"
    if module_name in UNBOUNDED:
        assert string_fields_without_bound(module_name), (
            f"{module_name} is exempted ({UNBOUNDED[module_name]!r}) but every string in it "
            "is bounded: drop the exemption"
        )
        return
    missing = [p for p in string_fields_without_bound(module_name) if p not in UNBOUNDED]
    assert not missing, (
        "strings with no max_length (add one, or a reason to UNBOUNDED): " + ", ".join(missing)
    )


def test_the_walk_sees_a_string_without_a_bound() -> None:
    class Probe(BaseModel):
        bounded: str = ""
        items: list[str] = []
        names: dict[str, int] = {}

    found = list(_unbounded(Probe.model_fields["bounded"].annotation, [], "bounded"))
    found += _unbounded(Probe.model_fields["items"].annotation, [], "items")
    found += _unbounded(Probe.model_fields["names"].annotation, [], "names")
    assert found == ["bounded", "items[item]", "names[key]"]


def test_every_exempted_field_exists() -> None:
    fields = {p for m in DOOR_MODULES for p in string_fields_without_bound(m)}
    for key in UNBOUNDED:
        if "." in key and not key.startswith("serviceorders."):
            assert key in fields, f"{key} is exempted but is no unbounded field (any more)"


# ------------------------------------------------------------------- the Kafka door
def _message(**envelope: Any) -> bytes:
    body = {
        "eventId": "e-1",
        "eventType": env.CREATE,
        "event": {"serviceOrder": {"externalId": "x-1", "serviceOrderItem": []}},
        **envelope,
    }
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("field", "bound"),
    [
        ("eventId", limits.MAX_ID),
        ("correlationId", limits.MAX_CORRELATION_ID),
        ("eventType", limits.MAX_TYPE),
    ],
)
def test_an_envelope_field_over_its_bound_is_a_dead_letter_naming_it(
    field: str, bound: int
) -> None:
    with pytest.raises(env.Refusal) as refused:
        env.parse(_message(**{field: "x" * (bound + 1)}), b"key")
    assert refused.value.category == env.NOT_ENVELOPE
    assert refused.value.reason == (
        f"not a TMF641 event envelope: {field}: String should have at most {bound} characters"
    )
    if field != "eventType":  # at the bound: read
        env.read_envelope(_message(**{field: "x" * bound}))


def _state_change(item: dict[str, Any], external: str = "x-1") -> bytes:
    return orjson.dumps(
        {
            "eventId": "e-2",
            "eventType": env.STATE_CHANGE,
            "event": {"serviceOrder": {"externalId": external, "serviceOrderItem": [item]}},
        }
    )


def test_fulfilment_values_over_their_bounds_are_dead_letters_naming_them() -> None:
    cases = [
        (
            {"id": "i" * 101, "state": "completed"},
            "x-1",
            "serviceOrderItem.0.id is 101 characters; the limit is 100",
        ),
        (
            {"id": "1", "state": "failed", "errorMessage": "e" * 4001},
            "x-1",
            "serviceOrderItem.0.errorMessage is 4001 characters; the limit is 4000",
        ),
        (
            {"id": "1", "state": "failed", "stateReason": "e" * 4001},
            "x-1",
            "serviceOrderItem.0.stateReason is 4001 characters; the limit is 4000",
        ),
        (
            {"id": "1", "state": "completed"},
            "x" * 201,
            "externalId is 201 characters; the limit is 200",
        ),
    ]
    for item, external, reason in cases:
        with pytest.raises(env.Refusal) as refused:
            env.parse(_state_change(item, external), b"key")
        assert (refused.value.category, refused.value.reason) == (env.INVALID_ORDER, reason)
    parsed = env.parse(
        _state_change({"id": "i" * 100, "state": "failed", "errorMessage": "e" * 4000}, "x" * 200),
        b"key",
    )
    assert isinstance(parsed.command, env.ChangeItemStates)
    assert parsed.command.changes[0].item_id == "i" * 100


def test_a_characteristic_value_with_a_long_text_is_refused_naming_it() -> None:
    order = {
        "externalId": "x-1",
        "serviceOrderItem": [
            {
                "id": "1",
                "action": "add",
                "service": {
                    "serviceCharacteristic": [{"name": "note", "value": {"deep": ["t" * 4001]}}]
                },
            }
        ],
    }
    message = orjson.dumps(
        {"eventId": "e-3", "eventType": env.CREATE, "event": {"serviceOrder": order}}
    )
    with pytest.raises(env.Refusal) as refused:
        env.parse(message, b"key")
    assert refused.value.category == env.INVALID_ORDER
    assert (
        "serviceOrder.serviceOrderItem.0.service.serviceCharacteristic.0.value"
        in refused.value.reason
    )
    assert "value.deep.0: text of 4001 characters; the limit is 4000" in refused.value.reason

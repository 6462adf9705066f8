"""Issue 21: the domain values a TMF641 body becomes are built without validating them a
second time (domain/trusted.py). They are exactly what validated construction makes from
the same fields: the same fields and values, in the same order, the same fields set, the
same JSON; on hypothesis-generated TMF641 bodies of every attribute the swagger has.

And a plain creation read straight into the domain values (tmf/tmf641_direct.py) gives
exactly what the TMF641 models and `order_to_domain` give, and is taken only when the
models take it: on the sample traffic, on generated bodies, and on sample bodies changed
at random places to random JSON values and attribute names."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from serviceorders.consumers.sample import traffic
from serviceorders.domain import events as ev
from serviceorders.domain.chain import GENESIS
from serviceorders.domain.trusted import trusted
from serviceorders.domain.values import (
    Actor,
    Channel,
    ItemAction,
    OrderHeader,
    OrderItem,
    Party,
    Role,
    Source,
)
from serviceorders.tmf import tmf641_in as tmf
from serviceorders.tmf.tmf641_direct import decode_create
from serviceorders.tmf.tmf641_in import (
    REFUSED_ON_CREATE,
    REFUSED_ON_ITEM,
    ServiceOrderCreate,
    ServiceOrderUpdate,
    items_to_domain,
    order_to_domain,
)
from tmf641_strategies import create_bodies, documented, update_bodies

pytestmark = pytest.mark.unit

_, ON_CREATE, ON_PATCH = documented()
ROUNDS = hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def validated(value: Any) -> Any:
    """`value` built again by validating constructors, from the fields it was given."""
    if isinstance(value, BaseModel):
        fields = {k: validated(getattr(value, k)) for k in value.model_fields_set}
        return type(value)(**fields)
    if isinstance(value, tuple):
        return tuple(validated(v) for v in value)
    if isinstance(value, list):
        return [validated(v) for v in value]
    return value


def assert_same(found: Any, expected: Any) -> None:
    """The same value, field by field, recursively (types, order, fields set, JSON)."""
    assert type(found) is type(expected)
    if isinstance(found, BaseModel):
        assert list(found.__dict__) == list(expected.__dict__)
        assert found.model_fields_set == expected.model_fields_set
        assert found.model_dump_json() == expected.model_dump_json()
        assert found == expected
        for name in found.__dict__:
            assert_same(found.__dict__[name], expected.__dict__[name])
    elif isinstance(found, tuple | list):
        assert len(found) == len(expected)
        for a, b in zip(found, expected, strict=True):
            assert_same(a, b)
    elif isinstance(found, dict):
        assert list(found) == list(expected)
        for key in found:
            assert_same(found[key], expected[key])
    else:
        assert found == expected


@ROUNDS
@given(generated=create_bodies(refused=ON_CREATE))
def test_a_create_body_becomes_what_validation_makes(generated: Any) -> None:
    try:
        body = ServiceOrderCreate.model_validate(generated.body)
    except ValidationError:
        return  # refused by the door: nothing is built
    header, items, notes = order_to_domain(body)
    assert_same(header, validated(header))
    assert_same(items, validated(items))
    assert_same(notes, validated(notes))


@ROUNDS
@given(generated=create_bodies(refused=ON_CREATE, max_items=3), data=st.data())
def test_a_revision_s_items_become_what_validation_makes(
    generated: Any, data: st.DataObject
) -> None:
    patch = data.draw(update_bodies(current=generated.body, refused=ON_PATCH))
    try:
        update = ServiceOrderUpdate.model_validate(patch)
    except ValidationError:
        return
    items = items_to_domain(update.service_order_item or [])
    assert_same(items, validated(items))


def test_dependencies_named_twice_are_kept_once_as_validation_keeps_them() -> None:
    body = ServiceOrderCreate.model_validate(
        {
            "serviceOrderItem": [
                {"id": "1", "action": "add", "service": {}},
                {
                    "id": "2",
                    "action": "add",
                    "service": {},
                    "serviceOrderItemRelationship": [
                        {"relationshipType": "dependency", "orderItem": {"itemId": "1"}},
                        {"relationshipType": "dependsOn", "orderItem": {"itemId": "1"}},
                    ],
                },
            ]
        }
    )
    _, items, _ = order_to_domain(body)
    assert items[1].depends_on == ("1",)
    assert_same(items, validated(items))


def test_trusted_gives_defaults_fresh_and_sets_only_the_fields_given() -> None:
    a = trusted(OrderItem, id="1", action=ItemAction.ADD)
    b = trusted(OrderItem, id="1", action=ItemAction.ADD)
    assert_same(a, OrderItem(id="1", action=ItemAction.ADD))
    assert a.extra is not b.extra and a.characteristics is not b.characteristics
    assert a.model_fields_set == {"id", "action"}
    assert_same(trusted(Party, id="C"), Party(id="C"))  # role's default, "customer"
    with pytest.raises(TypeError, match="required"):
        trusted(OrderItem, id="1")
    with pytest.raises(TypeError, match="no field"):
        trusted(OrderItem, id="1", action=ItemAction.ADD, colour="red")


def test_a_trusted_event_stores_the_same_bytes_and_hash() -> None:
    fields: dict[str, Any] = {
        "originator_id": UUID(int=7),
        "originator_version": 1,
        "originator_topic": "serviceorders.order:ServiceOrder",
        "timestamp": datetime(2027, 1, 4, 8, tzinfo=UTC),
        "actor": Actor(id="crm", role=Role.UPSTREAM),
        "source": Source(channel=Channel.KAFKA, topic="t", partition=0, offset=3),
        "correlation_id": "c",
        "prev_hash": GENESIS,
        "header": OrderHeader(external_id="X", related_parties=(Party(id="C", name="n"),)),
        "items": (OrderItem(id="1", action=ItemAction.ADD, characteristics={"speed": 1.5}),),
    }
    made = trusted(ev.OrderDrafted, **fields)
    expected = ev.OrderDrafted(**fields)
    assert made.hash == expected.hash and made.hash_rule == expected.hash_rule
    assert made.stored_state() == expected.stored_state()
    assert list(made.stored_state()) == list(expected.stored_state())
    assert made == expected


# ------------------------------------------------------------ the direct decoder
SAMPLES = list(traffic(40, duplicates=0, bad=0).orders.values())


def assert_decoded_as_the_models_read(body: Any, nul_checked: bool = False) -> bool:
    """The direct decoder takes `body` only if the models do, and gives what they give;
    whether it took it."""
    decoded = decode_create(body, nul_checked=nul_checked)
    try:
        expected = order_to_domain(ServiceOrderCreate.model_validate(body))
    except ValidationError:
        assert decoded is None, "the models refuse what the direct decoder took"
        return False
    if decoded is not None:
        for found, value in zip(decoded, expected, strict=True):
            assert_same(found, value)
    return decoded is not None


def test_the_sample_traffic_is_read_directly_as_the_models_read_it() -> None:
    for body in SAMPLES:
        assert assert_decoded_as_the_models_read(body)
        assert assert_decoded_as_the_models_read(body, nul_checked=True)


@ROUNDS
@given(generated=create_bodies(refused=ON_CREATE))
def test_generated_bodies_are_read_directly_only_as_the_models_read_them(generated: Any) -> None:
    assert_decoded_as_the_models_read(generated.body)


NAMES = sorted(
    {
        name
        for model in (
            tmf.ServiceOrderCreate,
            tmf.ServiceOrderItem,
            tmf.Service,
            tmf.Characteristic,
            tmf.SpecificationRef,
            tmf.PlaceRef,
            tmf.RelatedParty,
            tmf.NoteIn,
            tmf.ItemRelationship,
            tmf.ItemRef,
            tmf.Relationship,
        )
        for python, field in model.model_fields.items()
        for name in (python, field.alias or python)
    }
    | set(REFUSED_ON_CREATE)
    | set(REFUSED_ON_ITEM)
    | {"other", "x-extension"}
)
TEXTS = st.sampled_from(
    [
        "",
        "a",
        "add",
        "modify",
        "noChange",
        "ADD",
        "dependency",
        "dependsOn",
        "customer",
        "2027-01-04",
        "2027-01-04T08:00:00",
        "2027-01-04T08:00:00Z",
        "2027-01-04T08:00:00+01:00",
        "1",
        "x" * 51,
        "x" * 101,
        "x" * 201,
        "x" * 501,
        "x" * 4001,
        "a\x00b",
    ]
) | st.text(max_size=8)
LEAVES = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 2, -1, 100000, 100001, 2**40, 1.0, 2.5, 1700000000])
    | TEXTS
)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _places(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every object and array in a JSON value (the root's is ())."""
    found = []
    if isinstance(value, dict | list):
        found.append(here)
        keys = value.keys() if isinstance(value, dict) else range(len(value))
        for key in keys:
            found += _places(value[key], (*here, key))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_changed_sample_bodies_are_read_directly_only_as_the_models_read_them(
    data: st.DataObject,
) -> None:
    body = copy.deepcopy(data.draw(st.sampled_from(SAMPLES)))
    for _ in range(data.draw(st.integers(1, 3))):
        target = _at(body, data.draw(st.sampled_from(_places(body))))
        if isinstance(target, dict):
            key = data.draw(st.sampled_from([*target, *NAMES]))
            if key in target and data.draw(st.booleans()):
                del target[key]
            else:
                target[key] = data.draw(JSON)
        elif target and data.draw(st.booleans()):
            target[data.draw(st.integers(0, len(target) - 1))] = data.draw(JSON)
        else:
            target.append(data.draw(JSON))
    assert_decoded_as_the_models_read(body)

"""The service catalog and the validation of order items against it."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError
from serviceorders.domain.catalog import (
    Catalog,
    CharacteristicSpec,
    ServiceSpecification,
    ValueType,
    find_dependency_cycle,
    flags,
    structural,
)
from serviceorders.domain.values import ItemAction, OrderItem, Place, Problem, SpecRef

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()


def item(
    spec_id: str = "internet-access",
    item_id: str = "1",
    *,
    action: ItemAction = ItemAction.ADD,
    place: bool = True,
    **characteristics,
) -> OrderItem:
    return OrderItem(
        id=item_id,
        action=action,
        specification=SpecRef(id=spec_id),
        characteristics=characteristics,
        place=Place(id="site") if place else None,
    )


def internet(item_id: str = "1", **characteristics) -> OrderItem:
    return item(
        "internet-access",
        item_id,
        **{"bandwidthMbps": 100, "accessType": "fibre", **characteristics},
    )


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def a_valid_value(char: CharacteristicSpec):
    if char.default is not None:
        return char.default
    if char.allowed_values:
        return char.allowed_values[0]
    return {
        ValueType.STRING: "x",
        ValueType.INTEGER: int(char.minimum or 1),
        ValueType.NUMBER: char.minimum or 1.5,
        ValueType.BOOLEAN: True,
        ValueType.DATE: "2030-01-15",
        ValueType.DATETIME: "2030-01-15T10:00:00+00:00",
    }[char.value_type]


# -------------------------------------------------------------------------- loading
def test_the_default_catalog_loads_with_its_specifications() -> None:
    assert {s.id for s in CATALOG.specifications} == {
        "internet-access",
        "sdwan-site",
        "ethernet-private-line",
        "ip-vpn",
        "managed-router",
        "sip-trunk",
        "managed-firewall",
        "cloud-connect",
    }


def test_specifications_are_found_by_id() -> None:
    spec = CATALOG.get("internet-access")

    assert spec is not None
    assert spec.name == "Dedicated Internet Access"
    assert spec.version == "2.1"
    assert "internet-access" in CATALOG
    assert CATALOG.get("no-such-spec") is None
    assert "no-such-spec" not in CATALOG


def test_a_characteristic_is_found_by_name() -> None:
    spec = CATALOG.get("internet-access")

    bandwidth = spec.characteristic("bandwidthMbps")
    assert bandwidth.value_type is ValueType.INTEGER
    assert bandwidth.required is True
    assert 100 in bandwidth.allowed_values
    assert spec.characteristic("colour") is None


@pytest.mark.parametrize("spec", CATALOG.specifications, ids=lambda s: s.id)
def test_every_default_of_the_catalog_is_a_valid_value(spec: ServiceSpecification) -> None:
    for char in spec.characteristics:
        if char.default is not None:
            assert char.problems_with(char.default, "x") == [], char.name


@pytest.mark.parametrize("spec", CATALOG.specifications, ids=lambda s: s.id)
def test_every_specification_accepts_an_item_with_its_required_values(
    spec: ServiceSpecification,
) -> None:
    values = {c.name: a_valid_value(c) for c in spec.characteristics if c.required}

    assert CATALOG.validate_items([item(spec.id, **values)]) == []


def test_a_catalog_may_not_repeat_a_specification_id() -> None:
    spec = {"id": "a", "name": "A"}

    with pytest.raises(ValidationError, match="repeats a specification id"):
        Catalog.model_validate({"specifications": [spec, spec]})


def test_a_specification_may_not_repeat_a_characteristic_name() -> None:
    char = {"name": "speed", "value_type": "integer"}

    with pytest.raises(ValidationError, match="repeats a characteristic name"):
        ServiceSpecification.model_validate(
            {"id": "a", "name": "A", "characteristics": [char, char]}
        )


def test_an_unknown_value_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        CharacteristicSpec.model_validate({"name": "x", "value_type": "colour"})


# ------------------------------------------------------------------------ value types
TYPE_CASES = [
    (ValueType.STRING, ["fibre", ""], [1, 1.5, True, None, ["a"]]),
    (ValueType.INTEGER, [0, 100, -5], [1.5, True, False, "100", None]),
    (ValueType.NUMBER, [0, 100, 2.5, -0.1], [True, "2.5", None]),
    (ValueType.BOOLEAN, [True, False], [1, 0, "true", None]),
    (
        ValueType.DATE,
        ["2030-01-15"],
        ["2030-13-01", "15/01/2030", "tomorrow", "2030-01-15T10:00:00", 20300115, None],
    ),
    (
        ValueType.DATETIME,
        ["2030-01-15T10:00:00", "2030-01-15T10:00:00+02:00", "2030-01-15T10:00:00Z"],
        ["2030-01-15T25:00:00", "15/01/2030 10:00", "now", 1700000000, None],
    ),
]


@pytest.mark.parametrize(
    ("value_type", "good", "bad"), TYPE_CASES, ids=[str(t) for t, _, _ in TYPE_CASES]
)
def test_values_are_checked_against_their_type(value_type, good, bad) -> None:
    char = CharacteristicSpec(name="c", value_type=value_type)

    for value in good:
        assert char.problems_with(value, "7") == [], value
    for value in bad:
        problems = char.problems_with(value, "7")
        assert codes(problems) == ["wrong_type"], value
        assert problems[0].item_id == "7"
        assert problems[0].characteristic == "c"
        assert problems[0].structural is False
        assert "item 7" in problems[0].message


def test_a_date_characteristic_of_the_catalog_is_checked() -> None:
    assert CATALOG.validate_items([internet(activationDate="2030-01-15")]) == []
    assert codes(CATALOG.validate_items([internet(activationDate="soon")])) == ["wrong_type"]


def test_a_date_time_characteristic_of_the_catalog_is_checked() -> None:
    trunk = {"channels": 10, "emergencyAddressValidated": True}

    ok = item("sip-trunk", portingDateTime="2030-01-15T08:00:00+01:00", **trunk)
    wrong = item("sip-trunk", portingDateTime="next week", **trunk)

    assert CATALOG.validate_items([ok]) == []
    assert codes(CATALOG.validate_items([wrong])) == ["wrong_type"]


# ------------------------------------------------------------------- allowed and range
def test_a_value_outside_the_allowed_values_is_flagged() -> None:
    problems = CATALOG.validate_items([internet(bandwidthMbps=123)])

    assert codes(problems) == ["value_not_allowed"]
    assert problems[0].characteristic == "bandwidthMbps"
    assert problems[0].structural is False
    assert "123" in problems[0].message


@pytest.mark.parametrize("value", [10, 100, 10000])
def test_every_allowed_value_is_accepted(value) -> None:
    assert CATALOG.validate_items([internet(bandwidthMbps=value)]) == []


def test_a_value_of_the_wrong_type_is_flagged_once_not_also_as_not_allowed() -> None:
    assert codes(CATALOG.validate_items([internet(bandwidthMbps="100")])) == ["wrong_type"]


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (4, True), (5, False)])
def test_ranges_are_inclusive(value, ok) -> None:
    sdwan = item("sdwan-site", bandwidthProfile="small", siteRole="hub", underlayLinks=value)

    problems = CATALOG.validate_items([sdwan])

    assert codes(problems) == ([] if ok else ["out_of_range"])


def test_a_range_with_only_a_minimum_or_only_a_maximum() -> None:
    at_least = CharacteristicSpec(name="c", value_type=ValueType.NUMBER, minimum=0.5)
    at_most = CharacteristicSpec(name="c", value_type=ValueType.NUMBER, maximum=0.5)

    assert at_least.problems_with(10**9, "1") == []
    assert codes(at_least.problems_with(0.49, "1")) == ["out_of_range"]
    assert at_most.problems_with(-(10**9), "1") == []
    assert codes(at_most.problems_with(0.51, "1")) == ["out_of_range"]


def test_a_large_integer_within_range_is_accepted() -> None:
    vpn = item(
        "ip-vpn", vpnId="v1", routingProtocol="bgp", bandwidthMbps=100, customerAsn=4294967295
    )

    assert CATALOG.validate_items([vpn]) == []


# ------------------------------------------------------------------------ required
def test_a_missing_required_characteristic_is_structural() -> None:
    problems = CATALOG.validate_items([item("internet-access", bandwidthMbps=100)])

    assert codes(problems) == ["missing_characteristic"]
    assert problems[0].characteristic == "accessType"
    assert problems[0].structural is True


def test_a_required_characteristic_with_a_default_may_be_left_out() -> None:
    spec = ServiceSpecification(
        id="s",
        name="S",
        characteristics=(
            CharacteristicSpec(
                name="tier",
                value_type=ValueType.STRING,
                required=True,
                default="gold",
                allowed_values=("gold", "silver"),
            ),
            CharacteristicSpec(name="size", value_type=ValueType.INTEGER, required=True),
        ),
    )
    catalog = Catalog(specifications=(spec,))

    problems = catalog.validate_items([item("s", size=3), item("s", "2")])

    assert [(p.code, p.item_id, p.characteristic) for p in problems] == [
        ("missing_characteristic", "2", "size")
    ]


def test_required_characteristics_are_only_required_for_new_services() -> None:
    modify = item(action=ItemAction.MODIFY, bandwidthMbps=1000).model_copy(
        update={"service_id": "svc-1", "place": Place(id="s")}
    )

    assert CATALOG.validate_items([modify]) == []


# ------------------------------------------------------------------ other problems
def test_an_unknown_characteristic_is_flagged() -> None:
    problems = CATALOG.validate_items([internet(colour="blue")])

    assert codes(problems) == ["unknown_characteristic"]
    assert problems[0].characteristic == "colour"
    assert problems[0].structural is False


def test_a_missing_place_is_flagged() -> None:
    problems = CATALOG.validate_items(
        [item("internet-access", place=False, bandwidthMbps=100, accessType="fibre")]
    )

    assert codes(problems) == ["missing_place"]
    assert problems[0].structural is False


def test_an_unknown_specification_is_structural() -> None:
    problems = CATALOG.validate_items([item("teleporter", warp=9)])

    assert codes(problems) == ["unknown_specification"]
    assert problems[0].structural is True


def test_a_new_service_needs_a_specification() -> None:
    problems = CATALOG.validate_items(
        [OrderItem(id="1", action=ItemAction.ADD, place=Place(id="s"))]
    )

    assert codes(problems) == ["missing_specification"]
    assert problems[0].structural is True


@pytest.mark.parametrize("action", [ItemAction.MODIFY, ItemAction.DELETE, ItemAction.NO_CHANGE])
def test_a_change_to_an_existing_service_needs_its_id(action) -> None:
    without = OrderItem(id="1", action=action, place=Place(id="s"))
    with_id = OrderItem(id="1", action=action, service_id="svc-1", place=Place(id="s"))

    assert codes(CATALOG.validate_items([without])) == ["missing_service_ref"]
    assert CATALOG.validate_items([with_id]) == []


def test_an_empty_order_is_structural() -> None:
    assert codes(CATALOG.validate_items([])) == ["no_items"]
    assert structural(CATALOG.validate_items([]))


def test_item_ids_must_be_unique() -> None:
    problems = CATALOG.validate_items([internet("1"), internet("1")])

    assert codes(problems) == ["duplicate_item_id"]
    assert problems[0].structural is True


def test_every_problem_is_reported_at_once() -> None:
    items = [
        internet("1", bandwidthMbps=123, colour="blue"),
        item("teleporter", "2"),
        OrderItem(id="3", action=ItemAction.DELETE, place=None),
    ]

    problems = CATALOG.validate_items(items)

    assert sorted((p.code, p.item_id) for p in problems) == sorted(
        [
            ("value_not_allowed", "1"),
            ("unknown_characteristic", "1"),
            ("unknown_specification", "2"),
            ("missing_service_ref", "3"),
            ("missing_place", "3"),
        ]
    )
    assert codes(structural(problems)) == ["unknown_specification", "missing_service_ref"]
    assert sorted(codes(flags(problems))) == [
        "missing_place",
        "unknown_characteristic",
        "value_not_allowed",
    ]


def test_structural_and_flags_split_the_problems() -> None:
    refused = Problem(code="a", message="a", structural=True)
    flagged = Problem(code="b", message="b", structural=False)

    assert structural([refused, flagged]) == [refused]
    assert flags([refused, flagged]) == [flagged]


# -------------------------------------------------------------------- dependencies
def test_a_dependency_on_an_item_the_order_lacks_is_structural() -> None:
    dependent = internet("2").model_copy(update={"depends_on": ("1", "9")})

    problems = CATALOG.validate_items([internet("1"), dependent])

    assert codes(problems) == ["unknown_dependency"]
    assert "9" in problems[0].message


def test_a_dependency_cycle_is_structural() -> None:
    a = internet("a").model_copy(update={"depends_on": ("b",)})
    b = internet("b").model_copy(update={"depends_on": ("a",)})

    problems = CATALOG.validate_items([a, b])

    assert codes(problems) == ["dependency_cycle"]
    assert "a -> b -> a" in problems[0].message


def test_no_cycle_in_an_empty_or_acyclic_graph() -> None:
    assert find_dependency_cycle({}) is None
    assert find_dependency_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_a_diamond_is_not_a_cycle() -> None:
    assert (
        find_dependency_cycle({"top": ["l", "r"], "l": ["base"], "r": ["base"], "base": []}) is None
    )


def test_a_self_dependency_is_a_cycle() -> None:
    assert find_dependency_cycle({"a": ["a"]}) == ["a", "a"]


def test_a_cycle_is_returned_as_a_closed_path() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}

    cycle = find_dependency_cycle(graph)

    assert cycle == ["a", "b", "c", "a"]
    for node, nxt in itertools.pairwise(cycle):
        assert nxt in graph[node]


def test_a_cycle_not_reachable_from_the_first_node_is_found() -> None:
    cycle = find_dependency_cycle({"a": [], "b": ["c"], "c": ["d"], "d": ["b"]})

    assert cycle == ["b", "c", "d", "b"]


def test_dependencies_on_unknown_nodes_are_not_cycles() -> None:
    assert find_dependency_cycle({"a": ["ghost"], "b": ["a", "ghost"]}) is None


def test_the_cycle_found_is_deterministic() -> None:
    graph = {"x": ["y"], "y": ["x"], "p": ["q"], "q": ["p"]}

    assert find_dependency_cycle(graph) == find_dependency_cycle(dict(reversed(graph.items())))


# ------------------------------------------------------------------------- resolve
def test_resolve_fills_in_the_specification_name_and_version() -> None:
    resolved = CATALOG.resolve(internet())

    assert resolved.specification == SpecRef(
        id="internet-access", name="Dedicated Internet Access", version="2.1"
    )
    assert resolved.characteristics == internet().characteristics


def test_resolve_keeps_a_name_and_version_given_by_the_order() -> None:
    given = internet().model_copy(
        update={"specification": SpecRef(id="internet-access", name="DIA", version="1.0")}
    )

    assert CATALOG.resolve(given) == given


def test_resolve_leaves_unknown_specifications_and_spec_less_items_alone() -> None:
    unknown = item("teleporter")
    bare = OrderItem(id="1", action=ItemAction.DELETE, service_id="svc-1")

    assert CATALOG.resolve(unknown) == unknown
    assert CATALOG.resolve(bare) == bare


def test_the_catalog_finds_specifications_and_characteristics_by_name_copies_too() -> None:
    # Issue 21: looked up in an index (a slot, built once); a copy or an unpickled catalog,
    # which carries no slot, builds it again.
    import pickle

    catalog = Catalog.default()
    for found in (catalog, catalog.model_copy(), pickle.loads(pickle.dumps(catalog))):
        for spec in catalog.specifications:
            assert found.get(spec.id) == spec and spec.id in found
            for char in spec.characteristics:
                assert found.get(spec.id).characteristic(char.name) == char  # type: ignore[union-attr]
                assert spec.model_copy().characteristic(char.name) == char
            assert spec.characteristic("no such characteristic") is None
        assert found.get("teleporter") is None and "teleporter" not in found
        assert None not in found and 5 not in found
        assert found == catalog

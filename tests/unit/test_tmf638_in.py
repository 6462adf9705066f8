"""TMF638 Service JSON -> ServiceRecord (tmf/tmf638_in.py): what an import takes, what it
keeps as sent, and every problem of a service it refuses; and the Kafka import topic's
reading of a message (consumers/envelope.parse_service) built on it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from serviceorders.consumers import envelope as env
from serviceorders.domain.service import Service
from serviceorders.domain.values import Party, Place, ServiceRecord, ServiceState, SpecRef
from serviceorders.tmf.tmf638_in import service_from_tmf638, service_problems

pytestmark = pytest.mark.unit

FULL: dict[str, Any] = {
    "id": "LEGACY-1",
    "href": "https://old.example.com/serviceInventory/v4/service/LEGACY-1",
    "name": "Acme HQ line",
    "state": "inactive",
    "category": "business",
    "serviceType": "internet",
    "startDate": "2020-01-01T00:00:00Z",
    "@type": "Service",
    "isServiceEnabled": False,
    "hasStarted": True,
    "serviceOrderItem": [{"serviceOrderId": "OLD-7", "itemId": "1"}],
    "serviceSpecification": {
        "id": "internet-access",
        "name": "Internet access",
        "version": "2",
        "href": "https://old.example.com/spec/internet-access",
    },
    "serviceCharacteristic": [
        {"name": "bandwidthMbps", "valueType": "integer", "value": 50},
        {"name": "addresses", "value": {"v4": ["192.0.2.1"], "v6": []}},
    ],
    "place": [{"id": "site-1", "name": "HQ", "role": "installationSite"}],
    "relatedParty": [
        {"id": "CUST-1", "name": "Acme", "role": "Customer", "@referredType": "Organization"},
        {"id": "ANNA", "name": "Anna", "role": "technicalContact"},
    ],
    "serviceRelationship": [
        {"relationshipType": "dependsOn", "service": {"id": "ACCESS-1", "href": "x"}},
        {"relationshipType": "reliesOn", "service": {"id": "POWER-1"}},
        {"relationshipType": "isBackupOf", "service": {"id": "LEGACY-9"}},
    ],
    "supportingService": [{"id": "ROUTER-1", "name": "CPE"}],
}


def record(data: Any) -> ServiceRecord:
    found = service_from_tmf638(data)
    assert isinstance(found, ServiceRecord), found
    return found


def problems(data: Any) -> list[str]:
    found = service_from_tmf638(data)
    assert isinstance(found, list), found
    return found


def test_a_full_service_is_typed_and_the_rest_kept_as_sent() -> None:
    r = record(FULL)
    assert r.id == "LEGACY-1" and r.name == "Acme HQ line"
    assert r.state is ServiceState.INACTIVE
    assert r.specification == SpecRef(
        id="internet-access",
        name="Internet access",
        version="2",
        extra={"href": "https://old.example.com/spec/internet-access"},
    )
    assert r.characteristics == {"bandwidthMbps": 50, "addresses": {"v4": ["192.0.2.1"], "v6": []}}
    assert r.places == (Place(id="site-1", name="HQ", role="installationSite"),)
    assert r.customer == Party(
        id="CUST-1", name="Acme", role="Customer", referred_type="Organization"
    )
    assert r.depends_on == ("ACCESS-1", "POWER-1", "ROUTER-1")
    assert r.extra == {
        "category": "business",
        "serviceType": "internet",
        "startDate": "2020-01-01T00:00:00Z",
        "@type": "Service",
        "relatedParty": [{"id": "ANNA", "name": "Anna", "role": "technicalContact"}],
        "serviceRelationship": [{"relationshipType": "isBackupOf", "service": {"id": "LEGACY-9"}}],
        "supportingService": [{"id": "ROUTER-1", "name": "CPE"}],
    }
    # the engine's own attributes (href, serviceOrderItem) and those state gives are ignored
    for name in ("href", "serviceOrderItem", "isServiceEnabled", "hasStarted"):
        assert name not in r.extra


def test_only_the_id_is_required_and_the_state_defaults_to_active() -> None:
    r = record({"id": "S-1"})
    assert r == ServiceRecord(id="S-1")
    assert r.state is ServiceState.ACTIVE and r.customer is None and r.extra == {}


@pytest.mark.parametrize("state", [s.value for s in ServiceState])
def test_every_tmf638_state_is_taken(state: str) -> None:
    assert record({"id": "S-1", "state": state}).state.value == state


def test_characteristics_and_places_with_more_than_is_typed_are_also_kept_as_sent() -> None:
    data = {
        "id": "S-1",
        "serviceCharacteristic": [{"name": "vlan", "value": 7, "id": "c-1", "@type": "X"}],
        "place": [{"id": "site-1", "@referredType": "GeographicSite"}],
    }
    r = record(data)
    assert r.characteristics == {"vlan": 7} and r.places == (Place(id="site-1"),)
    assert r.extra == {
        "serviceCharacteristic": [{"name": "vlan", "value": 7, "id": "c-1", "@type": "X"}],
        "place": [{"id": "site-1", "@referredType": "GeographicSite"}],
    }


def test_a_dependency_named_twice_is_one() -> None:
    data = {
        "id": "S-1",
        "serviceRelationship": [{"relationshipType": "DependsOn", "service": {"id": "A"}}],
        "supportingService": [{"id": "A"}],
    }
    assert record(data).depends_on == ("A",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, ["id: Field required"]),
        ({"id": ""}, ["id: String should have at least 1 character"]),
        ({"id": "x" * 201}, ["id: String should have at most 200 characters"]),
        ({"id": 7}, ["id: Input should be a valid string"]),
        (
            {"id": "S", "state": "running"},
            [
                "state: 'running' is not a TMF638 service state (feasibilityChecked, designed, "
                "reserved, inactive, active, terminated)"
            ],
        ),
        (
            {"id": "S", "serviceCharacteristic": [{"name": "a", "value": 1}, {"name": "a"}]},
            ["serviceCharacteristic: each characteristic name once; given more than once: a"],
        ),
        (
            {"id": "S", "serviceCharacteristic": [{"value": 1}]},
            ["serviceCharacteristic.0.name: Field required"],
        ),
        (
            {"id": "S", "place": [{"name": "HQ"}]},
            ["place: a place is kept by its id: place 0 has none"],
        ),
        (
            {"id": "S", "serviceSpecification": {"name": "x"}},
            ["serviceSpecification.id: Field required"],
        ),
        (
            {
                "id": "S",
                "relatedParty": [{"id": "A", "role": "customer"}, {"id": "B", "role": "customer"}],
            },
            [
                "relatedParty: more than one party with role customer (A, B): a service "
                "belongs to one customer"
            ],
        ),
        (
            {
                "id": "S",
                "serviceRelationship": [{"relationshipType": "dependsOn", "service": {"id": "S"}}],
            },
            ["serviceRelationship: service S cannot depend on itself"],
        ),
        (
            {"id": "S", "serviceRelationship": [{"service": {"id": "A"}}]},
            ["serviceRelationship.0.relationshipType: Field required"],
        ),
        (
            {"id": "S", "name": "a\x00b"},
            ["service.name: text must not contain NUL (U+0000)"],
        ),
        ([{"id": "S"}], ["a TMF638 Service is a JSON object, not an array"]),
        ("S", ["a TMF638 Service is a JSON object, not a string"]),
        (None, ["a TMF638 Service is a JSON object, not null"]),
    ],
)
def test_a_refused_service_names_each_problem(data: Any, expected: list[str]) -> None:
    assert problems(data) == expected
    assert service_problems(data) == expected


def test_every_problem_at_once() -> None:
    found = problems({"id": "", "state": "x", "place": [{}], "serviceSpecification": {}})
    assert [p.split(":")[0] for p in found] == ["id", "state", "serviceSpecification.id", "place"]


def test_nesting_and_numbers_the_store_cannot_hold_are_refused() -> None:
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    (found,) = problems({"id": "S", "serviceCharacteristic": [{"name": "a", "value": deep}]})
    assert "nests deeper than 64 levels" in found
    (found,) = problems({"id": "S", "x": 2**70})
    assert found.startswith("service.x: the integer is outside")


def test_what_the_inventory_renders_imports_as_the_same_service() -> None:
    """A service rendered as TMF638 (tmf638.py) reads back as the record that made it."""
    from serviceorders.domain.values import Actor, Channel, CommandContext, Role, Source
    from serviceorders.tmf.tmf638 import service_to_tmf638

    r = record({k: v for k, v in FULL.items() if k != "supportingService"})
    ctx = CommandContext(
        actor=Actor(id="op", role=Role.OPERATOR), source=Source(channel=Channel.CLI)
    )
    service = Service.create(
        ctx,
        r.id,
        name=r.name,
        state=r.state,
        specification=r.specification,
        characteristics=dict(r.characteristics),
        places=r.places,
        customer=r.customer,
        depends_on=r.depends_on,
        imported=True,
        extra=dict(r.extra),
    )
    again = record(service_to_tmf638(service))
    assert (again.id, again.name, again.state) == (r.id, r.name, r.state)
    assert again.characteristics == r.characteristics and again.depends_on == r.depends_on
    assert again.customer is not None and again.customer.id == "CUST-1"
    assert again.places[0].id == "site-1" and again.specification is not None
    assert again.specification.id == "internet-access"


# ------------------------------------------------------------ the Kafka import topic
def test_a_bare_service_gets_an_event_id_from_its_content() -> None:
    one = env.parse_service(orjson.dumps({"id": "S-1", "name": "x"}))
    same = env.parse_service(b'{ "name": "x",  "id": "S-1" }')  # other spelling, same JSON
    other = env.parse_service(orjson.dumps({"id": "S-1", "name": "y"}))
    assert one.command.service == ServiceRecord(id="S-1", name="x")
    assert one.envelope.event_id.startswith(env.BARE_SERVICE_PREFIX)
    assert one.envelope.event_id == same.envelope.event_id != other.envelope.event_id
    assert one.envelope.event_type == env.SERVICE_CREATE and one.sent_event_id is None


def test_a_service_in_a_tmf638_event_envelope() -> None:
    message = {
        "eventId": "INV-1",
        "eventType": "ServiceCreateEvent",
        "correlationId": "c-1",
        "event": {"service": {"id": "S-1"}},
    }
    parsed = env.parse_service(orjson.dumps(message))
    assert parsed.sent_event_id == "INV-1" and parsed.envelope.correlation_id == "c-1"
    assert parsed.command.service == ServiceRecord(id="S-1")


@pytest.mark.parametrize(
    ("value", "category", "reason"),
    [
        (None, env.NOT_JSON, "the message has no value (a tombstone)"),
        (b"{nope", env.NOT_JSON, "the value is not JSON"),
        (b'{"id": NaN}', env.NOT_JSON, "NaN is not a JSON number"),
        (b"[1]", env.INVALID_SERVICE, "not a TMF638 Service: a TMF638 Service is a JSON object"),
        (b'{"name": "x"}', env.INVALID_SERVICE, "not a TMF638 Service: id: Field required"),
        (
            b'{"eventId": "E", "eventType": "ServiceAttributeValueChangeEvent", "event": {}}',
            env.UNKNOWN_EVENT_TYPE,
            "eventType 'ServiceAttributeValueChangeEvent' is not taken on the inventory",
        ),
        (
            b'{"eventId": "E", "eventType": "ServiceCreateEvent", "event": {}}',
            env.NOT_ENVELOPE,
            "ServiceCreateEvent needs event.service",
        ),
        (
            b'{"eventType": "ServiceCreateEvent", "event": {"service": {"id": "S"}}}',
            env.NOT_ENVELOPE,
            "not a TMF638 event envelope: eventId: Field required",
        ),
        (
            b'{"eventId": "E", "eventType": "ServiceCreateEvent", "event": {"service": {"id": 1}}}',
            env.INVALID_SERVICE,
            "not a TMF638 Service: id: Input should be a valid string",
        ),
        (b"x" * (env.MAX_MESSAGE_BYTES + 1), env.TOO_LARGE, "the limit is 1048576"),
    ],
)
def test_junk_on_the_import_topic_is_refused_with_its_category(
    value: bytes | None, category: str, reason: str
) -> None:
    with pytest.raises(env.Refusal) as raised:
        env.parse_service(value)
    assert raised.value.category == category and category in env.CATEGORIES
    assert reason in raised.value.reason

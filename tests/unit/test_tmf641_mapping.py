"""The TMF641 v4.1 mapping, in (tmf641_in) and out (tmf641), without a server (issue 19,
point 1): each class of attribute the domain does not type is kept in its `extra` and comes
back at its level; the server adds only SERVER_ADDED; the refused attributes are named.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from builders import tmf_item
from pydantic import ValidationError
from serviceorders.consumers.envelope import INVALID_ORDER, REVISE, Refusal, parse
from serviceorders.domain import values as v
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.order import ServiceOrder
from serviceorders.tmf.tmf641 import SERVER_ADDED, Renders, order_to_tmf641
from serviceorders.tmf.tmf641_in import (
    REFUSED_ON_CREATE,
    REFUSED_ON_PATCH,
    ServiceOrderCreate,
    ServiceOrderUpdate,
    header_change,
    items_to_domain,
    order_to_domain,
)

CATALOG = Catalog.default()
UPSTREAM = v.CommandContext.for_actor("crm", v.Role.UPSTREAM, v.Channel.KAFKA)


# An internet access item at site S1 (by reference, role installationSite); `service={...}`
# adds attributes to its service.
internet = partial(tmf_item, place={"id": "S1", "role": "installationSite"})


def round_trip(body: dict[str, Any]) -> dict[str, Any]:
    """`body` taken as a create, received by the aggregate, rendered as the document."""
    header, items, notes = order_to_domain(ServiceOrderCreate.model_validate(body))
    order = ServiceOrder.receive(UPSTREAM, header, items, CATALOG, notes=notes)
    return order_to_tmf641(order)


def contains(sent: Any, got: Any, at: str = "body") -> None:
    """Everything in `sent` is in `got`, equal (objects may gain attributes; lists are
    compared member by member)."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), at
        for key, value in sent.items():
            assert key in got, f"{at}.{key} is missing"
            contains(value, got[key], f"{at}.{key}")
    elif isinstance(sent, list):
        assert isinstance(got, list) and len(got) == len(sent), at
        for n, (a, b) in enumerate(zip(sent, got, strict=True)):
            contains(a, b, f"{at}.{n}")
    else:
        assert got == sent, f"{at}: {got!r} != {sent!r}"


def added(sent: dict[str, Any], got: dict[str, Any]) -> set[str]:
    return set(got) - set(sent)


# ------------------------------------------------------------------ order level
def test_order_level_extras_come_back_and_only_server_attributes_are_added():
    body = {
        "externalId": "X-1",
        "externalReference": [{"name": "T-77", "externalReferenceType": "ticket"}],
        "@type": "MyServiceOrder",
        "@baseType": "ServiceOrder",
        "@schemaLocation": "https://example.com/so.json",
        "x-contract": {"id": "C-9", "terms": ["a", "b"], "sla": 99.9},
        "serviceOrderItem": [internet()],
    }
    doc = round_trip(body)
    contains(body, doc)
    assert doc["@type"] == "MyServiceOrder"  # as sent, not the default
    assert added(body, doc) <= set(SERVER_ADDED["ServiceOrder"])


def test_party_keeps_its_role_as_sent_and_its_extras():
    body = {
        "relatedParty": [
            {"id": "P-1", "name": "Ann", "@referredType": "Organization", "href": "h", "x": 1},
            {"id": "CUST-1", "role": "customer"},
        ],
        "serviceOrderItem": [internet()],
    }
    header, _, _ = order_to_domain(ServiceOrderCreate.model_validate(body))
    roleless, customer = header.related_parties
    assert roleless.role is None and not roleless.is_customer
    assert header.customer == customer
    doc = round_trip(body)
    contains(body["relatedParty"], doc["relatedParty"])
    assert "role" not in doc["relatedParty"][0]
    assert doc["relatedParty"][1]["@referredType"] == "Individual"  # the default


def test_note_keeps_id_and_type_and_its_date_is_the_same_instant():
    note = {"id": "n-1", "text": "call first", "date": "2024-05-01T10:00:00.5+02:00", "@type": "N"}
    doc = round_trip({"note": [note], "serviceOrderItem": [internet()]})
    (got,) = doc["note"]
    assert {k: got[k] for k in got if k != "date"} == {k: note[k] for k in note if k != "date"}
    assert datetime.fromisoformat(got["date"]) == datetime.fromisoformat(note["date"])


def test_product_order_relationship_stays_a_product_order():
    relation = {
        "id": "PO-1",
        "relationshipType": "fulfils",
        "@referredType": "ProductOrder",
        "href": "https://crm/productOrder/PO-1",
    }
    plain = {"id": "SO-7", "relationshipType": "follows"}
    doc = round_trip({"orderRelationship": [relation, plain], "serviceOrderItem": [internet()]})
    assert doc["orderRelationship"][0] == {**relation, "@type": "ServiceOrderRelationship"}
    assert doc["orderRelationship"][1]["@referredType"] == "ServiceOrder"  # default if absent


# ------------------------------------------------------------------ items
def test_nested_items_to_depth_three_are_flat_in_the_domain_and_nested_in_the_document():
    leaf = internet("1.1.1")
    middle = internet("1.1", serviceOrderItem=[leaf])
    top = internet("1", serviceOrderItem=[middle, internet("1.2")])
    body = {"serviceOrderItem": [top, internet("2")]}
    items = items_to_domain(ServiceOrderCreate.model_validate(body).service_order_item)
    assert [(i.id, i.parent) for i in items] == [
        ("1", None),
        ("1.1", "1"),
        ("1.1.1", "1.1"),
        ("1.2", "1"),
        ("2", None),
    ]
    doc = round_trip(body)
    contains(body["serviceOrderItem"], doc["serviceOrderItem"])
    first = doc["serviceOrderItem"][0]
    assert [i["id"] for i in first["serviceOrderItem"]] == ["1.1", "1.2"]
    assert first["serviceOrderItem"][0]["serviceOrderItem"][0]["id"] == "1.1.1"


def test_a_nested_item_id_repeating_another_is_refused_as_duplicate_ids_are():
    body = {"serviceOrderItem": [internet("1", serviceOrderItem=[internet("1")])]}
    header, items, _ = order_to_domain(ServiceOrderCreate.model_validate(body))
    with pytest.raises(Exception, match="1"):
        ServiceOrder.receive(UPSTREAM, header, items, CATALOG)


def test_item_and_service_extras_come_back():
    service = {
        "@type": "CFS",
        "category": "access",
        "description": "the line",
        "feature": [{"name": "ipv6", "isEnabled": True}],
        "note": [{"text": "service note"}],
        "relatedParty": [{"id": "tech-1", "role": "technician", "@referredType": "Individual"}],
        "serviceRelationship": [{"relationshipType": "reliesOn", "service": {"id": "S-9"}}],
        "supportingService": [{"id": "S-8"}],
        "startDate": "2024-06-01T00:00:00Z",
        "x-vendor": 7,
    }
    more: dict[str, Any] = {"@type": "MyItem", "x-item": [1, {"a": None}]}
    item = internet(appointment={"id": "A-1", "href": "https://appt/A-1"}, service=service, **more)
    body = {"serviceOrderItem": [item]}
    (domain,) = items_to_domain(ServiceOrderCreate.model_validate(body).service_order_item)
    assert domain.extra == {
        "@type": "MyItem",
        "appointment": item["appointment"],
        "x-item": [1, {"a": None}],
    }
    assert domain.service_extra == service
    doc = round_trip(body)
    contains(item, doc["serviceOrderItem"][0])
    got = doc["serviceOrderItem"][0]
    assert added(item, got) <= set(SERVER_ADDED["ServiceOrderItem"])
    assert added(item["service"], got["service"]) <= set(SERVER_ADDED["Service"])


def test_characteristics_of_every_value_type_with_their_attributes():
    values = {
        "text": "a",
        "whole": 3,
        "number": 2.5,
        "flag": False,
        "object": {"ip": "10.0.0.1", "ports": [1, 2]},
        "array": [{"vlan": 10}, "x", None],
    }
    sent = [
        {"name": "bandwidthMbps", "value": 100, "valueType": "integer", "id": "c-1"},
        {"name": "accessType", "value": "fibre", "@type": "StringCharacteristic"},
        *(
            {"name": name, "value": value, "characteristicRelationship": [{"id": "c-1"}]}
            for name, value in values.items()
        ),
    ]
    doc = round_trip({"serviceOrderItem": [internet(service={"serviceCharacteristic": sent})]})
    got = doc["serviceOrderItem"][0]["service"]["serviceCharacteristic"]
    contains(sent, got)
    by_name = {c["name"]: c for c in got}
    assert by_name["whole"]["valueType"] == "integer"  # computed when not sent
    assert by_name["object"]["valueType"] == "object"
    assert by_name["accessType"]["@type"] == "StringCharacteristic"  # as sent


def test_two_characteristics_of_one_name_are_refused_naming_service_characteristic():
    twice = [{"name": "accessType", "value": "fibre"}, {"name": "accessType", "value": "dsl"}]
    with pytest.raises(ValidationError, match=r"serviceCharacteristic.*accessType"):
        ServiceOrderCreate.model_validate(
            {"serviceOrderItem": [internet(service={"serviceCharacteristic": twice})]}
        )


def test_every_place_comes_back_the_first_with_an_id_typed():
    places = [
        {"role": "billing", "@type": "GeographicAddressValue", "street": "Main 1"},
        {"id": "S1", "role": "installationSite", "@referredType": "GeographicSite", "x": 1},
        {"id": "S2", "role": "secondSite"},
    ]
    body = {"serviceOrderItem": [internet(service={"place": places})]}
    (domain,) = items_to_domain(ServiceOrderCreate.model_validate(body).service_order_item)
    assert domain.place == v.Place(id="S1", role="installationSite")
    doc = round_trip(body)
    assert doc["serviceOrderItem"][0]["service"]["place"] == places


def test_a_single_plain_place_keeps_nothing_more_and_comes_back_with_defaults():
    (domain,) = items_to_domain(
        ServiceOrderCreate.model_validate({"serviceOrderItem": [internet()]}).service_order_item
    )
    assert domain.service_extra == {} and domain.extra == {} and domain.relationships == ()
    assert domain.characteristic_extra == {}
    assert domain.model_dump(mode="json").keys() == {
        "id",
        "action",
        "specification",
        "service_id",
        "service_name",
        "characteristics",
        "place",
        "quantity",
        "depends_on",
        "state",
    }  # stored as before issue 19: no new key


def test_a_changed_typed_place_replaces_the_first_place_with_an_id():
    places = [{"id": "S1", "role": "installationSite"}, {"role": "billing", "street": "M 1"}]
    body = {"serviceOrderItem": [internet(service={"place": places})]}
    header, items, _ = order_to_domain(ServiceOrderCreate.model_validate(body))
    moved = items[0].model_copy(update={"place": v.Place(id="S9", name="Nine")})
    order = ServiceOrder.receive(UPSTREAM, header, [moved], CATALOG)
    got = order_to_tmf641(order)["serviceOrderItem"][0]["service"]["place"]
    assert got[0]["id"] == "S9" and got[0]["name"] == "Nine"
    assert got[1] == places[1]


def test_item_relationships_as_sent_with_dependencies_as_they_are_now():
    relations: list[dict[str, Any]] = [
        {"relationshipType": "reliesOn", "orderItem": {"itemId": "1", "@referredType": "X"}},
        {"relationshipType": "dependency", "orderItem": {"itemId": "1"}, "x": True},
    ]
    body = {
        "serviceOrderItem": [
            internet("1"),
            internet("2", serviceOrderItemRelationship=relations),
            internet("3"),
        ]
    }
    header, items, _ = order_to_domain(ServiceOrderCreate.model_validate(body))
    assert items[1].depends_on == ("1",)
    assert [r.relationship_type for r in items[1].relationships] == ["reliesOn", "dependency"]
    order = ServiceOrder.receive(UPSTREAM, header, items, CATALOG)
    got = order_to_tmf641(order)["serviceOrderItem"][1]["serviceOrderItemRelationship"]
    contains(relations, got)
    # A revision makes item 2 depend on 3 instead of 1: the reliesOn stays as sent, the
    # dependency on 1 goes, the one on 3 is added.
    revised = items[1].model_copy(update={"depends_on": ("3",)})
    order = ServiceOrder.receive(UPSTREAM, header, [items[0], revised, items[2]], CATALOG)
    got = order_to_tmf641(order)["serviceOrderItem"][1]["serviceOrderItemRelationship"]
    assert got == [
        {**relations[0], "@type": "ServiceOrderItemRelationship"},
        {
            "relationshipType": "dependency",
            "orderItem": {"itemId": "3"},
            "@type": "ServiceOrderItemRelationship",
        },
    ]


def test_an_item_ref_sent_by_id_comes_back_by_id():
    relation = {"relationshipType": "dependency", "orderItem": {"id": "1"}}
    body = {
        "serviceOrderItem": [internet("1"), internet("2", serviceOrderItemRelationship=[relation])]
    }
    doc = round_trip(body)
    assert doc["serviceOrderItem"][1]["serviceOrderItemRelationship"] == [
        {**relation, "@type": "ServiceOrderItemRelationship"}
    ]


def test_specification_extras_come_back_name_and_version_from_the_catalog():
    spec = {"id": "internet-access", "@type": "ONAPSpecRef", "invariantUUID": "456", "href": "h"}
    doc = round_trip({"serviceOrderItem": [internet(service={"serviceSpecification": spec})]})
    got = doc["serviceOrderItem"][0]["service"]["serviceSpecification"]
    contains(spec, got)
    assert added(spec, got) <= set(SERVER_ADDED["ServiceSpecificationRef"])


# ------------------------------------------------------------------ refusals
def test_server_owned_attributes_are_refused_on_create_in_one_message():
    body = {
        **{name: "x" for name in REFUSED_ON_CREATE},
        "serviceOrderItem": [
            internet("1", state="completed", serviceOrderItem=[internet("2", errorMessage=[{}])])
        ],
    }
    with pytest.raises(ValidationError) as refused:
        ServiceOrderCreate.model_validate(body)
    (error,) = refused.value.errors()
    for name in (*REFUSED_ON_CREATE, "serviceOrderItem.0.state"):
        assert name in error["msg"]
    assert "serviceOrderItem.0.serviceOrderItem.0.errorMessage" in error["msg"]


def test_null_counts_as_absent_for_a_refused_attribute():
    ServiceOrderCreate.model_validate({"state": None, "serviceOrderItem": [internet()]})


def test_patch_refusals_extension_attributes_and_echoed_item_states():
    assert ServiceOrderUpdate.model_validate({"orderDate": "x", "milestone": []}).refusal()
    refusal = ServiceOrderUpdate.model_validate({"orderRelationship": []}).refusal()
    assert refusal is not None and "orderRelationship" in refusal
    assert set(REFUSED_ON_PATCH) >= {"expectedCompletionDate", "externalReference"}
    update = ServiceOrderUpdate.model_validate(
        {
            "id": "ignored",
            "category": "new",
            "x-ext": {"a": 1},
            "x-gone": None,
            "serviceOrderItem": [internet(state="inProgress", errorMessage=[{"code": "1"}])],
        }
    )
    assert update.refusal() is None
    change = header_change(update)
    assert change.category == "new"
    assert change.extra == {"x-ext": {"a": 1}, "x-gone": None}
    applied = change.apply_to(v.OrderHeader(extra={"x-gone": 1, "x-kept": 2}))
    assert applied.extra == {"x-kept": 2, "x-ext": {"a": 1}}
    (item,) = items_to_domain(update.service_order_item or [])
    assert item.extra == {}  # the item's state and errorMessage are the server's


def envelope(event_type: str, resource: dict[str, Any]) -> bytes:
    return json.dumps(
        {"eventId": "e-1", "eventType": event_type, "event": {"serviceOrder": resource}}
    ).encode()


def test_the_kafka_door_dead_letters_what_rest_refuses_with_the_same_reason():
    create = {"externalId": "K-1", "state": "completed", "serviceOrderItem": [internet()]}
    with pytest.raises(Refusal) as refused:
        parse(envelope("ServiceOrderCreateEvent", create), b"K-1")
    assert refused.value.category == INVALID_ORDER
    assert "state: set by the server" in refused.value.reason
    revision = {"externalId": "K-1", "expectedCompletionDate": "2024-01-01T00:00:00Z"}
    with pytest.raises(Refusal) as refused:
        parse(envelope("ServiceOrderAttributeValueChangeEvent", revision), b"K-1")
    assert refused.value.reason == ServiceOrderUpdate.model_validate(revision).refusal()


def test_the_kafka_door_keeps_what_rest_keeps():
    resource = {
        "externalId": "K-2",
        "x-ext": 1,
        "serviceOrderItem": [
            internet("1", serviceOrderItem=[internet("1.1")], appointment={"id": "A"})
        ],
    }
    parsed = parse(envelope("ServiceOrderCreateEvent", copy.deepcopy(resource)), b"K-2")
    command = parsed.command
    assert command.header.extra == {"x-ext": 1}  # type: ignore[union-attr]
    assert [(i.id, i.parent) for i in command.items] == [("1", None), ("1.1", "1")]  # type: ignore[union-attr]
    assert command.items[0].extra == {"appointment": {"id": "A"}}  # type: ignore[union-attr]


def test_the_cli_file_door_keeps_and_refuses_as_the_others(tmp_path):
    from serviceorders.cli.order_file import Problems, load_order

    kept = tmp_path / "kept.json"
    body = {"x-ext": [1], "serviceOrderItem": [internet("1", serviceOrderItem=[internet("2")])]}
    kept.write_text(json.dumps(body), encoding="utf-8")
    header, items, _ = load_order(kept)
    assert header.extra == {"x-ext": [1]}
    assert [(i.id, i.parent) for i in items] == [("1", None), ("2", "1")]
    refused = tmp_path / "refused.json"
    refused.write_text(json.dumps({**body, "orderDate": "2024-01-01T00:00:00Z"}), "utf-8")
    with pytest.raises(Problems) as problems:
        load_order(refused)
    (line,) = problems.value.problems
    assert "orderDate: set by the server" in line


def test_a_patch_keeps_the_orders_null_extension_attributes_it_does_not_name() -> None:
    """A merge patch removes only what it sets to null: an attribute the order keeps with a
    null value (sent so on create) stays when a patch merges another one (H2's finding 4)."""
    from serviceorders.domain.values import HeaderChange, OrderHeader

    header = OrderHeader(extra={"kept": None, "gone": "x", "other": 1})
    changed = HeaderChange(extra={"gone": None, "new": []}).apply_to(header)
    assert changed.extra == {"kept": None, "other": 1, "new": []}


# ------------------------------------------- item state / errorMessage in a patch: echoes
MANAGER = v.CommandContext.for_actor("mgr", v.Role.MANAGER)
FULFILMENT = v.CommandContext.for_actor("ful", v.Role.FULFILMENT)


def failed_order() -> ServiceOrder:
    """An approved order whose item 1 failed (an errorMessage) and item 2 is acknowledged;
    item 2.1 is nested in 2."""
    body = {"serviceOrderItem": [internet("1"), internet("2", serviceOrderItem=[internet("2.1")])]}
    header, items, notes = order_to_domain(ServiceOrderCreate.model_validate(body))
    order = ServiceOrder.receive(UPSTREAM, header, items, CATALOG, notes=notes)
    order.approve(MANAGER, four_eyes=False)
    order.change_item_state(FULFILMENT, "1", v.ItemState.IN_PROGRESS, None)
    order.change_item_state(FULFILMENT, "1", v.ItemState.FAILED, "port down")
    return order


def test_a_patch_item_state_and_error_message_are_taken_only_as_an_echo():
    order = failed_order()
    shown = order_to_tmf641(order)["serviceOrderItem"]
    assert shown[0]["state"] == "failed" and shown[0]["errorMessage"][0]["message"] == "port down"
    echo = ServiceOrderUpdate.model_validate({"serviceOrderItem": copy.deepcopy(shown)})
    assert [where for where, _, _ in echo.item_echoes()] == [
        "serviceOrderItem.0.",
        "serviceOrderItem.1.",
        "serviceOrderItem.1.serviceOrderItem.0.",
    ]
    assert echo.refused_echoes(order) == []  # exactly what GET shows: taken
    assert echo.refusal(echo.refused_echoes(order)) is None
    (first,) = items_to_domain(
        ServiceOrderUpdate.model_validate({"serviceOrderItem": [shown[0]]}).service_order_item or []
    )
    assert "state" not in first.extra and "errorMessage" not in first.extra  # not kept
    # An empty errorMessage repeats an item without one (GET leaves it out).
    empty = ServiceOrderUpdate.model_validate(
        {"serviceOrderItem": [internet("2", errorMessage=[])]}
    )
    assert empty.refused_echoes(order) == []

    changed = copy.deepcopy(shown)
    changed[0]["state"] = "completed"  # another state
    changed[0]["errorMessage"][0]["message"] = "port up"  # another message
    changed[1]["serviceOrderItem"][0]["state"] = "inProgress"  # nested: acknowledged
    new = internet("9", state="acknowledged", errorMessage=[{"code": "x"}])  # no item 9 yet
    body = {"orderDate": "2024-01-01T00:00:00Z", "serviceOrderItem": [*changed, new]}
    update = ServiceOrderUpdate.model_validate(body)
    refused = update.refused_echoes(order)
    assert refused == [
        "serviceOrderItem.0.state",
        "serviceOrderItem.0.errorMessage",
        "serviceOrderItem.1.serviceOrderItem.0.state",
        "serviceOrderItem.2.state",
        "serviceOrderItem.2.errorMessage",
    ]
    message = update.refusal(refused)
    assert message is not None
    assert message.startswith(f"orderDate, {', '.join(refused)} cannot be changed by PATCH")
    assert "errorMessage" in message
    assert update.refusal() is not None and "serviceOrderItem" not in (update.refusal() or "")
    # Without an order (not found), no item has a state to repeat: every one is named.
    assert (
        update.refused_echoes(None)
        == [
            *refused[:2],
            "serviceOrderItem.1.state",  # (item 2's echo, taken above)
            *refused[2:],
        ]
    )


def test_an_echoed_error_message_compares_with_the_revealed_text():
    """The order may hold its texts sealed (tokens): an echo is compared with what GET
    shows, the revealed text."""
    order = failed_order()
    order.outcomes = tuple(o.model_copy(update={"message": "pii:1:T"}) for o in order.outcomes)
    shown = order_to_tmf641(order)["serviceOrderItem"][0]
    shown["errorMessage"][0]["message"] = "port down"  # what GET shows: revealed
    update = ServiceOrderUpdate.model_validate({"serviceOrderItem": [shown]})
    assert update.refused_echoes(order) == ["serviceOrderItem.0.errorMessage"]
    texts = {"pii:1:T": "port down"}
    assert update.refused_echoes(order, lambda token: texts.get(token, token)) == []


def test_a_kafka_revision_with_item_states_is_checked_on_the_order_as_rest_does():
    order = failed_order()
    shown = order_to_tmf641(order)["serviceOrderItem"]
    plain = parse(envelope(REVISE, {"externalId": "K-9", "description": "d"}), b"K-9")
    assert plain.check is None  # nothing to compare: no read of the order
    echoed = parse(envelope(REVISE, {"externalId": "K-9", "serviceOrderItem": shown}), b"K-9")
    assert echoed.check is not None and echoed.check(order, None) is None
    assert echoed.check(None, None) is None  # not found: the unit of work says so
    wrong = copy.deepcopy(shown)
    wrong[1]["state"] = "completed"
    body = {"externalId": "K-9", "milestone": [{"id": "m"}], "serviceOrderItem": wrong}
    parsed = parse(envelope(REVISE, body), b"K-9")  # not refused before the order is read
    assert parsed.check is not None
    reason = parsed.check(order, None)
    assert reason == ServiceOrderUpdate.model_validate(body).refusal(["serviceOrderItem.1.state"])
    assert reason is not None and reason.startswith("milestone, serviceOrderItem.1.state")
    # Refused anyway (milestone): the items of an order not found are named too.
    assert "serviceOrderItem.1.state" in (parsed.check(None, None) or "")


def test_a_note_is_sealed_and_kept_as_sent_other_texts_stripped():
    """A note's text (a revision's, AddNote's) is kept exactly as sent; only an all-blank
    one is refused; a reason is still stripped (domain/sealing.py AS_SENT)."""
    from uuid import UUID

    from serviceorders.domain import commands as cmd
    from serviceorders.domain.errors import InvalidCommand
    from serviceorders.domain.sealing import seal_command

    texts: dict[str, str] = {}

    def seal(value: str) -> str:
        texts[f"pii:1:{len(texts)}"] = value
        return f"pii:1:{len(texts) - 1}"

    spaced = " call first\n\u001c"
    revise = seal_command(cmd.Revise(UUID(int=1), notes=(spaced, "  ")), seal)
    assert [texts.get(t, t) for t in revise.notes] == [spaced, "  "]  # blank: as is
    note = seal_command(cmd.AddNote(UUID(int=1), spaced), seal)
    assert texts[note.text] == spaced
    reject = seal_command(cmd.Reject(UUID(int=1), " no "), seal)
    assert texts[reject.reason] == "no"

    order = failed_order()
    order.add_note(UPSTREAM, spaced)
    assert order.notes[-1].text == spaced
    with pytest.raises(InvalidCommand, match="a note needs a reason or text"):
        order.add_note(UPSTREAM, " \t\u001c")


def test_an_item_is_rendered_again_when_what_it_shows_changed_around_it():
    """The document rendered from its items' earlier renderings (issue 21): an item that is
    the same object is taken as it was, unless an outcome naming it or its inventory check
    changed (both rendered into the item, both outside it)."""
    body = {"serviceOrderItem": [internet("1"), internet("2")]}
    header, items, notes = order_to_domain(ServiceOrderCreate.model_validate(body))
    order = ServiceOrder.receive(UPSTREAM, header, items, CATALOG, notes=notes)
    renders = Renders()
    first = order_to_tmf641(order, renders)
    assert first == order_to_tmf641(order)
    again = order_to_tmf641(order, renders)
    assert again["serviceOrderItem"][0] is first["serviceOrderItem"][0]  # taken as it was

    order.outcomes = (
        *order.outcomes,
        v.OrderOutcome(
            code="item_failed", message="no fibre", date=datetime(2026, 1, 1), item_ids=("1",)
        ),
    )
    failed = order_to_tmf641(order, renders)
    assert failed == order_to_tmf641(order)
    assert failed["serviceOrderItem"][0]["errorMessage"][0]["message"] == "no fibre"
    assert failed["serviceOrderItem"][1] is first["serviceOrderItem"][1]

    order.inventory = {
        "1": v.ItemCheck(
            item_id="1", service_id="svc-1", service_version=3, previous={"bandwidthMbps": 50}
        )
    }
    checked = order_to_tmf641(order, renders)
    assert checked == order_to_tmf641(order)
    shown = checked["serviceOrderItem"][0]["service"]["serviceCharacteristic"]
    assert [c.get("previousValue") for c in shown if c["name"] == "bandwidthMbps"] == [50]


def test_a_milestone_is_rendered_again_when_another_is_in_its_place():
    """Milestones are taken from the earlier rendering by position while they are the
    same objects; a different one in a position is rendered (issue 21)."""
    header, items, notes = order_to_domain(
        ServiceOrderCreate.model_validate({"serviceOrderItem": [internet("1")]})
    )
    order = ServiceOrder.receive(UPSTREAM, header, items, CATALOG, notes=notes)
    at = datetime(2026, 1, 1)
    approved = v.Milestone(id="m1", name="approved", date=at)
    started = v.Milestone(id="m2", name="itemStarted", date=at, item_ids=("1",))
    renders = Renders()
    order.milestones = (approved,)
    first = order_to_tmf641(order, renders)
    order.milestones = (approved, started)
    second = order_to_tmf641(order, renders)
    assert second == order_to_tmf641(order)
    assert second["milestone"][0] is first["milestone"][0]
    order.milestones = (started,)  # another milestone in the first place, one fewer
    third = order_to_tmf641(order, renders)
    assert third == order_to_tmf641(order)
    assert [m["name"] for m in third["milestone"]] == ["itemStarted"]

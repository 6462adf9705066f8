"""What TMF641 PATCH /serviceOrder/{id} does with each array it accepts (issue 19,
deliverable 3): not RFC 7386 for `serviceOrderItem` and `note`, nor for `null`, as
docs/lifecycle.md ("What a TMF641 PATCH does with each attribute") and /openapi.json state.

For every array member kind the route accepts (`serviceOrderItem`, `relatedParty`, `note`):
the body leaves it out, gives it partially, gives an empty array (and `null`); then the
header attributes' `null`, the refused attributes, and the description /openapi.json gives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from builders import TYPED, tmf_item
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
CUSTOMER = {"id": "CUST-1", "name": "Acme", "role": "customer"}


def patch(client: TestClient, auth: Any, order_id: str, body: dict[str, Any]) -> Any:
    return client.patch(
        f"{ORDERS}/{order_id}",
        content=json.dumps(body),
        headers={**auth("integrator"), "Content-Type": "application/merge-patch+json"},
    )


def get(client: TestClient, auth: Any, order_id: str) -> Any:
    return client.get(f"{ORDERS}/{order_id}", headers=auth("auditor"))


def items_by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in doc["serviceOrderItem"]}


def characteristics(item: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c["value"] for c in item["service"].get("serviceCharacteristic", [])}


def unchanged(client: TestClient, auth: Any, order: dict[str, Any], body: dict[str, Any]) -> None:
    """`body` is answered 200 and changes nothing: same document, same version (ETag)."""
    before = get(client, auth, order["id"])
    response = patch(client, auth, order["id"], body)
    assert response.status_code == 200, response.text
    after = get(client, auth, order["id"])
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json() == before.json()


# ------------------------------------------------------------ serviceOrderItem
def test_items_left_out_stay_as_they_are(client, auth, post_order):
    order = post_order()
    response = patch(client, auth, order["id"], {"priority": "1"})
    assert response.status_code == 200, response.text
    doc = get(client, auth, order["id"]).json()
    assert doc["priority"] == "1"
    assert doc["serviceOrderItem"] == order["serviceOrderItem"]


def test_items_given_partially_replace_those_ids_whole_and_the_others_stay(
    client, auth, post_order
):
    order = post_order()
    new_1 = tmf_item("1", bandwidth=500, **TYPED)
    del new_1["service"]["place"]  # replaced whole: what the item leaves out is gone
    added = tmf_item("3", bandwidth=50, place=("S2", "Site two"), **TYPED)
    response = patch(client, auth, order["id"], {"serviceOrderItem": [new_1, added]})
    assert response.status_code == 200, response.text
    items = items_by_id(get(client, auth, order["id"]).json())
    assert list(items) == ["1", "2", "3"]  # 2 (not named) stays; 3 (a new id) is added
    assert characteristics(items["1"])["bandwidthMbps"] == 500
    assert "place" not in items["1"]["service"]  # no deep merge within an item
    assert items["2"] == items_by_id(order)["2"]
    assert items["3"]["service"]["place"][0]["id"] == "S2"


def test_an_item_given_without_its_required_attributes_is_refused_whole(client, auth, post_order):
    order = post_order()
    before = get(client, auth, order["id"]).json()
    fragment = {"id": "1", "service": {"serviceCharacteristic": [{"name": "bandwidthMbps"}]}}
    body = {"priority": "1", "serviceOrderItem": [fragment]}
    refused = patch(client, auth, order["id"], body)
    assert refused.status_code == 400
    assert refused.json()["@type"] == "Error"
    assert "action" in refused.json()["message"]
    assert get(client, auth, order["id"]).json() == before  # the priority neither


def test_an_item_id_given_twice_is_refused_and_nothing_is_applied(client, auth, post_order):
    order = post_order()
    before = get(client, auth, order["id"]).json()
    twice = [tmf_item("1", bandwidth=500, **TYPED), tmf_item("1", bandwidth=50, **TYPED)]
    refused = patch(client, auth, order["id"], {"priority": "1", "serviceOrderItem": twice})
    assert refused.status_code == 400, refused.text
    assert "item id 1 is used more than once" in refused.text
    assert get(client, auth, order["id"]).json() == before


def test_an_empty_or_null_item_array_removes_nothing(client, auth, post_order):
    order = post_order()
    unchanged(client, auth, order, {"serviceOrderItem": []})
    unchanged(client, auth, order, {"serviceOrderItem": None})
    assert len(get(client, auth, order["id"]).json()["serviceOrderItem"]) == 2


def test_an_item_with_action_delete_is_a_disconnect_not_a_removal(
    client, auth, post_order, in_inventory
):
    in_inventory("SVC-OLD")  # a disconnect names a service the inventory holds (issue 20)
    order = post_order()
    disconnect = tmf_item("3", bandwidth=10, **TYPED)
    disconnect["action"] = "delete"
    disconnect["service"]["id"] = "SVC-OLD"
    response = patch(client, auth, order["id"], {"serviceOrderItem": [disconnect]})
    assert response.status_code == 200, response.text
    items = items_by_id(get(client, auth, order["id"]).json())
    assert list(items) == ["1", "2", "3"]  # an item of the order, added like any other
    assert items["3"]["action"] == "delete" and items["3"]["service"]["id"] == "SVC-OLD"


def test_items_after_approval_are_merged_by_id_in_the_proposal_too(client, auth, flow):
    order_id = flow.in_progress()
    before = items_by_id(get(client, auth, order_id).json())
    proposed = patch(client, auth, order_id, {"serviceOrderItem": [tmf_item("1", bandwidth=500)]})
    assert proposed.status_code == 200, proposed.text
    assert 'rel="proposal"' in proposed.headers["link"]
    approved = flow.decide(order_id, "proposal/approve").json()
    assert approved["state"] == "inProgress"
    items = items_by_id(get(client, auth, order_id).json())
    assert list(items) == ["1", "2"]
    assert characteristics(items["1"])["bandwidthMbps"] == 500
    assert items["2"]["service"] == before["2"]["service"]


# ---------------------------------------------------------------- relatedParty
def test_related_parties_left_out_or_null_stay(client, auth, post_order):
    order = post_order()
    assert [p["id"] for p in order["relatedParty"]] == [CUSTOMER["id"]]
    unchanged(client, auth, order, {"relatedParty": None})
    response = patch(client, auth, order["id"], {"description": "other"})
    assert response.status_code == 200
    assert get(client, auth, order["id"]).json()["relatedParty"] == order["relatedParty"]


def test_related_parties_given_replace_the_list_whole(client, auth, post_order):
    order = post_order()
    contact = {"id": "P-9", "name": "Site contact", "role": "siteContact"}
    response = patch(client, auth, order["id"], {"relatedParty": [contact]})
    assert response.status_code == 200, response.text
    parties = get(client, auth, order["id"]).json()["relatedParty"]
    assert [(p["id"], p["role"]) for p in parties] == [("P-9", "siteContact")]  # CUST-1 gone


def test_an_empty_related_party_array_removes_every_party(client, auth, post_order):
    order = post_order()
    response = patch(client, auth, order["id"], {"relatedParty": []})
    assert response.status_code == 200, response.text
    assert "relatedParty" not in get(client, auth, order["id"]).json()


# ------------------------------------------------------------------------- note
def test_notes_given_are_appended_and_none_is_replaced_or_removed(client, auth, keys, post_order):
    order = post_order(note=[{"text": "first"}])
    sent = {"text": "second", "author": "Someone Upstream", "date": "2020-01-01T00:00:00Z"}
    response = patch(client, auth, order["id"], {"note": [sent]})
    assert response.status_code == 200, response.text
    notes = get(client, auth, order["id"]).json()["note"]
    assert [n["text"] for n in notes] == ["first", "second"]
    # added as the caller's note: the author and date sent are not kept
    assert notes[-1]["author"] == keys["integrator"].actor
    assert notes[-1].get("date") != sent["date"]
    # a note already on the order (same text) is not added again
    response = patch(client, auth, order["id"], {"note": [{"text": "second"}, {"text": "third"}]})
    assert response.status_code == 200, response.text
    texts = [n["text"] for n in get(client, auth, order["id"]).json()["note"]]
    assert texts == ["first", "second", "third"]


def test_notes_left_out_empty_or_null_stay(client, auth, post_order):
    order = post_order(note=[{"text": "first"}])
    unchanged(client, auth, order, {"note": []})
    unchanged(client, auth, order, {"note": None})
    unchanged(client, auth, order, {"note": [{"text": "first"}]})  # the order has it
    response = patch(client, auth, order["id"], {"priority": "1"})
    assert response.status_code == 200
    assert [n["text"] for n in get(client, auth, order["id"]).json()["note"]] == ["first"]


# ----------------------------------------------------- header attributes, refusals
def test_a_null_header_attribute_is_left_as_it_is_not_removed(client, auth, post_order):
    order = post_order()
    assert order["description"]
    unchanged(client, auth, order, {"description": None, "priority": None})
    unchanged(client, auth, order, {"state": None, "externalId": None})
    unchanged(client, auth, order, {})


@pytest.mark.parametrize("value", [[], None])
@pytest.mark.parametrize(
    "attribute", ["expectedCompletionDate", "externalReference", "orderRelationship"]
)
def test_attributes_patch_cannot_change_are_refused_by_name(
    client, auth, post_order, attribute, value
):
    order = post_order()
    refused = patch(client, auth, order["id"], {attribute: value, "priority": "1"})
    assert refused.status_code == 400
    assert attribute in refused.json()["message"]
    assert get(client, auth, order["id"]).json()["priority"] == order["priority"]


# ---------------------------------------------------------------- /openapi.json
def test_openapi_states_the_merge_semantics_and_the_media_type(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"][f"{ORDERS}/{{id}}"]["patch"]
    content = operation["requestBody"]["content"]
    assert list(content) == ["application/merge-patch+json", "application/json"]
    text = " ".join(operation["description"].split())
    assert "RFC 7386" in text
    for stated in (
        "`serviceOrderItem` is merged by item id",
        "replaces the item with that id whole",
        "an empty array changes nothing",
        "cannot remove an item",
        '"delete"',
        "`relatedParty` replaces the order's related parties whole",
        "`note` appends",
        "`null` leaves an attribute as it is",
    ):
        assert stated in text, stated

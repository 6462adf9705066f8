"""Change and disconnect orders over the TMF641 REST API, checked against the inventory
(issue 20, acceptance 2): every failing check (an unknown service, a terminated one, another
customer's, one of another specification), for `modify`, `delete` and `noChange`, is refused
with a 400 TMF Error whose message names the item and whose details give the problem code
(SERVICEORDERS_INVENTORY_CHECK=refuse, the default) and nothing is created; under `flag`
the order is created (201) and the finding is on the order (/api/v1/orders/{id}) and its
entry in the review queue. A modify returns `previousValue` on GET; a PATCH adding an item
that names an unknown service is refused as a create is. On both backends (sqlite,
postgres)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from builders import order_body, tmf_item
from fastapi.testclient import TestClient
from serviceorders.domain.service import service_id_for

pytestmark = pytest.mark.integration

ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
Auth = Callable[[str | None], dict[str, str]]
UNKNOWN = "SVC-DOES-NOT-EXIST"
CASES = {
    "unknown": "service_not_found",
    "terminated": "service_not_active",
    "other customer": "service_other_customer",
    "other specification": "service_other_specification",
}
ACTIONS = ("modify", "delete", "noChange")
FLAG = {"inventory_check": "flag"}


@pytest.fixture
def api_settings_update(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The check's policy: refuse (the default) unless a test asks for `FLAG` (indirect)."""
    return dict(getattr(request, "param", {}))


# ------------------------------------------------------------------------ helpers
def change_item(
    service_id: str,
    action: str = "modify",
    spec: str = "internet-access",
    item_id: str = "1",
    **characteristics: Any,
) -> dict[str, Any]:
    """A TMF641 item naming an existing service (`service.id`), at site S1."""
    service: dict[str, Any] = {
        "id": service_id,
        "serviceSpecification": {"id": spec},
        "place": [{"id": "S1", "name": "Site one"}],
    }
    if characteristics:
        service["serviceCharacteristic"] = [
            {"name": k, "value": v} for k, v in characteristics.items()
        ]
    return {"id": item_id, "action": action, "service": service}


def post(client: TestClient, auth: Auth, body: dict[str, Any]) -> Any:
    return client.post(ORDERS, json=body, headers=auth("integrator"))


def complete(client: TestClient, auth: Auth, flow: Any, order_id: str, items: list[str]) -> None:
    """Approve the order (a manager), complete its items (fulfilment)."""
    flow.decide(order_id, "approve")
    for item_id in items:
        done = client.post(
            f"/api/v1/orders/{order_id}/items/{item_id}/state",
            json={"state": "completed"},
            headers=auth("fulfilment"),
        )
        assert done.status_code == 200, done.text
    assert flow.view(order_id)["state"] == "completed"


def added(client: TestClient, auth: Auth, flow: Any, external_id: str = "ADD-1") -> str:
    """A completed order adding internet access for CUST-1 at S1: its service's id."""
    created = post(client, auth, order_body(external_id))
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    complete(client, auth, flow, order_id, ["1"])
    return service_id_for(UUID(order_id), "1")


def failing(client: TestClient, auth: Auth, flow: Any, case: str, action: str) -> dict[str, Any]:
    """The body of an order whose item 1 fails the check `case`."""
    sid = added(client, auth, flow)
    spec, chars = "internet-access", {"bandwidthMbps": 500}
    customer = ("CUST-1", "Acme")
    if case == "unknown":
        sid = UNKNOWN
    elif case == "terminated":
        gone = post(client, auth, order_body("DEL-0", order_items=[change_item(sid, "delete")]))
        assert gone.status_code == 201, gone.text
        complete(client, auth, flow, gone.json()["id"], ["1"])
    elif case == "other customer":
        customer = ("CUST-2", "Other")
    else:
        spec, chars = "managed-router", {"model": "c8300"}
    if action != "modify":
        chars = {}
    item = change_item(sid, action, spec, **chars)
    return order_body(f"{case}-{action}", customer=customer, order_items=[item])


def listed(client: TestClient, auth: Auth, external_id: str) -> list[Any]:
    found = client.get(ORDERS, params={"externalId": external_id}, headers=auth("auditor"))
    assert found.status_code == 200, found.text
    return list(found.json())


# -------------------------------------------------------------------------- refused
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_failing_check_is_refused_naming_the_item_and_the_problem(
    client, auth, flow, case, action
) -> None:
    body = failing(client, auth, flow, case, action)
    refused = post(client, auth, body)
    assert refused.status_code == 400, refused.text
    error = refused.json()
    assert error["@type"] == "Error" and error["code"] == "validation_failed"
    assert "item 1: service " in error["message"], error
    # the problem by its code and item, for a machine
    assert [(d["code"], d["itemId"]) for d in error["details"]] == [(CASES[case], "1")]
    assert listed(client, auth, body["externalId"]) == []  # nothing was created


def test_the_error_lists_every_failing_item(client, auth, flow) -> None:
    sid = added(client, auth, flow)
    items = [
        change_item(UNKNOWN, "modify", item_id="1", bandwidthMbps=500),
        change_item(sid, "noChange", item_id="2"),  # passes
        change_item(sid + "-X", "delete", item_id="3"),
    ]
    refused = post(client, auth, order_body("TWO-BAD", order_items=items))
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert f"item 1: service {UNKNOWN} does not exist" in message
    assert f"item 3: service {sid}-X does not exist" in message
    assert "item 2" not in message
    assert [(d["code"], d["itemId"]) for d in refused.json()["details"]] == [
        ("service_not_found", "1"),
        ("service_not_found", "3"),
    ]


# -------------------------------------------------------------------------- flagged
@pytest.mark.parametrize("api_settings_update", [FLAG], indirect=True)
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_under_the_flag_policy_the_order_comes_in_flagged_for_its_reviewer(
    client, auth, flow, case, action
) -> None:
    body = failing(client, auth, flow, case, action)
    created = post(client, auth, body)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    assert created.json()["state"] == "acknowledged"
    flags = [(f["code"], f["itemId"]) for f in flow.view(order_id, "manager")["flags"]]
    assert flags == [(CASES[case], "1")]
    queue = client.get("/api/v1/reviewQueue", headers=auth("manager"))
    assert queue.status_code == 200, queue.text
    (entry,) = [e for e in queue.json() if e["orderId"] == order_id]
    assert [(f["code"], f["itemId"]) for f in entry["flags"]] == [(CASES[case], "1")]
    assert entry["flags"][0]["message"].startswith("item 1: service ")


# --------------------------------------------------------------- accepted, and GET
def test_a_modify_of_the_customers_service_is_accepted_with_previous_values_on_get(
    client, auth, flow
) -> None:
    sid = added(client, auth, flow)
    item = change_item(sid, "modify", bandwidthMbps=500, accessType="fibre")
    created = post(client, auth, order_body("MOD-1", order_items=[item]))
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    assert flow.view(order_id, "manager")["flags"] == []
    got = client.get(f"{ORDERS}/{order_id}", headers=auth("auditor"))
    assert got.status_code == 200, got.text
    (line,) = got.json()["serviceOrderItem"]
    assert line["service"]["id"] == sid
    by_name = {c["name"]: c for c in line["service"]["serviceCharacteristic"]}
    assert by_name["bandwidthMbps"]["value"] == 500
    assert by_name["bandwidthMbps"]["previousValue"] == 100
    assert "previousValue" not in by_name["accessType"]  # unchanged: fibre as before
    # completed: the service has the new value, and a second modify sees it as previous
    complete(client, auth, flow, order_id, ["1"])
    again = post(
        client, auth, order_body("MOD-2", order_items=[change_item(sid, bandwidthMbps=1000)])
    )
    assert again.status_code == 201, again.text
    (line,) = client.get(f"{ORDERS}/{again.json()['id']}", headers=auth("auditor")).json()[
        "serviceOrderItem"
    ]
    assert line["service"]["serviceCharacteristic"][0]["previousValue"] == 500


# ---------------------------------------------------------------------------- PATCH
def patch(client: TestClient, auth: Auth, order_id: str, body: dict[str, Any]) -> Any:
    return client.patch(
        f"{ORDERS}/{order_id}",
        content=json.dumps(body),
        headers={**auth("integrator"), "Content-Type": "application/merge-patch+json"},
    )


def test_a_patch_adding_an_item_for_an_unknown_service_is_refused(client, auth, flow) -> None:
    created = post(client, auth, order_body("PATCHED", order_items=[tmf_item("1")]))
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    before = client.get(f"{ORDERS}/{order_id}", headers=auth("auditor"))
    added_item = change_item(UNKNOWN, "modify", item_id="2", bandwidthMbps=500)
    refused = patch(client, auth, order_id, {"serviceOrderItem": [added_item]})
    assert refused.status_code == 400, refused.text
    error = refused.json()
    assert error["@type"] == "Error"
    assert f"item 2: service {UNKNOWN} does not exist" in error["message"]
    assert [(d["code"], d["itemId"]) for d in error["details"]] == [("service_not_found", "2")]
    after = client.get(f"{ORDERS}/{order_id}", headers=auth("auditor"))
    assert after.headers["etag"] == before.headers["etag"] and after.json() == before.json()


@pytest.mark.parametrize("api_settings_update", [FLAG], indirect=True)
def test_under_the_flag_policy_a_patch_naming_an_unknown_service_flags_it(
    client, auth, flow
) -> None:
    created = post(client, auth, order_body("PATCHED", order_items=[tmf_item("1")]))
    order_id = created.json()["id"]
    added_item = change_item(UNKNOWN, "delete", item_id="2")
    patched = patch(client, auth, order_id, {"serviceOrderItem": [added_item]})
    assert patched.status_code == 200, patched.text
    flags = [(f["code"], f["itemId"]) for f in flow.view(order_id, "manager")["flags"]]
    assert ("service_not_found", "2") in flags

"""How the REST doors answer (issue 16): every refusal from the one table
(`domain.errors.answer_for`), `reason` always the error's code, problem fields spelled
`itemId` everywhere, and bad query parameters refused with a 400 naming them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serviceorders.domain.errors import IllegalTransition, ValidationFailed, answer_for
from serviceorders.tmf.tmf641 import BASE_PATH

ORDERS = f"{BASE_PATH}/serviceOrder"
Auth = Callable[[str | None], dict[str, str]]


def test_a_refused_order_names_its_problems_by_item_id(
    client: TestClient, auth: Auth, order_body: Callable[..., dict[str, Any]]
) -> None:
    body = order_body()
    body["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "teleporter"
    refused = client.post(ORDERS, json=body, headers=auth("integrator"))
    assert refused.status_code == 400, refused.text
    error = refused.json()
    assert error["code"] == error["reason"] == ValidationFailed.code
    assert error["details"] and all("itemId" in p and "item_id" not in p for p in error["details"])
    assert "1" in {p["itemId"] for p in error["details"]}


def test_reviewer_flags_name_the_item_by_item_id(
    client: TestClient, auth: Auth, order_body: Callable[..., dict[str, Any]]
) -> None:
    body = order_body("flagged")
    body["serviceOrderItem"][0]["service"]["serviceCharacteristic"].append(
        {"name": "serviceLevel", "value": "gold"}
    )
    created = client.post(ORDERS, json=body, headers=auth("integrator"))
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    view = client.get(f"/api/v1/orders/{order_id}", headers=auth("manager")).json()
    queue = client.get("/api/v1/reviewQueue", headers=auth("manager")).json()
    [entry] = [e for e in queue if e["orderId"] == order_id]
    for flags in (view["flags"], entry["flags"]):
        assert flags and all(f["itemId"] == "1" and "item_id" not in f for f in flags), flags


def test_a_domain_refusal_is_answered_from_the_one_table(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    order_id = flow.rejected()
    refused = client.post(
        f"/api/v1/orders/{order_id}/hold", json={"reason": "x"}, headers=auth("fulfilment")
    )
    error = refused.json()
    answer = answer_for(IllegalTransition(order_id, "rejected", "hold"))
    assert refused.status_code == answer.http_status == 409
    assert error["code"] == error["reason"] == IllegalTransition.code
    order_id = flow.order()
    for tag in ('"99"', '"abc"', 'W/"99"'):  # an old version, none, a weak one
        stale = client.post(
            f"/api/v1/orders/{order_id}/approve", headers={**auth("manager"), "If-Match": tag}
        )
        assert stale.status_code == 412 and stale.json()["reason"] == "precondition_failed"
        assert "reload it" in stale.json()["message"]


LISTS = [
    (ORDERS, "auditor"),
    (f"{BASE_PATH}/cancelServiceOrder", "auditor"),
    ("/api/v1/reviewQueue", "manager"),
    ("/api/v1/audit/access-log", "auditor"),
]
BAD = [("limit", "-1"), ("offset", "-1")]
FILTERS = [
    (ORDERS, "state", "bogus"),
    (ORDERS, "orderDate.gte", "last tuesday"),
    ("/api/v1/reviewQueue", "kind", "everything"),
    ("/api/v1/audit/access-log", "since", "yesterday"),
]


@pytest.mark.parametrize(
    ("path", "role", "name", "value"),
    [(path, role, name, value) for path, role in LISTS for name, value in BAD]
    + [(path, dict(LISTS)[path], name, value) for path, name, value in FILTERS],
)
def test_a_bad_query_parameter_is_a_400_naming_it(
    client: TestClient, auth: Auth, path: str, role: str, name: str, value: str
) -> None:
    response = client.get(path, params={name: value}, headers=auth(role))
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["@type"] == "Error" and error["code"] == error["reason"]
    assert name in error["message"], error
    ok = client.get(path, params={"limit": "0", "offset": "0"}, headers=auth(role))
    assert ok.status_code == 200 and ok.json() == [], ok.text


def test_the_hub_list_refuses_a_bad_flag_naming_it(client: TestClient, auth: Auth) -> None:
    response = client.get("/api/v1/hub", params={"all": "maybe"}, headers=auth("admin"))
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == error["reason"] == "invalid_request"
    assert error["details"][0]["location"] == "query.all", error

"""Outcomes told back through TMF641 `errorMessage` (issue 19, deliverable 2, first slice):
a manager's rejection and the failed items that made an order `failed` or `partial` fill
the v4.1 `ServiceOrderErrorMessage` of the order's TMF641 document (and the failed item's
`ServiceOrderItemErrorMessage`), so GET (one order and the list, from the read model) says
what the hub and the Kafka notifications say (tests/api/test_hub.py,
tests/kafka/test_outbound.py). On SQLite and PostgreSQL (the root `settings` fixture).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs

ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
SPEC = Path(__file__).parent / "tmf641" / "TMF641-ServiceOrdering-v4.1.0.swagger.json"


def spec_errors(doc: dict[str, Any]) -> list[str]:
    """What the official v4.1.0 `ServiceOrder` schema finds wrong in `doc` (formats too),
    with the spec's ServiceOrderItemRef defect corrected as tests/api/test_conformance.py
    does (it requires an `id` it does not declare)."""
    definitions = copy.deepcopy(json.loads(SPEC.read_text("utf-8"))["definitions"])
    definitions["ServiceOrderItemRef"].pop("required")
    validator = jsonschema_rs.Draft4Validator(
        {"allOf": [{"$ref": "#/definitions/ServiceOrder"}], "definitions": definitions},
        validate_formats=True,
    )
    return [e.message for e in validator.iter_errors(doc)]


def tmf(client: Any, auth: Any, order_id: str) -> dict[str, Any]:
    response = client.get(f"{ORDERS}/{order_id}", headers=auth("auditor"))
    assert response.status_code == 200, response.text
    return response.json()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def listed(client: Any, auth: Any, order_id: str, state: str) -> dict[str, Any]:
    """The order as the list (the order_document read model) shows it."""
    response = client.get(ORDERS, params={"state": state}, headers=auth("auditor"))
    assert response.status_code == 200, response.text
    (found,) = [o for o in response.json() if o["id"] == order_id]
    return found


def fail(flow: Any, order_id: str, item_id: str, reason: str | None = None) -> None:
    body = {"state": "failed", **({"reason": reason} if reason else {})}
    flow.post(f"/api/v1/orders/{order_id}/items/{item_id}/state", body, role="fulfilment")


def test_a_rejected_order_tells_the_managers_reason(client, auth, flow):
    order_id = flow.order()
    flow.decide(order_id, "reject", {"reason": "site S1 is not served"}, role="manager")
    view = flow.view(order_id)  # /api/v1, which told the reason before

    doc = tmf(client, auth, order_id)
    assert doc["state"] == "rejected"
    (error,) = doc["errorMessage"]
    assert error == {
        "code": "rejected",
        "reason": "rejected",
        "message": "site S1 is not served",
        "status": "rejected",  # what became of the order (docs/lifecycle.md)
        "timestamp": error["timestamp"],
        "@type": "ServiceOrderErrorMessage",
    }
    assert view["rejectionReason"] == error["message"]
    assert when(error["timestamp"]) == when(view["decidedAt"])  # the rejection's time
    assert all("errorMessage" not in item for item in doc["serviceOrderItem"])  # the order's
    assert listed(client, auth, order_id, "rejected")["errorMessage"] == doc["errorMessage"]
    assert spec_errors(doc) == []


def test_an_order_without_a_bad_outcome_has_no_error_message(client, auth, flow):
    approved = flow.in_progress()
    assert "errorMessage" not in tmf(client, auth, approved)
    done = flow.in_progress(router=False)
    flow.post(f"/api/v1/orders/{done}/items/1/state", {"state": "completed"}, role="fulfilment")
    doc = tmf(client, auth, done)
    assert doc["state"] == "completed" and "errorMessage" not in doc


def test_a_failed_item_is_named_by_the_orders_error_message(client, auth, flow):
    order_id = flow.in_progress(router=False)
    fail(flow, order_id, "1", "port faulty")

    doc = tmf(client, auth, order_id)
    assert doc["state"] == "failed"
    (error,) = doc["errorMessage"]
    assert (error["code"], error["reason"], error["@type"]) == (
        "item_failed",
        "item_failed",
        "ServiceOrderErrorMessage",
    )
    assert error["serviceOrderItem"] == [
        {
            "itemId": "1",
            "serviceOrderId": order_id,
            "@referredType": "ServiceOrderItem",
            "@type": "ServiceOrderItemRef",
        }
    ]
    assert error["message"] == "order item(s) 1 failed"
    assert error["status"] == "failed"  # the order's state
    assert error["timestamp"] == doc["completionDate"]  # when the order became failed
    (item,) = doc["serviceOrderItem"]
    assert item["state"] == "failed"
    # The item's own outcome: fulfilment's reason, at the time the item failed.
    (item_error,) = item["errorMessage"]
    assert item_error == {
        "code": "item_failed",
        "reason": "item_failed",
        "message": "port faulty",
        "status": "failed",
        "timestamp": item_error["timestamp"],
        "@type": "ServiceOrderItemErrorMessage",
    }
    assert when(item_error["timestamp"]) <= when(error["timestamp"])
    assert listed(client, auth, order_id, "failed")["errorMessage"] == doc["errorMessage"]
    assert spec_errors(doc) == []


def test_a_partial_order_names_only_its_failed_items(client, auth, flow):
    order_id = flow.in_progress()  # item 2 (the router) depends on item 1
    flow.post(f"/api/v1/orders/{order_id}/items/1/state", {"state": "completed"}, role="fulfilment")
    fail(flow, order_id, "2")  # no reason given: the error message is the same

    doc = tmf(client, auth, order_id)
    assert doc["state"] == "partial"
    (error,) = doc["errorMessage"]
    assert [ref["itemId"] for ref in error["serviceOrderItem"]] == ["2"]
    items = {item["id"]: item for item in doc["serviceOrderItem"]}
    assert "errorMessage" not in items["1"]
    assert [e["message"] for e in items["2"]["errorMessage"]] == ["order item 2 failed"]


def test_an_item_failing_while_the_order_runs_is_told_on_the_item_only(client, auth, flow):
    order_id = flow.in_progress()
    fail(flow, order_id, "2")  # item 1 still open: the order is not decided yet

    doc = tmf(client, auth, order_id)
    assert doc["state"] == "inProgress"
    assert "errorMessage" not in doc
    items = {item["id"]: item for item in doc["serviceOrderItem"]}
    assert items["2"]["state"] == "failed" and items["2"]["errorMessage"]
    assert "errorMessage" not in items["1"]

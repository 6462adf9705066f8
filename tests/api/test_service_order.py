"""Each TMF641 serviceOrder / cancelServiceOrder operation, through HTTP, on both backends:
create (idempotent), list filters and fields, retrieve, PATCH per state, DELETE per state."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
CANCELS = "/tmf-api/serviceOrdering/v4/cancelServiceOrder"
MERGE = {"Content-Type": "application/merge-patch+json"}


def patch(
    client: TestClient,
    auth: Any,
    order_id: str,
    body: dict[str, Any],
    role: str = "integrator",
    content_type: str = "application/merge-patch+json",
) -> Any:
    import json

    return client.patch(
        f"{ORDERS}/{order_id}",
        content=json.dumps(body),
        headers={**auth(role), "Content-Type": content_type},
    )


def test_create_returns_the_document_with_mandatory_attributes(client, auth, order_body):
    response = client.post(ORDERS, json=order_body("EXT-1"), headers=auth("integrator"))
    assert response.status_code == 201
    doc = response.json()
    assert {"id", "href", "state", "orderDate", "serviceOrderItem", "@type"} <= doc.keys()
    assert doc["state"] == "acknowledged" and doc["externalId"] == "EXT-1"
    assert doc["href"].startswith("http") and doc["href"].endswith(doc["id"])
    assert response.headers["location"] == doc["href"]
    assert doc["orderDate"].endswith("Z")
    assert [i["state"] for i in doc["serviceOrderItem"]] == ["acknowledged", "acknowledged"]
    assert response.headers["etag"] == '"2"'


def test_create_is_idempotent_by_external_id_and_by_idempotency_key(client, auth, order_body):
    first = client.post(ORDERS, json=order_body("EXT-2"), headers=auth("integrator")).json()
    again = client.post(ORDERS, json=order_body("EXT-2"), headers=auth("integrator"))
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    keyed = {**auth("integrator"), "Idempotency-Key": "retry-7"}
    one = client.post(ORDERS, json=order_body(), headers=keyed).json()
    two = client.post(ORDERS, json=order_body(), headers=keyed).json()
    assert one["id"] == two["id"]
    listed = client.get(ORDERS, headers=auth("auditor"))
    assert listed.headers["x-total-count"] == "2"


def test_create_refuses_structural_problems_with_every_problem_listed(client, auth, order_body):
    body = order_body()
    body["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "no-such-spec"
    body["serviceOrderItem"][1]["serviceOrderItemRelationship"][0]["orderItem"]["itemId"] = "9"
    response = client.post(ORDERS, json=body, headers=auth("integrator"))
    assert response.status_code == 400
    error = response.json()
    assert error["status"] == "400" and error["code"] == "validation_failed"
    assert {d["code"] for d in error["details"]} == {"unknown_specification", "unknown_dependency"}


def test_create_refuses_wrong_media_type_and_bad_json(client, auth, order_body):
    import json

    wrong = client.post(
        ORDERS,
        content=json.dumps(order_body()),
        headers={**auth("integrator"), "Content-Type": "text/plain"},
    )
    assert wrong.status_code == 415 and wrong.json()["code"] == "unsupported_media_type"
    utf8 = client.post(
        ORDERS,
        content=json.dumps(order_body()),
        headers={**auth("integrator"), "Content-Type": "application/json;charset=utf-8"},
    )
    assert utf8.status_code == 201
    broken = client.post(
        ORDERS,
        content=b'{"serviceOrderItem": [',
        headers={**auth("integrator"), "Content-Type": "application/json"},
    )
    # `reason` is the error's code (issue 16: one spelling for programs at every door).
    assert broken.status_code == 400 and broken.json()["reason"] == "invalid_json"
    missing = client.post(ORDERS, json={"description": "no items"}, headers=auth("integrator"))
    assert missing.status_code == 400 and "serviceOrderItem" in missing.json()["message"]


def test_list_filters_fields_and_paging(client, auth, post_order, flow):
    a = post_order(external_id="A", category="smb")
    b = post_order(external_id="B")
    flow.decide(b["id"], "approve")
    get = lambda q: client.get(f"{ORDERS}{q}", headers=auth("auditor"))  # noqa: E731
    assert [o["id"] for o in get("?state=inProgress").json()] == [b["id"]]
    assert [o["id"] for o in get("?externalId=A").json()] == [a["id"]]
    assert [o["id"] for o in get("?category=smb").json()] == [a["id"]]
    assert [o["id"] for o in get(f"?id={a['id']}").json()] == [a["id"]]
    exact = get(f'?orderDate="{a["orderDate"]}"').json()
    assert [o["id"] for o in exact] == [a["id"]]
    assert {o["id"] for o in get(f"?orderDate.gt={a['orderDate']}").json()} == {b["id"]}
    assert {o["id"] for o in get(f"?orderDate.lt={b['orderDate']}").json()} == {a["id"]}
    page = get("?limit=1&offset=1")
    assert page.headers["x-total-count"] == "2" and page.headers["x-result-count"] == "1"
    # A bad parameter is a 400 naming it, never an empty 200 (issue 16).
    for bad, name in (("limit=-3", "limit"), ("offset=-1", "offset"), ("state=bogus", "state")):
        refused = get(f"?{bad}")
        assert refused.status_code == 400 and refused.json()["message"].startswith(name)
    refused = get("?orderDate.gt=yesterday")
    assert refused.status_code == 400 and refused.json()["message"].startswith("orderDate.gt")
    only = get("?fields=priority").json()[0]
    assert only.keys() == {
        "id",
        "href",
        "state",
        "orderDate",
        "serviceOrderItem",
        "priority",
        "@type",
    }
    assert "description" not in only and "priority" in only


def test_retrieve_unknown_or_malformed_id_is_404(client, auth):
    for bad in ("8c4cfbc4-2280-4d07-a44f-3a8aaf2849c9", "not-a-uuid"):
        response = client.get(f"{ORDERS}/{bad}", headers=auth("auditor"))
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_drafts_are_not_tmf641_resources(client, auth, flow):
    draft = flow.draft()
    assert client.get(f"{ORDERS}/{draft}", headers=auth("auditor")).status_code == 404
    assert client.get(ORDERS, headers=auth("auditor")).json() == []


# ------------------------------------------------------------------------ PATCH
def test_patch_before_approval_changes_items_and_header(client, auth, post_order):
    order = post_order()
    item = order["serviceOrderItem"][0]
    item["service"]["serviceCharacteristic"][0]["value"] = 500
    response = patch(client, auth, order["id"], {"priority": "1", "serviceOrderItem": [item]})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["priority"] == "1" and doc["state"] == "acknowledged"
    chars = {
        c["name"]: c["value"]
        for c in doc["serviceOrderItem"][0]["service"]["serviceCharacteristic"]
    }
    assert chars["bandwidthMbps"] == 500
    assert len(doc["serviceOrderItem"]) == 2  # merged by id: the other item stays
    assert (
        client.get(f"{ORDERS}/{order['id']}", headers=auth("auditor")).json()["priority"] == "1"
    )  # read your write


def test_patch_accepts_plain_json_and_refuses_other_media(client, auth, post_order):
    order = post_order()
    ok = patch(
        client,
        auth,
        order["id"],
        {"description": "new"},
        content_type="application/json;charset=utf-8",
    )
    assert ok.status_code == 200 and ok.json()["description"] == "new"
    refused = patch(client, auth, order["id"], {"description": "x"}, content_type="text/xml")
    assert refused.status_code == 415


def test_patch_after_approval_is_a_proposal_until_the_point_of_no_return(client, auth, flow):
    order_id = flow.in_progress()
    revised = patch(client, auth, order_id, {"priority": "1"})
    assert revised.status_code == 200 and revised.json()["state"] == "inProgress"
    # a proposal (issue 17): decided by a second person before the point of no return
    assert revised.json()["priority"] == "2" and 'rel="proposal"' in revised.headers["link"]
    assert flow.decide(order_id, "proposal/approve").json()["priority"] == "1"
    flow.post(f"/api/v1/orders/{order_id}/pointOfNoReturn", {}, role="fulfilment")
    refused = patch(client, auth, order_id, {"priority": "3"})
    assert refused.status_code == 409
    assert "point of no return" in refused.json()["message"]


def test_patch_of_a_final_order_is_refused_with_the_reason(client, auth, flow):
    order_id = flow.rejected()
    refused = patch(client, auth, order_id, {"priority": "1"})
    assert refused.status_code == 409
    assert "rejected" in refused.json()["message"]


def test_patch_cannot_change_state_or_external_id(client, auth, post_order):
    order = post_order(external_id="KEEP")
    assert patch(client, auth, order["id"], {"state": "completed"}).status_code == 409
    assert patch(client, auth, order["id"], {"externalId": "OTHER"}).status_code == 409
    same = patch(client, auth, order["id"], {"state": "acknowledged", "externalId": "KEEP"})
    assert same.status_code == 200


def test_patch_with_a_stale_if_match_is_412(client, auth, post_order):
    order = post_order()
    stale = patch(client, auth, order["id"], {"priority": "1"})
    assert stale.status_code == 200
    headers = {**auth("integrator"), **MERGE, "If-Match": '"2"'}
    response = client.patch(f"{ORDERS}/{order['id']}", json={"priority": "4"}, headers=headers)
    assert response.status_code == 412


# ----------------------------------------------------------------------- DELETE
def test_delete_is_refused_for_active_orders_and_allowed_for_final_ones(client, auth, flow):
    active = flow.in_progress()
    refused = client.delete(f"{ORDERS}/{active}", headers=auth("manager"))
    assert refused.status_code == 409 and "cannot delete" in refused.json()["message"]
    final = flow.rejected()
    assert client.delete(f"{ORDERS}/{final}", headers=auth("manager")).status_code == 204
    assert client.get(f"{ORDERS}/{final}", headers=auth("auditor")).status_code == 404
    assert final not in [o["id"] for o in client.get(ORDERS, headers=auth("auditor")).json()]
    history = client.get(f"/api/v1/orders/{final}/events", headers=auth("auditor"))
    assert history.status_code == 200
    assert [e["type"] for e in history.json()][-1] == "OrderDeleted"  # history is kept
    assert client.delete(f"{ORDERS}/{final}", headers=auth("manager")).status_code == 404


def test_delete_needs_a_manager(client, auth, flow):
    final = flow.rejected()
    assert client.delete(f"{ORDERS}/{final}", headers=auth("integrator")).status_code == 403


# ------------------------------------------------------------------ cancellation
def test_cancel_service_order_approved_and_denied(client, auth, flow):
    approved_order, approved_request = flow.assessing(flow.in_progress())
    denied_order, denied_request = flow.assessing(flow.in_progress())
    state = lambda oid: client.get(f"{ORDERS}/{oid}", headers=auth("auditor")).json()["state"]  # noqa: E731
    assert state(approved_order) == "assessingCancellation"
    flow.decide(approved_order, "cancellation/approve", role="manager")
    assert state(approved_order) == "pendingCancellation"
    request = client.get(f"{CANCELS}/{approved_request}", headers=auth("auditor")).json()
    assert request["state"] == "inProgress"
    flow.post(f"/api/v1/orders/{approved_order}/cancel", {}, role="fulfilment")
    assert state(approved_order) == "cancelled"
    done = client.get(f"{CANCELS}/{approved_request}", headers=auth("auditor")).json()
    assert done["state"] == "done" and "effectiveCancellationDate" in done

    flow.decide(denied_order, "cancellation/deny", {"reason": "already built"}, role="manager")
    assert state(denied_order) == "inProgress"
    denied = client.get(f"{CANCELS}/{denied_request}", headers=auth("auditor")).json()
    assert denied["state"] == "done" and "denied" in denied["completionMessage"]
    listed = client.get(CANCELS, headers=auth("auditor"))
    assert listed.headers["x-total-count"] == "2"


def test_cancel_service_order_of_an_unknown_order_is_404(client, auth):
    response = client.post(
        CANCELS, json={"serviceOrder": {"id": "missing"}}, headers=auth("integrator")
    )
    assert response.status_code == 404


# ------------------------------------------------------------------- operations
def test_openapi_and_docs_describe_the_whole_api(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        ORDERS,
        f"{ORDERS}/{{id}}",
        CANCELS,
        f"{CANCELS}/{{id}}",
        "/tmf-api/serviceOrdering/v4/hub",
        "/tmf-api/serviceOrdering/v4/hub/{id}",
        "/tmf-api/serviceCatalogManagement/v4/serviceSpecification",
        "/api/v1/reviewQueue",
        "/api/v1/drafts",
        "/health",
        "/ready",
        "/metrics",
    ):
        assert path in paths, path
    assert {"get", "post"} <= paths[ORDERS].keys()
    assert {"get", "patch", "delete"} <= paths[f"{ORDERS}/{{id}}"].keys()
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_health_ready_and_metrics(client, auth, post_order, flow):
    assert client.get("/health").json() == {"status": "ok"}
    post_order()
    hub = client.post(
        "/tmf-api/serviceOrdering/v4/hub",
        json={"callback": "http://127.0.0.1:9/listener"},
        headers=auth("integrator"),
    )
    assert hub.status_code == 201, hub.text
    flow.order()
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert {p["lag"] for p in ready.json()["projections"].values()} == {0}
    text = client.get("/metrics").text
    assert 'serviceorders_http_requests_total{method="POST"' in text
    assert "serviceorders_http_request_seconds_bucket" in text
    assert 'serviceorders_projection_lag_events{projection="order_summary"} 0.0' in text
    backlog = [line for line in text.splitlines() if line.startswith("serviceorders_hub_backlog{")]
    assert backlog == [
        f'serviceorders_hub_backlog{{listener="{hub.json()["id"]}",state="active"}} 0.0'
    ]  # no delivery worker runs in this test


@pytest.mark.parametrize("path", ["/api/v1/reviewQueue?site=a%00b", "/api/v1/hub?all=%00"])
def test_nul_in_a_query_is_refused_not_a_server_error(client, auth, path):
    response = client.get(path, headers=auth("admin"))
    assert response.status_code == 400 and response.json()["code"] == "invalid_text"

"""The TMF638 Service Inventory API (issue 20, read-only): list with filters, `fields`, paging
and its counts; retrieve by id, and `asOf` (the service as it was then, from its events);
a service's history under /api/v1; 405 for every write method; 404 for an unknown id; the
keys every other read takes. On SQLite and PostgreSQL (the root `settings` fixture).

The inventory is made through the application (orders received, approved and completed,
an import), then the read models are brought up to date, as the API's own writes do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

import pytest
from builders import customer, fulfilment, item, manager, operator, receive, router, upstream
from fastapi.testclient import TestClient
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import (
    ItemAction,
    ItemState,
    Party,
    Place,
    ServiceRecord,
    SpecRef,
)
from serviceorders.tmf.time import tmf_time

pytestmark = pytest.mark.integration

BASE = "/tmf-api/serviceInventory/v4"
SERVICES = f"{BASE}/service"
ACME = customer("CUST-1", "Acme")
OTHER = customer("CUST-2", "Other")


@dataclass
class Inventory:
    access: str  # Acme's internet access at site-1, made by `add`, modified by `modify`
    box: str  # Acme's router at site-1, depending on it
    gone: str  # Other's internet access at site-2, terminated by `delete`
    legacy: str  # imported: category business, another related party, place HQ
    add: str  # the order ids
    modify: str
    delete: str
    other_add: str


def _complete(app: ServiceOrders, order_id: UUID) -> None:
    app.handle(manager(), cmd.Approve(order_id))
    order = app.get_order(order_id)
    changes = tuple(cmd.ItemStateChange(i, ItemState.COMPLETED) for i in order.items)
    app.handle(fulfilment(), cmd.ChangeItemStates(order_id, changes))


def build_inventory(http: TestClient) -> Inventory:
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    app: ServiceOrders = ctx.app
    add = app.handle(
        upstream(),
        receive("inv-add", [item("1"), router("2", depends_on=("1",))], related_parties=(ACME,)),
    ).order_id
    _complete(app, add)
    access, box = service_id_for(add, "1"), service_id_for(add, "2")
    other_add = app.handle(
        upstream(),
        receive("inv-other", [item("1", place=Place(id="site-2"))], related_parties=(OTHER,)),
    ).order_id
    _complete(app, other_add)
    gone = service_id_for(other_add, "1")
    modify = app.handle(
        upstream(),
        receive(
            "inv-modify",
            [
                item(
                    "1",
                    action=ItemAction.MODIFY,
                    service_id=access,
                    characteristics={"bandwidthMbps": 500, "accessType": "fibre"},
                )
            ],
            related_parties=(ACME,),
        ),
    ).order_id
    _complete(app, modify)
    delete = app.handle(
        upstream(),
        receive(
            "inv-delete",
            [item("1", action=ItemAction.DELETE, service_id=gone, place=Place(id="site-2"))],
            related_parties=(OTHER,),
        ),
    ).order_id
    _complete(app, delete)
    record = ServiceRecord(
        id="LEGACY-1",
        name="Acme HQ line",
        specification=SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 50},
        places=(Place(id="site-hq", name="HQ"),),
        customer=Party(id="CUST-1", name="Acme", role="customer"),
        extra={
            "category": "business",
            "relatedParty": [{"id": "PARTNER-9", "role": "reseller", "@referredType": "Org"}],
        },
    )
    app.handle(operator(), cmd.ImportService(record))
    ctx.sync()
    return Inventory(
        access, box, gone, "LEGACY-1", str(add), str(modify), str(delete), str(other_add)
    )


@pytest.fixture
def inventory(open_client: TestClient) -> Inventory:
    return build_inventory(open_client)


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()]


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["@type"] == "Error" and body["status"] == str(status), body
    return body


# ------------------------------------------------------------------------- list
def test_the_list_holds_every_service_newest_first_with_its_counts(open_client, inventory):
    listed = open_client.get(SERVICES)
    got = ids(listed)
    # newest first: the import, the other customer's access; then the two services one
    # save created (by creation time, then id)
    assert got[:2] == [inventory.legacy, inventory.gone]
    assert sorted(got[2:]) == sorted([inventory.access, inventory.box])
    assert listed.headers["x-total-count"] == "4" and listed.headers["x-result-count"] == "4"
    by_id = {s["id"]: s for s in listed.json()}
    access = by_id[inventory.access]
    assert access["state"] == "active" and access["@type"] == "Service"
    assert access["href"] == f"http://testserver{SERVICES}/{inventory.access}"
    assert access["serviceSpecification"]["id"] == "internet-access"
    assert {c["name"]: c["value"] for c in access["serviceCharacteristic"]} == {
        "bandwidthMbps": 500,
        "accessType": "fibre",
    }
    assert [p["id"] for p in access["place"]] == ["site-1"]
    assert access["relatedParty"][0]["id"] == "CUST-1"
    # the orders that made it so: its add and the modify that changed it, with absolute hrefs
    assert [(o["serviceOrderId"], o["itemAction"]) for o in access["serviceOrderItem"]] == [
        (inventory.add, "add"),
        (inventory.modify, "modify"),
    ]
    assert access["serviceOrderItem"][0]["serviceOrderHref"] == (
        f"http://testserver/tmf-api/serviceOrdering/v4/serviceOrder/{inventory.add}"
    )
    box = by_id[inventory.box]
    assert box["serviceRelationship"] == [
        {
            "relationshipType": "dependsOn",
            "service": {
                "id": inventory.access,
                "href": f"http://testserver{SERVICES}/{inventory.access}",
            },
        }
    ]
    assert by_id[inventory.gone]["state"] == "terminated"
    assert by_id[inventory.gone]["endDate"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "terminated"}, ["gone"]),
        ({"state": "active"}, ["legacy", "access", "box"]),
        ({"state": "designed"}, []),
        ({"name": "Acme HQ line"}, ["legacy"]),
        ({"category": "business"}, ["legacy"]),
        ({"serviceSpecification.id": "managed-router"}, ["box"]),
        ({"serviceSpecification.id": "internet-access", "state": "active"}, ["legacy", "access"]),
        ({"relatedParty.id": "CUST-2"}, ["gone"]),
        ({"relatedParty.id": "CUST-1"}, ["legacy", "access", "box"]),
        ({"relatedParty.id": "PARTNER-9"}, ["legacy"]),  # a related party beside the customer
        ({"place.id": "site-1"}, ["access", "box"]),
        ({"place.id": "site-hq"}, ["legacy"]),
        ({"place.id": "nowhere"}, []),
        ({"serviceOrderItem.serviceOrderId": "add"}, ["access", "box"]),
        ({"serviceOrderItem.serviceOrderId": "modify"}, ["access"]),
        ({"serviceOrderItem.serviceOrderId": "delete"}, ["gone"]),
        ({"serviceOrderItem.serviceOrderId": "other_add"}, ["gone"]),
        ({"id": "access,LEGACY-1,nothing"}, ["legacy", "access"]),
        ({"name": "a\u0000b"}, []),  # a NUL matches nothing (PostgreSQL cannot compare one)
    ],
)
def test_attribute_filters(open_client, inventory, query, expected):
    named = vars(inventory)
    params = dict(query)
    if "serviceOrderItem.serviceOrderId" in params:
        params["serviceOrderItem.serviceOrderId"] = named[params["serviceOrderItem.serviceOrderId"]]
    if "id" in params:
        params["id"] = ",".join(named.get(i, i) for i in params["id"].split(","))
    everything = ids(open_client.get(SERVICES))
    response = open_client.get(SERVICES, params=params)
    wanted = {named[e] for e in expected}
    assert ids(response) == [i for i in everything if i in wanted]  # in the list's order
    assert response.headers["x-total-count"] == str(len(expected))


def test_the_order_that_made_a_service_finds_it_even_after_another_changed_it(
    open_client, inventory
):
    """serviceOrderItem.serviceOrderId finds every service an order created, changed or
    terminated (service_history), not only the ones whose document still names it."""
    ctx = open_client.app.state.ctx
    again = ctx.app.handle(
        upstream(),
        receive(
            "inv-modify-2",
            [
                item(
                    "1",
                    action=ItemAction.MODIFY,
                    service_id=inventory.access,
                    characteristics={"bandwidthMbps": 1000, "accessType": "fibre"},
                )
            ],
            related_parties=(ACME,),
        ),
    ).order_id
    _complete(ctx.app, again)
    ctx.sync()
    doc = open_client.get(f"{SERVICES}/{inventory.access}").json()
    assert [o["serviceOrderId"] for o in doc["serviceOrderItem"]] == [inventory.add, str(again)]
    found = open_client.get(SERVICES, params={"serviceOrderItem.serviceOrderId": inventory.modify})
    assert ids(found) == [inventory.access]


def test_unknown_filter_values_are_refused_naming_the_parameter(open_client, inventory):
    body = error(open_client.get(SERVICES, params={"state": "running"}), 400)
    assert body["message"].startswith("state: must be one of feasibilityChecked")
    for name, value in (("offset", "-1"), ("limit", "-5"), ("limit", "1.5"), ("offset", "x")):
        body = error(open_client.get(SERVICES, params={name: value}), 400)
        assert name in body["message"]


def test_fields_select_attributes_and_keep_the_mandatory_ones(open_client, inventory):
    listed = open_client.get(SERVICES, params={"fields": "name,serviceSpecification"})
    for service in listed.json():
        assert set(service) <= {"id", "href", "state", "@type", "name", "serviceSpecification"}
        assert {"id", "href", "state", "@type", "serviceSpecification"} <= set(service)
    one = open_client.get(f"{SERVICES}/{inventory.legacy}", params={"fields": "category"})
    assert one.json() == {
        "id": "LEGACY-1",
        "href": f"http://testserver{SERVICES}/LEGACY-1",
        "state": "active",
        "category": "business",
        "@type": "Service",
    }


def test_paging_answers_200_with_the_page_and_both_counts(open_client, inventory):
    everything = ids(open_client.get(SERVICES))
    pages = []
    for offset in range(0, 5, 2):
        page = open_client.get(SERVICES, params={"offset": offset, "limit": 2})
        assert page.status_code == 200  # as the TMF641 list: never 206
        assert page.headers["x-total-count"] == "4"
        assert page.headers["x-result-count"] == str(len(page.json()))
        pages += ids(page)
    assert pages == everything
    empty = open_client.get(SERVICES, params={"offset": 10, "limit": 10**9})
    assert empty.json() == [] and empty.headers["x-result-count"] == "0"
    assert empty.headers["x-total-count"] == "4"


# ------------------------------------------------------------------------ by id
def test_retrieve_answers_the_document_of_the_list(open_client, inventory):
    listed = {s["id"]: s for s in open_client.get(SERVICES).json()}
    for service_id, listed_doc in listed.items():
        one = open_client.get(f"{SERVICES}/{service_id}")
        assert one.status_code == 200 and one.json() == listed_doc
        assert one.headers["etag"].strip('"').isdigit()


def test_an_unknown_service_is_a_404_tmf_error(open_client, inventory):
    for path in (
        f"{SERVICES}/SVC-DOES-NOT-EXIST",
        f"{SERVICES}/{inventory.access}x",
        "/api/v1/services/SVC-DOES-NOT-EXIST/history",
    ):
        body = error(open_client.get(path), 404)
        assert body["code"] == "not_found" and "no service" in body["message"]
    body = error(
        open_client.get(f"{SERVICES}/SVC-DOES-NOT-EXIST", params={"asOf": "2030-01-01T00:00:00Z"}),
        404,
    )
    assert body["message"] == "no service SVC-DOES-NOT-EXIST"


def _event_times(http: TestClient, service_id: str) -> list[Any]:
    return [e.timestamp for e in http.app.state.ctx.app.service_history(service_id)]


def test_as_of_answers_the_service_as_it_was_then(open_client, inventory):
    created, *_, modified = _event_times(open_client, inventory.access)
    url = f"{SERVICES}/{inventory.access}"

    def bandwidth(when: Any) -> Any:
        response = open_client.get(url, params={"asOf": tmf_time(when)})
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["href"] == f"http://testserver{url}"
        return {c["name"]: c["value"] for c in doc["serviceCharacteristic"]}["bandwidthMbps"]

    assert bandwidth(created) == 100
    assert bandwidth(modified - timedelta(microseconds=1)) == 100
    assert bandwidth(modified) == 500
    now = open_client.get(url).json()
    later = open_client.get(url, params={"asOf": "2999-01-01T00:00:00+02:00"}).json()
    assert later == now  # the replay renders what the read model holds
    # before it existed: 404 naming the time
    body = error(
        open_client.get(url, params={"asOf": tmf_time(created - timedelta(seconds=1))}), 404
    )
    assert "it was created later" in body["message"]
    # the terminated service, just before and at its delete
    *_, terminated = _event_times(open_client, inventory.gone)
    gone = f"{SERVICES}/{inventory.gone}"
    before = open_client.get(
        gone, params={"asOf": tmf_time(terminated - timedelta(microseconds=1))}
    )
    assert before.json()["state"] == "active" and "endDate" not in before.json()
    assert (
        open_client.get(gone, params={"asOf": tmf_time(terminated)}).json()["state"] == "terminated"
    )
    # fields apply to a past service too; no offset means UTC
    naive = tmf_time(modified).removesuffix("Z")
    past = open_client.get(url, params={"asOf": naive, "fields": "serviceCharacteristic"})
    assert set(past.json()) == {"id", "href", "state", "@type", "serviceCharacteristic"}


@pytest.mark.parametrize("value", ["yesterday", "2030-13-01T00:00:00Z", "", "1700000000", "\u0000"])
def test_a_malformed_as_of_is_a_400_naming_it(open_client, inventory, value):
    body = error(open_client.get(f"{SERVICES}/{inventory.access}", params={"asOf": value}), 400)
    assert body["message"].startswith("asOf: must be an ISO 8601 date-time")


# ---------------------------------------------------------------------- history
def test_the_history_names_the_orders_that_changed_it_when_and_by_whom(open_client, inventory):
    response = open_client.get(f"/api/v1/services/{inventory.access}/history")
    assert response.status_code == 200, response.text
    history = response.json()
    assert response.headers["x-total-count"] == str(len(history))
    assert [(h["kind"], h["orderId"]) for h in history] == [
        ("created", inventory.add),
        ("dependent_added", None),
        ("order_opened", inventory.modify),
        ("modified", inventory.modify),
    ]
    created, _, opened, modified = history
    assert [h["version"] for h in history] == [1, 2, 3, 4]
    assert created["actor"] == {"id": "fulfil-1", "role": "fulfilment"}
    assert created["itemId"] == "1" and created["state"] == "active"
    assert created["orderHref"].endswith(
        f"/tmf-api/serviceOrdering/v4/serviceOrder/{inventory.add}"
    )
    assert opened["actor"] == {"id": "crm", "role": "upstream"}
    assert opened["changes"] == {"action": "modify", "itemIds": ["1"]}
    assert modified["changes"] == {"bandwidthMbps": {"from": 100, "to": 500}}
    assert modified["actor"]["id"] == "fulfil-1" and modified["occurredAt"].endswith("Z")
    assert response.headers["etag"] == '"4"'
    gone = open_client.get(f"/api/v1/services/{inventory.gone}/history").json()
    assert gone[-1]["kind"] == "terminated" and gone[-1]["orderId"] == inventory.delete
    assert gone[-1]["changes"] == {"state": {"from": "active", "to": "terminated"}}
    legacy = open_client.get(f"/api/v1/services/{inventory.legacy}/history").json()
    assert [(h["kind"], h["actor"]["id"]) for h in legacy] == [("imported", "ops")]


# ---------------------------------------------------------- read-only, and keys
def test_write_methods_answer_405_with_a_tmf_error(open_client, inventory):
    for method, path in (
        ("POST", SERVICES),
        ("PATCH", f"{SERVICES}/{inventory.access}"),
        ("DELETE", f"{SERVICES}/{inventory.access}"),
        ("PUT", f"{SERVICES}/{inventory.access}"),
        ("POST", f"/api/v1/services/{inventory.access}/history"),
    ):
        response = open_client.request(method, path, json={"state": "terminated"})
        body = error(response, 405)
        assert body["code"] == "method_not_allowed"
        assert response.headers["allow"] == "GET", (method, path)
    # nothing changed
    assert open_client.get(f"{SERVICES}/{inventory.access}").json()["state"] == "active"


def test_reads_take_the_keys_every_other_read_takes(client, auth):
    inventory = build_inventory(client)
    path = f"{SERVICES}/{inventory.access}"
    for what in (SERVICES, path, f"/api/v1/services/{inventory.access}/history"):
        assert error(client.get(what), 401)["code"] == "unauthenticated"
        bad = client.get(what, headers={"Authorization": "Bearer not-a-key-of-ours-at-all"})
        assert error(bad, 401)["code"] == "unauthenticated"
        for role in ("integrator", "agent", "manager", "fulfilment", "auditor", "admin"):
            assert client.get(what, headers=auth(role)).status_code == 200, (what, role)


def test_the_openapi_document_lists_the_inventory_reads(open_client):
    paths = open_client.get("/openapi.json").json()["paths"]
    assert set(paths[SERVICES]) == {"get"}
    assert set(paths[f"{SERVICES}/{{id}}"]) == {"get"}
    assert set(paths["/api/v1/services/{id}/history"]) == {"get"}


@pytest.mark.parametrize("service_id", ["ACME/HQ/1", "línea 7 ü", "a?b#c", "100%", "x/history"])
def test_any_service_id_is_reachable(open_client, service_id):
    """An imported service's id is any text: sent percent-encoded, it names that service."""
    ctx = open_client.app.state.ctx
    ctx.app.handle(operator(), cmd.ImportService(ServiceRecord(id=service_id, name="odd id")))
    ctx.sync()
    encoded = quote(service_id, safe="")
    one = open_client.get(f"{SERVICES}/{encoded}")
    assert one.status_code == 200, one.text
    assert one.json()["id"] == service_id
    assert one.json()["href"] == f"http://testserver{SERVICES}/{encoded}"
    assert open_client.get(one.json()["href"]).json() == one.json()  # the href names it
    past = open_client.get(f"{SERVICES}/{encoded}", params={"asOf": "2999-01-01T00:00:00Z"})
    assert past.status_code == 200 and past.json()["id"] == service_id
    history = open_client.get(f"/api/v1/services/{encoded}/history")
    assert history.status_code == 200 and history.json()[0]["kind"] == "imported"
    assert ids(open_client.get(SERVICES, params={"id": service_id})) == [service_id]

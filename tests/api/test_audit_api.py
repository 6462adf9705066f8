"""GET /api/v1/orders/{id}/history (timeline, asOf, version, diff), the auditors' access
log (GET /api/v1/audit/access-log and the middleware writing it) and the auditor's
read-only access, on both backends."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any
from uuid import uuid4

import pytest
from builders import draft_item
from fastapi.testclient import TestClient
from serviceorders.audit import access_log
from serviceorders.bootstrap import open_read_db
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

Auth = Callable[[str | None], dict[str, str]]
TMF641 = "/tmf-api/serviceOrdering/v4"
ROLES = ("integrator", "agent", "manager", "fulfilment", "auditor", "admin")


@pytest.fixture
def log_db(api_settings: Settings) -> Iterator[Any]:
    """The read database, with the access log emptied (PostgreSQL keeps one database for
    the session and the root fixtures do not truncate this table)."""
    db = open_read_db(api_settings)
    access_log.create_tables(db)
    db.execute(f"DELETE FROM {access_log.ACCESS_LOG.name}")
    try:
        yield db
    finally:
        db.close()


def history_url(order_id: str, query: str = "") -> str:
    return f"/api/v1/orders/{order_id}/history" + (f"?{query}" if query else "")


def is_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["@type"] == "Error" and body["status"] == str(status)
    assert body["code"] and body["reason"] and body["message"]
    return body


def busy_order(flow: Any) -> str:
    """inProgress, item 1 completed, a note: 6 events."""
    order_id = flow.in_progress()  # v1 drafted, v2 submitted, v3 approved
    flow.post(f"/api/v1/orders/{order_id}/items/1/state", {"state": "completed"})  # v4
    flow.post(f"/api/v1/orders/{order_id}/notes", {"text": "called the customer"})  # v5
    flow.post(f"/api/v1/orders/{order_id}/items/2/state", {"state": "inProgress"})  # v6
    return order_id


# ------------------------------------------------------------------ timeline
def test_timeline_for_an_auditor(client: TestClient, flow: Any, auth: Auth, log_db: Any) -> None:
    order_id = busy_order(flow)
    response = client.get(history_url(order_id), headers=auth("auditor"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"6"' and response.headers["x-total-count"] == "6"
    # each event with the order's state after it
    assert [(e["type"], e["stateAfter"]) for e in body] == [
        ("OrderDrafted", "draft"),
        ("OrderSubmitted", "acknowledged"),
        ("OrderApproved", "inProgress"),
        ("ItemStateChanged", "inProgress"),
        ("NoteAdded", "inProgress"),
        ("ItemStateChanged", "inProgress"),
    ]
    assert body[0]["actor"] == {"id": "crm", "role": "upstream"}
    assert body[0]["source"]["channel"] == "api"
    assert body[2]["actor"] == {"id": "ops", "role": "operator"}
    assert body[3]["data"]["state"] == "completed"
    assert body[3]["summaryAfter"]["items"] == {"1": "completed", "2": "acknowledged"}
    assert body[4]["summaryAfter"]["notes"] == 1
    assert body[0]["documentKind"] == "draft"
    assert body[1]["documentKind"] == "tmf641"
    assert body[5]["documentAfter"]["serviceOrderItem"][1]["state"] == "inProgress"
    # the same events, hashes and chain as /events
    events = client.get(f"/api/v1/orders/{order_id}/events", headers=auth("auditor")).json()
    assert [e["hash"] for e in body] == [e["hash"] for e in events]
    assert [e["prevHash"] for e in body] == [e["prevHash"] for e in events]
    assert all(b["prevHash"] == a["hash"] for a, b in pairwise(body))

    lean = client.get(history_url(order_id, "documents=false"), headers=auth("auditor"))
    assert lean.status_code == 200 and "documentAfter" not in lean.json()[0]


def test_every_role_reads_history_and_no_key_is_401(
    client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    order_id = flow.order()
    for role in ROLES:
        response = client.get(history_url(order_id), headers=auth(role))
        assert response.status_code == 200, (role, response.text)
        assert len(response.json()) == 2
    response = client.get(history_url(order_id))
    is_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_if_none_match_answers_304_until_the_order_changes(
    client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    order_id = flow.order()
    first = client.get(history_url(order_id), headers=auth("auditor"))
    tag = first.headers["etag"]
    again = client.get(history_url(order_id), headers={**auth("auditor"), "If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag
    flow.post(f"/api/v1/orders/{order_id}/notes", {"text": "more"})
    changed = client.get(history_url(order_id), headers={**auth("auditor"), "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] == '"3"'


# ----------------------------------------------------------- as of, version
def test_version_and_as_of_return_the_order_as_it_was(
    client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    order_id = busy_order(flow)
    headers = auth("auditor")
    v2 = client.get(history_url(order_id, "version=2"), headers=headers)
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["version"] == 2 and body["latestVersion"] == 6 and body["asOf"] is None
    assert body["state"] == "acknowledged"
    assert body["event"]["type"] == "OrderSubmitted"
    assert body["documentKind"] == "tmf641" and body["document"]["state"] == "acknowledged"
    assert {i["state"] for i in body["document"]["serviceOrderItem"]} == {"acknowledged"}
    assert body["order"]["items"]["1"]["state"] == "acknowledged"
    assert v2.headers["etag"] == '"6"'

    v1 = client.get(history_url(order_id, "version=1"), headers=headers).json()
    assert v1["state"] == "draft" and v1["documentKind"] == "draft"

    timeline = client.get(history_url(order_id), headers=headers).json()
    stamp = timeline[3]["timestamp"]  # ItemStateChanged (v4)
    at = client.get(history_url(order_id), params={"asOf": stamp}, headers=headers)
    assert at.status_code == 200, at.text
    assert at.json()["version"] == 4
    assert at.json()["order"]["items"]["1"]["state"] == "completed"
    assert at.json()["asOf"] is not None
    # the same instant with an explicit offset; a `+` sent unencoded arrives as a space
    plus = stamp.replace("Z", "+00:00")
    assert (
        client.get(history_url(order_id), params={"asOf": plus}, headers=headers).json()["version"]
        == 4
    )
    raw = client.get(history_url(order_id, f"asOf={plus}"), headers=headers)
    assert raw.status_code == 200 and raw.json()["version"] == 4
    later = client.get(
        history_url(order_id), params={"asOf": "2999-01-01T00:00:00Z"}, headers=headers
    ).json()
    assert later["version"] == 6 and later["state"] == "inProgress"


def test_diff_in_both_spellings(client: TestClient, flow: Any, auth: Auth, log_db: Any) -> None:
    order_id = busy_order(flow)
    headers = auth("auditor")
    response = client.get(history_url(order_id, "diff=2,4"), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == (2, 4)
    changes = {c["path"]: c for c in body["changes"]}
    assert changes["/state"] == {
        "op": "replace",
        "path": "/state",
        "before": "acknowledged",
        "after": "inProgress",
    }
    assert changes["/items/1/state"]["after"] == "completed"
    assert changes["/decidedBy"]["after"] == {"id": "ops", "role": "operator"}
    assert [e["version"] for e in body["events"]] == [3, 4]
    same = client.get(history_url(order_id, "from=2&to=4"), headers=headers).json()
    assert same == body
    note = client.get(history_url(order_id, "diff=4,5"), headers=headers).json()
    assert [c["path"] for c in note["changes"]] == ["/notes/0"]
    assert note["changes"][0]["after"]["text"] == "called the customer"


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("version=99", "out of range"),
        ("version=0", "out of range"),
        ("version=abc", "whole number"),
        ("version=-1", "whole number"),
        ("asOf=2000-01-01T00:00:00Z", "did not exist yet"),
        ("asOf=2024-05-01T10:00:00", "timezone"),
        ("asOf=yesterday", "RFC 3339"),
        ("diff=4,2", "4 is after 2"),
        ("diff=2", "two versions"),
        ("diff=1,2,3", "two versions"),
        ("diff=1,99", "out of range"),
        ("from=1", "both from and to"),
        ("to=3", "both from and to"),
        ("from=3&to=1", "3 is after 1"),
        ("version=1&asOf=2024-05-01T10:00:00Z", "asOf and version"),
        ("diff=1,2&from=1&to=2", "diff and from/to"),
        ("documents=maybe", "true or false"),
    ],
)
def test_bad_queries_are_400_tmf_errors(
    query: str, fragment: str, client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    order_id = flow.order()
    body = is_error(client.get(history_url(order_id, query), headers=auth("auditor")), 400)
    assert fragment in body["message"], body


def test_unknown_orders_are_404(client: TestClient, auth: Auth, log_db: Any) -> None:
    missing = uuid4()
    for query in ("", "version=1", "asOf=2024-05-01T10:00:00Z", "diff=0,1"):
        body = is_error(client.get(history_url(str(missing), query), headers=auth("auditor")), 404)
        assert str(missing) in body["message"]
    is_error(client.get(history_url("not-a-uuid"), headers=auth("auditor")), 404)


# ----------------------------------------------------------- read-only auditor
def test_the_auditor_cannot_write_anything(
    client: TestClient, flow: Any, auth: Auth, order_body: Callable[..., Any], log_db: Any
) -> None:
    order_id = flow.in_progress()
    assessing, request_id = flow.assessing()
    draft_id = flow.draft()
    versions = {
        i: len(client.get(f"/api/v1/orders/{i}/events", headers=auth("admin")).json())
        for i in (order_id, assessing, draft_id)
    }
    headers = auth("auditor")

    def tag(i: str) -> dict[str, str]:
        return {**headers, "If-Match": flow.etag(i)}

    v1 = "/api/v1"
    attempts = [
        ("POST", f"{TMF641}/serviceOrder", order_body("AUD-1"), headers),
        ("PATCH", f"{TMF641}/serviceOrder/{order_id}", {"priority": "1"}, headers),
        ("DELETE", f"{TMF641}/serviceOrder/{order_id}", None, headers),
        (
            "POST",
            f"{TMF641}/cancelServiceOrder",
            {"serviceOrder": {"id": order_id}, "cancellationReason": "x"},
            headers,
        ),
        ("POST", f"{TMF641}/hub", {"callback": "http://127.0.0.1:9/cb"}, headers),
        ("POST", f"{v1}/drafts", {"priority": "1"}, headers),
        (
            "POST",
            f"{v1}/drafts/{draft_id}/items",
            {"id": "7", "action": "add", "specificationId": "internet-access"},
            headers,
        ),
        ("PATCH", f"{v1}/drafts/{draft_id}/items/1", {"characteristics": {"x": 1}}, headers),
        ("DELETE", f"{v1}/drafts/{draft_id}/items/1", None, headers),
        ("POST", f"{v1}/drafts/{draft_id}/submit", None, headers),
        ("DELETE", f"{v1}/drafts/{draft_id}", None, headers),
        ("POST", f"{v1}/orders/{order_id}/items/1/state", {"state": "inProgress"}, headers),
        ("POST", f"{v1}/orders/{order_id}/hold", {"reason": "r"}, headers),
        ("POST", f"{v1}/orders/{order_id}/informationRequest", {"information": "i"}, headers),
        ("POST", f"{v1}/orders/{order_id}/pointOfNoReturn", {}, headers),
        ("POST", f"{v1}/orders/{order_id}/cancel", {"reason": "r"}, headers),
        ("POST", f"{v1}/orders/{order_id}/notes", {"text": "t"}, headers),
        ("POST", f"{v1}/orders/{assessing}/cancellation/approve", {"note": "n"}, tag(assessing)),
        ("POST", f"{v1}/orders/{assessing}/cancellation/deny", {"reason": "r"}, tag(assessing)),
    ]
    rejected = flow.order()
    attempts += [
        ("POST", f"{v1}/orders/{rejected}/approve", {"note": "n"}, tag(rejected)),
        ("POST", f"{v1}/orders/{rejected}/reject", {"reason": "r"}, tag(rejected)),
    ]
    for method, path, body, sent in attempts:
        response = (
            client.request(method, path, json=body, headers=sent)
            if body is not None
            else client.request(method, path, headers=sent)
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["@type"] == "Error"
    # nothing changed: no new events, no new order, the draft is still there
    for i, count in versions.items():
        assert len(client.get(f"/api/v1/orders/{i}/events", headers=auth("admin")).json()) == count
    assert len(client.get(f"/api/v1/orders/{rejected}/events", headers=auth("admin")).json()) == 2
    listed = client.get(
        f"{TMF641}/serviceOrder", params={"externalId": "AUD-1"}, headers=auth("admin")
    )
    assert listed.json() == []
    assert request_id


def test_no_write_route_lets_the_auditor_through(
    client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    """Every POST / PATCH / DELETE the API serves, even with a body that changes nothing
    (an empty merge patch): 403 for an auditor, and the event log does not move."""
    order_id = flow.in_progress()
    draft_id = flow.draft()
    head = _log_head(client, auth, (order_id, draft_id))
    writes = [
        (method.upper(), path)
        for path, item in client.app.openapi()["paths"].items()
        for method in item
        if method in ("post", "patch", "put", "delete")
    ]
    assert len(writes) >= 20
    for method, path in writes:
        concrete = path.replace("{itemId}", "1")
        concrete = concrete.replace("{id}", draft_id if "/drafts/" in path else order_id)
        response = client.request(
            method,
            concrete,
            json={"reason": "r", "text": "t"},
            headers={**auth("auditor"), "If-Match": flow.etag(order_id)},
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["@type"] == "Error"
    assert _log_head(client, auth, (order_id, draft_id)) == head


def _log_head(client: TestClient, auth: Auth, ids: tuple[str, ...]) -> list[int]:
    return [
        len(client.get(f"/api/v1/orders/{i}/events", headers=auth("admin")).json()) for i in ids
    ]


# --------------------------------------------------------------- access log
def test_every_auditor_request_is_logged(
    client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    order_id = flow.order()
    auditor = auth("auditor")
    missing = uuid4()
    calls = [
        ("GET", history_url(order_id, "version=2"), None, 200),
        ("GET", history_url(str(missing)), None, 404),
        ("GET", history_url(order_id, "diff=2,1"), None, 400),
        ("POST", f"/api/v1/orders/{order_id}/notes", {"text": "sneaky"}, 403),
        ("GET", f"{TMF641}/serviceOrder/{order_id}", None, 200),
        ("GET", "/health", None, 200),
    ]
    for method, path, body, status in calls:
        response = (
            client.request(method, path, json=body, headers=auditor)
            if body is not None
            else client.request(method, path, headers=auditor)
        )
        assert response.status_code == status, (path, response.text)
    # requests by other roles, without a key or with an unknown key are not logged
    client.get(history_url(order_id), headers=auth("manager"))
    client.get(history_url(order_id))
    client.get(history_url(order_id), headers={"Authorization": "Bearer x" * 5})

    total, rows = access_log.entries(log_db)
    assert total == len(calls)
    logged = [(r["method"], r["path"], r["status"]) for r in reversed(rows)]  # oldest first
    assert logged == [(m, p, s) for m, p, _, s in calls]
    assert {(r["actor"], r["role"]) for r in rows} == {("audit-1", "auditor")}
    assert all(r["at"].tzinfo is not None for r in rows)
    assert rows[0]["at"] >= rows[-1]["at"]


def test_the_access_log_endpoint(client: TestClient, flow: Any, auth: Auth, log_db: Any) -> None:
    order_id = flow.order()
    for query in ("", "version=1", "version=2"):
        assert client.get(history_url(order_id, query), headers=auth("auditor")).status_code == 200
    response = client.get("/api/v1/audit/access-log", headers=auth("admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["x-total-count"] == "3" and response.headers["x-result-count"] == "3"
    assert [e["path"] for e in body] == [
        history_url(order_id, q) for q in ("version=2", "version=1", "")
    ]
    entry = body[0]
    assert set(entry) == {"at", "actor", "role", "method", "path", "status"}
    assert entry["actor"] == "audit-1" and entry["role"] == "auditor"
    assert entry["method"] == "GET" and entry["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry["at"])

    # an auditor reads it too: its own request is logged first (status not yet known)
    mine = client.get("/api/v1/audit/access-log", headers=auth("auditor"))
    assert mine.status_code == 200
    assert mine.json()[0]["path"] == "/api/v1/audit/access-log"
    assert mine.json()[0]["status"] is None
    assert len(mine.json()) == 4
    settled = client.get(
        "/api/v1/audit/access-log", params={"limit": 1}, headers=auth("admin")
    ).json()
    assert settled[0]["path"] == "/api/v1/audit/access-log" and settled[0]["status"] == 200

    # filters and paging
    assert (
        client.get(
            "/api/v1/audit/access-log", params={"actor": "nobody"}, headers=auth("admin")
        ).json()
        == []
    )
    page = client.get(
        "/api/v1/audit/access-log", params={"limit": 2, "offset": 1}, headers=auth("admin")
    )
    assert len(page.json()) == 2 and page.headers["x-total-count"] == "4"
    oldest = body[-1]["at"]
    since = client.get(
        "/api/v1/audit/access-log", params={"since": oldest}, headers=auth("admin")
    ).json()
    assert len(since) == 4
    until = client.get(
        "/api/v1/audit/access-log", params={"until": oldest}, headers=auth("admin")
    ).json()
    assert until == []
    is_error(
        client.get(
            "/api/v1/audit/access-log", params={"since": "last week"}, headers=auth("admin")
        ),
        400,
    )

    # only auditors and admins
    for role in ("integrator", "agent", "manager", "fulfilment"):
        is_error(client.get("/api/v1/audit/access-log", headers=auth(role)), 403)
    is_error(client.get("/api/v1/audit/access-log"), 401)


def test_auditor_requests_are_refused_when_they_cannot_be_logged(
    client: TestClient, flow: Any, auth: Auth, log_db: Any
) -> None:
    order_id = flow.order()
    log_db.execute(f"DROP TABLE {access_log.ACCESS_LOG.name}")
    try:
        body = is_error(client.get(history_url(order_id), headers=auth("auditor")), 503)
        assert body["code"] == "access_log_unavailable"
        # other roles are not affected
        assert client.get(history_url(order_id), headers=auth("manager")).status_code == 200
    finally:
        access_log.create_tables(log_db)
    assert client.get(history_url(order_id), headers=auth("auditor")).status_code == 200


def test_open_mode_logs_nothing(open_client: TestClient, open_flow: Any, log_db: Any) -> None:
    order_id = open_flow.order(role=None)
    assert open_client.get(history_url(order_id)).status_code == 200
    assert access_log.entries(log_db) == (0, [])


def test_the_endpoints_are_documented(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]
    history_op = paths["/api/v1/orders/{id}/history"]["get"]
    for word in (
        "asOf",
        "version",
        "diff=A,B",
        "from=A&to=B",
        "JSON Pointer",
        "auditor",
        "ETag",
        "304",
    ):
        assert word in history_op["description"], word
    assert {"400", "401", "404"} <= set(history_op["responses"])
    log_op = paths["/api/v1/audit/access-log"]["get"]
    assert "auditor" in log_op["description"].lower()
    assert {"400", "401", "403"} <= set(log_op["responses"])


def test_draft_items_from_the_api_are_stored_sealed(
    client: TestClient, flow: Any, auth: Auth, api_settings: Settings
) -> None:
    """Place names given to the draft item routes are personal data too: sealed in the
    events like those of a whole order, revealed in every answer."""
    draft_id = flow.draft(items=False, customer={"id": "CUST-P", "name": "Pat Doe"})
    items = f"/api/v1/drafts/{draft_id}/items"
    flat = draft_item("1", place=("S1", "Pat's flat, 9 Elm Row"))
    added = flow.post(items, flat, role="agent", status=201)
    assert added.json()["items"][0]["place"]["name"] == "Pat's flat, 9 Elm Row"
    office = {"id": "S2", "name": "Pat's office, 3 Oak St"}
    moved = client.patch(f"{items}/1", headers=auth("agent"), json={"place": office})
    assert moved.status_code == 200, moved.text
    assert moved.json()["items"][0]["place"]["name"] == "Pat's office, 3 Oak St"
    db = open_read_db(api_settings)
    try:
        raw = b"".join(bytes(r[0]) for r in db.fetchall(f"SELECT state FROM {db.events_table}"))
    finally:
        db.close()
    for plain in (b"Pat's flat", b"Pat's office", b"Pat Doe"):
        assert plain not in raw
    shown = client.get(f"/api/v1/drafts/{draft_id}", headers=auth("agent")).json()
    assert shown["items"][0]["place"]["name"] == "Pat's office, 3 Oak St"

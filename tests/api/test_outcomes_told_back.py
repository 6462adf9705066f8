"""Issue 19, point 2, through GET: every outcome fills the TMF641 document's `errorMessage`
(on the item where it is an item's) and the milestones fill `milestone`, valid against the
official v4.1.0 schema; items mirror the order's cancellation states and are restored on a
denial; the cancellation request stays `accepted` while its requester is asked for
information. And a store of the previous release (tests/fixtures/upgrade, written before
outcomes existed) tells the same outcomes after `db init`, in the documents and the rebuilt
notification outbox. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from serviceorders.bootstrap import build_projector, event_mapper, init_database, open_read_db
from serviceorders.projections.maintenance import verify
from serviceorders.settings import Settings

from .test_error_message import spec_errors, tmf, when

V1 = "/api/v1/orders"
CANCELS = "/tmf-api/serviceOrdering/v4/cancelServiceOrder"
MERGE = {"Content-Type": "application/merge-patch+json"}
UPGRADE = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade"


def decide(flow: Any, order_id: str, path: str, role: str, body: Any = None) -> dict[str, Any]:
    headers = {**flow.auth(role), "If-Match": flow.etag(order_id)}
    response = flow.client.post(f"{V1}/{order_id}/{path}", json=body or {}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def items(doc: dict[str, Any]) -> dict[str, str]:
    return {i["id"]: i["state"] for i in doc["serviceOrderItem"]}


def test_milestones_fill_the_document_as_the_order_reaches_them(client, auth, flow):
    order_id = flow.order()
    assert "milestone" not in tmf(client, auth, order_id)  # nothing reached yet
    decide(flow, order_id, "approve", "manager")
    item = f"{V1}/{order_id}/items/1/state"
    flow.post(item, {"state": "inProgress"}, role="fulfilment")
    flow.post(f"{V1}/{order_id}/pointOfNoReturn", {"note": "fibre pulled"}, role="fulfilment")
    flow.post(item, {"state": "completed"}, role="fulfilment")

    doc = tmf(client, auth, order_id)
    reached = doc["milestone"]
    assert [(m["name"], m["status"], m["@type"]) for m in reached] == [
        ("approved", "reached", "ServiceOrderMilestone"),
        ("itemStarted", "reached", "ServiceOrderMilestone"),
        ("pointOfNoReturn", "reached", "ServiceOrderMilestone"),
        ("itemCompleted", "reached", "ServiceOrderMilestone"),
    ]
    assert [[r["itemId"] for r in m.get("serviceOrderItem", [])] for m in reached] == [
        [],
        ["1"],
        [],
        ["1"],
    ]
    assert reached[2]["message"] == "fibre pulled"
    assert when(reached[0]["milestoneDate"]) == when(doc["startDate"])  # the approval
    dates = [when(m["milestoneDate"]) for m in reached]
    assert dates == sorted(dates)
    assert len({m["id"] for m in reached}) == 4 and all(m["description"] for m in reached)
    assert spec_errors(doc) == []


def test_a_refused_proposal_is_told_and_stays_told(client, auth, flow):
    order_id = flow.in_progress()
    patched = client.patch(
        f"/tmf-api/serviceOrdering/v4/serviceOrder/{order_id}",
        json={"description": "a new description"},
        headers={**auth("agent"), **MERGE},
    )
    assert patched.headers["link"].endswith('rel="proposal"'), patched.text
    assert "errorMessage" not in tmf(client, auth, order_id)
    decide(flow, order_id, "proposal/refuse", "manager", {"reason": "not agreed"})

    doc = tmf(client, auth, order_id)
    assert doc["state"] == "inProgress"
    (refusal,) = doc["errorMessage"]
    assert refusal == {
        "code": "proposal_refused",
        "reason": "proposal_refused",
        "message": "not agreed",
        "status": "refused",
        "timestamp": refusal["timestamp"],
        "@type": "ServiceOrderErrorMessage",
    }
    assert all("errorMessage" not in i for i in doc["serviceOrderItem"])  # the order's
    flow.post(f"{V1}/{order_id}/items/1/state", {"state": "completed"}, role="fulfilment")
    assert tmf(client, auth, order_id)["errorMessage"] == [refusal]  # history: kept
    assert spec_errors(doc) == []


def test_a_cancellation_asked_about_and_denied_is_told_and_the_items_restored(client, auth, flow):
    order_id = flow.in_progress()
    flow.post(f"{V1}/{order_id}/items/1/state", {"state": "inProgress"}, role="fulfilment")
    before = items(tmf(client, auth, order_id))
    assert before == {"1": "inProgress", "2": "acknowledged"}
    _, request_id = flow.assessing(order_id)

    assessing = tmf(client, auth, order_id)
    assert assessing["state"] == "assessingCancellation"
    assert items(assessing) == {"1": "assessingCancellation", "2": "assessingCancellation"}
    assert spec_errors(assessing) == []

    flow.post(
        f"{V1}/{order_id}/cancellation/informationRequest",
        {"information": "moving when?"},
        role="manager",
    )
    cancel = client.get(f"{CANCELS}/{request_id}", headers=auth("auditor"))
    assert cancel.status_code == 200 and cancel.json()["state"] == "accepted"
    flow.post(
        f"{V1}/{order_id}/cancellation/information",
        {"information": "next month"},
        role="integrator",
    )
    assert items(tmf(client, auth, order_id))["1"] == "assessingCancellation"
    decide(flow, order_id, "cancellation/deny", "manager", {"reason": "work already started"})

    doc = tmf(client, auth, order_id)
    assert doc["state"] == "inProgress"
    assert items(doc) == before  # restored
    (denial,) = doc["errorMessage"]
    assert (denial["code"], denial["message"], denial["status"]) == (
        "cancellation_denied",
        "work already started",
        "denied",
    )
    cancel = client.get(f"{CANCELS}/{request_id}", headers=auth("auditor")).json()
    assert cancel["state"] == "done"
    assert cancel["completionMessage"] == "cancellation denied: work already started"
    assert spec_errors(doc) == []


def test_an_approved_cancellation_moves_the_items_with_the_order(client, auth, flow):
    order_id, _ = flow.assessing(flow.in_progress())
    decide(flow, order_id, "cancellation/approve", "manager")
    doc = tmf(client, auth, order_id)
    assert doc["state"] == "pendingCancellation"
    assert set(items(doc).values()) == {"pendingCancellation"}
    assert "errorMessage" not in doc
    assert spec_errors(doc) == []


# ------------------------------------------------ a store written before outcomes existed
@pytest.fixture(params=["sqlite", "postgres"])
def previous(
    request: Any, tmp_path: Path, new_pg_database: Callable[..., str]
) -> tuple[str, Settings]:
    if request.param == "sqlite":
        copy = tmp_path / "prev.db"
        shutil.copyfile(UPGRADE / "prev.db", copy)
        url = f"sqlite:///{copy}"
    else:
        url = new_pg_database("so_outcomes", UPGRADE / "prev-postgres.sql.gz", 60)
    return request.param, Settings.from_env({"DATABASE_URL": url})


def test_orders_of_the_previous_release_tell_their_outcomes_after_db_init(
    previous: tuple[str, Settings],
) -> None:
    backend, settings = previous
    orders = json.loads((UPGRADE / "expected.json").read_text("utf-8"))["backends"][backend]
    by_state = {o["show"]["state"]: order_id for order_id, o in orders["orders"].items()}
    rejected_id, completed_id = by_state["rejected"], by_state["completed"]
    init_database(settings)  # rebuilds the outbox (shape 3)
    projector = build_projector(settings)
    try:
        projector.catch_up()
    finally:
        projector.db.close()
    db = open_read_db(settings)
    try:
        assert verify(db, event_mapper(), ["notification_outbox"]) == []

        def document(order_id: str) -> dict[str, Any]:
            row = db.fetchone(
                "SELECT document FROM order_document WHERE order_id = %s",
                (db.adapt(UUID(order_id), "uuid"),),
            )
            assert row is not None
            return db.decode(row[0], "json")

        rejected = document(rejected_id)
        assert [(e["code"], e["message"]) for e in rejected["errorMessage"]] == [
            ("rejected", "bandwidth not offered")  # the reason its OrderRejected carries
        ]
        assert "milestone" not in rejected
        completed = document(completed_id)
        assert "errorMessage" not in completed
        assert [m["name"] for m in completed["milestone"]] == ["approved"] + ["itemCompleted"] * 4

        told = db.fetchall(
            "SELECT event_type, payload FROM notification_outbox WHERE order_id = %s "
            "ORDER BY position, seq",
            (db.adapt(UUID(completed_id), "uuid"),),
        )
        milestones = [db.decode(p, "json") for t, p in told if t == "ServiceOrderMilestoneEvent"]
        assert [len(m["event"]["serviceOrder"]["milestone"]) for m in milestones] == [1, 2, 3, 4, 5]
    finally:
        db.close()

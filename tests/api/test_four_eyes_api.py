"""Issue 17 over REST: a second person on every decision. Each hole the issue lists, tried
as a user would over TMF641 v4 and /api/v1, is now refused or turned into a proposal:

* a v4 PATCH of an approved order is a proposal (200, the order as approved so far, a
  `Link: <...>; rel="proposal"` header), in the review queue with its diff, applied only
  when another manager approves it (its proposer: 403);
* a manager who changed an order in review may not decide it (403);
* a manager who requested a cancellation may not decide it (403); a direct cancellation
  from inProgress is refused (409), a manager's from held too (403, fulfilment's exit only);
* a rejected order is corrected and resubmitted as a new order, linked both ways.

Keys (tests/api/conftest.py): integrator = crm (upstream), agent = alice, manager = bob,
manager2 = carol, fulfilment = fulfil-1, admin = ops (operator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from builders import TYPED, draft_item, tmf_item
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import ApiKey, Authenticator
from serviceorders.bootstrap import build_api_context
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

Auth = Callable[[str | None], dict[str, str]]
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
CANCEL = "/tmf-api/serviceOrdering/v4/cancelServiceOrder"
V1 = "/api/v1/orders"
MERGE = {"Content-Type": "application/merge-patch+json"}
# 100 Mbit/s -> 10 Gbit/s on item 1, and a new site (item 3): the first hole.
UPGRADE = {
    "serviceOrderItem": [
        tmf_item("1", bandwidth=10000, **TYPED),
        tmf_item("3", place=("S2", "Site two"), bandwidth=50, **TYPED),
    ]
}


def error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The TMF Error of a refusal with `status` (and `code`)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["@type"] == "Error" and body["status"] == str(status), body
    if code is not None:
        assert body["code"] == code, body
    return body


def bandwidths(client: TestClient, auth: Auth, order_id: str) -> dict[str, Any]:
    """item id -> bandwidthMbps (None for a router) in the order's v4 document."""
    document = client.get(f"{ORDERS}/{order_id}", headers=auth("agent")).json()
    found = {}
    for item in document["serviceOrderItem"]:
        values = {c["name"]: c["value"] for c in item["service"].get("serviceCharacteristic", [])}
        found[item["id"]] = values.get("bandwidthMbps")
    return found


def queue(client: TestClient, auth: Auth, order_id: str, kind: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/reviewQueue?kind={kind}", headers=auth("manager"))
    assert response.status_code == 200, response.text
    return [e for e in response.json() if e["orderId"] == order_id]


def patch(client: TestClient, auth: Auth, order_id: str, body: Any, role: str) -> Any:
    return client.patch(f"{ORDERS}/{order_id}", json=body, headers={**auth(role), **MERGE})


def decide(
    client: TestClient, flow: Any, order_id: str, path: str, role: str, body: Any = None
) -> Any:
    """POST /api/v1/orders/{id}/<path> with the order's current ETag, as `role`."""
    headers = {**flow.auth(role), "If-Match": flow.etag(order_id)}
    return client.post(f"{V1}/{order_id}/{path}", json=body or {}, headers=headers)


# ------------------------------------------------------------- revisions after approval
def test_a_v4_patch_after_approval_is_a_proposal_another_manager_decides(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    order_id = flow.order()
    assert decide(client, flow, order_id, "approve", "manager").status_code == 200
    before = client.get(f"{ORDERS}/{order_id}", headers=auth("agent"))
    assert before.json()["state"] == "inProgress"

    # carol (a manager) proposes the upgrade and a new site over v4
    patched = patch(client, auth, order_id, UPGRADE, "manager2")
    assert patched.status_code == 200, patched.text
    assert patched.json()["state"] == "inProgress"
    assert patched.json()["serviceOrderItem"] == before.json()["serviceOrderItem"]
    assert bandwidths(client, auth, order_id) == {"1": 100, "2": None}  # nothing applied
    link = patched.headers["link"]
    assert link.endswith(f'/api/v1/orders/{order_id}/proposal>; rel="proposal"'), link
    href = link[1 : link.index(">")]

    # the proposal, followed from the header: who, and the change against the current items
    proposal = client.get(href, headers=auth("manager"))
    assert proposal.status_code == 200, proposal.text
    shown = proposal.json()
    assert shown["proposedBy"] == {"id": "carol", "role": "manager"}
    assert shown["orderState"] == "inProgress" and shown["heldForProposal"] is False
    changes = {c["path"]: c for c in shown["changes"]}
    assert changes["items[1].characteristics.bandwidthMbps"] == {
        "path": "items[1].characteristics.bandwidthMbps",
        "kind": "changed",
        "current": 100,
        "proposed": 10000,
    }
    assert changes["items[3]"]["kind"] == "added" and changes["items[3]"]["current"] is None
    assert changes["items[3]"]["proposed"]["place"]["id"] == "S2"
    assert proposal.headers["etag"] == flow.etag(order_id)

    # in the review queue as its own kind, with the same diff
    [entry] = queue(client, auth, order_id, "proposal")
    assert (entry["kind"], entry["submittedBy"], entry["proposalId"]) == (
        "proposal",
        "carol",
        shown["id"],
    )
    assert entry["changes"] == shown["changes"]
    assert queue(client, auth, order_id, "approval") == []

    # nobody approves their own proposal; an agent decides nothing
    error(decide(client, flow, order_id, "proposal/approve", "manager2"), 403, "not_permitted")
    error(decide(client, flow, order_id, "proposal/approve", "agent"), 403, "not_permitted")
    assert bandwidths(client, auth, order_id) == {"1": 100, "2": None}

    # another manager approves it: applied, out of the queue, no proposal left
    approved = decide(client, flow, order_id, "proposal/approve", "manager", {"note": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "inProgress"
    assert bandwidths(client, auth, order_id) == {"1": 10000, "2": None, "3": 50}
    assert queue(client, auth, order_id, "proposal") == []
    error(client.get(href, headers=auth("manager")), 404, "not_found")
    assert flow.view(order_id)["proposal"] is None
    events = client.get(f"{V1}/{order_id}/events", headers=auth("admin")).json()
    assert [e["type"] for e in events][-2:] == ["RevisionProposed", "ProposalApproved"]


def test_one_proposal_at_a_time_refused_and_withdrawn_proposals_change_nothing(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    order_id = flow.in_progress()
    description = {"description": "a new description"}
    assert patch(client, auth, order_id, description, "agent").status_code == 200
    # a second change while one waits: 409, nothing applied
    error(patch(client, auth, order_id, UPGRADE, "manager2"), 409, "illegal_transition")
    # the point of no return cannot be reached while one waits
    error(
        flow.client.post(f"{V1}/{order_id}/pointOfNoReturn", json={}, headers=auth("fulfilment")),
        409,
        "illegal_transition",
    )

    # refusing needs a reason, and If-Match
    error(decide(client, flow, order_id, "proposal/refuse", "manager"), 400, "invalid_request")
    no_etag = client.post(
        f"{V1}/{order_id}/proposal/refuse", json={"reason": "no"}, headers=auth("manager")
    )
    error(no_etag, 428, "precondition_required")
    refused = decide(client, flow, order_id, "proposal/refuse", "manager", {"reason": "not agreed"})
    assert refused.status_code == 200, refused.text
    document = client.get(f"{ORDERS}/{order_id}", headers=auth("agent")).json()
    assert document["description"] == "internet and a router"
    error(decide(client, flow, order_id, "proposal/approve", "manager"), 409, "illegal_transition")

    # a new proposal, withdrawn by its proposer (If-Match optional)
    patched = patch(client, auth, order_id, UPGRADE, "agent")
    assert patched.headers["link"].endswith('rel="proposal"')
    withdrawn = client.post(f"{V1}/{order_id}/proposal/withdraw", headers=auth("agent"))
    assert withdrawn.status_code == 200, withdrawn.text
    assert bandwidths(client, auth, order_id) == {"1": 100, "2": None}
    assert queue(client, auth, order_id, "proposal") == []
    error(client.get(f"{V1}/{order_id}/proposal", headers=auth("agent")), 404, "not_found")


def test_before_approval_a_patch_is_an_ordinary_revision_without_a_link(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    order_id = flow.order()
    patched = patch(client, auth, order_id, UPGRADE, "agent")
    assert patched.status_code == 200, patched.text
    assert "link" not in patched.headers
    assert bandwidths(client, auth, order_id) == {"1": 10000, "2": None, "3": 50}
    assert queue(client, auth, order_id, "proposal") == []


@pytest.fixture
def policy_client(api_settings: Settings, keys: dict[str, ApiKey]) -> Iterator[TestClient]:
    """The API with SERVICEORDERS_HOLD_ON_PROPOSAL=yes and the description exempt."""
    settings = api_settings.model_copy(
        update={"hold_on_proposal": True, "proposal_direct_fields": ("description",)}
    )
    ctx = build_api_context(settings, Authenticator(list(keys.values())))
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client


def test_the_policy_settings_hold_the_order_and_exempt_header_fields(
    policy_client: TestClient, auth: Auth, flow_factory: Callable[[TestClient], Any]
) -> None:
    client, flow = policy_client, flow_factory(policy_client)
    order_id = flow.in_progress()
    # an exempt header attribute is applied at once (no proposal, no Link)
    direct = patch(client, auth, order_id, {"description": "exempt"}, "agent")
    assert direct.status_code == 200 and "link" not in direct.headers
    assert direct.json()["description"] == "exempt"
    # a change of items waits, and the order is held meanwhile
    held = patch(client, auth, order_id, UPGRADE, "agent")
    assert held.status_code == 200 and held.json()["state"] == "held"
    assert held.headers["link"].endswith('rel="proposal"')
    assert client.get(f"{V1}/{order_id}/proposal", headers=auth("agent")).json()["heldForProposal"]
    # decided: it resumes with the change applied
    approved = decide(client, flow, order_id, "proposal/approve", "manager")
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "inProgress"
    assert bandwidths(client, auth, order_id) == {"1": 10000, "2": None, "3": 50}


@pytest.fixture
def flow_factory(auth: Auth, request: pytest.FixtureRequest) -> Callable[[TestClient], Any]:
    """A `Flow` (tests/api/conftest.py) on another client."""
    flow_class = type(request.getfixturevalue("flow"))
    return lambda client: flow_class(client, auth)


# ------------------------------------------------------------------------- four-eyes
def test_a_manager_who_changed_the_order_in_review_cannot_decide_it(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    order_id = flow.order()
    patched = patch(client, auth, order_id, {"description": "bob was here"}, "manager")
    assert patched.status_code == 200 and patched.json()["state"] == "acknowledged"
    error(decide(client, flow, order_id, "approve", "manager"), 403, "not_permitted")
    error(
        decide(client, flow, order_id, "reject", "manager", {"reason": "mine"}),
        403,
        "not_permitted",
    )
    assert decide(client, flow, order_id, "approve", "manager2").status_code == 200


def test_whoever_drafted_or_added_a_line_cannot_decide_the_order(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    # bob drafts, alice adds the lines and submits: neither may decide
    draft_id = flow.draft(items=False, role="manager")
    for item in (draft_item("1"), draft_item("2", "managed-router", dependsOn=["1"])):
        flow.post(f"/api/v1/drafts/{draft_id}/items", item, "agent", status=201)
    flow.post(f"/api/v1/drafts/{draft_id}/submit", {}, "agent")
    error(decide(client, flow, draft_id, "approve", "manager"), 403, "not_permitted")
    assert decide(client, flow, draft_id, "approve", "manager2").status_code == 200


def test_a_manager_who_requested_a_cancellation_cannot_decide_it(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    order_id = flow.in_progress()
    requested = client.post(
        CANCEL,
        json={"serviceOrder": {"id": order_id}, "cancellationReason": "customer left"},
        headers=auth("manager"),
    )
    assert requested.status_code == 201, requested.text
    error(decide(client, flow, order_id, "cancellation/approve", "manager"), 403, "not_permitted")
    error(
        decide(client, flow, order_id, "cancellation/deny", "manager", {"reason": "mine"}),
        403,
        "not_permitted",
    )
    approved = decide(client, flow, order_id, "cancellation/approve", "manager2")
    assert approved.status_code == 200 and approved.json()["state"] == "pendingCancellation"
    # carried out by fulfilment (or a manager: the decision was a second person's)
    done = client.post(f"{V1}/{order_id}/cancel", json={}, headers=auth("manager"))
    assert done.status_code == 200 and done.json()["state"] == "cancelled", done.text


def test_a_direct_cancellation_is_only_fulfilments_exit_from_held_or_pending(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    active = flow.in_progress()
    for role in ("manager", "fulfilment", "admin"):
        refused = client.post(f"{V1}/{active}/cancel", json={}, headers=auth(role))
        error(refused, 409, "illegal_transition")
    held = flow.held()
    error(client.post(f"{V1}/{held}/cancel", json={}, headers=auth("manager")), 403)
    cancelled = client.post(
        f"{V1}/{held}/cancel", json={"reason": "no fibre"}, headers=auth("fulfilment")
    )
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


# ------------------------------------------------------------- correct and resubmit
def test_a_rejected_order_is_corrected_and_resubmitted_linked_both_ways(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    rejected = flow.order(external_id="EXT-R1")
    decide(client, flow, rejected, "reject", "manager", {"reason": "wrong site"})

    body = {
        "externalId": "EXT-R1-b",
        "header": {"description": "corrected", "customer": {"id": "CUST-1", "name": "Acme AG"}},
        "items": [
            {
                "id": "1",
                "specificationId": "internet-access",
                "place": {"id": "S9"},
                "characteristics": {"bandwidthMbps": 200, "accessType": "fibre"},
            }
        ],
    }
    made = client.post(f"{V1}/{rejected}/resubmit", json=body, headers=auth("agent"))
    assert made.status_code == 201, made.text
    draft = made.json()
    new_id = draft["id"]
    assert made.headers["location"].endswith(f"/api/v1/drafts/{new_id}")
    assert (draft["state"], draft["externalId"], draft["description"]) == (
        "draft",
        "EXT-R1-b",
        "corrected",
    )
    assert draft["customer"] == {"id": "CUST-1", "name": "Acme AG"}
    assert draft["orderRelationship"] == [{"id": rejected, "relationshipType": "resubmits"}]
    items = {i["id"]: i for i in draft["items"]}
    assert items["1"]["characteristics"] == {"bandwidthMbps": 200, "accessType": "fibre"}
    assert items["1"]["place"]["id"] == "S9"
    assert items["2"]["specificationId"] == "managed-router"  # carried from the rejected one

    # the rejected order names it, and keeps its state and history
    old = client.get(f"{ORDERS}/{rejected}", headers=auth("agent")).json()
    assert old["state"] == "rejected"
    assert {"id": new_id, "relationshipType": "resubmittedAs"} in [
        {k: r[k] for k in ("id", "relationshipType")} for r in old["orderRelationship"]
    ]

    # the agent submits the corrected draft; the new order's v4 document links back
    flow.post(f"/api/v1/drafts/{new_id}/submit", {}, "agent")
    new = client.get(f"{ORDERS}/{new_id}", headers=auth("agent")).json()
    assert new["state"] == "acknowledged" and new["externalId"] == "EXT-R1-b"
    assert {"id": rejected, "relationshipType": "resubmits"} in [
        {k: r[k] for k in ("id", "relationshipType")} for r in new["orderRelationship"]
    ]
    # whoever resubmitted and submitted it may not decide it
    error(decide(client, flow, new_id, "approve", "agent"), 403)


def test_an_upstream_resubmits_straight_into_review_and_refusals_are_tmf_errors(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    rejected = flow.order()
    decide(client, flow, rejected, "reject", "manager", {"reason": "bandwidth"})
    made = client.post(
        f"{V1}/{rejected}/resubmit",
        json={"externalId": "EXT-R2", "submit": True},
        headers=auth("integrator"),
    )
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "acknowledged"
    assert made.headers["location"].endswith(f"{ORDERS}/{made.json()['id']}")
    assert queue(client, auth, made.json()["id"], "approval")

    # the same external id again: taken (409); an order not rejected: 409; bad body: 400
    again = client.post(
        f"{V1}/{rejected}/resubmit",
        json={"externalId": "EXT-R2", "submit": True},
        headers=auth("integrator"),
    )
    error(again, 409)
    active = flow.in_progress()
    error(client.post(f"{V1}/{active}/resubmit", json={}, headers=auth("agent")), 409)
    error(
        client.post(f"{V1}/{rejected}/resubmit", json={"items": 3}, headers=auth("agent")),
        400,
        "invalid_request",
    )
    error(client.post(f"{V1}/{rejected}/resubmit", json={}, headers=auth("fulfilment")), 403)


def test_a_proposed_customer_name_shows_revealed_in_the_proposal_and_the_queue(
    client: TestClient, auth: Auth, flow: Any
) -> None:
    """Personal values are sealed in the events; the diff shows them as every read does."""
    from serviceorders.domain.privacy import TOKEN_PREFIX

    order_id = flow.in_progress()
    parties = {"relatedParty": [{"id": "CUST-1", "name": "Pat Example", "role": "customer"}]}
    assert patch(client, auth, order_id, parties, "agent").headers["link"]
    shown = client.get(f"{V1}/{order_id}/proposal", headers=auth("manager")).json()
    [change] = shown["changes"]
    assert change["path"] == "related_parties" and change["kind"] == "changed"
    assert change["current"][0]["name"] == "Acme"
    assert change["proposed"][0]["name"] == "Pat Example"
    [entry] = queue(client, auth, order_id, "proposal")
    assert entry["changes"] == shown["changes"]
    assert TOKEN_PREFIX not in str(shown) and TOKEN_PREFIX not in str(entry)
    # in the event log the name is sealed
    app = client.app.state.ctx.app  # type: ignore[attr-defined]
    stored = app.recorder.select_events(app.get_order(UUID(order_id)).id)
    assert b"Pat Example" not in b"".join(bytes(e.state) for e in stored)

"""Re-sends over REST never drop an order (issue 17, deliverable 4; docs/lifecycle.md,
"Re-sends and external ids"): POST /serviceOrder with an `externalId` (or an
`Idempotency-Key`) already used answers with the first order when the content is the same,
and refuses other content with a 409 TMF Error naming the key and the paths that differ,
never their values. An `externalId` held by a draft or by an archived order is a 409 too
(it was a 404 "no service order"). Personal data is sealed (the application's vault, as in
production): the content is compared in clear. On both backends; the race on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import httpx
import pytest
from serviceorders.bootstrap import build_application
from serviceorders.domain.privacy import TOKEN_PREFIX
from serviceorders.settings import Settings

ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"


def _stored_bytes(settings: Settings, order_id: str) -> bytes:
    app = build_application(settings)
    try:
        return b"".join(s.state for s in app.recorder.select_events(UUID(order_id)))
    finally:
        app.close()


def _event_count(settings: Settings, order_id: str) -> int:
    app = build_application(settings)
    try:
        return len(app.recorder.select_events(UUID(order_id)))
    finally:
        app.close()


def _assert_conflict(response: Any, key: str, paths: list[str], hidden: list[str]) -> None:
    assert response.status_code == 409, response.text
    error = response.json()
    assert error["@type"] == "Error" and error["status"] == "409"
    assert error["code"] == error["reason"] == "resend_conflict"
    message = error["message"]
    assert key in message
    assert f"(differing: {', '.join(paths)})" in message, message
    for value in hidden:
        assert value not in message, (value, message)


def test_the_same_external_id_and_body_gets_the_first_order(client, auth, order_body, api_settings):
    first = client.post(ORDERS, json=order_body("R-1"), headers=auth("integrator"))
    again = client.post(ORDERS, json=order_body("R-1"), headers=auth("integrator"))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["serviceOrderItem"] == first.json()["serviceOrderItem"]
    # Sealed in the store (random tokens, one per send): compared in clear all the same.
    stored = _stored_bytes(api_settings, first.json()["id"])
    assert b"Acme" not in stored and TOKEN_PREFIX.encode() in stored
    assert _event_count(api_settings, first.json()["id"]) == 2


def test_other_content_under_an_external_id_is_a_409_naming_the_paths(
    client, auth, order_body, api_settings
):
    first = client.post(ORDERS, json=order_body("R-2"), headers=auth("integrator")).json()
    other = order_body("R-2", bandwidth=1000, description="Moved to Zurich")
    other["relatedParty"][0]["name"] = "Globex"
    answer = client.post(ORDERS, json=other, headers=auth("integrator"))
    _assert_conflict(
        answer,
        "externalId 'R-2'",
        ["description", "related_parties[0].name", "items[1].characteristics.bandwidthMbps"],
        ["1000", "Zurich", "Globex", "Acme", "internet and a router"],
    )
    # Nothing of it was written, and the first order reads as before.
    assert _event_count(api_settings, first["id"]) == 2
    got = client.get(f"{ORDERS}/{first['id']}", headers=auth("auditor")).json()
    assert got["description"] == "internet and a router"
    listed = client.get(ORDERS, params={"externalId": "R-2"}, headers=auth("auditor"))
    assert listed.headers["x-total-count"] == "1"
    # The same body again still gets the first order.
    again = client.post(ORDERS, json=order_body("R-2"), headers=auth("integrator"))
    assert again.status_code == 201 and again.json()["id"] == first["id"]


def test_an_idempotency_key_with_other_content_is_a_409(client, auth, order_body):
    keyed = {**auth("integrator"), "Idempotency-Key": "retry-42"}
    one = client.post(ORDERS, json=order_body(), headers=keyed)
    two = client.post(ORDERS, json=order_body(), headers=keyed)
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] == two.json()["id"]
    refused = client.post(ORDERS, json=order_body(place="S2"), headers=keyed)
    _assert_conflict(
        refused,
        "Idempotency-Key",
        ["items[1].place.id", "items[2].place.id"],
        ["S2", "retry-42"],
    )
    # The key is the caller's: another caller's same key is another order.
    theirs = client.post(
        ORDERS,
        json=order_body(place="S2"),
        headers={**auth("admin"), "Idempotency-Key": "retry-42"},
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != one.json()["id"]


def test_an_external_id_held_by_a_draft_is_a_409_saying_so(client, auth, flow, order_body):
    draft_id = flow.draft(externalId="R-DRAFT")
    answer = client.post(ORDERS, json=order_body("R-DRAFT"), headers=auth("integrator"))
    assert answer.status_code == 409, answer.text
    error = answer.json()
    assert error["code"] == "external_id_taken"
    assert "externalId 'R-DRAFT' is held by a draft" in error["message"]
    assert draft_id in error["message"]
    # The draft is untouched: still a draft with its two items.
    view = flow.view(draft_id)
    assert view["state"] == "draft" and len(view["items"]) == 2


def test_an_external_id_held_by_an_archived_order_is_a_409(client, auth, flow, order_body):
    order_id = flow.rejected(external_id="R-OLD")
    deleted = client.delete(f"{ORDERS}/{order_id}", headers=auth("admin"))
    assert deleted.status_code == 204, deleted.text
    answer = client.post(ORDERS, json=order_body("R-OLD"), headers=auth("integrator"))
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "external_id_taken"
    assert "held by an archived order" in answer.json()["message"]


# ------------------------------------------------------------------------ the race
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
@pytest.mark.parametrize("key", ["externalId", "Idempotency-Key"])
def test_concurrent_posts_of_two_bodies_create_one_order(
    live_server, api_settings, order_body, key
):
    """N clients POST the same key at once, half with one body and half with another:
    exactly one order, holding one of the two bodies; every request with that body gets
    it (201), every request with the other body a 409."""
    count = 8
    bodies = {
        "a": order_body("RACE-1" if key == "externalId" else None),
        "b": order_body("RACE-1" if key == "externalId" else None, bandwidth=1000),
    }
    headers = {"Idempotency-Key": "race-1"} if key == "Idempotency-Key" else {}
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count

    def send(n: int) -> None:
        with httpx.Client(base_url=live_server, timeout=60) as http:
            barrier.wait(timeout=30)
            answers[n] = http.post(ORDERS, json=bodies["ab"[n % 2]], headers=headers)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    created = [n for n, a in enumerate(answers) if a.status_code == 201]
    assert created, [a.text[:200] for a in answers]
    winner = "ab"[created[0] % 2]
    ids = {answers[n].json()["id"] for n in created}
    assert len(ids) == 1
    (order_id,) = ids
    for n, a in enumerate(answers):
        if "ab"[n % 2] == winner:
            assert a.status_code == 201 and a.json()["id"] == order_id, a.text
        else:
            assert a.status_code == 409 and a.json()["code"] == "resend_conflict", a.text
            assert "items[1].characteristics.bandwidthMbps" in a.json()["message"]
    with httpx.Client(base_url=live_server, timeout=30) as http:
        listed = http.get(ORDERS, params={"limit": 10})
        stored = http.get(f"{ORDERS}/{order_id}").json()
    assert listed.headers["x-total-count"] == "1"
    bandwidth = {
        c["name"]: c["value"]
        for c in stored["serviceOrderItem"][0]["service"]["serviceCharacteristic"]
    }["bandwidthMbps"]
    assert bandwidth == (100 if winner == "a" else 1000)
    assert _event_count(api_settings, order_id) == 2


def test_a_rich_order_sent_again_is_the_same_order(client, auth, order_body, api_settings):
    """Everything a body may carry survives the store's round trip as the same content (no
    false conflict): dates with offsets, notes with dates, nested, float and
    boolean characteristic values, several parties, relationships, unicode."""
    body = order_body(
        "R-RICH",
        requestedStartDate="2027-03-01T08:00:00+01:00",
        requestedCompletionDate="2027-04-01T17:30:00-05:00",
        notificationContact="noc@example.com",
        note=[
            {"text": "call first ☎", "author": "crm", "date": "2026-12-01T10:00:00.123Z"},
            {"text": "gate code 1234"},
        ],
        orderRelationship=[{"id": "PO-9", "relationshipType": "cross-ref"}],
    )
    body["relatedParty"].append({"id": "U-7", "name": "Zoë Ødegård", "role": "requester"})
    body["serviceOrderItem"][0]["service"]["serviceCharacteristic"] += [
        {"name": "vlans", "value": [10, 20.5, {"tagged": True, "name": "mgmt"}]},
        {"name": "burst", "value": 1.5},
        {"name": "ipv6", "value": False},
    ]
    first = client.post(ORDERS, json=body, headers=auth("integrator"))
    again = client.post(ORDERS, json=body, headers=auth("integrator"))
    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"], again.text
    assert _event_count(api_settings, first.json()["id"]) == 2
    body["note"][1]["text"] = "gate code 4321"
    changed = client.post(ORDERS, json=body, headers=auth("integrator"))
    _assert_conflict(changed, "externalId 'R-RICH'", ["notes[1].text"], ["4321", "1234"])

"""Issue 15's small findings, against a real `serviceorders api` process on PostgreSQL
(docs/security.md, "Numbers", "Host header and hrefs", "One ETag per decision",
"Idempotency-Key").

* NaN, Infinity, -Infinity and 1e400 are refused with 400 by every write route that takes a
  body (enumerated from the running server's OpenAPI document, so a new route is covered
  without editing this test), and nothing is written.
* `Location` and `href` never come from the `Host` header.
* A decision's `If-Match` takes one ETag: a list is refused (400), nothing is decided.
* Two `Idempotency-Key`s that share their first 200 characters never give the same order.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from builders import order_body

EXE = shutil.which("serviceorders")
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.fixture
def server(
    pg_database: Any, pg_cleaner: Callable[[], None], start_api: Callable[..., Any]
) -> tuple[str, int, Callable[[], str]]:
    """`serviceorders api` (no keys: full access on loopback) on a free port."""
    pg_cleaner()
    api = start_api(
        pg_database.url(),
        env={"SERVICEORDERS_FOUR_EYES": "no"},
        unset=("SERVICEORDERS_API_KEYS", "SERVICEORDERS_PUBLIC_URL"),
    )
    return api.base, api.port, api.output


def _events(pg_database: Any) -> int:
    with pg_database.connect() as conn:
        return conn.execute("SELECT count(*) FROM serviceorders_events").fetchone()[0]


def _write_routes(base: str) -> list[tuple[str, str]]:
    """(method, path template) of every write operation that takes a body."""
    spec = httpx.get(base + "/openapi.json", timeout=10).json()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put", "patch", "delete") and "requestBody" in operation
    ]


def test_non_finite_numbers_are_refused_by_every_write_route_before_any_write(
    server: tuple[str, int, Callable[[], str]], pg_database: Any
) -> None:
    base, _, output = server
    http = httpx.Client(base_url=base, timeout=30)
    order = http.post(ORDERS, json=order_body("nan-target"))
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    draft = http.post("/api/v1/drafts", json={"priority": "2"})
    assert draft.status_code == 201, draft.text
    draft_id = draft.json()["id"]
    item = http.post(
        f"/api/v1/drafts/{draft_id}/items",
        json={
            "id": "1",
            "action": "add",
            "specificationId": "internet-access",
            "characteristics": {"bandwidthMbps": 100},
        },
    )
    assert item.status_code == 201, item.text
    routes = _write_routes(base)
    # The routes the issue names are among them (the enumeration itself works).
    assert ("POST", ORDERS) in routes and ("POST", "/api/v1/drafts/{id}/items") in routes
    assert len(routes) >= 15, routes
    before = _events(pg_database)
    etag = http.get(f"/api/v1/orders/{order_id}").headers["etag"]
    for method, template in routes:
        path = template.replace("{itemId}", "1").replace(
            "{id}", draft_id if template.startswith("/api/v1/drafts/") else order_id
        )
        for number in NON_FINITE:
            # A plausible body, the number in a field the route reads and one it does not.
            raw = (
                '{"note": "n", "reason": "r", "text": "t", "information": "i", '
                '"state": "completed", "priority": "2", "description": "d", '
                f'"value": {number}, "characteristics": {{"bandwidthMbps": {number}}}, '
                f'"serviceCharacteristic": [{{"name": "bandwidthMbps", "value": {number}}}],'
                ' "serviceOrderItem": [], "callback": "http://127.0.0.1:9/x"}'
            )
            answer = http.request(
                method,
                path,
                content=raw.encode(),
                headers={"content-type": "application/json", "if-match": etag},
            )
            assert answer.status_code == 400, (method, path, number, answer.text, output())
            body = answer.json()
            assert body["@type"] == "Error" and body["code"] == "invalid_json", body
            assert "not a finite number" in body["message"], body
    assert _events(pg_database) == before


def test_href_and_location_never_come_from_the_host_header(
    server: tuple[str, int, Callable[[], str]],
) -> None:
    base, port, _ = server
    http = httpx.Client(base_url=base, timeout=30)
    created = http.post(ORDERS, json=order_body(), headers={"Host": "evil.example:666"})
    assert created.status_code == 201, created.text
    bound = f"http://127.0.0.1:{port}"
    assert created.headers["location"].startswith(bound + ORDERS + "/"), created.headers
    assert created.json()["href"] == f"{bound}{ORDERS}/{created.json()['id']}"
    draft = http.post("/api/v1/drafts", json={}, headers={"Host": "evil.example"})
    assert draft.status_code == 201, draft.text
    assert draft.headers["location"] == f"{bound}/api/v1/drafts/{draft.json()['id']}"
    listed = http.get(ORDERS, headers={"Host": "evil.example"})
    assert listed.status_code == 200
    assert "evil.example" not in listed.text
    assert all(o["href"].startswith(bound) for o in listed.json())


def test_a_decision_takes_one_etag_not_a_list(
    server: tuple[str, int, Callable[[], str]], pg_database: Any
) -> None:
    base, _, _ = server
    http = httpx.Client(base_url=base, timeout=30)
    created = http.post(ORDERS, json=order_body())
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    etag = http.get(f"/api/v1/orders/{order_id}").headers["etag"]
    before = _events(pg_database)
    every = ", ".join(f'"{v}"' for v in range(0, 20))
    for if_match in (every, f'{etag}, "999"', f'"999", {etag}', f"{etag}, *", f"*, {etag}"):
        answer = http.post(
            f"/api/v1/orders/{order_id}/approve", json={}, headers={"If-Match": if_match}
        )
        assert answer.status_code == 400, (if_match, answer.text)
        assert answer.json()["code"] == "invalid_if_match", answer.text
        assert "exactly one ETag" in answer.json()["message"]
    assert (
        http.post(
            f"/api/v1/orders/{order_id}/approve", json={}, headers={"If-Match": "*"}
        ).status_code
        == 428
    )
    assert _events(pg_database) == before
    # The one ETag the decider saw decides.
    approved = http.post(f"/api/v1/orders/{order_id}/approve", json={}, headers={"If-Match": etag})
    assert approved.status_code == 200, approved.text
    assert _events(pg_database) > before


def test_two_long_idempotency_keys_with_a_common_start_never_give_the_same_order(
    server: tuple[str, int, Callable[[], str]],
) -> None:
    base, _, _ = server
    http = httpx.Client(base_url=base, timeout=30)
    common = "k" * 200
    first = http.post(ORDERS, json=order_body(), headers={"Idempotency-Key": common})
    assert first.status_code == 201, first.text
    # Longer than the bound: refused naming the header, never cut to the first 200.
    second = http.post(ORDERS, json=order_body(), headers={"Idempotency-Key": common + "-b"})
    assert second.status_code in (400, 431), second.text
    assert "Idempotency-Key" in second.json()["message"]
    # Within the bound and different after a common start: two orders.
    a = http.post(ORDERS, json=order_body(), headers={"Idempotency-Key": "k" * 199 + "a"})
    b = http.post(ORDERS, json=order_body(), headers={"Idempotency-Key": "k" * 199 + "b"})
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert len({first.json()["id"], a.json()["id"], b.json()["id"]}) == 3
    # The same key again: the same order (the key still works as one).
    again = http.post(ORDERS, json=order_body(), headers={"Idempotency-Key": "k" * 199 + "a"})
    assert again.json()["id"] == a.json()["id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", again.json()["id"])

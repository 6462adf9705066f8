"""The API's security, checked against docs/security.md.

The role-by-operation matrix is parsed out of docs/security.md and walked against the API:
for every operation the test puts an order (draft, listener, ...) into a state where the
operation is legal, then calls it with each role's key (and with none) and expects exactly
what the document says: `allowed` = 2xx, `403`, `401`. A disagreement fails the test, as
does a REST operation the matrix misses or a matrix row the API does not serve.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from builders import REVIEW_QUEUE_FILTERS, TMF_ORDER_FILTERS
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from serviceorders.domain.commands import ImportService
from serviceorders.domain.values import Channel, CommandContext, Role, ServiceRecord
from starlette.routing import Route

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
TMF641 = "/tmf-api/serviceOrdering/v4"
TMF633 = "/tmf-api/serviceCatalogManagement/v4"
TMF638 = "/tmf-api/serviceInventory/v4"
ROLES = ("integrator", "agent", "manager", "fulfilment", "auditor", "admin", "no key")
UNAUTHENTICATED = (
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/docs/oauth2-redirect",
)


# ------------------------------------------------------------------ the matrix
def parse_matrix(text: str) -> dict[str, dict[str, str]]:
    """`METHOD /absolute/path` -> {role column: allowed | 403 | 401} from the doc's table."""
    section = text.split("## Role \u00d7 operation matrix", 1)[1]
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            if header is not None and rows:
                break  # the table ended
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells[0]) <= set("-: "):
            continue
        operation = cells[0].strip("`")
        method, path = operation.split(" ", 1)
        rows[f"{method} {absolute(path)}"] = dict(zip(header[1:], cells[1:], strict=True))
    assert header is not None and tuple(header[1:]) == ROLES, header
    return rows


def absolute(path: str) -> str:
    if path.startswith(("/serviceOrder", "/cancelServiceOrder", "/hub")):
        return TMF641 + path
    if path.startswith("/serviceSpecification"):
        return TMF633 + path
    return path


MATRIX = parse_matrix(DOC.read_text(encoding="utf-8"))


def served_operations(client: TestClient) -> set[str]:
    """Every operation the app serves: its OpenAPI paths plus the documentation pages."""
    app = client.app
    schema = app.openapi()  # type: ignore[attr-defined]
    served = {
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    pages = {
        f"GET {r.path}"
        for r in app.routes  # type: ignore[attr-defined]
        if isinstance(r, Route) and not isinstance(r, APIRoute)
    }
    return served | pages


def test_the_matrix_is_complete_and_well_formed(client: TestClient) -> None:
    served = served_operations(client)
    missing = served - set(MATRIX)
    assert not missing, f"REST operations missing from the matrix in docs/security.md: {missing}"
    not_served = set(MATRIX) - served
    hub_pending = {op for op in not_served if "/hub" in op}  # the hub helper's routes
    assert not_served == hub_pending, f"matrix rows the API does not serve: {not_served}"
    for operation, cells in MATRIX.items():
        assert set(cells.values()) <= {"allowed", "403", "401"}, (operation, cells)
        if operation.split(" ", 1)[1] in UNAUTHENTICATED:
            assert set(cells.values()) == {"allowed"}, operation
        else:
            assert cells["no key"] == "401", operation
            assert "401" not in [cells[r] for r in ROLES[:-1]], operation


def test_the_matrix_follows_the_domain_permissions() -> None:
    """Each write row agrees with lifecycle.PERMISSIONS (integrator=upstream, admin=operator)."""
    from serviceorders.api.auth import API_ROLES as roles
    from serviceorders.domain.lifecycle import PERMISSIONS, Action

    actions = {
        f"POST {TMF641}/serviceOrder": Action.RECEIVE,
        f"PATCH {TMF641}/serviceOrder/{{id}}": Action.REVISE,
        f"POST {TMF641}/cancelServiceOrder": Action.REQUEST_CANCELLATION,
        "POST /api/v1/drafts": Action.DRAFT,
        "POST /api/v1/drafts/{id}/items": Action.ADD_LINE,
        "PATCH /api/v1/drafts/{id}/items/{itemId}": Action.CONFIGURE_LINE,
        "DELETE /api/v1/drafts/{id}/items/{itemId}": Action.REMOVE_LINE,
        "POST /api/v1/drafts/{id}/submit": Action.SUBMIT,
        "DELETE /api/v1/drafts/{id}": Action.DELETE,
        "POST /api/v1/orders/{id}/approve": Action.APPROVE,
        "POST /api/v1/orders/{id}/reject": Action.REJECT,
        "POST /api/v1/orders/{id}/cancellation/approve": Action.APPROVE_CANCELLATION,
        "POST /api/v1/orders/{id}/cancellation/deny": Action.DENY_CANCELLATION,
        "POST /api/v1/orders/{id}/cancellation/informationRequest": (
            Action.REQUEST_CANCELLATION_INFORMATION
        ),
        "POST /api/v1/orders/{id}/cancellation/information": (
            Action.PROVIDE_CANCELLATION_INFORMATION
        ),
        "POST /api/v1/orders/{id}/proposal/approve": Action.APPROVE_PROPOSAL,
        "POST /api/v1/orders/{id}/proposal/refuse": Action.REFUSE_PROPOSAL,
        "POST /api/v1/orders/{id}/proposal/withdraw": Action.WITHDRAW_PROPOSAL,
        "POST /api/v1/orders/{id}/resubmit": Action.RESUBMIT,
        "POST /api/v1/orders/{id}/items/{itemId}/state": Action.CHANGE_ITEM_STATE,
        "POST /api/v1/orders/{id}/hold": Action.HOLD,
        "POST /api/v1/orders/{id}/resume": Action.RESUME,
        "POST /api/v1/orders/{id}/informationRequest": Action.REQUEST_INFORMATION,
        "POST /api/v1/orders/{id}/information": Action.PROVIDE_INFORMATION,
        "POST /api/v1/orders/{id}/pointOfNoReturn": Action.REACH_POINT_OF_NO_RETURN,
        "POST /api/v1/orders/{id}/cancel": Action.CANCEL,
        "POST /api/v1/orders/{id}/notes": Action.ADD_NOTE,
    }
    for operation, action in actions.items():
        for name, role in roles.items():
            expected = "allowed" if action in PERMISSIONS[role] else "403"
            assert MATRIX[operation][name] == expected, (operation, name)
    # Archiving a final order: the DELETE permission, but agents delete drafts only.
    for name, role in roles.items():
        expected = "allowed" if Action.DELETE in PERMISSIONS[role] and name != "agent" else "403"
        assert MATRIX[f"DELETE {TMF641}/serviceOrder/{{id}}"][name] == expected, name
    for operation, cells in MATRIX.items():  # every read of orders is open to every role
        if (
            operation.startswith("GET ") and "/hub" not in operation and "/audit/" not in operation
        ):  # the access log: auditors and admins
            assert all(cells[r] == "allowed" for r in ROLES[:-1]), operation


# ------------------------------------------------------------------ the walk
@dataclass
class Call:
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _setups(flow: Any, make_order_body: Callable[..., Any]) -> dict[str, Callable[[], Call]]:
    """For each operation: a fresh state where it is legal, and the request to send."""
    ok = "/api/v1/orders"

    def with_etag(order_id: str, path: str, body: Any = None) -> Call:
        return Call(path, body, {"If-Match": flow.etag(order_id)})

    def order_call(make: Callable[[], str], suffix: str, body: Any = None) -> Callable[[], Call]:
        def setup() -> Call:
            order_id = make()
            return Call(f"{ok}/{order_id}{suffix}", body)

        return setup

    def decision(make: Callable[[], str], suffix: str, body: Any = None) -> Callable[[], Call]:
        def setup() -> Call:
            order_id = make()
            return with_etag(order_id, f"{ok}/{order_id}{suffix}", body)

        return setup

    def draft_call(suffix: str, body: Any = None, items: bool = True) -> Callable[[], Call]:
        def setup() -> Call:
            return Call(f"/api/v1/drafts/{flow.draft(items=items)}{suffix}", body)

        return setup

    def proposed(role: str = "agent") -> str:
        """An inProgress order with a proposal by `role` (agent when it may not revise)."""
        if role == "no key" or MATRIX[f"PATCH {TMF641}/serviceOrder/{{id}}"].get(role) != (
            "allowed"
        ):
            role = "agent"
        order_id = flow.in_progress()
        response = flow.client.patch(
            f"{TMF641}/serviceOrder/{order_id}",
            json={"description": "proposed"},
            headers={**flow.auth(role), "Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code == 200 and "link" in response.headers, response.text
        return order_id

    def pending_cancellation() -> str:
        order_id, _ = flow.assessing(flow.in_progress())
        flow.decide(order_id, "cancellation/approve")
        return order_id

    def asked(role: str = "integrator") -> Call:
        """An order whose cancellation `role` requested (integrator when it may not) and a
        manager (or, when `role` is the manager, an admin) asked about: `role` answers."""
        if role == "no key" or MATRIX[f"POST {TMF641}/cancelServiceOrder"].get(role) != ("allowed"):
            role = "integrator"
        order_id = flow.order()
        response = flow.client.post(
            f"{TMF641}/cancelServiceOrder",
            json={"serviceOrder": {"id": order_id}, "cancellationReason": "budget"},
            headers=flow.auth(role),
        )
        assert response.status_code == 201, response.text
        flow.post(
            f"{ok}/{order_id}/cancellation/informationRequest",
            {"information": "which budget line?"},
            "admin" if role == "manager" else "manager",
        )
        return Call(f"{ok}/{order_id}/cancellation/information", {"information": "line 7"})

    def imported_service() -> str:
        """A service of the inventory (an import, through the application)."""
        ctx = flow.client.app.state.ctx
        ctx.app.handle(
            CommandContext.for_actor("ops", Role.OPERATOR, Channel.CLI),
            ImportService(ServiceRecord(id="SVC-MATRIX", name="matrix")),
        )
        ctx.sync()
        return "SVC-MATRIX"

    def cancel_request() -> Call:
        _, request_id = flow.assessing()
        return Call(f"{TMF641}/cancelServiceOrder/{request_id}")

    def listener(role: str = "admin", suffix: str = "", prefix: str = f"{TMF641}/hub") -> Call:
        """A listener registered by `role` when that role may register one (else admin):
        a listener is visible to whoever registered it."""
        if role == "no key" or MATRIX[f"POST {TMF641}/hub"].get(role) != "allowed":
            role = "admin"
        response = flow.client.post(
            f"{TMF641}/hub",
            json={"callback": "http://127.0.0.1:9/listener"},
            headers=flow.auth(role),
        )
        assert response.status_code == 201, response.text
        return Call(f"{prefix}/{response.json()['id']}{suffix}")

    return {
        f"POST {TMF641}/serviceOrder": lambda: Call(f"{TMF641}/serviceOrder", make_order_body()),
        f"GET {TMF641}/serviceOrder": lambda: Call(f"{TMF641}/serviceOrder?state=acknowledged"),
        f"GET {TMF641}/serviceOrder/{{id}}": lambda: Call(f"{TMF641}/serviceOrder/{flow.order()}"),
        f"PATCH {TMF641}/serviceOrder/{{id}}": lambda: Call(
            f"{TMF641}/serviceOrder/{flow.order()}",
            {"description": "revised"},
            content_type="application/merge-patch+json",
        ),
        f"DELETE {TMF641}/serviceOrder/{{id}}": lambda: Call(
            f"{TMF641}/serviceOrder/{flow.rejected()}"
        ),
        f"POST {TMF641}/cancelServiceOrder": lambda: Call(
            f"{TMF641}/cancelServiceOrder",
            {"serviceOrder": {"id": flow.order()}, "cancellationReason": "not needed"},
        ),
        f"GET {TMF641}/cancelServiceOrder": lambda: Call(f"{TMF641}/cancelServiceOrder"),
        f"GET {TMF641}/cancelServiceOrder/{{id}}": cancel_request,
        f"POST {TMF641}/hub": lambda: Call(
            f"{TMF641}/hub", {"callback": "http://127.0.0.1:9/listener"}
        ),
        f"GET {TMF641}/hub/{{id}}": listener,  # with the caller's role (ROLE_AWARE)
        f"DELETE {TMF641}/hub/{{id}}": listener,
        "GET /api/v1/hub": lambda: Call("/api/v1/hub"),
        "POST /api/v1/hub/{id}/resume": lambda role="admin": listener(
            "admin", "/resume", "/api/v1/hub"
        ),
        f"GET {TMF638}/service": lambda: Call(f"{TMF638}/service?state=active"),
        f"GET {TMF638}/service/{{id}}": lambda: Call(f"{TMF638}/service/{imported_service()}"),
        "GET /api/v1/services/{id}/history": lambda: Call(
            f"/api/v1/services/{imported_service()}/history"
        ),
        f"GET {TMF633}/serviceSpecification": lambda: Call(f"{TMF633}/serviceSpecification"),
        f"GET {TMF633}/serviceSpecification/{{id}}": lambda: Call(
            f"{TMF633}/serviceSpecification/internet-access"
        ),
        "POST /api/v1/drafts": lambda: Call("/api/v1/drafts", {"priority": "1"}),
        "GET /api/v1/drafts/{id}": draft_call(""),
        "POST /api/v1/drafts/{id}/items": draft_call(
            "/items",
            {
                "id": "9",
                "specificationId": "internet-access",
                "place": {"id": "S2"},
                "characteristics": {"bandwidthMbps": 10, "accessType": "copper"},
            },
        ),
        "PATCH /api/v1/drafts/{id}/items/{itemId}": draft_call(
            "/items/1", {"characteristics": {"bandwidthMbps": 200}}
        ),
        "DELETE /api/v1/drafts/{id}/items/{itemId}": draft_call("/items/2"),
        "GET /api/v1/drafts/{id}/validation": draft_call("/validation"),
        "POST /api/v1/drafts/{id}/submit": draft_call("/submit"),
        "DELETE /api/v1/drafts/{id}": draft_call("", items=False),
        "GET /api/v1/reviewQueue": lambda: Call("/api/v1/reviewQueue?kind=approval"),
        "POST /api/v1/orders/{id}/approve": decision(flow.order, "/approve", {}),
        "POST /api/v1/orders/{id}/reject": decision(
            flow.order, "/reject", {"reason": "no capacity"}
        ),
        "POST /api/v1/orders/{id}/cancellation/approve": decision(
            lambda: flow.assessing()[0], "/cancellation/approve", {"note": "ok"}
        ),
        "POST /api/v1/orders/{id}/cancellation/deny": decision(
            lambda: flow.assessing()[0], "/cancellation/deny", {"reason": "too late"}
        ),
        "POST /api/v1/orders/{id}/cancellation/informationRequest": order_call(
            lambda: flow.assessing()[0],
            "/cancellation/informationRequest",
            {"information": "which budget line?"},
        ),
        "POST /api/v1/orders/{id}/cancellation/information": asked,
        "GET /api/v1/orders/{id}/proposal": order_call(proposed, "/proposal"),
        "POST /api/v1/orders/{id}/proposal/approve": decision(
            proposed, "/proposal/approve", {"note": "ok"}
        ),
        "POST /api/v1/orders/{id}/proposal/refuse": decision(
            proposed, "/proposal/refuse", {"reason": "not now"}
        ),
        "POST /api/v1/orders/{id}/proposal/withdraw": lambda role="agent": Call(
            f"{ok}/{proposed(role)}/proposal/withdraw", {}
        ),
        "POST /api/v1/orders/{id}/resubmit": order_call(
            flow.rejected, "/resubmit", {"submit": True}
        ),
        "POST /api/v1/orders/{id}/items/{itemId}/state": order_call(
            flow.in_progress, "/items/1/state", {"state": "inProgress"}
        ),
        "POST /api/v1/orders/{id}/hold": order_call(
            flow.in_progress, "/hold", {"reason": "blocked"}
        ),
        "POST /api/v1/orders/{id}/resume": order_call(flow.held, "/resume", {}),
        "POST /api/v1/orders/{id}/informationRequest": order_call(
            flow.in_progress, "/informationRequest", {"information": "which VLAN?"}
        ),
        "POST /api/v1/orders/{id}/information": order_call(
            flow.pending, "/information", {"information": "VLAN 12"}
        ),
        "POST /api/v1/orders/{id}/pointOfNoReturn": order_call(
            flow.in_progress, "/pointOfNoReturn", {}
        ),
        "POST /api/v1/orders/{id}/cancel": order_call(
            pending_cancellation, "/cancel", {"reason": "obsolete"}
        ),
        "POST /api/v1/orders/{id}/notes": order_call(
            flow.order, "/notes", {"text": "called the customer"}
        ),
        "GET /api/v1/orders/{id}/events": order_call(flow.order, "/events"),
        "GET /api/v1/orders/{id}": order_call(flow.order, ""),
        "GET /api/v1/orders/{id}/history": order_call(flow.order, "/history"),
        "GET /api/v1/audit/access-log": lambda: Call("/api/v1/audit/access-log"),
        "GET /health": lambda: Call("/health"),
        "GET /ready": lambda: Call("/ready"),
        "GET /metrics": lambda: Call("/metrics"),
        "GET /openapi.json": lambda: Call("/openapi.json"),
        "GET /docs": lambda: Call("/docs"),
        "GET /redoc": lambda: Call("/redoc"),
        "GET /docs/oauth2-redirect": lambda: Call("/docs/oauth2-redirect"),
    }


# Setups that depend on the calling role (a listener is visible to whoever registered it).
ROLE_AWARE = {
    f"GET {TMF641}/hub/{{id}}",
    f"DELETE {TMF641}/hub/{{id}}",
    "POST /api/v1/orders/{id}/proposal/withdraw",  # by its proposer
    "POST /api/v1/orders/{id}/cancellation/information",  # by the cancellation's requester
}


def _send(client: TestClient, method: str, call: Call, headers: dict[str, str]) -> Any:
    all_headers = {**call.headers, **headers}
    if call.body is None:
        return client.request(method, call.path, headers=all_headers)
    return client.request(
        method,
        call.path,
        content=json.dumps(call.body),
        headers={**all_headers, "Content-Type": call.content_type},
    )


def _outcome(status: int) -> str:
    return "allowed" if 200 <= status < 300 else str(status)


@pytest.mark.parametrize("operation", list(MATRIX))
def test_role_matrix(
    operation: str,
    client: TestClient,
    flow: Any,
    auth: Callable[[str | None], dict[str, str]],
    order_body: Callable[..., Any],
) -> None:
    method, path = operation.split(" ", 1)
    if "hub" in path and operation not in served_operations(client):
        pytest.skip(f"{operation}: the hub routes are not served yet (hub helper's part)")
    setups = _setups(flow, order_body)
    assert operation in setups, f"no setup for {operation}: add one to _setups"
    call = None
    mismatches = []
    for role in ROLES:
        if operation in ROLE_AWARE:
            call = setups[operation](role)
        elif call is None:
            call = setups[operation]()
        response = _send(client, method, call, auth(None if role == "no key" else role))
        got = _outcome(response.status_code)
        expected = MATRIX[operation][role]
        if got != expected:
            mismatches.append(
                f"{role}: docs/security.md says {expected}, the API answered "
                f"{response.status_code} {response.text[:300]}"
            )
        if got == "401":
            assert response.headers.get("www-authenticate") == "Bearer"
        if got in ("401", "403"):
            assert response.json()["@type"] == "Error"
        if got == "allowed" and method != "GET":
            call = None  # the state moved on: set it up again for the next role
    assert not mismatches, f"{operation}:\n  " + "\n  ".join(mismatches)


# ------------------------------------------------------------ authentication
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer not-a-configured-key-123456",
        "Token agent-0123456789abcdef0123456789abcdef",
    ],
)
def test_missing_or_wrong_key_is_401_with_www_authenticate(
    client: TestClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for method, path in (
        ("GET", f"{TMF641}/serviceOrder"),
        ("GET", "/api/v1/reviewQueue"),
        ("POST", "/api/v1/drafts"),
    ):
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert body["@type"] == "Error" and body["status"] == "401"
        token = (header or "").split(" ", 1)[-1]
        if len(token) > 8:
            assert token not in response.text


def test_a_prefix_or_extension_of_a_key_is_not_the_key(client: TestClient, keys: Any) -> None:
    key = keys["admin"].key
    for token in (key[:-1], key + "x", key.upper(), f" {key}x "):
        response = client.get(
            f"{TMF641}/serviceOrder", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, token
    assert (
        client.get(
            f"{TMF641}/serviceOrder", headers={"Authorization": f"bearer  {key} "}
        ).status_code
        == 200
    )


def test_open_mode_gives_full_access_as_anonymous(open_flow: Any) -> None:
    order_id = open_flow.order(role=None)
    draft_id = open_flow.draft(items=True)
    open_flow.post(f"/api/v1/drafts/{draft_id}/submit")
    view = open_flow.view(order_id)
    assert view["submittedBy"] == {"id": "anonymous", "role": "operator"}
    # the same actor submitted it: four-eyes refuses the decision (see docs/security.md)
    response = open_flow.client.post(
        f"/api/v1/orders/{order_id}/approve", headers={"If-Match": open_flow.etag(order_id)}
    )
    assert response.status_code == 403 and "four-eyes" in response.json()["message"]


# ------------------------------------------------------------- keys stay secret
def test_keys_never_reach_logs_bodies_or_reprs(
    client: TestClient,
    keys: Any,
    flow: Any,
    auth: Callable[[str | None], dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from serviceorders.api.auth import Authenticator, parse_keys
    from serviceorders.settings import Settings

    secrets_ = [k.key for k in keys.values()]
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        order_id = flow.order()
        for role in keys:
            for method, path, body in (
                ("GET", f"{TMF641}/serviceOrder", None),
                ("GET", f"/api/v1/orders/{order_id}", None),
                ("POST", f"/api/v1/orders/{order_id}/approve", {}),  # 428 / 403
                ("POST", f"/api/v1/orders/{order_id}/hold", {"reason": "x"}),
                ("POST", "/api/v1/drafts", {"externalId": 5}),  # 400
                ("GET", f"/api/v1/orders/{'0' * 8}", None),
            ):  # 404
                response = client.request(method, path, headers=auth(role), json=body)
                bodies.append(response.text + str(response.headers))
        for token in secrets_:  # as a wrong key, slightly altered
            response = client.get(
                f"{TMF641}/serviceOrder", headers={"Authorization": f"Bearer {token}!"}
            )
            bodies.append(response.text + str(response.headers))
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    for key in secrets_:
        assert key not in logged
        assert all(key not in body for body in bodies)
        assert key[-16:] not in logged
    # reprs and strs of the settings and of the parsed keys
    inline = ",".join(f"{k.actor}:{k.role}:{k.key}" for k in keys.values())
    settings = Settings.from_env(
        {"DATABASE_URL": "sqlite:///x.db", "SERVICEORDERS_API_KEYS": inline}
    )
    parsed = parse_keys(inline, "SERVICEORDERS_API_KEYS")
    for text in (
        repr(settings),
        str(settings),
        repr(parsed),
        str(parsed),
        repr(Authenticator(parsed).keys),
    ):
        assert all(key not in text for key in secrets_), text
    assert "***" in repr(settings)


def test_key_file_format(tmp_path: Path, keys: Any) -> None:
    from serviceorders.api.auth import KeyError_, load_keys

    file = tmp_path / "keys"
    file.write_text(
        "# the CRM\ncrm:integrator:" + keys["integrator"].key + "  # trailing\n"
        "\n   \nbob:manager:" + keys["manager"].key + "\n",
        encoding="utf-8",
    )
    loaded = load_keys("alice:agent:" + keys["agent"].key, file)
    assert [(k.actor, k.role, k.key) for k in loaded] == [
        ("alice", "agent", keys["agent"].key),
        ("crm", "integrator", keys["integrator"].key),
        ("bob", "manager", keys["manager"].key),
    ]
    for bad in ("bob:manager:short-key", "bob:boss:" + "x" * 20, "bob:" + "x" * 20):
        file.write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(KeyError_) as refused:
            load_keys(None, file)
        assert bad.rsplit(":", 1)[-1] not in str(refused.value)


# ------------------------------------------------------------- error hygiene
LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|/work/|/tmp/|/usr/|/root/|"
    r"\bSELECT\b|\bINSERT\b|\bUPDATE\b|\bFROM order|psycopg|sqlite3|"
    r"eventsourcing|pydantic_core|Exception\b|Error\(",
    re.IGNORECASE,
)


def _assert_clean_error(response: Any, context: str, echoed: str = "") -> None:
    """A 4xx TMF Error whose text shows no internals (what the client sent may be echoed)."""
    assert 400 <= response.status_code < 500, (
        f"{context}: {response.status_code} {response.text[:500]}"
    )
    body = response.json()
    assert {"code", "reason", "message", "status", "@type"} <= set(body), context
    assert body["@type"] == "Error" and body["status"] == str(response.status_code)
    text = response.text
    if echoed:
        text = text.replace(json.dumps(echoed)[1:-1], "").replace(echoed, "")
    leaked = LEAKS.search(text)
    assert leaked is None, f"{context}: error body leaks {leaked.group(0)!r}: {response.text}"


MALFORMED_BODIES: list[tuple[str, bytes | None, str]] = [
    ("not json", b"{not json", "application/json"),
    ("invalid utf-8", b"\xff\xfe\x00{", "application/json"),
    ("array", b"[1, 2, 3]", "application/json"),
    ("null", b"null", "application/json"),
    (
        "wrong types",
        b'{"id": {}, "state": 5, "reason": [], "text": 7, "information": {},'
        b' "serviceOrderItem": "x", "priority": {"a": 1}, "customer": 3,'
        b' "characteristics": [1], "quantity": -4, "dependsOn": "1",'
        b' "serviceOrder": 12, "callback": 9}',
        "application/json",
    ),
    (
        "huge numbers",
        b'{"quantity": 1e400, "id": "1", "state": "completed", "reason": "' + b"x" * 5000 + b'"}',
        "application/json",
    ),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "application/json"),
    ("form", b"a=1&b=2", "application/x-www-form-urlencoded"),
    ("no content type", b'{"reason": "x"}', ""),
]


BODYLESS = {"POST /api/v1/drafts/{id}/submit"}  # takes no body (and ignores one)


def test_malformed_input_gets_clean_tmf_errors_everywhere(
    client: TestClient, flow: Any, auth: Callable[[str | None], dict[str, str]]
) -> None:
    order_id, draft_id = flow.in_progress(), flow.draft()
    ids = {"{id}": order_id, "{itemId}": "1"}
    headers = auth("admin")
    for operation in MATRIX:
        method, template = operation.split(" ", 1)
        if template in UNAUTHENTICATED:
            continue
        path = template.replace("/drafts/{id}", f"/drafts/{draft_id}")
        for name, value in ids.items():
            path = path.replace(name, value)
        # unknown and malformed ids
        if "{" in template:
            for bad in (
                "not-a-uuid",
                "00000000-0000-0000-0000-000000000000",
                "%27%20OR%201=1",
                "..%2F..%2Fetc%2Fpasswd",
            ):
                bad_path = template.replace("{id}", bad).replace("{itemId}", "1")
                response = client.request(
                    method,
                    bad_path,
                    headers=headers,
                    json={} if method in ("POST", "PATCH") else None,
                )
                if response.status_code < 400:  # e.g. the catalog's unknown id
                    continue
                _assert_clean_error(response, f"{operation} with id {bad}")
        if method in ("POST", "PATCH") and operation not in BODYLESS:
            for name, raw, content_type in MALFORMED_BODIES:
                request_headers = dict(headers)
                if content_type:
                    request_headers["Content-Type"] = content_type
                response = client.request(method, path, content=raw, headers=request_headers)
                _assert_clean_error(response, f"{operation} with {name}")
        if method == "GET":
            response = client.get(
                path + "?offset=x&limit=y&olderThan=-1&orderDate=yesterday", headers=headers
            )
            if response.status_code >= 400:
                _assert_clean_error(response, f"{operation} with bad query parameters")
    # item ids that do not exist, on draft and order routes
    for method, path, body in (
        ("PATCH", f"/api/v1/drafts/{draft_id}/items/nope", {"quantity": 2}),
        ("DELETE", f"/api/v1/drafts/{draft_id}/items/nope", None),
        ("POST", f"/api/v1/orders/{order_id}/items/nope/state", {"state": "completed"}),
    ):
        _assert_clean_error(
            client.request(method, path, headers=headers, json=body), f"{method} {path}"
        )
    # an unknown route and a wrong method
    _assert_clean_error(client.get("/api/v1/nothing-here", headers=headers), "unknown route")
    _assert_clean_error(client.put(f"/api/v1/orders/{order_id}", headers=headers), "wrong method")


def test_bodies_over_one_mebibyte_are_refused(
    client: TestClient, auth: Callable[[str | None], dict[str, str]]
) -> None:
    big = b'{"description": "' + b"x" * (1_048_576 + 10) + b'"}'
    response = client.post(
        "/api/v1/drafts", content=big, headers={**auth("agent"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    _assert_clean_error(response, "1 MiB + 1")

    def chunks() -> Any:  # streamed, no Content-Length
        yield b'{"description": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    response = client.post(
        "/api/v1/drafts",
        content=chunks(),
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    fits = b'{"description": "' + b"z" * 1000 + b'"}'
    response = client.post(
        "/api/v1/drafts",
        content=fits,
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert response.status_code == 201


# ------------------------------------------------------------- SQL injection
INJECTIONS = [
    "' OR '1'='1",
    "x'; DROP TABLE order_summary; --",
    "1 OR 1=1",
    "acknowledged' --",
    "%' OR 1=1 --",
    '" OR ""="',
    "approval' UNION SELECT null, null --",
    "'); DELETE FROM review_queue; --",
    "\\'; SELECT pg_sleep(1); --",
]


def test_sql_injection_in_every_filter_changes_nothing(
    client: TestClient, flow: Any, auth: Callable[[str | None], dict[str, str]]
) -> None:
    orders = [flow.order(), flow.order(), flow.in_progress()]
    flow.assessing(orders[0])
    headers = auth("auditor")

    def snapshot() -> tuple[Any, ...]:
        listed = client.get(f"{TMF641}/serviceOrder", headers=headers)
        queue = client.get("/api/v1/reviewQueue", headers=headers)
        cancels = client.get(f"{TMF641}/cancelServiceOrder", headers=headers)
        return (
            sorted(o["id"] for o in listed.json()),
            listed.headers["x-total-count"],
            sorted((e["orderId"], e["kind"]) for e in queue.json()),
            len(cancels.json()),
        )

    before = snapshot()
    assert len(before[0]) == 3 and len(before[2]) == 2
    filters = {
        f"{TMF641}/serviceOrder": [
            *TMF_ORDER_FILTERS,
            "fields",
        ],
        f"{TMF641}/cancelServiceOrder": ["fields"],
        "/api/v1/reviewQueue": [
            *REVIEW_QUEUE_FILTERS,
        ],
        f"{TMF633}/serviceSpecification": ["fields"],
    }
    for path, names in filters.items():
        for name in names:
            for injection in INJECTIONS:
                response = client.get(path, params={name: injection}, headers=headers)
                if name == "fields":
                    assert response.status_code == 200, response.text
                    continue
                assert response.status_code in (200, 400), (path, name, response.text)
                if response.status_code == 400:
                    _assert_clean_error(response, f"{path}?{name}={injection}", injection)
                else:
                    assert response.json() == [], (path, name, injection, response.text)
                    assert response.headers["x-total-count"] == "0"
    for injection in INJECTIONS:  # in path ids too
        response = client.get(f"{TMF641}/cancelServiceOrder/{injection}", headers=headers)
        assert response.status_code == 404
    assert snapshot() == before


# ------------------------------------------------------------- loopback only
class _WouldBind(Exception):
    pass


@pytest.mark.parametrize("command", ["api", "serve"])
def test_no_keys_refuses_to_bind_beyond_loopback(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: Any
) -> None:
    import uvicorn
    from click.testing import CliRunner
    from serviceorders.cli import main

    def would_bind(*args: Any, **kwargs: Any) -> None:
        raise _WouldBind(kwargs.get("host"))

    monkeypatch.setattr(uvicorn, "run", would_bind)  # never actually bind
    base_env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "SERVICEORDERS_API_KEYS": None,
        "SERVICEORDERS_API_KEYS_FILE": None,
    }
    runner = CliRunner()
    # `api` serves an initialised database only (serve initialises its own)
    assert runner.invoke(main, ["db", "init"], env=base_env).exit_code == 0
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        result = runner.invoke(main, [command, "--host", host, "--port", "1"], env=base_env)
        assert result.exit_code == 2, (host, result.output, result.exception)
        assert (
            "refusing to listen" in result.output and "SERVICEORDERS_API_KEYS" in result.output
        ), result.output
        assert "_WouldBind" not in result.output
    # loopback without keys, or any address with keys: it goes on to serve
    for host, env in (
        ("127.0.0.1", base_env),
        ("0.0.0.0", {**base_env, "SERVICEORDERS_API_KEYS": f"ops:admin:{keys['admin'].key}"}),
    ):
        result = runner.invoke(main, [command, "--host", host, "--port", "1"], env=env)
        # the CLI reports the stand-in's exception like any failure to serve
        assert f"_WouldBind: {host}" in result.output, (host, result.output)
        assert keys["admin"].key not in result.output
    # a short key is a usage error that names the entry, not the key
    result = runner.invoke(
        main,
        [command, "--host", "0.0.0.0"],
        env={**base_env, "SERVICEORDERS_API_KEYS": "ops:admin:tooshort"},
    )
    assert result.exit_code == 2 and "at least 16" in result.output
    assert "tooshort" not in result.output


def test_cli_refuses_in_a_real_process(tmp_path: Path) -> None:
    """The installed console script: exit status 2 and a message, nothing bound."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("serviceorders")
    argv = [exe] if exe else [sys.executable, "-m", "serviceorders"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICEORDERS_API_KEYS")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    done = subprocess.run(
        [*argv, "api", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to listen on 0.0.0.0" in done.stderr

"""Fixtures for the REST API tests, on both backends (sqlite and postgres, via the root
`settings` fixture, each test on a clean store).

* `keys`: one API key per role name (integrator, agent, agent2, manager, manager2,
  fulfilment, auditor, admin) -> `ApiKey`; every key is >= 16 characters.
* `client`: a `TestClient` of an app configured WITH those keys.
* `open_client`: a `TestClient` of an app without keys (full access, "anonymous" operator).
* `auth(role)`: the `Authorization` header for that key name (`auth(None)` -> {}).
* `order_body(...)` / `post_order(...)`: a valid TMF641 ServiceOrder_Create of our catalog
  (internet-access 100 Mbit/s fibre at S1, plus a managed router depending on it) and a
  helper that POSTs it and returns the 201 response's JSON.
* `flow`: puts orders into given states through the API (setup as `admin` by default):
  `flow.order()` (acknowledged), `flow.in_progress()`, `flow.rejected()`, `flow.held()`,
  `flow.pending()`, `flow.assessing()` (cancellation requested; returns (id, request id)),
  `flow.draft(items=True)`, `flow.etag(id)`, `flow.view(id)`, `flow.decide(id, "approve")`.
* `live_server`: the app served by uvicorn in a background thread on a free 127.0.0.1
  port; yields its base URL (`http://127.0.0.1:PORT`). Keys: `live_server_keys` (default:
  none, i.e. open mode); override that fixture in a test module to serve with keys.

Fixtures are discovered by pytest (the suite runs with --import-mode=importlib, so import
nothing from this module: ask for the fixtures by name).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from builders import TYPED, api_keys, draft_item, tmf_item, tmf_router
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import ApiKey, Authenticator
from serviceorders.bootstrap import build_api_context, build_application, init_database
from serviceorders.domain.commands import ImportService
from serviceorders.domain.values import CommandContext, Party, Role, ServiceRecord, SpecRef
from serviceorders.settings import Settings

ORDER_PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"


@pytest.fixture
def api_settings_update() -> dict[str, Any]:
    """More settings for `api_settings`: none, unless a module overrides this fixture (the
    generated-request tests turn hub delivery off)."""
    return {}


@pytest.fixture
def api_settings(settings: Settings, api_settings_update: dict[str, Any]) -> Settings:
    """The root `settings` (sqlite or postgres, clean store) with every table created, and
    the hub allowed to call 127.0.0.1:9 (discard), the callback the API tests register:
    by default the hub calls public addresses only (docs/notifications.md)."""
    init_database(settings)
    update = {"hub_allowed_hosts": "127.0.0.1:9", **api_settings_update}
    return settings.model_copy(update=update)


@pytest.fixture
def keys() -> dict[str, ApiKey]:
    """A key of every name of builders.KEY_ROLES (integrator, agent, manager, ...)."""
    return api_keys()


@pytest.fixture
def auth(keys: dict[str, ApiKey]) -> Callable[[str | None], dict[str, str]]:
    def headers(role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {keys[role].key}"}

    return headers


def _client(settings: Settings, keys: list[ApiKey]) -> Iterator[TestClient]:
    ctx = build_api_context(settings, Authenticator(keys))
    try:
        # raise_server_exceptions=False: a 500 is answered as a TMF Error, as in production.
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            yield client
    finally:
        ctx.close()  # idempotent enough: the lifespan closed it already on exit


@pytest.fixture
def client(api_settings: Settings, keys: dict[str, ApiKey]) -> Iterator[TestClient]:
    yield from _client(api_settings, list(keys.values()))


@pytest.fixture
def open_client(api_settings: Settings) -> Iterator[TestClient]:
    yield from _client(api_settings, [])


def make_order_body(
    external_id: str | None = None,
    *,
    bandwidth: Any = 100,
    router: bool = True,
    place: str = "S1",
    **header: Any,
) -> dict[str, Any]:
    site = (place, "Site one")
    items = [tmf_item("1", place=site, bandwidth=bandwidth, **TYPED)]
    if router:
        items.append(tmf_router("2", "1", site, **TYPED))
    body: dict[str, Any] = {
        "description": "internet and a router",
        "category": "enterprise",
        "priority": "2",
        "relatedParty": [{"id": "CUST-1", "name": "Acme", "role": "customer"}],
        "serviceOrderItem": items,
        "@type": "ServiceOrder",
        **header,
    }
    if external_id is not None:
        body["externalId"] = external_id
    return body


@pytest.fixture
def in_inventory(api_settings: Settings) -> Callable[..., list[str]]:
    """`in_inventory(*ids, customer="CUST-1", spec="internet-access")`: services the
    inventory holds (imported, active), so that change and disconnect items may name them
    (issue 20: an item naming a service the inventory lacks is refused)."""

    def add(*ids: str, customer: str = "CUST-1", spec: str = "internet-access") -> list[str]:
        app = build_application(api_settings)
        try:
            for service_id in ids:
                record = ServiceRecord(
                    id=service_id,
                    specification=SpecRef(id=spec),
                    customer=Party(id=customer, role="customer"),
                )
                ctx = CommandContext.for_actor("ops", Role.OPERATOR)
                app.handle(ctx, ImportService(record))
        finally:
            app.close()
        return list(ids)

    return add


@pytest.fixture
def order_body() -> Callable[..., dict[str, Any]]:
    """`order_body(external_id=None, bandwidth=100, router=True, place="S1", **header)`."""
    return make_order_body


@pytest.fixture
def post_order(
    client: TestClient, auth: Callable[[str | None], dict[str, str]]
) -> Callable[..., dict[str, Any]]:
    """`post_order(role="integrator", http=client, **order_body_kwargs)` -> the created
    order's TMF641 document (asserts 201). Pass `http=open_client` with role=None."""

    def post(
        role: str | None = "integrator", http: TestClient | None = None, **kw: Any
    ) -> dict[str, Any]:
        response = (http or client).post(ORDER_PATH, json=make_order_body(**kw), headers=auth(role))
        assert response.status_code == 201, response.text
        return response.json()

    return post


class Flow:
    """Orders in given states, made through the API (every step asserted)."""

    def __init__(
        self,
        client: TestClient,
        auth: Callable[[str | None], dict[str, str]],
        admin: str | None = "admin",
    ) -> None:
        self.client, self.auth, self.admin = client, auth, admin

    def _ok(self, response: Any, *statuses: int) -> Any:
        assert response.status_code in (statuses or (200,)), response.text
        return response

    def order(self, role: str | None = "integrator", **kw: Any) -> str:
        """A new order in `acknowledged` (in the review queue)."""
        response = self.client.post(ORDER_PATH, json=make_order_body(**kw), headers=self.auth(role))
        return self._ok(response, 201).json()["id"]

    def view(self, order_id: str, role: str | None = None) -> dict[str, Any]:
        return self._ok(
            self.client.get(f"/api/v1/orders/{order_id}", headers=self.auth(role or self.admin))
        ).json()

    def etag(self, order_id: str) -> str:
        response = self._ok(
            self.client.get(f"/api/v1/orders/{order_id}", headers=self.auth(self.admin))
        )
        return response.headers["etag"]

    def post(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        role: str | None = None,
        if_match: str | None = None,
        status: int = 200,
    ) -> Any:
        headers = dict(self.auth(role or self.admin))
        if if_match:
            headers["If-Match"] = if_match
        response = (
            self.client.post(path, json=body, headers=headers)
            if body is not None
            else self.client.post(path, headers=headers)
        )
        return self._ok(response, status)

    def decide(
        self,
        order_id: str,
        decision: str = "approve",
        body: dict[str, Any] | None = None,
        role: str | None = None,
    ) -> Any:
        """approve | reject | cancellation/approve | cancellation/deny, with the ETag."""
        if body is None and decision in ("reject", "cancellation/deny"):
            body = {"reason": "test decision"}
        return self.post(
            f"/api/v1/orders/{order_id}/{decision}", body, role, if_match=self.etag(order_id)
        )

    def in_progress(self, **kw: Any) -> str:
        order_id = self.order(**kw)
        self.decide(order_id, "approve")
        return order_id

    def rejected(self, **kw: Any) -> str:
        order_id = self.order(**kw)
        self.decide(order_id, "reject")
        return order_id

    def held(self) -> str:
        order_id = self.in_progress()
        self.post(f"/api/v1/orders/{order_id}/hold", {"reason": "waiting for a part"})
        return order_id

    def pending(self) -> str:
        order_id = self.in_progress()
        self.post(f"/api/v1/orders/{order_id}/informationRequest", {"information": "which VLAN?"})
        return order_id

    def assessing(self, order_id: str | None = None) -> tuple[str, str]:
        """An order (new, acknowledged, unless given) with a cancellation requested."""
        order_id = order_id or self.order()
        response = self.client.post(
            CANCEL_PATH,
            json={"serviceOrder": {"id": order_id}, "cancellationReason": "customer changed mind"},
            headers=self.auth("integrator" if self.admin else None),
        )
        return order_id, self._ok(response, 201).json()["id"]

    def draft(self, items: bool = True, role: str | None = None, **header: Any) -> str:
        """A draft (by `role`, default admin); with items: a valid internet access at S1
        and a router depending on it."""
        response = self.client.post(
            "/api/v1/drafts",
            json={"priority": "2", **header},
            headers=self.auth(role or self.admin),
        )
        draft_id = self._ok(response, 201).json()["id"]
        if items:
            for item in DRAFT_ITEMS:
                self.post(f"/api/v1/drafts/{draft_id}/items", item, role, status=201)
        return draft_id


CANCEL_PATH = "/tmf-api/serviceOrdering/v4/cancelServiceOrder"
DRAFT_ITEMS: list[dict[str, Any]] = [
    draft_item("1"),
    draft_item("2", "managed-router", dependsOn=["1"]),
]


@pytest.fixture
def flow(client: TestClient, auth: Callable[[str | None], dict[str, str]]) -> Flow:
    return Flow(client, auth)


@pytest.fixture
def open_flow(open_client: TestClient) -> Flow:
    """`Flow` on the app without keys (every request is `anonymous`, operator)."""
    return Flow(open_client, lambda role: {}, admin=None)


# ---------------------------------------------------------------------- live server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server_keys() -> list[ApiKey]:
    """Keys for `live_server`; none (open mode) unless a module overrides this fixture,
    e.g. `def live_server_keys(keys): return list(keys.values())`."""
    return []


@pytest.fixture
def live_server(api_settings: Settings, live_server_keys: list[ApiKey]) -> Iterator[str]:
    ctx = build_api_context(api_settings, Authenticator(live_server_keys))
    port = _free_port()
    config = uvicorn.Config(
        create_app(ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            ctx.close()
            pytest.fail("the live server did not start", pytrace=False)
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        ctx.close()

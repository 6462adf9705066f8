"""The TMF641 hub: registration, the notification outbox (from the event log, exactly
once), and delivery to a real HTTP listener with retries, backoff, suspension and resume.

Every test runs on SQLite and PostgreSQL (the root `settings` fixture). Orders are driven
through the application, not the API: notifications come from the event log.
"""

from __future__ import annotations

import http.server
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from builders import id_created, tmf_item, wait_for
from click.testing import CliRunner
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import ApiKey, Authenticator
from serviceorders.api.context import ApiContext
from serviceorders.bootstrap import (
    build_api_context,
    build_application,
    build_projector,
    event_mapper,
    init_database,
    open_read_db,
)
from serviceorders.cli import main as cli
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.values import ItemState, OrderHeader
from serviceorders.notifications.callbacks import check_callback, listener_url
from serviceorders.notifications.delivery import DeliveryWorker, HubConfig, start_worker
from serviceorders.notifications.filters import Filter, QueryError
from serviceorders.notifications.store import HubStore
from serviceorders.projections.maintenance import rebuild, verify
from serviceorders.projections.notifications import (
    EVENT_TYPES,
    NotificationOutbox,
    notification_event_id,
    notifications_of,
)
from serviceorders.projections.runner import Projector
from serviceorders.settings import Settings
from serviceorders.support.hosts import AllowList, CallbackError, address_class

pytestmark = pytest.mark.integration

HUB = "/tmf-api/serviceOrdering/v4/hub"
ADMIN_HUB = "/api/v1/hub"
CREATE, STATE = "ServiceOrderCreateEvent", "ServiceOrderStateChangeEvent"
AVC, DELETE = "ServiceOrderAttributeValueChangeEvent", "ServiceOrderDeleteEvent"
INFO = "ServiceOrderInformationRequiredEvent"
CANCEL_CREATE, CANCEL_STATE = "CancelServiceOrderCreateEvent", "CancelServiceOrderStateChangeEvent"
MILESTONE = "ServiceOrderMilestoneEvent"
# The test listeners run on 127.0.0.1, which the default policy refuses (public addresses
# only): the tests name it explicitly, as an operator would.
FAST = {
    "hub_poll_seconds": 0.02,
    "hub_backoff_base_seconds": 0.02,
    "hub_backoff_max_seconds": 0.2,
    "hub_timeout_seconds": 0.5,
    "hub_allowed_hosts": "127.0.0.1",
}


# ============================================================================ helpers
def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """builders.wait_for, asking every 20 ms (the hub delivers within milliseconds)."""
    return wait_for(check, timeout, 0.02, what or str(check))


class Listener:
    """A real HTTP listener on 127.0.0.1: records every attempt (and every TCP connection,
    and the Host header of every request); `behaviour(body)` says how to answer (an HTTP
    status, or "slow" to answer only after the hub gave up)."""

    def __init__(self, slow_seconds: float = 1.0) -> None:
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.connections = 0
        self.hosts: list[str] = []
        self.attempts: list[tuple[float, str, int | str]] = []  # (time, eventId, answer)
        self.behaviour: Callable[[dict[str, Any]], int | str] = lambda body: 201
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.port = 0
        self.server: http.server.ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = listener.behaviour(body)
                with listener.lock:
                    listener.attempts.append((time.monotonic(), body["eventId"], answer))
                    listener.hosts.append(self.headers["Host"])
                if answer == "slow":
                    time.sleep(listener.slow_seconds)
                    answer = 500
                elif 200 <= int(answer) < 300:
                    with listener.lock:
                        listener.accepted.append((self.path, body))
                try:
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def process_request(self, request: Any, client_address: Any) -> None:
                with listener.lock:
                    listener.connections += 1
                super().process_request(request, client_address)

        server = Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/so"

    def ids(self) -> list[str]:
        with self.lock:
            return [body["eventId"] for _, body in self.accepted]

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, body in self.accepted]


def outbox(settings: Settings) -> list[dict[str, Any]]:
    db = open_read_db(settings)
    try:
        rows = db.fetchall(
            "SELECT event_id, order_id, order_version, event_type, payload "
            "FROM notification_outbox ORDER BY position, seq"
        )
        return [
            {
                "event_id": r[0],
                "order_id": str(r[1]),
                "version": r[2],
                "type": r[3],
                "payload": db.decode(r[4], "json"),
            }
            for r in rows
        ]
    finally:
        db.close()


def per_order(bodies: list[dict[str, Any]]) -> dict[str, list[str]]:
    """eventIds per order, duplicates (at-least-once) removed, in arrival order."""
    found: dict[str, list[str]] = {}
    for body in bodies:
        resource = body["event"].get("serviceOrder") or body["event"]["cancelServiceOrder"]
        order = (
            resource["id"] if "serviceOrder" in body["event"] else resource["serviceOrder"]["id"]
        )
        ids = found.setdefault(order, [])
        if body["eventId"] not in ids:
            ids.append(body["eventId"])
    return found


def expected_per_order(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["order_id"], []).append(row["event_id"])
    return found


def assert_in_order_per_order(bodies: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Every notification arrived (at least once), and per order never out of order."""
    expected = expected_per_order(rows)
    position = {eid: i for ids in expected.values() for i, eid in enumerate(ids)}
    seen: dict[str, int] = {}
    for body in bodies:
        order = next(o for o, ids in expected.items() if body["eventId"] in ids)
        index = position[body["eventId"]]
        # a redelivery may repeat the last one; nothing may come before what came already
        assert index >= seen.get(order, -1), f"order {order} reordered at {body['eventType']}"
        seen[order] = index
    assert per_order(bodies) == expected


# ============================================================================ fixtures
@pytest.fixture
def hub_settings(
    api_settings: Settings, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings for this test's store with fast hub timings (and overrides); the hub's
    tables start empty (the session's PostgreSQL database is shared)."""
    db = open_read_db(api_settings)
    try:
        with db.transaction():
            for table in ("hub_delivery", "hub_subscription", "hub_worker"):
                db.execute(f"DELETE FROM {table}")
    finally:
        db.close()

    def make(**overrides: Any) -> Settings:
        return make_settings(**{**FAST, **overrides})

    return make


@pytest.fixture
def make_client(
    hub_settings: Callable[..., Settings], keys: dict[str, ApiKey]
) -> Iterator[Callable[..., TestClient]]:
    """A TestClient (with the API keys) of an app built from `hub_settings(**overrides)`."""
    opened: list[tuple[TestClient, ApiContext]] = []

    def make(**overrides: Any) -> TestClient:
        settings = hub_settings(**overrides)
        ctx = build_api_context(settings, Authenticator(list(keys.values())))
        client = TestClient(create_app(ctx), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, ctx))
        return client

    yield make
    for client, ctx in reversed(opened):
        client.__exit__(None, None, None)
        ctx.close()


@pytest.fixture
def hub_client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.stop()


@pytest.fixture
def run_worker() -> Iterator[Callable[[Settings], None]]:
    """Start the delivery worker thread (as `serve` does) for the given settings."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def run(settings: Settings) -> None:
        stopping = threading.Event()
        thread = start_worker(settings, lambda: open_read_db(settings), stopping)
        assert thread is not None
        started.append((stopping, thread))

    yield run
    for stopping, _thread in started:
        stopping.set()
    for _, thread in started:
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture
def orders(hub_settings: Callable[..., Settings], actors: Any, samples: Any) -> Iterator[Any]:
    """Drive orders through the application, then project (as the projector would)."""
    settings = hub_settings()
    app = build_application(settings)

    class Orders:
        def __init__(self) -> None:
            self.app: ServiceOrders = app
            self.projector = build_projector(settings)

        def receive(self, external_id: str) -> UUID:
            order_id, _ = id_created(
                app.handle(
                    actors.upstream,
                    cmd.ReceiveOrder(samples.header(external_id), tuple(samples.items())),
                )
            )
            return order_id

        def complete(self, external_id: str, note: bool = True) -> UUID:
            """receive, approve, information round trip, both items done, a note."""
            oid = self.receive(external_id)
            app.handle(actors.manager, cmd.Approve(oid))
            app.handle(actors.fulfilment, cmd.RequestInformation(oid, "which rack?"))
            app.handle(actors.upstream, cmd.ProvideInformation(oid, "rack 7"))
            app.handle(actors.fulfilment, cmd.ChangeItemStates.one(oid, "1", ItemState.COMPLETED))
            app.handle(actors.fulfilment, cmd.ChangeItemStates.one(oid, "2", ItemState.COMPLETED))
            if note:
                app.handle(actors.upstream, cmd.AddNote(oid, "thanks"))
            return oid

        def cancel(self, external_id: str) -> UUID:
            oid = self.receive(external_id)
            app.handle(actors.upstream, cmd.RequestCancellation(oid, reason="changed our mind"))
            app.handle(actors.manager, cmd.ApproveCancellation(oid))
            app.handle(actors.manager, cmd.Cancel(oid))
            return oid

        def project(self) -> None:
            self.projector.catch_up()

    found = Orders()
    yield found
    found.projector.db.close()
    app.close()


def register(
    client: TestClient, headers: dict[str, str], callback: str, query: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"callback": callback}
    if query is not None:
        body["query"] = query
    response = client.post(HUB, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def assert_tmf_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["@type"] == "Error" and body["status"] == str(status)
    assert body["reason"] and body["message"]
    if code is not None:
        assert body["code"] == code
    return body


# ====================================================================== registration
def test_register_read_and_unregister(hub_client: TestClient, auth: Any) -> None:
    response = hub_client.post(
        HUB,
        json={
            "callback": "http://127.0.0.1:9/listener-base",
            "query": "eventType=ServiceOrderCreateEvent",
        },
        headers=auth("integrator"),
    )
    assert response.status_code == 201, response.text
    sub = response.json()
    assert set(sub) == {"id", "callback", "query"}
    assert sub["callback"] == "http://127.0.0.1:9/listener-base"
    assert sub["query"] == "eventType=ServiceOrderCreateEvent"
    assert response.headers["location"].endswith(f"{HUB}/{sub['id']}")

    got = hub_client.get(f"{HUB}/{sub['id']}", headers=auth("integrator"))
    assert got.status_code == 200 and got.json() == sub
    without_query = register(hub_client, auth("integrator"), "http://127.0.0.1:9/x")
    assert "query" not in without_query

    assert hub_client.delete(f"{HUB}/{sub['id']}", headers=auth("integrator")).status_code == 204
    assert_tmf_error(
        hub_client.delete(f"{HUB}/{sub['id']}", headers=auth("integrator")), 404, "not_found"
    )
    assert_tmf_error(hub_client.get(f"{HUB}/{sub['id']}", headers=auth("integrator")), 404)
    assert_tmf_error(hub_client.delete(f"{HUB}/no-such-listener", headers=auth("admin")), 404)


def test_only_the_registrant_or_an_admin_sees_and_removes_a_listener(
    hub_client: TestClient, auth: Any
) -> None:
    sub = register(hub_client, auth("integrator"), "http://127.0.0.1:9/a")
    # another caller's listener is not found; roles without the hub are refused outright
    assert_tmf_error(hub_client.get(f"{HUB}/{sub['id']}", headers=auth("manager")), 404)
    assert_tmf_error(hub_client.delete(f"{HUB}/{sub['id']}", headers=auth("manager")), 404)
    for other in ("agent", "fulfilment", "auditor"):
        assert_tmf_error(
            hub_client.post(HUB, json={"callback": "http://127.0.0.1:9/b"}, headers=auth(other)),
            403,
            "forbidden",
        )
        assert_tmf_error(hub_client.get(f"{HUB}/{sub['id']}", headers=auth(other)), 403)
        assert_tmf_error(hub_client.delete(f"{HUB}/{sub['id']}", headers=auth(other)), 403)
    assert register(hub_client, auth("manager"), "http://127.0.0.1:9/c")
    assert hub_client.get(f"{HUB}/{sub['id']}", headers=auth("admin")).status_code == 200
    assert hub_client.delete(f"{HUB}/{sub['id']}", headers=auth("admin")).status_code == 204


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"query": "eventType=ServiceOrderCreateEvent"}, "invalid_request"),
        ({"callback": ""}, "invalid_request"),
        ({"callback": 42}, "invalid_request"),
        ({"callback": "not a url"}, "invalid_callback"),
        ({"callback": "ftp://127.0.0.1/files"}, "invalid_callback"),
        ({"callback": "javascript:alert(1)"}, "invalid_callback"),
        ({"callback": "http:///no-host"}, "invalid_callback"),
        ({"callback": "http://user:secret@127.0.0.1/l"}, "invalid_callback"),
        ({"callback": "http://127.0.0.1:99999/l"}, "invalid_callback"),
        ({"callback": "http://127.0.0.1/l#frag"}, "invalid_callback"),
        ({"callback": "http://127.0.0.1/a b"}, "invalid_callback"),
        ({"callback": "http://127.0.0.1/\u0001x"}, "invalid_callback"),
        ({"callback": "http://127.0.0.1/\u0000x"}, "invalid_text"),  # NUL: refused for any body
        ({"callback": "http://[::1/x"}, "invalid_callback"),
        ({"callback": "https://example.com/listener"}, "callback_not_allowed"),
        ({"callback": "http://10.0.0.8/listener"}, "callback_not_allowed"),
        ({"callback": "http://169.254.169.254/latest"}, "callback_not_allowed"),
        ({"callback": "http://127.0.0.1/l", "query": "eventType=NoSuchEvent"}, "invalid_query"),
        ({"callback": "http://127.0.0.1/l", "query": "state"}, "invalid_query"),
        ({"callback": "http://127.0.0.1/l", "query": "a b=c"}, "invalid_query"),
    ],
)
def test_registration_refusals_are_tmf_errors(
    hub_client: TestClient, auth: Any, body: dict[str, Any], code: str
) -> None:
    assert_tmf_error(hub_client.post(HUB, json=body, headers=auth("integrator")), 400, code)


def test_registration_needs_a_key_and_json(hub_client: TestClient, auth: Any) -> None:
    assert_tmf_error(hub_client.post(HUB, json={"callback": "http://127.0.0.1/l"}), 401)
    assert_tmf_error(
        hub_client.post(
            HUB,
            content="callback=x",
            headers={**auth("integrator"), "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )
    assert_tmf_error(
        hub_client.post(
            HUB, content="{", headers={**auth("integrator"), "Content-Type": "application/json"}
        ),
        400,
    )


def test_a_configured_allow_list_replaces_loopback(
    make_client: Callable[..., TestClient], auth: Any
) -> None:
    client = make_client(hub_allowed_hosts="*.example.com, partner.net:8443, [::1]")
    headers = auth("integrator")
    for ok in (
        "https://hooks.example.com/tmf",
        "http://a.b.example.com:8080/x",
        "https://partner.net:8443/l",
        "http://[::1]:9000/l",
    ):
        assert client.post(HUB, json={"callback": ok}, headers=headers).status_code == 201, ok
    for refused in (
        "https://example.com/tmf",
        "https://partner.net/l",
        "https://evil-example.com/x",
        "http://127.0.0.1:9000/l",
        "http://localhost/l",
    ):
        assert_tmf_error(
            client.post(HUB, json={"callback": refused}, headers=headers),
            400,
            "callback_not_allowed",
        )


def test_allow_list_and_listener_urls() -> None:
    default = AllowList.parse("")  # public addresses only
    assert default.allows("8.8.8.8", 80) and default.allows("hooks.example.com", 443)
    assert default.allows("2606:4700::1111", 443)
    for refused in (
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "localhost",
        "a.localhost",
        "10.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "::ffff:127.0.0.1",
        "fd00::1",
    ):
        assert not default.allows(refused, 80), refused
    listed = AllowList.parse("*.example.com,api.partner.net:8443,10.1.2.3,*:9999")
    assert listed.allows("x.example.com", 1) and not listed.allows("example.com", 1)
    assert listed.allows("api.partner.net", 8443) and not listed.allows("api.partner.net", 443)
    assert listed.allows("10.1.2.3", 80) and listed.allows("anything.org", 9999)
    assert not listed.allows("10.1.2.4", 80)  # private, and not the one named
    assert not listed.allows("127.0.0.1", 9999)  # `*` never makes loopback callable
    for bad in ("host:notaport", "a_b.example", "[::1", "::1", "*.exa%2fmple.com", "1.2.3.4:0"):
        with pytest.raises(ValueError):
            AllowList.parse(bad)
    explicit = AllowList.parse("127.0.0.1")
    assert check_callback(" http://127.0.0.1:8080/base ", explicit) == "http://127.0.0.1:8080/base"
    assert (
        listener_url("http://h/base/", STATE)
        == "http://h/base/listener/serviceOrderStateChangeEvent"
    )
    assert (
        listener_url("https://h:8443/tmf?tenant=7", CANCEL_CREATE)
        == "https://h:8443/tmf/listener/cancelServiceOrderCreateEvent?tenant=7"
    )
    assert listener_url("http://h", CREATE) == "http://h/listener/serviceOrderCreateEvent"


# ========================================================== safe by default (issue 15)
# With SERVICEORDERS_HUB_ALLOWED_HOSTS empty (the default) the hub calls public addresses
# only; names are checked strictly, and resolved and checked again at each delivery.
NOT_PUBLIC = [
    "http://127.0.0.1:5432/listener",  # the engine's own database
    "http://127.0.0.1/listener",
    "http://127.9.9.9:8080/listener",
    "http://localhost/listener",
    "http://localhost:5432/listener",
    "http://a.localhost/listener",  # RFC 6761: *.localhost is loopback, whatever DNS says
    "http://[::1]/listener",
    "http://[::1]:5432/listener",
    "http://10.0.0.1/listener",
    "http://172.16.0.1/listener",
    "http://192.168.1.1/listener",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/listener",
    "http://0.0.0.0:8080/listener",
    "http://[::]/listener",
    "http://[::ffff:127.0.0.1]/listener",
    "http://[::ffff:7f00:1]:5432/listener",
    "http://[::ffff:169.254.169.254]/latest",
    "http://[64:ff9b::a9fe:a9fe]/latest",
    "http://100.64.0.1/listener",  # CGNAT
    "http://[fd00::1]/listener",
    "http://[fc00::1]/listener",  # unique local
    "http://224.0.0.1/listener",
    "http://[ff02::1]/listener",  # multicast
    "http://240.0.0.1/listener",
    "http://255.255.255.255/listener",  # reserved
    "http://0x7f000001/listener",
    "http://2130706433/listener",
    "http://0177.0.0.1/listener",
    "http://127.1/listener",  # IPv4 spellings: refused as ambiguous
]
CRAFTED_NAMES = [  # against a `*.example.com` allow-list
    "http://evil.test\\.example.com/l",
    "http://evil.test%2f.example.com/l",
    "http://evil.test%2F.example.com/l",
    "http://evil.test;.example.com/l",
    "http://evil.test&.example.com/l",
    "http://evil.test\\@x.example.com/l",
    "http://x.example.com@evil.test/l",
    "http://x.example.com%2f@evil.test/l",
    "http://x.example.com:80@evil.test/l",
    "http://x.example.com./l",
    "http://x_y.example.com/l",
    "http://x.example.com:/l",
    "http://x.example.com:+80/l",
    "http://x.example.com:80:80/l",
    "http://-x.example.com/l",
    "http://" + "a" * 64 + ".example.com/l",  # a label over 63 characters
    "http://" + "a." * 124 + "example.com/l",  # over 253 characters
    "http://\uff58.example.com/l",  # a full-width x: reads as plain "x.example.com"
    "http://x\u3002example.com/l",  # the ideographic full stop
    "http://x.example.com\uff0fevil.test/l",
    "http://x.localhost/l",
]
KINDS = (
    "loopback",
    "private",
    "link-local",
    "unspecified",
    "multicast",
    "reserved",
    "CGNAT",
    "metadata",
    "ambiguous IPv4",
    "loopback name",
)


def _api_process(url: str, allowed: str, keys: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = _process_env(
        DATABASE_URL=url,
        SERVICEORDERS_HUB_ALLOWED_HOSTS=allowed,
        SERVICEORDERS_API_KEYS=",".join(
            f"{actor}:{role}:{key}" for (actor, role), key in keys.items()
        ),
    )
    return _server("api", env)


@pytest.mark.parametrize(
    ("allowed", "callbacks"),
    [("", NOT_PUBLIC), ("*.example.com", CRAFTED_NAMES)],
    ids=["default", "name-pattern"],
)
def test_a_real_server_refuses_non_public_and_crafted_callbacks(
    pg_database: Any, pg_cleaner: Callable[[], None], allowed: str, callbacks: list[str]
) -> None:
    """`serviceorders api` on PostgreSQL: every callback is a 400 TMF Error naming the
    reason, and nothing is stored; a public name is registered, for contrast."""
    pg_cleaner()
    integrator, admin = "integrator-key-" + "1" * 20, "admin-key-" + "2" * 20
    server, base = _api_process(
        pg_database.url(), allowed, {("crm", "integrator"): integrator, ("ops", "admin"): admin}
    )
    try:
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
            _wait_until_up(http, "the API")
            as_crm = {"Authorization": f"Bearer {integrator}"}
            as_ops = {"Authorization": f"Bearer {admin}"}
            for callback in callbacks:
                response = http.post(HUB, json={"callback": callback}, headers=as_crm)
                body = assert_tmf_error(response, 400)
                assert body["code"] in ("callback_not_allowed", "invalid_callback"), callback
                if not allowed and body["code"] == "callback_not_allowed":
                    assert any(kind in body["message"] for kind in KINDS), body["message"]
            assert http.get(ADMIN_HUB, params={"all": "true"}, headers=as_ops).json() == []
            ok = http.post(HUB, json={"callback": "https://Hooks.Example.COM/tmf"}, headers=as_crm)
            assert ok.status_code == 201, ok.text
            assert ok.json()["callback"] == "https://hooks.example.com/tmf"  # canonical
    finally:
        _stop(server)
    with pg_database.connect() as conn:
        stored = conn.execute("SELECT callback FROM hub_subscription").fetchall()
    assert stored == [("https://hooks.example.com/tmf",)]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("127.0.0.1", "loopback"),
        ("127.255.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.31.0.1", "private"),
        ("192.168.0.1", "private"),
        ("::ffff:192.168.0.1", "private"),
        ("fd12:3456::1", "private (unique local)"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "shared (CGNAT, 100.64.0.0/10)"),
        ("169.254.169.254", "cloud metadata"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
    ],
)
def test_address_classes(address: str, kind: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == kind


def test_an_explicit_address_entry_is_honoured_and_nothing_else_is() -> None:
    ip = ipaddress.ip_address
    listed = AllowList.parse("10.0.0.0/8, 127.0.0.1:8080, [::1], *, *.example.com, 169.254.169.254")
    assert listed.refusal(ip("10.9.8.7"), 443) is None
    assert listed.refusal(ip("::ffff:10.9.8.7"), 443) is None  # the same address
    assert listed.refusal(ip("127.0.0.1"), 8080) is None
    assert listed.refusal(ip("127.0.0.1"), 8081) == "loopback"  # another port
    assert listed.refusal(ip("::1"), 1) is None
    assert listed.refusal(ip("192.168.1.1"), 80) == "private"  # `*` does not name it
    assert listed.refusal(ip("169.254.169.254"), 80) == "cloud metadata"  # never
    assert listed.refusal(ip("8.8.8.8"), 80) is None
    with pytest.raises(CallbackError, match="loopback name"):
        check_callback("http://x.localhost/l", AllowList.parse("*.localhost"))


def _resolving(monkeypatch: pytest.MonkeyPatch, name: str, *answers: str) -> list[str]:
    """getaddrinfo answers `name` with each of `answers` in turn (then the last); other
    hosts resolve as usual. Returns the list of every host asked, in order."""
    real = socket.getaddrinfo
    asked: list[str] = []
    left = list(answers)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        asked.append(str(host))
        if host == name:
            answer = left.pop(0) if len(left) > 1 else left[0]
            return real(answer, port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_resolving_to_loopback_at_delivery_is_never_connected_to(
    orders: Any,
    make_client: Callable[..., TestClient],
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a name allowed by pattern (no DNS at registration) resolves to the
    loopback address of a listener at delivery: the hub refuses to connect, shows only
    "refused by policy" and keeps the notification. Named explicitly, the address is
    called, through the one checked resolution (pinned): a later answer does not count."""
    name = "hooks.example.com"
    allowed = f"{name}:{listener.port}"
    client = make_client(hub_allowed_hosts=allowed)
    sub = register(client, auth("integrator"), f"http://{name}:{listener.port}/hooks/so")
    orders.receive("RB-1")
    orders.project()
    asked = _resolving(monkeypatch, name, "127.0.0.1")
    settings = hub_settings(hub_allowed_hosts=allowed, hub_suspend_after_failures=1)
    worker = DeliveryWorker.from_settings(settings, lambda: open_read_db(settings))
    try:
        worker.drain(5)
    finally:
        worker.close()
    assert name in asked
    assert listener.connections == 0 and listener.attempts == []
    db = open_read_db(settings)
    try:
        found = HubStore(db).get(sub["id"])
        assert found is not None
        assert (found["state"], found["last_error"], found["pending"]) == (
            "suspended",
            "refused by policy",
            1,
        )
        assert HubStore(db).resume(sub["id"])
    finally:
        db.close()

    # The operator names the address: delivered to the address checked, with the name as
    # Host; the name's next answer (a private address nobody named) is never used.
    asked = _resolving(monkeypatch, name, "127.0.0.1", "10.255.255.1")
    settings = hub_settings(hub_allowed_hosts=f"{allowed}, 127.0.0.1:{listener.port}")
    worker = DeliveryWorker.from_settings(settings, lambda: open_read_db(settings))
    try:
        worker.drain(5)
    finally:
        worker.close()
    assert len(listener.accepted) == 1
    assert listener.hosts == [f"{name}:{listener.port}"]
    assert asked.count(name) == 1  # one resolution for the round; httpx never resolved it


def _certificate(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (and its key), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "listener.pem", directory / "listener.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_callbacks_connect_to_the_checked_address_and_verify_the_name(
    orders: Any,
    hub_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """https to a name: the connection goes to the checked address, the name travels as
    TLS server name (SNI) and Host, and the certificate is verified against the name: a
    name the certificate does not cover is not delivered to (and shows `unreachable`)."""
    name, other = "hooks.example.com", "other.example.com"
    cert_file, key_file = _certificate(name, tmp_path)
    listener = Listener()
    server_names: list[str | None] = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    tls.sni_callback = lambda sock, server_name, context: server_names.append(server_name)
    assert listener.server is not None
    listener.server.socket = tls.wrap_socket(listener.server.socket, server_side=True)
    try:
        port = listener.port
        allowed = f"*.example.com:{port}, 127.0.0.1:{port}"
        settings = hub_settings(hub_allowed_hosts=allowed, hub_suspend_after_failures=1)
        db = open_read_db(settings)
        try:
            good = HubStore(db).register(f"https://{name}:{port}/hooks/so", None, "crm")
            bad = HubStore(db).register(f"https://{other}:{port}/hooks/so", None, "crm")
        finally:
            db.close()
        orders.receive("TLS-1")
        orders.project()
        real = socket.getaddrinfo
        monkeypatch.setattr(
            socket,
            "getaddrinfo",
            lambda host, *a, **kw: real("127.0.0.1" if host in (name, other) else host, *a, **kw),
        )
        config = replace(
            HubConfig.from_settings(settings),
            verify=ssl.create_default_context(cafile=str(cert_file)),
        )
        worker = DeliveryWorker(config, lambda: open_read_db(settings))
        try:
            worker.drain(5)
        finally:
            worker.close()
        assert len(listener.accepted) == 1 and listener.hosts == [f"{name}:{port}"]
        assert name in server_names and other in server_names  # both tried, by name
        db = open_read_db(settings)
        try:
            found = {s["id"]: s for s in HubStore(db).list()}
        finally:
            db.close()
        assert (found[good["id"]]["delivered"], found[good["id"]]["last_error"]) == (1, None)
        assert (found[bad["id"]]["delivered"], found[bad["id"]]["last_error"]) == (0, "unreachable")
    finally:
        listener.stop()


def test_last_error_never_says_more_than_unreachable(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
) -> None:
    """A closed port and a listener that never answers in time look the same to whoever
    reads the admin view or `hub list`: "unreachable" (the log has the detail)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    slow = Listener(slow_seconds=1.5)
    slow.behaviour = lambda body: "slow"
    try:
        subs = [
            register(hub_client, auth("integrator"), f"http://127.0.0.1:{closed}/l"),
            register(hub_client, auth("integrator"), slow.url),
        ]
        settings = hub_settings(hub_timeout_seconds=0.3, hub_suspend_after_failures=1)
        run_worker(settings)
        orders.receive("LE-1")
        orders.project()

        def shown() -> dict[str, dict[str, Any]]:
            view = hub_client.get(ADMIN_HUB, headers=auth("admin"))
            return {s["id"]: s for s in view.json()}

        eventually(
            lambda: all(s["state"] == "suspended" for s in shown().values()),
            what="both listeners to fail",
        )
        assert slow.attempts  # the slow one was reached, and timed out
        assert [shown()[sub["id"]]["lastError"] for sub in subs] == ["unreachable"] * 2
        url = (
            f"sqlite:///{settings.database.dbname}"
            if settings.database.kind == "sqlite"
            else settings.database.url(with_password=True)
        )
        listed = CliRunner().invoke(cli, ["--database-url", url, "hub", "list"])
        assert listed.exit_code == 0, listed.output
        assert listed.output.count("last error: unreachable") == 2, listed.output
        db = open_read_db(settings)
        try:
            errors = {r[0] for r in db.fetchall("SELECT last_error FROM hub_delivery")}
            assert errors == {"unreachable"}
            with db.transaction():  # a row written by an older version, with the detail
                db.execute(
                    "UPDATE hub_subscription SET last_error = %s",
                    ("ConnectError: [Errno 111] Connection refused",),
                )
        finally:
            db.close()
        assert {s["lastError"] for s in shown().values()} == {"unreachable"}
    finally:
        slow.stop()


def test_event_ids_are_a_fixed_derivation() -> None:
    order = UUID("00000000-0000-0000-0000-000000000001")
    # A regression lock: listeners and the Kafka outbound topic deduplicate on these.
    assert notification_event_id(order, 2, CREATE) == "51d97ab4-6119-5ca7-8ae6-5aad5c863b77"
    assert notification_event_id(str(order), 2, CREATE) == notification_event_id(order, 2, CREATE)
    assert len(
        {notification_event_id(order, v, t) for v in (2, 3) for t in EVENT_TYPES}
    ) == 2 * len(EVENT_TYPES)


def test_query_grammar() -> None:
    body = {
        "eventType": STATE,
        "event": {
            "serviceOrder": {
                "id": "o1",
                "state": "completed",
                "priority": "1",
                "relatedParty": [{"id": "C1"}],
                "serviceOrderItem": [{"state": "completed"}, {"state": "failed"}],
            }
        },
    }
    cancel = {"eventType": CANCEL_STATE, "event": {"cancelServiceOrder": {"state": "done"}}}
    assert Filter.parse(None).matches(body) and Filter.parse("  ").matches(cancel)
    assert Filter.parse(f"eventType={CREATE},{STATE}").matches(body)
    assert Filter.parse("eventType=serviceorderstatechangeevent").matches(body)
    assert not Filter.parse(f"eventType={CREATE}").matches(body)
    assert Filter.parse("state=completed").matches(body)
    assert Filter.parse("state=failed,completed&priority=1").matches(body)
    assert not Filter.parse("state=completed&priority=2").matches(body)
    assert Filter.parse("event.serviceOrder.state=completed").matches(body)
    assert Filter.parse("serviceOrderItem.state=failed").matches(body)  # any item
    assert Filter.parse("relatedParty.id=C1").matches(body)
    assert not Filter.parse("relatedParty.id=C2").matches(body)
    assert not Filter.parse("missing=x").matches(body)
    assert Filter.parse("state=done").matches(cancel)
    assert not Filter.parse("serviceOrder.state=done").matches(cancel)
    assert Filter.parse("cancelServiceOrder.state=done").matches(cancel)
    for bad in ("eventType=Nope", "state", "=x", "state=", "a..b=c", "x" * 1001):
        with pytest.raises(QueryError):
            Filter.parse(bad)


def test_backoff_doubles_up_to_the_maximum() -> None:
    config = HubConfig(backoff_base=0.5, backoff_max=3.0)
    assert [config.backoff(n).total_seconds() for n in range(1, 7)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
        3.0,
    ]
    assert config.backoff(10_000) == timedelta(seconds=3.0)


# ============================================================================ outbox
def test_drafts_produce_no_notifications(
    orders: Any, actors: Any, samples: Any, hub_settings: Callable[..., Settings]
) -> None:
    app = orders.app
    kept = app.handle(actors.agent, cmd.DraftOrder(OrderHeader(external_id="D-1"))).order.id
    app.handle(actors.agent, cmd.AddLine(kept, samples.internet_item("1")))
    discarded = app.handle(actors.agent, cmd.DraftOrder(OrderHeader(external_id="D-2"))).order.id
    app.handle(actors.agent, cmd.Delete(discarded))
    orders.project()
    assert outbox(hub_settings()) == []
    app.handle(actors.agent, cmd.Submit(kept))  # submitted: now it is a TMF641 order
    orders.project()
    assert [(r["order_id"], r["type"], r["version"]) for r in outbox(hub_settings())] == [
        (str(kept), CREATE, 3)
    ]


def test_the_outbox_is_exactly_once_rebuildable_and_verifiable(
    orders: Any, hub_settings: Callable[..., Settings]
) -> None:
    settings = hub_settings()
    done = orders.complete("EO-1")
    cancelled = orders.cancel("EO-2")
    db = open_read_db(settings)
    try:
        # pages of one event: a received order's two events land in different pages
        outbox_only = [p for p in (NotificationOutbox(),)]
        small = Projector(db, event_mapper(), outbox_only, batch_size=1)
        while small.run_once():
            pass
        orders.project()  # the other projections; the outbox is already at the head
        first = outbox(settings)
        assert verify(db, event_mapper(), ["notification_outbox"]) == []
        rebuild(db, event_mapper(), ["notification_outbox"])
        assert outbox(settings) == first
        orders.project()
        assert outbox(settings) == first  # nothing applied twice
    finally:
        db.close()
    # the same derivation, from each order's history alone
    for oid in (done, cancelled):
        derived = [n["eventId"] for n in notifications_of(orders.app.history(oid))]
        assert derived == [r["event_id"] for r in first if r["order_id"] == str(oid)]
    for row in first:
        assert row["event_id"] == notification_event_id(
            row["order_id"], row["version"], row["type"]
        )
        assert row["payload"]["eventId"] == row["event_id"]


# ========================================================================== delivery
def test_a_real_listener_receives_the_lifecycle_in_order(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
    actors: Any,
) -> None:
    before = orders.receive("EARLY")  # before the registration: not for this listener
    orders.project()
    sub = register(hub_client, auth("integrator"), listener.url)
    run_worker(hub_settings(public_base_url="https://so.example.net/"))

    done = orders.complete("LC-1")
    orders.app.handle(actors.manager, cmd.Delete(done))
    cancelled = orders.cancel("LC-2")
    orders.project()
    rows = outbox(hub_settings())
    mine = [r for r in rows if r["order_id"] != str(before)]
    eventually(lambda: len(listener.accepted) >= len(mine), what="every notification")
    time.sleep(0.1)  # nothing more arrives
    bodies = listener.bodies()
    assert [b["eventId"] for b in bodies] == [r["event_id"] for r in mine]  # exactly, in order

    def types(oid: UUID) -> list[str]:
        return [
            b["eventType"]
            for b in bodies
            if (b["event"].get("serviceOrder") or b["event"]["cancelServiceOrder"]["serviceOrder"])[
                "id"
            ]
            == str(oid)
        ]

    # Issue 19: the approval and each completed item are milestones (after their change).
    assert types(done) == [
        CREATE,
        STATE,
        MILESTONE,
        STATE,
        INFO,
        STATE,
        AVC,
        MILESTONE,
        AVC,
        MILESTONE,
        STATE,
        AVC,
        DELETE,
    ]
    assert types(cancelled) == [
        CREATE,
        CANCEL_CREATE,
        STATE,
        CANCEL_STATE,
        STATE,
        CANCEL_STATE,
        STATE,
    ]
    states = [
        b["event"]["serviceOrder"]["state"]
        for b in bodies
        if b["eventType"] == STATE and b["event"]["serviceOrder"]["id"] == str(done)
    ]
    assert states == ["inProgress", "pending", "inProgress", "completed"]
    cancel_states = [
        b["event"]["cancelServiceOrder"]["state"]
        for b in bodies
        if b["eventType"] in (CANCEL_CREATE, CANCEL_STATE)
    ]
    assert cancel_states == ["accepted", "inProgress", "done"]

    history = {oid: orders.app.history(oid) for oid in (done, cancelled)}
    for path, body in listener.accepted:
        event_type = body["eventType"]
        assert path == f"/hooks/so/listener/{event_type[0].lower()}{event_type[1:]}"
        assert set(body) >= {"eventId", "eventTime", "eventType", "correlationId", "event"}
        resource = body["event"].get("serviceOrder") or body["event"]["cancelServiceOrder"]
        assert resource["href"].startswith("https://so.example.net/tmf-api/serviceOrdering/v4/")
        oid = UUID(
            resource["id"] if "serviceOrder" in body["event"] else resource["serviceOrder"]["id"]
        )
        version = next(r["version"] for r in mine if r["event_id"] == body["eventId"])
        event = history[oid][version - 1]
        assert body["eventId"] == notification_event_id(oid, version, event_type)
        assert body["correlationId"] == event.correlation_id
        assert body["eventTime"] == event.timestamp.isoformat().replace("+00:00", "Z")
    info = next(b for b in bodies if b["eventType"] == INFO)
    assert info["description"] == "which rack?"
    avc = [b["fieldPath"] for b in bodies if b["eventType"] == AVC]
    assert avc == ["serviceOrderItem", "serviceOrderItem", "note"]

    db = open_read_db(hub_settings())
    try:  # recorded just after the listener answered
        found = eventually(
            lambda: next((s for s in HubStore(db).list() if s["delivered"] == len(mine)), None)
        )
    finally:
        db.close()
    assert (
        found["id"],
        found["state"],
        found["pending"],
        found["delivered"],
        found["failures"],
    ) == (sub["id"], "active", 0, len(mine), 0)


def test_a_listener_is_told_the_rejection_reason_and_the_failed_items(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
    actors: Any,
) -> None:
    """Issue 19: the state-change notifications carry the order's `errorMessage`, the same
    as the TMF641 document (GET, the order_document read model)."""
    register(hub_client, auth("integrator"), listener.url)
    run_worker(hub_settings())
    rejected = orders.receive("ERR-1")
    orders.app.handle(actors.manager, cmd.Reject(rejected, "no coverage at the site"))
    failed = orders.receive("ERR-2")
    orders.app.handle(actors.manager, cmd.Approve(failed))
    for item_id in ("1", "2"):
        orders.app.handle(
            actors.fulfilment,
            cmd.ChangeItemStates.one(failed, item_id, ItemState.FAILED, "port faulty"),
        )
    orders.project()
    rows = outbox(hub_settings())
    eventually(lambda: len(listener.accepted) >= len(rows), what="every notification")

    told = {
        (b["event"]["serviceOrder"]["id"], b["event"]["serviceOrder"]["state"]): b["event"][
            "serviceOrder"
        ]
        for b in listener.bodies()
        if b["eventType"] == STATE
    }
    (rejection,) = told[(str(rejected), "rejected")]["errorMessage"]
    assert (rejection["code"], rejection["message"]) == ("rejected", "no coverage at the site")
    (failure,) = told[(str(failed), "failed")]["errorMessage"]
    assert failure["code"] == "item_failed"
    assert [ref["itemId"] for ref in failure["serviceOrderItem"]] == ["1", "2"]
    assert "errorMessage" not in told[(str(failed), "inProgress")]  # before any failure
    db = open_read_db(hub_settings())
    try:
        for oid, state in ((rejected, "rejected"), (failed, "failed")):
            row = db.fetchone(
                "SELECT document FROM order_document WHERE order_id = %s",
                (db.adapt(oid, "uuid"),),
            )
            assert row is not None
            document = db.decode(row[0], "json")
            assert told[(str(oid), state)]["errorMessage"] == document["errorMessage"]
    finally:
        db.close()


def test_failures_are_retried_with_backoff_and_nothing_is_lost_or_reordered(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
) -> None:
    listener = Listener(slow_seconds=0.6)
    try:
        register(hub_client, auth("integrator"), listener.url)
        count = {"n": 0}

        def flaky(body: dict[str, Any]) -> int | str:
            count["n"] += 1
            if count["n"] <= 4:
                return 500
            if count["n"] <= 6:
                return "slow"  # the hub times out (0.3 s)
            return 201

        listener.behaviour = flaky
        orders.complete("FL-1", note=False)
        orders.cancel("FL-2")
        orders.project()
        rows = outbox(hub_settings())
        run_worker(
            hub_settings(
                hub_timeout_seconds=0.3, hub_suspend_after_failures=0, hub_suspend_after_seconds=0
            )
        )
        eventually(lambda: count["n"] >= 6, what="the failing attempts")
        listener.stop()  # connection refused for a while
        time.sleep(0.6)
        listener.start()  # same port: recovered
        eventually(lambda: len(set(listener.ids())) >= len(rows), what="recovery")
        orders.complete("FL-3", note=False)  # and new events keep flowing
        orders.project()
        rows = outbox(hub_settings())
        eventually(lambda: len(set(listener.ids())) >= len(rows), what="new events")
        assert_in_order_per_order(listener.bodies(), rows)

        # the first notification was attempted again and again, ever more slowly
        first = rows[0]["event_id"]
        times = [t for t, eid, _ in listener.attempts if eid == first]
        assert len(times) >= 3
        config = HubConfig(
            backoff_base=FAST["hub_backoff_base_seconds"],
            backoff_max=FAST["hub_backoff_max_seconds"],
        )
        for n, (a, b) in enumerate(itertools.pairwise(times), start=1):
            assert b - a >= config.backoff(n).total_seconds() * 0.9
        db = open_read_db(hub_settings())
        try:
            attempts = db.fetchone(
                "SELECT attempts FROM hub_delivery WHERE event_id = %s", (first,)
            )
            # the worker records a round just after the listener answered it
            sub = eventually(
                lambda: next((s for s in HubStore(db).list() if s["pending"] == 0), None),
                what="recorded",
            )
        finally:
            db.close()
        assert attempts is not None and attempts[0] >= 3
        assert sub["state"] == "active" and sub["failures"] == 0
    finally:
        listener.stop()


def test_a_failing_notification_holds_back_its_order_only(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
    actors: Any,
) -> None:
    register(hub_client, auth("integrator"), listener.url)
    blocked = orders.receive("HB-1")
    free = orders.receive("HB-2")
    broken = {"on": True}

    def refuse_blocked(body: dict[str, Any]) -> int:
        resource = body["event"].get("serviceOrder") or {}
        return 500 if broken["on"] and resource.get("id") == str(blocked) else 201

    listener.behaviour = refuse_blocked
    run_worker(hub_settings(hub_suspend_after_failures=0, hub_suspend_after_seconds=0))
    orders.app.handle(actors.manager, cmd.Approve(blocked))
    orders.app.handle(actors.manager, cmd.Approve(free))
    orders.project()
    rows = outbox(hub_settings())
    expected = expected_per_order(rows)
    eventually(
        lambda: per_order(listener.bodies()).get(str(free)) == expected[str(free)],
        what="the other order",
    )
    eventually(
        lambda: sum(1 for _, e, _a in listener.attempts if e == expected[str(blocked)][0]) >= 3,
        what="retries",
    )
    assert str(blocked) not in per_order(listener.bodies())  # its later one waits too
    broken["on"] = False
    eventually(
        lambda: per_order(listener.bodies()).get(str(blocked)) == expected[str(blocked)],
        what="the blocked order, once the listener accepts it",
    )
    assert_in_order_per_order(listener.bodies(), rows)


def test_a_listener_failing_too_often_is_suspended_then_resumed_with_its_backlog(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
    actors: Any,
) -> None:
    sub = register(hub_client, auth("integrator"), listener.url)
    listener.behaviour = lambda body: 503
    settings = hub_settings(hub_suspend_after_failures=3)
    run_worker(settings)
    orders.receive("SU-1")
    orders.receive("SU-2")
    orders.project()

    def state() -> dict[str, Any]:
        db = open_read_db(settings)
        try:
            found = HubStore(db).get(sub["id"])
        finally:
            db.close()
        assert found is not None
        return found

    eventually(lambda: state()["state"] == "suspended", what="suspension")
    attempts = len(listener.attempts)
    assert attempts == 3
    # suspended: the backlog grows, nothing is attempted, nothing dropped
    oid = orders.receive("SU-3")
    orders.app.handle(actors.manager, cmd.Approve(oid))
    orders.project()
    rows = outbox(settings)
    eventually(lambda: state()["pending"] == len(rows), what="the backlog to be kept")
    time.sleep(0.2)
    assert len(listener.attempts) == attempts and listener.accepted == []

    view = hub_client.get(ADMIN_HUB, headers=auth("admin"))
    assert view.status_code == 200
    (shown,) = view.json()
    assert (
        shown["id"],
        shown["state"],
        shown["pending"],
        shown["consecutiveFailures"],
        shown["lastError"],
    ) == (sub["id"], "suspended", len(rows), 3, "HTTP 503")
    assert shown["suspendedAt"] and shown["oldestPendingAt"]
    assert_tmf_error(hub_client.get(ADMIN_HUB, headers=auth("manager")), 403)
    assert_tmf_error(
        hub_client.post(f"{ADMIN_HUB}/{sub['id']}/resume", headers=auth("integrator")), 403
    )

    url = (
        f"sqlite:///{settings.database.dbname}"
        if settings.database.kind == "sqlite"
        else settings.database.url(with_password=True)
    )
    runner = CliRunner()
    listed = runner.invoke(cli, ["--database-url", url, "hub", "list"])
    assert listed.exit_code == 0, listed.output
    assert sub["id"] in listed.output and "suspended" in listed.output
    assert f"pending {len(rows)}" in listed.output and "HTTP 503" in listed.output
    as_json = json.loads(
        runner.invoke(cli, ["--database-url", url, "hub", "list", "--json"]).output
    )
    assert as_json[0]["state"] == "suspended"

    listener.behaviour = lambda body: 204  # the listener is fixed
    resumed = runner.invoke(cli, ["--database-url", url, "hub", "resume", sub["id"]])
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(rows)} pending" in resumed.output
    eventually(lambda: len(listener.accepted) >= len(rows), what="the backlog")
    assert listener.ids() == [r["event_id"] for r in rows]  # all of it, in log order
    eventually(lambda: state()["pending"] == 0, what="the backlog recorded as delivered")
    assert state()["state"] == "active"
    refused = runner.invoke(cli, ["--database-url", url, "hub", "resume", "nope"])
    assert refused.exit_code == 1


def test_suspension_after_failing_for_too_long_and_resume_by_api(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
) -> None:
    sub = register(hub_client, auth("integrator"), listener.url)
    listener.behaviour = lambda body: 500
    settings = hub_settings(hub_suspend_after_failures=0, hub_suspend_after_seconds=0.3)
    run_worker(settings)
    orders.receive("ST-1")
    orders.project()

    def shown() -> dict[str, Any]:
        (found,) = hub_client.get(ADMIN_HUB, headers=auth("admin")).json()
        return found

    eventually(lambda: shown()["state"] == "suspended", what="suspension by time")
    listener.behaviour = lambda body: 200
    resumed = hub_client.post(f"{ADMIN_HUB}/{sub['id']}/resume", headers=auth("admin"))
    assert resumed.status_code == 200 and resumed.json()["state"] == "active"
    eventually(
        lambda: len(listener.accepted) == 1 and shown()["pending"] == 0,
        what="the backlog after resume",
    )
    assert_tmf_error(hub_client.post(f"{ADMIN_HUB}/nope/resume", headers=auth("admin")), 404)


def test_query_filters_what_a_listener_receives(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
) -> None:
    completed, creations = Listener(), Listener()
    try:
        register(
            hub_client, auth("integrator"), completed.url, f"eventType={STATE}&state=completed"
        )
        register(
            hub_client, auth("integrator"), creations.url, f"eventType={CREATE},{CANCEL_CREATE}"
        )
        run_worker(hub_settings())
        done = orders.complete("QF-1")
        cancelled = orders.cancel("QF-2")
        orders.project()
        rows = outbox(hub_settings())
        want_creations = [r["event_id"] for r in rows if r["type"] in (CREATE, CANCEL_CREATE)]
        eventually(
            lambda: len(completed.accepted) >= 1 and len(creations.accepted) >= len(want_creations),
            what="filtered",
        )
        time.sleep(0.15)
        assert [(b["eventType"], b["event"]["serviceOrder"]["id"]) for b in completed.bodies()] == [
            (STATE, str(done))
        ]
        assert creations.ids() == want_creations
        assert {b["eventType"] for b in creations.bodies()} == {CREATE, CANCEL_CREATE}
        assert str(cancelled) in json.dumps(creations.bodies())
    finally:
        completed.stop()
        creations.stop()


def test_unregistered_and_disallowed_listeners_are_not_called(
    orders: Any,
    make_client: Callable[..., TestClient],
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
) -> None:
    client = make_client()
    gone = register(client, auth("integrator"), listener.url)
    assert client.delete(f"{HUB}/{gone['id']}", headers=auth("integrator")).status_code == 204
    # allowed at registration (127.0.0.1 named), but the worker runs with the default
    # policy (public addresses only): it refuses to connect
    kept = register(client, auth("integrator"), listener.url)
    worker_settings = hub_settings(hub_allowed_hosts="", hub_suspend_after_failures=2)
    run_worker(worker_settings)
    orders.receive("AL-1")
    orders.project()

    def found() -> dict[str, Any]:
        db = open_read_db(worker_settings)
        try:
            return {s["id"]: s for s in HubStore(db).list(include_deleted=True)}
        finally:
            db.close()

    eventually(lambda: found()[kept["id"]]["state"] == "suspended", what="refusal")
    assert listener.attempts == [] and listener.connections == 0
    assert found()[kept["id"]]["last_error"] == "refused by policy"
    assert found()[kept["id"]]["pending"] == 1  # kept, not dropped
    assert found()[gone["id"]]["state"] == "deleted"


def test_one_worker_at_a_time_and_a_clean_handover(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
) -> None:
    settings = hub_settings()
    register(hub_client, auth("integrator"), listener.url)
    orders.receive("LW-1")
    orders.project()
    first = DeliveryWorker.from_settings(settings, lambda: open_read_db(settings))
    second = DeliveryWorker.from_settings(settings, lambda: open_read_db(settings))
    try:
        first.drain(5)
        assert len(listener.accepted) == 1
        orders.receive("LW-2")
        orders.project()
        second.drain(1)  # the first holds the lease: the second stands by
        assert len(listener.accepted) == 1
    finally:
        first.close()  # hands the lease over at once
    try:
        second.drain(5)
        assert len(listener.accepted) == 2
    finally:
        second.close()
    assert len(set(listener.ids())) == 2


def test_init_database_creates_the_hub_tables(hub_settings: Callable[..., Settings]) -> None:
    settings = hub_settings()
    assert any("hub" in line for line in init_database(settings))  # idempotent
    db = open_read_db(settings)
    try:
        for table in ("hub_subscription", "hub_delivery", "hub_worker", "notification_outbox"):
            assert db.table_exists(table)
    finally:
        db.close()


# ===================================================================== the processes
def _process_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("SERVICEORDERS_")
    }
    return {**env, "SERVICEORDERS_HUB_POLL": "0.05", **extra}


def _executable() -> str:
    exe = shutil.which("serviceorders")
    assert exe, "the serviceorders console script is not installed"
    return exe


def _server(
    command: str, env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`serviceorders <command> --port <a free port>` (api, serve) started, and its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [_executable(), command, "--port", str(port)],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_until_up(http: httpx.Client, what: str) -> None:
    def up() -> bool:
        try:
            return http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    eventually(up, timeout=30, what=f"{what} to answer")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


def test_serve_delivers_to_listeners_registered_through_its_api(
    tmp_path: Path, listener: Listener
) -> None:
    allowed = f"127.0.0.1:{listener.port}"
    server, base = _server("serve", _process_env(SERVICEORDERS_HUB_ALLOWED_HOSTS=allowed), tmp_path)
    try:
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
            _wait_until_up(http, "serve")
            sub = http.post(HUB, json={"callback": listener.url})
            assert sub.status_code == 201, sub.text
            order = http.post(
                "/tmf-api/serviceOrdering/v4/serviceOrder",
                json={
                    "externalId": "SERVE-1",
                    "serviceOrderItem": [tmf_item("1", "managed-router", {"id": "S1"})],
                },
            )
            assert order.status_code == 201, order.text
            order_id = order.json()["id"]
            eventually(lambda: listener.accepted, what="the create notification")
            ((path, body),) = listener.accepted
            assert path == "/hooks/so/listener/serviceOrderCreateEvent"
            assert body["eventId"] == notification_event_id(order_id, 2, CREATE)
            assert body["event"]["serviceOrder"]["id"] == order_id
    finally:
        _stop(server)


def test_project_runs_the_delivery_worker(
    settings: Settings, listener: Listener, actors: Any, samples: Any
) -> None:
    init_database(settings)
    db = open_read_db(settings)
    try:
        with db.transaction():
            for table in ("hub_delivery", "hub_subscription", "hub_worker"):
                db.execute(f"DELETE FROM {table}")
        HubStore(db).register(listener.url, None, "ops")
    finally:
        db.close()
    app = build_application(settings)
    try:
        order_id, _ = id_created(
            app.handle(
                actors.upstream, cmd.ReceiveOrder(samples.header("PROJ-1"), tuple(samples.items()))
            )
        )
    finally:
        app.close()
    url = (
        f"sqlite:///{settings.database.dbname}"
        if settings.database.kind == "sqlite"
        else settings.database.url(with_password=True)
    )
    projector = subprocess.Popen(
        [_executable(), "project"],
        env=_process_env(
            DATABASE_URL=url, SERVICEORDERS_HUB_ALLOWED_HOSTS=f"127.0.0.1:{listener.port}"
        ),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        eventually(lambda: listener.accepted, timeout=30, what="the create notification")
        assert listener.ids() == [notification_event_id(order_id, 2, CREATE)]
    finally:
        _stop(projector)

"""Console sessions against real server processes on PostgreSQL (`serviceorders api
--workers 2`, new connections per request so that both workers answer): a cookie replayed
after sign-out is refused by every worker and after a restart, an idle session ends, a
malformed CSRF token is a 403 page (issue 15)."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from serviceorders.bootstrap import open_read_db
from serviceorders.projections.queries import OrderFilter, ReadModels
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

COOKIE = "serviceorders_console"
REPLAYS = 12  # each a new connection: the two workers take turns


@pytest.fixture
def api_server(start_api: Any) -> Any:
    """`serviceorders api --workers 2` on `url` (the conftest's `start_api`) with only the
    given settings of ours (none of this environment's); a context that stops it with
    SIGTERM at its end and asserts a clean exit. Yields its origin (http://host:port)."""

    @contextmanager
    def run(url: str, **settings: str) -> Iterator[str]:
        ours = tuple(k for k in os.environ if k.startswith("SERVICEORDERS_") and k not in settings)
        server = start_api(url, "--workers", "2", env=settings, unset=ours)
        try:
            yield server.base
        finally:
            server.stop()
        assert server.process.returncode == 0, server.output()[-2000:]

    return run


def browser() -> httpx.Client:
    """Keeps cookies; a new connection per request."""
    return httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def token_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(client: httpx.Client, console: str, key: str) -> str:
    """Signs in; returns the CSRF token of the new session (from the draft form)."""
    token = token_of(client.get(f"{console}/console/signin").text)
    signed = client.post(f"{console}/console/signin", data={"key": key, "csrf": token})
    assert signed.status_code == 303, signed.text[:500]
    page = client.get(f"{console}/console/drafts/new")
    assert page.status_code == 200, page.text[:500]
    return token_of(page.text)


def replay(
    console: str, cookie: str, method: str, path: str, data: dict[str, str] | None = None
) -> httpx.Response:
    """One request from a client that holds only `cookie` (a new connection)."""
    with httpx.Client(timeout=10, cookies={COOKIE: cookie}) as client:
        return client.request(method, f"{console}{path}", data=data)


def drafts_of(url: str, customer: str) -> int:
    db = open_read_db(Settings.from_env({"DATABASE_URL": url}))
    try:
        return (
            ReadModels(db).search_orders(OrderFilter(customer=customer, include_drafts=True)).total
        )
    finally:
        db.close()


def assert_refused(console: str, cookie: str, token: str, customer: str, reason: str) -> None:
    for _ in range(REPLAYS):
        page = replay(console, cookie, "GET", "/console/orders")
        assert page.status_code == 303, (page.status_code, page.text[:300])
        assert page.headers["location"].startswith("/console/signin?")
        assert f"ended={reason}" in page.headers["location"]
        form = replay(
            console, cookie, "POST", "/console/drafts", {"csrf": token, "customerId": customer}
        )
        assert form.status_code == 303, (form.status_code, form.text[:300])
        assert f"ended={reason}" in form.headers["location"]


@pytest.fixture
def url(pg_database: Any) -> str:
    return pg_database.url()


def test_a_cookie_replayed_after_sign_out_is_refused_by_every_worker_and_after_a_restart(
    url: str, api_server: Any
) -> None:
    agent, manager = f"agent-{secrets.token_hex(16)}", f"manager-{secrets.token_hex(16)}"
    settings = {
        "SERVICEORDERS_API_KEYS": f"alice:agent:{agent},bob:manager:{manager}",
        # One secret across the restart: what refuses the cookie is its ended
        # session, not a new signing secret.
        "SERVICEORDERS_CONSOLE_SECRET": secrets.token_urlsafe(40),
    }
    live, stays = f"C-LIVE-{secrets.token_hex(4)}", f"C-REPLAY-{secrets.token_hex(4)}"
    with api_server(url, **settings) as console, browser() as alice, browser() as bob:
        token = sign_in(alice, console, agent)
        bob_token = sign_in(bob, console, manager)
        cookie = alice.cookies[COOKIE]
        for _ in range(REPLAYS):  # the session holds on both workers
            page = replay(console, cookie, "GET", "/console/orders")
            assert page.status_code == 200 and "alice" in page.text, page.text[:300]
        created = replay(
            console, cookie, "POST", "/console/drafts", {"csrf": token, "customerId": live}
        )
        assert created.status_code == 303, created.text[:300]
        assert created.headers["location"].startswith("/console/drafts/")
        assert drafts_of(url, live) == 1

        out = alice.post(f"{console}/console/signout", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"].endswith("signed_out=1")
        assert_refused(console, cookie, token, stays, "signed_out")
        signin = httpx.get(f"{console}/console/signin?ended=signed_out").text
        assert "That session was signed out. Please sign in again." in signin

    with api_server(url, **settings) as console:
        assert_refused(console, cookie, token, stays, "signed_out")
        # Bob never signed out: his session outlived the restart.
        page = replay(console, bob.cookies[COOKIE], "GET", "/console/queue")
        assert page.status_code == 200 and "bob" in page.text, page.text[:300]
        # A malformed CSRF token is a 403 page, never a 500.
        for bad in ("é" * len(bob_token), "\u2603", bob_token[:-1] + "\u00ff", "x" * 3000):
            refused = replay(
                console,
                bob.cookies[COOKIE],
                "POST",
                "/console/drafts",
                {"csrf": bad, "customerId": stays},
            )
            assert refused.status_code == 403, (bad[:10], refused.status_code)
            assert refused.headers["content-type"].startswith("text/html")
            assert "CSRF token is missing or wrong" in refused.text
    assert drafts_of(url, stays) == 0


def test_a_session_idle_for_longer_than_the_setting_ends(url: str, api_server: Any) -> None:
    agent = f"agent-{secrets.token_hex(16)}"
    idle_seconds = 6
    with (
        api_server(
            url,
            SERVICEORDERS_API_KEYS=f"alice:agent:{agent}",
            SERVICEORDERS_CONSOLE_IDLE_MINUTES=str(idle_seconds / 60),
        ) as console,
        browser() as alice,
    ):
        sign_in(alice, console, agent)
        cookie = alice.cookies[COOKIE]
        # Requests a second apart for longer than the idle time: the session stays open.
        started = time.monotonic()
        while time.monotonic() - started < idle_seconds * 1.5:
            page = replay(console, cookie, "GET", "/console/orders")
            assert page.status_code == 200, page.headers.get("location")
            time.sleep(1)
        time.sleep(idle_seconds + 1)
        page = replay(console, cookie, "GET", "/console/orders")
        assert page.status_code == 303 and "ended=idle" in page.headers["location"]
        shown = httpx.get(f"{console}{page.headers['location']}").text
        assert "Your session ended after 6 seconds without activity" in shown
        for _ in range(4):  # and it stays ended on both workers
            assert (
                "ended=idle"
                in replay(console, cookie, "GET", "/console/orders").headers["location"]
            )

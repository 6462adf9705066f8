"""The web console through a TestClient, on both backends: sessions and CSRF, role-based
pages and the server's refusals, capture with every problem shown, decisions and
conflicts, error pages, accessibility basics."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any
from uuid import UUID, uuid4

import pytest
from builders import ctx as command_ctx
from builders import header, item
from fastapi.testclient import TestClient
from serviceorders.api.console.session import (
    COOKIE,
    Session,
    Sessions,
    SessionStore,
    secret_of,
)
from serviceorders.api.console.web import session_store
from serviceorders.bootstrap import open_read_db
from serviceorders.domain.commands import (
    Approve,
    ChangeItemStates,
    ItemStateChange,
    ReceiveOrder,
    Reject,
    RequestCancellation,
    Revise,
)
from serviceorders.domain.errors import ANSWERS, WriteTimeout
from serviceorders.domain.values import HeaderChange, ItemState, Party, Place, Role
from serviceorders.projections.queries import OrderFilter
from serviceorders.settings import Settings, SettingsError

UPSTREAM = command_ctx("crm", Role.UPSTREAM)


def received_order(
    ctx: Any, customer: str = "CUST-1", site: str = "S1", external_id: str | None = None
) -> UUID:
    """An order in `acknowledged` (in the review queue), made through the application."""
    command = ReceiveOrder(
        header(
            external_id or f"ext-{uuid4().hex[:8]}",
            description=None,
            priority="2",
            related_parties=(Party(id=customer, name="Acme"),),
        ),
        (item("1", place=Place(id=site, name="Site")),),
    )
    order_id = ctx.app.handle(UPSTREAM, command).order_id
    ctx.sync()
    return order_id


def state_of(ctx: Any, order_id: UUID) -> str:
    with ctx.read() as models:
        rows = models.search_orders(OrderFilter(ids=(order_id,), include_drafts=True)).items
    assert ctx.app.get_order(order_id).state.value == rows[0]["state"]
    return rows[0]["state"]


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


# ------------------------------------------------------------------ sessions
def test_the_root_and_every_page_ask_for_a_sign_in_first(console: Any) -> None:
    response = console.get("/")
    assert response.url.path == "/console/signin"
    assert response.url.params["next"] == "/console/"
    response = console.get("/console/queue?customer=X")
    assert response.url.path == "/console/signin"
    assert response.url.params["next"] == "/console/queue?customer=X"


def test_sign_in_sets_a_session_cookie_that_does_not_hold_the_key(console: Any) -> None:
    console.get("/console/signin")
    response = console.client.post(
        "/console/signin",
        data={"csrf": console.csrf(), "key": console.keys["agent"].key, "next": "/console/orders"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/console/orders"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http
    assert console.keys["agent"].key not in cookie
    page = console.get("/console/orders")
    assert 'id="who-actor">alice<' in page.text and 'id="who-role">agent<' in page.text


def test_the_cookie_is_secure_over_https(console: Any) -> None:
    console.client.base_url = "https://testserver"
    response = console.get("/console/signin")
    assert "secure" in response.headers["set-cookie"].lower()


def test_an_unknown_key_is_refused_and_not_echoed(console: Any) -> None:
    console.get("/console/signin")
    response = console.post("/console/signin", {"key": "not-a-key-0123456789"})
    assert response.status_code == 401
    assert "That API key is not valid" in response.text
    assert "not-a-key-0123456789" not in response.text


def test_sign_in_only_redirects_within_the_console(console: Any) -> None:
    console.get("/console/signin")
    response = console.client.post(
        "/console/signin",
        data={
            "csrf": console.csrf(),
            "key": console.keys["agent"].key,
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console/"


def test_sign_out_ends_the_session(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/orders")
    response = console.post("/console/signout")
    assert response.url.path == "/console/signin" and "You are signed out" in response.text
    assert console.get("/console/orders").url.path == "/console/signin"


class Clock:
    """The sessions' clock, moved by the test (idle and prune times without waiting)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def clocked(console: Any) -> Clock:
    """Give the console's sessions a clock the test moves (the idle setting as configured)."""
    clock, ctx = Clock(), console.ctx
    store = SessionStore(session_store(ctx).connect, ctx.settings.console_idle_minutes * 60, clock)
    console.client.app.state.console_sessions = Sessions(
        secret_of(ctx.settings.console_secret), ctx.auth, store
    )
    return clock


def session_id(console: Any) -> str:
    payload = console.client.cookies.get(COOKIE).split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["s"]


def session_row(console: Any, sid: str) -> dict[str, Any] | None:
    with console.ctx.read() as models:
        db = models.db
        row = db.fetchone(
            "SELECT actor, role, last_seen_at, expires_at, ended_at "
            "FROM console_session WHERE id = %s",
            (sid,),
        )
        if row is None:
            return None
        return {
            "actor": row[0],
            "role": row[1],
            **{
                k: db.decode(v, "timestamptz")
                for k, v in zip(("last_seen_at", "expires_at", "ended_at"), row[2:], strict=True)
            },
        }


def replay(
    console: Any, cookie: str, method: str, path: str, data: dict[str, str] | None = None
) -> Any:
    """A request from another browser that holds `cookie` (not following redirects)."""
    other = TestClient(console.client.app, raise_server_exceptions=False)
    return other.request(
        method, path, data=data, follow_redirects=False, headers={"cookie": f"{COOKIE}={cookie}"}
    )


def test_a_signed_out_cookie_is_refused_on_every_page_and_form(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    token, old, sid = console.csrf(), console.client.cookies.get(COOKIE), session_id(console)
    assert session_row(console, sid) == {
        **session_row(console, sid),
        "actor": "alice",
        "role": "agent",
        "ended_at": None,
    }
    assert console.post("/console/signout", csrf=token).url.params["signed_out"] == "1"
    assert session_row(console, sid)["ended_at"] is not None
    for _ in range(3):
        page = replay(console, old, "GET", "/console/orders")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/signin?")
        assert "ended=signed_out" in page.headers["location"]
        form = replay(
            console, old, "POST", "/console/drafts", {"csrf": token, "customerId": "C-REPLAY"}
        )
        assert form.status_code == 303 and "ended=signed_out" in form.headers["location"]
    shown = console.get(page.headers["location"])
    assert "That session was signed out. Please sign in again." in text_of(shown.text)
    with console.ctx.read() as models:
        assert (
            models.search_orders(OrderFilter(customer="C-REPLAY", include_drafts=True)).total == 0
        )


def test_signing_in_again_ends_the_previous_session(console: Any) -> None:
    console.sign_in("agent")
    old, first = console.client.cookies.get(COOKIE), session_id(console)
    console.sign_in("manager")  # the sign-in form, shown to a signed-in visitor
    assert session_id(console) != first and session_row(console, first)["ended_at"]
    assert "ended=signed_out" in replay(console, old, "GET", "/console/queue").headers["location"]
    assert console.get("/console/queue").url.path == "/console/queue"


def test_a_cookie_without_a_session_id_is_refused(console: Any) -> None:
    """A cookie signed before sessions had a server-side record (or forged without one)."""
    key = console.keys["manager"]
    sessions = Sessions(secret_of(None), console.ctx.auth, session_store(console.ctx))
    legacy = Session(
        csrf="x" * 32,
        expires=time.time() + 3600,
        actor=key.actor,
        role=key.role,
        fingerprint=sessions.fingerprint(key.key),
    )
    assert sessions.decode(sessions.encode(legacy)) == (None, "ended")
    response = replay(console, sessions.encode(legacy), "GET", "/console/queue")
    assert "ended=ended" in response.headers["location"]
    assert "no longer open on the server" in console.get(response.headers["location"]).text


def test_an_idle_session_ends_and_activity_keeps_it_open(console: Any) -> None:
    assert console.ctx.settings.console_idle_minutes == 30  # the default
    clock = clocked(console)
    console.sign_in("agent")
    sid, signed_in_at = session_id(console), clock.now
    for minutes in (20, 20, 20):  # an hour in all, never 30 minutes without a request
        clock.now += minutes * 60
        assert console.get("/console/orders").url.path == "/console/orders"
        assert session_row(console, sid)["last_seen_at"].timestamp() == pytest.approx(
            clock.now, abs=0.01
        )
    assert clock.now - signed_in_at == 3600
    # At most one write a minute: a request 10 s later leaves last_seen_at as it was.
    seen = session_row(console, sid)["last_seen_at"]
    clock.now += 10
    assert console.get("/console/orders").url.path == "/console/orders"
    assert session_row(console, sid)["last_seen_at"] == seen
    cookie = console.client.cookies.get(COOKIE)
    clock.now += 30 * 60
    response = console.get("/console/orders")
    assert response.url.path == "/console/signin" and response.url.params["ended"] == "idle"
    assert "Your session ended after 30 minutes without activity" in text_of(response.text)
    clock.now += 1  # and it stays over: the refused request did not revive it
    assert "ended=idle" in replay(console, cookie, "GET", "/console/orders").headers["location"]
    assert session_row(console, sid)["last_seen_at"] == seen


def test_a_session_ends_8_hours_after_sign_in_however_active(console: Any) -> None:
    clock = clocked(console)
    console.sign_in("agent")
    for _ in range(16):
        clock.now += 29 * 60
        assert console.get("/console/orders").url.path == "/console/orders"
    clock.now += 29 * 60  # 8 h 12 min after sign-in
    response = console.get("/console/orders")
    assert response.url.params["ended"] == "expired"


def test_sessions_ended_or_expired_over_a_day_ago_are_pruned_at_sign_in(console: Any) -> None:
    clock = clocked(console)
    console.sign_in("agent")
    signed_out = session_id(console)
    console.get("/console/orders")
    console.post("/console/signout")
    console.sign_in("manager")
    left_open = session_id(console)
    clock.now += 12 * 3600
    console.sign_in("agent")  # less than a day: both rows kept
    recent = session_id(console)
    assert session_row(console, signed_out) and session_row(console, left_open)
    clock.now += 13 * 3600
    console.sign_in("manager")  # 25 h later: the two older rows go, the recent one stays
    assert session_row(console, signed_out) is None
    assert session_row(console, left_open) is None
    assert session_row(console, recent) is not None  # idle for 13 h only
    assert session_row(console, session_id(console))["ended_at"] is None


def test_sessions_that_cannot_be_checked_are_a_503_page(console: Any) -> None:
    console.sign_in("agent")
    with socket.socket() as s:  # a port with nothing listening: the database is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Settings.from_env({"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x"})

    @contextmanager
    def unreachable() -> Iterator[Any]:
        db = open_read_db(down)
        try:
            yield db
        finally:
            db.close()

    ctx = console.ctx
    console.client.app.state.console_sessions = Sessions(
        secret_of(ctx.settings.console_secret), ctx.auth, SessionStore(unreachable, 1800)
    )
    response = console.get("/console/orders")
    assert response.status_code == 503 and "Traceback" not in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "Console sessions cannot be checked now" in text_of(response.text)


def test_the_idle_setting_is_checked() -> None:
    assert Settings.from_env({}).console_idle_minutes == 30
    assert (
        Settings.from_env({"SERVICEORDERS_CONSOLE_IDLE_MINUTES": "0.05"}).console_idle_minutes
        == 0.05
    )
    for bad in ("0", "-1", "481", "soon"):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"SERVICEORDERS_CONSOLE_IDLE_MINUTES": bad})
        assert "SERVICEORDERS_CONSOLE_IDLE_MINUTES" in str(refused.value)


def test_a_post_without_the_session_csrf_token_is_refused(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    good = console.csrf()
    # Missing, forged, non-ASCII, the wrong length, control characters: each a 403 page.
    for token in (
        "",
        "forged-token",
        "é" * len(good),
        "\u2603",
        good[:-1],
        good + "x",
        "x" * 5000,
        good[:-1] + "é",
        "\x7f\x01",
        "%ff",
    ):
        response = console.post("/console/drafts", {"customerId": "C-CSRF"}, csrf=token)
        assert response.status_code == 403, (token[:20], response.status_code)
        assert response.headers["content-type"].startswith("text/html")
        assert "CSRF token is missing or wrong" in response.text
    with console.ctx.read() as models:
        assert models.search_orders(OrderFilter(customer="C-CSRF", include_drafts=True)).total == 0
    # The sign-in form (an anonymous session) refuses a malformed token the same way.
    console.get("/console/orders")
    console.post("/console/signout")
    response = console.post(
        "/console/signin", {"key": console.keys["agent"].key}, csrf="\u00e9t\u00e9"
    )
    assert response.status_code == 403 and "CSRF token is missing or wrong" in response.text


def test_a_tampered_cookie_ends_the_session(console: Any) -> None:
    console.sign_in("agent")
    value = console.client.cookies.get(COOKIE)
    payload, signature = value.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    console.client.cookies.set(COOKIE, forged, path="/console")
    response = console.get("/console/orders")
    assert response.url.path == "/console/signin" and response.url.params["ended"] == "tampered"
    assert "was not valid" in response.text


def test_an_expired_session_ends(console: Any) -> None:
    sessions = Sessions(secret_of(None), console.ctx.auth, session_store(console.ctx))
    key = console.keys["manager"]
    stale = Session(
        csrf="x" * 20,
        expires=time.time() - 1,
        actor=key.actor,
        role=key.role,
        fingerprint=sessions.fingerprint(key.key),
    )
    console.client.cookies.set(COOKIE, sessions.encode(stale), path="/console")
    response = console.get("/console/queue")
    assert response.url.params["ended"] == "expired" and "expired" in response.text


def test_a_revoked_or_replaced_key_ends_its_sessions(console: Any) -> None:
    console.sign_in("manager")
    assert console.get("/console/queue").url.path == "/console/queue"
    keys = console.ctx.auth.keys
    old = console.keys["manager"]
    keys[keys.index(old)] = type(old)(old.actor, old.role, old.key + "-rotated")
    response = console.get("/console/queue")
    assert response.url.params["ended"] == "revoked"
    assert "no longer valid" in response.text


def test_a_configured_secret_signs_sessions_across_processes(console: Any) -> None:
    secret = "s" * 40
    store = session_store(console.ctx)
    one, two = (
        Sessions(secret_of(secret), console.ctx.auth, store),
        Sessions(secret_of(secret), console.ctx.auth, store),
    )
    session, why = two.decode(one.encode(one.for_key(console.keys["agent"])))
    assert why is None and session is not None and session.actor == "alice"
    other, why = Sessions(secret_of("t" * 40), console.ctx.auth, store).decode(
        one.encode(one.anonymous())
    )
    assert other is None and why == "tampered"


def test_the_console_secret_setting_is_checked_and_never_shown() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"SERVICEORDERS_CONSOLE_SECRET": "short-secret"})
    assert "SERVICEORDERS_CONSOLE_SECRET" in str(refused.value)
    assert "short-secret" not in str(refused.value)
    settings = Settings.from_env({"SERVICEORDERS_CONSOLE_SECRET": "k" * 40})
    assert settings.console_secret == "k" * 40 and "k" * 40 not in repr(settings)


def test_open_mode_works_as_the_anonymous_operator(open_console: Any) -> None:
    page = open_console.get("/console/drafts/new")
    assert page.status_code == 200 and 'id="who-actor">anonymous<' in page.text
    response = open_console.post("/console/drafts", {"customerId": "C-OPEN"})
    assert response.status_code == 200 and response.url.path.startswith("/console/drafts/")
    assert "Sign out" not in response.text


# ------------------------------------------------------------ roles and decisions
def test_an_agent_sees_no_decisions_and_a_forged_decision_is_refused(console: Any) -> None:
    order_id = received_order(console.ctx)
    console.sign_in("agent")
    page = console.get(f"/console/orders/{order_id}")
    assert page.status_code == 200
    assert "Approve order" not in page.text and "Reject order" not in page.text
    version = console.ctx.app.get_order(order_id).version
    response = console.post(f"/console/orders/{order_id}/approve", {"version": str(version)})
    assert response.status_code == 403
    assert "alice (agent) may not approve" in text_of(response.text)
    assert state_of(console.ctx, order_id) == "acknowledged"


def test_a_manager_approves_and_rejects_with_a_reason(console: Any) -> None:
    first, second = received_order(console.ctx), received_order(console.ctx)
    console.sign_in("manager")
    page = console.get(f"/console/orders/{first}")
    assert "Approve order" in page.text and "Reject order" in page.text
    response = console.post(
        f"/console/orders/{first}/approve",
        {"version": re.search(r'name="version" value="(\d+)"', page.text).group(1), "note": "fine"},
    )
    assert response.status_code == 200 and "approved and in progress" in response.text
    assert state_of(console.ctx, first) == "inProgress"

    page = console.get(f"/console/orders/{second}")
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)
    response = console.post(f"/console/orders/{second}/reject", {"version": version})
    assert response.status_code == 400 and "a reason is required" in response.text
    assert 'aria-describedby="f-reason-error' in response.text
    assert state_of(console.ctx, second) == "acknowledged"
    response = console.post(
        f"/console/orders/{second}/reject", {"version": version, "reason": "no coverage at S1"}
    )
    assert response.status_code == 200 and "no coverage at S1" in response.text
    assert state_of(console.ctx, second) == "rejected"


def test_a_late_decision_is_shown_as_a_plain_conflict(console: Any, second_console: Any) -> None:
    order_id = received_order(console.ctx)
    console.sign_in("manager")
    second_console.sign_in("manager2")
    bob = console.get(f"/console/orders/{order_id}")
    carol = second_console.get(f"/console/orders/{order_id}")
    version = re.search(r'name="version" value="(\d+)"', carol.text).group(1)
    console.post(
        f"/console/orders/{order_id}/approve", {"version": version}, csrf=console.csrf(bob)
    )
    response = second_console.post(
        f"/console/orders/{order_id}/reject",
        {"version": version, "reason": "too late"},
        csrf=second_console.csrf(carol),
    )
    assert response.status_code == 409
    message = text_of(response.text)
    assert "Someone else decided first" in message
    assert re.search(
        r"already approved by bob at \d{4}-\d\d-\d\d \d\d:\d\d UTC; the order is "
        r"now inProgress",
        message,
    ), message
    assert state_of(console.ctx, order_id) == "inProgress"


def test_four_eyes_is_the_domain_s_refusal(console: Any) -> None:
    console.sign_in("manager")
    order_id = capture(console, "C-4EYES")
    page = console.get(f"/console/orders/{order_id}")
    assert "four-eyes applies" in page.text
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)
    response = console.post(f"/console/orders/{order_id}/approve", {"version": version})
    assert response.status_code == 403 and "four-eyes" in response.text
    assert state_of(console.ctx, order_id) == "acknowledged"


def test_cancellation_requests_are_decided_on_the_detail_page(console: Any) -> None:
    order_id = received_order(console.ctx)
    console.ctx.app.handle(UPSTREAM, RequestCancellation(order_id, "customer moved"))
    console.ctx.sync()
    console.sign_in("manager")
    queue = console.get("/console/queue?kind=cancellation")
    assert str(order_id)[:8] in queue.text or "customer moved" in queue.text
    page = console.get(f"/console/orders/{order_id}")
    assert "Deny cancellation" in page.text
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)
    response = console.post(
        f"/console/orders/{order_id}/deny-cancellation",
        {"version": version, "reason": "work started"},
    )
    assert response.status_code == 200 and "cancellation is denied" in response.text
    assert state_of(console.ctx, order_id) == "acknowledged"


def assert_answered(response: Any, code: str, *, title: bool = True) -> None:
    """The page answers the refusal as the one table says (`ANSWERS`, domain/errors.py):
    its console status and title, and the error's code on the page, as an attribute of the
    alert and in its text."""
    answer = ANSWERS[code]
    shown = text_of(response.text)
    assert response.status_code == answer.console_status, (code, response.status_code, shown)
    assert f'data-code="{code}"' in response.text, shown
    assert f"Code {code}" in shown, shown
    if title:
        assert answer.console_title in shown, shown


def test_refusals_are_answered_from_the_one_table_with_their_code_on_the_page(
    console: Any,
) -> None:
    order_id = received_order(console.ctx)
    approve = f"/console/orders/{order_id}/approve"
    console.sign_in("agent")
    console.get(f"/console/orders/{order_id}")
    version = console.ctx.app.get_order(order_id).version
    assert_answered(console.post(approve, {"version": str(version)}), "not_permitted")

    console.sign_in("manager")
    console.get(f"/console/orders/{order_id}")
    stale = console.post(approve, {"version": str(version + 5)})
    assert_answered(stale, "precondition_failed", title=False)
    assert "Someone else decided first" in stale.text
    console.get(f"/console/orders/{order_id}")
    assert console.post(approve, {"version": str(version)}).status_code == 200
    version = console.ctx.app.get_order(order_id).version
    console.get(f"/console/orders/{order_id}")
    again = console.post(approve, {"version": str(version)})
    assert_answered(again, "illegal_transition")
    assert state_of(console.ctx, order_id) == "inProgress"

    for missing in (f"/console/orders/{uuid4()}", "/console/orders/nope"):
        assert_answered(console.get(missing), "order_not_found")

    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-CODE"}).url.path
    console.get(f"{draft_path}/items/new?spec=internet-access")
    console.post(f"{draft_path}/items", {"spec": "internet-access", "itemId": "1"})
    refused = console.post(f"{draft_path}/submit")
    assert_answered(refused, "validation_failed", title=False)
    assert "cannot be submitted yet" in refused.text


def test_a_write_that_ran_out_of_time_is_the_table_s_answer(
    console: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = received_order(console.ctx)
    console.sign_in("manager")
    page = console.get(f"/console/orders/{order_id}")
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)

    def timed_out(*args: Any, **kwargs: Any) -> Any:
        raise WriteTimeout("the write transaction ran over its bound")

    monkeypatch.setattr(console.ctx.app, "handle", timed_out)
    response = console.post(f"/console/orders/{order_id}/approve", {"version": version})
    assert_answered(response, "write_timeout")
    assert "Traceback" not in response.text and "ran over its bound" not in response.text
    monkeypatch.undo()
    assert state_of(console.ctx, order_id) == "acknowledged"


# ------------------------------------------------------------------- capture
def capture(console: Any, customer: str) -> UUID:
    """A draft with one complete item, submitted through the console's forms."""
    console.get("/console/drafts/new")
    draft = console.post("/console/drafts", {"customerId": customer, "priority": "1"})
    draft_path = draft.url.path
    console.get(f"{draft_path}/items/new?spec=managed-router")
    console.post(
        f"{draft_path}/items",
        {"spec": "managed-router", "itemId": "1", "placeId": "S9", "char.model": "c1100"},
    )
    response = console.post(f"{draft_path}/submit")
    assert response.url.path.startswith("/console/orders/"), text_of(response.text)
    return UUID(draft_path.rsplit("/", 1)[1])


def test_header_errors_are_shown_next_to_the_fields_with_the_values_kept(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    response = console.post(
        "/console/drafts",
        {"customerId": "C-KEEP", "requestedStartDate": "31/12/2030", "customerName": "Keep Me Ltd"},
    )
    assert response.status_code == 400
    assert 'aria-describedby="f-requestedStartDate-error' in response.text
    assert 'value="Keep Me Ltd"' in response.text and 'value="31/12/2030"' in response.text


def test_the_validation_panel_lists_every_problem_at_once(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-PROB"}).url.path
    console.get(f"{draft_path}/items/new?spec=internet-access")
    # No site, no bandwidth, and a wrong VLAN type would be caught before; the access type
    # is left out too: every problem appears in one panel.
    page = console.post(f"{draft_path}/items", {"spec": "internet-access", "itemId": "1"})
    assert page.status_code == 200
    console.get(f"{draft_path}/items/new?spec=ethernet-private-line")
    page = console.post(
        f"{draft_path}/items",
        {
            "spec": "ethernet-private-line",
            "itemId": "2",
            "placeId": "S2",
            "char.bandwidthMbps": "5",
        },
    )
    panel = text_of(page.text.split('id="validation"')[1])
    for expected in (
        "item 1: required characteristic bandwidthMbps",
        "item 1: required characteristic accessType",
        "item 1: no site",
        "item 2: required characteristic aEndSiteId",
        "item 2: characteristic bandwidthMbps value 5 is outside",
    ):
        assert expected in panel, panel
    response = console.post(f"{draft_path}/submit")
    assert response.status_code == 400 and "cannot be submitted yet" in response.text


def test_an_item_of_a_specification_the_catalog_lacks_is_the_domain_s_refusal(
    console: Any,
) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-NOSPEC"}).url.path
    console.get(f"{draft_path}/items/new?spec=internet-access")
    for item_id in ("7", "", "i" * 101):  # a forged form: the list offers catalog specs only
        response = console.post(f"{draft_path}/items", {"spec": "no-such-spec", "itemId": item_id})
        assert_answered(response, "validation_failed")
        assert "unknown service specification 'no-such-spec'" in text_of(response.text)
    draft_id = UUID(draft_path.rsplit("/", 1)[1])
    assert console.ctx.app.get_order(draft_id).items == {}


def test_a_value_of_the_wrong_shape_is_refused_with_the_form_kept(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-SHAPE"}).url.path
    console.get(f"{draft_path}/items/new?spec=ethernet-private-line")
    response = console.post(
        f"{draft_path}/items",
        {
            "spec": "ethernet-private-line",
            "itemId": "1",
            "placeId": "S1",
            "char.bandwidthMbps": "lots",
            "char.vlanId": "12",
            "quantity": "two",
        },
    )
    assert response.status_code == 400
    assert 'aria-describedby="f-char-bandwidthMbps-error' in response.text
    assert "must be a whole number" in response.text
    assert 'value="lots"' in response.text and 'value="12"' in response.text
    assert not console.ctx.app.get_order(UUID(draft_path.rsplit("/", 1)[1])).items


def test_a_form_field_over_its_bound_is_refused_naming_it(console: Any) -> None:
    """serviceorders.support.limits.MAX_FORM_FIELD: checked where every console form is read, before
    any model or command (docs/security.md, "Limits")."""
    console.sign_in("agent")
    console.get("/console/drafts/new")
    response = console.post(
        "/console/drafts", {"customerId": "C-LONG", "description": "d" * 10_001}
    )
    assert response.status_code == 400
    assert (
        "The field &#39;description&#39; is 10001 characters; the limit is 10000." in response.text
    )
    console.get("/console/drafts/new")
    response = console.post("/console/drafts", {"customerId": "C-LONG", "n" * 201: "x"})
    assert response.status_code == 400
    assert "A field name is 201 characters; the limit is 200." in response.text
    # at the bound the form is read, and the draft's own model refuses the text (4000)
    console.get("/console/drafts/new")
    response = console.post(
        "/console/drafts", {"customerId": "C-LONG", "description": "d" * 10_000}
    )
    assert response.status_code == 400 and "Form field too long" not in response.text


def test_an_item_is_configured_and_removed(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-EDIT"}).url.path
    draft_id = UUID(draft_path.rsplit("/", 1)[1])
    console.get(f"{draft_path}/items/new?spec=internet-access")
    console.post(
        f"{draft_path}/items",
        {
            "spec": "internet-access",
            "itemId": "1",
            "placeId": "S1",
            "char.bandwidthMbps": "100",
            "char.accessType": "fibre",
            "char.ipv6Enabled": "yes",
        },
    )
    edit = console.get(f"{draft_path}/items/1/edit")
    assert re.search(r'<option value="100" selected>', edit.text)
    response = console.post(
        f"{draft_path}/items/1",
        {
            "spec": "internet-access",
            "placeId": "S7",
            "placeName": "Depot",
            "char.bandwidthMbps": "200",
            "char.ipv6Enabled": "yes",
        },
    )
    assert "Item saved" in response.text
    item = console.ctx.app.get_order(draft_id).items["1"]
    # accessType left empty is cleared; a checkbox at the spec's default is not recorded
    assert item.characteristics == {"bandwidthMbps": 200}
    assert item.place is not None and (item.place.id, item.place.name) == ("S7", "Depot")
    console.post(f"{draft_path}/items/1/remove")
    assert not console.ctx.app.get_order(draft_id).items


def test_a_taken_external_id_is_shown_on_the_form(console: Any) -> None:
    received_order(console.ctx, external_id="EXT-TAKEN")
    console.sign_in("agent")
    console.get("/console/drafts/new")
    response = console.post("/console/drafts", {"customerId": "C1", "externalId": "EXT-TAKEN"})
    assert response.status_code == 409
    assert "an order with this external id already exists" in response.text


# --------------------------------------------------------------- reads and pages
def test_queue_filters_and_order_search(console: Any) -> None:
    mine = received_order(console.ctx, customer="C-FILTER", site="S-FILTER")
    received_order(console.ctx, customer="C-OTHER", site="S-OTHER")
    console.sign_in("manager")
    for query in (
        "customer=C-FILTER",
        "site=S-FILTER",
        "kind=approval&customer=C-FILTER",
        "specification=internet-access&customer=C-FILTER",
        "older=0&customer=C-FILTER",
        "younger=3600&customer=C-FILTER",
        "priority=2&site=S-FILTER",
    ):
        page = console.get(f"/console/queue?{query}")
        assert "1 entry waiting" in page.text, query
        assert f"/console/orders/{mine}" in page.text
    assert "0 entries waiting" in console.get("/console/queue?older=86400").text
    assert console.get("/console/queue?older=abc").status_code == 400
    found = console.get("/console/orders?customer=C-FILTER")
    assert "1 order found" in found.text
    assert console.get(f"/console/orders?q={mine}").url.path == f"/console/orders/{mine}"


def test_the_detail_shows_items_per_site_and_the_timeline(console: Any) -> None:
    order_id = received_order(console.ctx, site="S-TL")
    console.sign_in("auditor")
    page = console.get(f"/console/orders/{order_id}")
    body = text_of(page.text)
    assert "S-TL — Site" in body and "bandwidthMbps" in body
    timeline = text_of(page.text.split('id="timeline"')[1])
    assert "drafted by crm" in timeline and "submitted by crm" in timeline
    assert "Approve order" not in page.text
    with console.ctx.read() as models:  # auditors' reads are in the access log
        rows = models.db.fetchall(
            "SELECT path, status FROM audit_access_log WHERE actor = 'audit-1'"
        )
    assert (f"/console/orders/{order_id}", 200) in [(p, s) for p, s in rows]


@pytest.mark.parametrize(
    "path",
    [
        "/console/orders/0b9a1c1e-6f00-4d7b-9a57-000000000000",
        "/console/orders/not-an-id",
        "/console/nowhere",
        "/console/drafts/0b9a1c1e-6f00-4d7b-9a57-000000000000",
        "/console/drafts/new/items/new",
    ],
)
def test_unknown_pages_are_friendly_html_404s(console: Any, path: str) -> None:
    console.sign_in("agent")
    response = console.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Status 404" in response.text and "Traceback" not in response.text


def test_bad_input_never_yields_a_500(console: Any) -> None:
    console.sign_in("manager")
    order_id = received_order(console.ctx)
    console.get(f"/console/orders/{order_id}")
    token = console.csrf()
    cases = [
        (f"/console/orders/{order_id}/approve", {"version": "x" * 50}),
        (f"/console/orders/{order_id}/explode", {}),
        (f"/console/orders/{order_id}/reject", {"version": "1", "reason": "r" * 5000}),
        ("/console/drafts", {"customerId": "c" * 300}),
        ("/console/drafts", {"customerId": "C\x00"}),
    ]
    for path, data in cases:
        response = console.post(path, data, csrf=token)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.headers["content-type"].startswith("text/html")
    response = console.client.post(
        "/console/drafts",
        content=b"\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 403)


class _Labels(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labelled: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.add(tag)
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.controls.append(found.get("id") or f"<{tag} name={found.get('name')}>")
        if tag == "label" and found.get("for"):
            self.labelled.add(found["for"] or "")


def test_every_page_renders_with_labels_and_landmarks(console: Any) -> None:
    order_id = received_order(console.ctx)
    console.sign_in("admin")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-A11Y"}).url.path
    pages = [
        "/console/signin",
        "/console/orders",
        "/console/orders?state=draft",
        "/console/queue",
        f"/console/orders/{order_id}",
        "/console/drafts/new",
        draft_path,
    ]
    pages += [
        f"{draft_path}/items/new?spec={spec.id}" for spec in console.ctx.app.catalog.specifications
    ]
    for path in pages:
        response = console.get(path)
        assert response.status_code == 200, path
        parser = _Labels()
        parser.feed(response.text)
        unlabelled = [c for c in parser.controls if c not in parser.labelled]
        assert not unlabelled, (path, unlabelled)
        assert {"header", "main", "nav"} <= parser.tags, path
        assert 'href="#main"' in response.text, path


# ------------------------------------------- issue 17: a second person on every decision
AGENT, BOB, CAROL = (
    command_ctx("alice", Role.AGENT),
    command_ctx("bob", Role.MANAGER),
    command_ctx("carol", Role.MANAGER),
)


def approved_order(ctx: Any, **kw: Any) -> UUID:
    """An order in `inProgress`: received, approved by carol."""
    order_id = received_order(ctx, **kw)
    ctx.app.handle(CAROL, Approve(order_id))
    ctx.sync()
    return order_id


def propose(ctx: Any, order_id: UUID, by: Any = AGENT, bandwidth: int = 10000) -> str:
    """A revision of item 1's bandwidth on an approved order: a proposal (not applied)."""
    current = ctx.app.get_order(order_id).items["1"]
    changed = current.model_copy(
        update={"characteristics": {**current.characteristics, "bandwidthMbps": bandwidth}}
    )
    proposal_id = ctx.app.handle(by, Revise(order_id, items=(changed,))).proposal_id
    ctx.sync()
    assert proposal_id is not None
    return proposal_id


def bandwidth_of(ctx: Any, order_id: UUID) -> Any:
    return ctx.app.get_order(order_id).items["1"].characteristics["bandwidthMbps"]


def form_version(page: Any, action: str) -> str:
    """The version a form (by its action's last segment) posts: what the page showed."""
    found = re.search(
        rf'action="[^"]*/{re.escape(action)}"[^>]*>.*?name="version" value="(\d+)"',
        page.text,
        re.S,
    )
    assert found, f"no {action} form on the page"
    return found.group(1)


def test_a_proposal_waits_in_the_queue_with_its_diff_and_a_second_manager_approves_it(
    console: Any,
) -> None:
    order_id = approved_order(console.ctx, customer="C-PROP")
    received_order(console.ctx, customer="C-PROP")  # an approval waiting too: another kind
    propose(console.ctx, order_id)
    assert bandwidth_of(console.ctx, order_id) == 100  # not applied
    console.sign_in("manager")
    queue = console.get("/console/queue?kind=proposal")
    assert "1 entry waiting" in queue.text
    entry = text_of(queue.text.split(f'id="proposal-{order_id}"')[1].split("</table>")[0])
    assert "items[1].characteristics.bandwidthMbps changed 100 10000" in entry, entry
    assert "proposed by alice" in text_of(queue.text)
    assert "Approve proposal" in queue.text and "Refuse proposal" in queue.text
    version = form_version(queue, "approve-proposal")
    assert int(version) == console.ctx.app.get_order(order_id).version

    response = console.post(
        f"/console/orders/{order_id}/approve-proposal", {"version": version, "note": "agreed"}
    )
    assert response.status_code == 200, text_of(response.text)
    assert response.url.path == f"/console/orders/{order_id}"
    assert "The proposal is approved" in response.text
    assert bandwidth_of(console.ctx, order_id) == 10000
    assert state_of(console.ctx, order_id) == "inProgress"
    assert 'id="proposal"' not in response.text  # nothing waits any more
    timeline = text_of(response.text.split('id="timeline"')[1])
    assert "change proposed by alice" in timeline and "proposal approved by bob" in timeline
    assert "0 entries waiting" in console.get("/console/queue?kind=proposal").text


def test_a_proposal_s_diff_lists_only_what_it_changes(console: Any) -> None:
    order_id = approved_order(console.ctx)
    propose(console.ctx, order_id)
    console.sign_in("manager")
    for path, marker in (
        (f"/console/orders/{order_id}", 'id="proposal-diff"'),
        ("/console/queue?kind=proposal", f'id="proposal-{order_id}"'),
    ):
        table = console.get(path).text.split(marker)[1].split("</table>")[0]
        paths = re.findall(r"<code>([^<]+)</code>", table)
        assert paths == ["items[1].characteristics.bandwidthMbps"], (path, paths)


def test_decisions_show_who_decided_and_the_version_and_content_hash_they_saw(
    console: Any,
) -> None:
    order_id = approved_order(console.ctx)
    propose(console.ctx, order_id)
    console.sign_in("manager")
    page = console.get(f"/console/orders/{order_id}")
    version = form_version(page, "approve-proposal")
    response = console.post(f"/console/orders/{order_id}/approve-proposal", {"version": version})
    events = console.ctx.app.history(order_id)
    decided = [e for e in events if getattr(e, "decision", None) is not None]
    assert [type(e).__name__ for e in decided] == ["OrderApproved", "ProposalApproved"]
    assert decided[1].decision.version == int(version)
    table = response.text.split('id="decisions"')[1].split("</table>")[0]
    rows = [text_of(row) for row in table.split("<tr>")[2:]]
    for row, event in zip(rows, decided, strict=True):
        assert event.actor.id in row, row
        assert f" {event.decision.version} " in row, row
        assert event.decision.content_hash[:16] in row, row
    assert rows[0].startswith(" approved carol") and rows[1].startswith(" proposal approved bob")
    timeline = text_of(response.text.split('id="timeline"')[1])
    assert f"decided on: v{version}, content {decided[1].decision.content_hash[:12]}" in timeline


def test_the_proposer_may_not_decide_their_own_proposal(console: Any) -> None:
    order_id = approved_order(console.ctx)
    propose(console.ctx, order_id, by=BOB)
    console.sign_in("manager")
    page = console.get(f"/console/orders/{order_id}")
    assert "You proposed this change: four-eyes applies" in page.text
    assert "items[1].characteristics.bandwidthMbps" in text_of(
        page.text.split('id="proposal-diff"')[1]
    )
    version = form_version(page, "approve-proposal")
    for decision, data in (
        ("approve-proposal", {}),
        ("refuse-proposal", {"reason": "changed my mind"}),
    ):
        response = console.post(
            f"/console/orders/{order_id}/{decision}", {"version": version, **data}
        )
        assert_answered(response, "not_permitted")
        assert "the proposer may not decide their own proposal (four-eyes)" in text_of(
            response.text
        )
    assert console.ctx.app.get_order(order_id).proposal is not None
    assert "You proposed this change" in console.get("/console/queue?kind=proposal").text

    console.sign_in("manager2")
    page = console.get(f"/console/orders/{order_id}")
    assert "You proposed this change" not in page.text and "Withdraw proposal" not in page.text
    response = console.post(f"/console/orders/{order_id}/refuse-proposal", {"version": version})
    assert response.status_code == 400 and "a reason is required" in response.text
    response = console.post(
        f"/console/orders/{order_id}/refuse-proposal",
        {"version": version, "reason": "10 Gbps is not sold at this site"},
    )
    assert response.status_code == 200 and "The proposal is refused" in response.text
    assert console.ctx.app.get_order(order_id).proposal is None
    assert bandwidth_of(console.ctx, order_id) == 100
    timeline = text_of(response.text.split('id="timeline"')[1])
    assert "proposal refused by carol" in timeline
    assert "reason: 10 Gbps is not sold at this site" in timeline


def test_the_proposer_withdraws_their_proposal(console: Any) -> None:
    order_id = approved_order(console.ctx)
    propose(console.ctx, order_id)
    console.sign_in("agent2")  # another agent: sees the proposal, may not withdraw it here
    page = console.get(f"/console/orders/{order_id}")
    assert 'id="proposal-diff"' in page.text
    assert "Withdraw proposal" not in page.text and "Approve proposal" not in page.text
    console.sign_in("agent")
    page = console.get(f"/console/orders/{order_id}")
    assert "Withdraw proposal" in page.text and "Approve proposal" not in page.text
    response = console.post(
        f"/console/orders/{order_id}/withdraw-proposal",
        {"version": form_version(page, "withdraw-proposal"), "reason": "wrong site"},
    )
    assert response.status_code == 200 and "The proposal is withdrawn" in response.text
    assert console.ctx.app.get_order(order_id).proposal is None
    assert "proposal withdrawn by alice" in text_of(response.text.split('id="timeline"')[1])


def test_a_late_or_pointless_proposal_decision_is_refused_plainly(
    console: Any, second_console: Any
) -> None:
    order_id = approved_order(console.ctx)
    propose(console.ctx, order_id)
    console.sign_in("manager")
    second_console.sign_in("manager2")
    bob = console.get("/console/queue?kind=proposal")
    carol = second_console.get(f"/console/orders/{order_id}")
    version = form_version(carol, "approve-proposal")
    second_console.post(
        f"/console/orders/{order_id}/approve-proposal",
        {"version": version},
        csrf=second_console.csrf(carol),
    )
    response = console.post(
        f"/console/orders/{order_id}/refuse-proposal",
        {"version": form_version(bob, "refuse-proposal"), "reason": "too much"},
        csrf=console.csrf(bob),
    )
    assert_answered(response, "precondition_failed", title=False)
    message = text_of(response.text)
    assert "Someone else decided first" in message
    assert "already proposal approved by carol at" in message, message
    assert bandwidth_of(console.ctx, order_id) == 10000
    # No proposal waits: deciding one at the current version is the domain's 409.
    page = console.get(f"/console/orders/{order_id}")
    current = re.search(r'id="order-version">(\d+)<', page.text).group(1)
    response = console.post(f"/console/orders/{order_id}/approve-proposal", {"version": current})
    assert_answered(response, "illegal_transition")
    assert "no proposal waits" in text_of(response.text)


def test_whoever_contributed_to_an_order_may_not_approve_it(console: Any) -> None:
    # Alice drafts, bob (a manager) adds the item, alice submits: bob may not decide it.
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-CONTRIB"}).url.path
    order_id = UUID(draft_path.rsplit("/", 1)[1])
    console.sign_in("manager")
    console.get(f"{draft_path}/items/new?spec=managed-router")
    console.post(
        f"{draft_path}/items",
        {"spec": "managed-router", "itemId": "1", "placeId": "S9", "char.model": "c1100"},
    )
    console.sign_in("agent")
    console.get(draft_path)
    assert console.post(f"{draft_path}/submit").url.path == f"/console/orders/{order_id}"
    console.sign_in("manager")
    page = console.get(f"/console/orders/{order_id}")
    assert "You contributed to this order" in page.text and "four-eyes applies" in page.text
    response = console.post(
        f"/console/orders/{order_id}/approve", {"version": form_version(page, "approve")}
    )
    assert_answered(response, "not_permitted")
    assert "may not decide it (four-eyes)" in text_of(response.text)
    assert state_of(console.ctx, order_id) == "acknowledged"

    # A manager who changed an order in review (through another door) may not approve it.
    other = received_order(console.ctx)
    console.ctx.app.handle(BOB, Revise(other, header=HeaderChange(description="corrected by bob")))
    console.ctx.sync()
    page = console.get(f"/console/orders/{other}")
    assert "You contributed to this order" in page.text
    response = console.post(
        f"/console/orders/{other}/reject",
        {"version": form_version(page, "reject"), "reason": "mine"},
    )
    assert_answered(response, "not_permitted")
    assert state_of(console.ctx, other) == "acknowledged"

    console.sign_in("manager2")
    page = console.get(f"/console/orders/{order_id}")
    assert "You contributed" not in page.text
    response = console.post(
        f"/console/orders/{order_id}/approve", {"version": form_version(page, "approve")}
    )
    assert response.status_code == 200 and state_of(console.ctx, order_id) == "inProgress"


def test_the_requester_of_a_cancellation_may_not_decide_it(console: Any) -> None:
    order_id = received_order(console.ctx)
    console.ctx.app.handle(BOB, RequestCancellation(order_id, "duplicate"))
    console.ctx.sync()
    console.sign_in("manager")
    page = console.get(f"/console/orders/{order_id}")
    assert "You requested this cancellation: four-eyes applies" in page.text
    response = console.post(
        f"/console/orders/{order_id}/approve-cancellation",
        {"version": form_version(page, "approve-cancellation")},
    )
    assert_answered(response, "not_permitted")
    assert state_of(console.ctx, order_id) == "assessingCancellation"


def test_the_timeline_shows_each_item_s_new_state(console: Any) -> None:
    order_id = approved_order(console.ctx)
    console.ctx.app.handle(
        command_ctx("fulfil-1", Role.FULFILMENT),
        ChangeItemStates(
            order_id, (ItemStateChange("1", ItemState.IN_PROGRESS, "engineer booked"),)
        ),
    )
    console.ctx.sync()
    console.sign_in("auditor")
    page = console.get(f"/console/orders/{order_id}")
    timeline = text_of(page.text.split('id="timeline"')[1])
    assert "item state changed by fulfil-1" in timeline
    assert "item: 1 → inProgress" in timeline and "reason: engineer booked" in timeline


def test_a_rejected_order_is_corrected_and_resubmitted(console: Any) -> None:
    old = received_order(console.ctx, external_id="EXT-FIX", site="S-FIX")
    console.ctx.app.handle(CAROL, Reject(old, "wrong access type"))
    console.ctx.sync()
    console.sign_in("auditor")  # may not capture: no such offer
    assert "Correct and resubmit" not in console.get(f"/console/orders/{old}").text
    console.sign_in("agent")
    page = console.get(f"/console/orders/{old}")
    assert "Correct and resubmit" in page.text
    assert 'name="externalId" type="text" value="EXT-FIX-2"' in page.text
    response = console.post(
        f"/console/orders/{old}/resubmit",
        {"version": form_version(page, "resubmit"), "externalId": "EXT-FIX-2"},
    )
    assert response.status_code == 200, text_of(response.text)
    new = UUID(response.url.path.rsplit("/", 1)[1])
    assert response.url.path == f"/console/drafts/{new}"
    shown = text_of(response.text)
    assert "This draft corrects the rejected order" in shown
    assert "Corrects the rejected order EXT-FIX" in shown
    assert "rejected because: wrong access type" in shown
    assert f'href="/console/orders/{old}"' in response.text
    assert "S-FIX" in shown and "bandwidthMbps" in shown  # the content, prefilled

    draft = console.ctx.app.get_order(new)
    rejected = console.ctx.app.get_order(old)
    assert draft.state.value == "draft" and draft.header.external_id == "EXT-FIX-2"
    assert draft.items.keys() == rejected.items.keys()
    assert [(r.id, r.relationship_type) for r in draft.header.order_relationships] == [
        (str(old), "resubmits")
    ]
    assert [(r.id, r.relationship_type) for r in rejected.header.order_relationships] == [
        (str(new), "resubmittedAs")
    ]
    # The agent corrects the draft and submits it, as any draft.
    response = console.post(f"/console/drafts/{new}/submit")
    assert response.url.path == f"/console/orders/{new}"
    assert state_of(console.ctx, new) == "acknowledged"
    assert f'href="/console/orders/{old}"' in response.text
    assert "Corrects the rejected order" in response.text
    page = console.get(f"/console/orders/{old}")
    assert "Corrected and resubmitted as" in page.text
    assert f'href="/console/orders/{new}"' in page.text
    timeline = text_of(page.text.split('id="timeline"')[1])
    assert "corrected and resubmitted by alice" in timeline and str(new) in timeline
    assert state_of(console.ctx, old) == "rejected"
    # The next correction is offered the next free external id.
    assert 'value="EXT-FIX-3"' in page.text


def test_a_correction_under_a_taken_or_bad_external_id_is_refused_on_the_form(
    console: Any,
) -> None:
    received_order(console.ctx, external_id="EXT-HELD")
    old = received_order(console.ctx, external_id="EXT-NO")
    console.ctx.app.handle(CAROL, Reject(old, "no"))
    console.ctx.sync()
    console.sign_in("agent")
    page = console.get(f"/console/orders/{old}")
    version = form_version(page, "resubmit")
    before = console.ctx.app.get_order(old).version
    response = console.post(
        f"/console/orders/{old}/resubmit", {"version": version, "externalId": "EXT-HELD"}
    )
    assert response.status_code == 409
    assert "an order with this external id already exists" in response.text
    assert 'value="EXT-HELD"' in response.text and "Open the existing order" in response.text
    response = console.post(
        f"/console/orders/{old}/resubmit", {"version": version, "externalId": "x" * 201}
    )
    assert response.status_code == 400 and "at most 200 characters" in response.text
    assert console.ctx.app.get_order(old).version == before  # nothing written
    # Only a rejected order is corrected this way: elsewhere it is the domain's 409.
    waiting = received_order(console.ctx)
    page = console.get(f"/console/orders/{waiting}")
    assert "Correct and resubmit" not in page.text
    response = console.post(
        f"/console/orders/{waiting}/resubmit",
        {"version": str(console.ctx.app.get_order(waiting).version)},
    )
    assert_answered(response, "illegal_transition")


def test_the_new_pages_render_with_labels(console: Any) -> None:
    waiting = approved_order(console.ctx)
    propose(console.ctx, waiting)
    rejected = received_order(console.ctx)
    console.ctx.app.handle(CAROL, Reject(rejected, "no"))
    console.ctx.sync()
    console.sign_in("admin")
    for path in (
        "/console/queue",
        "/console/queue?kind=proposal",
        f"/console/orders/{waiting}",
        f"/console/orders/{rejected}",
    ):
        response = console.get(path)
        assert response.status_code == 200, path
        parser = _Labels()
        parser.feed(response.text)
        unlabelled = [c for c in parser.controls if c not in parser.labelled]
        assert not unlabelled, (path, unlabelled)
        ids = re.findall(r' id="([^"]+)"', response.text)
        assert len(ids) == len(set(ids)), (path, sorted(i for i in ids if ids.count(i) > 1))


def test_an_order_held_for_a_proposal_says_so_and_resumes_when_it_is_decided(
    holding_console: Any,
) -> None:
    console = holding_console
    order_id = approved_order(console.ctx)
    propose(console.ctx, order_id)
    assert state_of(console.ctx, order_id) == "held"
    console.sign_in("manager")
    page = console.get(f"/console/orders/{order_id}")
    assert "it is held while the proposal waits" in text_of(page.text)
    timeline = text_of(page.text.split('id="timeline"')[1])
    assert "held by alice" in timeline and "held while proposal" in timeline
    response = console.post(
        f"/console/orders/{order_id}/refuse-proposal",
        {"version": form_version(page, "refuse-proposal"), "reason": "not now"},
    )
    assert response.status_code == 200 and "The proposal is refused" in response.text
    assert state_of(console.ctx, order_id) == "inProgress"
    timeline = text_of(response.text.split('id="timeline"')[1])
    assert "proposal refused by bob" in timeline and "resumed by bob" in timeline


@pytest.mark.parametrize("path", ["/console/orders?offset=%C2%B2", "/console/queue?offset=%C2%B2"])
def test_a_paging_offset_in_other_digits_is_no_server_error(console: Any, path: str) -> None:
    """'²' is a digit to str.isdigit() and not to int(): read as no offset, never a 500."""
    console.sign_in("manager")
    assert console.get(path).status_code == 200

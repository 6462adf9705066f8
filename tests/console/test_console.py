"""The web console through a TestClient, on both backends: sessions and CSRF, role-based
pages and the server's refusals, capture with every problem shown, decisions and
conflicts, error pages, accessibility basics."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from typing import Any
from uuid import UUID, uuid4

import pytest
from serviceorders.api.console.session import COOKIE, Session, Sessions, secret_of
from serviceorders.domain.values import (
    Channel,
    CommandContext,
    ItemAction,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    Role,
    SpecRef,
)
from serviceorders.projections.queries import OrderFilter
from serviceorders.settings import Settings, SettingsError

UPSTREAM = CommandContext.for_actor("crm", Role.UPSTREAM, Channel.API)


def received_order(ctx: Any, customer: str = "CUST-1", site: str = "S1",
                   external_id: str | None = None) -> UUID:
    """An order in `acknowledged` (in the review queue), made through the application."""
    header = OrderHeader(external_id=external_id or f"ext-{uuid4().hex[:8]}", priority="2",
                         related_parties=(Party(id=customer, name="Acme"),))
    item = OrderItem(id="1", action=ItemAction.ADD, specification=SpecRef(id="internet-access"),
                     characteristics={"bandwidthMbps": 100, "accessType": "fibre"},
                     place=Place(id=site, name="Site"))
    order_id, _ = ctx.app.receive_order(UPSTREAM, header, [item])
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
    response = console.client.post("/console/signin", data={
        "csrf": console.csrf(), "key": console.keys["agent"].key, "next": "/console/orders"},
        follow_redirects=False)
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
    response = console.client.post("/console/signin", data={
        "csrf": console.csrf(), "key": console.keys["agent"].key,
        "next": "https://evil.example/"}, follow_redirects=False)
    assert response.headers["location"] == "/console/"


def test_sign_out_ends_the_session(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/orders")
    response = console.post("/console/signout")
    assert response.url.path == "/console/signin" and "You are signed out" in response.text
    assert console.get("/console/orders").url.path == "/console/signin"


def test_a_post_without_the_session_csrf_token_is_refused(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    for token in ("", "forged-token"):
        response = console.post("/console/drafts", {"customerId": "C-CSRF"}, csrf=token)
        assert response.status_code == 403
        assert "CSRF token is missing or wrong" in response.text
    with console.ctx.read() as models:
        assert models.search_orders(OrderFilter(customer="C-CSRF", include_drafts=True)
                                    ).total == 0


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
    sessions = Sessions(secret_of(None), console.ctx.auth)
    key = console.keys["manager"]
    stale = Session(csrf="x" * 20, expires=time.time() - 1, actor=key.actor, role=key.role,
                    fingerprint=sessions.fingerprint(key.key))
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
    one, two = Sessions(secret_of(secret), console.ctx.auth), \
        Sessions(secret_of(secret), console.ctx.auth)
    session, why = two.decode(one.encode(one.for_key(console.keys["agent"])))
    assert why is None and session is not None and session.actor == "alice"
    other, why = Sessions(secret_of("t" * 40), console.ctx.auth).decode(
        one.encode(one.anonymous()))
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
    response = console.post(f"/console/orders/{first}/approve",
                            {"version": re.search(r'name="version" value="(\d+)"',
                                                  page.text).group(1), "note": "fine"})
    assert response.status_code == 200 and "approved and in progress" in response.text
    assert state_of(console.ctx, first) == "inProgress"

    page = console.get(f"/console/orders/{second}")
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)
    response = console.post(f"/console/orders/{second}/reject", {"version": version})
    assert response.status_code == 400 and "a reason is required" in response.text
    assert 'aria-describedby="f-reason-error' in response.text
    assert state_of(console.ctx, second) == "acknowledged"
    response = console.post(f"/console/orders/{second}/reject",
                            {"version": version, "reason": "no coverage at S1"})
    assert response.status_code == 200 and "no coverage at S1" in response.text
    assert state_of(console.ctx, second) == "rejected"


def test_a_late_decision_is_shown_as_a_plain_conflict(console: Any, second_console: Any
                                                      ) -> None:
    order_id = received_order(console.ctx)
    console.sign_in("manager")
    second_console.sign_in("manager2")
    bob = console.get(f"/console/orders/{order_id}")
    carol = second_console.get(f"/console/orders/{order_id}")
    version = re.search(r'name="version" value="(\d+)"', carol.text).group(1)
    console.post(f"/console/orders/{order_id}/approve",
                 {"version": version}, csrf=console.csrf(bob))
    response = second_console.post(f"/console/orders/{order_id}/reject",
                                   {"version": version, "reason": "too late"},
                                   csrf=second_console.csrf(carol))
    assert response.status_code == 409
    message = text_of(response.text)
    assert "Someone else decided first" in message
    assert re.search(r"already approved by bob at \d{4}-\d\d-\d\d \d\d:\d\d UTC; the order is "
                     r"now inProgress", message), message
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
    console.ctx.app.request_cancellation(UPSTREAM, order_id, "customer moved")
    console.ctx.sync()
    console.sign_in("manager")
    queue = console.get("/console/queue?kind=cancellation")
    assert str(order_id)[:8] in queue.text or "customer moved" in queue.text
    page = console.get(f"/console/orders/{order_id}")
    assert "Deny cancellation" in page.text
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)
    response = console.post(f"/console/orders/{order_id}/deny-cancellation",
                            {"version": version, "reason": "work started"})
    assert response.status_code == 200 and "cancellation is denied" in response.text
    assert state_of(console.ctx, order_id) == "acknowledged"


# ------------------------------------------------------------------- capture
def capture(console: Any, customer: str) -> UUID:
    """A draft with one complete item, submitted through the console's forms."""
    console.get("/console/drafts/new")
    draft = console.post("/console/drafts", {"customerId": customer, "priority": "1"})
    draft_path = draft.url.path
    console.get(f"{draft_path}/items/new?spec=managed-router")
    console.post(f"{draft_path}/items", {"spec": "managed-router", "itemId": "1",
                                         "placeId": "S9", "char.model": "c1100"})
    response = console.post(f"{draft_path}/submit")
    assert response.url.path.startswith("/console/orders/"), text_of(response.text)
    return UUID(draft_path.rsplit("/", 1)[1])


def test_header_errors_are_shown_next_to_the_fields_with_the_values_kept(console: Any
                                                                          ) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    response = console.post("/console/drafts", {"customerId": "C-KEEP",
                                                "requestedStartDate": "31/12/2030",
                                                "customerName": "Keep Me Ltd"})
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
    page = console.post(f"{draft_path}/items", {"spec": "ethernet-private-line",
                                                "itemId": "2", "placeId": "S2",
                                                "char.bandwidthMbps": "5"})
    panel = text_of(page.text.split('id="validation"')[1])
    for expected in ("item 1: required characteristic bandwidthMbps",
                     "item 1: required characteristic accessType", "item 1: no site",
                     "item 2: required characteristic aEndSiteId",
                     "item 2: characteristic bandwidthMbps value 5 is outside"):
        assert expected in panel, panel
    response = console.post(f"{draft_path}/submit")
    assert response.status_code == 400 and "cannot be submitted yet" in response.text


def test_a_value_of_the_wrong_shape_is_refused_with_the_form_kept(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-SHAPE"}).url.path
    console.get(f"{draft_path}/items/new?spec=ethernet-private-line")
    response = console.post(f"{draft_path}/items", {
        "spec": "ethernet-private-line", "itemId": "1", "placeId": "S1",
        "char.bandwidthMbps": "lots", "char.vlanId": "12", "quantity": "two"})
    assert response.status_code == 400
    assert 'aria-describedby="f-char-bandwidthMbps-error' in response.text
    assert "must be a whole number" in response.text
    assert 'value="lots"' in response.text and 'value="12"' in response.text
    assert not console.ctx.app.get_order(UUID(draft_path.rsplit("/", 1)[1])).items


def test_an_item_is_configured_and_removed(console: Any) -> None:
    console.sign_in("agent")
    console.get("/console/drafts/new")
    draft_path = console.post("/console/drafts", {"customerId": "C-EDIT"}).url.path
    draft_id = UUID(draft_path.rsplit("/", 1)[1])
    console.get(f"{draft_path}/items/new?spec=internet-access")
    console.post(f"{draft_path}/items", {"spec": "internet-access", "itemId": "1",
                                         "placeId": "S1", "char.bandwidthMbps": "100",
                                         "char.accessType": "fibre",
                                         "char.ipv6Enabled": "yes"})
    edit = console.get(f"{draft_path}/items/1/edit")
    assert re.search(r'<option value="100" selected>', edit.text)
    response = console.post(f"{draft_path}/items/1", {"spec": "internet-access",
                                                      "placeId": "S7", "placeName": "Depot",
                                                      "char.bandwidthMbps": "200",
                                                      "char.ipv6Enabled": "yes"})
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
    for query in ("customer=C-FILTER", "site=S-FILTER", "kind=approval&customer=C-FILTER",
                  "specification=internet-access&customer=C-FILTER", "older=0&customer="
                  "C-FILTER", "younger=3600&customer=C-FILTER", "priority=2&site=S-FILTER"):
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
        rows = models.db.fetchall("SELECT path, status FROM audit_access_log "
                                  "WHERE actor = 'audit-1'")
    assert (f"/console/orders/{order_id}", 200) in [(p, s) for p, s in rows]


@pytest.mark.parametrize("path", ["/console/orders/0b9a1c1e-6f00-4d7b-9a57-000000000000",
                                  "/console/orders/not-an-id", "/console/nowhere",
                                  "/console/drafts/0b9a1c1e-6f00-4d7b-9a57-000000000000",
                                  "/console/drafts/new/items/new"])
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
    cases = [(f"/console/orders/{order_id}/approve", {"version": "x" * 50}),
             (f"/console/orders/{order_id}/explode", {}),
             (f"/console/orders/{order_id}/reject", {"version": "1", "reason": "r" * 5000}),
             ("/console/drafts", {"customerId": "c" * 300}),
             ("/console/drafts", {"customerId": "C\x00"})]
    for path, data in cases:
        response = console.post(path, data, csrf=token)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.headers["content-type"].startswith("text/html")
    response = console.client.post("/console/drafts", content=b"\xff\xfe",
                                   headers={"content-type": "application/x-www-form-urlencoded"})
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
    pages = ["/console/signin", "/console/orders", "/console/orders?state=draft",
             "/console/queue", f"/console/orders/{order_id}", "/console/drafts/new",
             draft_path]
    pages += [f"{draft_path}/items/new?spec={spec.id}"
              for spec in console.ctx.app.catalog.specifications]
    for path in pages:
        response = console.get(path)
        assert response.status_code == 200, path
        parser = _Labels()
        parser.feed(response.text)
        unlabelled = [c for c in parser.controls if c not in parser.labelled]
        assert not unlabelled, (path, unlabelled)
        assert {"header", "main", "nav"} <= parser.tags, path
        assert 'href="#main"' in response.text, path

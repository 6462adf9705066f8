"""The console's service lookup (issue 20): from an order item to its service and back.

Plain HTTP (TestClient, SQLite and PostgreSQL): the order page links each item to its
service (the one it names, or the one a completed `add` item created) and shows a modify
item's previous values; the service page shows the service and its history, each order
linked back; the lookup form; 404 pages; names and ids escaped. Then the same walk in a
real headless Chromium (marked `slow`, PostgreSQL), as tests/console/test_browser.py runs
it: the browser follows the item's link to its service page and the order link back.
"""

from __future__ import annotations

import html
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

import pytest
import uvicorn
from builders import KEY_ROLES, api_keys, header, item
from builders import ctx as command_ctx
from serviceorders.api.app import create_app
from serviceorders.api.auth import Authenticator
from serviceorders.api.context import ApiContext
from serviceorders.bootstrap import build_api_context, init_database
from serviceorders.domain.commands import (
    Approve,
    ChangeItemStates,
    ImportService,
    ItemStateChange,
    ReceiveOrder,
)
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import (
    ItemAction,
    ItemState,
    Party,
    Place,
    Role,
    ServiceRecord,
    SpecRef,
)
from serviceorders.settings import Settings

UPSTREAM = command_ctx("crm", Role.UPSTREAM)
MANAGER = command_ctx("carol", Role.MANAGER)  # not who sent the order: four-eyes
FULFILMENT = command_ctx("fulfil-1", Role.FULFILMENT)
OPERATOR = command_ctx("ops", Role.OPERATOR)
ACME = Party(id="CUST-SVC", name="Acme Ltd")


# ------------------------------------------------------------------- helpers
def completed_order(ctx: ApiContext, items: list[Any], external_id: str | None = None) -> UUID:
    """An order received from upstream, approved by a manager and completed by
    fulfilment, through the application's one door; the read models caught up."""
    app = ctx.app
    command = ReceiveOrder(
        header(
            external_id or f"SVC-{uuid4().hex[:8]}",
            description=None,
            related_parties=(ACME,),
        ),
        tuple(items),
    )
    order_id = app.handle(UPSTREAM, command).order_id
    app.handle(MANAGER, Approve(order_id))
    changes = tuple(ItemStateChange(i.id, ItemState.COMPLETED) for i in items)
    app.handle(FULFILMENT, ChangeItemStates(order_id, changes))
    ctx.sync()
    return order_id


def access(**kw: Any) -> Any:
    return item("1", place=Place(id="S-HQ", name="Head office"), **kw)


def hrefs(page: str, prefix: str) -> list[str]:
    """The links of the page that start with `prefix`, unescaped."""
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page) if h.startswith(prefix)]


def element(page: str, id_: str) -> str:
    """The text of the element with this id (tags dropped, spaces collapsed)."""
    found = re.search(rf'<(\w+)[^>]*\sid="{id_}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no #{id_} on the page"
    spaced = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))))
    return re.sub(r" ([,;])", r"\1", spaced).strip()


# ------------------------------------------------------ item -> service -> order
def test_an_add_item_links_to_the_service_it_created_and_back(console: Any) -> None:
    order_id = completed_order(console.ctx, [access()], "SVC-ADD-1")
    sid = service_id_for(order_id, "1")
    console.sign_in("agent")
    order_page = console.get(f"/console/orders/{order_id}")
    assert order_page.status_code == 200
    assert hrefs(order_page.text, "/console/services/") == [f"/console/services/{sid}"]
    assert "created by this item" in order_page.text

    service_page = console.get(f"/console/services/{sid}")
    assert service_page.status_code == 200, service_page.text
    page = service_page.text
    assert element(page, "service-id") == sid
    assert element(page, "service-state") == "active"
    # the specification as the catalog resolved it when the order came in
    assert (
        element(page, "service-specification") == "Dedicated Internet Access internet-access v2.1"
    )
    assert element(page, "service-customer") == "CUST-SVC — Acme Ltd"
    assert element(page, "service-places") == "S-HQ — Head office"
    assert "bandwidthMbps 100" in element(page, "service-characteristics")
    assert element(page, "service-origin").startswith("created by order SVC-ADD-1, item 1")
    history = element(page, "service-history")
    assert "created" in history and "fulfil-1 (fulfilment, api)" in history
    # Every order link of the page leads back to the order page.
    assert set(hrefs(page, "/console/orders/")) == {f"/console/orders/{order_id}"}
    back = console.get(f"/console/orders/{order_id}")
    assert back.status_code == 200 and "SVC-ADD-1" in back.text


def test_a_modify_item_links_to_its_service_shows_previous_values_and_the_history(
    console: Any,
) -> None:
    first = completed_order(console.ctx, [access()], "SVC-ADD-2")
    sid = service_id_for(first, "1")
    faster = access(
        action=ItemAction.MODIFY,
        service_id=sid,
        characteristics={"bandwidthMbps": 500, "accessType": "fibre"},
    )
    second = completed_order(console.ctx, [faster], "SVC-MOD-2")
    console.sign_in("manager")

    order_page = console.get(f"/console/orders/{second}").text
    assert hrefs(order_page, "/console/services/") == [f"/console/services/{sid}"]
    previous = re.findall(r'data-characteristic="([^"]+)">was <del>([^<]*)</del>', order_page)
    assert previous == [("bandwidthMbps", "100")]  # accessType did not change
    assert "created by this item" not in order_page

    page = console.get(f"/console/services/{sid}").text
    assert "bandwidthMbps 500" in element(page, "service-characteristics")
    assert element(page, "service-modified") == "order SVC-MOD-2, item 1"
    rows = re.findall(r'<tr data-type="(\w+)"', page)
    assert rows == ["ServiceCreated", "ServiceOrderOpened", "ServiceModified"]
    assert re.search(r"<dt>bandwidthMbps</dt><dd><del>100</del> → <ins>500</ins></dd>", page)
    assert set(hrefs(page, "/console/orders/")) == {
        f"/console/orders/{first}",
        f"/console/orders/{second}",
    }
    # The service as it was after its first event: before the modify order.
    then = console.get(f"/console/services/{sid}?version=1")
    assert then.status_code == 200
    assert "bandwidthMbps 100" in element(then.text, "service-characteristics")
    assert "after its event 1 of 3" in element(then.text, "as-of")


def test_the_lookup_form_opens_a_service_or_says_there_is_none(console: Any) -> None:
    order_id = completed_order(console.ctx, [access()])
    sid = service_id_for(order_id, "1")
    console.sign_in("agent")
    form = console.get("/console/services")
    assert form.status_code == 200
    assert 'href="/console/services" aria-current="page"' in form.text  # in the navigation
    found = console.client.get("/console/services", params={"id": sid}, follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/console/services/{sid}"
    missing = console.get("/console/services", params={"id": "SVC-DOES-NOT-EXIST"})
    assert missing.status_code == 404
    assert "There is no service SVC-DOES-NOT-EXIST" in missing.text
    assert 'value="SVC-DOES-NOT-EXIST"' in missing.text  # kept in the field
    too_long = console.get("/console/services", params={"id": "x" * 201})
    assert too_long.status_code == 404 and "at most 200 characters" in too_long.text


def test_unknown_services_and_versions_are_the_consoles_404_page(console: Any) -> None:
    order_id = completed_order(console.ctx, [access()])
    console.sign_in("agent")
    for path in (
        "/console/services/SVC-DOES-NOT-EXIST",
        f"/console/services/{order_id}",  # an order's id is not a service's
        f"/console/services/{service_id_for(order_id, '1')}?version=9",
        f"/console/services/{service_id_for(order_id, '1')}?version=x",
        f"/console/services/{service_id_for(order_id, '1')}?version=0",
        f"/console/services/{service_id_for(order_id, '1')}?version=%C2%B2",  # a superscript 2
    ):
        response = console.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert 'id="refusal"' in response.text and "Not found" in response.text
    unknown = console.get("/console/services/SVC-DOES-NOT-EXIST").text
    assert 'data-code="service_not_found"' in unknown
    assert "no service SVC-DOES-NOT-EXIST" in unknown


def test_the_service_pages_need_a_session(console: Any) -> None:
    response = console.client.get("/console/services/anything", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/signin?next=")


def test_names_ids_and_values_are_escaped(console: Any) -> None:
    evil = '<script>alert("x")</script>'
    odd_id = "LEGACY/<b>&1?#"
    supplier = ServiceRecord(
        id="LEGACY-SUPPLIER",
        name="Supplier line",
        specification=SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 50, "accessType": "fibre"},
        customer=Party(id="CUST-SVC", name=evil, role="customer"),
    )
    record = ServiceRecord(
        id=odd_id,
        name=evil,
        specification=SpecRef(id="internet-access", name=evil),
        characteristics={"note": evil, "bandwidthMbps": 50},
        places=(Place(id="S-<1>", name=evil),),
        customer=Party(id="CUST-SVC", name=evil, role="customer"),
        depends_on=("LEGACY-SUPPLIER",),
        extra={"category": evil},
    )
    console.ctx.app.handle(OPERATOR, ImportService(supplier))
    console.ctx.app.handle(OPERATOR, ImportService(record))
    console.sign_in("agent")
    found = console.client.get("/console/services", params={"id": odd_id}, follow_redirects=False)
    assert found.status_code == 303
    location = found.headers["location"]
    assert location == "/console/services/" + quote(odd_id, safe="")
    response = console.get(location)
    assert response.status_code == 200, response.text
    page = response.text
    assert "<script>" not in page and "<b>" not in page
    assert page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 5
    assert element(page, "service-id") == odd_id
    assert element(page, "service-origin").startswith("imported")
    assert element(page, "service-extra") == f"category {evil}"
    # Its supplier lists it as a dependent, linked with the id quoted whole.
    supplier_page = console.get("/console/services/LEGACY-SUPPLIER").text
    assert hrefs(supplier_page, "/console/services/L") == [
        location,  # its dependents
        "/console/services/LEGACY-SUPPLIER?version=1",  # its history: imported
        "/console/services/LEGACY-SUPPLIER?version=2",  # dependent added ...
        location,  # ... this one
    ]
    assert hrefs(page, "/console/services/L") == [
        "/console/services/LEGACY-SUPPLIER",
        f"{location}?version=1",
    ]


def test_an_item_naming_a_service_not_in_the_inventory_is_not_linked(
    console_settings: Settings, console_keys: dict[str, Any]
) -> None:
    """Under the flag policy an order may name a service the inventory does not hold."""
    flagging = console_settings.model_copy(update={"inventory_check": "flag"})
    ctx = build_api_context(flagging, Authenticator(list(console_keys.values())))
    try:
        from fastapi.testclient import TestClient

        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            command = ReceiveOrder(
                header("SVC-FLAGGED", description=None, related_parties=(ACME,)),
                (access(action=ItemAction.DELETE, service_id="SVC-DOES-NOT-EXIST"),),
            )
            order_id = ctx.app.handle(UPSTREAM, command).order_id
            ctx.sync()
            client.get("/console/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/signin").text)
            assert token
            client.post(
                "/console/signin", data={"csrf": token.group(1), "key": console_keys["agent"].key}
            )
            page = client.get(f"/console/orders/{order_id}").text
    finally:
        ctx.close()
    assert hrefs(page, "/console/services/") == []
    cell = re.search(r'<td class="item-service">(.*?)</td>', page, re.S)
    assert cell and "SVC-DOES-NOT-EXIST" in cell.group(1)
    assert "not in the inventory" in cell.group(1)


class _Page(HTMLParser):
    """Form controls and their labels, landmarks, tables' captions and header scopes."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labelled: set[str] = set()
        self.tags: list[str] = []
        self.unscoped: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.controls.append(found.get("id") or f"<{tag} name={found.get('name')}>")
        if tag == "label" and found.get("for"):
            self.labelled.add(found["for"] or "")
        if tag == "th" and "scope" not in found:
            self.unscoped.append(str(found))


def test_the_service_pages_have_labels_landmarks_and_captions(console: Any) -> None:
    order_id = completed_order(console.ctx, [access()])
    console.sign_in("auditor")  # every role reads them (an auditor's reads are logged)
    for path in ("/console/services", f"/console/services/{service_id_for(order_id, '1')}"):
        response = console.get(path)
        assert response.status_code == 200, path
        parsed = _Page()
        parsed.feed(response.text)
        assert not [c for c in parsed.controls if c not in parsed.labelled], path
        assert {"header", "main", "nav"} <= set(parsed.tags), path
        assert parsed.tags.count("table") == parsed.tags.count("caption"), path
        assert not parsed.unscoped, path
        assert 'href="#main"' in response.text, path


# ----------------------------------------------------------------- the browser
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("SERVICEORDERS_SCREENSHOTS") or Path(__file__).parent / "screenshots")
WAIT = 15


def shot(driver: Any, name: str) -> None:
    """A screenshot of the whole page at the laptop width (as test_browser.py takes)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1366, max(900, min(int(height) + 140, 4000)))
    try:
        assert driver.save_screenshot(str(SHOTS / f"{name}.png"))
    finally:
        driver.set_window_size(1366, 900)


@pytest.fixture
def live(settings: Settings) -> Iterator[tuple[str, dict[str, Any], ApiContext]]:
    """The app served by uvicorn with API keys (as test_browser.py's `live`)."""
    init_database(settings)
    keys = api_keys(("agent",))
    ctx = build_api_context(settings, Authenticator(list(keys.values())))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name="console-services-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # uvicorn offers no event to wait on
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", keys, ctx
    finally:
        server.should_exit = True
        thread.join(15)
        ctx.close()


@pytest.fixture
def chromium() -> Iterator[Callable[[], Any]]:
    """Headless Chromium (Debian's, never downloaded: missing, the test fails)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: install Debian's chromium and "
            "chromium-driver (.ci/run does)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opened: list[Any] = []

    def open_() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1366,900",
            "--disable-gpu",
            "--lang=en-GB",
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        opened.append(driver)
        return driver

    yield open_
    for driver in opened:
        driver.quit()


@pytest.mark.slow
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_the_browser_follows_an_item_to_its_service_and_back(
    live: tuple[str, dict[str, Any], ApiContext], chromium: Callable[[], Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, keys, ctx = live
    order_id = completed_order(ctx, [access()], "SVC-BROWSER-1")
    sid = service_id_for(order_id, "1")
    driver = chromium()
    wait = WebDriverWait(driver, WAIT)

    def css(selector: str) -> Any:
        return wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, selector)))

    def follow(link: Any) -> None:
        page = driver.find_element(By.TAG_NAME, "html")
        link.click()
        wait.until(EC.staleness_of(page))

    driver.get(url + "/")
    key = css("input[name='key']")
    page = driver.find_element(By.TAG_NAME, "html")
    key.send_keys(keys["agent"].key, Keys.ENTER)
    wait.until(EC.staleness_of(page))
    assert css("#who-actor").text == KEY_ROLES["agent"][0]

    driver.get(f"{url}/console/orders/{order_id}")
    assert css("#order-state").text.startswith("completed")
    shot(driver, "11-order-item-service-link")
    follow(css("td.item-service a[data-item='1']"))
    assert driver.current_url == f"{url}/console/services/{sid}"
    assert css("#service-id").text == sid
    assert css("#service-state").text == "active"
    assert "Dedicated Internet Access" in css("#service-specification").text
    assert css("#service-customer").text == "CUST-SVC — Acme Ltd"
    assert css("#service-places").text == "S-HQ — Head office"
    assert "bandwidthMbps\n100" in css("#service-characteristics").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#service-history tbody tr")
    assert [r.get_attribute("data-type") for r in rows] == ["ServiceCreated"]
    assert "fulfil-1" in rows[0].text and "SVC-BROWSER-1" in rows[0].text
    shot(driver, "12-service-page")

    follow(rows[0].find_element(By.CSS_SELECTOR, "a.order-link"))
    assert driver.current_url == f"{url}/console/orders/{order_id}"
    assert css("h1").text.startswith("Order SVC-BROWSER-1")

    # The lookup form in the navigation finds it too.
    follow(css("nav a[href='/console/services']"))
    field = css("input[name='id']")
    page = driver.find_element(By.TAG_NAME, "html")
    field.send_keys(sid, Keys.ENTER)
    wait.until(EC.staleness_of(page))
    assert css("#service-id").text == sid

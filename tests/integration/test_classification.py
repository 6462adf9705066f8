"""Every TMF641 v4.1 attribute has a personal-data class (issue 19, deliverable 1 and 4;
docs/audit.md, "What each attribute holds"): (a) the table in tmf/classification.py names
every attribute of every definition reachable from ServiceOrder_Create, ServiceOrder,
ServiceOrder_Update and CancelServiceOrder_Create in the official swagger, and nothing
else; (b) docs/audit.md carries the same table; (c) a real order carrying a distinctive
value in every attribute classed sealed (through the TMF641 doors: create, patch,
cancelServiceOrder; a manager's rejection and the point of no return's note for what is
told back) stores no plain copy of any of them in the events table, and GET returns each
revealed. On both backends, with the application's vault."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import Authenticator
from serviceorders.bootstrap import build_api_context, build_projector, init_database, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.values import CommandContext, ItemState, Role
from serviceorders.settings import Settings
from serviceorders.tmf.classification import (
    CLASSES_IN_ORDER,
    CLASSIFICATION,
    ROOTS,
    SEALED,
    markdown_table,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SWAGGER = ROOT / "tests" / "api" / "tmf641" / "TMF641-ServiceOrdering-v4.1.0.swagger.json"
DEFINITIONS: dict[str, Any] = json.loads(SWAGGER.read_text())["definitions"]
DOCS = ROOT / "docs" / "audit.md"
BASE = "/tmf-api/serviceOrdering/v4"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def swagger_attributes() -> list[str]:
    """`Definition.attribute` for every attribute reachable from the four roots."""
    seen: list[str] = []
    todo = list(ROOTS)
    while todo:
        name = todo.pop(0)
        if name not in seen:
            seen.append(name)
            todo.extend(r for r in _refs(DEFINITIONS[name]) if r not in seen)
    return [f"{d}.{a}" for d in seen for a in DEFINITIONS[d].get("properties", {})]


# ------------------------------------------------------------------ (a) and (b)
def test_every_swagger_attribute_has_a_class_and_no_entry_is_stale() -> None:
    attributes = swagger_attributes()
    assert len(attributes) > 250  # the walk found the model (284 in v4.1.0)
    assert sorted(set(attributes) - set(CLASSIFICATION)) == []  # every attribute classed
    assert sorted(set(CLASSIFICATION) - set(attributes)) == []  # no stale entry
    assert set(CLASSIFICATION.values()) <= set(CLASSES_IN_ORDER)
    assert set(CLASSIFICATION.values()) >= SEALED


def test_the_docs_carry_the_same_table() -> None:
    text = DOCS.read_text()
    section = text[text.index("\n## What each attribute holds\n") :]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows == markdown_table().splitlines()


# --------------------------------------------------------------------------- (c)
def _is_text(prop: dict[str, Any]) -> bool:
    if "$ref" in prop:
        target = DEFINITIONS[prop["$ref"].rsplit("/", 1)[-1]]
        return not target.get("properties") and "enum" not in target  # Any: any value
    return prop.get("type") == "string" and "enum" not in prop


def sent_as(key: str) -> str:
    """The request attribute a document attribute (`ServiceOrder.x`) is sent as."""
    if key == "ServiceOrder.cancellationReason":  # the cancellation request's
        return "CancelServiceOrder_Create.cancellationReason"
    if key.startswith("ServiceOrder."):
        return "ServiceOrder_Create." + key.split(".", 1)[1]
    return key


def sealed_texts() -> list[str]:
    """The attributes classed sealed whose value is a text (not an enumeration's)."""
    found = []
    for key, kind in CLASSIFICATION.items():
        definition, name = key.split(".", 1)
        if kind in SEALED and _is_text(DEFINITIONS[definition]["properties"][name]):
            found.append(key)
    return found


class Body:
    """Builds request bodies from the swagger with a distinctive value in every text
    attribute, remembering which attribute each value was sent in."""

    def __init__(self) -> None:
        self.sent: dict[str, list[str]] = {}  # Definition.attribute -> values sent there
        self.count = 0

    def text(self, key: str, prop: dict[str, Any]) -> str:
        self.count += 1
        n = self.count
        if prop.get("format") == "date-time":  # a distinctive instant
            at = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(minutes=n, seconds=n % 59)
            value = at.strftime("%Y-%m-%dT%H:%M:%S.017Z")
        elif prop.get("format") == "uri":
            value = f"https://zq{n:03d}.example/x"
        else:
            value = f"zq{n:03d}{key.rsplit('.', 1)[-1].strip('@')[:8]}"
        self.sent.setdefault(key, []).append(value)
        return value

    def value(self, key: str, prop: dict[str, Any], stack: tuple[str, ...]) -> Any:
        if "$ref" in prop:
            ref = prop["$ref"].rsplit("/", 1)[-1]
            target = DEFINITIONS[ref]
            if "enum" in target:
                return target["enum"][0]  # one of a list: not distinctive
            if not target.get("properties"):  # Any
                return self.text(key, {})
            if ref in stack:  # a cycle (a service of a service relationship): a reference
                return {"id": self.text(f"{ref}.id", {})}
            return self.of(ref, *stack)
        kind = prop.get("type")
        if kind == "array":
            return [self.value(key, prop["items"], stack)]
        if kind == "boolean":
            return True
        if kind == "integer":
            return 1
        if "enum" in prop:
            return prop["enum"][0]
        return self.text(key, prop)

    def of(self, definition: str, *stack: str, **given: Any) -> dict[str, Any]:
        """An object of `definition` with every attribute, `given` ones as given (None:
        left out)."""
        out: dict[str, Any] = {}
        for name, prop in DEFINITIONS[definition].get("properties", {}).items():
            if name in given:
                if given[name] is not None:
                    out[name] = given[name]
                continue
            out[name] = self.value(f"{definition}.{name}", prop, (*stack, definition))
        return out


def _service(body: Body, spec: str, characteristics: dict[str, Any], *places: str) -> Any:
    return body.of(
        "ServiceRefOrValue",
        serviceSpecification=body.of("ServiceSpecificationRef", id=spec, name=None, version=None),
        serviceCharacteristic=[
            body.of("Characteristic", name=name, value=value)
            for name, value in characteristics.items()
        ],
        place=[body.of("RelatedPlaceRefOrValue", id=place, role="site") for place in places],
        serviceOrderItem=None,  # v4.1's RelatedServiceOrderItem: classed, sent below
    )


def create_body(body: Body, external_id: str) -> dict[str, Any]:
    nested = body.of(
        "ServiceOrderItem",
        id="2",
        action="add",
        quantity=1,
        state=None,
        errorMessage=None,
        serviceOrderItem=None,
        serviceOrderItemRelationship=None,
        service=_service(body, "managed-router", {"model": "c1100"}, "S1"),
    )
    service = _service(
        body, "internet-access", {"bandwidthMbps": 100, "accessType": "fibre"}, "S1", "S2"
    )
    service["serviceOrderItem"] = [body.of("RelatedServiceOrderItem")]
    item = body.of(
        "ServiceOrderItem",
        id="1",
        action="add",
        quantity=1,
        state=None,
        errorMessage=None,
        serviceOrderItem=[nested],
        serviceOrderItemRelationship=[
            body.of(
                "ServiceOrderItemRelationship",
                relationshipType="bundled",
                orderItem=body.of("ServiceOrderItemRef", itemId="2"),
            )
        ],
        service=service,
    )
    return body.of(
        "ServiceOrder_Create",
        cancellationDate=None,
        cancellationReason=None,
        category="enterprise",
        priority="1",
        externalId=external_id,
        requestedStartDate="2031-06-01T08:00:00Z",
        requestedCompletionDate="2031-07-01T08:00:00Z",
        note=[body.of("Note", date="2030-01-01T00:00:00Z")],
        relatedParty=[
            body.of("RelatedParty", id="CUST-CL", role="customer", **{"@referredType": None})
        ],
        orderRelationship=[
            body.of(
                "ServiceOrderRelationship",
                id="PO-1",
                relationshipType="requires",
            )
        ],
        serviceOrderItem=[item],
    )


def _events(settings: Settings) -> bytes:
    db = open_read_db(settings)
    try:
        table = "serviceorders_events" if db.dialect == "postgres" else "stored_events"
        return b"\n".join(bytes(r[0]) for r in db.fetchall(f"SELECT state FROM {table}"))
    finally:
        db.close()


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    init_database(settings)
    ctx = build_api_context(settings, Authenticator([]))  # open: the anonymous operator
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            yield client
    finally:
        ctx.close()


MANAGER = CommandContext.for_actor("mgr", Role.MANAGER)
FULFILMENT = CommandContext.for_actor("fulfil", Role.FULFILMENT)


def test_every_sealed_attribute_is_stored_sealed_and_returned_revealed(
    http: TestClient, app: ServiceOrders, settings: Settings
) -> None:
    body = Body()
    created = http.post(f"{BASE}/serviceOrder", json=create_body(body, "CL-1"))
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    patched_id = http.post(f"{BASE}/serviceOrder", json=create_body(Body(), "CL-4")).json()["id"]
    patch = {
        "description": body.text("ServiceOrder_Update.description", {}),
        "notificationContact": body.text("ServiceOrder_Update.notificationContact", {}),
    }
    patched = http.patch(f"{BASE}/serviceOrder/{patched_id}", json=patch)
    assert patched.status_code == 200, patched.text
    reason = body.text("CancelServiceOrder_Create.cancellationReason", {})
    cancel = {"serviceOrder": {"id": order_id}, "cancellationReason": reason}
    requested = http.post(f"{BASE}/cancelServiceOrder", json=cancel)
    assert requested.status_code == 201, requested.text

    # What the order tells back: a manager's rejection, the point of no return's note.
    rejected = http.post(f"{BASE}/serviceOrder", json=create_body(Body(), "CL-2")).json()["id"]
    rejection = body.text("ServiceOrderErrorMessage.message", {})
    app.handle(MANAGER, cmd.Reject(UUID(rejected), rejection))
    passed = http.post(f"{BASE}/serviceOrder", json=create_body(Body(), "CL-3")).json()["id"]
    app.handle(MANAGER, cmd.Approve(UUID(passed)))
    note = body.text("ServiceOrderMilestone.message", {})
    app.handle(FULFILMENT, cmd.ReachPointOfNoReturn(UUID(passed), note))
    failure = body.text("ServiceOrderItemErrorMessage.message", {})
    changes = (
        cmd.ItemStateChange("2", ItemState.IN_PROGRESS),
        cmd.ItemStateChange("2", ItemState.FAILED, failure),
    )
    app.handle(FULFILMENT, cmd.ChangeItemStates(UUID(passed), changes))
    build_projector(settings).catch_up()

    # Each text attribute classed sealed was sent a distinctive value (objects and lists
    # are covered by their definitions' rows; a value of an enumeration is not distinctive).
    unsent = sorted(k for k in sealed_texts() if sent_as(k) not in body.sent)
    assert unsent == []

    raw = _events(settings)
    stored_plain = sorted(
        f"{key}={value}"
        for key, values in body.sent.items()
        for value in values
        if CLASSIFICATION[key] in SEALED and value.encode() in raw
    )
    assert stored_plain == []

    documents = " ".join(
        http.get(f"{BASE}/serviceOrder/{i}").text for i in (order_id, patched_id, rejected, passed)
    )
    not_returned = sorted(
        f"{key}={value}"
        for key, values in body.sent.items()
        for value in values
        if CLASSIFICATION.get(key) in SEALED and value not in documents
    )
    assert not_returned == []

"""`/openapi.json` describes every write's request body, with the schema of the very model
the handler validates with, and a body that breaks that schema is still a TMF Error 400
(the handlers validate bodies themselves, not FastAPI: no 422).

The console's browser test (tests/console/test_browser.py, `-k docs`) opens `/docs` with
the outside network blocked and sees these operations listed."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from builders import draft_item
from fastapi.testclient import TestClient
from serviceorders.api.bodies import DraftCreate, ItemCreate
from serviceorders.api.hub import EventSubscriptionInput
from serviceorders.tmf.tmf641_in import (
    CancelServiceOrderCreate,
    ServiceOrderCreate,
    ServiceOrderUpdate,
)

TMF641 = "/tmf-api/serviceOrdering/v4"
WRITES = ("post", "patch", "put")
# The writes that take no body at all: their handlers never read one (shown below by
# sending them one that is not even an object).
NO_BODY = {
    ("post", "/api/v1/drafts/{id}/submit"): "submits the draft as it stands",
    ("post", "/api/v1/hub/{id}/resume"): "resumes the listener the path names",
}
REF = "#/components/schemas/"


def writes(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in WRITES
    ]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    seen = set()
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith(REF) and ref not in seen, ref
        seen.add(ref)
        name = ref.removeprefix(REF)
        assert name in spec["components"]["schemas"], f"{ref} does not resolve"
        schema = spec["components"]["schemas"][name]
    return schema


def refs(node: Any) -> list[str]:
    """Every `$ref` in the document."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.append(node["$ref"])
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            found += refs(value)
    return found


@pytest.fixture
def spec(open_client: TestClient) -> dict[str, Any]:
    response = open_client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def bodies(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, requestBody) of every write that has one."""
    return [
        (method, path, op["requestBody"])
        for method, path, op in writes(spec)
        if "requestBody" in op
    ]


def test_every_write_operation_has_a_request_body_schema(spec: dict[str, Any]) -> None:
    operations = writes(spec)
    assert len(operations) >= 20, [f"{m} {p}" for m, p, _ in operations]
    for method, path, op in operations:
        if (method, path) in NO_BODY:
            assert "requestBody" not in op, (method, path)
            continue
        body = op.get("requestBody")
        assert body, f"{method.upper()} {path} has no request body schema"
        assert body["content"], (method, path)
        for media, content in body["content"].items():
            assert media == "application/json" or media.endswith("+json"), (method, path)
            schema = resolve(spec, content["schema"])
            assert schema.get("type") == "object" and schema.get("properties"), (
                method,
                path,
                media,
                schema,
            )
    assert set(NO_BODY) <= {(m, p) for m, p, _ in operations}, "a listed route is gone"
    # Every reference anywhere in the document resolves (nested models included).
    for ref in refs(spec):
        resolve(spec, {"$ref": ref})


def test_the_schemas_are_those_of_the_validating_models(spec: dict[str, Any]) -> None:
    by_operation = {(m, p): b for m, p, b in bodies(spec)}
    for (method, path, media), model in {
        ("post", f"{TMF641}/serviceOrder", "application/json"): ServiceOrderCreate,
        (
            "patch",
            f"{TMF641}/serviceOrder/{{id}}",
            "application/merge-patch+json",
        ): ServiceOrderUpdate,
        ("patch", f"{TMF641}/serviceOrder/{{id}}", "application/json"): ServiceOrderUpdate,
        ("post", f"{TMF641}/cancelServiceOrder", "application/json"): CancelServiceOrderCreate,
        ("post", f"{TMF641}/hub", "application/json"): EventSubscriptionInput,
        ("post", "/api/v1/drafts", "application/json"): DraftCreate,
        ("post", "/api/v1/drafts/{id}/items", "application/json"): ItemCreate,
    }.items():
        body = by_operation[(method, path)]
        assert body["required"] is True
        schema = resolve(spec, body["content"][media]["schema"])
        expected = model.model_json_schema(ref_template=REF + "{model}")
        expected.pop("$defs", None)
        assert schema == expected, (method, path)


def _path(template: str) -> str:
    return template.replace("{id}", str(uuid4())).replace("{itemId}", "1")


def _assert_tmf_400(response: Any, what: str) -> dict[str, Any]:
    assert response.status_code == 400, (what, response.status_code, response.text)
    error = response.json()
    assert error["@type"] == "Error" and error["status"] == "400", (what, error)
    assert error["code"] == "invalid_request" and error["message"], (what, error)
    return error


def test_a_body_against_the_schema_is_a_tmf_400_at_every_write(
    spec: dict[str, Any], open_client: TestClient
) -> None:
    """Not an object, or an object without the properties the schema requires: 400 with a
    TMF Error naming them (never FastAPI's 422), in every media type the route lists."""
    checked = 0
    for method, path, body in bodies(spec):
        for media, content in body["content"].items():
            what = f"{method.upper()} {path} ({media})"
            response = open_client.request(
                method, _path(path), content=b"[]", headers={"Content-Type": media}
            )
            _assert_tmf_400(response, what)
            required = resolve(spec, content["schema"]).get("required", [])
            if required:
                response = open_client.request(
                    method, _path(path), content=b"{}", headers={"Content-Type": media}
                )
                error = _assert_tmf_400(response, what)
                assert {d["location"] for d in error["details"]} == set(required), what
            checked += 1
    assert checked >= 20


def test_the_writes_without_a_body_read_none(open_client: TestClient) -> None:
    """The NO_BODY routes do their work whatever is sent as a body."""
    draft = open_client.post("/api/v1/drafts", json={"priority": "2"})
    assert draft.status_code == 201, draft.text
    draft_id = draft.json()["id"]
    item = draft_item("1")
    assert open_client.post(f"/api/v1/drafts/{draft_id}/items", json=item).status_code == 201
    listener = open_client.post(f"{TMF641}/hub", json={"callback": "http://127.0.0.1:9/l"})
    assert listener.status_code == 201, listener.text
    for (method, template), _ in NO_BODY.items():
        path = template.replace("{id}", draft_id if "drafts" in template else listener.json()["id"])
        response = open_client.request(
            method, path, content=b"[not json", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, (path, response.text)
    assert open_client.get(f"{TMF641}/serviceOrder/{draft_id}").json()["state"] == "acknowledged"


def test_the_documented_order_example_creates_an_order(
    spec: dict[str, Any], open_client: TestClient
) -> None:
    """What "Try it out" fills in for POST serviceOrder is an order the API accepts."""
    content = spec["paths"][f"{TMF641}/serviceOrder"]["post"]["requestBody"]["content"]
    example = content["application/json"]["example"]
    ServiceOrderCreate.model_validate(example)
    response = open_client.post(f"{TMF641}/serviceOrder", json=example)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["state"] == "acknowledged" and order["externalId"] == example["externalId"]
    assert [i["id"] for i in order["serviceOrderItem"]] == ["1", "2"]

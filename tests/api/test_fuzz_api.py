"""Fuzzing the REST API (issue "Reliability", bad input): whatever arrives, the answer is never
a server error and every refusal is a TMF `Error` body.

* A schemathesis **stateful** run over TM Forum's TMF641 v4.1.0 Swagger, with the links the
  document lacks added in memory (create -> retrieve / patch / delete / cancel, cancel ->
  retrieve, hub -> unregister): no 5xx, statuses and bodies as the spec says.
* Hypothesis-generated bodies (random JSON trees, a valid order with one part replaced by a
  wrong type, an unknown enum value, a huge string or deep nesting, undecodable bytes,
  other encodings, other content types), headers (Idempotency-Key, Content-Type, If-Match,
  correlation ids, Authorization) and query strings, against every body-taking and list
  endpoint: never 5xx, a TMF `Error` for every 4xx.
* The limits (docs/reliability.md, "Payload limits"): 1 MiB bodies (413), 500 items,
  4000-character texts.
* Retries with the same `Idempotency-Key` (or `externalId`), one after the other and
  concurrently against a live server, create exactly one order and all answer its id.

`SERVICEORDERS_FUZZ_SEED=N` runs another seed (default: fixed, for reproducible CI).
"""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import httpx
import pytest
import schemathesis
from builders import (
    REVIEW_QUEUE_FILTERS,
    TMF_ORDER_FILTERS,
    TMF_PATCH_REFUSES,
    TYPED,
    json_paths,
    tmf_item,
    tmf_router,
)
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serviceorders.bootstrap import build_application
from serviceorders.settings import Settings
from serviceorders.support import limits
from serviceorders.tmf.tmf641_in import REFUSED_ON_CREATE

SEED = int(os.environ.get("SERVICEORDERS_FUZZ_SEED", "641"))
BASE = "/tmf-api/serviceOrdering/v4"
ORDERS = f"{BASE}/serviceOrder"
CANCEL = f"{BASE}/cancelServiceOrder"
HUB = f"{BASE}/hub"
MAX_BODY = 1_048_576
SPEC = Path(__file__).parent / "tmf641" / "TMF641-ServiceOrdering-v4.1.0.swagger.json"

FUZZ = hsettings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


# ---------------------------------------------------------------------- the answers
def assert_answer(response: Any, what: object = "") -> None:
    """Never a server error; a 4xx carries a TMF `Error` body."""
    status = response.status_code
    assert status < 500, f"{what!r}: {status} {response.text[:800]}"
    if status >= 400:
        content_type = response.headers.get("content-type") or ""
        if isinstance(content_type, list):  # schemathesis' responses: a list per header
            content_type = content_type[0] if content_type else ""
        assert content_type.startswith("application/json"), (
            f"{what!r}: {status} without a JSON body"
        )
        body = response.json()
        assert isinstance(body, dict), f"{what!r}: {body!r}"
        assert body.get("@type") == "Error", f"{what!r}: {body!r}"
        assert body.get("status") == str(status), f"{what!r}: {body!r}"
        for name in ("code", "reason", "message"):
            assert isinstance(body.get(name), str) and body[name], f"{what!r}: {body!r}"


SITE = ("S1", "Site one")


def make_body(external_id: str | None = None) -> dict[str, Any]:
    """A valid ServiceOrder_Create of our catalog (as tests/api/conftest.py's)."""
    body: dict[str, Any] = {
        "description": "internet and a router",
        "category": "enterprise",
        "priority": "2",
        "requestedStartDate": "2031-01-02T10:00:00Z",
        "relatedParty": [{"id": "CUST-1", "name": "Acme", "role": "customer"}],
        "note": [{"text": "call first", "author": "crm"}],
        "serviceOrderItem": [
            tmf_item("1", place=SITE, quantity=1, **TYPED),
            tmf_router("2", "1", SITE, **TYPED),
        ],
        "@type": "ServiceOrder",
    }
    if external_id is not None:
        body["externalId"] = external_id
    return body


# ----------------------------------------------------------------- hypothesis strategies
# Integers within 64 bits and shallow nesting here; the edge cases beyond (huge integers,
# deep nesting, 4,300+ digit numbers: 400 invalid_json) are pinned in EDGE_CASES.
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
LEAVES = (
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            "add",
            "modify",
            "delete",
            "noChange",
            "explode",
            "ADD",
            "acknowledged",
            "inProgress",
            "completed",
            "teleport",
            "2031-01-01T00:00:00Z",
            "2031-13-45",
            "00000000-0000-0000-0000-000000000000",
            "internet-access",
            "\u202e\ufeff",
            "💥" * 5,
        ]
    )
)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=16), inner, max_size=4)
    ),
    max_leaves=25,
)
UNKNOWN_ENUMS = st.sampled_from(
    [
        "explode",
        "Add",
        "ADD",
        "remove",
        "upgrade",
        "",
        " add",
        "add ",
        "null",
        "pending",
        "cancelled",
        "assessing",
    ]
)


def deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"x": value}
    return value


REPLACEMENTS = st.one_of(
    JSON,
    UNKNOWN_ENUMS,
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1, 10**18]),
    st.text(min_size=4001, max_size=4100),  # just over MAX_TEXT
    st.integers(min_value=60, max_value=235).map(deep),  # deeper than Kafka's 64 levels
    st.lists(st.just({"id": "1"}), min_size=0, max_size=3),
)


BODY_PATHS = [p for p in json_paths(make_body()) if p]


@st.composite
def mutated_orders(draw: st.DrawFn) -> dict[str, Any]:
    """A valid order with one to three parts replaced (or removed)."""
    body = make_body(draw(st.none() | st.text(min_size=1, max_size=30)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(BODY_PATHS))
        parent: Any = body
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(REPLACEMENTS)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this part
    return body


def encode(value: Any) -> bytes:
    # allow_nan: Python's json reads NaN / Infinity, so clients may send them.
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
    st.text(alphabet="äöüßéèçñ€", min_size=1, max_size=50).map(
        lambda t: (
            json.dumps({"description": t}, ensure_ascii=False)
            .encode("utf-8")
            .decode("utf-8")
            .encode("latin-1", "replace")
        )
    ),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"{",
            b'{"serviceOrderItem": [',
            b"\xff\xfe{\x00}\x00",
            b'{"serviceOrderItem": NaN}',
            b'{"description": Infinity, "serviceOrderItem": []}',
            b'{"a": 1, "a": 2}',
            b"\xef\xbb\xbf{}",
            b'{"description": "\\ud800"}',
            b'{"description": "\\u0000"}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"x":' * 5000 + b"1" + b"}" * 5000,
            b"1" * 4300,
            b"-" + b"9" * 4299,
        ]
    ),
    mutated_orders().map(encode),
    JSON.map(encode),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "APPLICATION/JSON",
        "application/json; charset=latin-1",
        "application/json;;;",
        "text/plain",
        "application/xml",
        "",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/*",
        "*/*",
        "json",
    ]
)
HEADER_BYTES = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
IF_MATCH = st.one_of(
    HEADER_TEXT,
    HEADER_BYTES,
    st.sampled_from(
        ['"1"', "*", 'W/"1"', '"1", "2"', '"-1"', '"99999999999"', '""', ",,,", "W/", '"1" "2"']
    ),
)


def header_sets() -> st.SearchStrategy[dict[str, bytes]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "idempotency-key": st.one_of(
                HEADER_BYTES,
                HEADER_TEXT.map(str.encode),
                st.just(b" " * 250),
                st.just(b"k" * 10_000),
            ),
            "if-match": IF_MATCH.map(lambda v: v if isinstance(v, bytes) else v.encode()),
            "x-correlation-id": HEADER_BYTES,
            "x-causation-id": HEADER_BYTES,
            "x-request-id": HEADER_BYTES,
            "accept": st.sampled_from([b"text/html", b"application/xml", b"*/*", b"\xff"]),
            "content-length": st.sampled_from([b"-1", b"abc", b"99999999999999999999", b" 5"]),
        },
    )


# -------------------------------------------------------------------------- fixtures
@pytest.fixture
def api_settings_update() -> dict[str, Any]:
    """For tests/api/conftest.py's api_settings: hub delivery off (generated callbacks are
    never called; one loopback listener, 127.0.0.1:9, is allowed there)."""
    return {"hub_delivery": False}


@pytest.fixture
def admin(auth: Callable[[str | None], dict[str, str]]) -> dict[str, str]:
    return auth("admin")


@pytest.fixture
def targets(client: Any, admin: dict[str, str], flow: Any) -> dict[str, list[tuple[str, str]]]:
    """(method, path) of every body-taking endpoint, on existing resources."""
    order = client.post(ORDERS, json=make_body("fuzz-target"), headers=admin)
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    other = flow.in_progress()
    draft = flow.draft()
    body = [
        ("POST", ORDERS),
        ("PATCH", f"{ORDERS}/{order_id}"),
        ("POST", CANCEL),
        ("POST", HUB),
        ("POST", "/api/v1/drafts"),
        ("POST", f"/api/v1/drafts/{draft}/items"),
        ("PATCH", f"/api/v1/drafts/{draft}/items/1"),
        ("POST", f"/api/v1/orders/{order_id}/reject"),
        ("POST", f"/api/v1/orders/{order_id}/notes"),
        ("POST", f"/api/v1/orders/{other}/hold"),
        ("POST", f"/api/v1/orders/{other}/informationRequest"),
        ("POST", f"/api/v1/orders/{other}/items/1/state"),
        ("POST", f"/api/v1/orders/{other}/cancellation/deny"),
    ]
    reads = [
        ORDERS,
        f"{ORDERS}/{order_id}",
        CANCEL,
        "/api/v1/reviewQueue",
        "/api/v1/hub",
        f"/api/v1/orders/{order_id}/history",
        f"/api/v1/orders/{order_id}",
        f"/api/v1/orders/{order_id}/events",
        "/api/v1/audit/access-log",
        "/tmf-api/serviceCatalogManagement/v4/serviceSpecification",
    ]
    return {"body": body, "read": [("GET", p) for p in reads], "order": [("x", order_id)]}


# ---------------------------------------------------------------- (b) bodies and headers
@FUZZ
@seed(SEED)
@given(data=st.data())
def test_random_bodies_never_get_a_server_error(client, admin, targets, data):
    method, path = data.draw(st.sampled_from(targets["body"]), label="endpoint")
    raw = data.draw(RAW_BODIES, label="body")
    content_type = data.draw(CONTENT_TYPES, label="content-type")
    headers = {**admin, "content-type": content_type} if content_type else dict(admin)
    response = client.request(method, path, content=raw, headers=headers)
    assert_answer(response, (method, path, content_type, raw[:300]))


@FUZZ
@seed(SEED)
@given(body=mutated_orders())
def test_mutated_orders_are_created_or_refused_with_an_error(client, admin, body):
    response = client.post(
        ORDERS, content=encode(body), headers={**admin, "content-type": "application/json"}
    )
    assert_answer(response, body)
    assert response.status_code in (201, 400, 409), response.text
    if response.status_code == 201:  # what was accepted reads back
        got = client.get(f"{ORDERS}/{response.json()['id']}", headers=admin)
        assert got.status_code == 200, got.text


@FUZZ
@seed(SEED)
@given(data=st.data())
def test_mutated_patches_and_drafts_never_get_a_server_error(client, admin, targets, data):
    body = data.draw(mutated_orders(), label="body")
    patch = {
        k: v
        for k, v in body.items()
        if k not in ("externalId",) and data.draw(st.booleans(), label=f"keep {k}")
    }
    method, path = data.draw(st.sampled_from(targets["body"][1:7]), label="endpoint")
    response = client.request(
        method, path, content=encode(patch), headers={**admin, "content-type": "application/json"}
    )
    assert_answer(response, (method, path, patch))


# Non-finite and out-of-range numbers (issue 15): JSON has none, Python's json reads them.
NON_FINITE = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "2e308",
        "-1.8e308",
        "1E+999",
        "123456789e999",
    ]
)
SENTINEL = "\u2063non-finite\u2063"  # a text no generated body contains


@FUZZ
@seed(SEED)
@given(data=st.data())
def test_non_finite_numbers_are_refused_before_any_write(client, admin, targets, data):
    """A non-finite number anywhere in any body-taking endpoint's body: 400 naming the
    place, nothing written."""
    method, path = data.draw(st.sampled_from(targets["body"]), label="endpoint")
    body = make_body(data.draw(st.none() | st.uuids().map(str), label="externalId"))
    where = data.draw(st.sampled_from([p for p in json_paths(body) if p]), label="where")
    parent: Any = body
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = SENTINEL
    number = data.draw(NON_FINITE, label="number")
    raw = encode(body).replace(json.dumps(SENTINEL, ensure_ascii=False).encode(), number.encode())
    recorder = client.app.state.ctx.app.recorder
    before = recorder.max_notification_id()
    response = client.request(
        method,
        path,
        content=raw,
        headers={**admin, "content-type": "application/json", "if-match": "*"},
    )
    assert_answer(response, (method, path, raw[:300]))
    assert response.status_code == 400, (method, path, raw[:300], response.text)
    assert response.json()["code"] == "invalid_json", response.text
    assert "not a finite number" in response.json()["message"], response.text
    assert recorder.max_notification_id() == before


@FUZZ
@seed(SEED)
@given(data=st.data())
def test_random_headers_never_get_a_server_error(client, admin, targets, data):
    method, path = data.draw(st.sampled_from(targets["body"] + targets["read"]), label="endpoint")
    headers = data.draw(header_sets(), label="headers")
    headers.pop("content-length", None)  # httpx sets it; a wrong one is tested below
    headers["content-type"] = data.draw(CONTENT_TYPES, label="content-type").encode()
    auth = data.draw(st.sampled_from(["admin", "none", "garbage"]), label="auth")
    if auth == "admin":
        headers["authorization"] = admin["Authorization"].encode()
    elif auth == "garbage":
        headers["authorization"] = data.draw(HEADER_BYTES, label="authorization")
    body = encode(make_body(data.draw(st.none() | st.text(min_size=1, max_size=10))))
    content = body if method != "GET" else None
    response = client.request(method, path, content=content, headers=headers)
    assert_answer(response, (method, path, headers))


# Every query parameter of the API, once (dict.fromkeys: the review queue's priority too).
QUERY_NAMES = list(
    dict.fromkeys(
        [
            "fields",
            "offset",
            "limit",
            *TMF_ORDER_FILTERS,
            *REVIEW_QUEUE_FILTERS,
            "all",
            "asOf",
            "version",
            "diff",
            "from",
            "to",
            "documents",
            "actor",
            "since",
            "until",
            "sort",
            "filter",
            "depth",
        ]
    )
)
QUERY_VALUES = st.one_of(
    st.text(max_size=60),
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(
        [
            "",
            "-1",
            "0",
            "1e9",
            "99999999999999999999999",
            "true",
            "null",
            "2031-01-01T00:00:00Z",
            "2031-01-01",
            "2031-13-45T99:99",
            "P1D",
            "-P1D",
            "1h",
            "\x00",
            "' OR 1=1 --",
            "%",
            "id,href",
            ",,,",
            "yes",
            "no",
        ]
    ),
)


@FUZZ
@seed(SEED)
@given(data=st.data())
def test_random_query_strings_never_get_a_server_error(client, admin, targets, data):
    _, path = data.draw(st.sampled_from(targets["read"]), label="endpoint")
    if data.draw(st.booleans(), label="raw"):
        query = data.draw(st.text(max_size=120), label="query")
        url = f"{path}?{quote(query, safe='=&%+;')}"
    else:
        params = data.draw(
            st.lists(
                st.tuples(st.sampled_from(QUERY_NAMES) | st.text(max_size=10), QUERY_VALUES),
                max_size=6,
            ),
            label="params",
        )
        url = f"{path}?{urlencode(params)}"
    response = client.get(url, headers=admin)
    assert_answer(response, url)


@FUZZ
@seed(SEED)
@given(
    segment=st.text(min_size=1, max_size=80),
    suffix=st.sampled_from(["", "/history", "/events", "/approve", "/hold", "/items/x/state"]),
)
def test_random_ids_in_paths_never_get_a_server_error(client, admin, segment, suffix):
    encoded = quote(segment, safe="")
    for method, path in (
        ("GET", f"{ORDERS}/{encoded}"),
        ("PATCH", f"{ORDERS}/{encoded}"),
        ("DELETE", f"{ORDERS}/{encoded}"),
        ("GET", f"{CANCEL}/{encoded}"),
        ("GET", f"{HUB}/{encoded}"),
        ("DELETE", f"{HUB}/{encoded}"),
        (
            "POST" if suffix not in ("", "/history", "/events") else "GET",
            f"/api/v1/orders/{encoded}{suffix}",
        ),
        ("GET", f"/api/v1/drafts/{encoded}"),
    ):
        response = client.request(
            method, path, json={} if method in ("POST", "PATCH") else None, headers=admin
        )
        assert_answer(response, (method, path))


def _characteristic(external_id: str, value: str) -> str:
    return json.dumps(make_body(external_id)).replace('"value": 100', f'"value": {value}')


NESTED = make_body("nested-characteristic")
NESTED["serviceOrderItem"][0]["service"]["serviceCharacteristic"].append(
    {"name": "extra", "value": deep(500)}
)
# Pinned cases the generators reach only rarely: numbers JSON cannot round-trip, deep
# nesting inside an attribute taken as is, lone surrogates, odd quantities.
EDGE_CASES: dict[str, str] = {
    "big-int-priority": json.dumps({**make_body("big-int"), "priority": 10**30}),
    "int-over-64-bits-characteristic": _characteristic("big-int-char", str(2**64)),
    "huge-int-characteristic": _characteristic("huge-int-char", "9" * 4000),
    "nan-characteristic": _characteristic("nan-char", "NaN"),
    "infinity-characteristic": _characteristic("inf-char", "-Infinity"),
    "deep-characteristic": json.dumps(NESTED),
    "lone-surrogate-note": json.dumps(make_body("surrogate")).replace('"call first"', '"\\ud83d"'),
    "lone-surrogate-key": json.dumps(make_body("surrogate-key")).replace(
        '"bandwidthMbps"', '"\\udfff"'
    ),
    "float-quantity": json.dumps(make_body("fq")).replace('"quantity": 1', '"quantity": 1.5'),
    "huge-quantity": json.dumps(make_body("hq")).replace('"quantity": 1', '"quantity": 1e308'),
    "int-over-4300-digits-body": "1" * 4301,
    "int-over-4300-digits-priority": '{"priority": -' + "9" * 5000 + "}",
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_case_bodies_never_get_a_server_error(client, admin, targets, case):
    text = EDGE_CASES[case]
    for method, path in targets["body"][:3]:
        response = client.request(
            method,
            path,
            content=text.encode("utf-8"),
            headers={**admin, "content-type": "application/json"},
        )
        assert_answer(response, (method, path, case))
        if response.status_code < 300 and method == "POST" and path == ORDERS:
            got = client.get(f"{ORDERS}/{response.json()['id']}", headers=admin)
            assert got.status_code == 200, (case, "read back", got.text[:300])


# -------------------------------------------------------------------------- limits
def test_bodies_over_one_mebibyte_get_413_with_or_without_content_length(client, admin, targets):
    big = encode({**make_body("big"), "description": "x" * MAX_BODY})
    assert len(big) > MAX_BODY
    for method, path in targets["body"]:
        declared = client.request(
            method, path, content=big, headers={**admin, "content-type": "application/json"}
        )
        assert declared.status_code == 413, (method, path, declared.status_code)
        assert_answer(declared, (method, path))
        assert declared.json()["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        streamed = client.request(
            method, path, content=chunks(), headers={**admin, "content-type": "application/json"}
        )
        assert streamed.status_code == 413, (method, path, streamed.status_code)
        assert_answer(streamed, (method, path, "chunked"))
    # Exactly at the limit: read (and refused or accepted on its merits, never 413).
    pad = MAX_BODY - len(encode({**make_body("edge"), "note": [{"text": ""}]}))
    at_limit = encode({**make_body("edge"), "note": [{"text": "y" * pad}]})
    assert len(at_limit) == MAX_BODY
    response = client.post(
        ORDERS, content=at_limit, headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 400 and "note" in response.text, response.text[:300]
    # A lying Content-Length (smaller than the body) or an absurd one.
    for declared_length in ("0", "10", str(10**30)):
        response = client.post(
            ORDERS,
            content=b'{"serviceOrderItem": []}',
            headers={
                **admin,
                "content-type": "application/json",
                "content-length": declared_length,
            },
        )
        assert_answer(response, declared_length)


def test_item_count_text_length_and_nesting_limits(client, admin):
    many = make_body("many-items")
    item = many["serviceOrderItem"][0]
    many["serviceOrderItem"] = [{**copy.deepcopy(item), "id": str(n)} for n in range(501)]
    response = client.post(ORDERS, json=many, headers=admin)
    assert response.status_code == 400 and "serviceOrderItem" in response.text
    assert_answer(response)
    many["serviceOrderItem"] = many["serviceOrderItem"][:500]
    many["externalId"] = "500-items"
    response = client.post(ORDERS, json=many, headers=admin)
    assert response.status_code in (201, 400), response.text[:300]  # on the catalog's merits
    assert "at most 500" not in response.text
    for attribute in ("description",):
        body = {**make_body(f"long-{attribute}"), attribute: "d" * 4001}
        response = client.post(ORDERS, json=body, headers=admin)
        assert response.status_code == 400 and attribute in response.text
        body[attribute] = "d" * 4000
        assert client.post(ORDERS, json=body, headers=admin).status_code == 201
    note = {**make_body("long-note"), "note": [{"text": "n" * 4001}]}
    assert client.post(ORDERS, json=note, headers=admin).status_code == 400
    # Nesting deeper than Python's parser goes: 400 invalid_json, not a crash.
    response = client.post(
        ORDERS,
        content=b"[" * 200_000 + b"]" * 200_000,
        headers={**admin, "content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"


# Header values around their bounds (serviceorders.support.limits; issue 15): at or under the bound
# the request is taken, over it (by one character or by megabytes) it is refused with 431
# naming the header and nothing is written.
BOUNDED_HEADERS = {name: bound for name, (_, bound) in limits.HEADER_MAXIMA.items()}


@st.composite
def bounded_headers(draw: st.DrawFn) -> tuple[str, int, bytes]:
    name = draw(st.sampled_from(sorted(BOUNDED_HEADERS)), label="header")
    bound = BOUNDED_HEADERS[name]
    length = draw(
        st.one_of(
            st.integers(bound - 3, bound + 3),
            st.integers(1, bound),
            st.integers(bound + 1, 200_000),
        ),
        label="length",
    )
    # unique per example (an Idempotency-Key names one order), visible ASCII, no padding
    unique = uuid.uuid4().hex.encode()
    filler = draw(st.sampled_from([b"r", b"-", b"Z9", b"~."]), label="filler")
    value = (unique + filler * length)[:length]
    return name, length, value


@hsettings(FUZZ, max_examples=50)
@seed(SEED)
@given(header=bounded_headers())
def test_id_headers_over_their_bound_get_431_and_write_nothing(client, admin, header):
    name, length, value = header
    bound = BOUNDED_HEADERS[name]
    before = client.get(ORDERS, params={"limit": 1}, headers=admin).headers["x-total-count"]
    response = client.post(
        ORDERS, json=make_body(f"bounded-{uuid.uuid4()}"), headers={**admin, name: value.decode()}
    )
    assert_answer(response, (name, length))
    after = client.get(ORDERS, params={"limit": 1}, headers=admin).headers["x-total-count"]
    if length <= bound:
        assert response.status_code == 201, (name, length, response.text[:300])
        assert int(after) == int(before) + 1
    else:
        assert response.status_code == 431, (name, length, response.text[:300])
        assert response.json()["message"] == (
            f"the {limits.HEADER_MAXIMA[name][0]} header is {length} characters; the limit "
            f"is {bound}"
        )
        assert after == before  # nothing written


# ------------------------------------------------------------ (c) idempotent retries
def _orders_named(client: Any, headers: dict[str, str]) -> list[str]:
    listed = client.get(ORDERS, params={"limit": 1000, "fields": "id"}, headers=headers)
    assert listed.status_code == 200
    return [o["id"] for o in listed.json()]


def test_sequential_retries_with_one_idempotency_key_create_one_order(
    client, auth, admin, api_settings
):
    headers = {**auth("integrator"), "Idempotency-Key": "retry-7f3a"}
    answers = [client.post(ORDERS, json=make_body(), headers=headers) for _ in range(6)]
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert _orders_named(client, admin) == list(ids)
    # Another key, or the same key from another actor, is another order.
    other = client.post(
        ORDERS, json=make_body(), headers={**auth("integrator"), "Idempotency-Key": "retry-other"}
    )
    theirs = client.post(
        ORDERS, json=make_body(), headers={**auth("admin"), "Idempotency-Key": "retry-7f3a"}
    )
    assert len({*ids, other.json()["id"], theirs.json()["id"]}) == 3
    _created_once(api_settings, list(ids))


def _concurrently(
    base_url: str, count: int, make: Callable[[int], tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count

    def send(n: int) -> None:
        body, headers = make(n)
        with httpx.Client(base_url=base_url, timeout=60) as http:
            barrier.wait(timeout=30)
            try:
                answers[n] = http.post(ORDERS, json=body, headers=headers)
            except httpx.HTTPError as e:  # a dropped connection is a crash to report
                answers[n] = e

    threads = [threading.Thread(target=send, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return answers


def _created_once(settings: Settings, order_ids: list[str]) -> None:
    """In the event store: each order drafted and submitted exactly once (two events)."""
    app = build_application(settings)
    try:
        for order_id in order_ids:
            names = [type(e).__name__ for e in app.events.get(UUID(order_id))]
            assert names[:2] == ["OrderDrafted", "OrderSubmitted"], names
            assert names.count("OrderDrafted") == 1 and names.count("OrderSubmitted") == 1
    finally:
        app.close()


@pytest.mark.slow
@pytest.mark.parametrize("retry", ["idempotency-key", "external-id"])
def test_concurrent_retries_create_exactly_one_order(live_server, api_settings, retry):
    count, rounds = 8, 3
    for race in range(rounds):  # several races, each on a fresh key

        def make(n: int, race: int = race) -> tuple[dict[str, Any], dict[str, str]]:
            headers = {"X-Request-Id": f"attempt-{race}-{n}"}
            if retry == "idempotency-key":
                return make_body(), {**headers, "Idempotency-Key": f"concurrent-{race}"}
            return make_body(f"EXT-CONCURRENT-{race}"), headers

        answers = _concurrently(live_server, count, make)
        for a in answers:
            assert isinstance(a, httpx.Response), f"race {race}: {a!r}"
            assert_answer(a, (retry, race))
        assert {a.status_code for a in answers} == {201}, [a.text[:200] for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1, [a.json()["id"] for a in answers]
    with httpx.Client(base_url=live_server, timeout=30) as http:
        listed = http.get(ORDERS, params={"limit": 1000})
    assert listed.status_code == 200
    assert listed.headers["x-total-count"] == str(rounds), listed.json()
    _created_once(api_settings, [o["id"] for o in listed.json()])


# --------------------------------------------------------- (a) schemathesis stateful
def _tmf641_with_links() -> dict[str, Any]:
    spec = json.loads(SPEC.read_bytes())
    for path in [p for p in spec["paths"] if p.startswith("/listener/")]:
        del spec["paths"][path]  # the client's side (tests/api/test_conformance.py)
    spec["definitions"]["ServiceOrderItemRef"].pop("required")  # a spec defect (idem)
    spec["definitions"]["RelatedParty"]["required"] = ["id"]  # an input leniency (idem)
    undeclared = {
        415: (
            "post /serviceOrder",
            "patch /serviceOrder/{id}",
            "post /cancelServiceOrder",
            "post /hub",
        ),
        413: (
            "post /serviceOrder",
            "patch /serviceOrder/{id}",
            "post /cancelServiceOrder",
            "post /hub",
        ),
        404: ("post /cancelServiceOrder",),
        412: ("patch /serviceOrder/{id}", "delete /serviceOrder/{id}"),
    }
    for status, operations in undeclared.items():
        for label in operations:
            method, path = label.split(" ")
            spec["paths"][path][method]["responses"].setdefault(
                str(status),
                {
                    "description": "see test_conformance.DECLARED_STATUSES",
                    "schema": {"$ref": "#/definitions/Error"},
                },
            )

    def link(path: str, method: str, status: str, name: str, target: str, **extra: Any) -> None:
        response = spec["paths"][path][method]["responses"][status]
        response.setdefault("x-links", {})[name] = {"operationId": target, **extra}

    by_id = {"id": "$response.body#/id"}
    for target in ("retrieveServiceOrder", "patchServiceOrder", "deleteServiceOrder"):
        link("/serviceOrder", "post", "201", target, target, parameters=by_id)
        link("/serviceOrder/{id}", "patch", "200", target, target, parameters=by_id)
    link(
        "/serviceOrder",
        "post",
        "201",
        "cancel",
        "createCancelServiceOrder",
        requestBody={
            "serviceOrder": {"id": "$response.body#/id"},
            "cancellationReason": "changed plans",
        },
    )
    link(
        "/cancelServiceOrder",
        "post",
        "201",
        "retrieve",
        "retrieveCancelServiceOrder",
        parameters=by_id,
    )
    link("/hub", "post", "201", "unregister", "unregisterListener", parameters=by_id)
    return spec


CATALOG_ITEM = make_body()["serviceOrderItem"][0] | {"serviceOrderItemRelationship": []}
STATEFUL_STATUSES: dict[tuple[str, int], int] = {}


@pytest.mark.slow
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_stateful_tmf641_run(request, settings):
    base_url = request.getfixturevalue("live_server")
    schema = schemathesis.openapi.from_dict(_tmf641_with_links())
    schema.config.update(base_url=base_url + BASE)
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]

    class Orders(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            body = case.body
            label = case.operation.label
            if not isinstance(body, dict):
                return
            if label == "POST /serviceOrder":
                body["serviceOrderItem"] = [copy.deepcopy(CATALOG_ITEM)]
                body.pop("externalId", None)  # fresh orders, not the same one again
                # ServiceOrder_Create's cancellationDate / cancellationReason are refused on
                # create since issue 19 (REFUSED_ON_CREATE, docs/lifecycle.md): left out, as
                # PATCH's refused attributes are, so that orders get created for the links.
                for refused in REFUSED_ON_CREATE:
                    body.pop(refused, None)
            elif label == "POST /hub":
                body["callback"] = "http://127.0.0.1:9/listener"
            elif label == "PATCH /serviceOrder/{id}":
                for refused in TMF_PATCH_REFUSES:
                    body.pop(refused, None)
                if "serviceOrderItem" in body:
                    body["serviceOrderItem"] = [copy.deepcopy(CATALOG_ITEM)]

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            key = (case.operation.label, response.status_code)
            STATEFUL_STATUSES[key] = STATEFUL_STATUSES.get(key, 0) + 1
            if response.status_code >= 400:
                assert_answer(response, case.operation.label)
            if response.status_code != 204:
                checks_here = [*checks, content_type_conformance]
            else:
                checks_here = checks
            case.validate_response(response, checks=checks_here)

    STATEFUL_STATUSES.clear()
    Orders.run(
        settings=hsettings(
            max_examples=40,
            stateful_step_count=8,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(
        json.dumps(
            {f"{op} {status}": n for (op, status), n in sorted(STATEFUL_STATUSES.items())}, indent=1
        )
    )
    # The links were followed: orders were created and then read, patched or cancelled.
    reached = {op for (op, status), _ in STATEFUL_STATUSES.items() if status < 300}
    assert {"POST /serviceOrder", "GET /serviceOrder/{id}"} <= reached, STATEFUL_STATUSES
    assert reached & {
        "PATCH /serviceOrder/{id}",
        "POST /cancelServiceOrder",
        "GET /cancelServiceOrder/{id}",
    }, STATEFUL_STATUSES

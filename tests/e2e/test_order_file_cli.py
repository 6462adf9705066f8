"""`serviceorders order create FILE` takes the TMF641 body the REST API takes (and the CLI's
own format); a bad file gets one line naming it, never a traceback. Also the operator
output around orders: `order show` of an unknown external id, `catalog` ranges."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from builders import cli, order_body, tmf_item

pytestmark = pytest.mark.integration


def run(
    *args: str, url: str | None, cwd: Path | None = None, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    done = cli(*args, url=url, cwd=cwd, expect=expect)
    assert "Traceback" not in done.stderr, done.stderr
    return done


NOWHERE = "postgresql://postgres@127.0.0.1:1/nowhere"  # refused before it is reached


def create(
    file: Path, url: str | None, cwd: Path | None = None, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """`serviceorders order --actor crm create FILE`."""
    return run("order", "--actor", "crm", "create", str(file), url=url, cwd=cwd, expect=expect)


def tmf641_body(external_id: str) -> dict[str, Any]:
    """The TMF641 ServiceOrder_Create body the API tests post (tests/api/conftest.py):
    internet access and a managed router depending on it, on one site."""
    internet = {**tmf_item("1"), "@type": "ServiceOrderItem"}
    router = {**tmf_item("2", "managed-router"), "@type": "ServiceOrderItem"}
    router["service"]["serviceCharacteristic"] = [{"name": "model", "value": "c1100"}]
    router["serviceOrderItemRelationship"] = [
        {"relationshipType": "dependency", "orderItem": {"itemId": "1"}}
    ]
    return order_body(
        external_id,
        "internet and a router",
        order_items=[internet, router],
        category="enterprise",
        priority="2",
        requestedStartDate="2027-03-01T08:00:00Z",
        note=[{"text": "call the site first", "author": "crm"}],
        **{"@type": "ServiceOrder"},
    )


def test_create_takes_the_tmf641_body_the_api_takes(url: str, tmp_path: Path) -> None:
    file = tmp_path / "order.json"
    file.write_text(json.dumps(tmf641_body("TMF-CLI-1"), indent=2), encoding="utf-8")
    order_id, outcome = create(file, url=url).stdout.split()
    assert outcome == "created"
    again = create(file, url=url).stdout
    assert again.split() == [order_id, "already", "exists"]

    shown = json.loads(run("order", "show", "TMF-CLI-1", "--json", url=url).stdout)
    assert shown["id"] == order_id and shown["state"] == "acknowledged"
    header = shown["header"]
    assert header["external_id"] == "TMF-CLI-1" and header["priority"] == "2"
    assert header["related_parties"][0]["id"] == "CUST-1"
    items = shown["items"]
    assert items["1"]["specification"]["id"] == "internet-access"
    assert items["1"]["characteristics"] == {"bandwidthMbps": 100, "accessType": "fibre"}
    assert items["1"]["place"]["id"] == "S1"
    assert items["2"]["depends_on"] == ["1"]
    assert [n["text"] for n in shown["notes"]] == ["call the site first"]
    assert shown["flags"] == []
    readable = run("order", "show", order_id, url=url).stdout
    assert "external  TMF-CLI-1" in readable and "managed-router" in readable


def test_create_lists_every_problem_of_a_tmf641_body(tmp_path: Path) -> None:
    body = tmf641_body("TMF-CLI-BAD")
    body["requestedStartDate"] = "2027-03-01T08:00:00"  # no timezone
    body["serviceOrderItem"][0]["action"] = "explode"
    body["serviceOrderItem"][1]["id"] = ""
    file = tmp_path / "bad-order.json"
    file.write_text(json.dumps(body), encoding="utf-8")
    # refused before the database is touched: none is reachable here
    done = create(file, url=NOWHERE, expect=1)
    lines = done.stderr.splitlines()
    assert lines[0] == f"refused: {file}: 3 problem(s)"
    assert sorted(line.split(":")[0] for line in lines[1:]) == [
        "  - requestedStartDate",
        "  - serviceOrderItem.0.action",
        "  - serviceOrderItem.1.id",
    ]


def test_a_tmf641_body_without_items_is_refused_by_the_domain(url: str, tmp_path: Path) -> None:
    file = tmp_path / "no-items.json"
    file.write_text(json.dumps({**tmf641_body("TMF-CLI-0"), "serviceOrderItem": []}))
    done = create(file, url=url, expect=1)
    assert "[no_items] the order has no items" in done.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            "[1, 2]",
            'expected a JSON object, a TMF641 ServiceOrder (with "serviceOrderItem") or '
            '{"header": {...}, "items": [...]}; got an array',
        ),
        ('{"externalId": "X",\n  "serviceOrderItem": [}', "not valid JSON at line 2, column 24"),
        ("", "the file is empty"),
        ("  \n", "the file is empty"),
        ('"an order"', "got a string"),
        (None, "no such file"),
    ],
    ids=["array", "malformed", "empty", "blank", "string", "missing"],
)
def test_a_bad_file_gets_one_line_naming_it(content: str | None, said: str, tmp_path: Path) -> None:
    file = tmp_path / "order.json"
    if content is not None:
        file.write_text(content, encoding="utf-8")
    done = create(file, url=NOWHERE, expect=2)
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line
    assert done.stderr.startswith(f"error: {file}: "), done.stderr
    assert said in done.stderr


def test_the_own_format_lists_every_problem(tmp_path: Path) -> None:
    file = tmp_path / "own.json"
    file.write_text(json.dumps({"header": {"priority": 5}, "items": [{"id": "1"}, "not an item"]}))
    done = create(file, url=None, cwd=tmp_path, expect=1)
    assert done.stderr.splitlines() == [
        f"refused: {file}: 3 problem(s)",
        "  - header.priority: Input should be a valid string",
        "  - items.0.action: Field required",
        "  - items.1: Input should be a valid dictionary or instance of OrderItem",
    ]


def test_revise_items_file_errors_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "items.json"
    file.write_text('[{"id": "1",}]')
    done = run(
        "order",
        "--actor",
        "crm",
        "revise",
        "CRM-1",
        "--items",
        str(file),
        url=None,
        cwd=tmp_path,
        expect=2,
    )
    assert done.stderr.strip() == (
        f"error: {file}: not valid JSON at line 1, column 13: "
        "Expecting property name enclosed in double quotes"
    )


def test_show_of_an_unknown_external_id_names_what_was_typed(url: str) -> None:
    done = run("order", "show", "CRM-NOT-THERE", url=url, expect=1)
    assert done.stderr.startswith("refused (order_not_found): no order 'CRM-NOT-THERE': ")
    assert "no order has that external id" in done.stderr
    by_id = run("order", "show", "00000000-0000-0000-0000-000000000001", url=url, expect=1)
    assert "no order 00000000-0000-0000-0000-000000000001" in by_id.stderr


def test_catalog_prints_integer_ranges_as_integers() -> None:
    out = run("catalog", url=None).stdout
    assert "bandwidthMbps: integer required 10..100000" in out
    assert "vlanId: integer optional 1..4094" in out
    ranges = re.findall(r"(\S+)\.\.(\S+)", out)
    assert ranges and all(re.fullmatch(r"-?\d*", bound) for pair in ranges for bound in pair), (
        ranges
    )

"""Upgrade safety of issue 16 ("one door"): event logs written by the code before that change
(tests/fixtures/upgrade_doors, recorded by make_fixture.sh with commit e69602e installed on
its own: ~300 orders through Kafka, TMF641 REST, /api/v1, the console and the CLI, along
every lifecycle path, with personal data and one erased customer) load into this code,
pass `audit verify`, and project to the same read-model rows as the old code projected.

Drives the current code only through its `serviceorders` console script and reads the
tables with sqlite3 / psycopg (tests/fixtures/upgrade_doors/rows.py, the reader the
recording used): nothing of serviceorders is imported, whatever its modules are called.
The expected rows change only in a commit that says why.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade_doors"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text("utf-8"))
EXE = shutil.which("serviceorders")


def _rows_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upgrade_doors_rows", FIXTURES / "rows.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rows = _rows_module()


def run(*args: str, url: str, expect: int = 0, timeout: float = 300) -> str:
    assert EXE, "the serviceorders console script is not installed"
    done = subprocess.run(
        [EXE, "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == expect, (
        f"serviceorders {' '.join(args)} exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done.stdout


@pytest.fixture(params=["sqlite", "postgres"])
def recorded(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> tuple[str, str]:
    """(backend, url) of a fresh copy of the old code's database."""
    if request.param == "sqlite":
        copy = tmp_path / "doors.db"  # stored gzipped (a few MB less in the repository)
        copy.write_bytes(gzip.decompress((FIXTURES / "doors.db.gz").read_bytes()))
        return "sqlite", f"sqlite:///{copy}"
    return "postgres", new_pg_database("so_upgrade_doors", FIXTURES / "doors-postgres.sql.gz")


# Columns added to a read model since the recording -> the value every recorded row gets
# (the old log holds nothing they describe), as rows.py reads it. Issue 17: review_queue's
# `changes` (a proposal's diff; `[]` for approvals and cancellations).
ADDED_COLUMNS: dict[str, dict[str, Any]] = {
    "review_queue": {"changes": "[]"},
    "order_item": {"parent_id": None},  # issue 19: nested items (none before)
}


def without_added_columns(tables: dict[str, Any]) -> dict[str, Any]:
    """`tables` without ADDED_COLUMNS, once each holds its expected value in every row."""
    for table, added in ADDED_COLUMNS.items():
        columns = tables[table]["columns"]
        for column, value in added.items():
            at = columns.index(column)
            assert {row[at] for row in tables[table]["rows"]} <= {value}, (table, column)
        keep = [i for i, c in enumerate(columns) if c not in added]
        kept = [[row[i] for i in keep] for row in tables[table]["rows"]]
        kept.sort(key=json.dumps)
        tables[table] = {"columns": [columns[i] for i in keep], "rows": kept}
    return tables


# Fields added to the TMF641 documents (order_document, notification_outbox) since the
# recording, at any depth: taken out of this code's documents before comparing them with
# the old code's. Issue 19: `errorMessage` (a rejection, failed items), which the old code
# never filled. `taken` counts what was taken out, by field.
# Issue 19: the unfinished items of an order whose cancellation is assessed or carried out
# mirror those states (docs/lifecycle.md); the recorded rows hold the items' own states.
MIRRORED = ("assessingCancellation", "pendingCancellation")
FINAL_ITEM_STATES = ("rejected", "cancelled", "completed", "failed", "partial")


def now_shown(table: str, recorded: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """The recorded rows of `table` as this code shows them on purpose (MIRRORED)."""
    if table != "order_item":
        return recorded
    summary = got["order_summary"]
    at_id, at_state = summary["columns"].index("id"), summary["columns"].index("state")
    order_state = {row[at_id]: row[at_state] for row in summary["rows"]}
    columns = recorded["columns"]
    at_order, at_item = columns.index("order_id"), columns.index("state")
    shown = []
    for row in recorded["rows"]:
        mirrored = order_state[row[at_order]]
        if mirrored in MIRRORED and row[at_item] not in FINAL_ITEM_STATES:
            row = [*row[:at_item], mirrored, *row[at_item + 1 :]]
        shown.append(row)
    shown.sort(key=json.dumps)
    return {"columns": columns, "rows": shown}


ADDED_DOCUMENT_FIELDS = ("errorMessage", "milestone")  # milestone: issue 19 too


def _orders_in(value: Any) -> list[dict[str, Any]]:
    """The TMF641 ServiceOrder documents in a document or notification payload."""
    if isinstance(value, list):
        return [o for v in value for o in _orders_in(v)]
    if not isinstance(value, dict):
        return []
    found = [value] if "serviceOrderItem" in value and "id" in value else []
    return found + [o for v in value.values() for o in _orders_in(v)]


def _items_in(order: dict[str, Any]) -> list[dict[str, Any]]:
    """Its items (those with an id), nested ones included."""
    items = [i for i in order.get("serviceOrderItem") or [] if isinstance(i, dict) and "id" in i]
    return items + [n for i in items for n in _items_in(i)]


def unmirrored(url: str, restored: dict[str, int]) -> Callable[[Any], Any]:
    """This code's documents as the old code wrote them, item states-wise (MIRRORED): an
    item shown in the order's cancellation state gets back the state it had before the
    request, read from the order's last document (in the outbox, oldest first) whose
    order was not in a cancellation state (items cannot move while it is). `restored`
    counts the items given back their state."""
    conn = rows.connect(url)
    try:
        found = conn.execute(
            "SELECT order_id, payload FROM notification_outbox ORDER BY position, seq"
        ).fetchall()
    finally:
        conn.close()
    before: dict[str, dict[str, str]] = {}  # order id -> item id -> its state, last seen
    by_doc: dict[str, dict[str, str]] = {}  # a mirrored document -> the states to restore
    for _order_id, payload in found:
        body = json.loads(payload) if isinstance(payload, str) else payload
        for order in _orders_in(body):
            if order.get("state") in MIRRORED:
                by_doc[json.dumps(order, sort_keys=True)] = dict(before.get(order["id"], {}))
            else:
                before[order["id"]] = {i["id"]: i.get("state") for i in _items_in(order)}

    def restore(value: Any) -> Any:
        for order in _orders_in(value):
            if order.get("state") not in MIRRORED:
                continue
            key = json.dumps(order, sort_keys=True)
            states = by_doc.get(key, before.get(order["id"], {}))
            for item in _items_in(order):
                if item.get("state") in MIRRORED and item["id"] in states:
                    item["state"] = states[item["id"]]
                    restored["items"] = restored.get("items", 0) + 1
        return value

    return restore


# Notifications the old code never derived (issue 19): a milestone reached, a question on a
# cancellation, and a refused proposal's errorMessage (an attribute value change whose
# fieldPath is errorMessage alone). Taken out of this code's outbox before comparing.
NEW_NOTIFICATIONS = ("ServiceOrderMilestoneEvent", "CancelServiceOrderInformationRequiredEvent")


def new_notification_rows(url: str) -> set[tuple[int, int]]:
    """(position, seq) of the outbox rows of NEW_NOTIFICATIONS kinds."""
    conn = rows.connect(url)
    try:
        found = conn.execute(
            "SELECT position, seq, event_type, payload FROM notification_outbox"
        ).fetchall()
    finally:
        conn.close()
    new = set()
    for position, seq, event_type, payload in found:
        body = json.loads(payload) if isinstance(payload, str) else payload
        if event_type in NEW_NOTIFICATIONS or (
            event_type == "ServiceOrderAttributeValueChangeEvent"
            and body.get("fieldPath") == "errorMessage"
        ):
            new.add((int(position), int(seq)))
    return new


def without_new_notifications(table: dict[str, Any], new: set[tuple[int, int]]) -> dict[str, Any]:
    at_position, at_seq = table["columns"].index("position"), table["columns"].index("seq")
    kept = [r for r in table["rows"] if (int(r[at_position]), int(r[at_seq])) not in new]
    return {"columns": table["columns"], "rows": kept}


def without_added_fields(taken: dict[str, int]) -> Callable[[Any], Any]:
    def strip(value: Any) -> Any:
        if isinstance(value, list):
            return [strip(v) for v in value]
        if not isinstance(value, dict):
            return value
        kept = {}
        for key, inner in value.items():
            if key in ADDED_DOCUMENT_FIELDS:
                taken[key] = taken.get(key, 0) + 1
            else:
                kept[key] = strip(inner)
        return kept

    return strip


def test_the_fixture_covers_every_door_and_path() -> None:
    """What the recording holds (so that a re-recording cannot quietly shrink it)."""
    for backend in ("sqlite", "postgres"):
        got = EXPECTED["backends"][backend]
        assert got["order_count"] >= 290 and got["events"] > 1500, backend
        assert set(got["by_door"]) == {"kafka", "tmf", "v1", "console", "cli"}
        assert {
            "draft",
            "acknowledged",
            "rejected",
            "inProgress",
            "pending",
            "held",
            "assessingCancellation",
            "completed",
            "partial",
            "failed",
            "cancelled",
        } <= set(got["by_state"]), got["by_state"]
        assert got["dead_letters"] >= 7
        assert any(n == "[erased]" for n in got["personal"].values())
        assert all(got["read_models"][t]["rows"] for t in EXPECTED["read_models"])


def test_the_old_event_log_verifies_and_projects_to_the_same_rows(
    recorded: tuple[str, str],
) -> None:
    backend, url = recorded
    expected = EXPECTED["backends"][backend]

    run("db", "init", url=url)  # this code's migrations, if any
    run("audit", "verify", url=url)  # hash chains, checkpoints, snapshots: exit 0
    # the stored events are as recorded
    log = rows.event_log(url)
    assert (log["events"], log["order_count"]) == (expected["events"], expected["order_count"])
    assert log["orders"] == expected["orders"]

    # every read model rebuilt from the first event by this code, then caught up
    run("projections", "rebuild", url=url)
    run("project", "--once", url=url)
    taken: dict[str, int] = {}
    restored: dict[str, int] = {}
    strip, restore = without_added_fields(taken), unmirrored(url, restored)
    got = without_added_columns(rows.read_models(url, lambda v: strip(restore(v))))
    assert restored.get("items", 0) > 0  # the items mirrored a cancellation (H3, issue 19)
    assert taken.get("errorMessage", 0) > 0  # the rejected and failed orders tell it
    assert taken.get("milestone", 0) > 0  # approvals, items started and completed
    new = new_notification_rows(url)
    assert new  # the old orders' milestones are derived too
    got["notification_outbox"] = without_new_notifications(got["notification_outbox"], new)
    for table in EXPECTED["read_models"]:
        want = now_shown(table, expected["read_models"][table], got)
        assert got[table]["columns"] == want["columns"], table
        assert len(got[table]["rows"]) == len(want["rows"]), table
        differ = [
            (mine, old)
            for mine, old in zip(got[table]["rows"], want["rows"], strict=True)
            if mine != old
        ]
        assert not differ, f"{table}: {len(differ)} rows differ, first: {differ[0]}"
    run("projections", "verify", url=url)
    run("audit", "verify", url=url)
    # The read models added since (issue 19) are built from the old events too: the old
    # orders' places, dependencies, rejections and failed items, approvals and progress.
    conn = rows.connect(url)
    try:
        for table in ("order_relationship", "order_item_place", "order_outcome", "order_milestone"):
            assert rows.table_rows(conn, table)["rows"], table
    finally:
        conn.close()

    # personal data: sealed values of kept customers still read, the erased one's do not
    for order_id, name in expected["personal"].items():
        shown = run("order", "show", order_id, "--json", url=url)
        if name == "[erased]":
            erased = expected["plan"][order_id]
            assert "[erased]" in shown and "Erin Erasmus" not in shown, erased
        else:
            assert name in json.dumps(json.loads(shown), ensure_ascii=False), order_id

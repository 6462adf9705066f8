"""`serviceorders history`, run as a real process against PostgreSQL and SQLite."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from builders import cli, order_file
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

run = cli


@pytest.fixture(scope="module")
def order_url(module_settings: Settings) -> str:
    """The URL of the module's own store (each backend), prepared by `serviceorders db init`:
    the tests that only read `order` share it, so the order is made once per backend."""
    url = module_settings.database.url(with_password=True)
    cli("db", "init", url=url)
    return url


@pytest.fixture(scope="module")
def order(order_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An order with external id CRM-H-1 through 9 events, made with the CLI; its revision
    after approval is a proposal (v5) that a second person approves (v6). Made once per
    backend in `order_url`'s store; the tests given it only read it."""
    url = order_url
    file = tmp_path_factory.mktemp("history") / "order.json"
    file = order_file(file, "CRM-H-1", description="history test")
    run("order", "--actor", "crm", "create", str(file), url=url)  # v1, v2
    run("order", "--actor", "bob", "approve", "CRM-H-1", "--note", "ok", url=url)  # v3
    run("order", "--actor", "act", "item-state", "CRM-H-1", "1", "inProgress", url=url)  # v4
    run("order", "--actor", "crm", "revise", "CRM-H-1", "--priority", "1", url=url)  # v5
    run("order", "--actor", "carol", "approve-proposal", "CRM-H-1", url=url)  # v6
    run("order", "--actor", "crm", "note", "CRM-H-1", "customer called", url=url)  # v7
    run("order", "--actor", "act", "item-state", "CRM-H-1", "1", "completed", url=url)  # v8, v9
    return "CRM-H-1"


def test_timeline_readable_and_json(order_url: str, order: str) -> None:
    out = run("history", order, url=order_url).stdout
    lines = out.strip().splitlines()
    assert "9 event(s), now completed" in lines[0]
    assert lines[1].split()[:3] == ["VER", "TIME", "(UTC)"]
    rows = lines[2:]
    assert [r.split()[0] for r in rows] == [str(v) for v in range(1, 10)]
    assert "OrderDrafted" in rows[0] and "draft" in rows[0]
    assert "OrderApproved" in rows[2] and "bob (operator)" in rows[2] and "inProgress" in rows[2]
    assert "RevisionProposed" in rows[4] and "ProposalApproved" in rows[5]
    assert "carol (operator)" in rows[5] and "NoteAdded" in rows[6]
    assert "OrderCompleted" in rows[8] and "completed" in rows[8]
    assert all(" cli " in r for r in rows)

    entries = json.loads(run("history", order, "--json", url=order_url).stdout)
    assert [e["version"] for e in entries] == list(range(1, 10))
    assert entries[2]["actor"] == {"id": "bob", "role": "operator"}
    assert entries[2]["source"] == {"channel": "cli"}
    assert entries[4]["documentAfter"].get("priority") is None  # proposed, not applied
    assert entries[5]["documentAfter"]["priority"] == "1"
    # the readable form shows each event's hash prefix
    for row, entry in zip(rows, entries, strict=True):
        assert row.endswith(entry["hash"][:12])
    # the id works as well as the external id
    by_id = json.loads(
        run("history", entries[0]["documentAfter"]["id"], "--json", url=order_url).stdout
    )
    assert [e["hash"] for e in by_id] == [e["hash"] for e in entries]


def test_version_and_as_of(order_url: str, order: str) -> None:
    v4 = json.loads(run("history", order, "--version", "4", "--json", url=order_url).stdout)
    assert v4["version"] == 4 and v4["state"] == "inProgress"
    assert v4["order"]["items"]["1"]["state"] == "inProgress"
    assert v4["order"]["header"]["priority"] is None
    readable = run("history", order, "--version", "2", url=order_url).stdout
    assert "version 2 of 9, after OrderSubmitted" in readable
    assert "state     acknowledged" in readable

    entries = json.loads(run("history", order, "--json", url=order_url).stdout)
    stamp = entries[5]["timestamp"]  # the revision's approval
    past = json.loads(run("history", order, "--as-of", stamp, "--json", url=order_url).stdout)
    assert past["version"] == 6 and past["order"]["header"]["priority"] == "1"
    just_before = (datetime.fromisoformat(stamp) - timedelta(microseconds=1)).isoformat()
    assert (
        json.loads(run("history", order, "--as-of", just_before, "--json", url=order_url).stdout)[
            "version"
        ]
        == 5
    )
    naive = stamp.removesuffix("Z")  # no offset: UTC
    assert (
        json.loads(run("history", order, "--as-of", naive, "--json", url=order_url).stdout)[
            "version"
        ]
        == 6
    )
    readable = run("history", order, "--as-of", stamp, url=order_url).stdout
    assert "version 6 of 9, after ProposalApproved" in readable and "revision  1" in readable


def test_diff(order_url: str, order: str) -> None:
    out = run("history", order, "--diff", "4", "7", url=order_url).stdout
    assert "version 4 -> 7 (3 event(s))" in out
    assert '~ /header/priority: null -> "1"' in out
    assert "+ /notes/0:" in out and "customer called" in out
    assert "~ /revision: 0 -> 1" in out
    result = json.loads(run("history", order, "--diff", "2", "9", "--json", url=order_url).stdout)
    changes = {c["path"]: c for c in result["changes"]}
    assert changes["/state"]["before"] == "acknowledged"
    assert changes["/state"]["after"] == "completed"
    assert changes["/items/1/state"]["after"] == "completed"
    assert [e["version"] for e in result["events"]] == list(range(3, 10))
    assert "no changes" in run("history", order, "--diff", "3", "3", url=order_url).stdout


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--version", "99"), 1, "version 99 is out of range"),
        (("--version", "0"), 1, "out of range"),
        (("--as-of", "2000-01-01T00:00:00Z"), 1, "did not exist yet"),
        (("--diff", "5", "2"), 1, "5 is after 2"),
        (("--diff", "1", "50"), 1, "out of range"),
        (("--as-of", "not-a-time"), 2, "not a date-time"),
        (("--version", "x"), 2, "--version"),
        (("--version", "2", "--diff", "1", "2"), 2, "--version and --diff"),
    ],
)
def test_bad_input_is_a_clear_message(
    order_url: str, order: str, args: tuple[str, ...], status: int, message: str
) -> None:
    done = run("history", order, *args, url=order_url, expect=status)
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_unknown_order(url: str) -> None:
    done = run("history", "NO-SUCH-ORDER", url=url, expect=1)
    assert done.stderr.strip() == "error: no order NO-SUCH-ORDER"
    assert "Traceback" not in done.stderr


def test_timeline_columns_fit_long_actor_names(url: str, tmp_path: Path) -> None:
    """Column widths come from the data: a long actor name neither is cut nor pushes the
    source, state and hash columns out of line with the header."""
    long_actor = "provisioning-orchestrator-eu-west-primary-instance-7"
    order = run(
        "order", "--actor", long_actor, "draft", "--external-id", "CRM-H-WIDE", url=url
    ).stdout.strip()
    run("order", "--actor", long_actor, "note", order, "wide", url=url)
    lines = run("history", order, url=url).stdout.strip().splitlines()
    header, rows = lines[1], lines[2:]
    entries = json.loads(run("history", order, "--json", url=url).stdout)
    assert len(rows) == len(entries) == 2
    for row, entry in zip(rows, entries, strict=True):
        assert f"{long_actor} (operator)" in row
        assert row[header.index("ACTOR (ROLE)") :].startswith(long_actor)
        assert row[header.index("SOURCE") :].startswith("cli ")
        assert row[header.index("STATE AFTER") :].startswith(entry["stateAfter"])
        assert row[header.index("HASH") :] == entry["hash"][:12]

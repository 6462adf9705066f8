"""A question on a cancellation through the `serviceorders` command (issue 19): a manager
asks the cancellation's requester (`request-cancel-info`), the requester answers
(`provide-cancel-info`); the order stays assessingCancellation, its items with it, and a
denial restores them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from builders import cli, order_file
from serviceorders.domain.errors import ANSWERS

pytestmark = pytest.mark.integration


def order_as(actor: str, *args: str, url: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    return cli("order", "--actor", actor, *args, url=url, expect=expect)


def refused_as(actor: str, code: str, *args: str, url: str) -> str:
    done = order_as(actor, *args, url=url, expect=ANSWERS[code].cli_exit)
    assert done.stderr.startswith(f"refused ({code}): "), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def show(order: str, url: str) -> dict[str, Any]:
    return json.loads(cli("order", "show", order, "--json", url=url).stdout)


def event_types(order: str, url: str) -> list[str]:
    out = cli("order", "events", order, "--json", url=url).stdout
    return [json.loads(line)["type"] for line in out.splitlines()]


def test_a_manager_asks_the_requester_who_answers(url: str, tmp_path: Path) -> None:
    order_as("crm", "create", str(order_file(tmp_path / "o.json", "CI-1")), url=url)
    order_as("bob", "approve", "CI-1", url=url)
    refused_as(
        "bob", "illegal_transition", "request-cancel-info", "CI-1", "--information", "?", url=url
    )
    order_as("carol", "request-cancel", "CI-1", "--reason", "budget", url=url)
    assert {i["state"] for i in show("CI-1", url)["items"].values()} == {"assessingCancellation"}
    # The requester may not ask themselves (four-eyes); nothing to answer yet.
    refused_as(
        "carol", "not_permitted", "request-cancel-info", "CI-1", "--information", "?", url=url
    )
    refused_as(
        "carol", "illegal_transition", "provide-cancel-info", "CI-1", "--information", "x", url=url
    )
    order_as("dave", "request-cancel-info", "CI-1", "--information", "which budget line?", url=url)
    refused_as(
        "dave",
        "illegal_transition",
        "request-cancel-info",
        "CI-1",
        "--information",
        "and?",
        url=url,
    )
    order_as("carol", "provide-cancel-info", "CI-1", "--information", "line 7", url=url)
    shown = show("CI-1", url)
    assert shown["state"] == "assessingCancellation"
    assert event_types("CI-1", url)[-2:] == [
        "CancellationInformationRequested",
        "CancellationInformationProvided",
    ]
    order_as("dave", "deny-cancel", "CI-1", "--reason", "work has started", url=url)
    shown = show("CI-1", url)
    assert shown["state"] == "inProgress"
    assert {i["state"] for i in shown["items"].values()} == {"acknowledged"}

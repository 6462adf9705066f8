"""Decisions through the `serviceorders` command, run as a real process against PostgreSQL
and SQLite (issue 17): the CLI acts as `--actor NAME` with the operator role, so four-eyes
rests on the declared actor, and every decision also records the operating-system user
who ran the command (`Decision.os_user`: the name of the process's real uid, whatever
$USER says). Proposals on approved orders are decided with `approve-proposal` /
`refuse-proposal` / `withdraw-proposal`; a rejected order is corrected with `resubmit`."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest
from builders import cli, order_file
from serviceorders.domain.errors import ANSWERS

pytestmark = pytest.mark.integration

# $USER and $LOGNAME claim someone else: the recorded OS user must not believe them.
CLAIMED = {"USER": "mallory", "LOGNAME": "mallory", "USERNAME": "mallory", "LNAME": "mallory"}
OS_USER = pwd.getpwuid(os.getuid()).pw_name
NOT_PERMITTED = ANSWERS["not_permitted"].cli_exit
ILLEGAL = ANSWERS["illegal_transition"].cli_exit


def order_as(actor: str, *args: str, url: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """`serviceorders order --actor ACTOR ...`, run with $USER / $LOGNAME claiming mallory."""
    return cli("order", "--actor", actor, *args, url=url, expect=expect, env=CLAIMED)


def refused_as(actor: str, code: str, *args: str, url: str) -> str:
    """A refusal: `refused (CODE): ...` on stderr, the exit status of the answers table."""
    done = order_as(actor, *args, url=url, expect=ANSWERS[code].cli_exit)
    assert done.stderr.startswith(f"refused ({code}): "), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def show(order: str, url: str) -> dict[str, Any]:
    return json.loads(cli("order", "show", order, "--json", url=url).stdout)


def events(order: str, url: str) -> list[dict[str, Any]]:
    out = cli("order", "events", order, "--json", url=url).stdout
    return [json.loads(line) for line in out.splitlines()]


def last(order: str, event_type: str, url: str) -> dict[str, Any]:
    return [e for e in events(order, url) if e["type"] == event_type][-1]


def items_file(path: Path, bandwidth: int) -> Path:
    """A revision's items (`order revise --items`): item 1 with another bandwidth."""
    line = {
        "id": "1",
        "action": "add",
        "specification": {"id": "internet-access"},
        "characteristics": {"bandwidthMbps": bandwidth, "accessType": "fibre"},
        "place": {"id": "S1"},
    }
    path.write_text(json.dumps([line]), encoding="utf-8")
    return path


def bandwidth(order: str, url: str) -> int:
    return int(show(order, url)["items"]["1"]["characteristics"]["bandwidthMbps"])


def test_four_eyes_counts_the_declared_actor_and_the_decision_records_the_os_user(
    url: str, tmp_path: Path
) -> None:
    """Whoever submitted or revised the order in review may not decide it; a third
    person's approval records the version and content hash they decided on and the OS
    user beside the declared actor ($USER claiming someone else is not believed)."""
    order_as("crm", "create", str(order_file(tmp_path / "o.json", "CD-1", bandwidth=100)), url=url)
    order_as("carol", "revise", "CD-1", "--priority", "2", url=url)
    assert show("CD-1", url)["contributors"] == ["crm", "carol"]
    for contributor in ("crm", "carol"):
        for decision in (("approve", "CD-1"), ("reject", "CD-1", "--reason", "no")):
            stderr = refused_as(contributor, "not_permitted", *decision, url=url)
            assert f"{contributor} (operator) may not" in stderr and "four-eyes" in stderr
    assert show("CD-1", url)["state"] == "acknowledged"

    seen = show("CD-1", url)["version"]
    out = order_as("bob", "approve", "CD-1", "--note", "ok", url=url).stdout
    assert out.split()[1:] == ["inProgress", f"v{seen + 1}"]
    approved = last("CD-1", "OrderApproved", url)
    assert approved["actor"] == {"id": "bob", "role": "operator"}
    assert approved["source"]["channel"] == "cli"
    decision = approved["decision"]
    assert (decision["version"], decision["os_user"]) == (seen, OS_USER)
    assert decision["os_user"] != "mallory"
    assert len(decision["content_hash"]) == 64
    # A write that is not a decision carries no decision.
    assert "decision" not in last("CD-1", "OrderRevised", url)


def test_cancellation_decisions_need_a_second_person(url: str, tmp_path: Path) -> None:
    """The requester may not approve or deny their own cancellation request, and the
    operator may not cancel an order directly (not from inProgress, nor from held: a
    direct cancellation is fulfilment's exit); a second person's decision records the
    OS user."""
    order_as("crm", "create", str(order_file(tmp_path / "o.json", "CD-2")), url=url)
    order_as("bob", "approve", "CD-2", url=url)
    refused_as("bob", "illegal_transition", "cancel", "CD-2", "--reason", "direct", url=url)
    order_as("bob", "hold", "CD-2", "--reason", "site closed", url=url)
    stderr = refused_as("bob", "not_permitted", "cancel", "CD-2", "--reason", "direct", url=url)
    assert "request the cancellation" in stderr
    order_as("bob", "resume", "CD-2", url=url)
    order_as("carol", "request-cancel", "CD-2", "--reason", "customer left", url=url)
    refused_as("carol", "not_permitted", "approve-cancel", "CD-2", url=url)
    refused_as("carol", "not_permitted", "deny-cancel", "CD-2", "--reason", "no", url=url)
    order_as("dave", "approve-cancel", "CD-2", url=url)
    decision = last("CD-2", "CancellationApproved", url)["decision"]
    assert decision["os_user"] == OS_USER
    assert show("CD-2", url)["state"] == "pendingCancellation"


def test_a_revision_of_an_approved_order_is_a_proposal_decided_by_another(
    url: str, tmp_path: Path
) -> None:
    """`revise` after approval prints the proposal and leaves the items as approved; one
    proposal at a time; its proposer may not decide it; `approve-proposal` by another
    applies it, `refuse-proposal` (a reason required) and `withdraw-proposal` drop it."""
    order_as("crm", "create", str(order_file(tmp_path / "o.json", "CD-3", bandwidth=100)), url=url)
    order_as("bob", "approve", "CD-3", url=url)
    upgrade = str(items_file(tmp_path / "upgrade.json", 10000))

    out = order_as("alice", "revise", "CD-3", "--items", upgrade, url=url).stdout.splitlines()
    assert out[0].split()[1] == "inProgress"
    proposal_id = show("CD-3", url)["proposal"]["id"]
    assert out[1].startswith(f"proposal {proposal_id} waits")
    assert bandwidth("CD-3", url) == 100  # not applied
    shown = cli("order", "show", "CD-3", url=url).stdout
    assert f"proposal  {proposal_id} by alice" in shown
    assert "items[1].characteristics.bandwidthMbps: 100 -> 10000" in shown

    stderr = refused_as("alice", "illegal_transition", "revise", "CD-3", "--priority", "1", url=url)
    assert f"proposal {proposal_id} waits" in stderr
    refused_as("alice", "not_permitted", "approve-proposal", "CD-3", url=url)
    refused_as("alice", "not_permitted", "refuse-proposal", "CD-3", "--reason", "x", url=url)
    order_as("dave", "refuse-proposal", "CD-3", url=url, expect=2)  # --reason is required
    seen = show("CD-3", url)["version"]
    order_as("dave", "approve-proposal", "CD-3", "--note", "ok", url=url)
    assert bandwidth("CD-3", url) == 10000
    approved = last("CD-3", "ProposalApproved", url)
    assert approved["proposal_id"] == proposal_id and approved["actor"]["id"] == "dave"
    assert (approved["decision"]["version"], approved["decision"]["os_user"]) == (seen, OS_USER)
    assert show("CD-3", url)["proposal"] is None

    downgrade = str(items_file(tmp_path / "downgrade.json", 200))
    order_as("alice", "revise", "CD-3", "--items", downgrade, url=url)
    order_as("dave", "refuse-proposal", "CD-3", "--reason", "not now", url=url)
    refused = last("CD-3", "ProposalRefused", url)
    assert (refused["reason"], refused["decision"]["os_user"]) == ("not now", OS_USER)
    assert bandwidth("CD-3", url) == 10000

    order_as("alice", "revise", "CD-3", "--items", downgrade, url=url)
    order_as("alice", "withdraw-proposal", "CD-3", "--reason", "typo", url=url)
    assert last("CD-3", "ProposalWithdrawn", url)["reason"] == "typo"
    assert (bandwidth("CD-3", url), show("CD-3", url)["proposal"]) == (10000, None)
    refused_as("dave", "illegal_transition", "approve-proposal", "CD-3", url=url)  # none waits


def test_resubmit_a_rejected_order(url: str, tmp_path: Path) -> None:
    """`resubmit` makes a new order prefilled from the rejected one, linked both ways: a
    draft to correct, or (`--submit`) straight into review; an order that is not rejected
    cannot be resubmitted."""
    order_as("crm", "create", str(order_file(tmp_path / "o.json", "CD-4", bandwidth=123)), url=url)
    rejected = show("CD-4", url)
    refused_as("alice", "illegal_transition", "resubmit", "CD-4", url=url)  # in review
    order_as("bob", "reject", "CD-4", "--reason", "bandwidth", url=url)

    new_id, state, version = order_as(
        "alice", "resubmit", "CD-4", "--external-id", "CD-4b", url=url
    ).stdout.split()
    assert (state, version) == ("draft", "v1")
    new = show("CD-4b", url)
    assert new["id"] == new_id
    assert new["items"]["1"]["characteristics"] == rejected["items"]["1"]["characteristics"]
    assert new["header"]["order_relationships"] == [
        {"id": rejected["id"], "relationship_type": "resubmits"}
    ]
    assert show("CD-4", url)["header"]["order_relationships"] == [
        {"id": new_id, "relationship_type": "resubmittedAs"}
    ]
    assert last("CD-4", "OrderResubmitted", url)["new_order_id"] == new_id
    order_as("alice", "configure-line", new_id, "1", "--set", "bandwidthMbps=100", url=url)
    order_as("alice", "submit", new_id, url=url)
    refused_as("alice", "not_permitted", "approve", new_id, url=url)
    order_as("bob", "approve", new_id, url=url)
    assert show(new_id, url)["state"] == "inProgress"

    # Straight into review (as an upstream system would), without an external id.
    order_as("crm", "create", str(order_file(tmp_path / "p.json", "CD-5")), url=url)
    order_as("bob", "reject", "CD-5", "--reason", "no", url=url)
    out = order_as("alice", "resubmit", "CD-5", "--submit", url=url).stdout.split()
    assert out[1] == "acknowledged"
    assert show(out[0], url)["header"]["external_id"] is None
    refused_as("alice", "not_permitted", "approve", out[0], url=url)

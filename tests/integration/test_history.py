"""The order's history (serviceorders.audit.history): timeline, as of, at a version, diff, on
both backends, for orders built through the application with many kinds of events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from uuid import UUID, uuid4

import pytest
from builders import id_created
from serviceorders.audit import history
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import OrderNotFound
from serviceorders.domain.values import CommandContext, HeaderChange, ItemState, OrderHeader
from serviceorders.tmf.tmf641 import order_to_tmf641

pytestmark = pytest.mark.integration

TYPES = [
    "OrderDrafted",
    "OrderSubmitted",
    "OrderApproved",
    "ItemStateChanged",
    "RevisionProposed",
    "ProposalApproved",
    "NoteAdded",
    "ItemStateChanged",
    "ItemStateChanged",
    "OrderCompleted",
]
STATES = [
    "draft",
    "acknowledged",
    "inProgress",
    "inProgress",
    "inProgress",
    "inProgress",
    "inProgress",
    "inProgress",
    "inProgress",
    "completed",
]


Built = tuple[UUID, list[datetime]]  # an order's id and the time just after each of its saves


def build(app: ServiceOrders, actors: Any, samples: Any) -> Built:
    """An order through 10 events; returns its id and the time just after each save.

    The revision after approval is a proposal (v5) that a second manager approves (v6)."""
    after: list[datetime] = []

    def step(actor: CommandContext, command: cmd.Command) -> None:
        app.handle(actor, command)
        after.append(datetime.now(UTC))
        time.sleep(0.005)  # the next event is recorded strictly later

    order_id, created = id_created(
        app.handle(
            actors.upstream, cmd.ReceiveOrder(samples.header("ext-hist"), tuple(samples.items()))
        )
    )
    assert created
    after.append(datetime.now(UTC))  # v1 and v2 are saved together
    time.sleep(0.005)
    step(actors.manager, cmd.Approve(order_id, "sites surveyed"))  # v3
    step(actors.fulfilment, cmd.ChangeItemStates.one(order_id, "1", ItemState.IN_PROGRESS))  # v4
    router = samples.router_item("2", depends_on=("1",), characteristics={"model": "c8300"})
    step(
        actors.upstream,
        cmd.Revise(order_id, items=(router,), header=HeaderChange(priority="1")),
    )  # v5
    step(actors.other_manager, cmd.ApproveProposal(order_id))  # v6
    step(actors.upstream, cmd.AddNote(order_id, "customer called"))  # v7
    step(actors.fulfilment, cmd.ChangeItemStates.one(order_id, "1", ItemState.COMPLETED))  # v8
    # v9 ItemStateChanged + v10 OrderCompleted
    step(actors.fulfilment, cmd.ChangeItemStates.one(order_id, "2", ItemState.COMPLETED))
    return order_id, after


@pytest.fixture
def built(app: ServiceOrders, actors: Any, samples: Any) -> Built:
    """`build`'s order in the test's application: its id and the time after each save."""
    return build(app, actors, samples)


def test_timeline_lists_every_event_with_envelope_and_state_after(
    app: ServiceOrders, built: Built, chain_tools: Any
) -> None:
    order_id, _ = built
    entries = history.timeline(app, order_id)

    assert [e["version"] for e in entries] == list(range(1, 11))
    assert [e["type"] for e in entries] == TYPES
    assert [e["stateAfter"] for e in entries] == STATES
    # the hash chain, exactly as stored
    assert [e["hash"] for e in entries] == chain_tools.verify(app, order_id)
    assert entries[0]["prevHash"] == "0" * 64
    for previous, entry in pairwise(entries):
        assert entry["prevHash"] == previous["hash"]
    # actor, source, correlation
    assert entries[0]["actor"] == {"id": "crm", "role": "upstream"}
    assert entries[0]["source"] == {"channel": "kafka"}
    assert entries[2]["actor"] == {"id": "bob", "role": "manager"}
    assert entries[2]["source"] == {"channel": "api"}
    assert entries[3]["actor"] == {"id": "fulfil-1", "role": "fulfilment"}
    assert all(e["correlationId"] for e in entries)
    assert entries[0]["timestamp"].endswith("Z")
    # the event's own data, without the envelope
    assert entries[2]["data"] == {
        "note": "sites surveyed",
        # what the manager decided on: version 2 and its content (issue 17)
        "decision": {
            "version": 2,
            "content_hash": app.get_order(order_id, version=2).content_hash(),
            "os_user": None,
        },
    }
    assert entries[3]["data"] == {"item_id": "1", "state": "inProgress", "reason": None}
    assert entries[6]["data"]["note"]["text"] == "customer called"
    assert "hash" not in entries[6]["data"] and "actor" not in entries[6]["data"]
    # the order after each event: summary and document
    assert entries[0]["summaryAfter"]["items"] == {"1": None, "2": None}
    assert entries[0]["documentKind"] == "draft"
    assert entries[0]["documentAfter"]["state"] == "draft"
    assert entries[1]["documentKind"] == "tmf641"
    assert entries[1]["documentAfter"]["@type"] == "ServiceOrder"
    assert entries[1]["documentAfter"]["state"] == "acknowledged"
    assert entries[3]["summaryAfter"]["items"] == {"1": "inProgress", "2": "acknowledged"}
    assert entries[4]["summaryAfter"]["revision"] == 0  # proposed, not applied yet
    assert entries[4]["documentAfter"].get("priority") is None
    assert entries[5]["actor"] == {"id": "carol", "role": "manager"}
    assert entries[5]["summaryAfter"]["revision"] == 1
    assert entries[5]["documentAfter"]["priority"] == "1"
    assert entries[6]["summaryAfter"]["notes"] == 1
    assert entries[9]["summaryAfter"]["items"] == {"1": "completed", "2": "completed"}
    # the last document is what the order is now
    assert entries[-1]["documentAfter"] == order_to_tmf641(app.get_order(order_id))

    lean = history.timeline(app, order_id, documents=False)
    assert "documentAfter" not in lean[0] and lean[0]["summaryAfter"]


def test_at_version_is_the_order_as_it_was(app: ServiceOrders, built: Built) -> None:
    order_id, _ = built
    for version, state in enumerate(STATES, start=1):
        past = history.at_version(app, order_id, version)
        assert past.version == version and past.latest_version == 10
        assert past.order.state.value == state
        # the same as the repository's own reconstruction at that version
        assert history.canonical(past.order) == history.canonical(
            app.get_order(order_id, version=version)
        )

    v4 = history.at_version(app, order_id, 4).view()
    assert v4["event"]["type"] == "ItemStateChanged"
    assert v4["event"]["actor"] == {"id": "fulfil-1", "role": "fulfilment"}
    assert v4["order"]["items"]["1"]["state"] == "inProgress"
    assert v4["order"]["items"]["2"]["characteristics"]["model"] == "c1100"
    assert v4["order"]["header"]["priority"] is None
    assert v4["documentKind"] == "tmf641" and v4["document"]["state"] == "inProgress"
    assert v4["asOf"] is None

    v5 = history.at_version(app, order_id, 5).view()  # the proposal waits
    assert v5["order"]["items"]["2"]["characteristics"]["model"] == "c1100"
    assert v5["order"]["header"]["priority"] is None
    proposal = v5["order"]["proposal"]  # what waits, and what it would change
    assert proposal["proposedBy"] == {"id": "crm", "role": "upstream"}
    assert proposal["baseVersion"] == 4
    changed = {c["path"]: (c["current"], c["proposed"]) for c in proposal["changes"]}
    assert changed == {
        "priority": (None, "1"),
        "items[2].characteristics.model": ("c1100", "c8300"),
    }
    assert v5["summary"]["proposalId"] == proposal["id"]
    assert v5["order"]["contributors"] == ["crm"]  # who shaped what was approved
    v6 = history.at_version(app, order_id, 6).view()  # approved: applied
    assert v6["order"]["items"]["2"]["characteristics"]["model"] == "c8300"
    assert v6["order"]["header"]["priority"] == "1"
    assert v6["order"]["revision"] == 1
    assert v6["order"]["proposal"] is None and "proposalId" not in v6["summary"]

    v1 = history.at_version(app, order_id, 1).view()
    assert v1["state"] == "draft" and v1["documentKind"] == "draft"
    assert v1["document"] == v1["order"]

    for bad in (0, 11, -1):
        with pytest.raises(history.HistoryQueryError, match="out of range"):
            history.at_version(app, order_id, bad)


def test_as_of_takes_the_events_up_to_the_instant(app: ServiceOrders, built: Built) -> None:
    order_id, after = built
    events = app.history(order_id)
    # just after each save: the order as that save left it
    saved_versions = [2, 3, 4, 5, 6, 7, 8, 10]
    for when, version in zip(after, saved_versions, strict=True):
        past = history.as_of(app, order_id, when)
        assert past.version == version, when
        assert past.as_of == when
        assert past.order.state.value == STATES[version - 1]
    # exactly at an event's timestamp: that event is included
    v7 = events[6]
    assert history.as_of(app, order_id, v7.timestamp).version == 7
    assert history.as_of(app, order_id, v7.timestamp - timedelta(microseconds=1)).version == 6
    # a naive time is UTC
    naive = after[2].astimezone(UTC).replace(tzinfo=None)
    assert history.as_of(app, order_id, naive).version == 4
    # another offset, same instant
    cet = after[2].astimezone(timezone(timedelta(hours=1)))
    assert history.as_of(app, order_id, cet).version == 4
    # far in the future: the order as it is now
    assert history.as_of(app, order_id, datetime(2999, 1, 1, tzinfo=UTC)).version == 10
    view = history.as_of(app, order_id, after[1]).view()
    assert view["asOf"] is not None and view["event"]["type"] == "OrderApproved"
    assert view["summary"]["state"] == "inProgress"

    before = events[0].timestamp - timedelta(seconds=1)
    with pytest.raises(history.HistoryQueryError, match="did not exist yet"):
        history.as_of(app, order_id, before)


def test_diff_lists_what_changed_between_two_versions(app: ServiceOrders, built: Built) -> None:
    order_id, _ = built

    approved = history.diff(app, order_id, 2, 3)
    by_path = {c["path"]: c for c in approved["changes"]}
    assert by_path["/state"] == {
        "op": "replace",
        "path": "/state",
        "before": "acknowledged",
        "after": "inProgress",
    }
    assert by_path["/decidedBy"]["after"] == {"id": "bob", "role": "manager"}
    assert set(by_path) == {"/state", "/stateSince", "/decidedBy", "/decidedAt"}
    assert [e["type"] for e in approved["events"]] == ["OrderApproved"]

    revised = history.diff(app, order_id, 4, 7)
    by_path = {c["path"]: c for c in revised["changes"]}
    assert by_path["/header/priority"]["before"] is None
    assert by_path["/header/priority"]["after"] == "1"
    assert by_path["/items/2/characteristics/model"] == {
        "op": "replace",
        "path": "/items/2/characteristics/model",
        "before": "c1100",
        "after": "c8300",
    }
    assert by_path["/revision"]["after"] == 1
    assert by_path["/notes/0"]["op"] == "add"
    assert by_path["/notes/0"]["after"]["text"] == "customer called"
    assert "/state" not in by_path  # a revision keeps the state
    assert [e["version"] for e in revised["events"]] == [5, 6, 7]
    assert (revised["from"], revised["to"], revised["latestVersion"]) == (4, 7, 10)

    finished = history.diff(app, order_id, 7, 10)
    by_path = {c["path"]: c for c in finished["changes"]}
    assert by_path["/items/1/state"]["after"] == "completed"
    assert by_path["/items/2/state"]["after"] == "completed"
    assert by_path["/state"]["after"] == "completed"

    same = history.diff(app, order_id, 5, 5)
    assert same["changes"] == [] and same["events"] == []

    whole = history.diff(app, order_id, 0, 2)
    assert {c["op"] for c in whole["changes"]} == {"add"}
    assert {c["path"] for c in whole["changes"]} >= {"/state", "/items", "/header"}
    assert len(whole["events"]) == 2

    with pytest.raises(history.HistoryQueryError, match="5 is after 2"):
        history.diff(app, order_id, 5, 2)
    with pytest.raises(history.HistoryQueryError, match="out of range"):
        history.diff(app, order_id, 1, 11)


def test_diff_of_manual_capture_shows_added_removed_and_configured_items(
    app: ServiceOrders, actors: Any, samples: Any
) -> None:
    order_id = app.handle(
        actors.agent, cmd.DraftOrder(OrderHeader(description="by hand"))
    ).order.id  # v1
    app.handle(actors.agent, cmd.AddLine(order_id, samples.internet_item("1")))  # v2
    app.handle(actors.agent, cmd.AddLine(order_id, samples.router_item("9")))  # v3
    app.handle(
        actors.agent, cmd.ConfigureLine(order_id, "1", characteristics={"bandwidthMbps": 200})
    )  # v4
    app.handle(actors.agent, cmd.RemoveLine(order_id, "9"))  # v5
    changes = {c["path"]: c for c in history.diff(app, order_id, 1, 5)["changes"]}
    assert changes["/items/1"]["op"] == "add"
    assert changes["/items/1"]["after"]["characteristics"]["bandwidthMbps"] == 200
    assert "/items/9" not in changes  # added then removed: no difference
    changes = {c["path"]: c for c in history.diff(app, order_id, 3, 5)["changes"]}
    assert changes["/items/9"]["op"] == "remove"
    assert changes["/items/9"]["before"]["specification"]["id"] == "managed-router"
    assert changes["/items/1/characteristics/bandwidthMbps"]["before"] == 100
    assert changes["/items/1/characteristics/bandwidthMbps"]["after"] == 200
    # every version of a draft has the draft view as its document
    assert {e["documentKind"] for e in history.timeline(app, order_id)} == {"draft"}


def test_unknown_orders_are_refused(app: ServiceOrders) -> None:
    missing = uuid4()
    for call in (
        lambda: history.timeline(app, missing),
        lambda: history.at_version(app, missing, 1),
        lambda: history.as_of(app, missing, datetime.now(UTC)),
        lambda: history.diff(app, missing, 0, 1),
    ):
        with pytest.raises(OrderNotFound):
            call()


def test_diff_paths_are_json_pointers() -> None:
    out: list[dict[str, Any]] = []
    history._compare({"a/b": {"x~y": 1}, "n": 1}, {"a/b": {"x~y": 2}, "n": True}, "", out)
    assert [c["path"] for c in out] == ["/a~1b/x~0y", "/n"]  # 1 -> True is a change

"""Issue 19's notification scenario: orders driven through every outcome and milestone the
engine tells back, and the checks a listener's (or a topic reader's) notifications must pass.
Shared by the hub test (tests/api/test_hub_types.py) and the Kafka outbound test
(tests/kafka/test_outbound_types.py), so both channels are held to the same list.

`drive(app, actors, samples)` takes the application and the root conftest's `actors` and
`samples` fixtures; `check(bodies, scenario)` takes the notifications received, in order
(duplicates allowed: delivery is at least once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from serviceorders.domain import commands as cmd
from serviceorders.domain.values import HeaderChange, ItemState

CREATE = "ServiceOrderCreateEvent"
STATE = "ServiceOrderStateChangeEvent"
AVC = "ServiceOrderAttributeValueChangeEvent"
DELETE = "ServiceOrderDeleteEvent"
INFO = "ServiceOrderInformationRequiredEvent"
MILESTONE = "ServiceOrderMilestoneEvent"
CANCEL_CREATE = "CancelServiceOrderCreateEvent"
CANCEL_STATE = "CancelServiceOrderStateChangeEvent"
CANCEL_INFO = "CancelServiceOrderInformationRequiredEvent"
JEOPARDY = "ServiceOrderJeopardyEvent"  # v4.1's tenth type: never sent (lead times)

# The nine v4.1 notification types that apply.
APPLY = {
    CREATE,
    STATE,
    AVC,
    DELETE,
    INFO,
    MILESTONE,
    CANCEL_CREATE,
    CANCEL_STATE,
    CANCEL_INFO,
}


@dataclass(frozen=True)
class Scenario:
    fulfilled: UUID  # revised, approved, worked, point of no return, partial, deleted
    rejected: UUID
    cancelled: UUID  # cancellation asked about, denied; asked again, approved, cancelled


def drive(app: Any, actors: Any, samples: Any, prefix: str = "NT") -> Scenario:
    def receive(external_id: str) -> UUID:
        done = app.handle(
            actors.upstream, cmd.ReceiveOrder(samples.header(external_id), tuple(samples.items()))
        )
        return UUID(str(done.order.id))

    # 1. the whole life of an order that ends partial, then is deleted
    a = receive(f"{prefix}-1")
    app.handle(actors.upstream, cmd.Revise(a, header=HeaderChange(priority="1")))  # attribute
    app.handle(actors.manager, cmd.Approve(a))  # milestone: approved
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(a, "1", ItemState.IN_PROGRESS))
    app.handle(actors.upstream, cmd.Revise(a, header=HeaderChange(priority="2")))  # a proposal
    app.handle(actors.manager, cmd.RefuseProposal(a, "not this quarter"))
    app.handle(actors.fulfilment, cmd.ReachPointOfNoReturn(a, "fibre pulled"))  # milestone
    app.handle(actors.fulfilment, cmd.RequestInformation(a, "which rack?"))
    app.handle(actors.upstream, cmd.ProvideInformation(a, "rack 7"))
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(a, "1", ItemState.COMPLETED))
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(a, "2", ItemState.FAILED, "router dead"))
    app.handle(actors.manager, cmd.Delete(a))

    # 2. a rejection
    b = receive(f"{prefix}-2")
    app.handle(actors.manager, cmd.Reject(b, "no coverage at the site"))

    # 3. a cancellation asked about and denied, then asked for again and carried out
    c = receive(f"{prefix}-3")
    app.handle(actors.manager, cmd.Approve(c))
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(c, "1", ItemState.IN_PROGRESS))
    app.handle(actors.upstream, cmd.RequestCancellation(c, reason="moving house"))
    app.handle(actors.manager, cmd.RequestCancellationInformation(c, "moving when?"))
    app.handle(actors.upstream, cmd.ProvideCancellationInformation(c, "next month"))
    app.handle(actors.manager, cmd.DenyCancellation(c, "work already started"))
    app.handle(actors.upstream, cmd.RequestCancellation(c, reason="moving abroad"))
    app.handle(actors.manager, cmd.ApproveCancellation(c))
    app.handle(actors.manager, cmd.Cancel(c))
    return Scenario(a, b, c)


def order_of(body: dict[str, Any]) -> str:
    resource = body["event"].get("serviceOrder")
    if resource is not None:
        return str(resource["id"])
    return str(body["event"]["cancelServiceOrder"]["serviceOrder"]["id"])


def once(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notifications without redeliveries, in arrival order."""
    seen: set[str] = set()
    found = []
    for body in bodies:
        if body["eventId"] not in seen:
            seen.add(body["eventId"])
            found.append(body)
    return found


def check(bodies: list[dict[str, Any]], scenario: Scenario) -> None:
    """Every type that applies arrived, none other; each told what it must."""
    bodies = once(bodies)
    assert {b["eventType"] for b in bodies} == APPLY
    assert JEOPARDY not in {b["eventType"] for b in bodies}

    def of(oid: UUID) -> list[dict[str, Any]]:
        return [b for b in bodies if order_of(b) == str(oid)]

    a, b, c = of(scenario.fulfilled), of(scenario.rejected), of(scenario.cancelled)
    assert [n["eventType"] for n in a] == [
        CREATE,
        AVC,  # the priority
        STATE,  # inProgress
        MILESTONE,  # approved
        AVC,  # item 1 inProgress
        MILESTONE,  # item 1 started
        AVC,  # the refused proposal's errorMessage
        MILESTONE,  # the point of no return
        STATE,  # pending
        INFO,
        STATE,  # inProgress again
        AVC,  # item 1 completed
        MILESTONE,  # item 1 completed
        AVC,  # item 2 failed
        STATE,  # partial
        DELETE,
    ]
    assert a[1]["fieldPath"] == "priority"
    assert a[9]["description"] == "which rack?"
    assert a[6]["fieldPath"] == "errorMessage"

    # Milestones: each notification carries the list so far; its newest is the news.
    milestones = [n["event"]["serviceOrder"]["milestone"] for n in a if n["eventType"] == MILESTONE]
    assert [m[-1]["name"] for m in milestones] == [
        "approved",
        "itemStarted",
        "pointOfNoReturn",
        "itemCompleted",
    ]
    assert [len(m) for m in milestones] == [1, 2, 3, 4]
    final = milestones[-1]
    for milestone in final:
        assert milestone["status"] == "reached" and milestone["@type"] == "ServiceOrderMilestone"
        assert milestone["id"] and milestone["milestoneDate"] and milestone["description"]
    assert [[r["itemId"] for r in m.get("serviceOrderItem", [])] for m in final] == [
        [],
        ["1"],
        [],
        ["1"],
    ]
    assert final[2]["message"] == "fibre pulled"
    assert all(r["serviceOrderId"] == str(scenario.fulfilled) for r in final[1]["serviceOrderItem"])
    # Before the approval nothing was reached.
    assert "milestone" not in a[0]["event"]["serviceOrder"]

    # errorMessage: the refused proposal at once; at the end, the failed item too.
    assert "errorMessage" not in a[5]["event"]["serviceOrder"]
    (refusal,) = a[6]["event"]["serviceOrder"]["errorMessage"]
    assert (refusal["code"], refusal["message"], refusal["status"]) == (
        "proposal_refused",
        "not this quarter",
        "refused",
    )
    partial = a[14]["event"]["serviceOrder"]
    assert partial["state"] == "partial"
    assert [e["code"] for e in partial["errorMessage"]] == ["proposal_refused", "item_failed"]
    assert [r["itemId"] for r in partial["errorMessage"][1]["serviceOrderItem"]] == ["2"]
    items = {i["id"]: i for i in partial["serviceOrderItem"]}
    assert "errorMessage" not in items["1"]
    (item_error,) = items["2"]["errorMessage"]
    assert (item_error["code"], item_error["message"], item_error["@type"]) == (
        "item_failed",
        "router dead",
        "ServiceOrderItemErrorMessage",
    )
    assert a[-1]["event"]["serviceOrder"]["errorMessage"] == partial["errorMessage"]

    assert [n["eventType"] for n in b] == [CREATE, STATE]
    rejection = b[1]["event"]["serviceOrder"]
    assert rejection["state"] == "rejected"
    assert [(e["code"], e["message"]) for e in rejection["errorMessage"]] == [
        ("rejected", "no coverage at the site")
    ]

    assert [n["eventType"] for n in c] == [
        CREATE,
        STATE,  # inProgress
        MILESTONE,  # approved
        AVC,  # item 1 inProgress
        MILESTONE,  # item 1 started
        CANCEL_CREATE,
        STATE,  # assessingCancellation
        CANCEL_INFO,
        CANCEL_STATE,  # denied: done
        STATE,  # inProgress again
        CANCEL_CREATE,
        STATE,  # assessingCancellation
        CANCEL_STATE,  # approved: inProgress
        STATE,  # pendingCancellation
        CANCEL_STATE,  # done
        STATE,  # cancelled
    ]
    cancels = [n["event"]["cancelServiceOrder"] for n in c if "cancelServiceOrder" in n["event"]]
    assert [x["state"] for x in cancels] == [
        "accepted",  # requested
        "accepted",  # information required
        "done",  # denied
        "accepted",  # requested again
        "inProgress",  # approved
        "done",  # cancelled
    ]
    assert cancels[0]["id"] == cancels[1]["id"] == cancels[2]["id"] != cancels[3]["id"]
    assert c[7]["description"] == "moving when?"
    assert cancels[2]["completionMessage"] == "cancellation denied: work already started"

    def item_states(n: dict[str, Any]) -> dict[str, str]:
        return {i["id"]: i["state"] for i in n["event"]["serviceOrder"]["serviceOrderItem"]}

    states = [
        (n["event"]["serviceOrder"]["state"], item_states(n)) for n in c if n["eventType"] == STATE
    ]
    assert states == [
        ("inProgress", {"1": "acknowledged", "2": "acknowledged"}),
        ("assessingCancellation", {"1": "assessingCancellation", "2": "assessingCancellation"}),
        ("inProgress", {"1": "inProgress", "2": "acknowledged"}),  # restored on denial
        ("assessingCancellation", {"1": "assessingCancellation", "2": "assessingCancellation"}),
        ("pendingCancellation", {"1": "pendingCancellation", "2": "pendingCancellation"}),
        ("cancelled", {"1": "cancelled", "2": "cancelled"}),
    ]
    denied = c[9]["event"]["serviceOrder"]
    assert [(e["code"], e["message"], e["status"]) for e in denied["errorMessage"]] == [
        ("cancellation_denied", "work already started", "denied")
    ]

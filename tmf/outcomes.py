"""What the order tells back about its outcomes in TMF641 v4.1: `errorMessage` (on the
order, and on an item where the outcome is an item's) and `milestone`.

Rendered from the order's state (domain/values.py `OrderOutcome`, `Milestone`: the
aggregate derives both from its events, old events included) for the TMF641 document
(tmf641.py), and so for the hub and the Kafka notifications, which carry that document.
docs/lifecycle.md ("Outcomes told back") says what each attribute holds.
"""

from __future__ import annotations

from typing import Any

from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import ItemState, Milestone, OrderItem, OrderOutcome, OrderState
from serviceorders.tmf.time import tmf_time as _time

# `code` of each outcome told back in `errorMessage`; `reason` repeats it (one spelling for
# programs, as in the TMF Error bodies and the Kafka refusals), `message` is for people.
REJECTED = "rejected"
ITEM_FAILED = "item_failed"
PROPOSAL_REFUSED = "proposal_refused"
CANCELLATION_DENIED = "cancellation_denied"

# `status` (v4.1: "error code extension"): what the outcome made of the thing it is about:
# the order (rejected; failed or partial: its state), an item (failed), a revision
# proposal (refused), a cancellation request (denied).
_STATUS = {
    REJECTED: "rejected",
    ITEM_FAILED: "failed",
    PROPOSAL_REFUSED: "refused",
    CANCELLATION_DENIED: "denied",
}

# `milestone` names (domain Milestone.name) and the description each is told with.
APPROVED = "approved"
ITEM_STARTED = "itemStarted"
ITEM_COMPLETED = "itemCompleted"
POINT_OF_NO_RETURN = "pointOfNoReturn"
_DESCRIPTION = {
    APPROVED: "the order was approved",
    ITEM_STARTED: "work on the order item started",
    ITEM_COMPLETED: "the order item was completed",
    POINT_OF_NO_RETURN: "the order passed its point of no return: it can no longer be cancelled",
}


def order_error_messages(order: ServiceOrder) -> list[dict[str, Any]]:
    """The order's outcomes, as v4.1 `ServiceOrderErrorMessage`s, oldest first.

    * every outcome that is the order's (a manager's rejection, a refused revision
      proposal, a denied cancellation: each with its reason, time and code);
    * once the order is `failed` or `partial`: one message naming its failed items
      (`serviceOrderItem`), at the time the order became so. A failed item's own reason
      is on that item (`item_error_messages`); while the order still runs, a failed item
      is told on the item only.
    """
    found = [
        _error(order, outcome, "ServiceOrderErrorMessage", refs=True)
        for outcome in order.outcomes
        if outcome.code != ITEM_FAILED
    ]
    if order.state in (OrderState.FAILED, OrderState.PARTIAL):
        failed = [i.id for i in order.items.values() if i.state is ItemState.FAILED]
        if failed:
            found.append(
                _compact(
                    {
                        "code": ITEM_FAILED,
                        "reason": ITEM_FAILED,
                        "message": f"order item(s) {', '.join(failed)} failed",
                        "status": order.state.value,
                        "timestamp": _time(order.state_since),
                        "serviceOrderItem": _refs(order, failed),
                        "@type": "ServiceOrderErrorMessage",
                    }
                )
            )
    return found


def item_error_messages(order: ServiceOrder, item: OrderItem) -> list[dict[str, Any]]:
    """An item's own `errorMessage` (v4.1 ServiceOrderItemErrorMessage): the outcomes
    naming that item (its failure, with fulfilment's reason), oldest first."""
    return [
        _error(order, outcome, "ServiceOrderItemErrorMessage", refs=False)
        for outcome in order.outcomes
        if item.id in outcome.item_ids
    ]


def order_milestones(
    order: ServiceOrder, rendered: list[tuple[Any, dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """The order's `milestone` list (v4.1 ServiceOrderMilestone), oldest first: approved,
    each item started and completed, the point of no return.

    `rendered`: (milestone, rendering) of an earlier document of the same order, by
    position (tmf641.Renders), kept up to date: a milestone that is the same object there
    is taken as it was rendered (milestones are immutable values, only ever appended)."""
    if rendered is None:
        return [_milestone(order, m) for m in order.milestones]
    found = []
    for n, milestone in enumerate(order.milestones):
        if n < len(rendered) and rendered[n][0] is milestone:
            found.append(rendered[n][1])
            continue
        shown = _milestone(order, milestone)
        if n < len(rendered):
            rendered[n] = (milestone, shown)
        else:
            rendered.append((milestone, shown))
        found.append(shown)
    del rendered[len(found) :]
    return found


def _error(order: ServiceOrder, outcome: OrderOutcome, type_: str, *, refs: bool) -> dict[str, Any]:
    return _compact(
        {
            "code": outcome.code,
            "reason": outcome.code,
            "message": outcome.message,
            "status": _STATUS.get(outcome.code),
            "timestamp": _time(outcome.date),
            "serviceOrderItem": _refs(order, outcome.item_ids) if refs else None,
            "@type": type_,
        }
    )


def _milestone(order: ServiceOrder, milestone: Milestone) -> dict[str, Any]:
    return _compact(
        {
            "id": milestone.id,
            "name": milestone.name,
            "description": _DESCRIPTION.get(milestone.name),
            "message": milestone.message,
            "milestoneDate": _time(milestone.date),
            "status": "reached",
            "serviceOrderItem": _refs(order, milestone.item_ids),
            "@type": "ServiceOrderMilestone",
        }
    )


def _refs(order: ServiceOrder, item_ids: Any) -> list[dict[str, Any]]:
    """v4.1 ServiceOrderItemRefs. No `serviceOrderHref`: the document carries no hrefs
    (the API and the notifications add the order's own `href` from the public base URL),
    and a relative one is not the `uri` the spec asks for."""
    return [
        {
            "itemId": item_id,
            "serviceOrderId": str(order.id),
            "@referredType": "ServiceOrderItem",
            "@type": "ServiceOrderItemRef",
        }
        for item_id in item_ids
    ]


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None and v != []}

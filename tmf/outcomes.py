"""What the order tells back about its outcomes in TMF641 v4.1: `errorMessage` (on the
order, and on an item where the outcome is an item's) and `milestone`.

Rendered from the order's state (domain/values.py `OrderOutcome`, `Milestone`) for the
TMF641 document (tmf641.py), and so for the hub and the Kafka notifications, which carry
that document.
"""

from __future__ import annotations

from typing import Any

from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import ItemState, OrderItem, OrderState
from serviceorders.tmf.time import tmf_time as _time

# `code` of each outcome told back in `errorMessage`; `reason` repeats it (one spelling for
# programs, as in the TMF Error bodies and the Kafka refusals), `message` is for people.
REJECTED = "rejected"
ITEM_FAILED = "item_failed"


def order_error_messages(order: ServiceOrder) -> list[dict[str, Any]]:
    """The outcome that changed the order's state, as v4.1 `ServiceOrderErrorMessage`s:
    a manager's rejection (with their reason), or the failed items that made the order
    `failed` or `partial` (named by `serviceOrderItem`). Only what the order holds: a
    failed item's own reason, a refused proposal's and a denied cancellation's are in
    their events, not in the order (see docs/lifecycle.md)."""
    if order.state is OrderState.REJECTED and order.rejection_reason:
        return [
            _compact(
                {
                    "code": REJECTED,
                    "reason": REJECTED,
                    "message": order.rejection_reason,
                    "timestamp": _time(order.decided_at),
                    "@type": "ServiceOrderErrorMessage",
                }
            )
        ]
    if order.state in (OrderState.FAILED, OrderState.PARTIAL):
        failed = [i.id for i in order.items.values() if i.state is ItemState.FAILED]
        if failed:
            return [
                _compact(
                    {
                        "code": ITEM_FAILED,
                        "reason": ITEM_FAILED,
                        "message": f"order item(s) {', '.join(failed)} failed",
                        "timestamp": _time(order.state_since),
                        "serviceOrderItem": [
                            {
                                "itemId": item_id,
                                "serviceOrderId": str(order.id),
                                "@referredType": "ServiceOrderItem",
                                "@type": "ServiceOrderItemRef",
                            }
                            for item_id in failed
                        ],
                        "@type": "ServiceOrderErrorMessage",
                    }
                )
            ]
    return []


def item_error_messages(order: ServiceOrder, item: OrderItem) -> list[dict[str, Any]]:
    """An item's own `errorMessage` (v4.1 ServiceOrderItemErrorMessage)."""
    if item.state is not ItemState.FAILED:
        return []
    return [
        {
            "code": ITEM_FAILED,
            "reason": ITEM_FAILED,
            "message": f"order item {item.id} failed",
            "@type": "ServiceOrderItemErrorMessage",
        }
    ]


def order_milestones(order: ServiceOrder) -> list[dict[str, Any]]:
    """The order's `milestone` list (v4.1 ServiceOrderMilestone)."""
    return []


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None and v != []}

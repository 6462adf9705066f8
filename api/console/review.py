"""The review queue: what awaits a manager, with the API's filters (`QueueFilter`):
orders to approve, cancellation requests, and proposals (revisions of approved orders),
each proposal with its diff and its approve / refuse forms (the decisions of the order
page, `orders.decide`, posting the version the queue showed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from serviceorders.api.common import ctx_of
from serviceorders.api.console.orders import PAGE_SIZE, _offset
from serviceorders.api.console.web import PREFIX, begin, page, query_of, render
from serviceorders.domain.errors import OrderNotFound
from serviceorders.domain.proposals import diff
from serviceorders.projections.queries import QueueFilter

router = APIRouter()

KINDS = [("approval", "Approval"), ("cancellation", "Cancellation"), ("proposal", "Proposal")]
PRIORITIES = ["0", "1", "2", "3", "4"]
# (seconds, label) for "waiting at least / at most"
AGES = [
    (900, "15 minutes"),
    (3600, "1 hour"),
    (4 * 3600, "4 hours"),
    (86400, "1 day"),
    (7 * 86400, "1 week"),
]


def _age(query: dict[str, str], name: str, errors: dict[str, str]) -> timedelta | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 10**9:
        errors[name] = "choose one of the listed ages"
        return None
    return timedelta(seconds=seconds)


@router.get(PREFIX + "/queue", include_in_schema=False)
@page
def review_queue(request: Request) -> Response:
    current = begin(request)
    query = query_of(request)
    errors: dict[str, str] = {}
    where = QueueFilter(
        kind=query.get("kind"),
        site=query.get("site"),
        customer=query.get("customer"),
        priority=query.get("priority"),
        specification=query.get("specification"),
        older_than=_age(query, "older", errors),
        younger_than=_age(query, "younger", errors),
    )
    offset = _offset(query)
    with ctx_of(request).read() as models:
        entries = models.review_queue(where, offset=offset, limit=PAGE_SIZE)
    for entry in entries.items:
        if entry["kind"] == "proposal":
            _complete(request, entry)
    catalog = ctx_of(request).app.catalog
    return render(
        current,
        "queue.html",
        status=400 if errors else 200,
        query=query,
        page=entries,
        errors=errors,
        kinds=KINDS,
        priorities=PRIORITIES,
        ages=AGES,
        specifications=catalog.specifications,
        page_size=PAGE_SIZE,
        four_eyes_on=ctx_of(request).app.four_eyes,
    )


def _complete(request: Request, entry: dict[str, Any]) -> None:
    """A proposal's row as the queue shows it: its `changes` (the diff the projection
    stored) and the order's `version` it was read at, which its forms post. A row without
    them (a read model older than proposals) takes both from the order itself."""
    if entry.get("changes") is not None and entry.get("version") is not None:
        return
    try:
        order = ctx_of(request).app.get_order(entry["order_id"])
    except OrderNotFound:
        return
    if order.proposal is not None:
        entry["changes"] = [c.as_json() for c in diff(order.header, order.items, order.proposal)]
    entry["version"] = order.version

"""Order search, an order's detail with its timeline, and the manager's decisions.

A decision is a domain command (`Approve`, `Reject`, `ApproveCancellation`,
`DenyCancellation`) handed to the application's one door with the version the page showed
(the form's `version`, as the API's If-Match): `StaleVersion` when the order moved since,
and the store refuses the save if anyone wrote in between. Either way a late decision is
shown as a plain conflict on the detail page, not an error page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from serviceorders.api.bodies import Body, NoteBody, ReasonBody
from serviceorders.api.common import ctx_of, handle
from serviceorders.api.console.web import (
    PREFIX,
    Refusal,
    Visit,
    _when,
    begin,
    load,
    page,
    query_of,
    redirect,
    render,
)
from serviceorders.api.views import order_view
from serviceorders.audit import history
from serviceorders.domain.commands import (
    Approve,
    ApproveCancellation,
    DenyCancellation,
    OrderCommand,
    Reject,
)
from serviceorders.domain.errors import ConcurrencyConflict, DomainError, StaleVersion
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import OrderState
from serviceorders.projections.queries import OrderFilter

router = APIRouter()
PAGE_SIZE = 25
STATES = [s.value for s in OrderState]
DONE = {
    "approved": "The order is approved and in progress.",
    "rejected": "The order is rejected.",
    "cancellation-approved": "The cancellation is approved.",
    "cancellation-denied": "The cancellation is denied; the order is back as it was.",
    "submitted": "The order is submitted and waits in the review queue.",
}


# ------------------------------------------------------------------- search
@router.get(PREFIX + "/orders", include_in_schema=False)
@page
def orders(request: Request) -> Response:
    current = begin(request)
    query = query_of(request)
    wanted = query.get("q")
    if wanted:  # an order id opens it; anything else is an external id
        found = _find(request, wanted)
        if found is not None:
            return redirect(current, f"{PREFIX}/orders/{found}")
    state = query.get("state") if query.get("state") in STATES else None
    where = OrderFilter(
        state=state,
        external_id=wanted,
        customer=query.get("customer"),
        priority=query.get("priority"),
        category=query.get("category"),
        include_drafts=state == OrderState.DRAFT,
    )
    offset = _offset(query)
    with ctx_of(request).read() as models:
        found_page = models.search_orders(where, offset=offset, limit=PAGE_SIZE)
    return render(
        current, "orders.html", query=query, page=found_page, states=STATES, page_size=PAGE_SIZE
    )


def _find(request: Request, wanted: str) -> UUID | None:
    try:
        order_id = UUID(wanted)
    except ValueError:
        return None
    return order_id if ctx_of(request).app.exists(order_id) else None


def _offset(query: dict[str, str]) -> int:
    raw = query.get("offset", "0")
    return min(int(raw), 1_000_000) if raw.isdigit() else 0


# ------------------------------------------------------------------- detail
@router.get(PREFIX + "/orders/{id}", include_in_schema=False)
@page
def order_detail(request: Request, id: str) -> Response:
    current = begin(request)
    order = load(request, id)
    notice = DONE.get(request.query_params.get("done", ""))
    return detail(current, order, notice=notice)


def detail(current: Visit, order: ServiceOrder, status: int = 200, **values: Any) -> Response:
    request = current.request
    app = ctx_of(request).app
    view = order_view(request, order)
    timeline = history.timeline(app, order.id, documents=False)
    actor = current.actor
    own = (
        app.four_eyes
        and actor is not None
        and order.submitted_by is not None
        and order.submitted_by.id == actor.id
    )
    return render(
        current,
        "order.html",
        status=status,
        order=view,
        sites=by_site(view),
        timeline=timeline,
        four_eyes_own=own,
        verbs=VERBS,
        **values,
    )


def by_site(view: dict[str, Any]) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """Items grouped per site (place), in order of first appearance; no site last."""
    groups: dict[str | None, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
    for item in view["items"]:
        place = item["place"]
        groups.setdefault(place["id"] if place else None, (place, []))[1].append(item)
    return sorted(groups.values(), key=lambda group: group[0] is None)


# ----------------------------------------------------------------- decisions
@dataclass(frozen=True)
class DecisionForm:
    """How a decision's form is parsed into its domain command: the form's text field, the
    API's body model that checks it (the text required, `ReasonBody`, or optional,
    `NoteBody`), the command it makes (run by `ServiceOrders.handle`), what is done."""

    field: str
    body: type[Body]
    command: Callable[[UUID, str | None], OrderCommand]
    done: str


DECISION_FORMS: dict[str, DecisionForm] = {
    "approve": DecisionForm("note", NoteBody, Approve, "approved"),
    "reject": DecisionForm("reason", ReasonBody, lambda o, t: Reject(o, t or ""), "rejected"),
    "approve-cancellation": DecisionForm(
        "note", NoteBody, ApproveCancellation, "cancellation-approved"
    ),
    "deny-cancellation": DecisionForm(
        "reason", ReasonBody, lambda o, t: DenyCancellation(o, t or ""), "cancellation-denied"
    ),
}


@router.post(PREFIX + "/orders/{id}/{decision}", include_in_schema=False)
@page
def decide(request: Request, id: str, decision: str) -> Response:
    current = begin(request)
    chosen = DECISION_FORMS.get(decision)
    if chosen is None:
        raise Refusal(404, "Not found", f"there is no decision {decision!r}")
    order = load(request, id)
    text = current.form.get(chosen.field, "").strip() or None
    required = chosen.body is ReasonBody
    try:
        chosen.body.model_validate({chosen.field: text})
    except ValidationError as e:
        message = (
            "a reason is required"
            if required and not text
            else e.errors(include_url=False)[0]["msg"]
        )
        return detail(
            current, order, 400, form_errors={decision: message}, form_values={decision: text or ""}
        )
    # The version the page showed; anything else is no version the order can be at.
    seen = current.form.get("version", "")
    version = int(seen) if seen.isdigit() else frozenset[int]()
    try:
        handle(current.request, chosen.command(order.id, text), version)
    except ConcurrencyConflict as e:  # stale, or written between the check and the save
        fresh = load(request, order.id)
        stale = e if isinstance(e, StaleVersion) else StaleVersion(order.id, version, fresh.version)
        return detail(
            current,
            fresh,
            Refusal.of(stale).status,
            conflict=conflict_message(request, fresh, seen),
            conflict_code=stale.code,
        )
    except DomainError as e:
        refusal = Refusal.of(e)
        return detail(
            current,
            load(request, order.id),
            refusal.status,
            refusal=refusal,
            form_values={decision: text or ""},
        )
    return redirect(current, f"{PREFIX}/orders/{order.id}?done={chosen.done}")


VERBS = {
    "OrderDrafted": "drafted",
    "LineAdded": "item added",
    "LineConfigured": "item configured",
    "LineRemoved": "item removed",
    "OrderSubmitted": "submitted",
    "OrderApproved": "approved",
    "OrderRejected": "rejected",
    "OrderHeld": "held",
    "OrderResumed": "resumed",
    "InformationRequested": "information requested",
    "InformationProvided": "information provided",
    "ItemStateChanged": "item state changed",
    "OrderRevised": "revised",
    "PointOfNoReturnReached": "point of no return reached",
    "CancellationRequested": "cancellation requested",
    "CancellationApproved": "cancellation approved",
    "CancellationDenied": "cancellation denied",
    "OrderCancelled": "cancelled",
    "OrderCompleted": "completed",
    "OrderFailed": "failed",
    "OrderPartiallyCompleted": "partially completed",
    "NoteAdded": "note added",
    "OrderDeleted": "deleted",
}


def conflict_message(request: Request, order: ServiceOrder, seen: str) -> str:
    """What happened since the page the decision came from: `already approved by bob at
    ...; the order is now inProgress`."""
    events = ctx_of(request).app.history(order.id)
    since = events[int(seen) :] if seen.isdigit() else []
    if not since:
        return (
            f"The order is at version {order.version}, not the one your page showed; "
            f"it is now {order.state}. Your decision was not recorded: review it again."
        )
    done = "; then ".join(
        f"{VERBS.get(type(e).__name__, type(e).__name__)} by {e.actor.id} at {_when(e.timestamp)}"
        for e in since[-3:]
    )
    return f"Your decision was not recorded: already {done}; the order is now {order.state}."

"""Order search, an order's detail with its timeline, and the manager's decisions.

A decision is a domain command (`Approve`, `Reject`, `ApproveCancellation`,
`DenyCancellation`, `ApproveProposal`, `RefuseProposal`; `WithdrawProposal` for the
proposer) handed to the application's one door with the version the page showed (the
form's `version`, as the API's If-Match): `StaleVersion` when the order moved since, and
the store refuses the save if anyone wrote in between. Either way a late decision is shown
as a plain conflict on the detail page, not an error page. Four-eyes (nobody decides what
they contributed to or proposed) is the domain's refusal, shown on the page.

A rejected order offers "Correct and resubmit" (`Resubmit`): a new draft prefilled from
it, linked both ways (`orderRelationship`), opened on its capture page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from serviceorders.api.bodies import Body, DraftCreate, NoteBody, OptionalReasonBody, ReasonBody
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
    text,
)
from serviceorders.api.views import order_view
from serviceorders.audit import history
from serviceorders.domain.commands import (
    Approve,
    ApproveCancellation,
    ApproveProposal,
    DenyCancellation,
    OrderCommand,
    RefuseProposal,
    Reject,
    Resubmit,
    WithdrawProposal,
)
from serviceorders.domain.errors import (
    ConcurrencyConflict,
    DomainError,
    OrderNotFound,
    StaleVersion,
)
from serviceorders.domain.order import RESUBMITS, RESUBMITTED_AS, ServiceOrder, order_id_for
from serviceorders.domain.proposals import diff
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
    "proposal-approved": "The proposal is approved: its change now applies to the order.",
    "proposal-refused": "The proposal is refused; the order stays as approved so far.",
    "proposal-withdrawn": "The proposal is withdrawn; the order stays as approved so far.",
}
# orderRelationship types as the pages say them (the correction's link, domain/order.py).
RELATIONSHIPS = {
    RESUBMITS: "Corrects the rejected order",
    RESUBMITTED_AS: "Corrected and resubmitted as",
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
    return min(int(raw), 1_000_000) if raw.isascii() and raw.isdigit() else 0


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
    for entry in timeline:
        entry["details"] = event_details(request, entry)
    resubmit_id = values.pop("resubmit_id", None)
    if resubmit_id is None:
        resubmit_id = next_external_id(request, order)
    return render(
        current,
        "order.html",
        status=status,
        order=view,
        sites=by_site(view),
        timeline=timeline,
        decisions=[e for e in timeline if e["data"].get("decision")],
        four_eyes_own=own_part(current, order),
        four_eyes_on=app.four_eyes,
        proposal=proposal_of(current, order),
        relationships=relationships(request, order),
        resubmit_id=resubmit_id,
        verbs=VERBS,
        **values,
    )


def own_part(current: Visit, order: ServiceOrder) -> str | None:
    """Why four-eyes keeps the signed-in person from the decision the page offers, if it
    does (a hint: the refusal itself is the domain's)."""
    actor = current.actor
    if actor is None or not ctx_of(current.request).app.four_eyes:
        return None
    if order.state is OrderState.ACKNOWLEDGED and actor.id in order.contributors:
        return (
            "You contributed to this order (drafted, configured, submitted or changed it): "
            "four-eyes applies, another manager must decide it."
        )
    requester = order.cancellation_requested_by
    if order.state is OrderState.ASSESSING_CANCELLATION and requester and requester.id == actor.id:
        return "You requested this cancellation: four-eyes applies, another manager must decide it."
    return None


@dataclass(frozen=True)
class ProposalView:
    """The waiting proposal as the order page shows it: its diff against the order as
    approved so far (`domain.proposals.diff`, as the review queue and /api/v1 show it)."""

    id: str
    proposed_by: str
    proposed_role: str
    proposed_at: Any
    base_version: int
    changes: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    mine: bool  # the signed-in person proposed it: four-eyes, and they may withdraw it
    holds: bool  # the order is held while it waits


def proposal_of(current: Visit, order: ServiceOrder) -> ProposalView | None:
    proposal = order.proposal  # the order as read is revealed (the log's mapper)
    if proposal is None or order.deleted:
        return None
    actor = current.actor
    return ProposalView(
        id=proposal.id,
        proposed_by=proposal.proposed_by.id,
        proposed_role=proposal.proposed_by.role.value,
        proposed_at=proposal.proposed_at,
        base_version=proposal.base_version,
        changes=[c.as_json() for c in diff(order.header, order.items, proposal)],
        flags=[f.model_dump(mode="json") for f in proposal.flags],
        mine=actor is not None and actor.id == proposal.proposed_by.id,
        holds=order.state is OrderState.HELD and order.held_for_proposal == proposal.id,
    )


@dataclass(frozen=True)
class Related:
    label: str
    type: str
    id: str
    href: str | None  # the console page of the related order, when it is one of ours
    name: str  # its external id, else its id
    rejection_reason: str | None = None  # the related order's, when it was rejected


def relationships(request: Request, order: ServiceOrder) -> list[Related]:
    """The order's orderRelationship entries, each linking to the related order's page
    when it is an order of this system (a correction: `resubmits` / `resubmittedAs`)."""
    app = ctx_of(request).app
    found = []
    for link in order.header.order_relationships:
        href, name, reason = None, link.id, None
        try:
            other = app.get_order(UUID(link.id))
        except (ValueError, OrderNotFound):
            pass
        else:
            href = f"{PREFIX}/orders/{other.id}"
            name = other.header.external_id or str(other.id)
            reason = other.rejection_reason if other.state is OrderState.REJECTED else None
        label = RELATIONSHIPS.get(link.relationship_type, link.relationship_type)
        found.append(Related(label, link.relationship_type, link.id, href, name, reason))
    return found


def next_external_id(request: Request, order: ServiceOrder) -> str:
    """The external id offered for the correction of a rejected order: `<old>-2` (or the
    next number free), empty when the order has none."""
    old = order.header.external_id
    if order.state is not OrderState.REJECTED or not old:
        return ""
    app = ctx_of(request).app
    for number in range(2, 100):
        candidate = f"{old}-{number}"
        if len(candidate) > 200:
            break
        if not app.exists(order_id_for(candidate)):
            return candidate
    return ""


def event_details(request: Request, entry: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """What the timeline says of an event beyond its verb: (label, text, link or None)."""
    data = entry["data"]
    found: list[tuple[str, str, str | None]] = []
    if entry["type"] == "ItemStateChanged":
        found.append(("item", f"{data.get('item_id')} → {data.get('state')}", None))
    elif data.get("item_id"):
        found.append(("item", str(data["item_id"]), None))
    if entry["type"] == "OrderResubmitted" and data.get("new_order_id"):
        new_id = str(data["new_order_id"])
        found.append(("new order", new_id, f"{PREFIX}/orders/{new_id}"))
    if data.get("proposal_id"):
        found.append(("proposal", str(data["proposal_id"])[:8], None))
    for key in ("reason", "note", "information"):
        value = data.get(key)
        if value:
            found.append((key, value["text"] if isinstance(value, dict) else str(value), None))
    decision = data.get("decision")
    if decision:
        seen = f"v{decision.get('version')}, content {str(decision.get('content_hash'))[:12]}"
        if decision.get("os_user"):
            seen += f", OS user {decision['os_user']}"
        found.append(("decided on", seen, None))
    return found


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
    "approve-proposal": DecisionForm("note", NoteBody, ApproveProposal, "proposal-approved"),
    "refuse-proposal": DecisionForm(
        "reason", ReasonBody, lambda o, t: RefuseProposal(o, t or ""), "proposal-refused"
    ),
    "withdraw-proposal": DecisionForm(
        "reason", OptionalReasonBody, WithdrawProposal, "proposal-withdrawn"
    ),
}


# ---------------------------------------------------------- correct and resubmit
@router.post(PREFIX + "/orders/{id}/resubmit", include_in_schema=False)
@page
def resubmit(request: Request, id: str) -> Response:
    """Correct and resubmit a rejected order: the new draft, prefilled from it and linked
    both ways, opened on its capture page (the agent corrects it and submits it there)."""
    current = begin(request)
    order = load(request, id)
    external_id = text(current.form, "externalId")
    try:
        DraftCreate.model_validate({"externalId": external_id} if external_id else {})
    except ValidationError as e:
        message = e.errors(include_url=False)[0]["msg"]
        return detail(
            current,
            order,
            400,
            form_errors={"resubmit": message},
            resubmit_id=external_id or "",
        )
    seen = current.form.get("version", "")
    version = int(seen) if seen.isascii() and seen.isdigit() else frozenset[int]()
    try:
        outcome = handle(request, Resubmit(order.id, external_id=external_id), version)
    except ConcurrencyConflict as e:
        fresh = load(request, order.id)
        app = ctx_of(request).app
        if external_id and not isinstance(e, StaleVersion):
            taken = order_id_for(external_id)
            if app.exists(taken):  # the new order's id derives from its external id
                # Shown on the field, with the API's status for a taken external id (409),
                # as the new-draft form does.
                return detail(
                    current,
                    fresh,
                    409,
                    form_errors={"resubmit": "an order with this external id already exists"},
                    resubmit_id=external_id,
                    taken=taken,
                )
        stale = e if isinstance(e, StaleVersion) else StaleVersion(order.id, version, fresh.version)
        return detail(
            current,
            fresh,
            Refusal.of(stale).status,
            conflict=conflict_message(request, fresh, seen),
            conflict_code=stale.code,
            resubmit_id=external_id or "",
        )
    except DomainError as e:
        refusal = Refusal.of(e)
        fresh = load(request, order.id)
        return detail(
            current, fresh, refusal.status, refusal=refusal, resubmit_id=external_id or ""
        )
    return redirect(current, f"{PREFIX}/drafts/{outcome.order_id}?done=resubmitted")


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
    version = int(seen) if seen.isascii() and seen.isdigit() else frozenset[int]()
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
    "InventoryChecked": "checked against the inventory",
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
    "RevisionProposed": "change proposed",
    "ProposalApproved": "proposal approved",
    "ProposalRefused": "proposal refused",
    "ProposalWithdrawn": "proposal withdrawn",
    "OrderResubmitted": "corrected and resubmitted",
}


def conflict_message(request: Request, order: ServiceOrder, seen: str) -> str:
    """What happened since the page the decision came from: `already approved by bob at
    ...; the order is now inProgress`."""
    events = ctx_of(request).app.history(order.id)
    since = events[int(seen) :] if seen.isascii() and seen.isdigit() else []
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

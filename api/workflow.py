"""The workflow beyond TMF641, under /api/v1: capture, review, fulfilment, history.

* Capture: an agent builds a draft item by item, sees every problem at once, submits it.
* Review: the queue a manager works through; decisions need the order's ETag (`If-Match`),
  so that nobody decides on an order that changed since they looked at it.
* Fulfilment: progress of items and orders reported by fulfilment systems.
* History: the order's events with their actors, hashes and the state after each.

The domain enforces roles and states (403 / 409 come from there). Every write returns only
once the read models have reached it (`ctx.sync()`), so the next read sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from serviceorders.api.common import (
    QueryInt,
    base_url,
    body_of,
    check_if_match,
    clamp_page,
    command_context,
    ctx_of,
    etag,
    parse_uuid,
    read_body,
    request_body,
)
from serviceorders.api.docs import body_schema
from serviceorders.api.errors import ApiError
from serviceorders.api.service_orders import document_response
from serviceorders.domain.errors import ConcurrencyConflict, OrderNotFound, ValidationFailed
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import (
    Actor,
    DateOrDateTime,
    ItemAction,
    ItemState,
    OrderHeader,
    OrderItem,
    OrderState,
    Party,
    Place,
    Problem,
    SpecRef,
)
from serviceorders.projections.queries import MAX_LIMIT, QueueFilter

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])

MAX_TEXT = 4000
_ERRORS = {
    400: {"description": "Invalid body or command (TMF Error, every problem listed)"},
    401: {"description": "No or unknown API key"},
    403: {"description": "The role may not do this (or four-eyes)"},
    404: {"description": "No such order, draft or item"},
    409: {"description": "Not allowed in the order's state, or a concurrent change"},
    412: {"description": "If-Match does not match the order's ETag"},
    415: {"description": "The body is not application/json"},
}
_DECISION_ERRORS = {**_ERRORS, 428: {"description": "If-Match is missing: send the ETag"}}


# ------------------------------------------------------------------------ bodies
class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Text = Field(min_length=1, max_length=MAX_TEXT)
OptionalText = Field(default=None, max_length=MAX_TEXT)


class CustomerIn(Body):
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=500)


class DraftCreate(Body):
    external_id: str | None = Field(default=None, alias="externalId", min_length=1, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    priority: str | None = Field(default=None, max_length=50)
    description: str | None = OptionalText
    requested_start_date: DateOrDateTime | None = Field(default=None, alias="requestedStartDate")
    requested_completion_date: DateOrDateTime | None = Field(
        default=None, alias="requestedCompletionDate"
    )
    notification_contact: str | None = Field(
        default=None, alias="notificationContact", max_length=500
    )
    customer: CustomerIn | None = None

    @field_validator("requested_start_date", "requested_completion_date")
    @classmethod
    def _aware(cls, value: datetime | date | None) -> datetime | date | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("a date-time needs a timezone (e.g. Z or +01:00)")
        return value

    def header(self) -> OrderHeader:
        parties = (
            (Party(id=self.customer.id, name=self.customer.name, role="customer"),)
            if self.customer
            else ()
        )
        return OrderHeader(
            external_id=self.external_id,
            category=self.category,
            priority=self.priority,
            description=self.description,
            requested_start_date=self.requested_start_date,
            requested_completion_date=self.requested_completion_date,
            notification_contact=self.notification_contact,
            related_parties=parties,
        )


class PlaceIn(Body):
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=500)

    def domain(self) -> Place:
        return Place(id=self.id, name=self.name)


CharacteristicName = Annotated[str, Field(max_length=200)]
Characteristics = dict[
    CharacteristicName, Annotated[str, Field(max_length=MAX_TEXT)] | int | float | bool | None
]
ItemId = Annotated[str, Field(max_length=100)]
DependsOn = list[ItemId]  # item ids


class ItemCreate(Body):
    id: str = Field(min_length=1, max_length=100)
    action: ItemAction = ItemAction.ADD
    specification_id: str | None = Field(
        default=None, alias="specificationId", min_length=1, max_length=200
    )
    service_id: str | None = Field(default=None, alias="serviceId", max_length=200)
    service_name: str | None = Field(default=None, alias="serviceName", max_length=500)
    characteristics: Characteristics = Field(default_factory=dict, max_length=500)
    place: PlaceIn | None = None
    quantity: int = Field(default=1, ge=1, le=100000)
    depends_on: DependsOn = Field(default_factory=list, alias="dependsOn", max_length=100)

    def domain(self) -> OrderItem:
        return OrderItem(
            id=self.id,
            action=self.action,
            specification=SpecRef(id=self.specification_id) if self.specification_id else None,
            service_id=self.service_id,
            service_name=self.service_name,
            characteristics=dict(self.characteristics),
            place=self.place.domain() if self.place else None,
            quantity=self.quantity,
            depends_on=tuple(self.depends_on),
        )


class ItemChange(Body):
    characteristics: Characteristics | None = Field(default=None, max_length=500)
    clear: list[CharacteristicName] = Field(default_factory=list, max_length=500)
    place: PlaceIn | None = None
    quantity: int | None = Field(default=None, ge=1, le=100000)
    depends_on: DependsOn | None = Field(default=None, alias="dependsOn", max_length=100)


class NoteBody(Body):
    note: str | None = OptionalText


class ReasonBody(Body):
    reason: str = Text


class OptionalReasonBody(Body):
    reason: str | None = OptionalText


class InformationBody(Body):
    information: str = Text


class TextBody(Body):
    text: str = Text


class ItemStateBody(Body):
    state: ItemState
    reason: str | None = OptionalText


def optional_body_as(request: Request, model: type[Body]) -> Any:
    """Like `body_as`, but an empty body (no content) means every field at its default."""
    if not request_body(request).strip():
        return model()
    return body_of(request, model)


# --------------------------------------------------------------------- views
def _time(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def _actor(actor: Actor | None) -> dict[str, str] | None:
    return {"id": actor.id, "role": actor.role.value} if actor else None


def problem_view(problem: Problem) -> dict[str, Any]:
    return {
        "code": problem.code,
        "message": problem.message,
        "itemId": problem.item_id,
        "characteristic": problem.characteristic,
        "structural": problem.structural,
    }


def item_view(item: OrderItem) -> dict[str, Any]:
    spec = item.specification
    return {
        "id": item.id,
        "action": item.action.value,
        "specificationId": spec.id if spec else None,
        "specificationName": spec.name if spec else None,
        "specificationVersion": spec.version if spec else None,
        "serviceId": item.service_id,
        "serviceName": item.service_name,
        "characteristics": item.characteristics,
        "place": {"id": item.place.id, "name": item.place.name} if item.place else None,
        "quantity": item.quantity,
        "dependsOn": list(item.depends_on),
        "state": item.state.value if item.state else None,
    }


def order_view(request: Request, order: ServiceOrder) -> dict[str, Any]:
    """The order as the domain holds it: drafts included, with flags and workflow facts."""
    header = order.header
    customer = header.customer
    return {
        "id": str(order.id),
        "href": f"{base_url(request)}/api/v1/orders/{order.id}",
        "version": order.version,
        "state": order.state.value,
        "stateSince": _time(order.state_since),
        "externalId": header.external_id,
        "category": header.category,
        "priority": header.priority,
        "description": header.description,
        "requestedStartDate": _time(header.requested_start_date),
        "requestedCompletionDate": _time(header.requested_completion_date),
        "notificationContact": header.notification_contact,
        "customer": {"id": customer.id, "name": customer.name} if customer else None,
        "relatedParty": [
            {"id": p.id, "name": p.name, "role": p.role} for p in header.related_parties
        ],
        "items": [item_view(i) for i in order.items.values()],
        "flags": [problem_view(p) for p in order.flags],
        "notes": [{"text": n.text, "author": n.author, "date": _time(n.date)} for n in order.notes],
        "createdAt": _time(order.created_on),
        "submittedBy": _actor(order.submitted_by),
        "submittedAt": _time(order.submitted_at),
        "decidedBy": _actor(order.decided_by),
        "decidedAt": _time(order.decided_at),
        "rejectionReason": order.rejection_reason,
        "waitingReason": order.waiting_reason,
        "priorState": order.prior_state.value if order.prior_state else None,
        "cancellation": (
            {
                "requestId": order.cancellation_request_id,
                "reason": order.cancellation_reason,
                "requestedBy": _actor(order.cancellation_requested_by),
            }
            if order.cancellation_request_id
            else None
        ),
        "pointOfNoReturn": order.point_of_no_return,
        "deleted": order.deleted,
        "revision": order.revision,
        "headHash": order.head_hash,
    }


def view_response(request: Request, order: ServiceOrder, status: int = 200) -> JSONResponse:
    return JSONResponse(
        order_view(request, order), status_code=status, headers={"ETag": etag(order.version)}
    )


# ------------------------------------------------------------------ plumbing
def load(request: Request, order_id: UUID, what: str = "order") -> ServiceOrder:
    try:
        return ctx_of(request).app.get_order(order_id)
    except OrderNotFound:
        raise ApiError(404, "not_found", "Not Found", f"no {what} {order_id}") from None


def load_draft(request: Request, draft_id: str) -> ServiceOrder:
    order = load(request, parse_uuid(draft_id, "draft"), "draft")
    if order.state is not OrderState.DRAFT or order.deleted:
        raise ApiError(
            404,
            "not_found",
            "Not Found",
            f"no draft {draft_id} (a submitted order is at /api/v1/orders/{{id}})",
        )
    return order


def require_if_match(request: Request, version: int) -> None:
    """Decisions need the ETag the decider saw: 428 without one, 412 when it is stale."""
    wanted = (request.headers.get("if-match") or "").strip()
    if not wanted or wanted == "*":
        raise ApiError(
            428,
            "precondition_required",
            "Precondition Required",
            f"a decision needs 'If-Match: {etag(version)}' (the ETag of the order "
            "as you reviewed it); '*' is not accepted",
        )
    if "," in wanted:
        # A list matches if any of its ETags does: a decision must name the one version
        # its decider reviewed (a list of every version would defeat the rule, as '*').
        raise ApiError(
            400,
            "invalid_if_match",
            "Bad Request",
            f"a decision takes exactly one ETag in If-Match, not a list: send "
            f"'If-Match: {etag(version)}' if that is the version you reviewed",
        )
    check_if_match(request, version)


def execute(
    request: Request, order: ServiceOrder, command: Callable[[ServiceOrder], Any]
) -> ServiceOrder:
    """Run one domain command on the order as loaded (and checked against If-Match) and save:
    if anyone wrote in between, the store refuses the save (409), so a checked ETag holds."""
    ctx = ctx_of(request)
    command(order)
    try:
        ctx.app.save(order)
    except IntegrityError as e:
        raise ConcurrencyConflict(order.id, "reload the order and try again") from e
    ctx.sync()
    return order


def order_response(request: Request, order: ServiceOrder) -> JSONResponse:
    """The order's TMF641 document (with its ETag); a draft has none: its domain view."""
    if order.state is OrderState.DRAFT:
        return view_response(request, order)
    return document_response(request, order.id, 200)


# ------------------------------------------------------------------- capture
@router.post(
    "/drafts",
    status_code=201,
    summary="Start a draft order",
    description="An agent starts capturing an order by hand: the header only "
    "(externalId, category, priority, description, requested dates, "
    "notificationContact, customer {id, name}); items follow one by one. "
    "Returns {id, version, state: draft} with the draft's ETag and "
    "Location. An externalId already taken is a 409.",
    responses=_ERRORS,
    openapi_extra=body_schema(DraftCreate),
)
def create_draft(request: Request) -> JSONResponse:
    ctx = ctx_of(request)
    cmd = command_context(request)
    body = body_of(request, DraftCreate)
    order_id = ctx.app.draft_order(cmd, body.header())
    ctx.sync()
    order = load(request, order_id)
    return JSONResponse(
        {
            "id": str(order_id),
            "version": order.version,
            "state": order.state.value,
            "href": f"{base_url(request)}/api/v1/drafts/{order_id}",
        },
        status_code=201,
        headers={
            "ETag": etag(order.version),
            "Location": f"{base_url(request)}/api/v1/drafts/{order_id}",
        },
    )


@router.get(
    "/drafts/{id}",
    summary="Retrieve a draft with its items",
    description="The draft as captured so far (items, characteristics, sites), with "
    "its ETag. 404 once it is submitted or discarded: a submitted order "
    "is at /api/v1/orders/{id}.",
    responses=_ERRORS,
)
def retrieve_draft(request: Request, id: str) -> JSONResponse:
    command_context(request)
    return view_response(request, load_draft(request, id))


@router.post(
    "/drafts/{id}/items",
    status_code=201,
    summary="Add an item to a draft",
    description="Body: id (unique in the order), action (add, modify, delete, "
    "noChange), specificationId, serviceId (for modify / delete / "
    "noChange), characteristics {name: value}, place {id, name}, "
    "quantity, dependsOn [item ids]. Problems do not refuse an item: "
    "see /validation. Returns the draft (If-Match optional).",
    responses=_ERRORS,
    openapi_extra=body_schema(ItemCreate),
)
def add_item(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ItemCreate)
    order = load(request, parse_uuid(id, "draft"), "draft")
    check_if_match(request, order.version)
    app = ctx_of(request).app
    [item], _ = app.protect_change(order, [body.domain()])  # personal values sealed
    execute(request, order, lambda o: o.add_line(cmd, item, app.catalog))
    return view_response(request, app.unseal(order), 201)


@router.patch(
    "/drafts/{id}/items/{itemId}",
    summary="Configure an item of a draft",
    description="Body: characteristics {name: value} to set, clear [names] to "
    "remove, place {id, name}, quantity, dependsOn [item ids] (replaces "
    "the list). Returns the draft (If-Match optional).",
    responses=_ERRORS,
    openapi_extra=body_schema(ItemChange),
)
def configure_item(request: Request, id: str, itemId: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ItemChange)
    order = load(request, parse_uuid(id, "draft"), "draft")
    check_if_match(request, order.version)
    app = ctx_of(request).app
    place = app.protect_place(order, body.place.domain() if body.place else None)
    execute(
        request,
        order,
        lambda o: o.configure_line(
            cmd, itemId, body.characteristics, body.clear, place, body.quantity, body.depends_on
        ),
    )
    return view_response(request, app.unseal(order))


@router.delete(
    "/drafts/{id}/items/{itemId}",
    summary="Remove an item from a draft",
    description="Returns the draft (If-Match optional).",
    responses=_ERRORS,
)
def remove_item(request: Request, id: str, itemId: str) -> JSONResponse:
    cmd = command_context(request)
    order = load(request, parse_uuid(id, "draft"), "draft")
    check_if_match(request, order.version)
    execute(request, order, lambda o: o.remove_line(cmd, itemId))
    return view_response(request, order)


@router.get(
    "/drafts/{id}/validation",
    summary="Every problem of a draft, at once",
    description="Validates the order as it stands against the catalog: "
    "{problems: [{code, message, itemId, characteristic, structural}], "
    "refuses}. Structural problems refuse the submission; the others "
    "only flag the order for the reviewer.",
    responses=_ERRORS,
)
def validate_draft(request: Request, id: str) -> JSONResponse:
    command_context(request)
    order = load(request, parse_uuid(id, "draft"), "draft")
    problems = order.validate(ctx_of(request).app.catalog)
    return JSONResponse(
        {
            "id": str(order.id),
            "version": order.version,
            "problems": [problem_view(p) for p in problems],
            "refuses": any(p.structural for p in problems),
        },
        headers={"ETag": etag(order.version)},
    )


@router.post(
    "/drafts/{id}/submit",
    summary="Submit a draft into review",
    description="400 listing every structural problem (`details`); otherwise the "
    "order is `acknowledged` (value problems become reviewer flags) and "
    "the answer is its TMF641 ServiceOrder with its ETag. If-Match "
    "optional.",
    responses=_ERRORS,
)
def submit_draft(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    order = load(request, parse_uuid(id, "draft"), "draft")
    check_if_match(request, order.version)
    app = ctx_of(request).app
    try:
        execute(request, order, lambda o: o.submit(cmd, app.catalog))
    except ValidationFailed as e:  # every problem, in the shape /validation uses
        raise ApiError(
            400, e.code, "Bad Request", str(e), details=[problem_view(p) for p in e.problems]
        ) from None
    return document_response(request, order.id, 200)


@router.delete(
    "/drafts/{id}",
    status_code=204,
    summary="Discard a draft",
    description="The draft is marked deleted; its history stays for auditors. "
    "Only drafts: a submitted order is cancelled or archived instead "
    "(409). If-Match optional.",
    responses=_ERRORS,
)
def discard_draft(request: Request, id: str) -> Response:
    ctx = ctx_of(request)
    cmd = command_context(request)
    order_id = parse_uuid(id, "draft")
    order = load(request, order_id, "draft")
    check_if_match(request, order.version)
    if order.state is not OrderState.DRAFT:
        raise ApiError(
            409,
            "illegal_transition",
            "Conflict",
            f"order {order_id} is {order.state}, not a draft: cancel or archive it",
        )
    ctx.app.delete(cmd, order_id, "draft discarded")
    ctx.sync()
    return Response(status_code=204)


# -------------------------------------------------------------------- review
def queue_entry(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "orderId": str(row["order_id"]),
        "href": f"{base_url(request)}/api/v1/orders/{row['order_id']}",
        "kind": row["kind"],
        "externalId": row["external_id"],
        "priority": row["priority"],
        "submittedAt": _time(row["submitted_at"]),
        "submittedBy": row["submitted_by"],
        "customerId": row["customer_id"],
        "customerName": row["customer_name"],
        "sites": row["sites"],
        "specifications": row["specifications"],
        "itemActions": row["item_actions"],
        "itemCount": row["item_count"],
        "flags": row["flags"],
        "flagCount": row["flag_count"],
        "reason": row["reason"],
        "version": row["version"],
        "etag": etag(row["version"]),
        "ageSeconds": row["age_seconds"],
    }


@router.get(
    "/reviewQueue",
    summary="The review queue",
    description="What awaits a manager: orders to approve (kind=approval) and "
    "cancellation requests to decide (kind=cancellation); highest "
    "priority first, then oldest. Filters: kind, site, customer, priority, "
    "specification, olderThan / youngerThan (seconds since submission or "
    "request). offset / limit are clamped to 0..1000. Each entry has "
    "ageSeconds and the order's version / ETag for the decision's "
    "If-Match. X-Total-Count and X-Result-Count headers.",
    responses={400: _ERRORS[400], 401: _ERRORS[401]},
)
def review_queue(
    request: Request,
    kind: str | None = None,
    site: str | None = None,
    customer: str | None = None,
    priority: str | None = None,
    specification: str | None = None,
    olderThan: float | None = Query(None, ge=0, le=10**9),
    youngerThan: float | None = Query(None, ge=0, le=10**9),
    offset: QueryInt = 0,
    limit: QueryInt = 100,
) -> JSONResponse:
    command_context(request)
    where = QueueFilter(
        kind=kind,
        site=site,
        customer=customer,
        priority=priority,
        specification=specification,
        older_than=timedelta(seconds=olderThan) if olderThan is not None else None,
        younger_than=timedelta(seconds=youngerThan) if youngerThan is not None else None,
    )
    with ctx_of(request).read() as models:
        offset, limit = clamp_page(offset, limit, MAX_LIMIT)
        page = models.review_queue(where, offset=offset, limit=limit)
    body = [queue_entry(request, row) for row in page.items]
    return JSONResponse(
        body, headers={"X-Total-Count": str(page.total), "X-Result-Count": str(len(body))}
    )


def _decide(request: Request, id: str, command: Callable[[ServiceOrder], Any]) -> JSONResponse:
    order = load(request, parse_uuid(id))
    require_if_match(request, order.version)
    return order_response(request, execute(request, order, command))


@router.post(
    "/orders/{id}/approve",
    summary="Approve an order (start it)",
    description="acknowledged → inProgress. Body {note?}. Requires If-Match with the "
    "order's ETag (428 without, 412 when the order changed). Four-eyes: "
    "the submitter may not decide (403). Returns the TMF641 order and "
    "its new ETag.",
    responses=_DECISION_ERRORS,
    openapi_extra=body_schema(NoteBody, required=False),
)
def approve(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = optional_body_as(request, NoteBody)
    four_eyes = ctx_of(request).app.four_eyes
    return _decide(request, id, lambda o: o.approve(cmd, body.note, four_eyes=four_eyes))


@router.post(
    "/orders/{id}/reject",
    summary="Reject an order",
    description="acknowledged → rejected. Body {reason} (required: 400 without). "
    "Requires If-Match (428 / 412); four-eyes applies.",
    responses=_DECISION_ERRORS,
    openapi_extra=body_schema(ReasonBody),
)
def reject(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ReasonBody)
    four_eyes = ctx_of(request).app.four_eyes
    return _decide(request, id, lambda o: o.reject(cmd, body.reason, four_eyes=four_eyes))


@router.post(
    "/orders/{id}/cancellation/approve",
    summary="Approve a cancellation request",
    description="assessingCancellation → pendingCancellation; fulfilment then "
    "carries it out (/cancel). Body {note?}. Requires If-Match (428 / "
    "412).",
    responses=_DECISION_ERRORS,
    openapi_extra=body_schema(NoteBody, required=False),
)
def approve_cancellation(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = optional_body_as(request, NoteBody)
    return _decide(request, id, lambda o: o.approve_cancellation(cmd, body.note))


@router.post(
    "/orders/{id}/cancellation/deny",
    summary="Deny a cancellation request",
    description="The order returns to the state it had before the request. Body "
    "{reason} (required). Requires If-Match (428 / 412).",
    responses=_DECISION_ERRORS,
    openapi_extra=body_schema(ReasonBody),
)
def deny_cancellation(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ReasonBody)
    return _decide(request, id, lambda o: o.deny_cancellation(cmd, body.reason))


# ---------------------------------------------------------------- fulfilment
def _act(request: Request, id: str, command: Callable[[ServiceOrder], Any]) -> JSONResponse:
    order = load(request, parse_uuid(id))
    check_if_match(request, order.version)  # optional here
    return order_response(request, execute(request, order, command))


_FULFIL = " Returns the TMF641 order and its ETag; If-Match optional (412 when stale)."


@router.post(
    "/orders/{id}/items/{itemId}/state",
    summary="Report an item's state",
    description="Body {state, reason?}: acknowledged → inProgress / pending / held / "
    "completed / failed / cancelled as docs/lifecycle.md allows; an item "
    "starts or completes only once the items it depends on are completed. "
    "The last final item settles the order (completed, failed, partial, "
    "cancelled). Only while the order is inProgress." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(ItemStateBody),
)
def item_state(request: Request, id: str, itemId: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ItemStateBody)
    return _act(request, id, lambda o: o.change_item_state(cmd, itemId, body.state, body.reason))


@router.post(
    "/orders/{id}/hold",
    summary="Hold an order (blocked by an issue)",
    description="inProgress → held. Body {reason} (required)." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(ReasonBody),
)
def hold(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, ReasonBody)
    return _act(request, id, lambda o: o.hold(cmd, body.reason))


@router.post(
    "/orders/{id}/resume",
    summary="Resume a held order (issue resolved)",
    description="held → inProgress. Body {note?} (may be empty)." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(NoteBody, required=False),
)
def resume(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = optional_body_as(request, NoteBody)
    return _act(request, id, lambda o: o.resume(cmd, body.note))


@router.post(
    "/orders/{id}/informationRequest",
    summary="Ask the requester for information",
    description="inProgress → pending. Body {information} (what is needed)." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(InformationBody),
)
def request_information(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, InformationBody)
    return _act(request, id, lambda o: o.request_information(cmd, body.information))


@router.post(
    "/orders/{id}/information",
    summary="Provide the information asked for",
    description="pending → inProgress. Body {information}." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(InformationBody),
)
def provide_information(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, InformationBody)
    return _act(request, id, lambda o: o.provide_information(cmd, body.information))


@router.post(
    "/orders/{id}/pointOfNoReturn",
    summary="Record the point of no return",
    description="Once (inProgress, pending or held): from then on the order can no "
    "longer be revised or cancelled. Body {note?}." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(NoteBody, required=False),
)
def point_of_no_return(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = optional_body_as(request, NoteBody)
    return _act(request, id, lambda o: o.reach_point_of_no_return(cmd, body.note))


@router.post(
    "/orders/{id}/cancel",
    summary="Cancel an order",
    description="Directly (acknowledged, inProgress, pending, held), or to carry out "
    "an approved cancellation (pendingCancellation) → cancelled. Body "
    "{reason?}." + _FULFIL,
    responses=_ERRORS,
    openapi_extra=body_schema(OptionalReasonBody, required=False),
)
def cancel(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = optional_body_as(request, OptionalReasonBody)
    return _act(request, id, lambda o: o.cancel(cmd, body.reason))


@router.post(
    "/orders/{id}/notes",
    summary="Add a note to an order",
    description="Any state, drafts and final orders included. Body {text}. Returns "
    "the TMF641 order (a draft: its domain view) and its ETag.",
    responses=_ERRORS,
    openapi_extra=body_schema(TextBody),
)
def add_note(request: Request, id: str) -> JSONResponse:
    cmd = command_context(request)
    body = body_of(request, TextBody)
    return _act(request, id, lambda o: o.add_note(cmd, body.text))


# ------------------------------------------------------------------- history
_ENVELOPE = {
    "timestamp",
    "actor",
    "source",
    "correlation_id",
    "causation_id",
    "prev_hash",
    "hash",
    "class_version",
    "originator_topic",
}


def _source(source: Any) -> dict[str, Any]:
    names = {"request_id": "requestId", "event_id": "eventId"}
    return {names.get(k, k): v for k, v in source.model_dump(mode="json").items() if v is not None}


@router.get(
    "/orders/{id}/events",
    summary="The order's history",
    description="Every stored event, oldest first: {version, type, timestamp, actor "
    "{id, role}, source, correlationId, causationId, stateAfter, hash, "
    "prevHash, data}. stateAfter is the order's state after the event "
    "(replayed); hash / prevHash chain the events (docs/architecture.md). "
    "Deleted orders and drafts included.",
    responses=_ERRORS,
)
def order_events(request: Request, id: str) -> JSONResponse:
    command_context(request)
    order_id = parse_uuid(id)
    try:
        history = ctx_of(request).app.history(order_id)
    except OrderNotFound:
        raise ApiError(404, "not_found", "Not Found", f"no order {order_id}") from None
    body, order = [], None
    for event in history:
        order = event.mutate(order)
        state = event.stored_state()
        body.append(
            {
                "version": event.originator_version,
                "type": type(event).__name__,
                "timestamp": _time(event.timestamp),
                "actor": _actor(event.actor),
                "source": _source(event.source),
                "correlationId": event.correlation_id,
                "causationId": event.causation_id,
                "stateAfter": order.state.value if order is not None else None,
                "hash": event.hash,
                "prevHash": event.prev_hash,
                "data": {k: v for k, v in state.items() if k not in _ENVELOPE},
            }
        )
    headers = {"ETag": etag(history[-1].originator_version), "X-Total-Count": str(len(body))}
    return JSONResponse(body, headers=headers)


@router.get(
    "/orders/{id}",
    summary="The order as the domain holds it",
    description="Any order, drafts and deleted ones included: header, items with their "
    "states, reviewer flags, notes, who submitted / decided, waiting and "
    "cancellation facts, point of no return, version (also the ETag, for "
    "decisions' If-Match).",
    responses=_ERRORS,
)
def retrieve_order(request: Request, id: str) -> JSONResponse:
    command_context(request)
    return view_response(request, load(request, parse_uuid(id)))

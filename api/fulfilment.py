"""/api/v1 fulfilment: the progress of items and orders that fulfilment systems report
(item states, hold / resume, information asked and given, the point of no return, the
cancellation), and notes. Each is one command through `ServiceOrders.handle` (api/common.py
`handle`); If-Match is optional (412 when stale)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from serviceorders.api.actions import Action, add_actions
from serviceorders.api.bodies import (
    InformationBody,
    ItemStateBody,
    NoteBody,
    OptionalReasonBody,
    ReasonBody,
    TextBody,
)
from serviceorders.api.common import (
    body_of,
    command_context,
    expected_version,
    handle,
    parse_uuid,
    read_body,
)
from serviceorders.api.docs import V1_ERRORS, body_schema
from serviceorders.api.views import order_response
from serviceorders.domain.commands import (
    AddNote,
    Cancel,
    ChangeItemStates,
    Hold,
    OrderCommand,
    ProvideInformation,
    ReachPointOfNoReturn,
    RequestInformation,
    Resume,
)

router = APIRouter(prefix="/api/v1", tags=["workflow"], dependencies=[Depends(read_body)])

_FULFIL = " Returns the TMF641 order and its ETag; If-Match optional (412 when stale)."


def _act(request: Request, command: OrderCommand, _id: str = "") -> JSONResponse:
    return order_response(request, handle(request, command, expected_version(request)).order)


@router.post(
    "/orders/{id}/items/{itemId}/state",
    summary="Report an item's state",
    description="Body {state, reason?}: acknowledged → inProgress / pending / held / "
    "completed / failed / cancelled as docs/lifecycle.md allows; an item "
    "starts or completes only once the items it depends on are completed. "
    "The last final item settles the order (completed, failed, partial, "
    "cancelled). Only while the order is inProgress." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(ItemStateBody),
)
def item_state(request: Request, id: str, itemId: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, ItemStateBody)
    return _act(request, ChangeItemStates.one(parse_uuid(id), itemId, body.state, body.reason))


# The others act on the order as a whole (api/actions.py), in the docs' order: the route's
# name, its path below /orders/{id}/, the body, the command (the order id, the body's field).
ACTIONS = (
    Action("hold", "hold", ReasonBody, Hold),
    Action("resume", "resume", NoteBody, Resume),
    Action("request_information", "informationRequest", InformationBody, RequestInformation),
    Action("provide_information", "information", InformationBody, ProvideInformation),
    Action("point_of_no_return", "pointOfNoReturn", NoteBody, ReachPointOfNoReturn),
    Action("cancel", "cancel", OptionalReasonBody, Cancel),
    Action("add_note", "notes", TextBody, AddNote),
)
# Their summary and description in /docs.
DOCS = {
    "hold": (
        "Hold an order (blocked by an issue)",
        "inProgress → held. Body {reason} (required)." + _FULFIL,
    ),
    "resume": (
        "Resume a held order (issue resolved)",
        "held → inProgress. Body {note?} (may be empty)." + _FULFIL,
    ),
    "request_information": (
        "Ask the requester for information",
        "inProgress → pending. Body {information} (what is needed)." + _FULFIL,
    ),
    "provide_information": (
        "Provide the information asked for",
        "pending → inProgress. Body {information}." + _FULFIL,
    ),
    "point_of_no_return": (
        "Record the point of no return",
        "Once (inProgress, pending or held): from then on the order can no "
        "longer be revised or cancelled. Body {note?}." + _FULFIL,
    ),
    "cancel": (
        "Cancel an order",
        "Carry out an approved cancellation (pendingCancellation → cancelled: "
        "fulfilment, a manager, an admin), or, directly, fulfilment's exit from held or "
        "pending (the order cannot be fulfilled; a manager's direct cancellation is a 403). "
        "Any other cancellation is requested (cancelServiceOrder) and decided by a second "
        "person; from acknowledged or inProgress a 409. Body {reason?}." + _FULFIL,
    ),
    "add_note": (
        "Add a note to an order",
        "Any state, drafts and final orders included. Body {text}. Returns "
        "the TMF641 order (a draft: its domain view) and its ETag.",
    ),
}
add_actions(router, ACTIONS, DOCS, _act, V1_ERRORS)

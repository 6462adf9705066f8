"""/api/v1 fulfilment: the progress of items and orders that fulfilment systems report
(item states, hold / resume, information asked and given, the point of no return, the
cancellation), and notes. Each is one command through `ServiceOrders.handle` (api/common.py
`handle`); If-Match is optional (412 when stale)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from serviceorders.api.bodies import (
    InformationBody,
    ItemStateBody,
    NoteBody,
    OptionalReasonBody,
    ReasonBody,
    TextBody,
    optional_body_as,
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


def _act(request: Request, command: OrderCommand) -> JSONResponse:
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


@router.post(
    "/orders/{id}/hold",
    summary="Hold an order (blocked by an issue)",
    description="inProgress → held. Body {reason} (required)." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(ReasonBody),
)
def hold(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, ReasonBody)
    return _act(request, Hold(parse_uuid(id), body.reason))


@router.post(
    "/orders/{id}/resume",
    summary="Resume a held order (issue resolved)",
    description="held → inProgress. Body {note?} (may be empty)." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(NoteBody, required=False),
)
def resume(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = optional_body_as(request, NoteBody)
    return _act(request, Resume(parse_uuid(id), body.note))


@router.post(
    "/orders/{id}/informationRequest",
    summary="Ask the requester for information",
    description="inProgress → pending. Body {information} (what is needed)." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(InformationBody),
)
def request_information(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, InformationBody)
    return _act(request, RequestInformation(parse_uuid(id), body.information))


@router.post(
    "/orders/{id}/information",
    summary="Provide the information asked for",
    description="pending → inProgress. Body {information}." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(InformationBody),
)
def provide_information(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, InformationBody)
    return _act(request, ProvideInformation(parse_uuid(id), body.information))


@router.post(
    "/orders/{id}/pointOfNoReturn",
    summary="Record the point of no return",
    description="Once (inProgress, pending or held): from then on the order can no "
    "longer be revised or cancelled. Body {note?}." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(NoteBody, required=False),
)
def point_of_no_return(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = optional_body_as(request, NoteBody)
    return _act(request, ReachPointOfNoReturn(parse_uuid(id), body.note))


@router.post(
    "/orders/{id}/cancel",
    summary="Cancel an order",
    description="Directly (acknowledged, inProgress, pending, held), or to carry out "
    "an approved cancellation (pendingCancellation) → cancelled. Body "
    "{reason?}." + _FULFIL,
    responses=V1_ERRORS,
    openapi_extra=body_schema(OptionalReasonBody, required=False),
)
def cancel(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = optional_body_as(request, OptionalReasonBody)
    return _act(request, Cancel(parse_uuid(id), body.reason))


@router.post(
    "/orders/{id}/notes",
    summary="Add a note to an order",
    description="Any state, drafts and final orders included. Body {text}. Returns "
    "the TMF641 order (a draft: its domain view) and its ETag.",
    responses=V1_ERRORS,
    openapi_extra=body_schema(TextBody),
)
def add_note(request: Request, id: str) -> JSONResponse:
    command_context(request)
    body = body_of(request, TextBody)
    return _act(request, AddNote(parse_uuid(id), body.text))

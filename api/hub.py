"""TMF641 `hub`: listeners registered for notifications delivered from the event log.

* `POST {BASE}/hub` registers a listener (`EventSubscriptionInput`: `callback`, optional
  `query`) -> 201 `EventSubscription`; `GET {BASE}/hub/{id}` reads it back;
  `DELETE {BASE}/hub/{id}` unregisters it -> 204.
* `GET /api/v1/hub` (admin) shows every listener's delivery health;
  `POST /api/v1/hub/{id}/resume` (admin) resumes a suspended one.

Notifications themselves come from the `notification_outbox` projection and are POSTed by
the delivery worker (`notifications/delivery.py`); see docs/notifications.md.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from serviceorders.api.common import actor_of, base_url, body_as, ctx_of
from serviceorders.api.docs import body_schema
from serviceorders.api.errors import ApiError
from serviceorders.domain.values import Actor, Role
from serviceorders.notifications.callbacks import check_callback
from serviceorders.notifications.filters import Filter, QueryError
from serviceorders.notifications.store import HubStore
from serviceorders.support.hosts import AllowList, CallbackError
from serviceorders.support.isotime import iso_or_none
from serviceorders.tmf.tmf641 import BASE_PATH
from starlette.concurrency import run_in_threadpool

# No prefix here: the TMF641 hub lives under BASE_PATH, the operator view under /api/v1.
router = APIRouter()
TMF: list[str | Enum] = ["TMF641 hub"]
ADMIN: list[str | Enum] = ["hub administration"]


class EventSubscriptionInput(BaseModel):
    """TMF641 v4 `EventSubscriptionInput`."""

    model_config = ConfigDict(extra="ignore")

    callback: str = Field(min_length=1, max_length=2000)
    query: str | None = Field(default=None, max_length=1000)


def _hub_href(request: Request, sub_id: str) -> str:
    return f"{base_url(request)}{BASE_PATH}/hub/{sub_id}"


def present(sub: dict[str, Any]) -> dict[str, Any]:
    """TMF641 `EventSubscription`."""
    body: dict[str, Any] = {"id": sub["id"], "callback": sub["callback"]}
    if sub["query"] is not None:
        body["query"] = sub["query"]
    return body


def _not_found(sub_id: str) -> ApiError:
    return ApiError(404, "not_found", "Not Found", f"no hub subscription {sub_id}")


# Who may use the hub (docs/security.md): upstream systems (integrator keys), managers and
# admins; other roles get 403.
HUB_ROLES = frozenset({Role.UPSTREAM, Role.MANAGER, Role.OPERATOR})


def _hub_actor(request: Request) -> Actor:
    actor = actor_of(request)  # authenticates
    if actor.role not in HUB_ROLES:
        raise ApiError(
            403,
            "forbidden",
            "Forbidden",
            f"{actor.id} ({actor.role}) may not use the hub: integrator, manager or admin only",
        )
    return actor


def _visible_to(sub: dict[str, Any] | None, actor: Actor) -> bool:
    """A listener is seen (and removed) by whoever registered it, and by admins."""
    return (
        sub is not None
        and sub["state"] != "deleted"
        and (actor.role is Role.OPERATOR or sub["actor"] == actor.id)
    )


@router.post(
    f"{BASE_PATH}/hub",
    status_code=201,
    tags=TMF,
    summary="Register a listener (EventSubscription)",
    description="`callback` is the listener's base URL: each notification is POSTed "
    "to `{callback}/listener/{eventName}` (e.g. `.../listener/"
    "serviceOrderStateChangeEvent`). With SERVICEORDERS_HUB_ALLOWED_"
    "HOSTS empty (the default) only public addresses are called: "
    "loopback, private, link-local and the like are refused (400 "
    "`callback_not_allowed`) unless the list names them; host names "
    "are checked strictly and resolved (and checked again) at each "
    "delivery. The callback is stored in its canonical form. `query` "
    "filters: `eventType=A,B&state=completed` (see "
    "docs/notifications.md). The listener receives the notifications of "
    "events recorded after its registration, at least once, in order per "
    "order. Integrator, manager and admin keys only.",
    openapi_extra=body_schema(EventSubscriptionInput),
)
async def register_listener(request: Request) -> JSONResponse:
    actor = _hub_actor(request)
    body = await body_as(request, EventSubscriptionInput)
    ctx = ctx_of(request)
    try:
        callback = check_callback(body.callback, AllowList.parse(ctx.settings.hub_allowed_hosts))
    except CallbackError as e:
        raise ApiError(400, e.code, "Bad Request", str(e)) from None
    query = body.query.strip() if body.query and body.query.strip() else None
    try:
        Filter.parse(query)
    except QueryError as e:
        raise ApiError(400, "invalid_query", "Bad Request", str(e)) from None

    def register() -> dict[str, Any]:
        with ctx.read() as models:
            return HubStore(models.db).register(callback, query, actor.id)

    sub = await run_in_threadpool(register)
    return JSONResponse(
        present(sub), status_code=201, headers={"Location": _hub_href(request, sub["id"])}
    )


@router.get(f"{BASE_PATH}/hub/{{id}}", tags=TMF, summary="Retrieve a listener")
def retrieve_listener(request: Request, id: str) -> JSONResponse:
    actor = _hub_actor(request)
    with ctx_of(request).read() as models:
        sub = HubStore(models.db).get(id)
    if not _visible_to(sub, actor):
        raise _not_found(id)
    assert sub is not None
    return JSONResponse(present(sub))


@router.delete(
    f"{BASE_PATH}/hub/{{id}}",
    status_code=204,
    tags=TMF,
    summary="Unregister a listener",
    description="Deliveries stop; notifications still queued for it are dropped "
    "with it. 404 for an unknown (or already removed) listener, and for "
    "one registered by another caller (admins may remove any).",
)
def unregister_listener(request: Request, id: str) -> Response:
    actor = _hub_actor(request)
    with ctx_of(request).read() as models:
        store = HubStore(models.db)
        if not _visible_to(store.get(id), actor) or not store.delete(id):
            raise _not_found(id)
    return Response(status_code=204)


# ------------------------------------------------------------ operator view
def _require_admin(request: Request) -> None:
    actor = actor_of(request)
    if actor.role is not Role.OPERATOR:
        raise ApiError(
            403,
            "forbidden",
            "Forbidden",
            f"{actor.id} ({actor.role}) may not administer the hub: admin only",
        )


def _admin_view(request: Request, sub: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": sub["id"],
        "href": _hub_href(request, sub["id"]),
        "callback": sub["callback"],
        "query": sub["query"],
        "actor": sub["actor"],
        "state": sub["state"],
        "createdAt": iso_or_none(sub["created_at"]),
        "pending": sub["pending"],
        "oldestPendingAt": iso_or_none(sub["oldest_pending_at"]),
        "delivered": sub["delivered"],
        "consecutiveFailures": sub["failures"],
        "failingSince": iso_or_none(sub["failing_since"]),
        "retryAt": iso_or_none(sub["retry_at"]),
        "lastError": sub["last_error"],
        "lastAttemptAt": iso_or_none(sub["last_attempt_at"]),
        "lastDeliveredAt": iso_or_none(sub["last_delivered_at"]),
        "suspendedAt": iso_or_none(sub["suspended_at"]),
        "deletedAt": iso_or_none(sub["deleted_at"]),
        "cursor": sub["cursor_position"],
    }


@router.get(
    "/api/v1/hub",
    tags=ADMIN,
    summary="Listeners and their delivery health (admin)",
    description="Every listener with its state (active, suspended; `all=true` adds "
    "deleted ones), pending notifications, consecutive failures and last "
    "error. A suspended listener keeps its backlog: resume it with "
    "`POST /api/v1/hub/{id}/resume` or `serviceorders hub resume ID`.",
)
def list_listeners(request: Request, all: bool = False) -> JSONResponse:
    _require_admin(request)
    with ctx_of(request).read() as models:
        subs = HubStore(models.db).list(include_deleted=all)
    return JSONResponse(
        [_admin_view(request, s) for s in subs], headers={"X-Total-Count": str(len(subs))}
    )


@router.post(
    "/api/v1/hub/{id}/resume",
    tags=ADMIN,
    summary="Resume a suspended listener (admin)",
    description="Its backlog becomes due at once and is delivered in "
    "order; failure counts start again from zero.",
)
def resume_listener(request: Request, id: str) -> JSONResponse:
    _require_admin(request)
    with ctx_of(request).read() as models:
        store = HubStore(models.db)
        resumed = store.resume(id)
        sub = store.get(id)
    if sub is None or (not resumed and sub["state"] == "deleted"):
        raise _not_found(id)
    return JSONResponse(_admin_view(request, sub))

"""/api/v1's actions on one order, as a table: each is a POST to `/orders/{id}/<path>`
whose body (a model of api/bodies.py; may be empty where every field has a default)
becomes one command for `ServiceOrders.handle`: the command class called with the order
id and the body's fields, in order (`Hold(order_id, body.reason)`). The routers
(fulfilment, review) list their actions, their /docs text (summary, description) by the
action's name, and how they answer (`Respond`: which If-Match they pass, what they
return)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from serviceorders.api.bodies import Body, optional_body_as
from serviceorders.api.common import body_of, command_context, parse_uuid
from serviceorders.api.docs import body_schema
from serviceorders.domain.commands import OrderCommand

# How a router answers an action: (request, the command, the order id as in the path).
Respond = Callable[[Request, OrderCommand, str], JSONResponse]


@dataclass(frozen=True)
class Action:
    """One POST `/orders/{id}/<path>`: `command(order id, *the body's fields)`."""

    name: str  # the route's name (the OpenAPI operationId's stem), the key of its docs
    path: str
    body: type[Body]
    command: Callable[..., OrderCommand]

    @property
    def body_required(self) -> bool:
        """False where every field of the body has a default: an empty body is then one."""
        return any(f.is_required() for f in self.body.model_fields.values())

    def parse(self, order_id: UUID, body: Body) -> OrderCommand:
        return self.command(order_id, *(getattr(body, f) for f in type(body).model_fields))


def add_actions(
    router: APIRouter,
    actions: Iterable[Action],
    docs: Mapping[str, tuple[str, str]],
    respond: Respond,
    responses: dict[int | str, dict[str, Any]],
) -> None:
    """A route on `router` for each action, in the table's order; `docs[name]` is its
    (summary, description)."""
    for action in actions:
        summary, description = docs[action.name]
        router.add_api_route(
            f"/orders/{{id}}/{action.path}",
            _endpoint(action, respond),
            methods=["POST"],
            name=action.name,
            summary=summary,
            description=description,
            responses=responses,
            openapi_extra=body_schema(action.body, required=action.body_required),
        )


def _endpoint(action: Action, respond: Respond) -> Callable[[Request, str], JSONResponse]:
    read = body_of if action.body_required else optional_body_as

    def endpoint(request: Request, id: str) -> JSONResponse:
        command_context(request)  # authenticates before the body is read
        body = read(request, action.body)
        return respond(request, action.parse(parse_uuid(id), body), id)

    endpoint.__name__ = action.name
    return endpoint

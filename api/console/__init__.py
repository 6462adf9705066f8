"""The web console for agents and managers, served by the API server under /console:
server-rendered pages (Jinja2) whose every action is a plain HTML form, parsed into a
domain command and handed to the application's one door, `ServiceOrders.handle`, as every
other door does (docs/console.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from serviceorders.api.common import read_body
from serviceorders.api.console import capture, orders, review, services, signin
from serviceorders.api.console.web import HERE, PREFIX, Refusal, begin, page

STATIC_PATH = PREFIX + "/static"

router = APIRouter(dependencies=[Depends(read_body)], include_in_schema=False)
for module in (signin, orders, review, capture, services):
    router.include_router(module.router)


@router.api_route(PREFIX + "/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
@page
def not_found(request: Request, rest: str) -> Response:
    if request.method == "GET":  # the page then shows who is signed in
        begin(request, signed_in=False)
    raise Refusal(404, "Not found", f"There is no console page at {request.url.path}.")


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")

"""The specification catalog, read-only, in TMF633 shape (as `serviceorders catalog --json`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from serviceorders.api.common import base_url, command_context, ctx_of, select_fields
from serviceorders.api.errors import ApiError
from serviceorders.tmf.tmf633 import catalog_to_tmf633, specification_to_tmf633

PATH = "/tmf-api/serviceCatalogManagement/v4/serviceSpecification"
router = APIRouter(tags=["TMF633 serviceSpecification (read-only)"])


@router.get(PATH, summary="List the service specifications")
def list_specifications(
    request: Request, fields: str | None = None, offset: int = 0, limit: int = 100
) -> JSONResponse:
    command_context(request)
    specs = catalog_to_tmf633(ctx_of(request).app.catalog)
    page = specs[max(0, offset) : max(0, offset) + max(0, min(limit, 1000))]
    body = [
        select_fields({**s, "href": f"{base_url(request)}{PATH}/{s['id']}"}, fields, ("id", "href"))
        for s in page
    ]
    return JSONResponse(
        body, headers={"X-Total-Count": str(len(specs)), "X-Result-Count": str(len(body))}
    )


@router.get(PATH + "/{id}", summary="Retrieve a service specification")
def retrieve_specification(request: Request, id: str) -> JSONResponse:
    command_context(request)
    spec = ctx_of(request).app.catalog.get(id)
    if spec is None:
        raise ApiError(404, "not_found", "Not Found", f"no service specification {id}")
    return JSONResponse(
        {**specification_to_tmf633(spec), "href": f"{base_url(request)}{PATH}/{id}"}
    )

"""The API's description: `/docs` (Swagger UI) and `/redoc` served without any outside
request, and the request bodies of `/openapi.json`.

* The pages' JavaScript, stylesheet and icon come from the installed `fastapi-offline`
  package (Swagger UI 5, which reads the OpenAPI 3.1 FastAPI writes, and ReDoc 2), mounted
  at `STATIC_PATH`; FastAPI's own pages (CDN scripts, a favicon from its site) are off.
* The handlers read and validate their bodies themselves (`common.body_of`), so that a bad
  body is a TMF `Error` 400 (or 415) rather than FastAPI's 422. FastAPI therefore sees no
  body parameter: `body_schema(Model)` gives the route an `openapi_extra` naming the very
  model the handler validates with, and `add_body_schemas` puts that model's JSON schema
  (and the models it nests) into `components/schemas`.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.responses import HTMLResponse

STATIC_PATH = "/docs/static"
DOCS_PATH, OAUTH2_REDIRECT_PATH, REDOC_PATH = "/docs", "/docs/oauth2-redirect", "/redoc"
REF = "#/components/schemas/{model}"
JSON = ("application/json",)
MERGE_PATCH = ("application/merge-patch+json", "application/json")

# Swagger UI's settings beyond FastAPI's defaults: no online validator (it would send the
# document out to be checked).
SWAGGER_PARAMETERS = {"validatorUrl": None}
# And the browser is told not to fetch images, fonts or data from elsewhere: ReDoc's
# "API docs by Redocly" footer has its logo on a CDN, for one.
POLICY = {
    "Content-Security-Policy": "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
}

_BODY_MODELS: dict[str, type[BaseModel]] = {}


# The refusals the /api/v1 routes document (every one a TMF Error).
V1_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body or command (TMF Error, every problem listed)"},
    401: {"description": "No or unknown API key"},
    403: {"description": "The role may not do this (or four-eyes)"},
    404: {"description": "No such order, draft or item"},
    409: {"description": "Not allowed in the order's state, or a concurrent change"},
    412: {"description": "If-Match does not match the order's ETag"},
    415: {"description": "The body is not application/json"},
}
DECISION_ERRORS = {**V1_ERRORS, 428: {"description": "If-Match is missing: send the ETag"}}


def body_schema(
    model: type[BaseModel],
    media: tuple[str, ...] = JSON,
    required: bool = True,
    example: Any = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route whose handler validates its body with `model` (and an
    example, which "Try it out" fills in)."""
    known = _BODY_MODELS.setdefault(model.__name__, model)
    if known is not model:
        raise ValueError(
            f"two request body models are named {model.__name__}: "
            f"{known.__module__} and {model.__module__}"
        )
    content: dict[str, Any] = {"schema": {"$ref": REF.format(model=model.__name__)}}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": required, "content": {m: content for m in media}}}


def body_schemas() -> dict[str, Any]:
    """The JSON schemas (validation mode, by alias) of every request body model and of the
    models they nest, named as `body_schema` refers to them."""
    models = list(_BODY_MODELS.values())
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    for model in models:
        ref = refs[(model, "validation")].get("$ref")
        if ref != REF.format(model=model.__name__):  # pydantic renamed it: a name clash
            raise RuntimeError(f"the schema of {model.__module__}.{model.__name__} is {ref}")
    return dict(top.get("$defs", {}))


def add_body_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in body_schemas().items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two schemas named {name} in the OpenAPI document")
        schemas[name] = schema
    return openapi


def install(app: FastAPI) -> None:
    """The documentation pages on an app made with `docs_url=None, redoc_url=None`. Plain
    Starlette routes, as FastAPI adds its own: outside the OpenAPI document, no key."""
    app.mount(
        STATIC_PATH,
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-static",
    )
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_body_schemas(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{base}{STATIC_PATH}/favicon.png",
            oauth2_redirect_url=f"{base}{OAUTH2_REDIRECT_PATH}",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        page.headers.update(POLICY)
        return page

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{STATIC_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{STATIC_PATH}/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(POLICY)
        return page

    app.add_route(DOCS_PATH, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_PATH, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_PATH, redoc, include_in_schema=False)

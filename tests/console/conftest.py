"""Fixtures for the console tests, on both backends (the root `settings` fixture).

* `console_keys`: one API key per role name (agent, agent2, manager, manager2, auditor,
  admin, fulfilment) -> `ApiKey`.
* `console_ctx` / `console`: the application context and a `Console` (a TestClient of the
  whole app, with keys) whose `sign_in(name)` opens a session and `csrf()` reads the
  token of the page last shown; `open_console`: the same app without keys;
  `holding_console`: with SERVICEORDERS_HOLD_ON_PROPOSAL on.

The suite runs with --import-mode=importlib: import nothing from this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from builders import KEY_ROLES, api_keys
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import ApiKey, Authenticator
from serviceorders.api.context import ApiContext
from serviceorders.bootstrap import build_api_context, init_database
from serviceorders.settings import Settings


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    init_database(settings)
    return settings


@pytest.fixture
def console_keys() -> dict[str, ApiKey]:
    """A key of every role but the integrator's (builders.KEY_ROLES)."""
    return api_keys(name for name in KEY_ROLES if name != "integrator")


class Console:
    """A browser-like client: cookies kept, CSRF token read from the last page."""

    def __init__(self, client: TestClient, keys: dict[str, ApiKey], ctx: ApiContext) -> None:
        self.client, self.keys, self.ctx = client, keys, ctx
        self.last: Any = None

    def get(self, path: str, **kw: Any) -> Any:
        self.last = self.client.get(path, **kw)
        return self.last

    def csrf(self, page: Any = None) -> str:
        html = (page or self.last).text
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def post(
        self, path: str, data: dict[str, Any] | None = None, csrf: str | None = None, **kw: Any
    ) -> Any:
        token = csrf if csrf is not None else self.csrf()
        self.last = self.client.post(
            path,
            data={"csrf": token, **(data or {})},
            follow_redirects=kw.pop("follow_redirects", True),
            **kw,
        )
        return self.last

    def sign_in(self, name: str) -> Any:
        self.get("/console/signin")
        response = self.post("/console/signin", {"key": self.keys[name].key})
        assert response.status_code == 200, response.text
        return response


def _build(settings: Settings, keys: list[ApiKey]) -> Iterator[tuple[TestClient, ApiContext]]:
    ctx = build_api_context(settings, Authenticator(keys))
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            yield client, ctx
    finally:
        ctx.close()


@pytest.fixture
def console(console_settings: Settings, console_keys: dict[str, ApiKey]) -> Iterator[Console]:
    for client, ctx in _build(console_settings, list(console_keys.values())):
        yield Console(client, console_keys, ctx)


@pytest.fixture
def second_console(console: Console) -> Console:
    """Another browser (its own cookies) on the same app."""
    return Console(
        TestClient(console.client.app, raise_server_exceptions=False), console.keys, console.ctx
    )


@pytest.fixture
def holding_console(
    console_settings: Settings, console_keys: dict[str, ApiKey]
) -> Iterator[Console]:
    """The console of a server whose policy holds an inProgress order while a proposal to
    change it waits (SERVICEORDERS_HOLD_ON_PROPOSAL)."""
    holding = console_settings.model_copy(update={"hold_on_proposal": True})
    for client, ctx in _build(holding, list(console_keys.values())):
        yield Console(client, console_keys, ctx)


@pytest.fixture
def open_console(console_settings: Settings) -> Iterator[Console]:
    for client, ctx in _build(console_settings, []):
        yield Console(client, {}, ctx)

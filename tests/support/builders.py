"""Builders for tests: contexts, items, headers, orders (domain values and TMF641 bodies),
and an application on the library's in-memory recorders.

One place instead of a copy per test file: `from builders import ...` (pyproject puts
tests/support on pytest's path). Every builder takes keyword overrides, so a test names
only what matters to it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from hypothesis import strategies as st
from serviceorders.api.auth import ApiKey
from serviceorders.domain.application import Outcome, ServiceOrders
from serviceorders.domain.commands import ReceiveOrder
from serviceorders.domain.privacy import TOKEN_PREFIX
from serviceorders.domain.values import (
    Channel,
    CommandContext,
    ItemAction,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    Role,
    SpecRef,
)

if TYPE_CHECKING:
    from serviceorders.api.context import ApiContext
    from serviceorders.settings import Settings

# ------------------------------------------------------------------------ contexts


def ctx(
    actor: str = "alice", role: Role = Role.AGENT, channel: Channel = Channel.API, **kw: Any
) -> CommandContext:
    """Who acts, in which role, through which door (`correlation_id=...` etc. as keywords)."""
    return CommandContext.for_actor(actor, role, channel, **kw)


def upstream(actor: str = "crm", **kw: Any) -> CommandContext:
    return ctx(actor, Role.UPSTREAM, Channel.KAFKA, **kw)


def agent(actor: str = "alice", **kw: Any) -> CommandContext:
    return ctx(actor, Role.AGENT, Channel.API, **kw)


def manager(actor: str = "bob", **kw: Any) -> CommandContext:
    return ctx(actor, Role.MANAGER, Channel.API, **kw)


def fulfilment(actor: str = "fulfil-1", **kw: Any) -> CommandContext:
    return ctx(actor, Role.FULFILMENT, Channel.KAFKA, **kw)


def operator(actor: str = "ops", **kw: Any) -> CommandContext:
    return ctx(actor, Role.OPERATOR, Channel.CLI, **kw)


# --------------------------------------------------------------------------- items
def item(item_id: str = "1", spec: str = "internet-access", **kw: Any) -> OrderItem:
    """An item the default catalog accepts: internet access (bandwidth, fibre) at site-1,
    or a managed router (`spec="managed-router"`); any field can be overridden."""
    characteristics = {
        "internet-access": {"bandwidthMbps": 100, "accessType": "fibre"},
        "managed-router": {"model": "c1100"},
    }.get(spec, {})
    fields: dict[str, Any] = {
        "action": ItemAction.ADD,
        "specification": SpecRef(id=spec),
        "characteristics": characteristics,
        "place": Place(id="site-1"),
    }
    return OrderItem(id=item_id, **{**fields, **kw})


def router(item_id: str = "2", **kw: Any) -> OrderItem:
    return item(item_id, "managed-router", **kw)


def items() -> list[OrderItem]:
    """Internet access and a router that depends on it (one site)."""
    return [item("1"), router("2", depends_on=("1",))]


def header(external_id: str | None = "ext-1", **kw: Any) -> OrderHeader:
    fields: dict[str, Any] = {"description": "two services"}
    return OrderHeader(external_id=external_id, **{**fields, **kw})


def customer(party_id: str = "CUST-1", name: str | None = "Acme") -> Party:
    return Party(id=party_id, name=name, role="customer")


def receive(
    external_id: str | None = "ext-1", order_items: list[OrderItem] | None = None, **kw: Any
) -> ReceiveOrder:
    """The command of a complete order (`header(**kw)`, `items()` unless given)."""
    return ReceiveOrder(header(external_id, **kw), tuple(order_items or items()))


# ------------------------------------------------------------------ TMF641 bodies
def tmf_item(
    item_id: str = "1",
    spec: str = "internet-access",
    place: tuple[str, str] | dict[str, Any] = ("S1", "Site one"),
    *,
    bandwidth: Any = 100,
    **fields: Any,
) -> dict[str, Any]:
    """A TMF641 serviceOrderItem adding one service at `place` ((id, name), or the place as
    sent); the default catalog's specifications get the characteristics it wants: internet
    access `bandwidth` Mbit/s over fibre, a managed router model c1100. Other fields of the
    item as keywords (`quantity=1`, `**TYPED`); `service={...}`: attributes of the service
    added to (or replacing) those."""
    more = fields.pop("service", {})
    service: dict[str, Any] = {"serviceSpecification": {"id": spec}}
    characteristics = {
        "internet-access": {"bandwidthMbps": bandwidth, "accessType": "fibre"},
        "managed-router": {"model": "c1100"},
    }.get(spec)
    if characteristics:
        service["serviceCharacteristic"] = [
            {"name": name, "value": value} for name, value in characteristics.items()
        ]
    service["place"] = [place if isinstance(place, dict) else {"id": place[0], "name": place[1]}]
    return {"id": item_id, "action": "add", **fields, "service": {**service, **more}}


def order_body(
    external_id: str | None = None,
    description: str | None = "small holes",
    *,
    customer: tuple[str, str] = ("CUST-1", "Acme"),
    order_items: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """A TMF641 ServiceOrderCreate body: one internet access item at site S1 for customer
    CUST-1 (Acme) unless `customer` (id, name) or `order_items` say otherwise; `externalId`
    and `description` only when given; other top-level fields as keywords."""
    body: dict[str, Any] = {} if description is None else {"description": description}
    body["relatedParty"] = [{"id": customer[0], "name": customer[1], "role": "customer"}]
    body["serviceOrderItem"] = order_items if order_items is not None else [tmf_item()]
    if external_id:
        body["externalId"] = external_id
    body.update(kw)
    return body


# -------------------------------------------------------------------- application
class MemorySealer:
    """A reversible stand-in for the vault: `pii:1:<scope>:<n>` tokens kept in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.scopes: list[str] = []

    def seal(self, scope: str, value: str) -> str:
        token = f"{TOKEN_PREFIX}{scope}:{len(self.values)}"
        self.values[token] = value
        self.scopes.append(scope)
        return token

    def reveal(self, value: str) -> str:
        return self.values.get(value, value)


def memory_app(**kw: Any) -> ServiceOrders:
    """The application on the library's in-memory (POPO) recorders: no database, no file.
    Keywords go to ServiceOrders (four_eyes, sealer, catalog, snapshot_interval)."""
    return ServiceOrders(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, **kw)


def id_created(outcome: Outcome) -> tuple[UUID, bool]:
    """A received order's id and whether `handle` created it now (the same order again
    changes nothing)."""
    return outcome.order.id, outcome.created


def topics(app: ServiceOrders, order_id: UUID) -> list[str]:
    """The stored events' class names, oldest first."""
    return [
        s.topic.removeprefix("serviceorders.order:")
        for s in app.recorder.select_events(order_id)  # type: ignore[attr-defined]
    ]


# ------------------------------------------------------------------------ processes
def env_without(*names: str) -> dict[str, str]:
    """This process's environment without `names` (the child then uses its defaults)."""
    return {k: v for k, v in os.environ.items() if k not in names}


def run(
    args: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, its output captured as text."""
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


SERVICEORDERS = shutil.which("serviceorders")


def cli(
    *args: str,
    url: str | None,
    expect: int = 0,
    cwd: Path | None = None,
    timeout: float = 60,
    env: Mapping[str, str | None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The `serviceorders` console script run as a real process against the database at
    `url` (None: DATABASE_URL unset), with `env`'s variables set (None: unset); its exit
    status must be `expect`."""
    assert SERVICEORDERS, "the serviceorders console script is not installed"
    extra = {"DATABASE_URL": url, **(env or {})}
    child = env_without(*extra)
    child.update({k: v for k, v in extra.items() if v is not None})
    done = run([SERVICEORDERS, *args], cwd=cwd or Path.cwd(), env=child, timeout=timeout)
    assert done.returncode == expect, (
        f"serviceorders {' '.join(args)} exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done


def order_file(
    path: Path, external_id: str, bandwidth: int = 100, site: str = "S1", **header: Any
) -> Path:
    """`path` holding an order in the CLI's own file format (`serviceorders order create
    FILE`): the header (external id and `header`'s fields) and one internet access item."""
    line = {
        "id": "1",
        "action": "add",
        "specification": {"id": "internet-access"},
        "characteristics": {"bandwidthMbps": bandwidth, "accessType": "fibre"},
        "place": {"id": site},
    }
    body = {"header": {"external_id": external_id, **header}, "items": [line]}
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


# ------------------------------------------------------------------ a served API
@contextmanager
def served_api(ctx: ApiContext, name: str = "uvicorn-api") -> Iterator[str]:
    """The API of `ctx` served by uvicorn in a thread named `name` on a free loopback port:
    yields its base URL once it is up; stops the server and closes `ctx` at the end."""
    import uvicorn
    from serviceorders.api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:  # uvicorn offers no event to wait on
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        ctx.close()


def own_topics(settings: Settings, bootstrap_servers: str, **update: Any) -> Settings:
    """`settings` with a test's own consumer group and topics (a random token in each name,
    so that tests never see each other's traffic), three partitions each, on the Kafka
    broker at `bootstrap_servers`; other settings as keywords."""
    token = secrets.token_hex(4)
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": bootstrap_servers,
            "consumer_group": f"g-{token}",
            "inbound_topic": f"in-{token}",
            "events_topic": f"ev-{token}",
            "inventory_topic": f"inv-{token}",
            "topic_partitions": 3,
            **update,
        }
    )


# ------------------------------------------------------------ hypothesis strategies
def json_values(
    leaves: st.SearchStrategy[Any], width: int, key_size: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """Any JSON value built from `leaves`: arrays and objects of at most `width` members,
    keys of at most `key_size` characters, at most `max_leaves` leaves in all."""
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=width)
            | st.dictionaries(st.text(max_size=key_size), inner, max_size=width)
        ),
        max_leaves=max_leaves,
    )


def json_paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value, depth first: `here` (the value itself) first, then
    each member's (object keys and array indexes as steps)."""
    out = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            out += json_paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += json_paths(v, (*here, i))
    return out


# ------------------------------------------------------------------------ waiting
def wait_for(
    condition: Callable[[], Any], timeout: float = 60.0, every: float = 0.2, what: str = "condition"
) -> Any:
    """What `condition()` returns once it is true, asked every `every` seconds; an
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


# ---------------------------------------------------- TMF641 complete orders (tests/api)
TYPED = {"@type": "ServiceOrderItem"}  # `tmf_item(..., **TYPED)`: an item that says its type


def tmf_router(
    item_id: str = "2",
    depends_on: str = "1",
    place: tuple[str, str] | dict[str, Any] = ("S1", "Site one"),
    **fields: Any,
) -> dict[str, Any]:
    """A managed router (`tmf_item`) that depends on item `depends_on` (its internet access)."""
    dependency = {"relationshipType": "dependency", "orderItem": {"itemId": depends_on}}
    return tmf_item(
        item_id, "managed-router", place, **fields, serviceOrderItemRelationship=[dependency]
    )


# The TMF641 serviceOrder list's filters (its query parameters besides fields, offset, limit).
TMF_ORDER_FILTERS = (
    "state",
    "externalId",
    "category",
    "priority",
    "id",
    "orderDate",
    "orderDate.gt",
    "orderDate.gte",
    "orderDate.lt",
)
# The review queue's filters (/api/v1/reviewQueue; its paging: offset, limit).
REVIEW_QUEUE_FILTERS = (
    "kind",
    "site",
    "customer",
    "priority",
    "specification",
    "olderThan",
    "youngerThan",
)


def draft_item(
    item_id: str = "1",
    spec: str = "internet-access",
    place: tuple[str, str] | dict[str, Any] = ("S1", "Site one"),
    **fields: Any,
) -> dict[str, Any]:
    """An /api/v1 draft item to add (ItemCreate): `spec` with the characteristics the
    default catalog wants (internet access 100 Mbit/s over fibre, a managed router c1100)
    at `place` ((id, name), or the place as sent); other fields as keywords (`dependsOn`)."""
    characteristics = {
        "internet-access": {"bandwidthMbps": 100, "accessType": "fibre"},
        "managed-router": {"model": "c1100"},
    }.get(spec, {})
    return {
        "id": item_id,
        "action": "add",
        "specificationId": spec,
        "characteristics": characteristics,
        "place": place if isinstance(place, dict) else {"id": place[0], "name": place[1]},
        **fields,
    }


# The attributes a TMF641 PATCH refuses (400): the order's state and external id, and the
# ServiceOrder_Update attributes it cannot change.
TMF_PATCH_REFUSES = (
    "state",
    "externalId",
    "expectedCompletionDate",
    "externalReference",
    "orderRelationship",
)


# -------------------------------------------------------- API keys (tests/api, console)
# A key's name -> (actor id, API role): the keys the API and console tests act with.
KEY_ROLES: dict[str, tuple[str, str]] = {
    "integrator": ("crm", "integrator"),
    "agent": ("alice", "agent"),
    "agent2": ("dave", "agent"),
    "manager": ("bob", "manager"),
    "manager2": ("carol", "manager"),
    "fulfilment": ("fulfil-1", "fulfilment"),
    "auditor": ("audit-1", "auditor"),
    "admin": ("ops", "admin"),
}


def api_keys(names: Iterable[str] = KEY_ROLES) -> dict[str, ApiKey]:
    """A fresh API key (`<name>-<random hex>`) for each name of KEY_ROLES."""
    return {name: ApiKey(*KEY_ROLES[name], f"{name}-{secrets.token_hex(16)}") for name in names}

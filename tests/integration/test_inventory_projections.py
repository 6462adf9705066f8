"""The inventory's read models (issue 20, docs/reporting.md "Services (inventory)"):
`service`, `service_history`, `service_daily_changes`, on SQLite and PostgreSQL.

Orders go in through `app.handle` (an add order approved and completed, a modify
completed, a delete completed, a modify that fails) and a service comes in through
`ImportService`; the projector applies the log page by page after each step; the rows are
checked against what was sent and against the services the application loads
(`app.get_service`, `app.service_history`). A rebuild gives the same rows, `verify` finds no
difference and finds a tampered row, `db init` builds the tables on a database set up
before them, and after an erasure the customer's names read "[erased]".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from builders import cli, customer, fulfilment, manager, operator, upstream
from builders import item as build_item
from builders import receive as build_receive
from serviceorders.audit.erasure import erase_customer
from serviceorders.bootstrap import build_application, event_mapper, init_database, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import (
    ItemAction,
    ItemState,
    OrderItem,
    Party,
    Place,
    ServiceRecord,
    SpecRef,
)
from serviceorders.projections import maintenance
from serviceorders.projections.inventory import INVENTORY_PROJECTIONS
from serviceorders.projections.runner import POSITIONS, Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb, Table
from serviceorders.tmf.tmf638 import service_to_tmf638

pytestmark = pytest.mark.integration

NAMES = ("service", "service_history", "service_daily_changes")
TABLES: dict[str, Table] = {p.name: p.table for p in PROJECTIONS}
CRM, BOB, FULFIL, OPS = upstream(), manager(), fulfilment(), operator()
ACME = customer("CUST-INV", "Acme Inventory")
HQ = Place(id="SITE-HQ", name="Acme HQ", role="installationSite")
DEPOT = Place(id="SITE-DEPOT", name="Acme depot")


# ------------------------------------------------------------------------ helpers
def rows(db: ReadDb, name: str) -> list[dict[str, Any]]:
    """The table's rows as dicts in primary-key order, normalised as `verify` compares
    them (times as ISO text), JSON decoded."""
    table = TABLES[name]
    types = table.types()
    return [
        {
            c: json.loads(v) if types[c] == "json" and v is not None else v
            for c, v in zip(table.column_names, r, strict=True)
        }
        for r in db.rows(table, name)
    ]


def by_id(db: ReadDb) -> dict[str, dict[str, Any]]:
    return {r["service_id"]: r for r in rows(db, "service")}


def history(db: ReadDb, service_id: str) -> list[dict[str, Any]]:
    return [r for r in rows(db, "service_history") if r["service_id"] == service_id]


def time_of(db: ReadDb, value: Any, kind: str = "timestamptz") -> Any:
    """A value as `rows` reads it back."""
    stored = db.adapt(value, kind) if db.dialect == "sqlite" else value
    return db.normalise(stored, kind)


def catch_up(db: ReadDb, batch_size: int = 2) -> None:
    projector = Projector(db, event_mapper(), batch_size=batch_size)  # pages split orders
    projector.catch_up()
    assert {s.lag for s in projector.status()} == {0}


def complete(app: ServiceOrders, order_id: UUID, state: ItemState = ItemState.COMPLETED) -> None:
    app.handle(BOB, cmd.Approve(order_id))
    items = app.get_order(order_id).items
    app.handle(
        FULFIL,
        cmd.ChangeItemStates(order_id, tuple(cmd.ItemStateChange(i, state) for i in items)),
    )


def place(p: Place) -> dict[str, Any]:
    return p.model_dump(mode="json", exclude_none=True)


@dataclass
class Made:
    add: UUID
    modify: UUID
    delete: UUID
    failed: UUID
    access: str  # the internet access the add order created (modified later)
    router: str  # the router it created (disconnected later)
    legacy: str = "LEGACY-INV-1"  # imported


def build(app: ServiceOrders, db: ReadDb | None = None) -> Made:
    """The scenario; with `db`, the projector catches up after each step (so rows are
    updated in place, not only inserted)."""

    def step() -> None:
        if db is not None:
            catch_up(db)

    def receive(ext: str, *items: OrderItem) -> UUID:
        return app.handle(CRM, build_receive(ext, list(items), related_parties=(ACME,))).order_id

    add = receive(
        "INV-ADD",
        build_item("1", place=HQ, service_name="Acme HQ line"),
        build_item("2", "managed-router", place=HQ, depends_on=("1",)),
    )
    step()
    complete(app, add)
    access, router = service_id_for(add, "1"), service_id_for(add, "2")
    step()
    modify = receive(
        "INV-MOD",
        build_item(
            "1",
            action=ItemAction.MODIFY,
            service_id=access,
            characteristics={"bandwidthMbps": 500, "accessType": "fibre"},
            place=DEPOT,
        ),
    )
    step()
    complete(app, modify)
    step()
    delete = receive(
        "INV-DEL",
        build_item("1", "managed-router", action=ItemAction.DELETE, service_id=router, place=HQ),
    )
    complete(app, delete)
    step()
    record = ServiceRecord(
        id="LEGACY-INV-1",
        name="Old line",
        specification=SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 50, "accessType": "copper"},
        places=(HQ,),
        customer=Party(id=ACME.id, name=ACME.name, role="customer"),
        extra={"category": "business"},
    )
    assert app.handle(OPS, cmd.ImportService(record)).created
    step()
    failed = receive(
        "INV-FAIL",
        build_item(
            "1",
            action=ItemAction.MODIFY,
            service_id="LEGACY-INV-1",
            characteristics={"bandwidthMbps": 100, "accessType": "copper"},
            place=HQ,
        ),
    )
    complete(app, failed, ItemState.FAILED)
    step()
    return Made(add, modify, delete, failed, access, router)


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Iterator[ReadDb]:
    read_db = open_read_db(settings)
    yield read_db
    read_db.close()


# ------------------------------------------------------------------------ the rows
def test_service_rows_are_the_services_as_they_are(app: ServiceOrders, db: ReadDb) -> None:
    made = build(app, db)
    found = by_id(db)
    assert set(found) == {made.access, made.router, made.legacy}

    access = found[made.access]
    assert {k: access[k] for k in access if k not in ("document", "places")} == {
        "service_id": made.access,
        "state": "active",
        "name": "Acme HQ line",
        "specification_id": "internet-access",
        "customer_id": "CUST-INV",
        "customer_name": "Acme Inventory",
        "site_id": "SITE-DEPOT",  # the modify moved it: its first place is the item's
        "characteristics": {"bandwidthMbps": 500, "accessType": "fibre"},
        "depends_on": [],
        "dependents": [],  # the router depended on it until it was disconnected
        "open_orders": [],
        "created_order_id": str(made.add),
        "created_item_id": "1",
        "last_order_id": str(made.modify),
        "imported": access["imported"],
        "created_at": access["created_at"],
        "updated_at": access["updated_at"],
        "terminated_at": None,
        "version": app.get_service(made.access).version,
    }
    assert not access["imported"]
    assert access["places"] == [place(DEPOT)]  # the item's place replaced the first one

    router = found[made.router]
    assert (router["state"], router["specification_id"], router["site_id"]) == (
        "terminated",
        "managed-router",
        "SITE-HQ",
    )
    assert router["depends_on"] == [made.access]
    assert (router["created_order_id"], router["last_order_id"]) == (
        str(made.add),
        str(made.delete),
    )
    assert router["terminated_at"] is not None

    legacy = found[made.legacy]
    assert legacy["imported"] and legacy["state"] == "active"
    assert (legacy["created_order_id"], legacy["created_item_id"], legacy["last_order_id"]) == (
        None,
        None,
        None,
    )
    # The failed modify left it unchanged, and released it.
    assert legacy["characteristics"] == {"bandwidthMbps": 50, "accessType": "copper"}
    assert legacy["open_orders"] == []

    # Every row against the service the application loads: its TMF638 document, its
    # version, its times (updated_at: the time of its latest event).
    for service_id, row in found.items():
        service = app.get_service(service_id)
        events = app.service_history(service_id)
        assert row["document"] == json.loads(json.dumps(service_to_tmf638(service)))
        assert row["version"] == service.version == len(events)
        assert row["created_at"] == time_of(db, events[0].timestamp)
        assert row["updated_at"] == time_of(db, events[-1].timestamp)
        assert row["terminated_at"] == time_of(db, service.terminated_at)


def test_an_open_order_shows_in_the_row_until_it_ends(app: ServiceOrders, db: ReadDb) -> None:
    made = build(app, db)
    order = app.handle(
        CRM,
        build_receive(
            "INV-OPEN",
            [build_item("1", action=ItemAction.MODIFY, service_id=made.access, place=DEPOT)],
            related_parties=(ACME,),
        ),
    ).order_id
    catch_up(db)
    assert by_id(db)[made.access]["open_orders"] == [str(order)]
    app.handle(BOB, cmd.Reject(order, "not now"))
    catch_up(db)
    row = by_id(db)[made.access]
    assert row["open_orders"] == [] and row["last_order_id"] == str(made.modify)
    assert [r["kind"] for r in history(db, made.access)][-2:] == ["order_opened", "order_closed"]


def test_history_has_a_row_per_service_event(app: ServiceOrders, db: ReadDb) -> None:
    made = build(app, db)
    add, mod, delete, failed = (str(o) for o in (made.add, made.modify, made.delete, made.failed))

    def seen(service_id: str) -> list[tuple[Any, ...]]:
        return [
            (r["version"], r["kind"], r["order_id"], r["item_id"], r["actor_id"], r["actor_role"])
            for r in history(db, service_id)
        ]

    assert seen(made.access) == [
        (1, "created", add, "1", "fulfil-1", "fulfilment"),
        (2, "dependent_added", None, None, "fulfil-1", "fulfilment"),
        (3, "order_opened", mod, "1", "crm", "upstream"),
        (4, "modified", mod, "1", "fulfil-1", "fulfilment"),
        (5, "dependent_removed", None, None, "fulfil-1", "fulfilment"),
    ]
    assert seen(made.router) == [
        (1, "created", add, "2", "fulfil-1", "fulfilment"),
        (2, "order_opened", delete, "1", "crm", "upstream"),
        (3, "terminated", delete, "1", "fulfil-1", "fulfilment"),
    ]
    assert seen(made.legacy) == [
        (1, "imported", None, None, "ops", "operator"),
        (2, "order_opened", failed, "1", "crm", "upstream"),
        (3, "order_closed", failed, None, "fulfil-1", "fulfilment"),
    ]

    access = {r["kind"]: r["changes"] for r in history(db, made.access)}
    # Each changed characteristic from its value before to the new one, and the new site;
    # a characteristic the item sent unchanged is not a change.
    assert access["modified"] == {
        "bandwidthMbps": {"from": 100, "to": 500},
        "place": {"from": place(HQ), "to": place(DEPOT)},
    }
    assert access["created"] == {
        "state": "active",
        "name": "Acme HQ line",
        "specification": "internet-access",
        "characteristics": {"bandwidthMbps": 100, "accessType": "fibre"},
        "places": [place(HQ)],
        "customer_id": "CUST-INV",
        "depends_on": [],
    }
    assert access["dependent_added"] == {"dependent": made.router}
    assert access["order_opened"] == {"action": "modify", "item_ids": ["1"]}
    router = {r["kind"]: r["changes"] for r in history(db, made.router)}
    assert router["terminated"] == {"state": {"from": "active", "to": "terminated"}}
    assert router["created"]["depends_on"] == [made.access]
    legacy = {r["kind"]: r["changes"] for r in history(db, made.legacy)}
    assert legacy["order_closed"] == {"order_state": "failed"}
    assert legacy["imported"]["characteristics"] == {"bandwidthMbps": 50, "accessType": "copper"}

    # Each row's time is its event's.
    for service_id in (made.access, made.router, made.legacy):
        events = app.service_history(service_id)
        assert [r["occurred_at"] for r in history(db, service_id)] == [
            time_of(db, e.timestamp) for e in events
        ]


def test_daily_changes_count_what_each_event_did(app: ServiceOrders, db: ReadDb) -> None:
    made = build(app, db)
    events = {s: app.service_history(s) for s in (made.access, made.router, made.legacy)}
    access, router, legacy = events[made.access], events[made.router], events[made.legacy]
    expected: Counter[tuple[Any, ...]] = Counter()
    for event, kind, spec in (
        (access[0], "created", "internet-access"),
        (router[0], "created", "managed-router"),
        (access[3], "modified", "internet-access"),
        (router[2], "terminated", "managed-router"),
        (legacy[0], "imported", "internet-access"),
    ):
        expected[(event.timestamp.date(), kind, spec)] += 1
    assert {
        (r["day"], r["kind"], r["specification_id"]): r["changes"]
        for r in rows(db, "service_daily_changes")
    } == {(time_of(db, d, "date"), k, s): n for (d, k, s), n in expected.items()}


# ------------------------------------------------------------ rebuild and verify
@pytest.mark.parametrize("batch_size", [1, 500])
def test_rebuild_gives_the_same_rows_and_verify_finds_a_tampered_one(
    app: ServiceOrders, db: ReadDb, batch_size: int
) -> None:
    made = build(app)  # applied once at the end, in pages of `batch_size` events
    catch_up(db, batch_size)
    before = {name: rows(db, name) for name in NAMES}
    assert all(before.values())
    # The same rows as when applied step by step (rows updated in place): a new store of
    # the same events is not at hand, so compare with a rebuild from the first event.
    maintenance.rebuild(db, event_mapper(), list(NAMES))
    assert {name: rows(db, name) for name in NAMES} == before
    assert maintenance.verify(db, event_mapper(), list(NAMES)) == []
    assert maintenance.verify(db, event_mapper()) == []  # every read model, these included

    db.execute("UPDATE service SET state = 'active' WHERE service_id = %s", (made.router,))
    found = maintenance.verify(db, event_mapper(), ["service"])
    assert [(d.projection, d.key) for d in found] == [("service", (made.router,))]
    db.execute("UPDATE service_daily_changes SET changes = changes + 1")
    assert {d.projection for d in maintenance.verify(db, event_mapper(), list(NAMES))} == {
        "service",
        "service_daily_changes",
    }


def test_the_cli_rebuilds_and_verifies_them(
    settings: Settings, app: ServiceOrders, db: ReadDb
) -> None:
    made = build(app, db)
    url = settings.database.url(with_password=True)
    before = {name: rows(db, name) for name in NAMES}
    rebuilt = cli("projections", "rebuild", *NAMES, url=url)
    assert all(name in rebuilt.stdout + rebuilt.stderr for name in NAMES)
    assert {name: rows(db, name) for name in NAMES} == before
    clean = cli("projections", "verify", url=url)
    assert all(f"{name}: OK" in clean.stdout for name in NAMES), clean.stdout
    db.execute("UPDATE service SET customer_id = 'CUST-X' WHERE service_id = %s", (made.legacy,))
    tampered = cli("projections", "verify", *NAMES, url=url, expect=1)
    assert "service: 1 differing row(s)" in tampered.stdout, tampered.stdout
    assert f"key ('{made.legacy}',)" in tampered.stdout
    assert "service_history: OK" in tampered.stdout
    assert "service_daily_changes: OK" in tampered.stdout


def test_rows_applied_step_by_step_equal_a_rebuild(app: ServiceOrders, db: ReadDb) -> None:
    build(app, db)
    before = {name: rows(db, name) for name in NAMES}
    maintenance.rebuild(db, event_mapper(), list(NAMES))
    assert {name: rows(db, name) for name in NAMES} == before
    assert maintenance.verify(db, event_mapper(), list(NAMES)) == []


# ------------------------------------------------------------------ upgrades
@pytest.fixture(params=["sqlite", "postgres"])
def own_settings(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> Settings:
    """A database of the test's own: the test drops read-model tables."""
    if request.param == "sqlite":
        return Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'own.db'}"})
    return Settings.from_env({"DATABASE_URL": new_pg_database("so_inventory")})


def test_db_init_builds_the_inventory_tables_on_a_database_set_up_before_them(
    own_settings: Settings,
) -> None:
    init_database(own_settings)
    app = build_application(own_settings)
    try:
        build(app)
    finally:
        app.close()
    db = open_read_db(own_settings)
    try:
        catch_up(db)
        before = {name: rows(db, name) for name in NAMES}
        with db.transaction():  # a database of the release before them
            for name in NAMES:
                db.drop_table(name)
                db.execute(f"DELETE FROM {POSITIONS.name} WHERE name = %s", (name,))
                db.execute(f"DELETE FROM {maintenance.SHAPES} WHERE name = %s", (name,))
        done = init_database(own_settings)
        head = Projector(db, event_mapper()).log.head()
        for name in NAMES:
            assert f"built read model {name} (new in this release) at position {head}" in done
        assert {name: rows(db, name) for name in NAMES} == before
        assert maintenance.verify(db, event_mapper(), list(NAMES)) == []
        shapes = maintenance.stored_shapes(db)
        assert {p.name: shapes[p.name] for p in INVENTORY_PROJECTIONS} == {
            p.name: p.VERSION for p in INVENTORY_PROJECTIONS
        }
    finally:
        db.close()


# ------------------------------------------------------------------ erasure
def test_after_an_erasure_the_customer_s_names_read_erased(app: ServiceOrders, db: ReadDb) -> None:
    made = build(app, db)
    held = json.dumps([rows(db, name) for name in NAMES])
    assert all(v in held for v in ("Acme Inventory", "Acme HQ line", "Acme depot", "Old line"))
    erase_customer(
        db, ACME.id, "dpo", rebuild=lambda d: maintenance.rebuild(d, event_mapper()), wait=0
    )
    held = json.dumps([rows(db, name) for name in NAMES])
    assert not [
        v for v in ("Acme Inventory", "Acme HQ line", "Acme depot", "Old line") if v in held
    ]
    row = by_id(db)[made.access]
    assert (row["customer_id"], row["customer_name"], row["name"]) == (
        "CUST-INV",
        "[erased]",
        "[erased]",
    )
    assert [p["name"] for p in row["places"]] == ["[erased]"]

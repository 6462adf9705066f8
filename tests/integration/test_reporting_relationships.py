"""The read models of what issue 19 made visible (docs/reporting.md): relationships
(`order_relationship`), every place of every item (`order_item_place`), outcomes told back
(`order_outcome`), milestones (`order_milestone`), nested items (`order_item.parent_id`).

Orders go in through the application and through the TMF641 API, the projector applies the
log, and the rows are checked against the values sent and against the TMF641 document GET
returns; a rebuild gives the same rows, `verify` finds no difference, and a database set up
before these read models existed gets them built by `db init`. The last test holds the
document's column tables to the tables' definitions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from builders import fulfilment, id_created, manager, upstream
from builders import item as build_item
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import Authenticator
from serviceorders.audit.erasure import erase_customer
from serviceorders.bootstrap import (
    build_api_context,
    build_application,
    event_mapper,
    init_database,
    open_read_db,
)
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.values import (
    ItemRelation,
    ItemState,
    OrderHeader,
    OrderItem,
    OrderRelationship,
    Party,
    Place,
)
from serviceorders.projections import maintenance
from serviceorders.projections.runner import POSITIONS, Projector
from serviceorders.projections.views import (
    PROJECTIONS,
    document_items,
    milestone_rows,
    outcome_rows,
    place_rows,
    relationship_rows,
)
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb, Table
from serviceorders.tmf.tmf641 import order_to_tmf641

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "reporting.md"
NEW = ("order_relationship", "order_item_place", "order_outcome", "order_milestone")
TABLES = {p.name: p.table for p in PROJECTIONS}
ORDER_PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"
CRM, BOB, FULFIL = upstream(), manager(), fulfilment()

BY_VALUE = {
    "role": "deliveryContact",
    "@type": "GeographicAddress",
    "city": "Berlin",
    "streetName": "Invalidenstrasse",
    "postcode": "10115",
}
# An item relationship's orderItem as the doors keep it: its attributes besides itemId.
TO_ITEM = {"orderItem": {"@referredType": "ServiceOrderItem"}}
SITE = {
    "id": "SITE-1",
    "name": "Berlin HQ",
    "role": "installationSite",
    "@referredType": "GeographicSite",
}


# ------------------------------------------------------------------------ helpers
def rows(db: ReadDb, name: str) -> list[dict[str, Any]]:
    """The table's rows as dicts, in primary-key order, normalised as `verify` compares
    them (uuids and times as ISO text), JSON decoded."""
    table = TABLES[name]
    return [_row(table, r) for r in db.rows(table, name)]


def _row(table: Table, values: tuple[Any, ...]) -> dict[str, Any]:
    types = table.types()
    return {
        c: json.loads(v) if types[c] == "json" and v is not None else v
        for c, v in zip(table.column_names, values, strict=True)
    }


def of(found: list[dict[str, Any]], order_id: UUID, *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in columns) for r in found if r["order_id"] == str(order_id)]


def expected(db: ReadDb, name: str, made: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows computed from the aggregates, as `rows` reads them from the table."""
    table = TABLES[name]
    types = table.types()
    sqlite = db.dialect == "sqlite"  # SQLite's normalise parses what its adapt stored
    normalised = [
        tuple(
            db.normalise(db.adapt(r[c], types[c]) if sqlite else r[c], types[c])
            for c in table.column_names
        )
        for r in made
    ]
    key = [table.column_names.index(k) for k in table.primary_key]
    return [_row(table, r) for r in sorted(normalised, key=lambda r: [r[i] for i in key])]


def catch_up(db: ReadDb) -> Projector:
    projector = Projector(db, event_mapper(), batch_size=3)  # pages split the orders
    projector.catch_up()
    assert {s.lag for s in projector.status()} == {0}
    return projector


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Iterator[ReadDb]:
    read_db = open_read_db(settings)
    yield read_db
    read_db.close()


def receive(app: ServiceOrders, header: OrderHeader, *items: OrderItem) -> UUID:
    order_id, created = id_created(app.handle(CRM, cmd.ReceiveOrder(header, items)))
    assert created
    return order_id


def orders(app: ServiceOrders) -> dict[str, UUID]:
    """A nested order with relationships and two places (one by value), approved and
    fulfilled in part; a rejected order; an order whose only item failed."""
    made: dict[str, UUID] = {}
    made["nested"] = o = receive(
        app,
        OrderHeader(
            external_id="REL-NESTED",
            related_parties=(Party(id="CUST-1", name="Acme"),),
            order_relationships=(
                OrderRelationship(
                    id="PO-77",
                    relationship_type="reliesOn",
                    extra={"@referredType": "ProductOrder", "href": "https://crm/po/PO-77"},
                ),
            ),
        ),
        build_item(
            "1",
            place=Place(id="SITE-1", name="Berlin HQ", role="installationSite"),
            service_extra={"place": [SITE, BY_VALUE]},
        ),
        build_item(
            "1.1",
            "managed-router",
            parent="1",
            place=Place(id="SITE-1", name="Berlin HQ"),
            depends_on=("2",),
            relationships=(
                ItemRelation(relationship_type="dependency", item_id="2", extra=TO_ITEM),
                ItemRelation(relationship_type="reliesOn", item_id="1", extra=TO_ITEM),
            ),
        ),
        build_item("2", place=None),
    )
    app.handle(BOB, cmd.Approve(o, "capacity confirmed"))
    app.handle(FULFIL, cmd.ChangeItemStates.one(o, "2", ItemState.IN_PROGRESS))
    app.handle(FULFIL, cmd.ChangeItemStates.one(o, "2", ItemState.COMPLETED))
    app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1.1", ItemState.IN_PROGRESS))
    app.handle(FULFIL, cmd.ReachPointOfNoReturn(o, "router shipped"))

    made["rejected"] = o = receive(
        app, OrderHeader(external_id="REL-REJECTED"), build_item("1", place=Place(id="SITE-2"))
    )
    app.handle(BOB, cmd.Reject(o, "duplicate of REL-NESTED"))

    made["failed"] = o = receive(app, OrderHeader(external_id="REL-FAILED"), build_item("1"))
    app.handle(BOB, cmd.Approve(o))
    app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1", ItemState.FAILED, "no fibre in the street"))
    return made


# ------------------------------------------------------------------ the rows
def test_rows_hold_what_the_orders_sent_and_told_back(app: ServiceOrders, db: ReadDb) -> None:
    made = orders(app)
    catch_up(db)
    nested, rejected, failed = made["nested"], made["rejected"], made["failed"]

    # Nested items: flat in order_item, each with its parent.
    assert of(rows(db, "order_item"), nested, "item_id", "parent_id") == [
        ("1", None),
        ("1.1", "1"),
        ("2", None),
    ]
    # The order's relationship keeps its referred type; the items' are all there as sent.
    rels = rows(db, "order_relationship")
    assert of(
        rels,
        nested,
        "item_id",
        "relationship_type",
        "related_order_id",
        "related_item_id",
        "referred_type",
    ) == [
        (None, "reliesOn", "PO-77", None, "ProductOrder"),
        ("1.1", "dependency", None, "2", "ServiceOrderItem"),
        ("1.1", "reliesOn", None, "1", "ServiceOrderItem"),
    ]
    # Every place of every item, the one by value (no id) included; items without a place
    # have no row.
    places = rows(db, "order_item_place")
    assert of(places, nested, "item_id", "position", "place_id", "name", "role", "place_type") == [
        ("1", 0, "SITE-1", "Berlin HQ", "installationSite", "GeographicSite"),
        ("1", 1, None, None, "deliveryContact", "GeographicAddress"),
        ("1.1", 0, "SITE-1", "Berlin HQ", "installationSite", "GeographicSite"),
    ]
    assert of(places, nested, "place")[1] == (BY_VALUE,)
    assert of(places, rejected, "item_id", "place_id") == [("1", "SITE-2")]

    # Outcomes told back: the rejection's reason, the failed item with fulfilment's reason.
    outcomes = rows(db, "order_outcome")
    assert of(outcomes, rejected, "seq", "code", "message", "item_ids") == [
        (0, "rejected", "duplicate of REL-NESTED", [])
    ]
    assert of(outcomes, failed, "code", "message", "item_ids") == [
        ("item_failed", "no fibre in the street", ["1"])
    ]
    assert of(outcomes, nested, "code") == []
    # Milestones: approval, the nested item started, the point of no return.
    milestones = rows(db, "order_milestone")
    assert of(milestones, nested, "name", "message", "item_ids") == [
        ("approved", None, []),
        ("itemStarted", None, ["2"]),
        ("itemCompleted", None, ["2"]),
        ("itemStarted", None, ["1.1"]),
        ("pointOfNoReturn", "router shipped", []),
    ]
    assert of(milestones, rejected, "name") == []
    # Each row carries the order's version, and its time is that of the event.
    for name in ("order_outcome", "order_milestone"):
        for row in rows(db, name):
            order = app.get_order(UUID(row["order_id"]))
            assert row["version"] == order.version
    when = [r["occurred_at"] for r in milestones if r["order_id"] == str(nested)]
    assert when == sorted(when) and len(set(when)) == len(when)


def test_rows_equal_what_the_aggregates_and_their_documents_show(
    app: ServiceOrders, db: ReadDb
) -> None:
    made = orders(app)
    catch_up(db)
    aggregates = [app.get_order(o) for o in made.values()]
    for name, rows_of in (
        ("order_relationship", relationship_rows),
        ("order_item_place", place_rows),
        ("order_outcome", outcome_rows),
        ("order_milestone", milestone_rows),
    ):
        made_rows = [r for o in aggregates for r in rows_of(o)]
        assert rows(db, name) == expected(db, name, made_rows), name
    # The places are the document's, item by item (what GET returns).
    for order in aggregates:
        shown = [
            (item["id"], n, place)
            for item in document_items(order_to_tmf641(order))
            for n, place in enumerate(item.get("service", {}).get("place", ()))
        ]
        assert of(rows(db, "order_item_place"), order.id, "item_id", "position", "place") == [
            (item_id, n, place) for item_id, n, place in shown
        ]


def test_rebuild_gives_the_same_rows_and_verify_finds_no_difference(
    app: ServiceOrders, db: ReadDb
) -> None:
    orders(app)
    catch_up(db)
    before = {name: rows(db, name) for name in (*NEW, "order_item")}
    assert all(before.values())
    maintenance.rebuild(db, event_mapper(), [*NEW, "order_item"])
    assert {name: rows(db, name) for name in before} == before
    assert maintenance.verify(db, event_mapper(), [*NEW, "order_item"]) == []

    # A tampered row is found.
    db.execute("UPDATE order_item_place SET name = 'tampered' WHERE place_id = 'SITE-2'")
    found = maintenance.verify(db, event_mapper(), ["order_item_place"])
    assert [d.projection for d in found] == ["order_item_place"]


def test_rows_follow_the_order_as_it_changes(app: ServiceOrders, db: ReadDb) -> None:
    """A later page changes an order's rows: its nested item fails (an outcome), its parent
    settles; every row then reflects the order's new version, none of an older one."""
    made = orders(app)
    catch_up(db)
    o = made["nested"]
    before = of(rows(db, "order_milestone"), o, "name", "item_ids")
    app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1.1", ItemState.FAILED, "port broken"))
    catch_up(db)
    order = app.get_order(o)
    assert order.state.value == "partial"
    assert of(rows(db, "order_item"), o, "item_id", "state") == [
        ("1", "failed"),
        ("1.1", "failed"),
        ("2", "completed"),
    ]
    assert of(rows(db, "order_milestone"), o, "name", "item_ids") == before
    outcomes = of(rows(db, "order_outcome"), o, "code", "message", "item_ids")
    assert outcomes[0] == ("item_failed", "port broken", ["1.1"])
    for name in (*NEW, "order_item"):
        assert {r["version"] for r in rows(db, name) if r["order_id"] == str(o)} == {
            order.version
        }, name


# ------------------------------------------------------------------ through the API
def rich_body() -> dict[str, Any]:
    def item(item_id: str, spec: str, **fields: Any) -> dict[str, Any]:
        characteristics = {
            "internet-access": [
                {"name": "bandwidthMbps", "value": 100},
                {"name": "accessType", "value": "fibre"},
            ],
            "managed-router": [{"name": "model", "value": "c1100"}],
        }[spec]
        service = {
            "serviceSpecification": {"id": spec},
            "serviceCharacteristic": characteristics,
            "place": [SITE],
            **fields.pop("service", {}),
        }
        return {"id": item_id, "action": "add", **fields, "service": service}

    return {
        "externalId": "REL-API",
        "relatedParty": [{"id": "CUST-1", "name": "Acme", "role": "customer"}],
        "orderRelationship": [
            {"id": "PO-9", "relationshipType": "reliesOn", "@referredType": "ProductOrder"}
        ],
        "serviceOrderItem": [
            item(
                "1",
                "internet-access",
                service={"place": [SITE, BY_VALUE]},
                serviceOrderItem=[
                    item(
                        "1.1",
                        "managed-router",
                        serviceOrderItemRelationship=[
                            {"relationshipType": "dependency", "orderItem": {"itemId": "1"}}
                        ],
                        serviceOrderItem=[item("1.1.1", "managed-router")],
                    )
                ],
            ),
        ],
    }


def test_an_order_through_the_api_gives_rows_equal_to_its_document(settings: Settings) -> None:
    init_database(settings)
    ctx = build_api_context(settings, Authenticator([]))
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            posted = client.post(ORDER_PATH, json=rich_body())
            assert posted.status_code == 201, posted.text
            shown = client.get(f"{ORDER_PATH}/{posted.json()['id']}").json()
    finally:
        ctx.close()
    order_id = UUID(shown["id"])
    db = open_read_db(settings)
    try:
        catch_up(db)
        assert of(rows(db, "order_item"), order_id, "item_id", "parent_id") == [
            ("1", None),
            ("1.1", "1"),
            ("1.1.1", "1.1"),
        ]
        assert of(
            rows(db, "order_relationship"),
            order_id,
            "item_id",
            "relationship_type",
            "related_order_id",
            "related_item_id",
            "referred_type",
        ) == [
            (None, "reliesOn", "PO-9", None, "ProductOrder"),
            ("1.1", "dependency", None, "1", None),
        ]
        # Every place GET shows, in order, and nothing else.
        assert of(rows(db, "order_item_place"), order_id, "item_id", "position", "place") == [
            (item["id"], n, place)
            for item in document_items(shown)
            for n, place in enumerate(item["service"]["place"])
        ]
        assert ("1", 1, None, "deliveryContact", "GeographicAddress") in of(
            rows(db, "order_item_place"),
            order_id,
            "item_id",
            "position",
            "place_id",
            "role",
            "place_type",
        )
    finally:
        db.close()


def test_a_patch_replacing_an_item_s_places_replaces_its_rows(settings: Settings) -> None:
    """Rows of places the order no longer has leave the table (the by-value one here)."""
    init_database(settings)
    body = rich_body()
    body["externalId"] = "REL-PATCH"
    body["serviceOrderItem"][0].pop("serviceOrderItem")  # one item, two places
    ctx = build_api_context(settings, Authenticator([]))
    db = open_read_db(settings)
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            posted = client.post(ORDER_PATH, json=body)
            assert posted.status_code == 201, posted.text
            order_id = posted.json()["id"]
            catch_up(db)
            assert len(of(rows(db, "order_item_place"), UUID(order_id), "position")) == 2
            item = {**body["serviceOrderItem"][0]}
            item["service"] = {**item["service"], "place": [{"id": "SITE-9", "name": "Hamburg"}]}
            patched = client.patch(
                f"{ORDER_PATH}/{order_id}",
                content=json.dumps({"serviceOrderItem": [item]}),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert patched.status_code == 200, patched.text
            shown = client.get(f"{ORDER_PATH}/{order_id}").json()
        catch_up(db)
        places = of(rows(db, "order_item_place"), UUID(order_id), "item_id", "position", "place")
        assert places == [
            (item["id"], n, place)
            for item in document_items(shown)
            for n, place in enumerate(item["service"]["place"])
        ]
        assert [(i, n, p["id"]) for i, n, p in places] == [("1", 0, "SITE-9")]
        assert {r["version"] for r in rows(db, "order_item_place")} == {shown_version(db, order_id)}
    finally:
        db.close()
        ctx.close()


def shown_version(db: ReadDb, order_id: str) -> int:
    row = db.fetchone(
        "SELECT version FROM order_summary WHERE id = %s", (db.adapt(UUID(order_id), "uuid"),)
    )
    assert row is not None
    return int(row[0])


# ------------------------------------------------------------------ upgrades
@pytest.fixture(params=["sqlite", "postgres"])
def own_settings(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> Settings:
    """A database of the test's own: the test drops read-model tables."""
    if request.param == "sqlite":
        return Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'own.db'}"})
    return Settings.from_env({"DATABASE_URL": new_pg_database("so_reporting")})


def test_db_init_builds_the_read_models_a_database_set_up_before_them_lacks(
    own_settings: Settings,
) -> None:
    init_database(own_settings)
    app = build_application(own_settings)
    try:
        orders(app)
    finally:
        app.close()
    db = open_read_db(own_settings)
    try:
        catch_up(db)
        before = {name: rows(db, name) for name in NEW}
        # A database of the release before them: no table, no position, no shape.
        with db.transaction():
            for name in NEW:
                db.drop_table(name)
                db.execute(f"DELETE FROM {POSITIONS.name} WHERE name = %s", (name,))
                db.execute(f"DELETE FROM {maintenance.SHAPES} WHERE name = %s", (name,))
        with pytest.raises(RuntimeError, match="run `serviceorders db init`"):
            Projector(db, event_mapper()).positions()

        done = init_database(own_settings)
        head = Projector(db, event_mapper()).log.head()
        for name in NEW:
            assert f"built read model {name} (new in this release) at position {head}" in done
        assert {name: rows(db, name) for name in NEW} == before
        assert maintenance.verify(db, event_mapper(), list(NEW)) == []
        assert {s.lag for s in Projector(db, event_mapper()).status()} == {0}
        shapes = maintenance.stored_shapes(db)
        assert all(shapes[p.name] == p.VERSION for p in PROJECTIONS if p.name in NEW)

        again = init_database(own_settings)
        assert not [line for line in again if "built" in line or "rebuilt" in line]
    finally:
        db.close()


# ------------------------------------------------------------------ the document
COLUMN_ROW = re.compile(r"^\|\s*(\*\*)?`([a-z_]+)`(?:\*\*)?\s*\|\s*`([a-z ]+)`\s*\|", re.M)
PG_TYPES = {
    "uuid": "uuid",
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "bool": "boolean",
    "timestamptz": "timestamptz",
    "date": "date",
    "json": "jsonb",
    "numeric": "double precision",
}


def documented(name: str) -> list[tuple[bool, str, str]]:
    """The column table of docs/reporting.md's section `### name`: (in the primary key,
    column, PostgreSQL type) per row."""
    text = DOC.read_text(encoding="utf-8")
    section = re.search(rf"^### {name}\n(.*?)(?=^#{{2,3}} )", text, re.M | re.S)
    assert section is not None, f"docs/reporting.md has no section {name}"
    return [(bool(bold), col, typ) for bold, col, typ in COLUMN_ROW.findall(section.group(1))]


@pytest.mark.parametrize("name", [p.name for p in PROJECTIONS])
def test_docs_list_every_column_with_its_type_and_the_primary_key(name: str) -> None:
    table = TABLES[name]
    assert documented(name) == [
        (c in table.primary_key, c, PG_TYPES[t]) for c, t in table.columns
    ], f"docs/reporting.md's {name} does not list the table's columns as they are"


def test_docs_grant_and_name_every_read_model() -> None:
    text = DOC.read_text(encoding="utf-8")
    grant = re.search(r"GRANT SELECT ON (.*?)\s+TO reporting", text, re.S)
    assert grant is not None
    names = {p.name for p in PROJECTIONS}
    assert {t.strip() for t in grant.group(1).split(",")} == names | {"projection_position"}
    position = re.search(r"^\| \*\*`name`\*\* \|.*$", text, re.M)
    assert position is not None
    assert set(re.findall(r"`([a-z_]+)`", position.group(0))) >= names


# ------------------------------------------------------------------ erasure
def test_after_an_erasure_no_new_table_holds_the_customer_s_values(
    app: ServiceOrders, db: ReadDb
) -> None:
    """Places (by reference and by value) and outcome reasons are sealed in the events and
    held revealed in the read models: the rebuild after `audit erase` leaves none."""
    home = {"role": "deliveryContact", "@type": "GeographicAddress", "city": "Erinville"}
    o = receive(
        app,
        OrderHeader(
            external_id="REL-ERASE", related_parties=(Party(id="CUST-E", name="Erin Erasmus"),)
        ),
        build_item(
            "1",
            place=Place(id="SITE-E", name="Erin's flat"),
            service_extra={"place": [{"id": "SITE-E", "name": "Erin's flat"}, home]},
        ),
    )
    app.handle(BOB, cmd.Reject(o, "Erin asked us to wait"))
    catch_up(db)
    values = ("Erin's flat", "Erinville", "Erin asked us to wait")

    def held() -> str:
        return json.dumps([rows(db, name) for name in NEW])

    assert all(v in held() for v in values)
    erase_customer(
        db,
        "CUST-E",
        "dpo",
        rebuild=lambda d: maintenance.rebuild(d, event_mapper()),
        wait=0,
    )
    assert not [v for v in values if v in held()]
    assert of(rows(db, "order_item_place"), o, "place_id", "name") == [
        ("SITE-E", "[erased]"),
        (None, None),
    ]

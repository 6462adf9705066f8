"""The example queries of docs/reporting.md, run as a reporting tool would run them.

A realistic set of orders is built through the application (every lifecycle outcome the
read models distinguish), projected, and then every ```sql block of the document is executed
against PostgreSQL: each must run, and each must return rows on this data set. A few results
are checked against what the data set is known to contain.

The test uses a database of its own (on the server of the session's `pg_database`), so the
read-model tables it projects into start empty and see only these orders.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest
from builders import agent, fulfilment, id_created, manager, operator, upstream
from builders import item as build_item
from psycopg import sql
from psycopg.rows import dict_row
from serviceorders.bootstrap import build_application, build_projector, init_database
from serviceorders.domain import commands as cmd
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import (
    ItemAction,
    ItemState,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    ServiceRecord,
    SpecRef,
)
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "reporting.md"
SQL_BLOCK = re.compile(r"^```sql[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{2,6}[ \t]+(.+?)[ \t]*$", re.MULTILINE)


# ------------------------------------------------------------------------ the document
@dataclass(frozen=True)
class Query:
    heading: str  # the nearest heading above the block
    text: str
    line: int  # where the block starts in the document


def doc_queries(markdown: str) -> list[Query]:
    """Every ```sql fenced block of the document, with the heading it sits under."""
    found = []
    for match in SQL_BLOCK.finditer(markdown):
        before = markdown[: match.start()]
        headings = HEADING.findall(before)
        found.append(
            Query(
                heading=headings[-1] if headings else "(no heading)",
                text=match.group(1).strip(),
                line=before.count("\n") + 1,
            )
        )
    return found


MARKDOWN = DOC.read_text(encoding="utf-8")
QUERIES = doc_queries(MARKDOWN)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


def test_the_document_has_enough_example_queries() -> None:
    assert len(QUERIES) >= 10, f"only {len(QUERIES)} ```sql blocks in {DOC}"
    # No SQL block escapes the parser (indented, upper case, a space before the language).
    fences = re.findall(r"^[ \t]*```[ \t]*sql\b", MARKDOWN, re.IGNORECASE | re.MULTILINE)
    assert len(fences) == len(QUERIES), "a SQL block is fenced in a way the test does not read"
    for q in QUERIES:
        assert q.text, f"empty ```sql block at {DOC.name}:{q.line}"
        # One statement per block: a reporting tool runs a block as one query.
        assert ";" not in q.text.rstrip().rstrip(";"), (
            f"{DOC.name}:{q.line} ({q.heading}) holds more than one statement"
        )


# ------------------------------------------------------------------------ the data set
CRM, ALICE, BOB, CAROL, FULFIL = upstream(), agent(), manager(), manager("carol"), fulfilment()
OPS = operator()

ACME = Party(id="CUST-1001", name="Acme Logistics")
GLOBEX = Party(id="CUST-2002", name="Globex")
INITECH = Party(id="CUST-3003", name="Initech")

BERLIN = Place(id="SITE-BER-01", name="Berlin HQ")
HAMBURG = Place(id="SITE-HAM-02", name="Hamburg depot")
MUNICH = Place(id="SITE-MUC-03", name="Munich office")


def internet(
    item_id: str, site: Place | None, mbps: Any = 100, access: str = "fibre", **extra: Any
) -> OrderItem:
    return build_item(
        item_id,
        "internet-access",
        characteristics={"bandwidthMbps": mbps, "accessType": access, **extra},
        place=site,
    )


def router(item_id: str, site: Place | None, *, depends_on: tuple[str, ...] = ()) -> OrderItem:
    return build_item(
        item_id,
        "managed-router",
        characteristics={"model": "c1100"},
        place=site,
        depends_on=depends_on,
    )


def sdwan(item_id: str, site: Place, profile: str, role: str) -> OrderItem:
    return build_item(
        item_id,
        "sdwan-site",
        characteristics={"bandwidthProfile": profile, "siteRole": role},
        place=site,
    )


def header(
    external_id: str, customer: Party, category: str, priority: str | None, description: str
) -> OrderHeader:
    return OrderHeader(
        external_id=external_id,
        category=category,
        priority=priority,
        description=description,
        related_parties=(customer,),
    )


@dataclass
class DataSet:
    """What was built, to check query results against."""

    ids: dict[str, UUID] = field(default_factory=dict)  # external id (or "draft") -> order
    services: dict[str, str] = field(default_factory=dict)  # what it is -> service id
    states: dict[str, str] = field(default_factory=dict)  # external id -> expected state
    head: int = 0  # notification id of the last event (the log's head)


def build_orders(settings: Settings) -> DataSet:
    data = DataSet()
    app = build_application(settings)
    try:

        def receive(
            external_id: str,
            customer: Party,
            category: str,
            priority: str | None,
            description: str,
            *items: OrderItem,
        ) -> UUID:
            order_id, created = id_created(
                app.handle(
                    CRM,
                    cmd.ReceiveOrder(
                        header(external_id, customer, category, priority, description), tuple(items)
                    ),
                )
            )
            assert created
            data.ids[external_id] = order_id
            return order_id

        # Approved, fulfilled with a point of no return, completed.
        o = receive(
            "RPT-COMPLETED",
            ACME,
            "enterprise",
            "1",
            "Berlin and Hamburg roll-out",
            internet("1", BERLIN, 500),
            router("2", BERLIN, depends_on=("1",)),
            sdwan("3", HAMBURG, "large", "hub"),
        )
        app.handle(BOB, cmd.Approve(o, "capacity confirmed"))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1", ItemState.IN_PROGRESS))
        app.handle(FULFIL, cmd.ReachPointOfNoReturn(o, "fibre pulled"))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1", ItemState.COMPLETED))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "2", ItemState.COMPLETED))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "3", ItemState.COMPLETED))
        app.handle(BOB, cmd.AddNote(o, "customer informed"))
        data.states["RPT-COMPLETED"] = "completed"
        data.services["berlin-internet"] = service_id_for(o, "1")
        data.services["berlin-router"] = service_id_for(o, "2")
        data.services["hamburg-sdwan"] = service_id_for(o, "3")

        # A change order on what RPT-COMPLETED made: the Berlin line's bandwidth changed,
        # the Berlin router disconnected (the inventory's modify and delete).
        o = receive(
            "RPT-CHANGE",
            ACME,
            "enterprise",
            "2",
            "Berlin: less bandwidth, no router",
            build_item(
                "1",
                "internet-access",
                action=ItemAction.MODIFY,
                service_id=data.services["berlin-internet"],
                characteristics={"bandwidthMbps": 200, "accessType": "fibre"},
                place=BERLIN,
            ),
            build_item(
                "2",
                "managed-router",
                action=ItemAction.DELETE,
                service_id=data.services["berlin-router"],
                characteristics={"model": "c1100"},
                place=BERLIN,
            ),
        )
        app.handle(BOB, cmd.Approve(o))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1", ItemState.COMPLETED))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "2", ItemState.COMPLETED))
        data.states["RPT-CHANGE"] = "completed"

        # A service that existed before the engine, imported.
        app.handle(
            OPS,
            cmd.ImportService(
                ServiceRecord(
                    id="LEGACY-MUC-1",
                    name="Munich legacy line",
                    specification=SpecRef(id="internet-access"),
                    characteristics={"bandwidthMbps": 50, "accessType": "copper"},
                    places=(MUNICH,),
                    customer=INITECH,
                )
            ),
        )
        data.services["munich-legacy"] = "LEGACY-MUC-1"

        # Rejected in review.
        o = receive(
            "RPT-REJECTED",
            GLOBEX,
            "smb",
            "3",
            "Munich internet",
            internet("1", MUNICH, 100, "copper"),
        )
        app.handle(BOB, cmd.Reject(o, "duplicate of RPT-CANCELLED"))
        data.states["RPT-REJECTED"] = "rejected"

        # Approved by another manager; one item completes, the other fails: partial.
        o = receive(
            "RPT-PARTIAL",
            ACME,
            "enterprise",
            "2",
            "Hamburg upgrade",
            internet("1", HAMBURG, 1000),
            router("2", HAMBURG),
        )
        app.handle(CAROL, cmd.Approve(o))
        app.handle(FULFIL, cmd.ChangeItemStates.one(o, "1", ItemState.COMPLETED))
        app.handle(
            FULFIL, cmd.ChangeItemStates.one(o, "2", ItemState.FAILED, "router out of stock")
        )
        data.states["RPT-PARTIAL"] = "partial"
        data.services["hamburg-internet"] = service_id_for(o, "1")

        # Held, resumed, held again (a finished and an open spell in `held`).
        o = receive(
            "RPT-HELD",
            INITECH,
            "enterprise",
            "2",
            "Berlin copper line",
            internet("1", BERLIN, 200, "copper"),
        )
        app.handle(BOB, cmd.Approve(o))
        app.handle(FULFIL, cmd.Hold(o, "landlord access"))
        app.handle(FULFIL, cmd.Resume(o, "access granted"))
        app.handle(BOB, cmd.Hold(o, "civil works permit"))
        data.states["RPT-HELD"] = "held"

        # Cancelled through a cancellation request: requested, approved, carried out.
        o = receive("RPT-CANCELLED", GLOBEX, "smb", "3", "Munich fibre", internet("1", MUNICH, 100))
        app.handle(CAROL, cmd.Approve(o))
        app.handle(
            CRM,
            cmd.RequestCancellation(
                o, reason="customer moved", requested_date=datetime.now(UTC) + timedelta(days=7)
            ),
        )
        app.handle(BOB, cmd.ApproveCancellation(o, "nothing installed yet"))
        app.handle(FULFIL, cmd.Cancel(o, "cancellation done"))
        data.states["RPT-CANCELLED"] = "cancelled"

        # A denied cancellation request (back to inProgress), then waiting for information.
        o = receive(
            "RPT-DENIED",
            INITECH,
            "enterprise",
            "1",
            "Munich SD-WAN spoke",
            sdwan("1", MUNICH, "medium", "spoke"),
        )
        app.handle(BOB, cmd.Approve(o))
        app.handle(CRM, cmd.RequestCancellation(o, reason="budget cut"))
        app.handle(CAROL, cmd.DenyCancellation(o, "installation already scheduled"))
        app.handle(FULFIL, cmd.RequestInformation(o, "site contact phone number"))
        data.states["RPT-DENIED"] = "pending"

        # In review, flagged: a value not allowed, an unknown characteristic, no site.
        receive(
            "RPT-FLAGGED",
            ACME,
            "enterprise",
            "1",
            "Berlin internet, odd values",
            internet("1", BERLIN, 123, colour="red"),
            router("2", None),
            # nested in item 1 (TMF641 serviceOrderItem inside an item)
            build_item(
                "1.1",
                "managed-router",
                characteristics={"model": "c1100"},
                place=BERLIN,
                parent="1",
            ),
        )
        data.states["RPT-FLAGGED"] = "acknowledged"

        # In review, clean.
        receive(
            "RPT-REVIEW", GLOBEX, "smb", "2", "Hamburg small office", internet("1", HAMBURG, 50)
        )
        data.states["RPT-REVIEW"] = "acknowledged"

        # A cancellation requested while in review: awaits a manager's decision.
        o = receive(
            "RPT-ASSESSING",
            INITECH,
            "enterprise",
            "2",
            "Berlin second line",
            internet("1", BERLIN, 100),
        )
        app.handle(CRM, cmd.RequestCancellation(o, reason="ordered twice"))
        data.states["RPT-ASSESSING"] = "assessingCancellation"

        # Captured by hand, not submitted: a draft without an external id.
        o = app.handle(
            ALICE,
            cmd.DraftOrder(OrderHeader(category="smb", priority="3", related_parties=(GLOBEX,))),
        ).order.id
        app.handle(ALICE, cmd.AddLine(o, internet("1", MUNICH, 20)))
        data.ids["draft"] = o
        data.states["draft"] = "draft"

        data.head = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    return data


# ------------------------------------------------------------------------ the database
@dataclass(frozen=True)
class Reporting:
    conn: psycopg.Connection[Any]
    data: DataSet


def _with_db(server_url: str, dbname: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(("postgresql", parts.netloc, "/" + dbname, parts.query, ""))


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """A new database on the server, initialised; yields its URL, drops it afterwards."""
    dbname = f"so_report_{secrets.token_hex(6)}"
    with psycopg.connect(_with_db(server, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        url = _with_db(server, dbname)
        init_database(Settings.from_env({"DATABASE_URL": url}))
        yield url
    finally:
        with psycopg.connect(_with_db(server, "postgres"), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def project(settings: Settings) -> None:
    projector = build_projector(settings)
    try:
        projector.catch_up()
        assert {s.lag for s in projector.status()} == {0}
    finally:
        projector.db.close()


@pytest.fixture(scope="module")
def reporting(pg_database: Any) -> Iterator[Reporting]:
    """A database of its own with the data set, projected; a plain connection to it."""
    with scratch_database(pg_database.server_url) as url:
        settings = Settings.from_env({"DATABASE_URL": url})
        data = build_orders(settings)
        project(settings)
        with psycopg.connect(url, autocommit=True) as conn:
            yield Reporting(conn, data)


def run(conn: psycopg.Connection[Any], query: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query)  # type: ignore[arg-type]
        return cur.fetchall()


def find(heading_words: str) -> Query:
    """The one query whose heading contains `heading_words` (case-insensitive)."""
    matches = [q for q in QUERIES if heading_words.lower() in q.heading.lower()]
    assert len(matches) == 1, (
        f"expected one query headed '...{heading_words}...', found {[q.heading for q in matches]}"
    )
    return matches[0]


# ------------------------------------------------------------------------ every query
@pytest.mark.parametrize("query", QUERIES, ids=[f"L{q.line}-{slug(q.heading)}" for q in QUERIES])
def test_example_query_runs_and_returns_rows(reporting: Reporting, query: Query) -> None:
    try:
        rows = run(reporting.conn, query.text)
    except psycopg.Error as e:
        pytest.fail(f"{DOC.name}:{query.line} ({query.heading}) failed: {e}\n{query.text}")
    assert rows, f"{DOC.name}:{query.line} ({query.heading}) returned no rows\n{query.text}"


# ------------------------------------------------------------------ specific results
def test_orders_by_state_counts_the_orders_built(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Orders by state").text)
    expected: dict[str, int] = {}
    for state in reporting.data.states.values():
        expected[state] = expected.get(state, 0) + 1
    assert {r["state"]: r["orders"] for r in rows} == expected
    assert sum(r["orders"] for r in rows) == len(reporting.data.ids)


def test_review_queue_is_by_priority_then_oldest(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("review queue: highest priority").text)
    assert [(r["kind"], r["external_id"]) for r in rows] == [
        ("approval", "RPT-FLAGGED"),  # priority 1
        ("approval", "RPT-REVIEW"),  # priority 2, submitted before the next
        ("cancellation", "RPT-ASSESSING"),
    ]  # priority 2, cancellation requested last
    assert all(r["age"] > timedelta(0) for r in rows)
    assert rows[2]["reason"] == "ordered twice" and rows[2]["submitted_by"] == "crm"


def test_flagged_queue_items_list_each_flag(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("flagged for review").text)
    assert {(r["external_id"], r["item_id"], r["flag"], r["characteristic"]) for r in rows} == {
        ("RPT-FLAGGED", "1", "value_not_allowed", "bandwidthMbps"),
        ("RPT-FLAGGED", "1", "unknown_characteristic", "colour"),
        ("RPT-FLAGGED", "2", "missing_place", None),
    }


def test_approval_turnaround_counts_every_approval(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Approval turnaround").text)
    # Six orders were approved; a denied cancellation returning to inProgress is not one.
    assert sum(r["approvals"] for r in rows) == 6
    assert all(r["median_seconds"] > 0 for r in rows)


def test_decisions_per_manager(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Review decisions per manager").text)
    assert {r["manager"]: (r["approved"], r["rejected"]) for r in rows} == {
        "bob": (4, 1),
        "carol": (2, 0),
    }


def test_time_in_held_has_a_finished_and_an_ongoing_spell(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Time spent in held").text)
    assert [(r["external_id"], r["spells"], r["ongoing_spells"]) for r in rows] == [
        ("RPT-HELD", 2, 1)
    ]
    assert rows[0]["seconds_held"] > 0


def test_orders_per_site(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Orders per site").text)
    assert {r["site"]: r["orders"] for r in rows} == {
        "SITE-BER-01": 5,
        "SITE-HAM-02": 3,
        "SITE-MUC-03": 3,
        "(no site)": 1,
    }


def test_daily_submissions_sum_to_the_orders_submitted(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("entering acknowledged per UTC day").text)
    assert len(rows) == 30
    submitted = sum(1 for state in reporting.data.states.values() if state != "draft")
    assert sum(r["orders_submitted"] for r in rows) == submitted
    today = datetime.now(UTC).date()
    assert rows[-1]["day"] in (today, today - timedelta(days=1))


def test_cancellation_outcomes(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Cancellation requests and their outcome").text)
    found = {r["external_id"]: (r["request_state"], r["outcome"], r["order_state"]) for r in rows}
    assert found == {
        "RPT-CANCELLED": ("done", "approved", "cancelled"),
        "RPT-DENIED": ("done", "denied", "pending"),
        "RPT-ASSESSING": ("accepted", "awaiting decision", "assessingCancellation"),
    }
    cancelled = next(r for r in rows if r["external_id"] == "RPT-CANCELLED")
    assert cancelled["effective_cancellation_date"] is not None
    assert cancelled["requested_cancellation_date"] is not None
    denied = next(r for r in rows if r["external_id"] == "RPT-DENIED")
    assert denied["decision_reason"] == "installation already scheduled"
    assert denied["effective_cancellation_date"] is None


def test_partial_orders_and_their_failed_items(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Partially completed orders").text)
    assert [(r["external_id"], r["item_id"], r["specification_id"]) for r in rows] == [
        ("RPT-PARTIAL", "2", "managed-router")
    ]


def test_outcomes_relationships_and_nested_items(reporting: Reporting) -> None:
    failed = run(reporting.conn, find("Failed items and fulfilment's reasons").text)
    assert [(r["external_id"], r["item_id"], r["reason"]) for r in failed] == [
        ("RPT-PARTIAL", "2", "router out of stock")
    ]
    codes = {r["code"]: r["outcomes"] for r in run(reporting.conn, find("per code").text)}
    assert codes == {"rejected": 1, "item_failed": 1, "cancellation_denied": 1}
    related = run(reporting.conn, find("Relationships: orders to other orders").text)
    assert [
        (r["external_id"], r["of"], r["relationship_type"], r["related_to"]) for r in related
    ] == [("RPT-COMPLETED", "2", "dependency", "1")]
    nested = run(reporting.conn, find("Items nested in other items").text)
    assert [(r["external_id"], r["item_id"], r["parent_id"]) for r in nested] == [
        ("RPT-FLAGGED", "1.1", "1")
    ]


def test_json_queries_find_the_characteristic_values(reporting: Reporting) -> None:
    copper = run(reporting.conn, find("characteristic value (containment").text)
    assert {r["external_id"] for r in copper} == {"RPT-REJECTED", "RPT-HELD"}
    fast = run(reporting.conn, find("at least 500 Mbit/s").text)
    assert {(r["external_id"], r["bandwidth_mbps"]) for r in fast} == {
        ("RPT-COMPLETED", 500),
        ("RPT-PARTIAL", 1000),
    }


def test_projection_lag_is_zero_after_catching_up(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Projection freshness").text)
    assert len(rows) == len(PROJECTIONS)  # every read model, the notification outbox too
    assert {(r["position"], r["head"], r["events_behind"]) for r in rows} == {
        (reporting.data.head, reporting.data.head, 0)
    }


def test_history_of_a_received_order_starts_in_draft(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Recent activity").text)
    held = [(r["from_state"], r["to_state"]) for r in rows if r["order_ref"] == "RPT-HELD"]
    assert held == [
        (None, "draft"),
        ("draft", "acknowledged"),
        ("acknowledged", "inProgress"),
        ("inProgress", "held"),
        ("held", "inProgress"),
        ("inProgress", "held"),
    ]
    assert all(r["seconds_in_previous_state"] is None for r in rows if r["from_state"] is None)


# ------------------------------------------------------------------ the inventory
def test_active_services_per_customer_site_and_specification(reporting: Reporting) -> None:
    """Services made by completed add items (RPT-COMPLETED, the completed item of
    RPT-PARTIAL), one disconnected by RPT-CHANGE, one imported."""
    per_customer = run(reporting.conn, find("Active services per customer").text)
    assert [
        (r["customer"], r["active_services"], r["sites"], r["imported"]) for r in per_customer
    ] == [
        ("CUST-1001", 3, 2, 0),  # Berlin line, Hamburg SD-WAN and line (the router is gone)
        ("CUST-3003", 1, 1, 1),
    ]
    per_site = run(reporting.conn, find("Active services per site").text)
    assert {r["site"]: (r["site_name"], r["active_services"]) for r in per_site} == {
        "SITE-HAM-02": ("Hamburg depot", 2),
        "SITE-BER-01": ("Berlin HQ", 1),
        "SITE-MUC-03": ("Munich office", 1),
    }
    per_spec = run(reporting.conn, find("Active services per specification").text)
    assert {r["specification_id"]: (r["active_services"], r["total_mbps"]) for r in per_spec} == {
        "internet-access": (3, 200 + 1000 + 50),  # the Berlin line as RPT-CHANGE left it
        "sdwan-site": (1, None),
    }


def test_service_changes_per_day(reporting: Reporting) -> None:
    rows = run(reporting.conn, find("Services created, imported, modified").text)
    totals = {
        k: sum(r[k] or 0 for r in rows) for k in ("created", "imported", "modified", "terminated")
    }
    assert totals == {"created": 4, "imported": 1, "modified": 1, "terminated": 1}


def test_the_services_of_a_customer_at_a_site_and_the_orders_that_made_them(
    reporting: Reporting,
) -> None:
    rows = run(reporting.conn, find("Which services a customer has at a site").text)
    assert [
        (
            r["service_id"],
            r["specification_id"],
            r["created_by_order"],
            r["created_item_id"],
            r["last_changed_by_order"],
            r["last_changed_by_item"],
        )
        for r in rows
    ] == [
        (
            reporting.data.services["berlin-internet"],
            "internet-access",
            "RPT-COMPLETED",
            "1",
            "RPT-CHANGE",
            "1",
        )
    ]
    assert rows[0]["characteristics"] == {"bandwidthMbps": 200, "accessType": "fibre"}
    changes = run(reporting.conn, find("How orders changed a customer's services").text)
    assert [
        (r["service_id"], r["order_external_id"], r["changed"], r["value_before"], r["value_after"])
        for r in changes
    ] == [(reporting.data.services["berlin-internet"], "RPT-CHANGE", "bandwidthMbps", 500, 200)]


# ------------------------------------------------------------------ time zones
def test_date_only_requested_dates_are_midnight_utc_whatever_the_time_zone(
    pg_database: Any,
) -> None:
    with scratch_database(pg_database.server_url) as url:
        app = build_application(Settings.from_env({"DATABASE_URL": url}))
        try:
            app.handle(
                CRM,
                cmd.ReceiveOrder(
                    OrderHeader(external_id="RPT-TZ", requested_start_date=date(2025, 1, 15)),
                    (internet("1", BERLIN),),
                ),
            )
        finally:
            app.close()
        # The projector's session runs in another time zone than the server's default.
        zoned = url + "?options=" + quote("-c TimeZone=America/New_York")
        project(Settings.from_env({"DATABASE_URL": zoned}))
        with psycopg.connect(url, autocommit=True) as conn:
            stored = conn.execute("SELECT requested_start_date FROM order_summary").fetchone()
        assert stored is not None
        assert stored[0] == datetime(2025, 1, 15, tzinfo=UTC)

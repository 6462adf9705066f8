"""Personal data is sealed in the event log with a key per customer; erasing the customer
deletes the key: the data becomes unreadable everywhere while every hash chain still
verifies (docs/audit.md, "Erasing personal data")."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from builders import id_created, item
from serviceorders.audit.erasure import erase_customer
from serviceorders.bootstrap import build_projector, event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import InvalidCommand
from serviceorders.domain.privacy import ERASED, TOKEN_PREFIX
from serviceorders.domain.values import (
    CommandContext,
    HeaderChange,
    OrderHeader,
    Party,
    Place,
    Role,
)
from serviceorders.projections.maintenance import rebuild
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

UPSTREAM = CommandContext.for_actor("crm", Role.UPSTREAM)
NAMES = ("Alice Smith", "alice@example.com", "Alice's home, 1 Main St")


def _erase(settings: Settings, customer_id: str, **kw: Any) -> Any:
    """erase_customer on a connection of its own, rebuilding the read models (as the CLI)."""
    db = open_read_db(settings)
    try:
        return erase_customer(db, customer_id, rebuild=lambda d: rebuild(d, event_mapper()), **kw)
    finally:
        db.close()


def _order(
    app: ServiceOrders, external: str, customer: str, name: str, contact: str, place: str
) -> UUID:
    header = OrderHeader(
        external_id=external,
        notification_contact=contact,
        related_parties=(Party(id=customer, name=name),),
    )
    line = item("1", place=Place(id="S1", name=place))
    order_id, created = id_created(app.handle(UPSTREAM, cmd.ReceiveOrder(header, (line,))))
    assert created
    return order_id


def _raw_states(settings: Settings) -> list[bytes]:
    db = open_read_db(settings)
    try:
        table = "serviceorders_events" if db.dialect == "postgres" else "stored_events"
        return [bytes(r[0]) for r in db.fetchall(f"SELECT state FROM {table}")]
    finally:
        db.close()


def _read_models(settings: Settings) -> dict[str, Any]:
    db = open_read_db(settings)
    try:
        return {
            "summary": sorted(db.fetchall("SELECT customer_id, customer_name FROM order_summary")),
            "items": sorted(db.fetchall("SELECT place_id, place_name FROM order_item")),
            "docs": [str(r[0]) for r in db.fetchall("SELECT document FROM order_document")],
            "outbox": [str(r[0]) for r in db.fetchall("SELECT payload FROM notification_outbox")],
        }
    finally:
        db.close()


@pytest.fixture
def two_customers(app: ServiceOrders, settings: Settings) -> tuple[UUID, UUID]:
    alice = _order(app, "A-1", "CUST-A", *NAMES)
    bob = _order(app, "B-1", "CUST-B", "Bob Jones", "bob@example.com", "Bob's shop, 2 High St")
    build_projector(settings).catch_up()
    return alice, bob


def test_personal_values_are_stored_sealed_and_read_revealed(
    app: ServiceOrders, settings: Settings, two_customers: tuple[UUID, UUID]
) -> None:
    alice, _ = two_customers
    raw = b"".join(_raw_states(settings))
    for value in NAMES:
        assert value.encode() not in raw  # nothing personal in the event store at rest
    assert raw.count(TOKEN_PREFIX.encode()) >= 6
    order = app.get_order(alice)
    assert order.header.related_parties[0].name == "Alice Smith"
    assert order.header.notification_contact == "alice@example.com"
    assert order.items["1"].place.name == "Alice's home, 1 Main St"
    models = _read_models(settings)
    assert ("CUST-A", "Alice Smith") in models["summary"]
    assert ("S1", "Alice's home, 1 Main St") in models["items"]
    assert any("Alice Smith" in d for d in models["docs"])


def test_commands_answer_with_revealed_values(
    app: ServiceOrders, settings: Settings, two_customers: tuple[UUID, UUID]
) -> None:
    alice, _ = two_customers
    revised = app.handle(
        UPSTREAM, cmd.Revise(alice, header=HeaderChange(notification_contact="a2@ex.com"))
    ).order
    assert revised.header.notification_contact == "a2@ex.com"
    assert revised.header.related_parties[0].name == "Alice Smith"
    assert b"a2@ex.com" not in b"".join(_raw_states(settings))
    assert app.get_order(alice).header.notification_contact == "a2@ex.com"


def test_erasing_a_customer_makes_its_data_unreadable_and_keeps_the_chain(
    app: ServiceOrders, settings: Settings, two_customers: tuple[UUID, UUID], chain_tools: Any
) -> None:
    alice, bob = two_customers
    before = {o: chain_tools.verify(app, o) for o in (alice, bob)}
    raw_before = sorted(_raw_states(settings))

    done = _erase(settings, "CUST-A", actor="dpo", reason="GDPR art. 17", wait=0)
    assert done.orders == [alice] and done.had_key

    assert sorted(_raw_states(settings)) == raw_before  # not one stored byte changed
    assert {o: chain_tools.verify(app, o) for o in (alice, bob)} == before
    app.sealer.forget("CUST-A")  # this process cached the key (at most CACHE_SECONDS)
    order = app.get_order(alice)
    assert order.header.related_parties[0].name == ERASED
    assert order.header.related_parties[0].id == "CUST-A"  # ids are not personal values
    assert order.header.notification_contact == ERASED
    assert order.items["1"].place.name == ERASED
    assert app.get_order(bob).header.related_parties[0].name == "Bob Jones"

    models = _read_models(settings)
    assert ("CUST-A", ERASED) in models["summary"] and ("CUST-B", "Bob Jones") in models["summary"]
    text = " ".join(models["docs"] + models["outbox"])
    for value in NAMES:
        assert value not in text
    assert "Bob Jones" in text

    db = open_read_db(settings)
    try:
        recorded = db.fetchall("SELECT scope, erased_by, reason, orders FROM pii_erasure")
    finally:
        db.close()
    assert recorded == [("CUST-A", "dpo", "GDPR art. 17", 1)]


def test_no_new_personal_data_for_an_erased_customer(
    app: ServiceOrders, settings: Settings, two_customers: tuple[UUID, UUID]
) -> None:
    _erase(settings, "CUST-A", actor="dpo", wait=0)
    app.sealer.forget("CUST-A")
    with pytest.raises(InvalidCommand, match="erased"):
        _order(app, "A-2", "CUST-A", "Alice Smith", "alice@example.com", "home")


def test_the_erase_command_asks_records_and_reports(
    app: ServiceOrders,
    settings: Settings,
    two_customers: tuple[UUID, UUID],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from click.testing import CliRunner
    from serviceorders.audit import erasure
    from serviceorders.cli import main

    alice, _ = two_customers
    real = erasure.erase_customer
    monkeypatch.setattr(erasure, "erase_customer", lambda *a, **kw: real(*a, **{**kw, "wait": 0}))
    url = (
        f"sqlite:///{settings.database.dbname}"
        if settings.database.kind == "sqlite"
        else settings.database.url(with_password=True)
    )
    runner = CliRunner()
    refused = runner.invoke(
        main,
        ["--database-url", url, "audit", "erase", "--customer", "CUST-A", "--actor", "dpo"],
        input="n\n",
    )
    assert refused.exit_code == 1  # not confirmed: nothing erased
    db = open_read_db(settings)
    try:
        assert db.fetchall("SELECT scope FROM pii_erasure") == []
    finally:
        db.close()
    done = runner.invoke(
        main,
        [
            "--database-url",
            url,
            "audit",
            "erase",
            "--customer",
            "CUST-A",
            "--actor",
            "dpo",
            "--reason",
            "ticket 42",
            "--yes",
        ],
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["orders"] == [str(alice)] and report["hadKey"] is True
    app.sealer.forget("CUST-A")
    assert app.get_order(alice).header.related_parties[0].name == ERASED


def test_the_key_store_waits_out_a_database_restart(app: ServiceOrders, settings: Settings) -> None:
    """While the server cannot be reached (a restart), the key store tries again every
    0.2 s for a few seconds instead of failing the order in hand; other errors are not
    retried more than once."""
    import psycopg
    from serviceorders.audit.pii import KeyStore

    refusals = {"left": 4}

    def connect() -> Any:
        if refusals["left"]:
            refusals["left"] -= 1
            raise psycopg.OperationalError("connection refused (the server is restarting)")
        return open_read_db(settings)

    store = KeyStore(connect)
    try:
        key = store.get_or_create("CUST-RESTART")
        assert key is not None and refusals["left"] == 0
        assert store.get("CUST-RESTART") == (key, False)
    finally:
        store.close()

    calls = {"n": 0}

    def broken() -> Any:
        calls["n"] += 1
        raise ValueError("not a connection problem")

    with pytest.raises(ValueError):
        KeyStore(broken).get("CUST-X")
    assert calls["n"] == 2


def test_erasing_an_order_without_a_customer_by_its_scope_deletes_its_snapshots(
    app: ServiceOrders, settings: Settings
) -> None:
    """An order naming no customer seals under `order:<external id>` (privacy.scope_of):
    `audit erase --customer order:<external id>` finds that order, so its snapshots (which
    hold revealed values) go with the key, as a customer's do (docs/audit.md)."""
    header = OrderHeader(external_id="NOCUST-1", notification_contact="nobody@example.com")
    order_id, _ = id_created(app.handle(UPSTREAM, cmd.ReceiveOrder(header, (item("1"),))))
    other = _order(app, "B-1", "CUST-B", "Bob Jones", "bob@example.com", "shop")
    app.take_snapshot(order_id)
    app.take_snapshot(other)
    build_projector(settings).catch_up()

    done = _erase(settings, "order:NOCUST-1", actor="dpo", wait=0)
    assert done.orders == [order_id] and done.had_key and done.snapshots_deleted == 1
    app.sealer.forget("order:NOCUST-1")
    assert app.get_order(order_id).header.notification_contact == ERASED
    assert app.get_order(other).header.notification_contact == "bob@example.com"

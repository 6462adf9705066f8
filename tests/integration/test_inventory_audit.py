"""The inventory under audit (issue 20): `audit verify` covers the services' events (their
own hash chains, in the same log), and erasing a customer erases the personal data its
services hold, while every chain still verifies."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
import pytest
from builders import item
from serviceorders.audit.erasure import erase_customer
from serviceorders.audit.verify import verify
from serviceorders.bootstrap import build_application, event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.chain import event_hash
from serviceorders.domain.privacy import ERASED
from serviceorders.domain.service import service_id_for, service_key
from serviceorders.domain.values import (
    CommandContext,
    ItemState,
    OrderHeader,
    Party,
    Place,
    Role,
    ServiceRecord,
    SpecRef,
)
from serviceorders.projections.maintenance import rebuild
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

UPSTREAM = CommandContext.for_actor("crm", Role.UPSTREAM)
MANAGER = CommandContext.for_actor("bob", Role.MANAGER)
FULFILMENT = CommandContext.for_actor("fulfil-1", Role.FULFILMENT)
OPERATOR = CommandContext.for_actor("ops", Role.OPERATOR)
NAMES = (b"Alice Smith", b"1 Main St", b"Alice HQ line", b"Old Mill Lane")


def _service_made_by_an_order(app: ServiceOrders) -> str:
    header = OrderHeader(
        external_id="inv-audit-1", related_parties=(Party(id="CUST-A", name="Alice Smith"),)
    )
    line = item("1", place=Place(id="S1", name="1 Main St"), service_name="Alice HQ line")
    order_id = app.handle(UPSTREAM, cmd.ReceiveOrder(header, (line,))).order_id
    app.handle(MANAGER, cmd.Approve(order_id))
    app.handle(
        FULFILMENT,
        cmd.ChangeItemStates(order_id, (cmd.ItemStateChange("1", ItemState.COMPLETED),)),
    )
    return service_id_for(order_id, "1")


def _imported(app: ServiceOrders) -> str:
    record = ServiceRecord(
        id="LEGACY-A",
        specification=SpecRef(id="internet-access"),
        places=(Place(id="S2", name="Old Mill Lane"),),
        customer=Party(id="CUST-A", name="Alice Smith", role="customer"),
    )
    app.handle(OPERATOR, cmd.ImportService(record))
    return record.id


def _rows(settings: Settings, key: UUID) -> list[tuple[int, str, dict[str, Any]]]:
    db = open_read_db(settings)
    try:
        events = db.events_table
        param = key if db.dialect == "postgres" else key.hex
        return [
            (int(v), t, orjson.loads(bytes(s)))
            for v, t, s in db.fetchall(
                f"SELECT originator_version, topic, state FROM {events} WHERE originator_id = %s "
                "ORDER BY originator_version",
                (param,),
            )
        ]
    finally:
        db.close()


def _set_state(settings: Settings, key: UUID, version: int, state: dict[str, Any]) -> None:
    db = open_read_db(settings)
    try:
        param = key if db.dialect == "postgres" else key.hex
        db.execute(
            f"UPDATE {db.events_table} SET state = %s WHERE originator_id = %s "
            "AND originator_version = %s",
            (orjson.dumps(state), param, version),
        )
    finally:
        db.close()


def _verify(settings: Settings) -> Any:
    db = open_read_db(settings)
    try:
        return verify(db)
    finally:
        db.close()


def test_audit_verify_covers_the_services_events(app: ServiceOrders, settings: Settings) -> None:
    made, imported = _service_made_by_an_order(app), _imported(app)
    report = _verify(settings)
    assert report.ok, report.lines()
    assert report.orders == 3  # one order and two services: every chain in the log
    key = service_key(made)
    rows = _rows(settings, key)
    assert [t.rsplit(":", 1)[1] for _, t, _ in rows] == ["ServiceCreated"]
    assert rows[0][1].startswith("serviceorders.service:")
    assert rows[0][2]["hash"] == event_hash(rows[0][1], key, 1, rows[0][2])
    # an altered characteristic of the service's event: found, naming the service's chain
    state = rows[0][2]
    state["characteristics"]["bandwidthMbps"] = 10_000
    _set_state(settings, key, 1, state)
    report = _verify(settings)
    assert not report.ok
    assert {oid: (p.version, p.kind) for oid, p in report.broken_orders().items()} == {
        str(key): (1, "altered")
    }
    assert imported == "LEGACY-A"


def test_erasing_the_customer_erases_its_services_personal_data(
    app: ServiceOrders, settings: Settings
) -> None:
    made, imported = _service_made_by_an_order(app), _imported(app)
    for key in (service_key(made), service_key(imported)):
        for _, _, state in _rows(settings, key):
            raw = orjson.dumps(state)
            assert not any(name in raw for name in NAMES), raw  # sealed in the log
    assert app.get_service(made).name == "Alice HQ line"  # revealed for readers
    db = open_read_db(settings)
    try:
        erase_customer(
            db, "CUST-A", rebuild=lambda d: rebuild(d, event_mapper()), actor="dpo", wait=0
        )
    finally:
        db.close()
    fresh = build_application(settings)  # no cached key
    try:
        service = fresh.get_service(made)
        assert (service.name, service.places[0].name, service.customer.name) == (ERASED,) * 3
        legacy = fresh.get_service(imported)
        assert (legacy.places[0].name, legacy.customer.name) == (ERASED, ERASED)
        assert service.characteristics  # not personal data: kept
    finally:
        fresh.close()
    assert _verify(settings).ok  # no stored byte changed

"""After `audit erase`, none of the customer's values is left in the database or in `audit
export` (issue 19, acceptance 3; docs/audit.md, "What erasure reaches").

A customer with values found nowhere else (its name, a contact, a place's name and address
by value, notes, descriptions, extension attributes, a service-level related party, a
rejection reason) sends orders through every door: REST (create, PATCH, a rejection), Kafka
(create, revision, a refused create and a refused revision: dead letters), and the hub
delivers the notifications. Then `serviceorders audit erase`, then a scan of EVERY column
of every table (text, json, bytea, any type read as text; bytes decoded leniently) and of
the export. Before erasure the same scan finds the values (it is not blind)."""

from __future__ import annotations

import http.server
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import api_keys, tmf_item, tmf_router, wait_for
from click.testing import CliRunner
from fastapi.testclient import TestClient
from serviceorders.api.app import create_app
from serviceorders.api.auth import Authenticator
from serviceorders.bootstrap import (
    build_api_context,
    build_application,
    build_projector,
    init_database,
    open_read_db,
)
from serviceorders.cli import main
from serviceorders.consumers import envelope as env
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import envelope, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.notifications.delivery import start_worker
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
HUB = "/tmf-api/serviceOrdering/v4/hub"
CUSTOMER = "CUST-ERASE-SCAN"
# Each value is found nowhere else in the code or fixtures: a hit is a leak of this test's.
VALUES = {
    "name": "Quillon Ravensworth-Oyelaran",
    "contact": "quillon.ravensworth@oyelaran.example",
    "place name": "Ravensworth Manor Annex",
    "street": "Quillonstraat Ravenhof",
    "city": "Oyelaranbury",
    "note": "Gate code 7731 ask for Quillon",
    "note author": "Quillon Notetaker",
    "description": "Move of the Ravensworth household",
    "patched description": "Second home of the Ravensworths",
    "patched note": "Quillon prefers mornings",
    "extension": "QRV-PRIVATE-7731",
    "service party": "Ophelia Quillontech",
    "item extension": "Quillon appointment slot",
    "rejection reason": "Quillon Ravensworth withdrew consent",
    "kafka description": "Ravensworth branch office by Kafka",
    "kafka note": "Kafka note for Quillon",
    "revision note": "Revised by Quillon on Kafka",
    "dead create name": "Quillonia Deadletter-Ravensworth",
    "dead revision note": "Quillon dead revision note",
    "external reference": "Quillon CRM reference name",
    "appointment": "Quillon visit on the terrace",
    "service note": "Service note about Quillon",
}


def customer_body(external_id: str, *, description: str = VALUES["description"]) -> dict[str, Any]:
    place = {
        "id": "QRV-SITE",
        "name": VALUES["place name"],
        "@type": "GeographicAddress",
        "streetName": VALUES["street"],
        "city": VALUES["city"],
        "country": "NL",
    }
    first = tmf_item("1", place=place, **{"@type": "ServiceOrderItem"})
    first["service"]["relatedParty"] = [
        {"id": "TECH-9", "name": VALUES["service party"], "role": "technician"}
    ]
    first["service"]["note"] = [{"text": VALUES["service note"]}]
    first["x_appointmentNote"] = VALUES["item extension"]
    first["appointment"] = {"id": "APT-1", "description": VALUES["appointment"]}
    return {
        "externalId": external_id,
        "description": description,
        "category": "enterprise",
        "priority": "2",
        "notificationContact": VALUES["contact"],
        "relatedParty": [{"id": CUSTOMER, "name": VALUES["name"], "role": "customer"}],
        "note": [{"text": VALUES["note"], "author": VALUES["note author"]}],
        "x_customerReference": VALUES["extension"],
        "externalReference": [
            {"name": VALUES["external reference"], "externalReferenceType": "crm"}
        ],
        "serviceOrderItem": [first, tmf_router("2", "1", ("QRV-SITE", VALUES["place name"]))],
        "@type": "ServiceOrder",
    }


class Listener:
    """A hub listener on 127.0.0.1 that accepts every notification."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/so"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.stop()


def columns_of(db: ReadDb) -> dict[str, list[str]]:
    """Every table of the database and all its columns (whatever their type: text, json,
    bytes, arrays, and the rest, read as text, so that no column is left out)."""
    if db.dialect == "postgres":
        rows = db.fetchall(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        )
    else:
        rows = []
        for (table,) in db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'"):
            rows += [(table, c[1], c[2]) for c in db.fetchall(f"PRAGMA table_info({table})")]
    found: dict[str, list[str]] = {}
    for table, column, _ in rows:
        found.setdefault(str(table), []).append(str(column))
    return found


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def scan(db: ReadDb) -> dict[str, set[str]]:
    """Which of VALUES each table.column holds (only those holding any)."""
    hits: dict[str, set[str]] = {}
    for table, columns in columns_of(db).items():
        quoted = ", ".join(f'"{c}"' for c in columns)
        for row in db.fetchall(f'SELECT {quoted} FROM "{table}"'):
            for column, value in zip(columns, row, strict=True):
                text = as_text(value)
                for label, needle in VALUES.items():
                    if needle in text:
                        hits.setdefault(f"{table}.{column}", set()).add(label)
    return hits


def kafka(settings: Settings, db: ReadDb, *messages: tuple[bytes, bytes]) -> None:
    app = build_application(settings)
    try:
        stored = IntakeStore(db).positions(settings.inbound_topic)
        start = stored.get(0, 0)
        Intake(app, IntakeStore(db), settings.events_topic).process(
            [
                Message(settings.inbound_topic, 0, start + n, key, value)
                for n, (key, value) in enumerate(messages)
            ],
            {(settings.inbound_topic, 0): stored.get(0)},
        )
    finally:
        app.close()


def test_after_audit_erase_no_table_and_no_export_holds_the_customers_values(
    settings: Settings, listener: Listener, tmp_path: Path
) -> None:
    init_database(settings)
    settings = settings.model_copy(
        update={"hub_allowed_hosts": "127.0.0.1", "hub_poll_seconds": 0.05}
    )
    keys = api_keys()
    ctx = build_api_context(settings, Authenticator(list(keys.values())))

    def auth(role: str, **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[role].key}", **more}

    db = open_read_db(settings)
    stopping = threading.Event()
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            hub = client.post(HUB, json={"callback": listener.url}, headers=auth("admin"))
            assert hub.status_code == 201, hub.text
            # REST: a create, a PATCH, and a second order rejected with a reason
            created = client.post(
                ORDERS, json=customer_body("QRV-REST-1"), headers=auth("integrator")
            )
            assert created.status_code == 201, created.text
            order_id = created.json()["id"]
            patched = client.patch(
                f"{ORDERS}/{order_id}",
                json={
                    "description": VALUES["patched description"],
                    "note": [{"text": VALUES["patched note"]}],
                },
                headers=auth("integrator", **{"Content-Type": "application/merge-patch+json"}),
            )
            assert patched.status_code == 200, patched.text
            second = client.post(
                ORDERS, json=customer_body("QRV-REST-2"), headers=auth("integrator")
            )
            assert second.status_code == 201, second.text
            second_id = second.json()["id"]
            etag = client.get(f"/api/v1/orders/{second_id}", headers=auth("manager"))
            etag = etag.headers["etag"]
            rejected = client.post(
                f"/api/v1/orders/{second_id}/reject",
                json={"reason": VALUES["rejection reason"]},
                headers=auth("manager", **{"If-Match": etag}),
            )
            assert rejected.status_code == 200, rejected.text
            got = client.get(f"{ORDERS}/{order_id}", headers=auth("admin")).text
            for label in ("name", "place name", "street", "extension", "service party"):
                assert VALUES[label] in got, label  # stored, and read back revealed

        # Kafka: a create, its revision; a refused create and a refused revision
        body = customer_body("QRV-KAFKA-1", description=VALUES["kafka description"])
        body["note"] = [{"text": VALUES["kafka note"]}]
        revision = {
            "externalId": "QRV-KAFKA-1",
            "note": [{"text": VALUES["revision note"]}],
        }
        kafka(
            settings,
            db,
            (b"QRV-KAFKA-1", event("k-create", env.CREATE, {"serviceOrder": body})),
        )
        build_projector(settings).catch_up()  # the order's customer, known to the intake
        bad = order("QRV-KAFKA-BAD", random.Random(3))
        bad["relatedParty"] = [
            {"id": CUSTOMER, "name": VALUES["dead create name"], "role": "customer"}
        ]
        bad["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "teleporter"
        item = {"id": "1", "action": "modify", "note": [{"text": VALUES["dead revision note"]}]}
        bad_revision = {"externalId": "QRV-KAFKA-1", "serviceOrderItem": [item, item]}
        kafka(
            settings,
            db,
            (b"QRV-KAFKA-1", event("k-revise", env.REVISE, {"serviceOrder": revision})),
            (b"QRV-KAFKA-BAD", event("k-bad", env.CREATE, {"serviceOrder": bad})),
            (b"QRV-KAFKA-1", event("k-bad-rev", env.REVISE, {"serviceOrder": bad_revision})),
        )
        dead = IntakeStore(db).dead_letters()
        assert {d["event_id"] for d in dead} == {"k-bad", "k-bad-rev"}, dead
        assert all(d["sealed_scope"] == CUSTOMER for d in dead)

        # The hub delivers every notification of the three orders
        build_projector(settings).catch_up()
        start_worker(settings, lambda: open_read_db(settings), stopping)
        wait_for(
            lambda: (
                len(listener.bodies) >= 3
                and not db.fetchall("SELECT 1 FROM hub_delivery WHERE delivered_at IS NULL")
            ),
            what="the hub's notifications delivered",
        )
        stopping.set()
        delivered = json.dumps(listener.bodies)
        assert VALUES["name"] in delivered and VALUES["rejection reason"] in delivered

        before = scan(db)
        # Not blind: the read models hold the values revealed until the erasure...
        assert before["order_document.document"] >= set(VALUES) - {
            "dead create name",
            "dead revision note",
        }, before
        # ...while the dead letters keep them sealed (read back revealed)
        assert not [column for column in before if column.startswith("dead_letter.")]
        revealed = b"".join(d["value"] for d in dead)
        assert VALUES["dead create name"].encode() in revealed
        assert VALUES["dead revision note"].encode() in revealed

        # Erase
        url = (
            f"sqlite:///{settings.database.dbname}"
            if settings.database.kind == "sqlite"
            else settings.database.url(with_password=True)
        )
        erased = CliRunner().invoke(
            main,
            [
                *("--database-url", url, "audit", "erase", "--customer", CUSTOMER),
                *("--actor", "dpo", "--reason", "scan test", "--yes"),
            ],
        )
        assert erased.exit_code == 0, erased.output
        report = json.loads(erased.stdout)
        assert len(report["orders"]) == 3 and report["rowsDeleted"]["dead_letter"] == 2
        # The refused revision's announcement upstream (keyed by the customer's order); the
        # refused create's names an order that never existed (no personal value in it)
        assert report["rowsDeleted"]["kafka_outbox"] == 1

        after = scan(db)
        export = tmp_path / "export.jsonl"
        exported = CliRunner().invoke(
            main, ["--database-url", url, "audit", "export", "-o", str(export)]
        )
        assert exported.exit_code == 0, exported.output
        text = export.read_text(encoding="utf-8", errors="replace")
        in_export = {label for label, needle in VALUES.items() if needle in text}
        assert (after, in_export) == ({}, set())
    finally:
        stopping.set()
        db.close()
        ctx.close()


def event(event_id: str, event_type: str, body: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope(event_id, event_type, body))

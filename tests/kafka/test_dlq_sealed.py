"""Dead letters keep the message's bytes sealed (issue 19; docs/kafka.md, "Dead letters and
erasure"): under the customer's key when the message names one (or names an order whose
customer is known), else under the month's dead-letter key, whose rows are dropped after
SERVICEORDERS_DLQ_RETENTION_DAYS and whose key is then deleted. Reads, `dlq show`, `dlq
replay` and the DLQ topic see the original bytes while the key lives; rows written before
(plain) still work."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from builders import wait_for
from click.testing import CliRunner, Result
from serviceorders.audit.pii import ERASED, KeyStore, Vault, erase
from serviceorders.bootstrap import build_application, build_projector
from serviceorders.cli import main
from serviceorders.consumers import envelope as env
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import create_event, envelope, order
from serviceorders.consumers.store import (
    IntakeStore,
    dead_letter_scope,
    digest,
    erase_dead_letters,
    purge_dead_letters,
)
from serviceorders.notifications.kafka import Publisher
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import kafka_env, read_topic

pytestmark = pytest.mark.kafka

NAME = "Zelda Quixotic-Vantablack"  # in no other fixture: found only where it leaks
CUSTOMER = "CUST-DLQ-SEALED"


def refused_create(external_id: str, customer: str = CUSTOMER) -> bytes:
    """A create naming the customer (and NAME) that the domain refuses (unknown spec)."""
    body = order(external_id, random.Random(7))
    body["relatedParty"] = [{"id": customer, "name": NAME, "role": "customer"}]
    body["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "teleporter"
    return create_event(f"{external_id}-create", body)


def good_create(external_id: str) -> bytes:
    body = order(external_id, random.Random(8))
    body["relatedParty"] = [{"id": CUSTOMER, "name": NAME, "role": "customer"}]
    return create_event(f"{external_id}-create", body)


def bad_revision(external_id: str) -> bytes:
    """A revision naming its order by externalId only (no customer in it), refused: an
    item id named twice."""
    item = {"id": "1", "action": "modify", "note": [{"text": NAME}]}
    body = {"externalId": external_id, "serviceOrderItem": [item, item]}
    return orjson.dumps(envelope(f"{external_id}-rev", env.REVISE, {"serviceOrder": body}))


def run(settings: Settings, db: ReadDb, *messages: tuple[bytes | None, bytes | None]) -> None:
    app = build_application(settings)
    try:
        stored = IntakeStore(db).positions(settings.inbound_topic)
        start = stored.get(0, 0)
        Intake(app, IntakeStore(db), settings.events_topic).process(
            [
                Message(settings.inbound_topic, 0, start + n, key, value, (("trace", b"t-1"),))
                for n, (key, value) in enumerate(messages)
            ],
            {(settings.inbound_topic, 0): stored.get(0)},
        )
    finally:
        app.close()


def raw_rows(db: ReadDb) -> list[dict[str, Any]]:
    return IntakeStore(db).dead_letters(limit=1000, reveal=False)


def cli(settings: Settings, broker: EmbeddedBroker, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=kafka_env(settings, broker))


def test_a_dead_letter_naming_a_customer_is_sealed_under_its_key(ks, db):
    value = refused_create("SEAL-1")
    run(ks, db, (b"SEAL-1", value), (b"K-NOT-JSON", b'{"eventId": "half ' + NAME.encode()))
    by_key = {d["key"]: d for d in IntakeStore(db).dead_letters()}
    customer, stray = by_key[b"SEAL-1"], by_key[b"K-NOT-JSON"]
    # Read back: the original bytes, the reason, the scopes
    assert customer["value"] == value and customer["category"] == env.REFUSED
    assert "teleporter" in customer["reason"]
    assert customer["sealed_scope"] == CUSTOMER and not customer["erased"]
    assert stray["sealed_scope"] == dead_letter_scope()  # deadletter:<yyyy-mm>
    assert stray["value"].endswith(NAME.encode())
    # At rest: neither key nor bytes in plain; the row's identity is the original digest
    rows = db.fetchall("SELECT key, value, digest FROM dead_letter ORDER BY id")
    for key, stored, _ in rows:
        assert NAME.encode() not in bytes(stored) and b"SEAL-1" not in bytes(key)
    assert digest(b"SEAL-1", value) in {r[2] for r in rows}
    # (A batch read again is still one dead letter each: tests/kafka/test_dlq.py, on
    # these sealed rows, whose identity is the original digest.)


def test_a_revision_of_a_known_order_is_sealed_under_its_customer(ks, db):
    run(ks, db, (b"SEAL-2", good_create("SEAL-2")))
    build_projector(ks).catch_up()  # order_summary knows the order's customer
    run(ks, db, (b"SEAL-2", bad_revision("SEAL-2")))
    (dead,) = IntakeStore(db).dead_letters()
    assert dead["sealed_scope"] == CUSTOMER and dead["event_id"] == "SEAL-2-rev"
    assert NAME.encode() in dead["value"]
    (stored,) = db.fetchall("SELECT value FROM dead_letter")
    assert NAME.encode() not in bytes(stored[0])


def test_erasing_the_customer_deletes_its_dead_letters_sealed_and_plain(ks, db):
    run(ks, db, (b"SEAL-3", refused_create("SEAL-3")), (b"K-OTHER", b"not json"))
    # A row written before dead letters were sealed: plain bytes, no scope
    legacy = refused_create("SEAL-OLD")
    db.execute(
        "INSERT INTO dead_letter (created_at, source_topic, source_partition, source_offset, "
        "digest, key, value, headers, reason, category) VALUES (%s, 'old', 0, 1, %s, %s, %s, "
        "%s, 'refused', 'refused')",
        (
            db.adapt(datetime.now(UTC), "timestamptz"),
            digest(b"SEAL-OLD", legacy),
            b"SEAL-OLD",
            legacy,
            db.adapt([], "json") if db.dialect == "postgres" else "[]",
        ),
    )
    listed = {d["key"]: d for d in IntakeStore(db).dead_letters()}
    assert listed[b"SEAL-OLD"]["sealed_scope"] is None and listed[b"SEAL-OLD"]["value"] == legacy
    assert erase_dead_letters(db, CUSTOMER) == 2  # SEAL-3 (sealed) and SEAL-OLD (plain)
    assert [d["key"] for d in IntakeStore(db).dead_letters()] == [b"K-OTHER"]


def test_a_dead_letter_whose_key_is_gone_reads_as_erased_and_is_not_replayed(ks, db, broker):
    run(ks, db, (b"SEAL-4", refused_create("SEAL-4")))
    erase(db, CUSTOMER, "dpo", "test", 0)  # the key only (audit erase also drops the row)
    (dead,) = IntakeStore(db).dead_letters()
    assert dead["erased"] and dead["key"] is None and dead["value"] is None
    shown = cli(ks, broker, "dlq", "show", str(dead["id"]))
    assert shown.exit_code == 0 and "[erased]" in shown.output and ERASED == "[erased]"
    assert "teleporter" in shown.output  # the reason and metadata stay readable
    replayed = cli(ks, broker, "dlq", "replay", str(dead["id"]))
    assert replayed.exit_code == 2 and "cannot be replayed" in replayed.output
    listed = cli(ks, broker, "dlq", "list")
    assert "sealed=erased" in listed.output and "key=[erased]" in listed.output


def test_show_reveals_and_replay_sends_the_original_bytes(ks, db, broker):
    value = refused_create("SEAL-5")
    run(ks, db, (b"SEAL-5", value))
    (dead,) = IntakeStore(db).dead_letters()
    shown = cli(ks, broker, "dlq", "show", str(dead["id"]))
    assert shown.exit_code == 0, shown.output
    assert "sealed: customer" in shown.output and NAME in shown.output
    listed = cli(ks, broker, "dlq", "list")
    assert "sealed=customer" in listed.output and NAME not in listed.output
    replayed = cli(ks, broker, "dlq", "replay", str(dead["id"]))
    assert replayed.exit_code == 0, replayed.output
    (record,) = read_topic(ks, ks.inbound_topic, expect=1)
    assert (record.key, record.value) == (b"SEAL-5", value)


def test_the_dlq_topic_gets_the_original_bytes_or_an_erased_record(ks, db):
    first, second = refused_create("SEAL-6"), refused_create("SEAL-7", customer="CUST-GONE")
    run(ks, db, (b"SEAL-6", first), (b"SEAL-7", second))
    erase(db, "CUST-GONE", "dpo", "test", 0)
    publisher = Publisher(ks, notifications=False)
    try:
        publisher.tick()
    finally:
        publisher.close()
    records = {r.headers["dlq.event_id"]: r for r in read_topic(ks, ks.dead_letter_topic, expect=2)}
    sent = records[b"SEAL-6-create"]
    assert (sent.key, sent.value) == (b"SEAL-6", first) and "dlq.erased" not in sent.headers
    gone = records[b"SEAL-7-create"]
    assert (gone.key, gone.value) == (None, b"") and gone.headers["dlq.erased"] == b"true"
    assert gone.headers["dlq.reason"]  # the reason is still told


def test_purge_drops_the_dead_letters_past_the_retention_and_their_keys(ks, db, broker):
    run(ks, db, (b"SEAL-8", refused_create("SEAL-8")), (b"K-STRAY", b"stray " + NAME.encode()))
    # A row of an older month: sealed under that month's key, then backdated
    old = datetime.now(UTC).replace(day=1) - timedelta(days=70)
    old_scope = dead_letter_scope(old)
    vault = Vault(KeyStore(db=db))
    db.execute(
        "INSERT INTO dead_letter (created_at, source_topic, source_partition, source_offset, "
        "digest, key, value, headers, reason, category, sealed_scope) VALUES "
        "(%s, 'old', 0, 2, 'd-old', NULL, %s, %s, 'not JSON', 'not_json', %s)",
        (
            db.adapt(old, "timestamptz"),
            vault.seal_bytes(old_scope, b"old " + NAME.encode()),
            db.adapt([], "json") if db.dialect == "postgres" else "[]",
            old_scope,
        ),
    )
    # A plain row of before, as old
    db.execute(
        "INSERT INTO dead_letter (created_at, source_topic, source_partition, source_offset, "
        "digest, key, value, headers, reason, category) VALUES "
        "(%s, 'old', 0, 3, 'd-plain', NULL, %s, %s, 'not JSON', 'not_json')",
        (
            db.adapt(old, "timestamptz"),
            b"plain " + NAME.encode(),
            db.adapt([], "json") if db.dialect == "postgres" else "[]",
        ),
    )
    assert len(raw_rows(db)) == 4
    done = cli(ks, broker, "dlq", "purge")
    assert done.exit_code == 0, done.output
    assert "purged 2 dead letter(s) older than 30 days" in done.output
    assert old_scope in done.output
    left = {d["key"] for d in IntakeStore(db).dead_letters()}
    assert left == {b"SEAL-8", b"K-STRAY"}  # the customer's stays; this month's stray too
    assert KeyStore(db=db).get(old_scope) == (None, True)  # the old month's key is deleted
    assert KeyStore(db=db).get(dead_letter_scope())[0] is not None  # this month's lives
    # Later: past the retention, this month's stray goes too, not the customer's
    later = purge_dead_letters(db, 30, now=datetime.now(UTC) + timedelta(days=31))
    assert later.rows == 1
    assert {d["key"] for d in IntakeStore(db).dead_letters()} == {b"SEAL-8"}
    assert purge_dead_letters(db, 30, now=datetime.now(UTC) + timedelta(days=70)).keys == [
        dead_letter_scope()
    ]


def test_consume_purges_at_start_and_hourly(ks, db):
    """`consume` and `serve` run the purge in a thread of their own: a first round at once."""
    import threading

    from serviceorders.consumers.store import purge_hourly

    old = datetime.now(UTC) - timedelta(days=45)
    db.execute(
        "INSERT INTO dead_letter (created_at, source_topic, source_partition, source_offset, "
        "digest, key, value, headers, reason, category) VALUES "
        "(%s, 'old', 0, 4, 'd-plain-2', NULL, %s, %s, 'not JSON', 'not_json')",
        (
            db.adapt(old, "timestamptz"),
            b"plain " + NAME.encode(),
            db.adapt([], "json") if db.dialect == "postgres" else "[]",
        ),
    )
    stopping = threading.Event()
    thread = threading.Thread(target=purge_hourly, args=(ks, stopping), daemon=True)
    thread.start()
    try:
        wait_for(lambda: not raw_rows(db), what="the old dead letter purged")
    finally:
        stopping.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_plain_dead_letter_of_before_is_listed_shown_and_replayed_as_it_was(ks, db, broker):
    legacy = refused_create("SEAL-PLAIN")
    db.execute(
        "INSERT INTO dead_letter (created_at, source_topic, source_partition, source_offset, "
        "digest, key, value, headers, reason, category) VALUES (%s, 'old', 0, 5, %s, %s, %s, "
        "%s, 'unknown specification teleporter', 'refused')",
        (
            db.adapt(datetime.now(UTC), "timestamptz"),
            digest(b"SEAL-PLAIN", legacy),
            b"SEAL-PLAIN",
            legacy,
            db.adapt([], "json") if db.dialect == "postgres" else "[]",
        ),
    )
    (dead,) = IntakeStore(db).dead_letters()
    assert dead["sealed_scope"] is None and dead["value"] == legacy and not dead["erased"]
    listed = cli(ks, broker, "dlq", "list")
    assert "sealed=plain" in listed.output and "key='SEAL-PLAIN'" in listed.output
    shown = cli(ks, broker, "dlq", "show", str(dead["id"]))
    assert "sealed: plain" in shown.output and NAME in shown.output
    replayed = cli(ks, broker, "dlq", "replay", str(dead["id"]))
    assert replayed.exit_code == 0, replayed.output
    (record,) = read_topic(ks, ks.inbound_topic, expect=1)
    assert (record.key, record.value) == (b"SEAL-PLAIN", legacy)


def test_the_dead_letters_of_the_upgrade_fixture_stay_plain_readable_and_erasable(tmp_path):
    """The recorded database of an earlier release (tests/fixtures/upgrade_doors, 7 dead
    letters) after this code's `db init`: every row plain (no scope), read as recorded;
    erasing a customer deletes the plain one naming it, the others stay."""
    import gzip
    import sqlite3
    from pathlib import Path

    from serviceorders.bootstrap import init_database, open_read_db

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade_doors" / "doors.db.gz"
    copy = tmp_path / "doors.db"
    copy.write_bytes(gzip.decompress(fixture.read_bytes()))
    with sqlite3.connect(copy) as raw:
        recorded = dict(raw.execute("SELECT id, value FROM dead_letter").fetchall())
    assert len(recorded) == 7
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{copy}"})
    init_database(settings)
    db = open_read_db(settings)
    try:
        rows = IntakeStore(db).dead_letters()
        assert {d["id"]: d["value"] for d in rows} == recorded
        assert all(d["sealed_scope"] is None and not d["erased"] for d in rows)
        assert erase_dead_letters(db, "CUST-1002") == 1  # the invalid_order create naming it
        assert {d["id"] for d in IntakeStore(db).dead_letters()} == set(recorded) - {3}
    finally:
        db.close()

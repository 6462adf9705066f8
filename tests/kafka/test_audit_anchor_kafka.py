"""A Kafka topic as the audit anchor (docs/audit.md, "Anchors"), on the real broker: each
fresh checkpoint is produced to the topic (key: its seq), `audit verify --anchor
kafka:TOPIC` reads the topic from its start to its end and passes, and fails once the
database's checkpoints were recomputed over a rewritten chain."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import pytest
from builders import cli
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from serviceorders.audit.anchors import AnchorError
from serviceorders.audit.checkpoints import Checkpointer, create_checkpoint, load_checkpoints
from serviceorders.audit.store import Store
from serviceorders.bootstrap import audit_anchor, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.chain import GENESIS, event_hash
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings

pytestmark = pytest.mark.kafka


def _create_topic(settings: Settings, topic: str) -> None:
    """As the operator does: one partition (infinite retention is the broker's config)."""
    admin = KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()


def _records(settings: Settings, topic: str) -> list[tuple[int, bytes, dict[str, Any]]]:
    consumer = KafkaConsumer(enable_auto_commit=False, **client_options(settings))
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        found: list[tuple[int, bytes, dict[str, Any]]] = []
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=500).values():
                found += [(r.partition, r.key, orjson.loads(r.value)) for r in records]
        return found
    finally:
        consumer.close()


def test_checkpoints_produced_to_a_topic_verify_and_catch_a_recomputed_rewrite(
    ks: Settings, app: Any, actors: Any, samples: Any
) -> None:
    topic = f"audit-anchor-{secrets.token_hex(4)}"
    _create_topic(ks, topic)
    db = open_read_db(ks)
    try:
        db.execute("DELETE FROM audit_checkpoint_head")
        db.execute("DELETE FROM audit_checkpoint")
    finally:
        db.close()
    anchor = audit_anchor(ks, f"kafka:{topic}")
    checkpointer = Checkpointer(lambda: open_read_db(ks)).anchor_to(anchor)
    try:
        orders = [
            app.handle(
                actors.upstream,
                cmd.ReceiveOrder(samples.header(f"anchored-{i}"), tuple(samples.items())),
            ).order.id
            for i in range(2)
        ]
        assert checkpointer.run_once().seq == 1
        app.handle(actors.fulfilment, cmd.AddNote(orders[0], "survey booked"))
        assert checkpointer.run_once().seq == 2
        assert checkpointer.run_once().fresh is False  # nothing new: nothing produced
    finally:
        anchor.close()

    records = _records(ks, topic)
    assert [(p, key) for p, key, _ in records] == [(0, b"1"), (0, b"2")]
    db = open_read_db(ks)
    try:
        stored = [c.to_json() for c in load_checkpoints(db)]
    finally:
        db.close()
    assert [{"type": "checkpoint", **c} for c in stored] == [value for _, _, value in records]

    url = ks.database.url(with_password=True)
    env = {"KAFKA_BOOTSTRAP_SERVERS": ks.kafka_bootstrap_servers}
    clean = cli("audit", "verify", "--anchor", f"kafka:{topic}", url=url, env=env)
    assert clean.stdout.rstrip().endswith("OK"), clean.stdout

    # an attacker re-hashes one order's chain and recomputes the checkpoints in the database
    db = open_read_db(ks)
    try:
        store = Store(db)
        key = store.key(orders[1])
        previous = GENESIS
        for version, topic_name, raw in db.fetchall(
            f"SELECT originator_version, topic, state FROM {store.events} "
            "WHERE originator_id = %s ORDER BY originator_version",
            (key,),
        ):
            state = orjson.loads(bytes(raw))
            state["correlation_id"] = "forged"
            state["prev_hash"] = previous
            state.pop("hash")
            state["hash"] = previous = event_hash(topic_name, orders[1], int(version), state)
            db.execute(
                f"UPDATE {store.events} SET state = %s WHERE originator_id = %s "
                "AND originator_version = %s",
                (orjson.dumps(state), key, version),
            )
        db.execute(f"DELETE FROM {store.snapshots}")
        db.execute("DELETE FROM audit_checkpoint_head")
        db.execute("DELETE FROM audit_checkpoint")
        assert create_checkpoint(db).seq == 1
    finally:
        db.close()
    assert cli("audit", "verify", url=url).stdout.rstrip().endswith("OK")  # no anchor
    failed = cli("audit", "verify", "--anchor", f"kafka:{topic}", url=url, env=env, expect=1)
    assert "checkpoint 1" in failed.stdout and "anchor" in failed.stdout, failed.stdout
    assert "FAILED" in failed.stdout


def test_verifying_against_a_topic_that_is_not_there_is_an_error(ks: Settings) -> None:
    topic = f"no-such-anchor-{secrets.token_hex(4)}"
    anchor = audit_anchor(ks, f"kafka:{topic}")
    with pytest.raises(AnchorError, match="no such topic"):
        anchor.read()
    assert anchor.last_seq() is None  # for the checkpointer: an anchor not written yet
    # the command: one line saying so, exit 3 (the anchor cannot be read), no traceback
    url = ks.database.url(with_password=True)
    env = {"KAFKA_BOOTSTRAP_SERVERS": ks.kafka_bootstrap_servers}
    done = cli("audit", "verify", "--anchor", f"kafka:{topic}", url=url, env=env, expect=3)
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "no such topic" in line and "AnchorError" not in line, done.stderr
    assert "Traceback" not in done.stderr

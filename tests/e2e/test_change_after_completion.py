"""A change order sent right after the completion of the order that created its service is
accepted, with the projector stopped (issue 20, acceptance 3).

`serviceorders consume` (the Kafka intake alone, as a real process: it runs no projector)
takes an order adding internet access; a manager approves it (`serviceorders order
approve`); fulfilment's ServiceOrderStateChangeEvent completing its item and the upstream's
order modifying the new service are sent together, one after the other on the same
partition (the modify may be read in the completion's batch or in the next). The modify is
accepted (no dead letter, acknowledged, unflagged, its previousValue from the service the
completion made) while every read model is still behind the log: the check read the
service from the event store, in the completion's transaction's wake, not from a projection.
On both backends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import cli, order_body, own_topics, wait_for
from kafka import KafkaProducer
from serviceorders.bootstrap import build_application, open_read_db
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.envelope import STATE_CHANGE
from serviceorders.consumers.kafka import ensure_topics
from serviceorders.consumers.sample import create_event, envelope
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain.order import order_id_for
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import OrderState, ServiceState
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

EXE = shutil.which("serviceorders")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    """Sent in this order, each acknowledged before the next (one partition per key)."""
    producer = KafkaProducer(acks="all", **client_options(settings))
    try:
        for key, value in messages:
            producer.send(settings.inbound_topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)


def completion(external_id: str, event_id: str) -> bytes:
    resource = {"externalId": external_id, "serviceOrderItem": [{"id": "1", "state": "completed"}]}
    return orjson.dumps(envelope(event_id, STATE_CHANGE, {"serviceOrder": resource}))


def modify_item(service_id: str) -> dict[str, Any]:
    return {
        "id": "1",
        "action": "modify",
        "service": {
            "id": service_id,
            "serviceSpecification": {"id": "internet-access"},
            "serviceCharacteristic": [{"name": "bandwidthMbps", "value": 500}],
            "place": [{"id": "S1", "name": "Site one"}],
        },
    }


def test_a_change_right_after_the_completion_is_accepted_with_the_projector_stopped(
    url: str, settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    assert EXE, "the serviceorders console script is not installed"
    ks = own_topics(settings, broker.bootstrap_servers)
    ensure_topics(ks)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SERVICEORDERS_")},
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SERVICEORDERS_CONSUMER_GROUP": ks.consumer_group,
        "SERVICEORDERS_INBOUND_TOPIC": ks.inbound_topic,
        "SERVICEORDERS_EVENTS_TOPIC": ks.events_topic,
        "SERVICEORDERS_INVENTORY_TOPIC": ks.inventory_topic,
        "SERVICEORDERS_TOPIC_PARTITIONS": str(ks.topic_partitions),
        "SERVICEORDERS_HUB_DELIVERY": "no",
    }
    log = tmp_path / "consume.log"
    with open(log, "wb") as out:
        consume = subprocess.Popen([EXE, "consume"], env=env, stdout=out, stderr=subprocess.STDOUT)
    db = open_read_db(ks)
    intake = IntakeStore(db)

    def consumed(n: int) -> None:
        wait_for(
            lambda: (
                sum(intake.positions(ks.inbound_topic).values()) >= n or consume.poll() is not None
            ),
            what=f"{n} messages consumed",
        )
        assert consume.poll() is None, log.read_text()

    try:
        # the order that creates the service, approved by a manager
        produce(ks, [(b"ADD-1", create_event("add-create", order_body("ADD-1")))])
        consumed(1)
        cli("order", "--actor", "bob", "approve", "ADD-1", url=url)
        # its completion, and right behind it the change of the service it creates
        sid = service_id_for(order_id_for("ADD-1"), "1")
        change = order_body("MOD-1", order_items=[modify_item(sid)])
        produce(
            ks,
            [
                (b"ADD-1", completion("ADD-1", "add-completed")),
                (b"ADD-1", create_event("mod-create", change)),
            ],
        )
        consumed(3)
        assert intake.dead_letters() == [], "the change was refused"

        app = build_application(ks)
        try:
            assert app.get_order(order_id_for("ADD-1")).state is OrderState.COMPLETED
            service = app.get_service(sid)
            assert service.state is ServiceState.ACTIVE
            assert service.characteristics["bandwidthMbps"] == 100
            change_order = app.get_order(order_id_for("MOD-1"))
            assert change_order.state is OrderState.ACKNOWLEDGED
            assert change_order.flags == ()
            check = change_order.inventory["1"]
            assert check.service_id == sid and check.previous == {"bandwidthMbps": 100}
            assert list(service.open_orders) == [str(change_order.id)]
            head = app.recorder.max_notification_id()
        finally:
            app.close()
        # and no read model has seen any of it: the projector is not running
        positions = dict(db.fetchall("SELECT name, position FROM projection_position", []))
        assert positions, "no projection is registered"
        assert all(p < head for p in positions.values()), (positions, head)
        # as the operator sees it: every read model behind the log head
        status = json.loads(cli("projections", "status", "--json", url=url).stdout)
        assert {p["name"] for p in status} == set(positions)
        assert all(p["head"] == head and p["lag"] > 0 for p in status), status
        assert db.fetchall("SELECT count(*) FROM order_summary", [])[0][0] == 0
    finally:
        consume.terminate()
        try:
            consume.wait(30)
        except subprocess.TimeoutExpired:
            consume.kill()
            consume.wait(5)
        db.close()
    # once a projector runs, the read models catch up with both orders
    cli("project", "--once", url=url)
    status = json.loads(cli("projections", "status", "--json", url=url).stdout)
    assert all(p["position"] == head and p["lag"] == 0 for p in status), status

"""The outbound topic: every TMF641 notification of the `notification_outbox` projection, with
the hub's `eventId`s, keyed by order id; refused upstream orders announced by externalId;
at least once (a re-publish repeats only the same `eventId`s). Orders reach the engine
through the intake (messages from upstream and from fulfilment) and the application (a
manager's approval, as the API would)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import orjson
import pytest
from serviceorders.bootstrap import build_projector, open_read_db
from serviceorders.consumers import envelope as env
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import create_event, envelope, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.commands import Approve, ApproveProposal, Reject
from serviceorders.domain.order import order_id_for
from serviceorders.domain.values import CommandContext, ItemState, OrderState, Role
from serviceorders.notifications.kafka import NOTIFICATIONS, Publisher
from serviceorders.projections.notifications import notification_event_id
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import Record, read_topic

pytestmark = pytest.mark.kafka

MANAGER = CommandContext.for_actor("bob", Role.MANAGER)
SECOND_MANAGER = CommandContext.for_actor("carol", Role.MANAGER)


class Door:
    """The intake, driven with plain messages on partition 0 of the inbound topic."""

    def __init__(self, settings: Settings, app: ServiceOrders, db: ReadDb) -> None:
        self.settings, self.app, self.store = settings, app, IntakeStore(db)
        self.offset = 0

    def send(self, *messages: tuple[bytes | None, bytes | None]) -> Any:
        batch = []
        for key, value in messages:
            batch.append(Message(self.settings.inbound_topic, 0, self.offset, key, value))
            self.offset += 1
        stored = self.store.positions(self.settings.inbound_topic).get(0)
        return Intake(self.app, self.store, self.settings.events_topic).process(
            batch, {(self.settings.inbound_topic, 0): stored}
        )


def message(event_type: str, body: dict[str, Any], event_id: str) -> bytes:
    return orjson.dumps(envelope(event_id, event_type, body))


def item_states(external_id: str, states: dict[str, str], event_id: str) -> bytes:
    return message(
        env.STATE_CHANGE,
        {
            "serviceOrder": {
                "externalId": external_id,
                "serviceOrderItem": [{"id": i, "state": s} for i, s in states.items()],
            }
        },
        event_id,
    )


@pytest.fixture
def db(kafka_settings: Settings) -> Iterator[ReadDb]:
    found = open_read_db(kafka_settings)
    yield found
    found.close()


@pytest.fixture
def door(
    kafka_settings: Settings, open_app: Callable[[Settings], ServiceOrders], db: ReadDb
) -> Door:
    return Door(kafka_settings, open_app(kafka_settings), db)


@pytest.fixture
def publishers(kafka_settings: Settings) -> Iterator[Callable[..., Publisher]]:
    made: list[Publisher] = []

    def make(**kw: Any) -> Publisher:
        made.append(Publisher(kafka_settings, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close(quiet=True)


def outbox(db: ReadDb) -> list[tuple[str, UUID, int, str]]:
    """(eventId, order id, order version, eventType) of every notification, in log order."""
    rows = db.fetchall(
        "SELECT event_id, order_id, order_version, event_type "
        "FROM notification_outbox ORDER BY position, seq"
    )
    return [(e, UUID(str(o)), int(v), t) for e, o, v, t in rows]


def body_of(r: Record) -> dict[str, Any]:
    assert r.value is not None
    return orjson.loads(r.value)


ORDERS = {ext: order(ext, random.Random(n)) for n, ext in enumerate(["CRM-A", "CRM-B", "CRM-C"])}


def lifecycle(door: Door) -> None:
    """Three orders and a refused one through the intake, a manager's approvals, fulfilment
    completing one order, an upstream revision (a proposal, as the order is approved, which
    a second manager approves) and an upstream cancellation."""
    result = door.send(
        *[(ext.encode(), create_event(f"{ext}-create", b)) for ext, b in ORDERS.items()]
    )
    assert (result.applied, result.dead_letters) == (3, 0)
    a, b = (order_id_for(x) for x in ("CRM-A", "CRM-B"))
    door.app.handle(MANAGER, Approve(a))
    door.app.handle(MANAGER, Approve(b))
    result = door.send(
        (b"CRM-A", item_states("CRM-A", {"1": "inProgress", "3": "inProgress"}, "ful-1")),
        (
            b"CRM-A",
            item_states("CRM-A", {"1": "completed", "2": "completed", "3": "completed"}, "ful-2"),
        ),
    )
    assert (result.applied, result.dead_letters) == (2, 0)
    revised = orjson.loads(orjson.dumps(ORDERS["CRM-B"]["serviceOrderItem"][0]))
    revised["service"]["serviceCharacteristic"] = [
        {"name": "bandwidthMbps", "value": 10000},
        {"name": "accessType", "value": "fibre"},
    ]
    result = door.send(
        (
            b"CRM-B",
            message(
                env.REVISE,
                {
                    "serviceOrder": {
                        "externalId": "CRM-B",
                        "description": "upgraded",
                        "serviceOrderItem": [revised],
                    }
                },
                "crm-revise-1",
            ),
        ),
        (
            b"CRM-C",
            message(
                env.CANCEL,
                {
                    "cancelServiceOrder": {
                        "cancellationReason": "customer changed plans",
                        "serviceOrder": {"id": str(order_id_for("CRM-C"))},
                    }
                },
                "crm-cancel-1",
            ),
        ),
    )
    assert (result.applied, result.dead_letters) == (2, 0)
    door.app.handle(SECOND_MANAGER, ApproveProposal(b))


def test_every_notification_reaches_the_events_topic_with_the_hubs_event_ids(
    kafka_settings, door, db, publishers
):
    lifecycle(door)
    assert build_projector(kafka_settings, db).catch_up() > 0
    expected = outbox(db)
    types = Counter(t for *_, t in expected)
    assert types["ServiceOrderCreateEvent"] == 3
    assert types["ServiceOrderStateChangeEvent"] >= 4  # 2 approvals, completed, cancellation
    assert types["CancelServiceOrderCreateEvent"] == 1
    assert types["ServiceOrderAttributeValueChangeEvent"] >= 1
    # The hub's one derivation of eventIds.
    for event_id, order_id, version, event_type in expected:
        assert event_id == notification_event_id(order_id, version, event_type)

    publisher = publishers()
    publisher.drain()
    assert publisher.published == len(expected)
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=len(expected))
    assert len(records) == len(expected), "no notification missing, none extra"
    by_id = {body_of(r)["eventId"]: r for r in records}
    assert set(by_id) == {e for e, *_ in expected}
    for event_id, order_id, _, event_type in expected:
        r = by_id[event_id]
        assert r.key == str(order_id).encode()
        assert r.headers["eventType"] == event_type.encode()
        assert r.headers["eventId"] == event_id.encode()
        body = body_of(r)
        assert body["eventType"] == event_type
        resource = body["event"].get("serviceOrder") or body["event"]["cancelServiceOrder"]
        assert str(order_id) in (resource.get("id"), resource.get("serviceOrder", {}).get("id"))
    # Keyed by order: one partition per order, in the order the log has them.
    per_order: dict[bytes, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_order[r.key].append(body_of(r)["eventId"])
    for order_id in {o for _, o, *_ in expected}:
        assert per_order[str(order_id).encode()] == [e for e, o, *_ in expected if o == order_id]
        assert len({r.partition for r in records if r.key == str(order_id).encode()}) == 1
    # Nothing left to publish; a second drain sends nothing.
    assert publisher.tick() is False
    position = db.fetchone(
        "SELECT position FROM outbound_position WHERE name = %s", (NOTIFICATIONS,)
    )
    assert position is not None and int(position[0]) == max(
        int(p[0]) for p in db.fetchall("SELECT position FROM notification_outbox")
    )


def test_the_outcomes_of_the_lifecycle_are_on_the_events_topic(
    kafka_settings, door, db, publishers
):
    lifecycle(door)
    a, b, c = (door.app.get_order(order_id_for(x)) for x in ORDERS)
    # Fulfilment's item states moved the items, then the order.
    assert {i.state for i in a.items.values()} == {ItemState.COMPLETED}
    assert a.state is OrderState.COMPLETED
    # The revision replaced the item it names and kept the others.
    original = b.items
    assert original["1"].characteristics == {"bandwidthMbps": 10000, "accessType": "fibre"}
    assert b.header.description == "upgraded"
    before = ORDERS["CRM-B"]["serviceOrderItem"]
    for item in before[1:]:
        assert original[item["id"]].characteristics == {
            ch["name"]: ch["value"] for ch in item["service"]["serviceCharacteristic"]
        }
    assert set(original) == {"1", "2", "3"}
    assert b.state is OrderState.IN_PROGRESS
    # The cancellation request awaits a manager.
    assert c.state is OrderState.ASSESSING_CANCELLATION

    build_projector(kafka_settings, db).catch_up()
    publishers().drain()
    expected = outbox(db)
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=len(expected))
    last: dict[bytes, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        body = body_of(r)
        if "serviceOrder" in body["event"]:
            last[r.key] = body["event"]["serviceOrder"]
    doc_a, doc_b, doc_c = (last[str(order_id_for(x)).encode()] for x in ORDERS)
    assert doc_a["state"] == "completed"
    assert {i["state"] for i in doc_a["serviceOrderItem"]} == {"completed"}
    assert doc_b["description"] == "upgraded"
    chars = {
        i["id"]: {ch["name"]: ch["value"] for ch in i["service"]["serviceCharacteristic"]}
        for i in doc_b["serviceOrderItem"]
    }
    assert chars["1"]["bandwidthMbps"] == 10000 and set(chars) == {"1", "2", "3"}
    assert doc_c["state"] == "assessingCancellation"
    cancels = [
        body_of(r) for r in records if body_of(r)["eventType"] == "CancelServiceOrderCreateEvent"
    ]
    assert len(cancels) == 1
    assert cancels[0]["event"]["cancelServiceOrder"]["cancellationReason"] == (
        "customer changed plans"
    )


def test_a_rejection_and_failed_items_are_told_in_error_message(
    kafka_settings, door, db, publishers
):
    """Issue 19: the outbound state-change notification carries the order's `errorMessage`
    (a manager's rejection reason; the failed items), as GET and the hub do."""
    bodies = {ext: order(ext, random.Random(n)) for n, ext in enumerate(["ERR-R", "ERR-F"], 7)}
    result = door.send(
        *[(ext.encode(), create_event(f"{ext}-create", b)) for ext, b in bodies.items()]
    )
    assert (result.applied, result.dead_letters) == (2, 0)
    rejected, failed = (order_id_for(x) for x in bodies)
    door.app.handle(MANAGER, Reject(rejected, "no coverage at the site"))
    door.app.handle(MANAGER, Approve(failed))
    item_ids = sorted(door.app.get_order(failed).items)
    failures = {
        "serviceOrder": {
            "externalId": "ERR-F",
            "serviceOrderItem": [
                {"id": i, "state": "failed", "errorMessage": "port faulty"} for i in item_ids
            ],
        }
    }
    result = door.send((b"ERR-F", message(env.STATE_CHANGE, failures, "ful-err-1")))
    assert (result.applied, result.dead_letters) == (1, 0)
    assert door.app.get_order(failed).state is OrderState.FAILED

    build_projector(kafka_settings, db).catch_up()
    publishers().drain()
    expected = outbox(db)
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=len(expected))
    told = {
        (r.key, body["event"]["serviceOrder"]["state"]): body["event"]["serviceOrder"]
        for r in records
        if (body := body_of(r))["eventType"] == "ServiceOrderStateChangeEvent"
    }
    (rejection,) = told[(str(rejected).encode(), "rejected")]["errorMessage"]
    assert rejection["@type"] == "ServiceOrderErrorMessage"
    assert (rejection["code"], rejection["message"]) == ("rejected", "no coverage at the site")
    doc = told[(str(failed).encode(), "failed")]
    (failure,) = doc["errorMessage"]
    assert failure["code"] == "item_failed"
    assert [ref["itemId"] for ref in failure["serviceOrderItem"]] == item_ids
    assert all(ref["serviceOrderId"] == str(failed) for ref in failure["serviceOrderItem"])
    assert all(item["errorMessage"][0]["code"] == "item_failed" for item in doc["serviceOrderItem"])


def test_a_refused_create_is_announced_keyed_by_its_external_id(
    kafka_settings, door, db, publishers
):
    unknown_spec = order("CRM-R1", random.Random(1))
    unknown_spec["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "teleporter"
    no_action = order("CRM-R2", random.Random(2))
    del no_action["serviceOrderItem"][1]["action"]
    result = door.send(
        (b"CRM-R1", create_event("r1-create", unknown_spec)),
        (b"KEY-R2", create_event("r2-create", no_action)),
        (b"CRM-R3", b"{not json"),  # unreadable: nobody to tell
        (b"CRM-R4", message("ServiceOrderMilestoneEvent", {"serviceOrder": {}}, "r4")),
        (b"CRM-OK", create_event("ok-create", ORDERS["CRM-A"] | {"externalId": "CRM-OK"})),
    )
    assert (result.applied, result.dead_letters) == (1, 4)
    assert not door.app.exists(order_id_for("CRM-R1"))

    publishers(notifications=False).drain()
    dead = {d["event_id"]: d for d in door.store.dead_letters()}
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=2)
    assert sorted(r.key for r in records) == [b"CRM-R1", b"CRM-R2"]
    for r in records:
        body = body_of(r)
        external = r.key.decode()
        source = "r1-create" if external == "CRM-R1" else "r2-create"
        category = "refused" if external == "CRM-R1" else "invalid_order"
        assert dead[source]["category"] == category
        assert body["eventType"] == "ServiceOrderStateChangeEvent"
        assert body["correlationId"] == source
        assert body["title"] == "ServiceOrderCreateEvent refused"
        resource = body["event"]["serviceOrder"]
        assert resource["state"] == "rejected"
        assert resource["externalId"] == external
        assert "id" not in resource  # the order never existed
        (error,) = resource["errorMessage"]
        assert error["code"] == category
        assert error["message"] == dead[source]["reason"] == body["description"]
        assert r.headers["eventType"] == b"ServiceOrderStateChangeEvent"
        assert r.headers["refusal.category"] == category.encode()
        assert r.headers["refusal.event_id"] == source.encode()
    assert "teleporter" in dead["r1-create"]["reason"]
    assert "serviceOrderItem.1.action" in dead["r2-create"]["reason"]


def test_publishing_again_after_a_crash_repeats_only_the_same_event_ids(
    kafka_settings, door, db, publishers, monkeypatch
):
    lifecycle(door)
    build_projector(kafka_settings, db).catch_up()
    expected = outbox(db)

    crashing = publishers(batch=4)  # several rounds: the first is marked, the second is not
    sent_rounds = []
    original = Publisher._send_all

    def send_then_crash(self: Publisher, records: list[Any]) -> None:
        original(self, records)
        sent_rounds.append(len(records))
        if len(sent_rounds) == 2:
            raise ConnectionError("crashed after the broker acknowledged, before marking")

    monkeypatch.setattr(Publisher, "_send_all", send_then_crash)
    crashing.notifications, crashing.dead_letters = True, False
    assert crashing.tick() is True
    with pytest.raises(ConnectionError):
        crashing.tick()
    monkeypatch.undo()
    position = db.fetchone(
        "SELECT position, seq FROM outbound_position WHERE name = %s", (NOTIFICATIONS,)
    )
    assert position is not None  # the first round is marked, the second is not

    publishers().drain()  # a new publisher: resumes from the marked position
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=len(expected) + 4)
    counts = Counter(body_of(r)["eventId"] for r in records)
    assert set(counts) == {e for e, *_ in expected}, "every notification, nothing else"
    assert sorted(counts.values(), reverse=True)[:4] == [2, 2, 2, 2]
    assert sum(counts.values()) == len(expected) + 4  # exactly the unmarked round again
    repeated = {e for e, n in counts.items() if n == 2}
    assert repeated == {e for e, *_ in expected[4:8]}
    copies: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        copies[body_of(r)["eventId"]].add(r.value)
        assert r.key == str(next(o for e, o, *_ in expected if e == body_of(r)["eventId"])).encode()
    assert all(len(v) == 1 for v in copies.values()), "a duplicate is the same record"

    # A reset of the outbound position (e.g. a restored database) publishes all again.
    db.execute("DELETE FROM outbound_position WHERE name = %s", (NOTIFICATIONS,))
    publishers().drain()
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=2 * len(expected) + 4)
    counts = Counter(body_of(r)["eventId"] for r in records)
    assert set(counts) == {e for e, *_ in expected}
    assert sum(counts.values()) == 2 * len(expected) + 4

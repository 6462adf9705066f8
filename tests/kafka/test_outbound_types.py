"""Issue 19: the outbound Kafka topic carries each of the nine TMF641 v4.1 notification types
that apply (all but ServiceOrderJeopardyEvent), with `errorMessage` and `milestone` filled
where they apply: the same outbox rows as the hub (tests/api/test_hub_types.py), published
by the real publisher to the real broker. The scenario and its checks:
tests/support/notification_scenario.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from notification_scenario import APPLY, check, drive
from serviceorders.bootstrap import build_projector, open_read_db
from serviceorders.domain.application import ServiceOrders
from serviceorders.notifications.kafka import Publisher
from serviceorders.projections.notifications import absolute_hrefs
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture
def db(kafka_settings: Settings) -> Iterator[ReadDb]:
    found = open_read_db(kafka_settings)
    yield found
    found.close()


def test_every_type_that_applies_is_published_with_its_outcomes(
    kafka_settings: Settings,
    open_app: Callable[[Settings], ServiceOrders],
    db: ReadDb,
    actors: Any,
    samples: Any,
) -> None:
    app = open_app(kafka_settings)
    scenario = drive(app, actors, samples, "KT")
    build_projector(kafka_settings, db).catch_up()
    rows = [
        (event_id, event_type, db.decode(payload, "json"))
        for event_id, event_type, payload in db.fetchall(
            "SELECT event_id, event_type, payload FROM notification_outbox ORDER BY position, seq"
        )
    ]
    assert {t for _, t, _ in rows} == APPLY

    publisher = Publisher(kafka_settings)
    try:
        publisher.drain()
        assert publisher.published == len(rows)
    finally:
        publisher.close(quiet=True)
    records = read_topic(kafka_settings, kafka_settings.events_topic, expect=len(rows))
    records.sort(key=lambda r: (r.partition, r.offset))  # per order: one partition, in order
    assert len(records) == len(rows), "no notification missing, none extra"
    bodies = [orjson.loads(r.value) for r in records if r.value is not None]

    # The same rows as the outbox (which the hub delivers): payloads, types, ids.
    published = {b["eventId"]: b for b in bodies}
    assert set(published) == {e for e, _, _ in rows}
    for event_id, _, payload in rows:
        assert published[event_id] == absolute_hrefs(payload, kafka_settings.public_base_url)
    for r in records:
        assert r.headers["eventType"] == orjson.loads(r.value or b"{}")["eventType"].encode()
    check(bodies, scenario)

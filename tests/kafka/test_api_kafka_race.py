"""An API write racing a Kafka revision of the same order (docs/reliability.md).

A real uvicorn server (in a thread, open mode: the anonymous operator) and a real
`ConsumerWorker` (in a thread, its own application and connections) write to the same
orders on the same database (SQLite and PostgreSQL). In each round, for every order of the
round, a `ServiceOrderAttributeValueChangeEvent` (description := "kafka N") is produced on
the inbound topic while another thread PATCHes the same order through the API (priority,
and a note), both released by a barrier. The consumer applies a batch in one transaction on
the orders as it loaded them; when the API saved in between, the store refuses the batch
(the unique (order, version)), nothing of it is written, and the worker reads it again
(`stats.failures` counts those). The API's write is applied to the order as it is when
saved, or answered 409.

Asserted: the API answers 200 or 409 (with If-Match: 200, 409 or 412), never 5xx; the
worker thread never dies; every Kafka revision is applied exactly once (one OrderRevised
from Kafka with its eventId per order); every API change answered 200 is in the order, once
(no lost update, no duplicate event); the final order holds both changes.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from builders import order_body, served_api, tmf_item, wait_for
from serviceorders.api.auth import Authenticator
from serviceorders.bootstrap import build_api_context, init_database
from serviceorders.consumers.sample import envelope
from serviceorders.settings import Settings

from .conftest import produce

pytestmark = pytest.mark.kafka

ORDER_PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"
ROUNDS, PER_ROUND = 3, 10  # 30 races per backend


@pytest.fixture
def race_settings(kafka_settings: Settings) -> Settings:
    # no four-eyes needed; hub deliveries are not part of this test
    found = kafka_settings.model_copy(update={"consume_batch": 50, "hub_delivery": False})
    init_database(found)
    return found


@pytest.fixture
def server(race_settings: Settings) -> Iterator[str]:
    """The API served by uvicorn in a thread (open mode, loopback)."""
    with served_api(build_api_context(race_settings, Authenticator([])), "uvicorn-race") as url:
        yield url


def _order(external_id: str) -> dict[str, Any]:
    return order_body(
        external_id,
        "original",
        priority="2",
        category="enterprise",
        order_items=[{**tmf_item(), "@type": "ServiceOrderItem"}],
        **{"@type": "ServiceOrder"},
    )


def _revision(event_id: str, external_id: str, description: str) -> bytes:
    return orjson.dumps(
        envelope(
            event_id,
            "ServiceOrderAttributeValueChangeEvent",
            {"serviceOrder": {"externalId": external_id, "description": description}},
        )
    )


def _race_round(
    settings: Settings,
    base: str,
    externals: list[str],
    ids: dict[str, str],
    tags: dict[str, str],
    event_ids: dict[str, str],
    conditional: bool,
) -> dict[str, httpx.Response]:
    """One round: the Kafka revisions of `externals` produced while another thread PATCHes
    the same orders through the API, both released by a barrier; returns the API answers."""
    barrier = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}
    failure: list[BaseException] = []

    def kafka_side() -> None:
        try:
            barrier.wait(30)
            produce(
                settings,
                [
                    (ext.encode(), _revision(event_ids[ext], ext, f"kafka {ext}"))
                    for ext in externals
                ],
            )
        except BaseException as e:
            failure.append(e)

    def api_side() -> None:
        mine = httpx.Client(base_url=base, timeout=60)
        try:
            mine.get("/health")
            barrier.wait(30)
            time.sleep(0.05)  # let the first records reach the consumer
            for ext in externals:
                headers = {"Content-Type": "application/merge-patch+json"}
                if conditional:
                    headers["If-Match"] = tags[ext]
                answers[ext] = mine.patch(
                    f"{ORDER_PATH}/{ids[ext]}",
                    headers=headers,
                    json={"priority": "0", "note": [{"text": f"api {ext}"}]},
                )
        except BaseException as e:
            failure.append(e)
        finally:
            mine.close()

    threads = [threading.Thread(target=kafka_side), threading.Thread(target=api_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not failure, failure
    return answers


def _run_races(
    settings: Settings, base: str, run_worker: Callable[[Settings], Any], conditional: bool
) -> tuple[Counter[str], Any]:
    worker = run_worker(settings)
    http = httpx.Client(base_url=base, timeout=60)
    outcomes: Counter[str] = Counter()
    token = secrets.token_hex(3)
    try:
        for round_ in range(ROUNDS):
            externals = [f"race-{token}-{round_}-{n}" for n in range(PER_ROUND)]
            ids, tags = {}, {}
            for ext in externals:
                created = http.post(ORDER_PATH, json=_order(ext))
                assert created.status_code == 201, created.text
                ids[ext], tags[ext] = created.json()["id"], created.headers["etag"]
            event_ids = {ext: f"rev-{ext}" for ext in externals}
            answers = _race_round(settings, base, externals, ids, tags, event_ids, conditional)
            for ext in externals:
                status = answers[ext].status_code
                assert status < 500, answers[ext].text
                allowed = (200, 409, 412) if conditional else (200, 409)
                assert status in allowed, answers[ext].text
                outcomes[f"api {status}"] += 1

            for ext in externals:
                wait_for(
                    lambda ext=ext, ids=ids: (
                        http.get(f"/api/v1/orders/{ids[ext]}").json()["description"]
                        == f"kafka {ext}"
                    ),
                    timeout=60,
                    what=f"the Kafka revision of {ext}",
                )
            assert worker.thread.is_alive(), "the consumer died"
            for ext in externals:
                check_order(http, ids[ext], ext, event_ids[ext], answers[ext].status_code)
    finally:
        http.close()
    assert worker.thread.is_alive()
    worker.stop()
    assert worker.worker.exit_code == 0
    return outcomes, worker.worker.stats


def check_order(
    http: httpx.Client, order_id: str, ext: str, event_id: str, api_status: int
) -> None:
    view = http.get(f"/api/v1/orders/{order_id}").json()
    events = http.get(f"/api/v1/orders/{order_id}/events").json()
    from_kafka = [
        e for e in events if e["type"] == "OrderRevised" and e["source"].get("channel") == "kafka"
    ]
    assert [e["source"].get("eventId") for e in from_kafka] == [event_id], from_kafka
    from_api = [
        e
        for e in events
        if e["source"].get("channel") == "api" and e["type"] in ("OrderRevised", "NoteAdded")
    ]
    api_notes = [n for n in view["notes"] if n["text"] == f"api {ext}"]
    assert view["description"] == f"kafka {ext}"  # the Kafka change
    if api_status == 200:  # both changes present, each once
        assert view["priority"] == "0", view
        assert len(api_notes) == 1, view["notes"]
        assert sorted(e["type"] for e in from_api) == ["NoteAdded", "OrderRevised"], from_api
    else:  # refused: nothing of the API request was written
        assert view["priority"] == "2", view
        assert api_notes == [] and from_api == [], (from_api, view["notes"])
    versions = [e["version"] for e in events]
    assert versions == list(range(1, len(events) + 1)), versions  # no gap, no duplicate


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "if-match"])
def test_api_patch_racing_a_kafka_revision(
    race_settings: Settings,
    server: str,
    run_worker: Callable[[Settings], Any],
    conditional: bool,
) -> None:
    """Both kinds of PATCH: without a version, and conditional (If-Match)."""
    outcomes, stats = _run_races(race_settings, server, run_worker, conditional=conditional)
    assert stats.dead_letters == 0, stats
    assert stats.applied == ROUNDS * PER_ROUND, stats
    kind = "conditional API PATCH" if conditional else "API PATCH"
    print(
        f"\n{ROUNDS * PER_ROUND} {kind} vs Kafka revision races "
        f"({race_settings.database.kind}): {dict(outcomes)}; consumer batches retried "
        f"after a conflict: {stats.failures}; dead letters: {stats.dead_letters}"
    )

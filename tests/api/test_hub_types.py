"""Issue 19: a real hub listener receives each of the nine TMF641 v4.1 notification types
that apply (all but ServiceOrderJeopardyEvent), with `errorMessage` and `milestone` filled
where they apply (tests/support/notification_scenario.py: the scenario and its checks,
shared with the Kafka outbound test). On SQLite and PostgreSQL (the root `settings`
fixture); orders driven through the application, as in tests/api/test_hub.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from notification_scenario import APPLY, JEOPARDY, check, drive, once
from serviceorders.notifications.filters import Filter, QueryError
from serviceorders.projections.notifications import EVENT_TYPES, listener_name
from serviceorders.settings import Settings

from . import test_hub as hub
from .test_hub import HUB, Listener, eventually, outbox, register

# test_hub.py's fixtures, used here as there.
hub_settings, make_client, hub_client = hub.hub_settings, hub.make_client, hub.hub_client
listener, run_worker, orders = hub.listener, hub.run_worker, hub.orders

pytestmark = pytest.mark.integration


def test_every_type_that_applies_reaches_a_listener_with_its_outcomes(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
    actors: Any,
    samples: Any,
) -> None:
    register(hub_client, auth("integrator"), listener.url)
    run_worker(hub_settings())
    scenario = drive(orders.app, actors, samples, "HT")
    orders.project()
    rows = outbox(hub_settings())
    eventually(lambda: len(once(listener.bodies())) >= len(rows), what="every notification")

    bodies = listener.bodies()
    assert [b["eventId"] for b in once(bodies)] == [r["event_id"] for r in rows]
    check(bodies, scenario)
    for path, body in listener.accepted:  # each type at its own listener path
        assert path == f"/hooks/so/listener/{listener_name(body['eventType'])}"
    assert {path.rsplit("/", 1)[1] for path, _ in listener.accepted} == {
        listener_name(t) for t in APPLY
    }


def test_the_new_types_are_subscribable_and_filtered(
    orders: Any,
    hub_client: TestClient,
    auth: Any,
    listener: Listener,
    hub_settings: Callable[..., Settings],
    run_worker: Any,
    actors: Any,
    samples: Any,
) -> None:
    assert set(EVENT_TYPES) == APPLY
    for event_type in ("ServiceOrderMilestoneEvent", "CancelServiceOrderInformationRequiredEvent"):
        assert Filter.parse(f"eventType={event_type}").event_types == {event_type}
    with pytest.raises(QueryError, match="unknown eventType"):  # not sent: not subscribable
        Filter.parse(f"eventType={JEOPARDY}")
    refused = hub_client.post(
        HUB,
        json={"callback": listener.url, "query": f"eventType={JEOPARDY}"},
        headers=auth("integrator"),
    )
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_query"

    query = "eventType=ServiceOrderMilestoneEvent,CancelServiceOrderInformationRequiredEvent"
    register(hub_client, auth("integrator"), listener.url, query)
    run_worker(hub_settings())
    drive(orders.app, actors, samples, "HF")
    orders.project()
    wanted = [r for r in outbox(hub_settings()) if r["type"] in query.split("=", 1)[1].split(",")]
    assert len(wanted) == 4 + 2 + 1  # the milestones of two orders, the question
    eventually(lambda: len(once(listener.bodies())) >= len(wanted), what="the filtered ones")
    assert [b["eventId"] for b in once(listener.bodies())] == [r["event_id"] for r in wanted]

"""The doors agree (issue 16): the same refusal is answered with the same error code at every
door, each in its own form, as the one table (`ANSWERS`, domain/errors.py) prescribes.

* A refused order (an item of a specification the catalog does not know) through TMF641
  REST (POST: a TMF Error, `code` and `reason` the error's code, the table's status), the
  console's capture form (the table's console status, `data-code` on the page), Kafka (a
  create message: a dead letter of the table's category, `serviceorders dlq list --json`)
  and the CLI (`order create FILE`: `refused (CODE): ...` on stderr, the table's exit).
* A stale version at the doors that take one: TMF641 PATCH and an /api/v1 decision with an
  old If-Match, the console's decision form with an old form version.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from builders import order_body, receive, run, tmf_item, upstream
from fastapi.testclient import TestClient
from kafka import KafkaProducer
from serviceorders.api.app import create_app
from serviceorders.api.auth import ApiKey, Authenticator
from serviceorders.api.context import ApiContext
from serviceorders.bootstrap import build_api_context, init_database
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.kafka import ensure_topics
from serviceorders.consumers.sample import create_event
from serviceorders.domain.errors import ANSWERS
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

EXE = shutil.which("serviceorders")
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
UNKNOWN_SPEC = "no-such-spec"
REFUSED = "validation_failed"
STALE = "precondition_failed"
KEYS = {
    "integrator": ("crm", "integrator"),
    "agent": ("alice", "agent"),
    "manager": ("bob", "manager"),
}


# ------------------------------------------------------------------------- doors
class Doors:
    """The REST API and the console of one application (keys per role), and the
    environment a `serviceorders` process needs for the same store."""

    def __init__(
        self, settings: Settings, client: TestClient, ctx: ApiContext, keys: dict[str, ApiKey]
    ) -> None:
        self.settings, self.client, self.ctx, self.keys = settings, client, ctx, keys
        self.last: Any = None

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role].key}"}

    def env(self, **extra: str) -> dict[str, str]:
        db = self.settings.database
        url = (
            f"sqlite:///{db.dbname}"
            if db.kind == "sqlite"
            else f"postgresql://{db.user}@{db.host}:{db.port}/{db.dbname}"
        )
        return {**os.environ, "DATABASE_URL": url, **extra}

    # the console: a browser with its cookies and the CSRF token of the last page
    def get(self, path: str) -> Any:
        self.last = self.client.get(path)
        return self.last

    def post(self, path: str, data: dict[str, str] | None = None) -> Any:
        found = re.search(r'name="csrf" value="([^"]+)"', self.last.text)
        assert found, "no CSRF token on the page"
        self.last = self.client.post(path, data={"csrf": found.group(1), **(data or {})})
        return self.last

    def sign_in(self, role: str) -> None:
        self.get("/console/signin")
        assert self.post("/console/signin", {"key": self.keys[role].key}).status_code == 200


@pytest.fixture
def doors(settings: Settings) -> Iterator[Doors]:
    init_database(settings)
    keys = {
        name: ApiKey(actor, role, f"{name}-{secrets.token_hex(16)}")
        for name, (actor, role) in KEYS.items()
    }
    ctx = build_api_context(settings, Authenticator(list(keys.values())))
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            yield Doors(settings, client, ctx, keys)
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


def tmf_body(external_id: str) -> dict[str, Any]:
    """A TMF641 order of one item whose specification the catalog does not know."""
    item = tmf_item(spec=UNKNOWN_SPEC)
    return order_body(external_id, "refused at every door", order_items=[item])


def assert_tmf_error(response: Any, code: str) -> None:
    answer = ANSWERS[code]
    body = response.json()
    assert response.status_code == answer.http_status, body
    assert body["code"] == code and body["reason"] == code, body


def assert_console_page(response: Any, code: str) -> None:
    answer = ANSWERS[code]
    assert response.status_code == answer.console_status, response.text[-2000:]
    assert f'data-code="{code}"' in response.text, response.text[-2000:]


# ---------------------------------------------------------------- the refused order
def rest_refuses(doors: Doors, tmp_path: Path) -> None:
    response = doors.client.post(
        ORDERS, json=tmf_body("DOORS-REST"), headers=doors.auth("integrator")
    )
    assert_tmf_error(response, REFUSED)
    assert UNKNOWN_SPEC in response.json().get("message", ""), response.json()


def console_refuses(doors: Doors, tmp_path: Path) -> None:
    doors.sign_in("agent")
    doors.get("/console/drafts/new")
    draft = doors.post("/console/drafts", {"customerId": "CUST-1"})
    assert draft.status_code == 200 and draft.url.path.startswith("/console/drafts/"), draft.text
    path = draft.url.path
    doors.get(f"{path}/items/new?spec=internet-access")
    added = doors.post(f"{path}/items", {"spec": UNKNOWN_SPEC, "itemId": "1"})
    if added.status_code < 300 and f'data-code="{REFUSED}"' not in added.text:
        # the draft took the line: the refusal comes with the submission
        doors.get(path)
        added = doors.post(f"{path}/submit")
    assert_console_page(added, REFUSED)
    assert UNKNOWN_SPEC in added.text


def kafka_refuses(doors: Doors, tmp_path: Path, broker: EmbeddedBroker) -> None:
    token = secrets.token_hex(4)
    settings = doors.settings.model_copy(
        update={
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "consumer_group": f"g-{token}",
            "inbound_topic": f"in-{token}",
            "events_topic": f"ev-{token}",
            "topic_partitions": 1,
            "hub_delivery": False,
        }
    )
    ensure_topics(settings)
    producer = KafkaProducer(acks="all", **client_options(settings))
    try:
        value = create_event("DOORS-KAFKA-create", tmf_body("DOORS-KAFKA"))
        producer.send(settings.inbound_topic, key=b"DOORS-KAFKA", value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)
    env = doors.env(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        SERVICEORDERS_CONSUMER_GROUP=settings.consumer_group,
        SERVICEORDERS_INBOUND_TOPIC=settings.inbound_topic,
        SERVICEORDERS_EVENTS_TOPIC=settings.events_topic,
        SERVICEORDERS_HUB_DELIVERY="no",
    )
    # `serviceorders consume` as a real process: it reads the message, then is idle
    consumed = cli(env, tmp_path, "consume", "--idle-exit", "8")
    assert consumed.returncode == 0, consumed.stderr[-3000:]
    listed = cli(env, tmp_path, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert len(letters) == 1, letters
    assert letters[0]["category"] == ANSWERS[REFUSED].category, letters
    assert UNKNOWN_SPEC in letters[0]["reason"], letters


def cli_refuses(doors: Doors, tmp_path: Path) -> None:
    order_file = tmp_path / "order.json"
    order_file.write_text(
        json.dumps(
            {
                "header": {"external_id": "DOORS-CLI"},
                "items": [
                    {
                        "id": "1",
                        "action": "add",
                        "specification": {"id": UNKNOWN_SPEC},
                        "place": {"id": "S1"},
                    }
                ],
            }
        )
    )
    done = cli(doors.env(), tmp_path, "order", "--actor", "crm", "create", str(order_file))
    assert done.returncode == ANSWERS[REFUSED].cli_exit, (done.returncode, done.stderr)
    assert f"refused ({REFUSED}): " in done.stderr, done.stderr


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "the serviceorders command is not installed"
    return run([EXE, *args], cwd=cwd, env=env, timeout=120)


REFUSING_DOORS: dict[str, Callable[..., None]] = {
    "rest": rest_refuses,
    "console": console_refuses,
    "kafka": kafka_refuses,
    "cli": cli_refuses,
}


@pytest.mark.kafka
@pytest.mark.parametrize("door", list(REFUSING_DOORS))
def test_a_refused_order_is_the_same_refusal_at_every_door(
    door: str, doors: Doors, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if door == "kafka":
        kafka_refuses(doors, tmp_path, request.getfixturevalue("broker"))
    else:
        REFUSING_DOORS[door](doors, tmp_path)
    # nothing was stored at any door
    assert doors.client.get(ORDERS, headers=doors.auth("integrator")).json() == []


# ------------------------------------------------------------------ a stale version
def received(doors: Doors) -> tuple[str, int]:
    """An order in review (received from upstream), its id and version."""
    outcome = doors.ctx.app.handle(upstream(), receive(f"DOORS-{secrets.token_hex(3)}"))
    doors.ctx.sync()
    return str(outcome.order.id), outcome.order.version


def tmf_patch_is_stale(doors: Doors, order_id: str, version: int) -> None:
    headers = {
        **doors.auth("integrator"),
        "Content-Type": "application/merge-patch+json",
        "If-Match": f'"{version + 5}"',
    }
    response = doors.client.patch(f"{ORDERS}/{order_id}", json={"priority": "4"}, headers=headers)
    assert_tmf_error(response, STALE)


def v1_decision_is_stale(doors: Doors, order_id: str, version: int) -> None:
    response = doors.client.post(
        f"/api/v1/orders/{order_id}/approve",
        json={},
        headers={**doors.auth("manager"), "If-Match": f'"{version + 5}"'},
    )
    assert_tmf_error(response, STALE)


def console_form_is_stale(doors: Doors, order_id: str, version: int) -> None:
    doors.sign_in("manager")
    doors.get(f"/console/orders/{order_id}")
    response = doors.post(f"/console/orders/{order_id}/approve", {"version": str(version + 5)})
    assert_console_page(response, STALE)


STALE_DOORS: dict[str, Callable[[Doors, str, int], None]] = {
    "tmf641-patch": tmf_patch_is_stale,
    "api-v1-decision": v1_decision_is_stale,
    "console-form": console_form_is_stale,
}


@pytest.mark.parametrize("door", list(STALE_DOORS))
def test_a_stale_version_is_the_same_refusal_at_every_door_that_takes_one(
    door: str, doors: Doors
) -> None:
    order_id, version = received(doors)
    STALE_DOORS[door](doors, order_id, version)
    # nothing changed
    assert doors.ctx.app.get_order(UUID(order_id)).version == version

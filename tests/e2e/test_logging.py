"""The logs of a real `serviceorders serve` (docs/operations.md, "Logs").

One order goes through the API (POST with X-Correlation-Id, then an approval with If-Match),
one through Kafka (an envelope with a correlationId, approved through the API under the same
correlation id), one through Kafka with only a W3C `traceparent` header, one through the API
with only a `traceparent`, and one bad message. With SERVICEORDERS_LOG_FORMAT=json every line
the process writes (stdout and stderr) must be a JSON object, and the correlation ids must be
found on the intake's and the decisions' records; at DEBUG, neither the API keys nor the
sealed personal data (customer, place and contact names) may appear anywhere in the output.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import order_body, tmf_item
from serviceorders.domain.order import order_id_for

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

EXE = shutil.which("serviceorders")
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
INBOUND = "serviceorder.inbound"
WORKERS = {
    "projector",
    "hub delivery",
    "audit checkpointer",
    "kafka intake",
    "outbound publisher",
    "api",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@dataclass
class Run:
    """What one run did, and what it wrote."""

    keys: dict[str, str]
    secrets: list[str]  # the personal data sent, sealed in the events
    api_order: str = ""
    api_correlation: str = ""
    kafka_order: str = ""
    kafka_correlation: str = ""
    traced_kafka_order: str = ""
    kafka_trace: str = ""
    traced_api_order: str = ""
    api_trace: str = ""
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    output: str = ""  # stdout then stderr
    code: int | None = None

    def records(self) -> list[dict[str, Any]]:
        """Every line written, each parsed as a JSON object (any other line fails)."""
        found = []
        for line in self.output.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"a log line that is not JSON: {line!r}")
            assert isinstance(record, dict), line
            assert {"time", "level", "logger", "message"} <= set(record), line
            found.append(record)
        return found


def _order(external_id: str, customer: str, place: str, contact: str) -> dict[str, Any]:
    item = {"@type": "ServiceOrderItem", **tmf_item(place=("S1", place))}
    return order_body(
        external_id,
        None,
        customer=(f"CUST-{external_id}", customer),
        order_items=[item],
        **{"@type": "ServiceOrder", "category": "enterprise", "priority": "2"},
        notificationContact=contact,
    )


def _traceparent() -> tuple[str, str]:
    trace = secrets.token_hex(16)
    return trace, f"00-{trace}-{secrets.token_hex(8)}-01"


@contextmanager
def _serve(tmp_path: Path, level: str, run: Run) -> Iterator[tuple[httpx.Client, str]]:
    """`serviceorders serve` on free ports in `tmp_path` (SQLite, embedded broker); yields an
    HTTP client and the broker's address; stops it with SIGTERM and keeps its output."""
    assert EXE
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
        and not k.startswith("SERVICEORDERS_")
    }
    env.update(
        {
            "SERVICEORDERS_LOG_FORMAT": "json",
            "SERVICEORDERS_LOG_LEVEL": level,
            "SERVICEORDERS_ACCESS_LOG": "yes",
            "PYTHONUNBUFFERED": "1",
            "SERVICEORDERS_API_KEYS": ",".join(
                f"{actor}:{role}:{run.keys[role]}"
                for actor, role in (("crm", "integrator"), ("bob", "manager"), ("ops", "admin"))
            ),
        }
    )
    port = _free_port()
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        server = subprocess.Popen(
            [EXE, "serve", "--port", str(port), "--kafka-port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
        )

    def written() -> str:
        return out_path.read_text(errors="replace") + err_path.read_text(errors="replace")

    try:

        def broker() -> str | None:
            assert server.poll() is None, written()
            found = re.search(
                r"embedded Kafka broker \(memory only\) on (127\.0\.0\.1:\d+)",
                err_path.read_text(errors="replace"),
            )
            return found.group(1) if found else None

        bootstrap = _wait(broker, "the embedded broker")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

            def ready() -> bool:
                try:
                    return http.get("/health").status_code == 200
                except httpx.HTTPError:
                    return False

            _wait(ready, "the API")
            yield http, bootstrap
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            run.code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        run.output = written()


def _auth(run: Run, role: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {run.keys[role]}", **extra}


def _approve(http: httpx.Client, run: Run, order_id: str, correlation: str) -> None:
    path = f"/api/v1/orders/{order_id}"
    etag = _wait(
        lambda: (lambda r: r.status_code == 200 and r.headers["etag"])(
            http.get(path, headers=_auth(run, "manager"))
        ),
        f"order {order_id}",
    )
    approved = http.post(
        f"{path}/approve",
        json={"note": "checked"},
        headers=_auth(run, "manager", **{"If-Match": etag, "X-Correlation-Id": correlation}),
    )
    assert approved.status_code == 200, approved.text


def _create_event(order: dict[str, Any], correlation_id: str | None = None) -> dict[str, Any]:
    """A ServiceOrderCreateEvent envelope around a TMF641 body (a correlationId if given)."""
    envelope: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "eventType": "ServiceOrderCreateEvent",
    }
    if correlation_id is not None:
        envelope["correlationId"] = correlation_id
    return {**envelope, "event": {"serviceOrder": order}}


def _publish(
    bootstrap: str,
    key: str,
    envelope: dict[str, Any] | bytes,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        value = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
        producer.send(INBOUND, key=key.encode(), value=value, headers=headers or []).get(timeout=60)
    finally:
        producer.close(timeout=10)


def _drive(tmp_path: Path, level: str) -> Run:
    tag = secrets.token_hex(4)
    names = {n: f"{n}-{tag}-{secrets.token_hex(6)}" for n in ("Customer", "Place", "Contact")}
    run = Run(
        keys={
            role: f"{role}-key-{secrets.token_hex(16)}"
            for role in ("integrator", "manager", "admin")
        },
        secrets=[*names.values()],
    )

    def body(external_id: str, n: int) -> dict[str, Any]:
        return _order(
            external_id,
            f"{names['Customer']} {n}",
            f"{names['Place']} {n}",
            f"{names['Contact']}.{n}@example.org",
        )

    with _serve(tmp_path, level, run) as (http, bootstrap):
        # 1. through the API, with X-Correlation-Id
        run.api_correlation = f"corr-api-{tag}"
        created = http.post(
            ORDERS,
            json=body(f"LOG-API-{tag}", 1),
            headers=_auth(run, "integrator", **{"X-Correlation-Id": run.api_correlation}),
        )
        assert created.status_code == 201, created.text
        run.api_order = created.json()["id"]
        _approve(http, run, run.api_order, run.api_correlation)

        # 2. through Kafka, with a correlationId; approved through the API
        run.kafka_correlation = f"corr-kafka-{tag}"
        external = f"LOG-KAFKA-{tag}"
        run.kafka_order = str(order_id_for(external))
        _publish(bootstrap, external, _create_event(body(external, 2), run.kafka_correlation))
        _approve(http, run, run.kafka_order, run.kafka_correlation)

        # 3. through Kafka with only a traceparent header
        run.kafka_trace, traceparent = _traceparent()
        external = f"LOG-TRACE-{tag}"
        run.traced_kafka_order = str(order_id_for(external))
        headers = [("traceparent", traceparent.encode())]
        _publish(bootstrap, external, _create_event(body(external, 3)), headers=headers)
        _wait(
            lambda: (
                http.get(
                    f"/api/v1/orders/{run.traced_kafka_order}", headers=_auth(run, "manager")
                ).status_code
                == 200
            ),
            "the traced Kafka order",
        )

        # 4. through the API with only a traceparent header
        run.api_trace, traceparent = _traceparent()
        created = http.post(
            ORDERS,
            json=body(f"LOG-TRACE-API-{tag}", 4),
            headers=_auth(run, "integrator", traceparent=traceparent),
        )
        assert created.status_code == 201, created.text
        run.traced_api_order = created.json()["id"]

        # 5. a bad message: dead-lettered with its reason
        _publish(
            bootstrap,
            f"LOG-BAD-{tag}",
            b'{"eventId": "bad-'
            + tag.encode()
            + b'", "eventType": "ServiceOrderCreateEvent", "event": {"serviceOrder": '
            b'{"externalId": "LOG-BAD", "relatedParty": [{"id": "x", "name": "'
            + names["Customer"].encode()
            + b' 5", "role": "customer"}]}}}',
        )
        for order_id in (
            run.api_order,
            run.kafka_order,
            run.traced_kafka_order,
            run.traced_api_order,
        ):
            events = http.get(f"/api/v1/orders/{order_id}/events", headers=_auth(run, "admin"))
            assert events.status_code == 200, events.text
            run.events[order_id] = events.json()

        def dead_letter_logged() -> bool:
            return "dead letter (" in (tmp_path / "serve.err").read_text(errors="replace")

        _wait(dead_letter_logged, "the dead letter's record")
    return run


def _records(records: list[dict[str, Any]], **wanted: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in wanted.items())]


def test_serve_logs_json_lines_carrying_the_correlation_ids(tmp_path: Path) -> None:
    run = _drive(tmp_path, "INFO")
    assert run.code == 0, run.output[-3000:]
    records = run.records()
    assert not [r for r in records if r["level"] == "DEBUG"], "DEBUG records at INFO"

    # the Kafka order: its intake batch and its decision carry its correlation id
    intake = _records(records, logger="serviceorders.kafka", correlation_id=run.kafka_correlation)
    assert intake, "no intake record with the Kafka order's correlation id"
    batch = intake[0]
    assert batch["message"].startswith("batch: ")
    assert batch["order_id"] == run.kafka_order and batch["applied"] == 1
    assert batch["messages"] == 1 and batch["dead_letters"] == 0
    assert batch["kafka_topic"] == INBOUND and isinstance(batch["kafka_partition"], int)
    assert isinstance(batch["kafka_offset"], int) and batch["duration_ms"] >= 0
    decided = _records(records, logger="serviceorders.decisions", order_id=run.kafka_order)
    assert [(d["decision"], d["correlation_id"], d["actor"]) for d in decided] == [
        ("approve", run.kafka_correlation, "bob")
    ]

    # the API order: its decision, and the access log of both of its requests
    decided = _records(records, logger="serviceorders.decisions", order_id=run.api_order)
    assert [(d["decision"], d["correlation_id"]) for d in decided] == [
        ("approve", run.api_correlation)
    ]
    access = _records(records, logger="serviceorders.access", correlation_id=run.api_correlation)
    assert {(a["method"], a["path"], a["status"]) for a in access} >= {
        ("POST", ORDERS, 201),
        ("POST", f"/api/v1/orders/{run.api_order}/approve", 200),
    }
    assert all(a["duration_ms"] >= 0 for a in access)

    # traceparent only: its trace id becomes the correlation id of the events and the logs
    traced = _records(records, logger="serviceorders.kafka", correlation_id=run.kafka_trace)
    assert traced and traced[0]["order_id"] == run.traced_kafka_order
    assert {e["correlationId"] for e in run.events[run.traced_kafka_order]} == {run.kafka_trace}
    traced = _records(records, logger="serviceorders.access", trace_id=run.api_trace)
    assert traced and traced[0]["correlation_id"] == run.api_trace
    assert {e["correlationId"] for e in run.events[run.traced_api_order]} == {run.api_trace}
    # and the X-Correlation-Id / correlationId ones reached the events too
    assert {e["correlationId"] for e in run.events[run.api_order]} == {run.api_correlation}
    assert {e["correlationId"] for e in run.events[run.kafka_order]} == {run.kafka_correlation}

    # the dead letter: its reason and position, never its bytes
    dead = [r for r in records if r["message"].startswith("dead letter (")]
    assert len(dead) == 1 and dead[0]["category"] and dead[0]["kafka_topic"] == INBOUND
    assert "eventId" not in dead[0]["message"] and "relatedParty" not in json.dumps(dead[0])

    # every worker's start and stop
    started = {
        r["worker"]
        for r in records
        if r["message"].endswith(" started") or r["message"].startswith("api server starting")
    }
    stopped = {r["worker"] for r in records if r["message"].endswith(" stopped")}
    assert started >= WORKERS and stopped >= WORKERS, (started, stopped)
    # uvicorn's own records go through the same JSON handler
    assert _records(records, logger="uvicorn.error")


def test_serve_at_debug_logs_no_key_and_no_personal_data(tmp_path: Path) -> None:
    run = _drive(tmp_path, "DEBUG")
    assert run.code == 0, run.output[-3000:]
    records = run.records()  # JSON at DEBUG too
    assert _records(records, level="DEBUG"), "the logging really was at DEBUG"
    assert _records(records, logger="serviceorders.decisions", order_id=run.kafka_order)
    for key in run.keys.values():
        assert key not in run.output and key[-16:] not in run.output, "an API key is logged"
    for secret in run.secrets:
        assert secret not in run.output, f"personal data is logged: {secret}"

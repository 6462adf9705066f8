"""The README's run command shows the whole engine: `serviceorders serve` with no Kafka
configured starts the embedded broker, consumes what `publish-sample` sends, and publishes
the TMF641 notifications back to Kafka."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from builders import env_without, run
from serviceorders.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

EXE = shutil.which("serviceorders")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_serve_runs_the_intake_on_an_embedded_broker(tmp_path: Path) -> None:
    assert EXE
    env = env_without("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [EXE, "serve", "--port", str(port), "--kafka-port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        bootstrap = None
        while time.monotonic() < deadline and bootstrap is None:
            found = re.search(
                r"embedded Kafka broker \(memory only\) on (127\.0\.0\.1:\d+)", log.read_text()
            )
            bootstrap = found.group(1) if found else None
            time.sleep(0.1)
        assert bootstrap, log.read_text()
        kenv = {**env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        sent = run(
            [
                EXE,
                "publish-sample",
                "--count",
                "12",
                "--seed",
                "5",
                "--bad",
                "0.5",
                "--duplicates",
                "0.25",
            ],
            cwd=tmp_path,
            env=kenv,
            timeout=120,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert "published 21 messages" in sent.stderr  # 12 + 3 repeats + 6 bad

        base = f"http://127.0.0.1:{port}/tmf-api/serviceOrdering/v4/serviceOrder"
        orders: list = []
        while time.monotonic() < deadline:
            orders = _get(f"{base}?limit=100")  # type: ignore[assignment]
            if len(orders) >= 12:
                break
            time.sleep(0.3)
        assert sorted(o["externalId"] for o in orders) == [f"SAMPLE-5-{n:06d}" for n in range(12)]
        assert {o["state"] for o in orders} == {"acknowledged"}

        dead = run(
            [EXE, "dlq", "list", "--json"],
            cwd=tmp_path,
            env=kenv,
            timeout=60,
            check=True,
        )
        letters = json.loads(dead.stdout)
        assert len(letters) == 6 and all(d["reason"] for d in letters)

        # serve exports the intake's, the projector's and the HTTP metrics on one /metrics.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        dead_total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("serviceorders_intake_dead_letters_total{")
        )
        assert dead_total == 6, metrics
        outcomes = {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("serviceorders_intake_messages_total{")
        }
        # Of the 3 repeats, 2 are the same bytes (duplicates), 1 the same order under a new
        # eventId (applied: it takes effect as a repeat of the order, creating nothing).
        assert outcomes == {"applied": 12 + 1, "duplicate": 2, "dead_letter": 6}, outcomes
        lags = [
            line
            for line in metrics.splitlines()
            if line.startswith("serviceorders_consumer_lag_messages{")
        ]
        # caught up: the order topic's 3 partitions and the service import topic's (issue 20)
        assert len(lags) == 2 * 3 and all(line.endswith(" 0.0") for line in lags), lags
        for name in (
            "serviceorders_projection_page_seconds_count",
            "serviceorders_http_requests_total{",
            'outbox="notification_outbox"',
            'serviceorders_projection_position{projection="order_summary"}',
        ):
            assert name in metrics, name

        # The notifications reach the events topic (serve runs the publisher).
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            settings = Settings.from_env({})
            created: set[str] = set()
            while time.monotonic() < deadline and len(created) < 12:
                parts = consumer.partitions_for_topic(settings.events_topic) or set()
                tps = [TopicPartition(settings.events_topic, p) for p in parts]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                for records in consumer.poll(timeout_ms=1000).values():
                    for r in records:
                        body = json.loads(r.value)
                        if body["eventType"] == "ServiceOrderCreateEvent":
                            created.add(body["event"]["serviceOrder"]["externalId"])
            assert len(created) == 12
        finally:
            consumer.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, log.read_text()

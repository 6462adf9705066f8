"""Metrics and health from every process (docs/operations.md, "Metrics"): `consume` and
`project` answer /health and /metrics on their port under real traffic (the embedded broker,
PostgreSQL), `api --workers 2` reports both workers in one scrape, and every metric the
Grafana dashboard queries is one of those processes' exports."""

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
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from builders import own_topics
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from serviceorders.bootstrap import init_database
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.kafka import ensure_topics, publish_inbound
from serviceorders.consumers.sample import traffic
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "serviceorders.json"
EXE = shutil.which("serviceorders")
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _until(
    check: Callable[[], Any], timeout: float, what: str, detail: Callable[[], str] = lambda: ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except (OSError, urllib.error.URLError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {detail()}")
        time.sleep(0.2)


@dataclass
class Scrape:
    """One scrape: every sample (name, labels) -> value, and the declared metric names with
    the names their samples carry (histogram _bucket/_sum/_count, counter _total)."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, url: str) -> Scrape:
        status, body = _get(url)
        assert status == 200, body
        found = cls()
        for family in text_string_to_metric_families(body.decode()):
            found.names.add(family.name)
            suffixes = {
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "counter": ("_total", "_created"),
            }.get(family.type, ())
            found.names.update(family.name + s for s in suffixes)
            for s in family.samples:
                found.samples[(s.name, frozenset(s.labels.items()))] = s.value
                found.names.add(s.name)
        return found

    def series(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        return {
            k[1]: v for k, v in self.samples.items() if k[0] == name and set(labels.items()) <= k[1]
        }

    def value(self, name: str, **labels: str) -> float:
        return sum(self.series(name, **labels).values())


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        assert EXE, "the serviceorders command is not installed"
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                [EXE, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=10)


@dataclass
class Run:
    settings: Settings
    sent: list[Any]  # the sample messages published
    end_offsets: dict[int, int]
    lag_while_blocked: Scrape
    consume: Scrape  # after the intake caught up
    consume_health: tuple[int, dict[str, Any]]
    project_before: Scrape
    project: Scrape
    project_health: tuple[int, dict[str, Any]]
    head: int  # the log head once everything was applied
    api: Scrape
    api_requests: int  # sent to the counted route
    api_metrics_dirs: list[str]  # the multiprocess directory while the api ran
    api_metrics_dirs_after: list[str]
    not_found: int = 0
    exits: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)


def _env(settings: Settings, db_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SERVICEORDERS_", "PROMETHEUS_"))
    }
    return {
        **env,
        "DATABASE_URL": db_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "SERVICEORDERS_CONSUMER_GROUP": settings.consumer_group,
        "SERVICEORDERS_INBOUND_TOPIC": settings.inbound_topic,
        "SERVICEORDERS_EVENTS_TOPIC": settings.events_topic,
        "SERVICEORDERS_INVENTORY_TOPIC": settings.inventory_topic,
        "SERVICEORDERS_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "SERVICEORDERS_CONSUME_BATCH": "50",
        "SERVICEORDERS_DB_LOCK_TIMEOUT": "1",
        **extra,
    }


def _end_offsets(settings: Settings, total: int) -> dict[int, int]:
    """Each partition's end (its last offset + 1), read from the records themselves (the
    embedded broker's ListOffsets answer can lag behind what it serves)."""
    consumer = KafkaConsumer(enable_auto_commit=False, **client_options(settings))
    try:
        tps = [TopicPartition(settings.inbound_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends: dict[int, int] = {tp.partition: 0 for tp in tps}
        seen = 0
        deadline = time.monotonic() + 30
        while seen < total and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=300).items():
                seen += len(records)
                ends[tp.partition] = max(ends[tp.partition], records[-1].offset + 1)
        assert seen == total, f"read {seen} of the {total} published messages"
        return ends
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def run(
    pg_database: Any, pg_cleaner: Callable[[], None], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """One run of the engine's processes, scraped at each step."""
    tmp = tmp_path_factory.mktemp("metrics")
    pg_cleaner()
    db_url = pg_database.url()
    with EmbeddedBroker(log_file=tmp / "broker.log") as broker:
        settings = own_topics(Settings.from_env({"DATABASE_URL": db_url}), broker.bootstrap_servers)
        token = secrets.token_hex(4)  # the traffic's external ids
        init_database(settings)
        ensure_topics(settings)
        env = _env(settings, db_url)
        ports = {name: _free_port() for name in ("consume", "project", "api")}
        procs: dict[str, Process] = {}
        try:
            procs["project"] = Process(
                ["project", "--metrics-port", str(ports["project"])], env, tmp / "project.log"
            )
            base = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}

            def health(name: str) -> tuple[int, dict[str, Any]]:
                status, body = _get(f"{base[name]}/health")
                return status, json.loads(body)

            _until(lambda: health("project")[0] == 200, 60, "the projector's /health")
            project_before = Scrape.of(f"{base['project']}/metrics")

            # The traffic waits in the topic before the consumer starts.
            sample = traffic(60, duplicates=0.3, bad=0.3, seed=14, prefix=f"M-{token}")
            publish_inbound(settings, [(m.key, m.value) for m in sample.messages])
            end_offsets = _end_offsets(settings, len(sample.messages))
            with psycopg.connect(db_url, autocommit=False) as blocker:
                # Hold the intake's position table: the first batch waits for it, so no
                # message is applied yet and every partition's lag is all it holds.
                blocker.execute("LOCK TABLE intake_position IN SHARE MODE")
                # The port from the setting (the option is tested on `project`).
                procs["consume"] = Process(
                    ["consume"],
                    {**env, "SERVICEORDERS_METRICS_PORT": str(ports["consume"])},
                    tmp / "consume.log",
                )
                seen: list[Any] = []

                def lagging() -> Scrape | None:
                    found = Scrape.of(f"{base['consume']}/metrics")
                    lag = inbound_lag(found, settings)
                    seen[:] = [lag]
                    # (a partition's lag appears once a fetch brought its high watermark)
                    return found if lag else None

                blocked = _until(
                    lagging,
                    90,
                    "the lag of the published messages",
                    lambda: f"{len(sample.messages)}, {end_offsets}: {seen}",
                )
                blocker.rollback()

            def caught_up() -> Scrape | None:
                found = Scrape.of(f"{base['consume']}/metrics")
                handled = sum(
                    found.value("serviceorders_intake_messages_total", outcome=o)
                    for o in ("applied", "duplicate", "dead_letter")
                )
                lag = found.series("serviceorders_consumer_lag_messages")
                # the order topic's 3 partitions and the service import topic's (issue 20)
                done = handled == len(sample.messages) and len(lag) == 2 * 3
                return found if done and not any(lag.values()) else None

            consume = _until(caught_up, 90, "the intake to apply every message")
            with psycopg.connect(db_url) as conn:
                head = conn.execute(
                    "SELECT coalesce(max(notification_id), 0) FROM serviceorders_events"
                ).fetchone()[0]

            def projected() -> Scrape | None:
                found = Scrape.of(f"{base['project']}/metrics")
                positions = found.series("serviceorders_projection_position")
                # The positions are read from the database at scrape time, the events
                # counter moves once the page's transaction has committed: a scrape in
                # between sees the one without the other (the test checks both below).
                counted = found.value("serviceorders_projection_events_total") >= head
                return (
                    found if counted and positions and set(positions.values()) == {head} else None
                )

            project = _until(projected, 60, "the projections to reach the log head")

            # api --workers 2: requests on fresh connections until both workers served some
            tmpdir = tmp / "api-tmp"
            tmpdir.mkdir()
            procs["api"] = Process(
                ["api", "--workers", "2", "--port", str(ports["api"])],
                {**env, "TMPDIR": str(tmpdir)},
                tmp / "api.log",
            )
            _until(lambda: health("api")[0] == 200, 60, "the api's /health")
            dirs = sorted(p.name for p in tmpdir.iterdir())
            sent = 0
            api = Scrape()
            for _ in range(30):
                for _ in range(20):
                    status, _body = _get(f"{base['api']}{ORDERS}?limit=1")
                    assert status == 200
                    sent += 1
                api = Scrape.of(f"{base['api']}/metrics")
                workers = api.series("serviceorders_http_worker_requests")
                if len([v for v in workers.values() if v > 0]) >= 2:
                    break
            not_found = _get(f"{base['consume']}/nowhere")[0]
            consume_health = health("consume")
            project_health = health("project")
            exits = {name: p.stop() for name, p in procs.items()}
            yield Run(
                settings=settings,
                sent=sample.messages,
                end_offsets=end_offsets,
                lag_while_blocked=blocked,
                consume=consume,
                consume_health=consume_health,
                project_before=project_before,
                project=project,
                project_health=project_health,
                head=head,
                api=api,
                api_requests=sent,
                api_metrics_dirs=dirs,
                api_metrics_dirs_after=sorted(p.name for p in tmpdir.iterdir()),
                not_found=not_found,
                exits=exits,
                logs={n: p.output() for n, p in procs.items()},
            )
        finally:
            for p in procs.values():
                p.stop()


# ----------------------------------------------------------------------------- consume
def inbound_lag(scrape: Scrape, settings: Settings) -> dict[Any, float]:
    """The consumer lag series of the order topic's partitions."""
    series = scrape.series("serviceorders_consumer_lag_messages")
    return {k: v for k, v in series.items() if dict(k)["topic"] == settings.inbound_topic}


def test_consume_reports_lag_per_partition(run: Run) -> None:
    every = run.lag_while_blocked.series("serviceorders_consumer_lag_messages")
    # the order topic's partitions, and since issue 20 the service import topic's (empty)
    topics = {run.settings.inbound_topic, run.settings.inventory_topic}
    assert {dict(k)["topic"] for k in every} <= topics
    assert all(v == 0 for k, v in every.items() if dict(k)["topic"] != run.settings.inbound_topic)
    blocked = inbound_lag(run.lag_while_blocked, run.settings)
    # Nothing applied yet: each partition's lag is everything the broker holds for it.
    lags = {int(dict(k)["partition"]): v for k, v in blocked.items()}
    assert lags and all(v > 0 for v in lags.values())
    assert lags == {p: run.end_offsets[p] for p in lags}
    after = inbound_lag(run.consume, run.settings)
    assert sorted(int(dict(k)["partition"]) for k in after) == [0, 1, 2]
    assert set(after.values()) == {0}


def test_consume_counts_applied_duplicates_and_dead_letters(run: Run) -> None:
    s = run.consume
    kinds = Counter(m.kind for m in run.sent)
    bad = {k: n for k, n in kinds.items() if k not in ("valid", "duplicate")}
    assert s.value("serviceorders_intake_messages_total", outcome="dead_letter") == sum(
        bad.values()
    )
    dead = {
        dict(k)["category"]: v
        for k, v in s.series("serviceorders_intake_dead_letters_total").items()
    }
    assert dead == bad
    applied = s.value("serviceorders_intake_messages_total", outcome="applied")
    duplicates = s.value("serviceorders_intake_messages_total", outcome="duplicate")
    # Repeats alternate: the same bytes (a duplicate eventId), then the same order under a
    # new eventId (applied, creating nothing).
    same_bytes = (kinds["duplicate"] + 1) // 2
    assert duplicates == same_bytes > 0
    assert applied == kinds["valid"] + kinds["duplicate"] - same_bytes
    assert s.value("serviceorders_intake_batch_seconds_count") >= 1
    # The dead letters' outbox: published by the consumer's publisher, or still waiting.
    outboxes = {dict(k)["outbox"] for k in s.series("serviceorders_outbox_backlog")}
    assert outboxes == {"dead_letter", "kafka_outbox"}


def test_consume_and_project_answer_health(run: Run) -> None:
    # the order topic's 3 partitions and the service import topic's (issue 20)
    assert run.consume_health == (
        200,
        {"status": "ok", "process": "consume", "partitions": 2 * 3},
    )
    assert run.project_health == (200, {"status": "ok", "process": "project"})
    assert run.not_found == 404
    assert run.exits["consume"] == 0 and run.exits["project"] == 0, run.logs
    assert "metrics on http://127.0.0.1:" in run.logs["consume"]


# ----------------------------------------------------------------------------- project
def test_project_reports_positions_and_pages(run: Run) -> None:
    before = run.project_before.series("serviceorders_projection_position")
    after = run.project.series("serviceorders_projection_position")
    assert before.keys() == after.keys() and len(after) >= 5
    assert set(before.values()) == {0} and set(after.values()) == {run.head} and run.head > 0
    assert set(run.project.series("serviceorders_projection_lag_events").values()) == {0}
    assert run.project.value("serviceorders_projection_events_total") == run.head
    assert run.project.value("serviceorders_projection_page_seconds_count") >= 1
    # Kafka is configured: the TMF641 notifications' outbox backlog is reported too.
    assert run.project.series("serviceorders_outbox_backlog", outbox="notification_outbox")


# --------------------------------------------------------------------------------- api
def test_api_workers_are_summed_in_one_scrape(run: Run) -> None:
    workers = run.api.series("serviceorders_http_worker_requests")
    assert len([v for v in workers.values() if v > 0]) == 2, workers
    served = run.api.value("serviceorders_http_requests_total", route=ORDERS)
    assert served == run.api_requests
    # Every request any worker answered is in the sum (the /health polls, earlier scrapes).
    assert run.api.value("serviceorders_http_requests_total") == sum(workers.values())
    assert run.api.series("serviceorders_projection_lag_events")  # read at scrape time
    # The parent's multiprocess directory: one while it ran, removed when it stopped.
    assert [d for d in run.api_metrics_dirs if d.startswith("serviceorders-metrics-")]
    assert not [d for d in run.api_metrics_dirs_after if d.startswith("serviceorders-metrics")]
    assert run.exits["api"] == 0, run.logs["api"]


# ---------------------------------------------------------------------------- dashboard
METRIC = re.compile(r"\b(serviceorders_[a-z0-9_]+)")


def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    assert exprs, "the dashboard has no PromQL queries"
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_dashboard_queries_only_exported_metrics(run: Run) -> None:
    queried = dashboard_metrics()
    exported = run.consume.names | run.project.names | run.api.names
    assert not queried - exported, (
        f"the dashboard queries {sorted(queried - exported)}, which no process exports"
    )
    # It shows every family of the engine's metrics.
    families = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in queried}
    assert {
        "serviceorders_consumer_lag_messages",
        "serviceorders_intake_messages",
        "serviceorders_intake_dead_letters",
        "serviceorders_intake_batch_seconds",
        "serviceorders_projection_position",
        "serviceorders_projection_lag_events",
        "serviceorders_projection_page_seconds",
        "serviceorders_outbox_backlog",
        "serviceorders_hub_backlog",
        "serviceorders_http_requests",
    } <= families


@pytest.mark.parametrize("how", ["option", "setting"])
def test_a_taken_metrics_port_is_one_line_error(tmp_path: Path, how: str) -> None:
    assert EXE
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICEORDERS_")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'so.db'}"
    subprocess.run([EXE, "db", "init"], env=env, check=True, capture_output=True, timeout=60)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["project", "--metrics-port", str(port)] if how == "option" else ["project"]
        if how == "setting":
            env["SERVICEORDERS_METRICS_PORT"] = str(port)
        done = subprocess.run(
            [EXE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr

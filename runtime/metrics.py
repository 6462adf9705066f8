"""The engine's Prometheus metrics, defined once for every process (docs/operations.md).

Counters and histograms are recorded where the work happens (the Kafka intake, the
projector, the HTTP middleware); what the database holds (projection positions, outbox and
hub backlogs) is read when a scrape asks (`DatabaseCollector`), so every process that
exports it reports the same truth. `consume` and `project` answer `/health` and `/metrics`
on their own port (`serve_metrics`); `serve` and `api` on the API's `/metrics`. With `api
--workers N` the workers record into prometheus_client's multiprocess directory and one
scrape sums them (`multiprocess_registry`).

The consumer and the projector only call the methods of `EngineMetrics` (duck-typed), so
neither they nor `domain/` import prometheus_client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

log = logging.getLogger("serviceorders.metrics")

PREFIX = "serviceorders"
# Intake batches and projection pages: milliseconds to tens of seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class EngineMetrics:
    """The instruments one process records into: `http` (the API), `intake` (the Kafka
    consumer), `projector` (the projector thread or process)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        http: bool = False,
        intake: bool = False,
        projector: bool = False,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if http:
            self.http_requests = Counter(
                f"{PREFIX}_http_requests",
                "HTTP requests answered",
                ["method", "route", "status"],
                registry=r,
            )
            self.http_latency = Histogram(
                f"{PREFIX}_http_request_seconds",
                "HTTP request latency",
                ["method", "route"],
                registry=r,
            )
            # One series per live worker process of `api --workers N` (its pid).
            self.worker_requests = Gauge(
                f"{PREFIX}_http_worker_requests",
                "HTTP requests answered by this worker process since it started",
                registry=r,
                multiprocess_mode="liveall",
            )
        if intake:
            self.intake_messages = Counter(
                f"{PREFIX}_intake_messages",
                "Inbound Kafka messages by outcome (applied, duplicate, dead_letter)",
                ["outcome"],
                registry=r,
            )
            self.dead_letters = Counter(
                f"{PREFIX}_intake_dead_letters",
                "Inbound messages dead-lettered, by category",
                ["category"],
                registry=r,
            )
            self.intake_batches = Histogram(
                f"{PREFIX}_intake_batch_seconds",
                "Time to apply one intake micro-batch (one transaction)",
                buckets=DURATION_BUCKETS,
                registry=r,
            )
            self.consumer_lag = Gauge(
                f"{PREFIX}_consumer_lag_messages",
                "Messages of an assigned partition not applied yet (high watermark - position)",
                ["topic", "partition"],
                registry=r,
                multiprocess_mode="liveall",
            )
            self._lag_labels: set[tuple[str, str]] = set()
            # A partition paused at a record batch that cannot be decoded (docs/kafka.md).
            self.stalled_partition = Gauge(
                f"{PREFIX}_intake_stalled_partition",
                "Offset at which a partition is paused: its record batch cannot be decoded "
                "(no series: not stalled)",
                ["topic", "partition"],
                registry=r,
                multiprocess_mode="liveall",
            )
            self.undecodable_batches = Counter(
                f"{PREFIX}_intake_undecodable_batches",
                "Record batches found undecodable (corrupt, or a codec without its library)",
                ["topic", "partition"],
                registry=r,
            )
            for outcome in ("applied", "duplicate", "dead_letter"):
                self.intake_messages.labels(outcome)  # exported as 0 before the first batch
        if projector:
            self.projection_pages = Histogram(
                f"{PREFIX}_projection_page_seconds",
                "Time to apply one page of the event log to the projections",
                buckets=DURATION_BUCKETS,
                registry=r,
            )
            self.projection_events = Counter(
                f"{PREFIX}_projection_events",
                "Events applied to the projections by this process",
                registry=r,
            )
            # The audit checkpointer runs beside the projector (docs/audit.md, "Anchors").
            self.audit_anchor_failures = Counter(
                f"{PREFIX}_audit_anchor_failures",
                "Checkpointer rounds whose checkpoint(s) could not be appended to "
                "SERVICEORDERS_AUDIT_ANCHOR (retried the next round)",
                registry=r,
            )

    # ------------------------------------------------------- the Kafka intake
    def batch_done(
        self, applied: int, duplicates: int, dead: Mapping[str, int], seconds: float
    ) -> None:
        self.intake_messages.labels("applied").inc(applied)
        self.intake_messages.labels("duplicate").inc(duplicates)
        self.intake_messages.labels("dead_letter").inc(sum(dead.values()))
        for category, n in dead.items():
            self.dead_letters.labels(category).inc(n)
        self.intake_batches.observe(seconds)

    def lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of every partition assigned now (the others' series are removed)."""
        labels = {(topic, str(partition)) for topic, partition in lags}
        for gone in self._lag_labels - labels:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(*gone)
        for (topic, partition), value in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)
        self._lag_labels = labels

    def stalled(self, topic: str, partition: int, offset: int | None) -> None:
        """A partition paused at `offset` (a batch that cannot be decoded), or resumed (None)."""
        if offset is None:
            with contextlib.suppress(KeyError):
                self.stalled_partition.remove(topic, str(partition))
            return
        self.stalled_partition.labels(topic, str(partition)).set(offset)
        self.undecodable_batches.labels(topic, str(partition)).inc()

    # ------------------------------------------------------------ the projector
    def page_done(self, events: int, seconds: float) -> None:
        self.projection_events.inc(events)
        self.projection_pages.observe(seconds)

    # ------------------------------------------------------- the audit anchor
    def anchor_failed(self) -> None:
        self.audit_anchor_failures.inc()

    # ------------------------------------------------------------------- HTTP
    def request_done(self, method: str, route: str, status: str, seconds: float) -> None:
        self.http_requests.labels(method, route, status).inc()
        self.http_latency.labels(method, route).observe(seconds)
        self.worker_requests.inc()


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time: projection position and lag
    (`projections`), the intake's outboxes (`intake_outbox`: dead letters and refusal
    notices not yet published), the TMF641 notifications not yet published to Kafka
    (`notifications_outbox`), and the hub listeners' backlog (`hub`). A database that does
    not answer leaves them out (the scrape still answers)."""

    def __init__(
        self,
        open_db: Callable[[], Any],
        *,
        projections: bool = False,
        intake_outbox: bool = False,
        notifications_outbox: bool = False,
        hub: bool = False,
    ) -> None:
        """`open_db` returns a context manager yielding a ReadDb."""
        self.open_db = open_db
        self.projections = projections
        self.intake_outbox = intake_outbox
        self.notifications_outbox = notifications_outbox
        self.hub = hub

    def describe(self) -> Iterable[Any]:
        return []  # no database access when the collector is registered

    def collect(self) -> Iterator[Any]:
        families = []
        try:
            with self.open_db() as db:
                families = list(self._read(db))
        except Exception as e:  # the metrics still answer when the database does not
            log.debug("database metrics unavailable: %s: %s", type(e).__name__, e)
        yield from families

    def _read(self, db: Any) -> Iterator[Any]:
        if self.projections:
            from serviceorders.projections.runner import status

            position = GaugeMetricFamily(
                f"{PREFIX}_projection_position",
                "Log position a projection has reached",
                labels=["projection"],
            )
            lag = GaugeMetricFamily(
                f"{PREFIX}_projection_lag_events",
                "Events the projection is behind the log head",
                labels=["projection"],
            )
            for s in status(db):
                position.add_metric([s.name], s.position)
                lag.add_metric([s.name], s.lag)
            yield position
            yield lag
        if self.intake_outbox or self.notifications_outbox:
            backlog = GaugeMetricFamily(
                f"{PREFIX}_outbox_backlog",
                "Rows of an outbox not yet published to Kafka",
                labels=["outbox"],
            )
            if self.intake_outbox:
                for table in ("dead_letter", "kafka_outbox"):
                    row = db.fetchone(f"SELECT count(*) FROM {table} WHERE published_at IS NULL")
                    backlog.add_metric([table], int(row[0]) if row else 0)
            if self.notifications_outbox:
                backlog.add_metric(["notification_outbox"], _notifications_backlog(db))
            yield backlog
        if self.hub:
            from serviceorders.notifications.store import HubStore

            hub = GaugeMetricFamily(
                f"{PREFIX}_hub_backlog",
                "Notifications not yet delivered to a hub listener",
                labels=["listener", "state"],
            )
            for listener in HubStore(db).list():
                hub.add_metric([listener["id"], listener["state"]], listener["pending"])
            yield hub


def _notifications_backlog(db: Any) -> int:
    found = db.fetchone(
        "SELECT position, seq FROM outbound_position WHERE name = %s", ("notifications",)
    )
    position, seq = (int(found[0]), int(found[1])) if found else (0, -1)
    row = db.fetchone(
        "SELECT count(*) FROM notification_outbox WHERE position > %s OR "
        "(position = %s AND seq > %s)",
        (position, position, seq),
    )
    return int(row[0]) if row else 0


@contextlib.contextmanager
def opened(open_db: Callable[[], Any]) -> Iterator[Any]:
    """A fresh connection per scrape (`open_db()` returns a ReadDb), closed afterwards."""
    db = open_db()
    try:
        yield db
    finally:
        db.close()


# ----------------------------------------------------------------- multiprocess
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself


def multiprocess_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry for one scrape that sums what every worker recorded (the workers write
    to the directory the parent of `api --workers N` created), plus `extra` collectors."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in extra:
        registry.register(collector)
    return registry


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(pid)


# ------------------------------------------------- /health and /metrics for consume, project
class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    health: Callable[[], tuple[bool, dict[str, Any]]],
) -> Any:
    """Answer `/metrics` (Prometheus text) and `/health` (JSON, 200 or 503 from `health()`)
    on `host:port` in a daemon thread; returns the server (`shutdown()` stops it)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/health":
            try:
                ok, body = health()
            except Exception as e:
                ok, body = False, {"reason": type(e).__name__}
            payload = json.dumps({"status": "ok" if ok else "unavailable", **body}).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        payload = b'{"status": "not found", "paths": ["/health", "/metrics"]}'
        start_response(
            "404 Not Found",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics, health on /health", host, server.server_address[1])
    return server

"""The process runtime: what runs while `api`, `serve` and `project` run.

The supervisor of one engine process: the REST API under uvicorn (one process, or N
workers sharing the port), with the projector following the log, the hub's delivery
worker, the audit checkpointer, the Kafka intake and the outbound publisher in threads
(`serve`: all of them, with an embedded broker when no Kafka is configured), and the
`/health` and `/metrics` server of `consume` and `project`. SIGTERM stops each cleanly.

The CLI (cli/processes.py, cli/kafka.py) parses its options and calls these; nothing here
knows click. A process that cannot start as configured raises `StartRefused` (the CLI shows
it as a usage error, exit 2).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from serviceorders.bootstrap import (
    audit_anchor,
    build_application,
    build_projector,
    init_database,
    open_read_db,
)
from serviceorders.domain.codec import UnknownEvent
from serviceorders.settings import Settings
from serviceorders.support import logs

# The supervisor's log lines keep the logger they were written by before the CLI split
# (operators may filter on it).
log = logging.getLogger("serviceorders.cli")

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class StartRefused(Exception):
    """The process cannot start as configured (no API keys on a public address, a metrics
    port that cannot be bound, unreadable keys): the message says why."""


# ------------------------------------------------------------------ shared parts
def setup_logs(settings: Settings) -> dict[str, Any]:
    """The process's logging (docs/operations.md, "Logs"); returns its dict config."""
    from serviceorders.support.logs import configure

    return configure(settings.log_level, settings.log_format)


def serve_metrics(
    settings: Settings,
    port: int | None,
    registry: Any,
    health: Callable[[], tuple[bool, dict[str, Any]]],
) -> Any:
    """The /health and /metrics server of `consume` and `project`, or None when no port is
    set (docs/operations.md)."""
    port = port or settings.metrics_port
    if port is None:
        return None
    from serviceorders.metrics import serve_metrics as start

    try:
        server = start(registry, settings.metrics_host, port, health)
    except OSError as e:
        raise StartRefused(
            f"cannot serve metrics on {settings.metrics_host}:{port}: {e.strerror or e}"
        ) from None
    log.info("metrics on http://%s:%d/metrics, health on /health", settings.metrics_host, port)
    return server


def database_collector(settings: Settings, **parts: bool) -> Any:
    """The database gauges (a new connection per scrape)."""
    from serviceorders.metrics import DatabaseCollector, opened

    return DatabaseCollector(lambda: opened(lambda: open_read_db(settings)), **parts)


def start_checkpoints(
    settings: Settings, stopping: threading.Event, metrics: Any = None
) -> threading.Thread:
    """Seal every chain head in a checkpoint every SERVICEORDERS_AUDIT_CHECKPOINT_INTERVAL
    seconds, each fresh one also appended to SERVICEORDERS_AUDIT_ANCHOR when set (its
    failures counted in `metrics`; docs/audit.md)."""
    from serviceorders.audit.checkpoints import Checkpointer

    checkpointer = Checkpointer(
        lambda: open_read_db(settings),
        key=settings.audit_hmac_key,
        signing_key=settings.signing_key(),
    )
    if settings.audit_anchor:
        checkpointer.anchor_to(
            audit_anchor(settings, settings.audit_anchor), getattr(metrics, "anchor_failed", None)
        )
    return checkpointer.start(stopping, settings.audit_checkpoint_interval)


def start_outbound(
    settings: Settings, stopping: threading.Event, dead_letters: bool
) -> threading.Thread | None:
    """Publish the TMF641 notifications (and the intake's dead letters) to Kafka, when
    Kafka is configured (docs/kafka.md)."""
    if not settings.kafka_bootstrap_servers:
        return None
    from serviceorders.notifications.kafka import start_publisher

    thread: threading.Thread = start_publisher(
        settings, stopping, dead_letters=dead_letters, notifications=True
    )
    return thread


def start_hub_delivery(settings: Settings, stopping: threading.Event) -> Any:
    """The TMF641 hub's delivery worker, in a thread (docs/notifications.md)."""
    from serviceorders.notifications.delivery import start_worker

    return start_worker(
        settings,
        lambda: open_read_db(settings),
        stopping,
        on_error=lambda e: log.warning("hub delivery error: %s: %s", type(e).__name__, e),
    )


def start_intake(
    settings: Settings, stopping: threading.Event, metrics: Any = None
) -> threading.Thread:
    """The Kafka consumer in a thread of `serve` (the `consume` command runs it alone)."""
    from serviceorders.consumers.kafka import ConsumerWorker, ensure_topics

    ensure_topics(settings, stopping)
    worker = ConsumerWorker(settings, stopping, metrics=metrics, app=build_application(settings))
    return logs.start_worker("kafka intake", "kafka-intake", worker.run)


def _reconnect(settings: Settings) -> Any:
    while True:
        try:
            return build_projector(settings)
        except Exception as e:
            log.warning("database unavailable (%s); retrying", type(e).__name__)
            time.sleep(1.0)


# -------------------------------------------------------------------- projector
def run_projector(settings: Settings, once: bool, metrics_port: int | None) -> None:
    """`project`: catch up with the event log, then follow it until SIGTERM (`once`: catch
    up and return), with the hub's delivery, the outbound publisher and the audit
    checkpointer beside it. A lost database is reconnected; an event of a newer release
    stops it (never skipped)."""
    from serviceorders.metrics import EngineMetrics

    setup_logs(settings)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    metrics = EngineMetrics(projector=True)
    metrics.registry.register(
        database_collector(
            settings,
            projections=True,
            hub=settings.hub_delivery,
            notifications_outbox=bool(settings.kafka_bootstrap_servers),
        )
    )
    projector = build_projector(settings)
    projector.metrics = metrics
    server = serve_metrics(
        settings,
        metrics_port,
        metrics.registry,
        lambda: (not stopping.is_set(), {"process": "project"}),
    )
    deliverer = publisher = checkpointer = None
    try:
        log.info("projector started", extra={"worker": "projector"})
        applied = projector.catch_up(stopping=stopping)
        log.info("caught up: %d events applied", applied, extra={"events": applied})
        if once:
            return
        deliverer = start_hub_delivery(settings, stopping)
        publisher = start_outbound(settings, stopping, dead_letters=False)
        checkpointer = start_checkpoints(settings, stopping, metrics)
        while not stopping.is_set():
            try:
                projector.follow(stopping)
            except UnknownEvent:  # a newer release's event: stop, never skip it
                raise
            except Exception as e:  # the database went away: reconnect and go on
                log.warning("projector error, reconnecting: %s: %s", type(e).__name__, e)
                projector.db.close()
                stopping.wait(1.0)
                if not stopping.is_set():
                    projector = _reconnect(settings)
                    projector.metrics = metrics
    finally:
        stopping.set()
        if server is not None:
            server.shutdown()
        if deliverer is not None:
            deliverer.join(timeout=10)
        for thread in (publisher, checkpointer):
            if thread is not None:
                thread.join(timeout=10)
        projector.db.close()
        log.info("projector stopped", extra={"worker": "projector"})


# -------------------------------------------------------------------------- API
def check_exposure(settings: Settings, host: str) -> list[Any]:
    """The configured API keys; `StartRefused` when there are none and `host` is not
    loopback (every request would have full access)."""
    from serviceorders.api.auth import KeyError_, load_keys

    try:
        keys: list[Any] = load_keys(settings.api_keys, settings.api_keys_file)
    except (KeyError_, OSError) as e:
        raise StartRefused(str(e)) from None
    if not keys and host not in LOOPBACK and not host.startswith("127."):
        raise StartRefused(
            f"no API keys are configured, so every request would have full access: refusing "
            f"to listen on {host}. Set SERVICEORDERS_API_KEYS (or SERVICEORDERS_API_KEYS_FILE) "
            "or bind to 127.0.0.1"
        )
    return keys


def no_keys_warning(settings: Settings) -> str:
    """What `api` / `serve` say on start without API keys, and how to try decisions alone."""
    text = (
        "no API keys configured: full access for every request, as the one actor "
        "'anonymous' (loopback only)"
    )
    if settings.four_eyes:
        text += (
            ". Four-eyes refuses that actor's approval or rejection of an order it "
            "submitted: to try decisions alone, set SERVICEORDERS_FOUR_EYES=no, or "
            "configure keys for two actors, e.g. SERVICEORDERS_API_KEYS="
            "alice:agent:<16+ chars>,bob:manager:<16+ chars> (docs/security.md)"
        )
    return text


def api_app(
    settings: Settings, host: str, engine: Any = None, multiprocess: bool = False, **database: bool
) -> Any:
    """The ASGI app. `engine`: the process's EngineMetrics (default: the HTTP ones);
    `multiprocess`: a worker of `api --workers N`; `database`: database gauges besides the
    API's."""
    from serviceorders.api.app import create_app
    from serviceorders.api.auth import Authenticator
    from serviceorders.api.ops import Metrics
    from serviceorders.bootstrap import build_api_context

    keys = check_exposure(settings, host)
    if not keys:
        log.warning("%s", no_keys_warning(settings))
    ctx = build_api_context(settings, Authenticator(keys), base_url=settings.public_base_url)
    return create_app(ctx, Metrics.for_api(ctx, engine, multiprocess=multiprocess, **database))


def shutdown_grace(settings: Settings) -> int:
    """Seconds the HTTP server waits, after SIGTERM, for the requests in flight: the bound
    of one write transaction (SERVICEORDERS_DB_WRITE_TIMEOUT) plus the time to answer."""
    return settings.write_timeout_seconds + 2


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options of `api` and `serve`, one process or N workers: the bounded
    protocol (header-section size, slow-client deadlines: httpserver.py), no uvicorn access
    log (it prints query strings: ours is RequestLog), the SIGTERM grace."""
    from serviceorders import httpserver

    return {
        "http": httpserver.PROTOCOL,
        "access_log": False,
        "timeout_graceful_shutdown": shutdown_grace(settings),
    }


def run_api(
    settings: Settings, host: str, port: int, with_projector: bool, with_intake: bool = False
) -> None:
    """The API in this process until SIGTERM; `with_projector`: the projector, the hub's
    delivery and the audit checkpointer in threads beside it; `with_intake` (when Kafka is
    configured): the Kafka intake and the outbound publisher too."""
    import uvicorn
    from serviceorders import httpserver
    from serviceorders.metrics import EngineMetrics

    with_intake = with_intake and bool(settings.kafka_bootstrap_servers)
    engine = EngineMetrics(http=True, intake=with_intake, projector=with_projector)
    app = api_app(
        settings, host, engine, intake_outbox=with_intake, notifications_outbox=with_intake
    )
    stopping = threading.Event()
    follower = deliverer = consumer = publisher = checkpointer = None
    if with_projector:
        # In the process that answers requests: no orders kept (build_projector).
        projector = build_projector(settings, keep=0)
        projector.metrics = engine

        def follow() -> None:
            try:
                projector.follow(
                    stopping,
                    on_error=lambda e: log.warning("projector error: %s: %s", type(e).__name__, e),
                )
            except UnknownEvent as e:  # the read models stay behind (readiness shows it)
                log.error("projector stopped: %s", e)
            finally:
                projector.db.close()

        follower = logs.start_worker("projector", "projector", follow)
        deliverer = start_hub_delivery(settings, stopping)
        checkpointer = start_checkpoints(settings, stopping, engine)
    if with_intake:
        consumer = start_intake(settings, stopping, engine)
        publisher = start_outbound(settings, stopping, dead_letters=True)
        from serviceorders.consumers.store import purge_hourly  # dead letters' retention

        logs.start_worker("dead-letter purge", "dlq-purge", purge_hourly, settings, stopping)
    # uvicorn shuts down gracefully on SIGTERM / SIGINT, then re-raises the signal to the
    # handler it found: ours, so that a requested stop exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        # log_config None: uvicorn's loggers keep the process's set-up (setup_logs).
        log.info("api server starting on http://%s:%d", host, port, extra={"worker": "api"})
        # The bounded protocol: header-section size and slow-client deadlines (httpserver.py).
        httpserver.configure(settings.http_header_timeout, settings.http_body_timeout)
        # SIGTERM: requests in flight get as long as a write may take (then uvicorn stops
        # waiting for them; docs/reliability.md, "Stopping").
        uvicorn.run(app, host=host, port=port, log_config=None, **server_options(settings))
    finally:
        stopping.set()
        if follower is not None:
            follower.join(timeout=10)
        for thread in (deliverer, consumer, publisher, checkpointer):
            if thread is not None:
                thread.join(timeout=15)
        log.info("api server stopped", extra={"worker": "api"})


def run_workers(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    log_config: dict[str, Any],
    database_url: str | None = None,
) -> None:
    """`api --workers N`: N uvicorn worker processes sharing the port, each building its
    app from the environment set here (`worker_app`); `database_url`: the command line's
    --database-url, passed on to them."""
    import shutil
    import tempfile

    import uvicorn
    from serviceorders.metrics import MULTIPROC_VARIABLE

    check_exposure(settings, host)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ["SERVICEORDERS_API_HOST"] = host
    if not settings.console_secret:
        # The console's sessions must hold on every worker: one random secret for all of
        # them (still gone when the server restarts, as with one process).
        import secrets

        os.environ["SERVICEORDERS_CONSOLE_SECRET"] = secrets.token_urlsafe(48)
    # Every worker records its metrics into this fresh directory (prometheus_client's
    # multiprocess mode, set before the workers import it), so that one scrape of any
    # worker sums them all (docs/operations.md); removed on exit.
    metrics_dir = tempfile.mkdtemp(prefix="serviceorders-metrics-")
    os.environ[MULTIPROC_VARIABLE] = metrics_dir
    try:
        # Each worker applies log_config again (and worker_app the rest of setup_logs).
        # (worker_app configures each worker's deadlines)
        uvicorn.run(
            "serviceorders.serve:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=log_config,
            **server_options(settings),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> Any:
    """The app of one `api --workers N` process, from the environment its parent set."""
    from serviceorders.metrics import MULTIPROC_VARIABLE, mark_worker_dead

    multiprocess = bool(os.environ.get(MULTIPROC_VARIABLE))
    if multiprocess:  # a stopped worker's live gauges leave the scrapes
        import atexit

        atexit.register(mark_worker_dead, os.getpid())
    settings = Settings.from_env(os.environ)
    setup_logs(settings)
    from serviceorders import httpserver

    httpserver.configure(settings.http_header_timeout, settings.http_body_timeout)
    return api_app(
        settings, os.environ.get("SERVICEORDERS_API_HOST", "127.0.0.1"), multiprocess=multiprocess
    )


# ------------------------------------------------------------------------ serve
def serve(settings: Settings, host: str, port: int, kafka_port: int, no_kafka: bool) -> None:
    """The whole engine in one process until SIGTERM: the REST API, the projections, the
    Kafka intake and the outbound notifications; the database is initialised first, and
    without KAFKA_BOOTSTRAP_SERVERS an embedded memory-only broker is started on loopback
    (on `kafka_port`, else any free port; none: no Kafka intake, a warning)."""
    setup_logs(settings)
    check_exposure(settings, host)  # before anything is created
    init_database(settings)
    broker = None
    if not settings.kafka_bootstrap_servers and not no_kafka:
        from serviceorders.consumers.broker import BrokerUnavailable, EmbeddedBroker

        try:
            try:
                broker = EmbeddedBroker(port=kafka_port).start()
            except BrokerUnavailable:  # the port is taken: any free loopback port
                broker = EmbeddedBroker(port=0).start()
        except BrokerUnavailable as e:
            log.warning("no Kafka intake: %s", e)
        else:
            settings = settings.model_copy(
                update={"kafka_bootstrap_servers": broker.bootstrap_servers}
            )
            log.info(
                "embedded Kafka broker (memory only) on %s: publish TMF641 events to %s, "
                "e.g. KAFKA_BOOTSTRAP_SERVERS=%s serviceorders publish-sample --count 20",
                broker.bootstrap_servers,
                settings.inbound_topic,
                broker.bootstrap_servers,
            )
    log.info("serving http://%s:%d on %s", host, port, settings.database.url())
    try:
        run_api(settings, host, port, with_projector=True, with_intake=not no_kafka)
    finally:
        if broker is not None:
            broker.stop()

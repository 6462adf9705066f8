"""The `serviceorders` command line: database set-up, the catalog, and the order lifecycle.

The order commands act as `--actor NAME` with the operator role: whoever can reach the
database can do anything, and every event records who it was.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import click
from pydantic import ValidationError
from serviceorders.bootstrap import (
    build_application,
    build_projector,
    event_mapper,
    init_database,
    load_catalog,
    open_read_db,
)
from serviceorders.cli import order_file
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.codec import UnknownEvent
from serviceorders.domain.errors import DomainError, OrderNotFound, ValidationFailed
from serviceorders.domain.order import ServiceOrder, order_id_for
from serviceorders.domain.values import (
    Channel,
    CommandContext,
    HeaderChange,
    ItemAction,
    ItemState,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    Role,
    SpecRef,
)
from serviceorders.schema import SchemaMismatch
from serviceorders.schema import check as check_schema
from serviceorders.settings import DatabaseConfig, Settings, SettingsError
from serviceorders.storage.probe import DatabaseUnreachable, probe
from serviceorders.support import logs
from serviceorders.tmf.tmf633 import catalog_to_tmf633

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
log = logging.getLogger("serviceorders.cli")


class Context:
    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.actor: str | None = None
        self.correlation_id: str | None = None
        self._probed = False

    @property
    def config(self) -> Settings:
        """The settings, without touching the database (for commands that need none)."""
        try:
            settings = Settings.from_env(os.environ)
            if self.database_url:
                db = DatabaseConfig.from_url(self.database_url)
                settings = settings.model_copy(update={"database": db})
        except SettingsError as e:
            raise click.UsageError(str(e)) from None
        return settings

    @property
    def settings(self) -> Settings:
        """The settings, once the database has answered: the first use in a process probes
        it (one attempt, 2 s at most), so that a wrong DATABASE_URL stops the command at
        once with the reason instead of a pool's timeout."""
        settings = self.config
        if not self._probed:
            try:
                probe(settings.database)
            except DatabaseUnreachable as e:
                raise InfrastructureError(str(e)) from None
            self._probed = True
        return settings

    def command_context(self) -> CommandContext:
        if not self.actor:
            raise click.UsageError("this command changes an order: give --actor NAME")
        extra = {"correlation_id": self.correlation_id} if self.correlation_id else {}
        return CommandContext.for_actor(self.actor, Role.OPERATOR, Channel.CLI, **extra)

    @contextmanager
    def app(self) -> Iterator[ServiceOrders]:
        application = build_application(self.settings)
        try:
            yield application
        finally:
            application.close()


class OneLineError(click.ClickException):
    """Bad input the command cannot start from (an unreadable file, say): `error: ...` on
    one line, exit status 2, no usage text."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class InfrastructureError(OneLineError):
    """The database (or another service the command needs) cannot be used: one line,
    exit status 3."""

    exit_code = 3


def refusals(func: F) -> F:
    """Map domain refusals to a clear message and exit status 1, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ValidationFailed as e:
            click.echo(f"refused: {len(e.problems)} problem(s)", err=True)
            for problem in e.problems:
                click.echo(f"  - [{problem.code}] {problem.message}", err=True)
            sys.exit(1)
        except OrderNotFound as e:
            click.echo(f"refused: {not_found_text(e)}", err=True)
            sys.exit(1)
        except (DomainError, ValidationError) as e:
            click.echo(f"refused: {e}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Abort, BrokenPipeError):
            raise
        except (SchemaMismatch, UnknownEvent) as e:  # the message says it all
            click.echo(f"error: {e}", err=True)
            sys.exit(3)
        except Exception as e:  # the database is down, a table is missing, ...
            click.echo(f"error: {type(e).__name__}: {e}", err=True)
            sys.exit(3)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    metavar="URL",
    help="Overrides DATABASE_URL (postgresql://... or sqlite:///file.db).",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """serviceorders: an event-sourced engine for TMF641 service orders."""
    ctx.obj = Context(database_url)


# ---------------------------------------------------------------------- db
@main.group()
def db() -> None:
    """Database set-up."""


@db.command("init")
@click.pass_obj
@refusals
def db_init(obj: Context) -> None:
    """Create every table the engine needs (idempotent; run once before the workers)."""
    for line in init_database(obj.settings):
        click.echo(f"ready: {line}")


@main.command()
@click.pass_obj
@refusals
def demo(obj: Context) -> None:
    """Run a sample two-site order through review and fulfilment on the configured store."""
    init_database(obj.settings)
    sample = json.loads((Path(__file__).parent / "demo_order.json").read_text("utf-8"))
    # A fresh external id each run: the order id derives from it.
    header = OrderHeader.model_validate(
        {**sample["header"], "external_id": f"CRM-DEMO-{uuid4().hex[:8]}"}
    )
    items = [OrderItem.model_validate(i) for i in sample["items"]]
    upstream = CommandContext.for_actor("crm", Role.UPSTREAM)
    manager = CommandContext.for_actor(
        "maria.manager", Role.MANAGER, correlation_id=upstream.correlation_id
    )
    fulfilment = CommandContext.for_actor(
        "activation", Role.FULFILMENT, correlation_id=upstream.correlation_id
    )
    with obj.app() as app:
        order_id, _ = app.receive_order(upstream, header, items)
        app.approve(manager, order_id, note="sites surveyed")
        for item in items:
            app.change_item_state(fulfilment, order_id, item.id, ItemState.COMPLETED)
        show_full(app.get_order(order_id))
        click.echo("events")
        for event in app.history(order_id):
            click.echo(
                f"  v{event.originator_version:<3} {type(event).__name__:<24} "
                f"{event.actor.id} ({event.actor.role})  {event.hash[:12]}"
            )


# ------------------------------------------------------------- projections
METRICS_PORT = click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Serve /health and /metrics on this port (default SERVICEORDERS_METRICS_PORT; "
    "off when neither is set).",
)


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
        raise click.UsageError(
            f"cannot serve metrics on {settings.metrics_host}:{port}: {e.strerror or e}"
        ) from None
    log.info("metrics on http://%s:%d/metrics, health on /health", settings.metrics_host, port)
    return server


def database_collector(settings: Settings, **parts: bool) -> Any:
    """The database gauges (a new connection per scrape)."""
    from serviceorders.metrics import DatabaseCollector, opened

    return DatabaseCollector(lambda: opened(lambda: open_read_db(settings)), **parts)


@main.command()
@click.option("--once", is_flag=True, help="Catch up with the log, then exit.")
@METRICS_PORT
@click.pass_obj
@refusals
def project(obj: Context, once: bool, metrics_port: int | None) -> None:
    """Run the projections: catch up with the event log, then follow it (SIGTERM stops)."""
    from serviceorders.metrics import EngineMetrics

    settings = obj.settings
    _setup_logs(settings)
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
        deliverer = _start_hub_delivery(settings, stopping)
        publisher = _start_outbound(settings, stopping, dead_letters=False)
        checkpointer = _start_checkpoints(settings, stopping)
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


def _start_checkpoints(settings: Settings, stopping: threading.Event) -> threading.Thread:
    """Seal every chain head in a checkpoint every SERVICEORDERS_AUDIT_CHECKPOINT_INTERVAL
    seconds (docs/audit.md)."""
    from serviceorders.audit import Checkpointer

    return Checkpointer(settings).start(stopping, settings.audit_checkpoint_interval)


def _start_outbound(
    settings: Settings, stopping: threading.Event, dead_letters: bool
) -> threading.Thread | None:
    """Publish the TMF641 notifications (and the intake's dead letters) to Kafka, when
    Kafka is configured (docs/kafka.md)."""
    if not settings.kafka_bootstrap_servers:
        return None
    from serviceorders.notifications.kafka import start_publisher

    return start_publisher(settings, stopping, dead_letters=dead_letters, notifications=True)


def _start_hub_delivery(settings: Settings, stopping: threading.Event) -> Any:
    """The TMF641 hub's delivery worker, in a thread (docs/notifications.md)."""
    from serviceorders.notifications.hub import start_worker

    return start_worker(
        settings,
        lambda: open_read_db(settings),
        stopping,
        on_error=lambda e: log.warning("hub delivery error: %s: %s", type(e).__name__, e),
    )


def _reconnect(settings: Settings) -> Any:
    while True:
        try:
            return build_projector(settings)
        except Exception as e:
            log.warning("database unavailable (%s); retrying", type(e).__name__)
            time.sleep(1.0)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _setup_logs(settings: Settings) -> dict[str, Any]:
    """The process's logging (docs/operations.md, "Logs"); returns its dict config."""
    from serviceorders.support.logs import configure

    return configure(settings.log_level, settings.log_format)


def _check_exposure(settings: Settings, host: str) -> list[Any]:
    """The configured API keys; a usage error when there are none and `host` is not
    loopback (every request would have full access)."""
    from serviceorders.api.auth import KeyError_, load_keys

    try:
        keys = load_keys(settings.api_keys, settings.api_keys_file)
    except (KeyError_, OSError) as e:
        raise click.UsageError(str(e)) from None
    if not keys and host not in LOOPBACK and not host.startswith("127."):
        raise click.UsageError(
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


def _api_app(
    settings: Settings, host: str, engine: Any = None, multiprocess: bool = False, **database: bool
) -> Any:
    """`engine`: the process's EngineMetrics (default: the HTTP ones); `multiprocess`: a
    worker of `api --workers N`; `database`: database gauges besides the API's."""
    from serviceorders.api.app import create_app
    from serviceorders.api.auth import Authenticator
    from serviceorders.api.context import ApiContext
    from serviceorders.api.ops import Metrics

    keys = _check_exposure(settings, host)
    if not keys:
        log.warning("%s", no_keys_warning(settings))
    ctx = ApiContext.build(settings, Authenticator(keys), base_url=settings.public_base_url)
    return create_app(ctx, Metrics.for_api(ctx, engine, multiprocess=multiprocess, **database))


def _run_api(
    settings: Settings, host: str, port: int, with_projector: bool, with_intake: bool = False
) -> None:
    import uvicorn
    from serviceorders import httpserver
    from serviceorders.metrics import EngineMetrics

    with_intake = with_intake and bool(settings.kafka_bootstrap_servers)
    engine = EngineMetrics(http=True, intake=with_intake, projector=with_projector)
    app = _api_app(
        settings, host, engine, intake_outbox=with_intake, notifications_outbox=with_intake
    )
    stopping = threading.Event()
    follower = deliverer = consumer = publisher = checkpointer = None
    if with_projector:
        projector = build_projector(settings)
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

        follower = threading.Thread(
            target=logs.worker("projector", follow), name="projector", daemon=True
        )
        follower.start()
        deliverer = _start_hub_delivery(settings, stopping)
        checkpointer = _start_checkpoints(settings, stopping)
    if with_intake:
        consumer = _start_intake(settings, stopping, engine)
        publisher = _start_outbound(settings, stopping, dead_letters=True)
    # uvicorn shuts down gracefully on SIGTERM / SIGINT, then re-raises the signal to the
    # handler it found: ours, so that a requested stop exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        # log_config None: uvicorn's loggers keep the process's set-up (_setup_logs).
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


def _start_intake(
    settings: Settings, stopping: threading.Event, metrics: Any = None
) -> threading.Thread:
    """The Kafka consumer in a thread of `serve` (the `consume` command runs it alone)."""
    from serviceorders.consumers.kafka import ConsumerWorker, ensure_topics

    ensure_topics(settings, stopping)
    worker = ConsumerWorker(settings, stopping, metrics=metrics)
    thread = threading.Thread(
        target=logs.worker("kafka intake", worker.run), name="kafka-intake", daemon=True
    )
    thread.start()
    return thread


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8641, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes sharing the port (one Python process uses one core).",
)
@click.pass_obj
@refusals
def api(obj: Context, host: str, port: int, workers: int) -> None:
    """Serve the TMF641 REST API (run `project` beside it, or use `serve`)."""
    settings = obj.settings  # checked here, once, before any worker starts
    log_config = _setup_logs(settings)
    if workers == 1:
        _run_api(settings, host, port, with_projector=False)
        return
    import uvicorn

    _check_exposure(settings, host)
    if obj.database_url:
        os.environ["DATABASE_URL"] = obj.database_url
    os.environ["SERVICEORDERS_API_HOST"] = host
    if not settings.console_secret:
        # The console's sessions must hold on every worker: one random secret for all of
        # them (still gone when the server restarts, as with one process).
        import secrets

        os.environ["SERVICEORDERS_CONSOLE_SECRET"] = secrets.token_urlsafe(48)
    # Every worker records its metrics into this fresh directory (prometheus_client's
    # multiprocess mode, set before the workers import it), so that one scrape of any
    # worker sums them all (docs/operations.md); removed on exit.
    import shutil
    import tempfile

    from serviceorders.metrics import MULTIPROC_VARIABLE

    metrics_dir = tempfile.mkdtemp(prefix="serviceorders-metrics-")
    os.environ[MULTIPROC_VARIABLE] = metrics_dir
    try:
        # Each worker applies log_config again (and worker_app the rest of _setup_logs).
        # (worker_app configures each worker's deadlines)
        uvicorn.run(
            "serviceorders.cli:worker_app",
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
    _setup_logs(settings)
    from serviceorders import httpserver

    httpserver.configure(settings.http_header_timeout, settings.http_body_timeout)
    return _api_app(
        settings, os.environ.get("SERVICEORDERS_API_HOST", "127.0.0.1"), multiprocess=multiprocess
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8641, show_default=True, type=int)
@click.option(
    "--kafka-port",
    default=9092,
    show_default=True,
    type=int,
    help="Port of the embedded broker (when KAFKA_BOOTSTRAP_SERVERS is not set).",
)
@click.option("--no-kafka", is_flag=True, help="No Kafka intake or outbound topic.")
@click.pass_obj
@refusals
def serve(obj: Context, host: str, port: int, kafka_port: int, no_kafka: bool) -> None:
    """Run the whole engine in one process: the REST API, the projections, the Kafka intake
    and the outbound notifications.

    Works on the embedded default with no configuration: SQLite, and, when no
    KAFKA_BOOTSTRAP_SERVERS is set, an embedded memory-only Kafka broker on loopback (the
    `embedded` extra). SIGTERM stops it."""
    settings = obj.settings
    _setup_logs(settings)
    _check_exposure(settings, host)  # before anything is created
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
        _run_api(settings, host, port, with_projector=True, with_intake=not no_kafka)
    finally:
        if broker is not None:
            broker.stop()


@main.group()
def projections() -> None:
    """Read-model status, rebuild and verify."""


NAMES = click.argument("names", nargs=-1, metavar="[NAME]...")


@projections.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def projections_status(obj: Context, as_json: bool) -> None:
    """Each projection's position in the log and its lag (events behind the head)."""
    projector = build_projector(obj.settings)
    try:
        status = projector.status()
    finally:
        projector.db.close()
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in status], indent=2))
        return
    for s in status:
        click.echo(f"{s.name:<22} position {s.position:>10}  head {s.head:>10}  lag {s.lag}")


def _progress_bar(db: Any, label: str, passes: int = 1) -> Any:
    from tqdm import tqdm

    total = db.fetchone(f"SELECT COUNT(*) FROM {db.events_table}")[0]
    return tqdm(total=total * passes, unit="ev", desc=label, file=sys.stderr, dynamic_ncols=True)


@projections.command("rebuild")
@NAMES
@click.pass_obj
@refusals
def projections_rebuild(obj: Context, names: tuple[str, ...]) -> None:
    """Rebuild projections from the first event into fresh tables, then swap them in."""
    from serviceorders.projections.maintenance import rebuild

    db = open_read_db(obj.settings)
    try:
        check_schema(db)  # (not the shapes: a rebuild is how they are brought up)
        with _progress_bar(db, "rebuild") as bar:
            positions = rebuild(db, event_mapper(), names or None, progress=bar.update)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAME") from None
    finally:
        db.close()
    for name, position in positions.items():
        click.echo(f"rebuilt {name} at position {position}")


@projections.command("verify")
@NAMES
@click.option("--limit", default=20, help="Differing rows to show per projection.")
@click.pass_obj
@refusals
def projections_verify(obj: Context, names: tuple[str, ...], limit: int) -> None:
    """Prove the live tables equal a rebuild from scratch; exit 1 with the differences, or
    when a read model is behind the log (it matches a rebuild only up to its position)."""
    from serviceorders.projections.maintenance import select, verify
    from serviceorders.projections.runner import Projector

    try:
        chosen = select(names or None)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAME") from None
    db = open_read_db(obj.settings)
    try:
        check_schema(db, shapes=True)
        with _progress_bar(db, "verify", passes=len(chosen)) as bar:
            differences = verify(db, event_mapper(), [p.name for p in chosen], progress=bar.update)
        status = {s.name: s for s in Projector(db, event_mapper(), chosen).status()}
    finally:
        db.close()
    behind = [s for s in status.values() if s.lag]
    for name in (p.name for p in chosen):
        found = [d for d in differences if d.projection == name]
        if found:
            click.echo(f"{name}: {len(found)} differing row(s)")
        elif status[name].lag:
            click.echo(
                f"{name}: matches a rebuild up to position {status[name].position}, "
                f"but is behind the log by {status[name].lag} event(s)"
            )
        else:
            click.echo(f"{name}: OK")
        for d in found[:limit]:
            click.echo(f"  key {d.key}\n    live:    {d.live}\n    rebuilt: {d.rebuilt}")
    if behind:
        click.echo(
            "behind the log: run `serviceorders project --once` (or keep `project` / "
            "`serve` running) and verify again",
            err=True,
        )
    sys.exit(1 if differences or behind else 0)


# --------------------------------------------------------------------- hub
@main.group()
def hub() -> None:
    """TMF641 hub listeners: their delivery health, and resuming suspended ones."""


def _hub_row(sub: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v)
        for k, v in sub.items()
        if k not in ("cursor_seq",)
    }


@hub.command("list")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted listeners.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def hub_list(obj: Context, include_deleted: bool, as_json: bool) -> None:
    """Every listener: state, consecutive failures, pending notifications, last error."""
    from serviceorders.notifications.hub import HubStore

    db = open_read_db(obj.settings)
    try:
        subs = HubStore(db).list(include_deleted=include_deleted)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps([_hub_row(s) for s in subs], indent=2))
        return
    if not subs:
        click.echo("no listeners")
    for s in subs:
        click.echo(
            f"{s['id']}  {s['state']:<9}  {s['callback']}"
            + (f"  query {s['query']}" if s["query"] else "")
        )
        oldest = s["oldest_pending_at"].isoformat() if s["oldest_pending_at"] else "-"
        click.echo(
            f"    pending {s['pending']} (oldest {oldest})  delivered {s['delivered']}"
            f"  failures {s['failures']}  actor {s['actor']}"
        )
        if s["last_error"]:
            click.echo(f"    last error: {s['last_error']}")


@hub.command("resume")
@click.argument("subscription_id", metavar="ID")
@click.pass_obj
@refusals
def hub_resume(obj: Context, subscription_id: str) -> None:
    """Resume a suspended listener: its backlog is delivered in order, from the oldest."""
    from serviceorders.notifications.hub import HubStore

    db = open_read_db(obj.settings)
    try:
        store = HubStore(db)
        if not store.resume(subscription_id):
            found = store.get(subscription_id)
            state = found["state"] if found else "unknown"
            click.echo(f"refused: listener {subscription_id} is {state}", err=True)
            sys.exit(1)
        found = store.get(subscription_id)
    finally:
        db.close()
    assert found is not None
    click.echo(f"{subscription_id} active: {found['pending']} pending notification(s) due now")


# ----------------------------------------------------------------- catalog
@main.command()
@click.option("--json", "as_json", is_flag=True, help="TMF633 serviceSpecification JSON array.")
@click.pass_obj
def catalog(obj: Context, as_json: bool) -> None:
    """Show the service specification catalog (needs no database)."""
    cat = load_catalog(obj.config)
    if as_json:
        click.echo(json.dumps(catalog_to_tmf633(cat), indent=2))
        return
    for spec in cat.specifications:
        click.echo(f"{spec.id}  {spec.name} v{spec.version}")
        for char in spec.characteristics:
            need = "required" if char.required else "optional"
            choice = f" one of {list(char.allowed_values)}" if char.allowed_values else ""
            bounds = (
                f" {_number(char.minimum)}..{_number(char.maximum)}"
                if char.minimum is not None or char.maximum is not None
                else ""
            )
            default = f" default {char.default!r}" if char.default is not None else ""
            click.echo(f"    {char.name}: {char.value_type} {need}{choice}{bounds}{default}")


def _number(value: float | None) -> str:
    """A bound as written in a catalog: 10, not 10.0 (None: open)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


# ------------------------------------------------------------------- order
@main.group()
@click.option("--actor", metavar="NAME", help="Who is acting (recorded on every event).")
@click.option("--correlation-id", metavar="ID", help="Correlates this command with others.")
@click.pass_obj
def order(obj: Context, actor: str | None, correlation_id: str | None) -> None:
    """Drive an order's lifecycle (acting with the operator role)."""
    obj.actor, obj.correlation_id = actor, correlation_id


# Order ids derived from the external ids typed on this command line -> what was typed
# (so that "no order" names it).
TYPED: dict[UUID, str] = {}


def resolve_order(value: str) -> UUID:
    """An order id, or an upstream external id (which determines the id)."""
    try:
        return UUID(value)
    except ValueError:
        order_id = order_id_for(value)
        TYPED[order_id] = value
        return order_id


def not_found_text(error: OrderNotFound) -> str:
    typed = TYPED.get(error.order_id) if isinstance(error.order_id, UUID) else None
    if typed is None:
        return str(error)
    return (
        f"no order {typed!r}: it is not an order id, and no order has that external id "
        f"(it would be order {error.order_id})"
    )


ORDER = click.argument("order_ref", metavar="ORDER")


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        values[name] = parse_value(raw)
    return values


def place(site: str | None, site_name: str | None) -> Place | None:
    return Place(id=site, name=site_name) if site else None


@order.command()
@click.option("--external-id")
@click.option("--customer", help="Customer party id.")
@click.option("--customer-name")
@click.option("--category")
@click.option("--priority")
@click.option("--description")
@click.pass_obj
@refusals
def draft(
    obj: Context,
    external_id: str | None,
    customer: str | None,
    customer_name: str | None,
    category: str | None,
    priority: str | None,
    description: str | None,
) -> None:
    """Start capturing an order by hand; prints its id."""
    parties = (Party(id=customer, name=customer_name),) if customer else ()
    header = OrderHeader(
        external_id=external_id,
        category=category,
        priority=priority,
        description=description,
        related_parties=parties,
    )
    with obj.app() as app:
        click.echo(app.draft_order(obj.command_context(), header))


@order.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
@refusals
def create(obj: Context, file: Path) -> None:
    """Create and submit a complete order from a JSON file: the TMF641 ServiceOrder body the
    REST API takes (with "serviceOrderItem"), or {"header": {...}, "items": [...]}."""
    header, items, notes = _from_file(file, order_file.load_order)
    with obj.app() as app:
        order_id, created = app.receive_order(obj.command_context(), header, items, notes=notes)
    click.echo(f"{order_id} {'created' if created else 'already exists'}")


def _from_file(file: Path, load: Callable[[Path], T]) -> T:
    """What `load` reads from `file`: a one-line error naming the file (exit 2) when it
    cannot be read as JSON of the right shape, every problem listed (exit 1) when its
    content is refused."""
    try:
        return load(file)
    except order_file.BadFile as e:
        raise OneLineError(str(e)) from None
    except order_file.Problems as e:
        click.echo(f"refused: {file}: {len(e.problems)} problem(s)", err=True)
        for problem in e.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)


@order.command("add-line")
@ORDER
@click.option("--item", "item_id", required=True, help="Item id, unique in the order.")
@click.option("--action", type=click.Choice([a.value for a in ItemAction]), default="add")
@click.option("--spec", help="Service specification id (see `serviceorders catalog`).")
@click.option("--service-id", help="The existing service (modify / delete / noChange).")
@click.option("--site", help="Place (site) id.")
@click.option("--site-name")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A characteristic; repeat for more. Values are JSON if they parse.",
)
@click.option("--quantity", type=int, default=1)
@click.option("--depends-on", multiple=True, metavar="ITEM")
@click.pass_obj
@refusals
def add_line(
    obj: Context,
    order_ref: str,
    item_id: str,
    action: str,
    spec: str | None,
    service_id: str | None,
    site: str | None,
    site_name: str | None,
    pairs: tuple[str, ...],
    quantity: int,
    depends_on: tuple[str, ...],
) -> None:
    """Add an order item to a draft."""
    item = OrderItem(
        id=item_id,
        action=ItemAction(action),
        specification=SpecRef(id=spec) if spec else None,
        service_id=service_id,
        characteristics=parse_settings(pairs),
        place=place(site, site_name),
        quantity=quantity,
        depends_on=depends_on,
    )
    with obj.app() as app:
        show_brief(app.add_line(obj.command_context(), resolve_order(order_ref), item))


@order.command("configure-line")
@ORDER
@click.argument("item_id", metavar="ITEM")
@click.option("--set", "pairs", multiple=True, metavar="NAME=VALUE")
@click.option("--clear", multiple=True, metavar="NAME", help="Remove a characteristic.")
@click.option("--site")
@click.option("--site-name")
@click.option("--quantity", type=int)
@click.option("--depends-on", multiple=True, metavar="ITEM")
@click.pass_obj
@refusals
def configure_line(
    obj: Context,
    order_ref: str,
    item_id: str,
    pairs: tuple[str, ...],
    clear: tuple[str, ...],
    site: str | None,
    site_name: str | None,
    quantity: int | None,
    depends_on: tuple[str, ...],
) -> None:
    """Set or clear characteristics, or change the site, quantity or dependencies."""
    with obj.app() as app:
        show_brief(
            app.configure_line(
                obj.command_context(),
                resolve_order(order_ref),
                item_id,
                parse_settings(pairs),
                clear,
                place(site, site_name),
                quantity,
                depends_on or None,
            )
        )


def simple(name: str, method: str, help_text: str, *options: Any) -> None:
    """Register `order NAME ORDER [options]`, calling one application method."""

    @click.pass_obj
    @refusals
    def command(obj: Context, order_ref: str, **kwargs: Any) -> None:
        with obj.app() as app:
            result = getattr(app, method)(obj.command_context(), resolve_order(order_ref), **kwargs)
            if isinstance(result, ServiceOrder):
                show_brief(result)
            else:
                click.echo(result)

    command.__doc__ = help_text
    for option in reversed(options):
        command = option(command)
    order.command(name)(ORDER(command))


simple(
    "remove-line",
    "remove_line",
    "Remove an item from a draft.",
    click.argument("item_id", metavar="ITEM"),
)
simple("submit", "submit", "Submit a draft for review (refused with every problem listed).")
simple(
    "approve",
    "approve",
    "Approve an order in review (a manager's decision).",
    click.option("--note"),
)
simple(
    "reject",
    "reject",
    "Reject an order in review; a reason is required.",
    click.option("--reason", required=True),
)
simple("hold", "hold", "Hold an order in progress.", click.option("--reason", required=True))
simple("resume", "resume", "Resume a held order.", click.option("--note"))
simple(
    "request-info",
    "request_information",
    "Ask for information (the order goes pending).",
    click.option("--information", required=True),
)
simple(
    "provide-info",
    "provide_information",
    "Provide requested information.",
    click.option("--information", required=True),
)
simple(
    "point-of-no-return",
    "reach_point_of_no_return",
    "Record that fulfilment passed the point of no return.",
    click.option("--note"),
)
simple(
    "request-cancel",
    "request_cancellation",
    "Request cancellation (prints the request id).",
    click.option("--reason"),
)
simple(
    "approve-cancel",
    "approve_cancellation",
    "Accept the pending cancellation request.",
    click.option("--note"),
)
simple(
    "deny-cancel",
    "deny_cancellation",
    "Deny the cancellation request; a reason is required.",
    click.option("--reason", required=True),
)
simple(
    "cancel",
    "cancel",
    "Cancel the order (after an accepted request, or directly).",
    click.option("--reason"),
)
simple("note", "add_note", "Add a note to the order.", click.argument("text"))


@order.command("item-state")
@ORDER
@click.argument("item_id", metavar="ITEM")
@click.argument(
    "state", type=click.Choice([s.value for s in ItemState if s not in (ItemState.REJECTED,)])
)
@click.option("--reason")
@click.pass_obj
@refusals
def item_state(obj: Context, order_ref: str, item_id: str, state: str, reason: str | None) -> None:
    """Report an item's fulfilment state; the last final item settles the order."""
    with obj.app() as app:
        show_brief(
            app.change_item_state(
                obj.command_context(), resolve_order(order_ref), item_id, ItemState(state), reason
            )
        )


@order.command()
@ORDER
@click.option(
    "--items",
    "items_file",
    type=click.Path(path_type=Path),
    help="JSON list of items: each replaces the item with its id, or is added.",
)
@click.option("--remove", multiple=True, metavar="ITEM")
@click.option("--priority")
@click.option("--description")
@click.pass_obj
@refusals
def revise(
    obj: Context,
    order_ref: str,
    items_file: Path | None,
    remove: tuple[str, ...],
    priority: str | None,
    description: str | None,
) -> None:
    """Revise a submitted order (merged by item id) before its point of no return."""
    items = (
        _from_file(
            items_file,
            lambda path: order_file.items_from_json(order_file.read_json(path), path.name),
        )
        if items_file
        else []
    )
    header = HeaderChange(
        **{k: v for k, v in {"priority": priority, "description": description}.items() if v}
    )
    with obj.app() as app:
        show_brief(
            app.revise(obj.command_context(), resolve_order(order_ref), items, remove, header)
        )


@order.command()
@ORDER
@click.option("--version", type=int, help="The order as it was at this version.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def show(obj: Context, order_ref: str, version: int | None, as_json: bool) -> None:
    """Show an order (with its items, flags and notes)."""
    with obj.app() as app:
        found = app.get_order(resolve_order(order_ref), version=version)
    if as_json:
        state = found.snapshot_state().model_dump(mode="json")
        click.echo(json.dumps({"id": str(found.id), "version": found.version, **state}, indent=2))
        return
    show_full(found)


@order.command()
@ORDER
@click.pass_obj
@refusals
def validate(obj: Context, order_ref: str) -> None:
    """List every problem the order has as it stands (exit 1 if any would refuse it)."""
    with obj.app() as app:
        problems = app.get_order(resolve_order(order_ref)).validate(app.catalog)
    for problem in problems:
        kind = "refuses" if problem.structural else "flag"
        click.echo(f"{kind}: [{problem.code}] {problem.message}")
    if not problems:
        click.echo("no problems")
    sys.exit(1 if any(p.structural for p in problems) else 0)


@order.command()
@ORDER
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
@refusals
def events(obj: Context, order_ref: str, as_json: bool) -> None:
    """List the order's stored events: version, time, event, actor, source."""
    with obj.app() as app:
        history = app.history(resolve_order(order_ref))
    for event in history:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "type": type(event).__name__,
                        "version": event.originator_version,
                        **event.stored_state(),
                    }
                )
            )
        else:
            click.echo(
                f"{event.originator_version:>4}  {event.timestamp:%Y-%m-%d %H:%M:%S}  "
                f"{type(event).__name__:<26} {event.actor.id} ({event.actor.role}) "
                f"via {event.source.channel}"
            )


def show_brief(found: ServiceOrder) -> None:
    click.echo(f"{found.id} {found.state} v{found.version}")


def show_full(found: ServiceOrder) -> None:
    header = found.header
    click.echo(f"order     {found.id}")
    click.echo(f"state     {found.state}   version {found.version}")
    for label, value in (
        ("external", header.external_id),
        ("customer", header.customer and header.customer.id),
        ("priority", header.priority),
        ("category", header.category),
    ):
        if value:
            click.echo(f"{label:<9} {value}")
    click.echo("items")
    for item in found.items.values():
        spec = item.specification.id if item.specification else item.service_id or "-"
        site = item.place.id if item.place else "-"
        click.echo(
            f"  {item.id:<6} {item.action:<9} {spec:<24} site {site:<12} {item.state or 'draft'}"
        )
    for problem in found.flags:
        click.echo(f"flag      [{problem.code}] {problem.message}")
    for note in found.notes:
        click.echo(f"note      {note.author or '-'}: {note.text}")


# The command groups defined in their own modules register themselves on `main`.
from serviceorders.cli import audit as cli_audit  # noqa: E402, F401
from serviceorders.cli import history as cli_history  # noqa: E402, F401
from serviceorders.cli import kafka as cli_kafka  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    main()

"""Composition root: builds the application from settings. Nothing else configures persistence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.utils import get_topic
from serviceorders import schema
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.inventory import CheckMode
from serviceorders.projections.runner import Projector
from serviceorders.settings import DatabaseConfig, Settings
from serviceorders.storage.db import ReadDb
from serviceorders.storage.recorders import IntakePostgresRecorder, IntakeSqliteRecorder

# The REST doors' modules load FastAPI: only `api` and `serve` need them. The application
# (its commands) and the PII vault are imported by build_application: `project` and the
# read-only commands never load them (issue 21, start-up).
if TYPE_CHECKING:
    from serviceorders.api.auth import Authenticator
    from serviceorders.api.context import ApiContext
    from serviceorders.audit.anchors import Anchor
    from serviceorders.domain.application import ServiceOrders


def eventsourcing_env(settings: Settings, *, create_tables: bool = False) -> dict[str, str]:
    """A complete configuration for the eventsourcing library (it sees nothing else)."""
    env = {"CREATE_TABLE": "y" if create_tables else "n"}
    db: DatabaseConfig = settings.database
    if db.kind == "sqlite":
        env.update(
            PERSISTENCE_MODULE="eventsourcing.sqlite",
            SQLITE_DBNAME=db.dbname,
            SQLITE_LOCK_TIMEOUT=str(settings.lock_timeout_seconds),
            APPLICATION_RECORDER_TOPIC=get_topic(IntakeSqliteRecorder),
        )
        return env
    env.update(
        PERSISTENCE_MODULE="eventsourcing.postgres",
        POSTGRES_DBNAME=db.dbname,
        POSTGRES_HOST=db.host,
        POSTGRES_PORT=str(db.port),
        POSTGRES_USER=db.user,
        POSTGRES_PASSWORD=db.password,
        POSTGRES_LOCK_TIMEOUT=str(settings.lock_timeout_seconds),
        # A connection left idle inside a transaction is closed by the server after this
        # long (its locks released); the write transactions' own bound is their statement
        # timeout (IntakePostgresRecorder.write_timeout_ms, set in build_application).
        POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT=str(settings.write_timeout_seconds),
        POSTGRES_POOL_SIZE=str(settings.pool_size),
        POSTGRES_MAX_OVERFLOW=str(settings.pool_max_overflow),
        POSTGRES_CONNECT_TIMEOUT="10",
        POSTGRES_PRE_PING="y",
        # The library's recorder plus the Kafka intake's rows in the same transaction.
        APPLICATION_RECORDER_TOPIC=get_topic(IntakePostgresRecorder),
        # Never enable POSTGRES_ENABLE_DB_FUNCTIONS: it skips the table lock that keeps
        # notification ids in commit order (see docs/architecture.md).
    )
    return env


def load_catalog(settings: Settings) -> Catalog:
    return Catalog.from_file(settings.catalog_path) if settings.catalog_path else Catalog.default()


def build_application(settings: Settings, *, create_tables: bool = False) -> ServiceOrders:
    from serviceorders.audit.pii import KeyStore, Vault
    from serviceorders.domain.application import ServiceOrders

    postgres = settings.database.kind == "postgres"
    toast_lz4 = False
    if not create_tables or postgres:
        # One connection for the schema check (refuse a database whose schema is newer than
        # this code knows, or older: docs/architecture.md, "Schema versions and upgrades")
        # and, on PostgreSQL, whether its server has lz4 (storage/db.py use_lz4).
        db = open_read_db(settings)
        try:
            if not create_tables:
                schema.check(db)
            toast_lz4 = db.toast_lz4
        finally:
            db.close()
    app = ServiceOrders(
        env=eventsourcing_env(settings, create_tables=create_tables),
        catalog=load_catalog(settings),
        snapshot_interval=settings.snapshot_interval,
        four_eyes=settings.four_eyes,
        sealer=Vault(KeyStore(lambda: open_read_db(settings))),
        policy=settings.policy(),
        inventory_check=CheckMode(settings.inventory_check),
    )
    if isinstance(app.recorder, IntakePostgresRecorder):
        # Bounds every write transaction, the events-table lock with it (docs/reliability.md).
        app.recorder.write_timeout_ms = settings.write_timeout_seconds * 1000
        app.recorder.toast_lz4 = toast_lz4
    return app


def open_read_db(settings: Settings) -> ReadDb:
    return ReadDb.connect(settings.database, settings.lock_timeout_seconds)


def audit_anchor(settings: Settings, value: str) -> Anchor:
    """The audit anchor `value` names (SERVICEORDERS_AUDIT_ANCHOR, `audit verify --anchor`):
    a `file:/path`, or a `kafka:<topic>` on the engine's Kafka (its bootstrap servers, TLS
    and SASL settings). ValueError when it names none, or Kafka is not configured."""
    from serviceorders.audit.anchors import open_anchor
    from serviceorders.notifications.kafka import client_options

    options = client_options(settings) if settings.kafka_bootstrap_servers else None
    return open_anchor(value, options)


def event_mapper() -> PydanticMapper:
    return PydanticMapper(transcoder=OrjsonTranscoder())


def build_projector(
    settings: Settings, db: ReadDb | None = None, keep: int | None = None
) -> Projector:
    """The read models' projector. `keep`: the orders it keeps folded between pages (default
    SERVICEORDERS_PROJECTION_CACHE): `project` keeps them; a process that also answers
    requests keeps none (`serve`, the API's workers), as the collector's walk over kept
    orders showed in their tail latency (docs/performance.md, "Issue 21, continued")."""
    given = db is not None
    db = db or open_read_db(settings)
    try:
        schema.check(db, shapes=True)
    except BaseException:
        if not given:
            db.close()
        raise
    return Projector(
        db,
        event_mapper(),
        batch_size=settings.projection_batch_size,
        keep=settings.projection_cache_orders if keep is None else keep,
    )


def build_api_context(
    settings: Settings, auth: Authenticator, base_url: str | None = None
) -> ApiContext:
    """What the REST doors serve from: the application, the API keys, and read-your-writes
    with this root's projectors (each checks the schema, as `build_projector` does)."""
    # Imported here: `consume` and `project` never load FastAPI.
    from serviceorders.api.context import ApiContext

    return ApiContext(
        settings=settings,
        app=build_application(settings),
        auth=auth,
        base_url=base_url,
        new_projector=lambda: build_projector(settings, keep=0),
    )


def init_database(settings: Settings) -> list[str]:
    """Create every table the engine needs and bring an existing database up to this
    code's schema: the migrations it lacks, a rebuild of each read model whose shape
    changed (idempotent; serviceorders.schema). Returns what was set up or done."""
    db = open_read_db(settings)
    try:
        with schema.exclusive(db):  # one db init at a time, the library's tables included
            schema.refuse_newer(db)
            app = build_application(settings, create_tables=True)
            app.close()
            done = schema.upgrade(db, event_mapper())
    finally:
        db.close()
    where = settings.database.url()
    return [
        f"{settings.database.kind} event store ({where})",
        f"{settings.database.kind} read models and projection positions ({where})",
        f"{settings.database.kind} hub subscriptions and deliveries ({where})",
        f"{settings.database.kind} Kafka intake positions, dead letters and outbox ({where})",
        f"{settings.database.kind} auditors' access log ({where})",
        *done,
    ]

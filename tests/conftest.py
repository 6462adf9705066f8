"""Shared fixtures: a throw-away PostgreSQL database, clean stores, settings and applications.

PostgreSQL is never optional: when the server cannot be reached the postgres-backed tests
FAIL (with a message saying where it was looked for), they are not skipped.
`SERVICEORDERS_TEST_PG` (a server URL without a database, default
`postgresql://postgres@127.0.0.1:5432`) says where the server is.
"""

from __future__ import annotations

import gzip
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg import sql
from serviceorders.bootstrap import build_application, init_database
from serviceorders.consumers.store import TABLES as INTAKE_TABLES
from serviceorders.domain import chain
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.codec import decode_state
from serviceorders.domain.values import (
    Channel,
    CommandContext,
    ItemAction,
    OrderHeader,
    OrderItem,
    Place,
    Role,
    SpecRef,
)
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings

DEFAULT_TEST_PG = "postgresql://postgres@127.0.0.1:5432"
ENGINE_TABLES = ("serviceorders_events", "serviceorders_snapshots")
BACKENDS = ["sqlite", "postgres"]


# --------------------------------------------------------------------------- PostgreSQL
@dataclass(frozen=True)
class PgDatabase:
    """A database created for this test session; `url(...)` is a DATABASE_URL for it."""

    server_url: str
    dbname: str

    def url(self) -> str:
        parts = urlsplit(self.server_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + self.dbname, parts.query, ""))

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url().replace("postgresql+psycopg://", "postgresql://"),
            autocommit=True,
            connect_timeout=5,
        )

    def events_lock_holders(self) -> list[Any]:
        """The sessions holding the events table's insert lock (its ExclusiveLock): empty
        when no write is under way or stuck."""
        with self.connect() as conn:
            return conn.execute(
                "SELECT pid FROM pg_locks WHERE relation = "
                "'serviceorders_events'::regclass AND mode = 'ExclusiveLock'"
            ).fetchall()


def _server_url() -> str:
    # The one place the tests read the environment; the engine's settings never do here.
    url = os.environ.get("SERVICEORDERS_TEST_PG") or DEFAULT_TEST_PG
    return url.rstrip("/")


def _admin_connect(server_url: str) -> psycopg.Connection[Any]:
    parts = urlsplit(server_url)
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    try:
        return psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        error = e
    # Outside the except block, so the report shows only this message.
    pytest.fail(
        f"PostgreSQL is required for the integration tests but is unreachable at "
        f"{server_url!r} (set SERVICEORDERS_TEST_PG to point elsewhere): {error}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    """A uniquely named database, created once per session and dropped at the end."""
    server_url = _server_url()
    dbname = f"so_test_{secrets.token_hex(6)}"
    with _admin_connect(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    db = PgDatabase(server_url, dbname)
    try:
        # The engine's tables, created once; every test then starts from them truncated.
        init_database(Settings.from_env({"DATABASE_URL": db.url()}))
        yield db
    finally:
        with _admin_connect(server_url) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


@pytest.fixture(scope="session")
def pg_cleaner(pg_database: PgDatabase) -> Iterator[Callable[[], None]]:
    conn = pg_database.connect()
    conn.execute("SET lock_timeout = '10s'")  # a leaked open application fails, not hangs

    def clean() -> None:
        # The event store and every read model start empty; projections start at 0.
        tables = [
            *ENGINE_TABLES,
            *(p.name for p in PROJECTIONS),
            *INTAKE_TABLES,
            "pii_key",
            "pii_erasure",
        ]
        tables += [
            t
            for t in (
                "audit_access_log",
                "audit_checkpoint",
                "audit_checkpoint_head",
                "audit_seen_head",
            )
            if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0]
        ]
        leftovers = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND (tablename LIKE '%%\\_\\_rebuild' OR tablename LIKE "
            "'%%\\_\\_verify')"
        ).fetchall()
        for (name,) in leftovers:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )
        conn.execute(
            "DELETE FROM projection_position WHERE name <> ALL(%s)",
            ([p.name for p in PROJECTIONS],),
        )
        conn.execute("UPDATE projection_position SET position = 0, updated_at = NULL")
        hub = [
            t
            for t in ("hub_delivery", "hub_subscription", "hub_worker")
            if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0]
        ]
        if hub:  # listeners registered by one test must not reach the next
            conn.execute(
                sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in hub))
            )

    yield clean
    conn.close()


# ---------------------------------------------------------------------- clean stores
@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for an empty store: a SQLite file in tmp_path, or the session's
    PostgreSQL database with the engine's tables truncated."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'serviceorders.db'}"  # absolute: sqlite:////tmp/...
    else:
        db: PgDatabase = request.getfixturevalue("pg_database")
        request.getfixturevalue("pg_cleaner")()
        url = db.url()
    return Settings.from_env({"DATABASE_URL": url})


@pytest.fixture(scope="module", params=BACKENDS)
def module_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings for an empty store of the test module's own, one per backend, made once
    per module: a SQLite file in a temporary directory, or a new PostgreSQL database on the
    test server (no tables yet; dropped after the module). For tests that only read what a
    module-scoped fixture built there once; a test that writes takes `settings`."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module-store") / "serviceorders.db"
        yield Settings.from_env({"DATABASE_URL": f"sqlite:///{path}"})
        return
    server_url = request.getfixturevalue("pg_database").server_url
    dbname = f"so_module_{secrets.token_hex(6)}"
    with _admin_connect(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield Settings.from_env({"DATABASE_URL": PgDatabase(server_url, dbname).url()})
    finally:
        with _admin_connect(server_url) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


@pytest.fixture
def make_settings(request: pytest.FixtureRequest, settings: Settings) -> Callable[..., Settings]:
    """More settings for the same store as `settings`, with overrides for `from_env`."""
    if settings.database.kind == "sqlite":
        url = f"sqlite:///{settings.database.dbname}"
    else:  # the session database, as given (no truncation here: `settings` did that)
        url = request.getfixturevalue("pg_database").url()

    def make(**overrides: Any) -> Settings:
        return Settings.from_env({"DATABASE_URL": url}, **overrides)

    return make


@pytest.fixture
def open_app() -> Iterator[Callable[[Settings], ServiceOrders]]:
    """Builds (and initialises) extra applications, all closed after the test."""
    opened: list[ServiceOrders] = []

    def open_(settings: Settings) -> ServiceOrders:
        init_database(settings)
        app = build_application(settings)
        opened.append(app)
        return app

    yield open_
    for app in reversed(opened):
        app.close()


@pytest.fixture
def app(settings: Settings, open_app: Callable[[Settings], ServiceOrders]) -> ServiceOrders:
    return open_app(settings)


# ------------------------------------------------------------------ domain helpers
@dataclass(frozen=True)
class Actors:
    upstream: CommandContext
    agent: CommandContext
    manager: CommandContext
    other_manager: CommandContext
    fulfilment: CommandContext
    operator: CommandContext


@pytest.fixture
def actors() -> Actors:
    return Actors(
        upstream=CommandContext.for_actor("crm", Role.UPSTREAM, Channel.KAFKA),
        agent=CommandContext.for_actor("alice", Role.AGENT, Channel.API),
        manager=CommandContext.for_actor("bob", Role.MANAGER, Channel.API),
        other_manager=CommandContext.for_actor("carol", Role.MANAGER, Channel.API),
        fulfilment=CommandContext.for_actor("fulfil-1", Role.FULFILMENT, Channel.KAFKA),
        operator=CommandContext.for_actor("ops", Role.OPERATOR, Channel.CLI),
    )


def internet_item(item_id: str = "1", **kw: Any) -> OrderItem:
    fields: dict[str, Any] = {
        "specification": SpecRef(id="internet-access"),
        "characteristics": {"bandwidthMbps": 100, "accessType": "fibre"},
        "place": Place(id="site-1"),
    }
    return OrderItem(id=item_id, action=ItemAction.ADD, **{**fields, **kw})


def router_item(item_id: str = "2", **kw: Any) -> OrderItem:
    fields: dict[str, Any] = {
        "specification": SpecRef(id="managed-router"),
        "characteristics": {"model": "c1100"},
        "place": Place(id="site-1"),
    }
    return OrderItem(id=item_id, action=ItemAction.ADD, **{**fields, **kw})


@dataclass(frozen=True)
class Samples:
    internet_item: Callable[..., OrderItem]
    router_item: Callable[..., OrderItem]

    def header(self, external_id: str | None = "ext-1", **kw: Any) -> OrderHeader:
        return OrderHeader(external_id=external_id, description="two services", **kw)

    def items(self) -> list[OrderItem]:
        return [self.internet_item("1"), self.router_item("2", depends_on=("1",))]


@pytest.fixture
def samples() -> Samples:
    return Samples(internet_item, router_item)


# ------------------------------------------------------------------------ hash chain
ChainRow = tuple[str, UUID, int, dict[str, Any]]  # topic, order id, version, stored state


def stored_rows(app: ServiceOrders, order_id: UUID) -> list[ChainRow]:
    """Every stored event of the order, its state decoded exactly as stored (no upcasting)."""
    return [
        (
            stored.topic,
            stored.originator_id,
            stored.originator_version,
            decode_state(app.mapper, stored),
        )
        for stored in app.recorder.select_events(order_id)
    ]


def chain_break(rows: list[ChainRow]) -> str | None:
    """Where the hash chain over `rows` fails to verify (a description), or None."""
    previous = chain.GENESIS
    for expected_version, (topic, order_id, version, state) in enumerate(rows, start=1):
        if version != expected_version:
            return f"v{version}: expected version {expected_version}"
        recomputed = chain.event_hash(topic, order_id, version, state)
        if state.get("hash") != recomputed:
            return f"v{version}: stored hash does not match the content"
        if state.get("prev_hash") != previous:
            return f"v{version}: prev_hash does not link to the previous event"
        previous = state["hash"]
    return None


def verify_chain(app: ServiceOrders, order_id: UUID) -> list[str]:
    """Assert the stored hash chain of the order verifies; return its hashes in order."""
    rows = stored_rows(app, order_id)
    assert rows, f"no stored events for order {order_id}"
    problem = chain_break(rows)
    assert problem is None, f"hash chain of order {order_id} broken at {problem}"
    return [state["hash"] for *_, state in rows]


class ChainTools:
    stored_rows = staticmethod(stored_rows)
    chain_break = staticmethod(chain_break)
    verify = staticmethod(verify_chain)


@pytest.fixture
def chain_tools() -> type[ChainTools]:
    return ChainTools


# ------------------------------------------------------------------ server processes
@dataclass
class ServerProcess:
    """A `serviceorders api` process started by `start_api` on a free loopback port."""

    base: str
    port: int
    process: subprocess.Popen[bytes]
    out_path: Path

    def output(self) -> str:
        """What the process printed so far (stdout and stderr)."""
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (then SIGKILL after 15 s), or SIGKILL at once; nothing if it has ended."""
        if self.process.poll() is not None:
            return
        if not kill:
            self.process.terminate()
            try:
                self.process.wait(15)
                return
            except subprocess.TimeoutExpired:
                pass
        self.process.kill()
        self.process.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `serviceorders api ARGS...` on DATABASE_URL `url`, on 127.0.0.1 and a free port,
    with `env` added to this environment and the variables in `unset` removed (API keys by
    default: full access on loopback); returns once `/health` answers. Every process started
    is stopped at the end of the test (SIGKILL at once when started with `kill_at_end`)."""
    started: list[tuple[ServerProcess, bool]] = []

    def start(
        url: str,
        *args: str,
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = ("SERVICEORDERS_API_KEYS",),
        kill_at_end: bool = False,
    ) -> ServerProcess:
        port = free_port()
        environ = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1", **(env or {})}
        for name in unset:
            environ.pop(name, None)
        out_path = tmp_path / f"api-{port}.out"
        with open(out_path, "wb") as out:
            process = subprocess.Popen(
                [
                    shutil.which("serviceorders") or "serviceorders",
                    "api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    *args,
                ],
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = ServerProcess(f"http://127.0.0.1:{port}", port, process, out_path)
        started.append((server, kill_at_end))
        deadline = time.monotonic() + 60  # a loaded CI machine
        while True:
            try:
                if httpx.get(f"{server.base}/health", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            assert process.poll() is None, server.output()
            assert time.monotonic() < deadline, "the api process did not start"
            time.sleep(0.1)

    yield start
    for server, kill in started:
        server.stop(kill=kill)


# ------------------------------------------------------------------ a stuck write
SLOW_WRITE_MARKER = "slow-write-marker"


@pytest.fixture
def slow_marked_inserts(pg_database: PgDatabase) -> Iterator[None]:
    """Inserting an event whose state contains SLOW_WRITE_MARKER ("slow-write-marker"; in a
    field that is not sealed, e.g. the category: a sealed text is not in the stored bytes)
    sleeps 60 s, inside the transaction that holds the events-table lock: a stuck write made
    independently of any header or payload size (docs/reliability.md, "Timeouts")."""
    conn = pg_database.connect()
    conn.execute(
        "CREATE OR REPLACE FUNCTION so_test_slow() RETURNS trigger AS $$ BEGIN "
        "PERFORM pg_sleep(60); RETURN NEW; END $$ LANGUAGE plpgsql"
    )
    conn.execute(
        "CREATE TRIGGER so_test_slow BEFORE INSERT ON serviceorders_events FOR EACH "
        "ROW WHEN (position(convert_to('" + SLOW_WRITE_MARKER + "', 'UTF8') in "
        "NEW.state) > 0) EXECUTE FUNCTION so_test_slow()"
    )
    try:
        yield
    finally:
        conn.execute("DROP TRIGGER IF EXISTS so_test_slow ON serviceorders_events")
        conn.close()


# ------------------------------------------------------------ scratch databases
@pytest.fixture
def new_pg_database(request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Makes new PostgreSQL databases on the test server (pg_database says where that is),
    each dropped after the test: `new_pg_database("so_upgrade")` is an empty one (the name
    gets a random suffix); with `dump=path` it is restored by psql from that gzipped SQL
    dump (gzipped, so that the duplicate checker reads no dump as source)."""
    made: list[tuple[str, str]] = []

    def new(prefix: str, dump: Path | None = None, timeout: float = 120) -> str:
        parts = urlsplit(request.getfixturevalue("pg_database").server_url)
        admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
        name = f"{prefix}_{secrets.token_hex(5)}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append((admin, name))
        url = urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, ""))
        if dump is not None:
            psql = shutil.which("psql")
            assert psql, "psql (PostgreSQL's client) is needed to restore a dump"
            subprocess.run(
                [psql, "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
                input=gzip.decompress(dump.read_bytes()),
                check=True,
                capture_output=True,
                timeout=timeout,
            )
        return url

    yield new
    for admin, name in made:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

"""Upgrades: a database written by the previous release (tests/fixtures/upgrade, made by
make_fixture.sh with that release's code) brought to this code's schema by `db init` with
nothing lost; numbered migrations applied once, in a transaction, also by concurrent
`db init`s; read models whose shape changed rebuilt; a process refusing a schema newer (or
older) than it knows; an event of an unknown type stopping the projector."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from serviceorders import schema
from serviceorders.bootstrap import build_projector, event_mapper, init_database, open_read_db
from serviceorders.domain.codec import UnknownEvent
from serviceorders.projections.maintenance import stored_shapes
from serviceorders.projections.views import PROJECTIONS, OrderSummary
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text("utf-8"))
EXE = shutil.which("serviceorders")
BACKENDS = ["sqlite", "postgres"]


def run(
    *args: str, url: str, expect: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert EXE, "the serviceorders console script is not installed"
    done = subprocess.run(
        [EXE, "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env} if env is not None else None,
    )
    assert done.returncode == expect, (
        f"serviceorders {' '.join(args)} exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done


# ------------------------------------------------------------------- databases
@pytest.fixture(params=BACKENDS)
def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> str:
    """A database with nothing in it: a new SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return new_pg_database("so_upgrade")


@pytest.fixture(params=BACKENDS)
def previous(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> tuple[str, str]:
    """(backend, url) of a copy of the previous release's database."""
    if request.param == "sqlite":
        copy = tmp_path / "prev.db"
        shutil.copyfile(FIXTURES / "prev.db", copy)
        return "sqlite", f"sqlite:///{copy}"
    return "postgres", new_pg_database("so_upgrade", FIXTURES / "prev-postgres.sql.gz", 60)


def settings_for(url: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": url})


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(statement.replace("%s", "?"), params).fetchall()
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


def everything(url: str) -> dict[str, Any]:
    """Every table's definition and rows (sorted), to show that nothing changed."""
    if url.startswith("sqlite"):
        tables = [
            r[0]
            for r in query(url, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        ddl = query(url, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    else:
        tables = [
            r[0]
            for r in query(
                url,
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            )
        ]
        ddl = query(
            url,
            "SELECT table_name, column_name, data_type FROM "
            "information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, column_name",
        )
        ddl += query(
            url,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = "
            "'public' ORDER BY indexname",
        )
    found: dict[str, Any] = {"ddl": [repr(r) for r in ddl]}
    for table in tables:
        found[table] = sorted(repr(r) for r in query(url, f"SELECT * FROM {table}"))
    return found


def events_table(url: str) -> str:
    return "stored_events" if url.startswith("sqlite") else "serviceorders_events"


# What `order show --json` has gained since the fixture's release (issue 17: who contributed,
# the waiting proposal, the proposal an order is held for): not in the recorded output, so
# each old order's values are derived from its recorded events instead.
ADDED_FIELDS = ("contributors", "proposal", "held_for_proposal")
# The events whose actor contributed to the order's content (domain/events.py).
CONTRIBUTING = {
    "OrderDrafted",
    "LineAdded",
    "LineConfigured",
    "LineRemoved",
    "OrderSubmitted",
    "OrderRevised",
}


def added_fields(events: list[dict[str, Any]]) -> dict[str, Any]:
    """ADDED_FIELDS as an order of the old release shows them: its contributors in the order
    they first contributed, and no proposal (the old release had none)."""
    contributors = [e["actor"]["id"] for e in events if e["type"] in CONTRIBUTING]
    return {
        "contributors": list(dict.fromkeys(contributors)),
        "proposal": None,
        "held_for_proposal": None,
    }


# Order state added by issue 19, derived from the events an old release wrote: what the
# order tells back (outcomes, milestones), the items' states before a cancellation request
# (the items mirror it), a question on the cancellation.
TOLD_BACK_FIELDS = (
    "outcomes",
    "milestones",
    "item_states_before_cancellation",
    "cancellation_information",
)
_MILESTONE_OF = {"OrderApproved": "approved", "PointOfNoReturnReached": "pointOfNoReturn"}
_OUTCOME_OF = {
    "OrderRejected": "rejected",
    "ProposalRefused": "proposal_refused",
    "CancellationDenied": "cancellation_denied",
}


def told_back(told: dict[str, Any]) -> dict[str, Any]:
    """The outcomes and milestones an order shows, as (name or code, time, items)."""
    return {
        "milestones": [(m["name"], m["date"], tuple(m["item_ids"])) for m in told["milestones"]],
        "outcomes": [(o["code"], o["date"], tuple(o["item_ids"])) for o in told["outcomes"]],
    }


def told_back_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What an old release's events tell back under issue 19's rules (docs/lifecycle.md,
    "Outcomes told back"): nothing in the events changed, so every one is derived."""
    milestones: list[tuple[str, str, tuple[str, ...]]] = []
    outcomes: list[tuple[str, str, tuple[str, ...]]] = []
    for e in events:
        kind, at = e["type"], e["timestamp"]
        if kind in _MILESTONE_OF:
            milestones.append((_MILESTONE_OF[kind], at, ()))
        elif kind in _OUTCOME_OF:
            outcomes.append((_OUTCOME_OF[kind], at, ()))
        elif kind == "ItemStateChanged":
            item = (e["item_id"],)
            if e["state"] == "inProgress":
                milestones.append(("itemStarted", at, item))
            elif e["state"] == "completed":
                milestones.append(("itemCompleted", at, item))
            elif e["state"] == "failed":
                outcomes.append(("item_failed", at, item))
    return {"milestones": milestones, "outcomes": outcomes}


# Event attributes added since (issue 17), null in every event of an old release: a
# decision's `decision` (version, content hash, OS user), a hold's `proposal_id`.
ADDED_EVENT_FIELDS = {"decision", "proposal_id"}


def without_added(event: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """`event` as `order events --json` shows it now, without the attributes added since
    the recording (each must be one of ADDED_EVENT_FIELDS, and null)."""
    added = {k: v for k, v in event.items() if k not in recorded}
    assert set(added) <= ADDED_EVENT_FIELDS and all(v is None for v in added.values()), added
    return {k: v for k, v in event.items() if k not in added}


# ------------------------------------------------------------- the upgrade itself
def test_db_init_upgrades_a_database_of_the_previous_release(previous: tuple[str, str]) -> None:
    backend, url = previous
    expected = EXPECTED["backends"][backend]
    assert (
        not query(url, "SELECT 1 FROM " + events_table(url) + " WHERE 1 = 0")
        and len(query(url, f"SELECT * FROM {events_table(url)}")) == expected["events"]
    )

    first = run("db", "init", url=url).stdout
    assert (
        "found the tables of a release before schema versions: recorded as schema "
        "version 1" in first
    )
    assert f"schema version {schema.CURRENT}" in first
    versions = query(url, "SELECT version, name FROM schema_version ORDER BY version")
    assert [(n, name) for n, name in versions] == [(m.number, m.name) for m in schema.MIGRATIONS]

    # Every event and every order is still there, and replays as the old code showed it.
    assert len(query(url, f"SELECT * FROM {events_table(url)}")) == expected["events"]
    ids = {
        str(UUID(str(r[0])))
        for r in query(url, f"SELECT DISTINCT originator_id FROM {events_table(url)}")
    }
    assert ids == set(expected["orders"]) and len(ids) >= 5
    for order_id, old in expected["orders"].items():
        shown = json.loads(run("order", "show", order_id, "--json", url=url).stdout)
        added = {name: shown.pop(name) for name in ADDED_FIELDS}
        assert added == added_fields(old["events"]), order_id
        told = {name: shown.pop(name) for name in TOLD_BACK_FIELDS}
        assert told_back(told) == told_back_of(old["events"]), order_id
        assert told["cancellation_information"] is None, order_id  # no question then
        # issue 20: what the inventory held of each item naming a service when the order was
        # accepted; the old release checked none
        assert shown.pop("inventory") == {}, order_id
        assert shown == old["show"], order_id
        events = [
            json.loads(line)
            for line in run("order", "events", order_id, "--json", url=url).stdout.splitlines()
        ]
        assert len(events) == len(old["events"]), order_id
        pairs = zip(events, old["events"], strict=True)
        assert [without_added(new, recorded) for new, recorded in pairs] == old["events"], order_id
    states = sorted(o["show"]["state"] for o in expected["orders"].values())
    assert {"rejected", "acknowledged", "held", "completed", "draft"} <= set(states)

    # The read models catch up with what the old projector had not applied, and equal a
    # rebuild; the hash chains and the old release's checkpoint verify.
    run("project", "--once", url=url)
    verified = run("projections", "verify", url=url).stdout
    assert all(f"{p.name}: OK" in verified for p in PROJECTIONS), verified
    summary = {
        str(UUID(str(r[0]))): r[1] for r in query(url, "SELECT id, state FROM order_summary")
    }
    assert summary == {o: v["show"]["state"] for o, v in expected["orders"].items()}
    audit = run("audit", "verify", url=url)
    assert "Traceback" not in audit.stderr

    # A second db init changes nothing at all.
    before = everything(url)
    second = run("db", "init", url=url).stdout
    assert "nothing applied" in second and "applied migration" not in second
    assert "rebuilt" not in second
    assert everything(url) == before


# ------------------------------------------------------------ the migration registry
def counting_migration(number: int, fail: bool = False) -> schema.Migration:
    """A migration that creates a table and adds a row to it each time it runs (and, with
    `fail`, then fails)."""

    def step(db: ReadDb) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS upgrade_probe (run text PRIMARY KEY)")
        db.execute("INSERT INTO upgrade_probe (run) VALUES (%s)", (uuid4().hex,))
        if fail:
            raise RuntimeError("migration failed half-way")

    return schema.Migration(number, "test: count runs", postgres=step, sqlite=step)


def test_migrations_apply_once_each_in_a_transaction(empty_url: str) -> None:
    settings = settings_for(empty_url)
    first = init_database(settings)
    assert [line for line in first if line.startswith("applied migration")] == [
        f"applied migration {m.number}: {m.name}" for m in schema.MIGRATIONS
    ]
    assert "schema version" in first[-1] and "nothing applied" not in first[-1]
    assert f"schema version {schema.CURRENT} (up to date, nothing applied)" in init_database(
        settings
    )

    registry = (*schema.MIGRATIONS, counting_migration(schema.CURRENT + 1, fail=True))
    db = open_read_db(settings)
    try:
        with pytest.raises(RuntimeError, match="half-way"):
            schema.migrate(db, registry)
        # Rolled back whole: no table, no version recorded.
        assert not db.table_exists("upgrade_probe")
        assert schema.version(db) == schema.CURRENT
        registry = (*schema.MIGRATIONS, counting_migration(schema.CURRENT + 1))
        assert schema.migrate(db, registry) == [
            f"applied migration {schema.CURRENT + 1}: test: count runs"
        ]
        assert schema.migrate(db, registry) == []
        assert db.fetchone("SELECT COUNT(*) FROM upgrade_probe") == (1,)
    finally:
        db.close()


def test_concurrent_migrations_apply_each_once(empty_url: str) -> None:
    init_database(settings_for(empty_url))
    registry = (
        *schema.MIGRATIONS,
        counting_migration(schema.CURRENT + 1),
        counting_migration(schema.CURRENT + 2),
    )
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def one() -> None:
        db = open_read_db(settings_for(empty_url))
        try:
            start.wait()
            results.append(schema.migrate(db, registry))
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            db.close()

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(len(r) for r in results) == [0, 0, 0, 2] or sum(len(r) for r in results) == 2, (
        results
    )
    assert query(empty_url, "SELECT COUNT(*) FROM upgrade_probe") == [(2,)]
    assert [
        r[0] for r in query(empty_url, "SELECT version FROM schema_version ORDER BY version")
    ] == list(range(1, schema.CURRENT + 3))


def test_concurrent_db_init_processes_on_an_empty_database(empty_url: str) -> None:
    assert EXE
    procs = [
        subprocess.Popen(
            [EXE, "--database-url", empty_url, "db", "init"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    applied = [line for out, _ in outs for line in out.splitlines() if "applied migration" in line]
    assert sorted(applied) == sorted(
        f"ready: applied migration {m.number}: {m.name}" for m in schema.MIGRATIONS
    )
    assert [
        r[0] for r in query(empty_url, "SELECT version FROM schema_version ORDER BY version")
    ] == [m.number for m in schema.MIGRATIONS]


# ------------------------------------------------------------ versions at start-up
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_schema_newer_than_the_code_is_refused_at_start(empty_url: str) -> None:
    run("db", "init", url=empty_url)
    newer = schema.CURRENT + 5
    query(
        empty_url,
        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
        (newer, "from a newer release"),
    )
    message = (
        f"the database schema is at version {newer}, this serviceorders knows up to "
        f"{schema.CURRENT}: upgrade serviceorders"
    )
    for args in (
        ("order", "show", str(uuid4())),
        ("project", "--once"),
        ("db", "init"),
        ("projections", "status"),
        ("projections", "rebuild"),
        ("projections", "verify"),
        ("consume", "--idle-exit", "1"),
        ("serve", "--no-kafka", "--port", str(free_port())),
        ("api", "--port", str(free_port())),
    ):
        # (consume: refused before it tries Kafka, here a closed port)
        done = run(
            *args,
            url=empty_url,
            expect=3,
            env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
        )
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    # db init refused before touching anything
    assert query(empty_url, "SELECT MAX(version) FROM schema_version") == [(newer,)]


def test_an_older_schema_asks_for_db_init_and_db_init_brings_it_up(empty_url: str) -> None:
    run("db", "init", url=empty_url)
    query(empty_url, "DELETE FROM schema_version WHERE version = %s", (schema.CURRENT,))
    done = run("order", "show", str(uuid4()), url=empty_url, expect=3)
    assert (
        f"the database schema is at version {schema.CURRENT - 1}, this serviceorders is "
        f"at {schema.CURRENT}: run `serviceorders db init`"
    ) in done.stderr
    assert f"applied migration {schema.CURRENT}" in run("db", "init", url=empty_url).stdout
    run("order", "show", str(uuid4()), url=empty_url, expect=1)  # unknown order: it runs


def start_serve(url: str) -> tuple[subprocess.Popen[str], str]:
    """`serve --no-kafka` on a free port, once /ready answers; (process, base url)."""
    import httpx

    assert EXE
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "--database-url", url, "serve", "--no-kafka", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{base}/ready", timeout=2)
            return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"serve exited {proc.returncode}: {proc.communicate()[0]}")
        threading.Event().wait(0.1)
    proc.kill()
    pytest.fail(f"serve never answered: {proc.communicate()[0]}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    return proc.communicate(timeout=30)[0]


def test_serve_upgrades_a_database_of_the_previous_release_itself(
    previous: tuple[str, str],
) -> None:
    import httpx

    backend, url = previous
    proc, base = start_serve(url)
    try:
        assert query(url, "SELECT MAX(version) FROM schema_version") == [(schema.CURRENT,)]
        for order_id, old in EXPECTED["backends"][backend]["orders"].items():
            if old["show"]["state"] == "draft":
                continue  # not a TMF641 order
            got = httpx.get(
                f"{base}/tmf-api/serviceOrdering/v4/serviceOrder/{order_id}", timeout=10
            )
            assert got.status_code == 200, got.text
            assert got.json()["id"] == order_id
    finally:
        stop(proc)


def test_serve_stops_following_at_an_unknown_event_and_readiness_shows_the_lag(
    empty_url: str,
) -> None:
    import httpx

    run("db", "init", url=empty_url)
    order_id, version = demo_order(empty_url)
    topic = "serviceorders.order:OrderTeleported"
    position = insert_event(empty_url, order_id, version + 1, topic, b"{}")
    proc, base = start_serve(empty_url)
    try:
        for _ in range(300):  # the projector applies the demo's events, then stops
            lag = httpx.get(f"{base}/ready", timeout=5).json()["projections"]
            if all(p["position"] == position - 1 for p in lag.values()):
                break
            threading.Event().wait(0.1)
        assert {(p["position"], p["lag"]) for p in lag.values()} == {(position - 1, 1)}, lag
        assert proc.poll() is None  # the API still serves
    finally:
        output = stop(proc)
    line = [x for x in output.splitlines() if "projector stopped" in x]
    assert line and f"at log position {position}" in line[0] and topic in line[0], output


# ------------------------------------------------------------------ read model shapes
def test_a_read_model_whose_shape_changed_is_rebuilt_by_db_init(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("db", "init", url=empty_url)
    run("demo", url=empty_url)
    run("project", "--once", url=empty_url)
    settings = settings_for(empty_url)
    # the live table gets a row the log does not imply: a rebuild drops it
    query(empty_url, "UPDATE order_summary SET state = 'made-up'")
    monkeypatch.setattr(OrderSummary, "VERSION", 2)

    with pytest.raises(
        schema.SchemaTooOld,
        match="the read model order_summary has shape "
        "version 1, this serviceorders builds 2: run `serviceorders db init`",
    ):
        build_projector(settings)
    head = query(empty_url, f"SELECT COUNT(*) FROM {events_table(empty_url)}")[0][0]
    lines = init_database(settings)
    assert [line for line in lines if line.startswith("rebuilt")] == [
        f"rebuilt read model order_summary (shape version 1 -> 2) at position {head}"
    ]
    assert query(empty_url, "SELECT state FROM order_summary") == [("completed",)]
    db = open_read_db(settings)
    try:
        assert stored_shapes(db)["order_summary"] == 2
    finally:
        db.close()
    assert not [line for line in init_database(settings) if line.startswith("rebuilt")]
    build_projector(settings).db.close()  # current now

    # a shape newer than the code's: refused, not rebuilt backwards
    monkeypatch.setattr(OrderSummary, "VERSION", 1)
    with pytest.raises(schema.SchemaTooNew, match="upgrade serviceorders"):
        init_database(settings)


def test_projections_rebuild_records_the_shape(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("db", "init", url=empty_url)
    monkeypatch.setattr(OrderSummary, "VERSION", 3)
    from serviceorders.projections.maintenance import rebuild

    db = open_read_db(settings_for(empty_url))
    try:
        rebuild(db, event_mapper(), ["order_summary"])
        assert stored_shapes(db)["order_summary"] == 3
        assert schema.stale(db) == []
    finally:
        db.close()


# --------------------------------------------------------------- unknown event types
def insert_event(url: str, order_id: UUID, version: int, topic: str, state: bytes) -> int:
    """Store an event as a newer release would, straight into the events table; returns
    its position in the log."""
    if url.startswith("sqlite"):
        query(
            url,
            "INSERT INTO stored_events (originator_id, originator_version, topic, "
            "state) VALUES (%s, %s, %s, %s)",
            (order_id.hex, version, topic, state),
        )
        return int(query(url, "SELECT MAX(rowid) FROM stored_events")[0][0])
    query(
        url,
        "INSERT INTO serviceorders_events (originator_id, originator_version, topic, "
        "state) VALUES (%s, %s, %s, %s)",
        (order_id, version, topic, state),
    )
    return int(query(url, "SELECT MAX(notification_id) FROM serviceorders_events")[0][0])


def demo_order(url: str) -> tuple[UUID, int]:
    run("demo", url=url)
    ((order_id, version),) = query(  # the order (its completion also made services)
        url,
        f"SELECT originator_id, MAX(originator_version) FROM {events_table(url)} "
        "WHERE topic LIKE 'serviceorders.order:%%' GROUP BY originator_id",
    )
    return UUID(str(order_id)), int(version)


def test_an_event_of_an_unknown_type_stops_the_projector(empty_url: str) -> None:
    run("db", "init", url=empty_url)
    order_id, version = demo_order(empty_url)
    topic = "serviceorders.order:OrderTeleported"
    position = insert_event(empty_url, order_id, version + 1, topic, b'{"actor": {}}')
    # another order's event after it: never applied past the unknown one
    insert_event(empty_url, uuid4(), 1, topic, b"{}")

    done = run("project", url=empty_url, expect=3)  # following: stops, does not retry
    line = [x for x in done.stderr.splitlines() if "OrderTeleported" in x]
    assert line, done.stderr
    assert (
        f"stored event of order {order_id} v{version + 1} has an unknown type "
        f"'{topic}', at log position {position}"
    ) in line[0]
    assert "upgrade serviceorders" in line[0] and "Traceback" not in done.stderr
    positions = dict(query(empty_url, "SELECT name, position FROM projection_position"))
    # everything before it applied, nothing at or past it (never skipped)
    assert set(positions.values()) == {position - 1}, positions

    # in-process: follow() raises instead of handing it to on_error and retrying
    projector = build_projector(settings_for(empty_url))
    errors: list[Exception] = []
    try:
        with pytest.raises(UnknownEvent, match=f"at log position {position}"):
            projector.follow(threading.Event(), poll_seconds=0.01, on_error=errors.append)
    finally:
        projector.db.close()
    assert errors == []


def test_an_event_of_a_newer_class_version_stops_the_projector(empty_url: str) -> None:
    run("db", "init", url=empty_url)
    order_id, version = demo_order(empty_url)
    run("project", "--once", url=empty_url)
    stored = query(
        empty_url,
        f"SELECT state FROM {events_table(empty_url)} WHERE topic LIKE %s",
        ("%:NoteAdded",),
    )
    assert not stored  # the demo adds no note: make a NoteAdded of class version 99
    state = json.dumps({"class_version": 99, "note": {"text": "x"}}).encode()
    position = insert_event(
        empty_url, order_id, version + 1, "serviceorders.order:NoteAdded", state
    )
    done = run("project", "--once", url=empty_url, expect=3)
    assert "is at class version 99; this code knows up to 2" in done.stderr
    assert f"at log position {position}" in done.stderr and str(order_id) in done.stderr

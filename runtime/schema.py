"""Schema versions and upgrades (docs/architecture.md, "Schema versions and upgrades").

The engine's own tables carry a schema version: `schema_version` has one row per applied
migration (number, name, applied at). `serviceorders db init` applies the migrations the
database lacks, in order, each in one transaction, holding a lock so that two `db init`
never apply one twice (a session advisory lock on PostgreSQL; on SQLite each migration's
`BEGIN IMMEDIATE`, with the applied versions read again inside it). Every other process
checks the version at start (`check`) and refuses a database newer than the code, or older.

Read models are not migrated: each projection has a shape version (`Projection.VERSION`);
`db init` rebuilds from the log every read model whose stored shape differs from the code's.

To change the schema of the engine's own tables, append a `Migration` to `MIGRATIONS` (the
next number, a name, a step per dialect: SQL statements or a function of the `ReadDb`).
Never edit an applied migration; a step that adds what `create_tables` already creates on a
fresh database (migration 1 calls them) must tolerate finding it (`add_column`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from serviceorders.projections.base import Projection
from serviceorders.projections.maintenance import SHAPES, record_shape, stored_shapes
from serviceorders.projections.views import PROJECTIONS
from serviceorders.storage.db import ReadDb, lock_key

VERSIONS = "schema_version"
LOCK = "serviceorders.schema"
PROGRAM = "serviceorders"

Step = Callable[[ReadDb], None] | tuple[str, ...]


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    postgres: Step
    sqlite: Step

    def apply(self, db: ReadDb) -> None:
        step = self.postgres if db.dialect == "postgres" else self.sqlite
        if callable(step):
            step(db)
        else:
            for statement in step:
                db.execute(statement)


class SchemaMismatch(RuntimeError):
    """The database is not at the schema this code works with."""


class SchemaTooNew(SchemaMismatch):
    pass


class SchemaTooOld(SchemaMismatch):
    pass


# ----------------------------------------------------------------------- migrations
def _release_1(db: ReadDb) -> None:
    """The schema as the releases before schema versions made it (up to 95cc90f): every
    table their `db init` created, by the same (idempotent) functions. On a database of
    such a release it finds everything in place and changes nothing."""
    from serviceorders.audit.access_log import create_tables as access_log
    from serviceorders.audit.checkpoints import create_tables as audit
    from serviceorders.audit.pii import create_tables as pii
    from serviceorders.consumers.store import create_tables as intake
    from serviceorders.notifications.store import create_tables as hub
    from serviceorders.projections.runner import create_tables as read_models

    for create in (read_models, hub, intake, audit, access_log, pii):
        create(db)


def _seen_heads(db: ReadDb) -> None:
    """The chain heads the projector has read (`storage/seen.py`, docs/audit.md)."""
    from serviceorders.storage.seen import create_tables

    create_tables(db)


def add_column(db: ReadDb, table: str, column: str, sql_type: str) -> None:
    """ALTER TABLE … ADD COLUMN unless the column is there (a fresh database got it from
    migration 1's current table definitions)."""
    if db.dialect == "postgres":
        db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    elif column not in {r[1] for r in db.fetchall(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _drop_snapshots(db: ReadDb) -> None:
    """Order snapshots of format 1 (domain/snapshot.py) lack the state of issue 17 (who
    contributed, the waiting proposal): deleted, so that each order is replayed from its
    events and snapshotted again in format 2 at its next snapshot interval. Snapshots sit
    outside the hash chain: nothing an auditor checks is lost. Migration 7 does the same
    for format 2 (issue 19: a snapshot of format 3 holds the outcomes, milestones and the
    item states a denied cancellation restores, derived from the events before it)."""
    if db.table_exists(db.snapshots_table):
        db.execute(f"DELETE FROM {db.snapshots_table}")


def _signed_checkpoints(db: ReadDb) -> None:
    """Checkpoints of format 2 (issue 18, docs/audit.md): `format` (null: format 1, the
    rows stored before), the Ed25519 `public_key`, `endorsement` and `signature`."""
    for column, sql_type in (
        ("format", "bigint"),
        ("public_key", "text"),
        ("endorsement", "text"),
        ("signature", "text"),
    ):
        add_column(db, "audit_checkpoint", column, sql_type)


def _sealed_dead_letters(db: ReadDb) -> None:
    """`dead_letter.sealed_scope` (issue 19, docs/kafka.md "Dead letters and erasure"): the
    key that seals a dead letter's bytes; NULL on the rows written before (plain)."""
    add_column(db, "dead_letter", "sealed_scope", "text")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the schema of the releases before schema versions (95cc90f)",
        postgres=_release_1,
        sqlite=_release_1,
    ),
    Migration(
        2,
        "projection_shape: each read model's shape version",
        postgres=(
            f"CREATE TABLE IF NOT EXISTS {SHAPES} (name text PRIMARY KEY, "
            "version integer NOT NULL, updated_at timestamptz)",
        ),
        sqlite=(
            f"CREATE TABLE IF NOT EXISTS {SHAPES} (name TEXT PRIMARY KEY, "
            "version INTEGER NOT NULL, updated_at TEXT)",
        ),
    ),
    Migration(
        3,
        "console_session: the console's sessions, ended at sign-out or when idle",
        postgres=(
            "CREATE TABLE IF NOT EXISTS console_session (id text PRIMARY KEY, "
            "actor text NOT NULL, role text NOT NULL, "
            "created_at timestamptz NOT NULL, last_seen_at timestamptz NOT NULL, "
            "expires_at timestamptz NOT NULL, ended_at timestamptz)",
            "CREATE INDEX IF NOT EXISTS console_session__expires_at "
            "ON console_session (expires_at)",
        ),
        sqlite=(
            "CREATE TABLE IF NOT EXISTS console_session (id TEXT PRIMARY KEY, "
            "actor TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL, "
            "last_seen_at TEXT NOT NULL, expires_at TEXT NOT NULL, ended_at TEXT)",
            "CREATE INDEX IF NOT EXISTS console_session__expires_at "
            "ON console_session (expires_at)",
        ),
    ),
    Migration(
        4,
        "audit_seen_head: the chain heads the projector has read (audit evidence)",
        postgres=_seen_heads,
        sqlite=_seen_heads,
    ),
    Migration(
        5,
        "order snapshots of format 1 deleted (issue 17: rebuilt from the events)",
        postgres=_drop_snapshots,
        sqlite=_drop_snapshots,
    ),
    Migration(
        6,
        "audit_checkpoint: format 2 (Ed25519 public_key, endorsement, signature)",
        postgres=_signed_checkpoints,
        sqlite=_signed_checkpoints,
    ),
    Migration(
        7,
        "order snapshots of format 2 deleted (issue 19: outcomes and milestones rebuilt "
        "from the events)",
        postgres=_drop_snapshots,
        sqlite=_drop_snapshots,
    ),
    Migration(
        8,
        "dead_letter.sealed_scope: dead letters' bytes sealed (issue 19)",
        postgres=_sealed_dead_letters,
        sqlite=_sealed_dead_letters,
    ),
    Migration(
        9,
        "order snapshots of format 3 deleted (issue 20: the inventory checks rebuilt from "
        "the events)",
        postgres=_drop_snapshots,
        sqlite=_drop_snapshots,
    ),
)
CURRENT = MIGRATIONS[-1].number

_CREATE = {
    "postgres": f"CREATE TABLE IF NOT EXISTS {VERSIONS} (version integer PRIMARY KEY, "
    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    "sqlite": f"CREATE TABLE IF NOT EXISTS {VERSIONS} (version INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
}
# Tables that only a serviceorders `db init` makes: one of them without `schema_version`
# means a database of a release before schema versions.
_ENGINE_TABLES = ("projection_position", "order_summary", "intake_position", "pii_key")


def applied(db: ReadDb) -> dict[int, str]:
    """The applied migrations (number → name); empty before the first."""
    if not db.table_exists(VERSIONS):
        return {}
    return {int(n): name for n, name in db.fetchall(f"SELECT version, name FROM {VERSIONS}")}


def version(db: ReadDb) -> int:
    """The database's schema version: 0 = no engine tables; 1 for a database of a release
    before schema versions (its tables, no `schema_version`)."""
    found = applied(db)
    if found:
        return max(found)
    return 1 if any(db.table_exists(t) for t in _ENGINE_TABLES) else 0


def _too_new(found: int, known: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"the database schema is at version {found}, this {PROGRAM} knows up "
        f"to {known}: upgrade {PROGRAM}"
    )


def check(
    db: ReadDb, shapes: bool = False, projections: Sequence[Projection] = PROJECTIONS
) -> None:
    """Refuse a database whose schema (or, with `shapes`, a read model's shape) is not the
    code's: newer = upgrade serviceorders; older = run `serviceorders db init`."""
    found = version(db)
    if found > CURRENT:
        raise _too_new(found, CURRENT)
    if found == 0:
        raise SchemaTooOld(f"the database has no {PROGRAM} tables: run `{PROGRAM} db init`")
    if found < CURRENT:
        raise SchemaTooOld(
            f"the database schema is at version {found}, this {PROGRAM} is at "
            f"{CURRENT}: run `{PROGRAM} db init`"
        )
    if shapes:
        for projection, stored in stale(db, projections):
            raise _shape_error(projection, stored)


def _shape_error(projection: Projection, stored: int) -> SchemaMismatch:
    if stored > projection.VERSION:
        return SchemaTooNew(
            f"the read model {projection.name} has shape version {stored}, "
            f"this {PROGRAM} knows up to {projection.VERSION}: upgrade {PROGRAM}"
        )
    return SchemaTooOld(
        f"the read model {projection.name} has shape version {stored}, this "
        f"{PROGRAM} builds {projection.VERSION}: run `{PROGRAM} db init`"
    )


def stale(
    db: ReadDb, projections: Sequence[Projection] = PROJECTIONS
) -> list[tuple[Projection, int]]:
    """The read models whose stored shape differs from the code's, with the stored one."""
    stored = stored_shapes(db)
    return [(p, stored.get(p.name, 1)) for p in projections if stored.get(p.name, 1) != p.VERSION]


@contextmanager
def exclusive(db: ReadDb) -> Iterator[None]:
    """One `db init` at a time on PostgreSQL (a session lock across its migrations); on
    SQLite each migration's BEGIN IMMEDIATE serialises them."""
    if db.dialect != "postgres":
        yield
        return
    db.execute("SELECT pg_advisory_lock(%s)", (lock_key(LOCK),))
    try:
        yield
    finally:
        db.execute("SELECT pg_advisory_unlock(%s)", (lock_key(LOCK),))


def refuse_newer(db: ReadDb, known: int = CURRENT) -> None:
    found = version(db)
    if found > known:
        raise _too_new(found, known)


def migrate(db: ReadDb, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the migrations the database lacks, each in its own transaction; returns what
    was done (nothing when the database is current)."""
    done: list[str] = []
    known = migrations[-1].number
    with exclusive(db):
        refuse_newer(db, known)
        previous = not applied(db) and version(db) == 1
        fresh = version(db) == 0
        for migration in migrations:
            with db.transaction(lock=LOCK):
                db.execute(_CREATE[db.dialect])
                if migration.number in applied(db):  # read again under the lock
                    continue
                migration.apply(db)
                db.execute(
                    f"INSERT INTO {VERSIONS} (version, name) VALUES (%s, %s)",
                    (migration.number, migration.name),
                )
            if migration.number == 1 and previous:
                done.append(
                    "found the tables of a release before schema versions: "
                    "recorded as schema version 1"
                )
            else:
                done.append(f"applied migration {migration.number}: {migration.name}")
        if fresh:
            # Migration 1 made every read model's table as this code defines it: their
            # shapes are this code's (else a shape above 1 would be rebuilt at once).
            with db.transaction(lock=LOCK):
                for projection in PROJECTIONS:
                    record_shape(db, projection)
    return done


def upgrade(db: ReadDb, mapper: Any, projections: Sequence[Projection] = PROJECTIONS) -> list[str]:
    """`db init`'s work: the migrations, then a rebuild of every read model whose shape
    changed. Returns one line per thing done."""
    from serviceorders.projections.maintenance import create_new, rebuild

    lines = migrate(db)
    lines.append(
        f"schema version {version(db)}" + ("" if lines else " (up to date, nothing applied)")
    )
    with exclusive(db):
        # Read models new in this release (no table yet, as on a database migrated before
        # they existed): created empty, then built from the log like a changed one.
        added = create_new(db, projections)
        changed = stale(db, projections)
        for projection, stored in changed:
            if stored > projection.VERSION:
                raise _shape_error(projection, stored)
        if changed or added:
            positions = rebuild(db, mapper, [p.name for p, _ in changed] + added)
            lines += [
                f"rebuilt read model {p.name} (shape version {stored} -> {p.VERSION}) "
                f"at position {positions[p.name]}"
                for p, stored in changed
            ]
            lines += [
                f"built read model {name} (new in this release) at position {positions[name]}"
                for name in added
            ]
    return lines

"""Rebuild and verify: a projection rebuilt from the first event into fresh tables, then
swapped in (with its position) in one short transaction; or compared with the live tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper
from serviceorders.projections import parallel
from serviceorders.projections.log import log_head
from serviceorders.projections.runner import LOCK, POSITIONS, Projector
from serviceorders.projections.views import PROJECTIONS, Projection
from serviceorders.storage.db import Busy, ReadDb

Progress = Callable[[int], None]
# Each read model's shape version (Projection.VERSION) as its table was built; created by
# schema migration 2 (serviceorders.schema). No row: a table built before shapes existed (1).
SHAPES = "projection_shape"


def stored_shapes(db: ReadDb) -> dict[str, int]:
    if not db.table_exists(SHAPES):
        return {}
    return {
        name: int(version) for name, version in db.fetchall(f"SELECT name, version FROM {SHAPES}")
    }


def record_shape(db: ReadDb, projection: Projection) -> None:
    """Note that `projection`'s table now has the code's shape (inside the swap)."""
    if db.table_exists(SHAPES):
        db.execute(
            f"INSERT INTO {SHAPES} (name, version, updated_at) VALUES "
            f"(%s, %s, CURRENT_TIMESTAMP) ON CONFLICT (name) DO UPDATE SET "
            f"version = excluded.version, updated_at = excluded.updated_at",
            (projection.name, projection.VERSION),
        )


def create_new(db: ReadDb, projections: Sequence[Projection] = PROJECTIONS) -> list[str]:
    """The read models without a table (new in this release, on a database set up before
    them): created empty at position 0 with the code's shape; returns their names. The
    caller builds them (`rebuild`); a projector would also catch them up from the start."""
    new = [p for p in projections if not db.table_exists(p.name)]
    if new:
        with db.transaction():
            for p in new:
                db.create_table(p.table)
                db.execute(
                    f"INSERT INTO {POSITIONS.name} (name, position) VALUES (%s, 0) "
                    f"ON CONFLICT (name) DO UPDATE SET position = 0, updated_at = NULL",
                    (p.name,),
                )
                record_shape(db, p)
    return [p.name for p in new]


def select(names: Sequence[str] | None) -> list[Projection]:
    if not names:
        return list(PROJECTIONS)
    known = {p.name: p for p in PROJECTIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown projection(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


# Events per page when building tables from the first event: larger pages than the live
# projector's, as nobody waits for them (a page of 2,000 orders holds about 60 MB).
BUILD_BATCH = 4000


def _fresh(
    db: ReadDb, projections: Sequence[Projection], suffix: str, indexes: bool = True
) -> dict[str, str]:
    tables = {p.name: f"{p.name}__{suffix}" for p in projections}
    with db.transaction():
        for p in projections:
            db.drop_table(tables[p.name])
            db.create_table(p.table, tables[p.name], indexes=indexes)
            db.execute(
                f"INSERT INTO {POSITIONS.name} (name, position) VALUES (%s, 0) "
                f"ON CONFLICT (name) DO UPDATE SET position = 0",
                (tables[p.name],),
            )
    return tables


def _discard(db: ReadDb, tables: dict[str, str], attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            with db.transaction():
                for table in tables.values():
                    db.drop_table(table)
                    db.execute(f"DELETE FROM {POSITIONS.name} WHERE name = %s", (table,))
            return
        except psycopg.errors.LockNotAvailable:
            # (a worker's connection that went with its process, not yet rolled back)
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def workers(db: ReadDb, count: int | None = None) -> int:
    """The processes a rebuild or verify of `db` splits the log over, this one included
    (0: the single-process rebuild): `count`, or by default one per core (os.cpu_count())
    on PostgreSQL when the log holds at least parallel.PARALLEL_ABOVE events; always 0 on
    SQLite."""
    return parallel.workers_for(db, count)


def _retrying(db: ReadDb, work: Callable[[], Any], attempts: int = 50) -> Any:
    """Run `work` in a transaction holding the projector lock, retrying while another
    projector holds it or a report holds the tables (lock timeout)."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            with db.transaction(lock=LOCK):
                return work()
        except (Busy, psycopg.errors.LockNotAvailable):
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    return None  # pragma: no cover


def rebuild(
    db: ReadDb,
    mapper: Mapper[Any],
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict[str, int]:
    """Rebuild projections from the first event and swap them in; returns positions.
    With `workers` processes (see `workers()` for the default), the log up to its head at
    the start is split by aggregate over them (projections/parallel.py); the rest is caught
    up here."""
    projections = select(names)
    k = parallel.workers_for(db, workers)
    # Secondary indexes are built once at the end (a sort), not row by row.
    tables = _fresh(db, projections, "rebuild", indexes=False)
    builder = Projector(
        db, mapper, projections, tables=tables, lock=None, batch_size=BUILD_BATCH, fresh=True
    )
    try:
        if k:
            parallel.build(db, mapper, projections, tables, log_head(db), k, BUILD_BATCH, progress)
        builder.catch_up(progress=progress)
        with db.transaction():
            for p in projections:
                db.create_indexes(p.table, tables[p.name])
    except BaseException:
        _discard(db, tables)
        raise

    def swap() -> dict[str, int]:
        live = Projector(db, mapper, projections).positions()
        target = max(live.values())
        while builder.step(stop=target):  # the few events the live tables got meanwhile
            pass
        built = builder.positions()
        for p in projections:
            old = f"{p.name}__old"
            db.drop_table(old)
            if db.table_exists(p.name):
                db.rename_table(p.name, old)
                db.drop_table(old)
            db.rename_table(tables[p.name], p.name)
            if db.dialect == "postgres":  # constraint index names are schema-wide
                db.execute(f"ALTER INDEX IF EXISTS {tables[p.name]}_pkey RENAME TO {p.name}_pkey")
            for suffix in p.table.indexes:
                db.rename_index(p.table, f"{tables[p.name]}__{suffix}", f"{p.name}__{suffix}")
            db.execute(
                f"UPDATE {POSITIONS.name} SET position = %s, updated_at = "
                f"CURRENT_TIMESTAMP WHERE name = %s",
                (built[tables[p.name]], p.name),
            )
            db.execute(f"DELETE FROM {POSITIONS.name} WHERE name = %s", (tables[p.name],))
            record_shape(db, p)
        return {p.name: built[tables[p.name]] for p in projections}

    try:
        return _retrying(db, swap)
    except BaseException:
        _discard(db, tables)
        raise


@dataclass(frozen=True)
class Difference:
    projection: str
    key: tuple[Any, ...]
    live: tuple[Any, ...] | None
    rebuilt: tuple[Any, ...] | None


def verify(
    db: ReadDb,
    mapper: Mapper[Any],
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> list[Difference]:
    """Compare live tables with a rebuild at the same log position, row by row. With
    `workers` processes (as `rebuild`), every chosen projection is first built by them up
    to the lowest live position, then each is caught up to its own and compared."""
    differences: list[Difference] = []
    chosen = select(names)
    prebuilt: dict[str, str] = {}
    k = parallel.workers_for(db, workers)
    if k:
        stop = min(Projector(db, mapper, chosen).positions().values())
        prebuilt = _fresh(db, chosen, "verify", indexes=False)
        try:
            parallel.build(db, mapper, chosen, prebuilt, stop, k, BUILD_BATCH, progress)
        except BaseException:
            _discard(db, prebuilt)
            raise
    try:
        for projection in chosen:
            differences += _verify_one(db, mapper, projection, prebuilt, progress)
    finally:
        if prebuilt:
            _discard(db, prebuilt)
    return differences


def _verify_one(
    db: ReadDb,
    mapper: Mapper[Any],
    projection: Projection,
    prebuilt: dict[str, str],
    progress: Progress | None,
) -> list[Difference]:
    # Compared in primary-key order: no secondary index needed.
    if projection.name in prebuilt:
        tables = {projection.name: prebuilt[projection.name]}
    else:
        tables = _fresh(db, [projection], "verify", indexes=False)
    try:
        builder = Projector(
            db,
            mapper,
            [projection],
            tables=tables,
            lock=None,
            batch_size=BUILD_BATCH,
            fresh=True,
        )
        live = Projector(db, mapper, [projection])
        builder.catch_up(stop=live.positions()[projection.name], progress=progress)

        def compare() -> list[Difference]:
            position = live.positions()[projection.name]
            while builder.step(stop=position):
                pass
            return _diff(
                projection,
                db.rows(projection.table, projection.name),
                db.rows(projection.table, tables[projection.name]),
            )

        found: list[Difference] = _retrying(db, compare)
        return found
    finally:
        _discard(db, tables)


def _diff(
    projection: Projection, live: list[tuple[Any, ...]], rebuilt: list[tuple[Any, ...]]
) -> list[Difference]:
    cols = projection.table.column_names
    key_at = [cols.index(k) for k in projection.table.primary_key]

    def keyed(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        return {tuple(r[i] for i in key_at): r for r in rows}

    a, b = keyed(live), keyed(rebuilt)
    return [
        Difference(projection.name, key, a.get(key), b.get(key))
        for key in sorted(a.keys() | b.keys(), key=repr)
        if a.get(key) != b.get(key)
    ]

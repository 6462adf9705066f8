"""One small interface over the two read-model databases: PostgreSQL (psycopg) and the
embedded SQLite file. Projections write portable SQL with `%s` placeholders and declare
their tables with portable column types; the two dialects differ only here.
"""

from __future__ import annotations

import json
import logging
import select
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal, Protocol
from uuid import UUID

import orjson
import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

log = logging.getLogger(__name__)


class ConnectionConfig(Protocol):
    """Where the database is: what `ReadDb.connect` reads. The runtime's settings
    (`serviceorders.settings.DatabaseConfig`) is one; storage takes the values and does
    not import the runtime."""

    @property
    def kind(self) -> Literal["postgres", "sqlite"]: ...
    @property
    def dbname(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def options(self) -> dict[str, str]: ...


PING_AFTER_IDLE_SECONDS = 10.0  # PostgresDb.alive
# Work that needs the database while it restarts (reconnect_attempts): the first try, then
# once more at once, then every 0.2 s: about 5 s in all.
RECONNECT_ATTEMPTS = 26
RECONNECT_PAUSE = 0.2


def reconnect_attempts() -> Iterator[int]:
    """Attempt numbers 1..RECONNECT_ATTEMPTS for work to try again on fresh connections;
    from the third on, each after a pause (the server may be restarting). The caller
    decides which failures deserve another attempt (see `unreachable`)."""
    for attempt in range(1, RECONNECT_ATTEMPTS + 1):
        if attempt > 2:
            time.sleep(RECONNECT_PAUSE)
        yield attempt


def unreachable(error: BaseException) -> bool:
    """The PostgreSQL server refused or dropped the connection (a restart, say)."""
    return isinstance(error, psycopg.OperationalError)


# Portable column types -> (PostgreSQL, SQLite).
TYPES = {
    "uuid": ("uuid", "TEXT"),
    "text": ("text", "TEXT"),
    "int": ("integer", "INTEGER"),
    "bigint": ("bigint", "INTEGER"),
    "bool": ("boolean", "INTEGER"),
    "timestamptz": ("timestamptz", "TEXT"),
    "date": ("date", "TEXT"),
    "numeric": ("double precision", "REAL"),
    "json": ("jsonb", "TEXT"),
}


@dataclass(frozen=True)
class Table:
    """A read-model table: columns with portable types, a primary key and indexes."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def types(self) -> dict[str, str]:
        return dict(self.columns)


class Busy(Exception):
    """Another projector holds the lock; try again shortly."""


class ReadDb:
    """A connection to the read-model database, with explicit transactions."""

    dialect: str
    # The server compresses this session's large values with lz4 (PostgresDb: use_lz4).
    toast_lz4: bool = False
    # The event store's tables in the same database (named by the eventsourcing library),
    # and the column that orders the log.
    events_table: str
    snapshots_table: str
    log_position: str

    @staticmethod
    def connect(config: ConnectionConfig, lock_timeout_seconds: int = 5) -> ReadDb:
        if config.kind == "postgres":
            return PostgresDb(config, lock_timeout_seconds)
        return SqliteDb(config, lock_timeout_seconds)

    # -- to implement
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def transaction(self, lock: str | None = None) -> Any: ...
    def close(self) -> None: ...
    def table_exists(self, name: str) -> bool:
        raise NotImplementedError

    def rename_table(self, old: str, new: str) -> None: ...
    def rename_index(self, table: Table, old: str, new: str) -> None: ...
    def adapt(self, value: Any, kind: str) -> Any: ...
    def normalise(self, value: Any, kind: str) -> Any: ...
    def decode(self, value: Any, kind: str) -> Any: ...

    def alive(self) -> bool:
        """Whether the connection still works (a cheap round trip where there is one)."""
        return True

    def wait_for_lock(self, lock: str, timeout: float) -> None:
        """Return when whoever holds the advisory `lock` lets go of it (or after `timeout`
        seconds), without keeping it."""
        time.sleep(min(timeout, 0.01))

    def is_disconnect(self, error: BaseException) -> bool:
        """Whether `error` means the server dropped the connection (safe to retry afresh)."""
        return False

    # -- shared
    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def create_table(self, table: Table, name: str | None = None, indexes: bool = True) -> None:
        """The table (and, unless `indexes` is false, its secondary indexes)."""
        name = name or table.name
        kind = 0 if self.dialect == "postgres" else 1
        cols = ", ".join(f"{col} {TYPES[typ][kind]}" for col, typ in table.columns)
        pk = ", ".join(table.primary_key)
        self.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols}, PRIMARY KEY ({pk}))")
        if indexes:
            self.create_indexes(table, name)

    def create_indexes(self, table: Table, name: str | None = None) -> None:
        name = name or table.name
        for suffix, columns in table.indexes.items():
            self.execute(
                f"CREATE INDEX IF NOT EXISTS {name}__{suffix} ON {name} ({', '.join(columns)})"
            )

    def drop_table(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {name}")

    def upsert(
        self,
        table: Table,
        name: str,
        rows: Sequence[dict[str, Any]],
        guard: str | None = "version",
        add: Sequence[str] = (),
    ) -> None:
        """Insert rows or update existing ones; with `guard`, never move a row backwards.
        Columns in `add` are added to the stored value instead of replacing it (counters).
        """
        if not rows:
            return
        cols = table.column_names
        types = table.types()
        sql = (
            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
            + _on_conflict(table, name, guard, add)
        )
        self.executemany(sql, [[self.adapt(row[c], types[c]) for c in cols] for row in rows])

    def insert(self, table: Table, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows whose keys cannot be in the table yet (a table being built from
        the first event: rows of orders created in this page, rows keyed by log position)."""
        if not rows:
            return
        cols = table.column_names
        types = table.types()
        self.executemany(
            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
            [[self.adapt(row[c], types[c]) for c in cols] for row in rows],
        )

    def insert_new(
        self,
        table: Table,
        name: str,
        rows: Sequence[dict[str, Any]],
        guard: str | None = "version",
    ) -> None:
        """Rows whose keys should not be in the table yet (a live page's rows of the orders
        it creates, its notifications keyed by log position), written as `upsert` would
        leave them whatever the table holds. Here: `upsert`."""
        self.upsert(table, name, rows, guard)

    def delete_older(
        self, name: str, key: str, kind: str, versions: Sequence[tuple[Any, int]]
    ) -> None:
        """Delete the rows of each (key, version) pair whose `version` is lower."""
        if versions:
            self.executemany(
                f"DELETE FROM {name} WHERE {key} = %s AND version < %s",
                [(self.adapt(k, kind), v) for k, v in versions],
            )

    def rows(self, table: Table, name: str) -> list[tuple[Any, ...]]:
        """Every row, normalised to comparable plain values, in primary-key order."""
        cols = table.column_names
        types = table.types()
        found = self.fetchall(
            f"SELECT {', '.join(cols)} FROM {name} ORDER BY {', '.join(table.primary_key)}"
        )
        return [
            tuple(self.normalise(v, types[c]) for c, v in zip(cols, row, strict=True))
            for row in found
        ]


def _on_conflict(table: Table, name: str, guard: str | None, add: Sequence[str] = ()) -> str:
    updates = [c for c in table.column_names if c not in table.primary_key]
    sql = f" ON CONFLICT ({', '.join(table.primary_key)}) DO "
    if not updates:
        return sql + "NOTHING"
    sql += "UPDATE SET " + ", ".join(
        f"{c} = {name}.{c} + excluded.{c}" if c in add else f"{c} = excluded.{c}" for c in updates
    )
    if guard:
        sql += f" WHERE {name}.{guard} < excluded.{guard}"
    return sql


def _orjson_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _dedupe(
    table: Table, rows: Sequence[dict[str, Any]], guard: str | None, add: Sequence[str]
) -> Sequence[dict[str, Any]]:
    """Rows with one key each, as applying them one by one would leave the table (one
    INSERT ... ON CONFLICT statement cannot touch a row twice)."""
    key = itemgetter(*table.primary_key)
    keys = [key(row) for row in rows]
    if len(set(keys)) == len(keys):
        return rows
    updates = [c for c in table.column_names if c not in table.primary_key]
    found: dict[Any, dict[str, Any]] = {}
    for k, row in zip(keys, rows, strict=True):
        old = found.get(k)
        if old is None:
            found[k] = row
        elif not updates:
            continue
        elif add:
            found[k] = {**row, **{c: old[c] + row[c] for c in add}}
        elif guard is None or old[guard] < row[guard]:
            found[k] = row
    return list(found.values())


# Portable column types -> PostgreSQL binary COPY types.
COPY_TYPES = {
    "uuid": "uuid",
    "text": "text",
    "int": "int4",
    "bigint": "int8",
    "bool": "bool",
    "timestamptz": "timestamptz",
    "date": "date",
    "numeric": "float8",
    "json": "bytea",
}


def _as_uuid(value: Any) -> Any:
    return value if value is None or type(value) is UUID else UUID(str(value))


def _as_utc(value: Any) -> Any:
    if value is None or (type(value) is datetime and value.tzinfo is not None):
        return value
    return _utc(value)


def _as_float(value: Any) -> Any:
    return value if value is None or type(value) is float else float(value)


def _as_bool(value: Any) -> Any:
    return value if value is None or type(value) is bool else bool(value)


def _as_jsonb(value: Any) -> Any:
    # jsonb's binary form is a version byte and the JSON text: written as raw bytes
    # (the column is declared bytea to the COPY, whose fields are untyped on the wire).
    return None if value is None else b"\x01" + _orjson_bytes(value)


# What each portable type needs before binary COPY (others go to psycopg's dumpers as
# they are).
_COPY_CONVERT = {
    "uuid": _as_uuid,
    "timestamptz": _as_utc,
    "numeric": _as_float,
    "bool": _as_bool,
    "json": _as_jsonb,
}


def _as_json_param(value: Any) -> Any:
    return None if value is None else Jsonb(value)


# The same for query parameters (text format, typed by psycopg).
_PARAM_CONVERT = {**_COPY_CONVERT, "json": _as_json_param}


@dataclass(frozen=True)
class _CopyPlan:
    columns: str
    types: list[str]
    get: Any  # row dict -> tuple in column order
    convert: list[tuple[int, Any]]  # (column index, converter) for COPY
    convert_params: list[tuple[int, Any]]  # the same for query parameters

    def tuples(
        self, rows: Sequence[dict[str, Any]], params: bool = False
    ) -> Iterator[Sequence[Any]]:
        get = self.get
        convert = self.convert_params if params else self.convert
        if not convert:
            for row in rows:
                yield get(row)
            return
        for row in rows:
            values = list(get(row))
            for i, fn in convert:
                values[i] = fn(values[i])
            yield values


@lru_cache(maxsize=512)
def _placeholders(rows: int, width: int) -> str:
    return ", ".join(
        "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(rows)
    )


_PLANS: dict[tuple[str, tuple[tuple[str, str], ...]], _CopyPlan] = {}


def _plan(table: Table) -> _CopyPlan:
    found = _PLANS.get((table.name, table.columns))
    if found is None:
        cols = table.column_names
        kinds = [kind for _, kind in table.columns]
        get = itemgetter(*cols) if len(cols) > 1 else (lambda row, c=cols[0]: (row[c],))
        found = _PLANS[(table.name, table.columns)] = _CopyPlan(
            ", ".join(cols),
            [COPY_TYPES[k] for k in kinds],
            get,
            [(i, _COPY_CONVERT[k]) for i, k in enumerate(kinds) if k in _COPY_CONVERT],
            [(i, _PARAM_CONVERT[k]) for i, k in enumerate(kinds) if k in _PARAM_CONVERT],
        )
    return found


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode())


def use_lz4(conn: psycopg.Connection[Any]) -> bool:
    """Compress the values this session stores above about 2 KB (a TMF641 document, a
    notification, an order's first event) with lz4 rather than pglz, when the server has
    it (PostgreSQL 14 or later, built with lz4; reading either needs nothing): about 40 %
    less of the server's CPU per document (docs/performance.md, "Issue 21, continued",
    item 2). One statement, which sets nothing on a server without lz4."""
    row = conn.execute(
        "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings "
        "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    ).fetchone()
    return row is not None


class PostgresDb(ReadDb):
    dialect = "postgres"
    events_table, snapshots_table = "serviceorders_events", "serviceorders_snapshots"
    log_position = "notification_id"
    # Bulk writes of more rows than this go through binary COPY; fewer, one statement.
    copy_above = 40

    def __init__(self, config: ConnectionConfig, lock_timeout_seconds: int) -> None:
        options: dict[str, Any] = dict(config.options)  # libpq keywords (sslmode, ...)
        self.conn = psycopg.connect(
            host=config.host,
            port=config.port,
            dbname=config.dbname,
            user=config.user,
            password=config.password or None,
            autocommit=True,
            connect_timeout=10,
            **options,
        )
        self.lock_timeout = lock_timeout_seconds
        # orjson for json / jsonb on this connection (parameters, COPY and results):
        # several times faster than the stdlib.
        set_json_dumps(_orjson_bytes, context=self.conn)
        set_json_loads(orjson.loads, context=self.conn)
        # Staging tables of this session (temporary, emptied at each commit), by table.
        self._staging: set[str] = set()
        self._last_checked = time.monotonic()
        self.toast_lz4 = use_lz4(self.conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params or None).fetchall()

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        try:
            with self.conn.transaction():
                timeout = f"{self.lock_timeout}s"
                if lock is None:
                    self.conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                else:  # one round trip for both
                    got = self.conn.execute(
                        "SELECT set_config('lock_timeout', %s, true), "
                        "pg_try_advisory_xact_lock(%s)",
                        (timeout, lock_key(lock)),
                    ).fetchone()
                    if not got or not got[1]:
                        raise Busy(lock)
                yield
        except BaseException:
            # A staging table created in the transaction went with it.
            self._staging.clear()
            raise

    def wait_for_lock(self, lock: str, timeout: float) -> None:
        try:
            with self.conn.transaction():
                self.conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(timeout * 1000))}ms'")
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(lock),))
        except psycopg.errors.LockNotAvailable:
            pass  # still held: the caller looks again

    # -- bulk writes: binary COPY
    def _in_transaction(self) -> bool:
        return self.conn.info.transaction_status != pq.TransactionStatus.IDLE

    def _copy(self, table: Table, target: str, rows: Sequence[dict[str, Any]]) -> None:
        plan = _plan(table)
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY {target} ({plan.columns}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(plan.types)
            write = copy.write_row
            for values in plan.tuples(rows):
                write(values)

    def _stage(self, table: Table) -> str:
        """This session's staging table for `table` (same columns, no keys)."""
        name = f"stage__{table.name}"
        if name not in self._staging:
            cols = ", ".join(f"{col} {TYPES[typ][0]}" for col, typ in table.columns)
            self.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({cols}) ON COMMIT DELETE ROWS"
            )
            self._staging.add(name)
        return name

    def _values(
        self, table: Table, name: str, rows: Sequence[dict[str, Any]], conflict: str = ""
    ) -> None:
        """One multi-row INSERT ... VALUES statement (one round trip)."""
        plan = _plan(table)
        params = [v for values in plan.tuples(rows, params=True) for v in values]
        # Server-side $n placeholders (a raw cursor): psycopg does not parse the query,
        # which for a long %s query costs more than the rows themselves.
        with psycopg.RawCursor(self.conn) as cur:
            cur.execute(
                f"INSERT INTO {name} ({plan.columns}) VALUES "
                + _placeholders(len(rows), len(table.columns))
                + conflict,
                params,
            )

    def upsert(
        self,
        table: Table,
        name: str,
        rows: Sequence[dict[str, Any]],
        guard: str | None = "version",
        add: Sequence[str] = (),
    ) -> None:
        """A few rows: one multi-row INSERT ... ON CONFLICT. More: one binary COPY of the
        rows into a staging table, then one INSERT ... SELECT ... ON CONFLICT for them all
        (three round trips, but about a fifth of the client's CPU per row)."""
        if not rows:
            return
        rows = _dedupe(table, rows, guard, add)
        if len(rows) <= self.copy_above:
            self._values(table, name, rows, _on_conflict(table, name, guard, add))
            return
        if not self._in_transaction():
            with self.transaction():
                self.upsert(table, name, rows, guard, add)
            return
        stage = self._stage(table)
        self._copy(table, stage, rows)
        cols = ", ".join(table.column_names)
        # The staging table is emptied by the same statement: it may serve again before
        # the commit (which empties it anyway).
        self.execute(
            f"WITH staged AS (DELETE FROM {stage} RETURNING {cols}) "
            f"INSERT INTO {name} ({cols}) SELECT {cols} FROM staged"
            + _on_conflict(table, name, guard, add)
        )

    def insert(self, table: Table, name: str, rows: Sequence[dict[str, Any]]) -> None:
        if len(rows) > self.copy_above:
            self._copy(table, name, rows)
        elif rows:
            self._values(table, name, rows)

    def insert_new(
        self,
        table: Table,
        name: str,
        rows: Sequence[dict[str, Any]],
        guard: str | None = "version",
    ) -> None:
        """A binary COPY straight into the table, in a savepoint: about 15 % less of the
        server's CPU than the staging table and its INSERT ... ON CONFLICT. A row already
        there (the log and the positions disagree: a table restored by hand...) fails the
        COPY on its key; the savepoint is rolled back and the rows go the `upsert` way."""
        if len(rows) <= self.copy_above or not self._in_transaction():
            self.upsert(table, name, rows, guard)
            return
        try:
            with self.conn.transaction():  # a savepoint
                self._copy(table, name, rows)
        except psycopg.errors.UniqueViolation:
            log.warning(
                "%s: rows of a page's new orders were already there; written over",
                name,
                extra={"table": name, "rows": len(rows)},
            )
            self.upsert(table, name, rows, guard)

    def delete_older(
        self, name: str, key: str, kind: str, versions: Sequence[tuple[Any, int]]
    ) -> None:
        if versions:
            keys, numbers = zip(*versions, strict=True)
            self.execute(
                f"DELETE FROM {name} AS t USING unnest(%s::{TYPES[kind][0]}[], %s::int[]) "
                f"AS d(k, v) WHERE t.{key} = d.k AND t.version < d.v",
                (list(keys), list(numbers)),
            )

    def close(self) -> None:
        self.conn.close()

    def alive(self) -> bool:
        """Without a round trip: an idle connection has nothing to read, unless the server
        closed it (a restart sends a FATAL message, then EOF). A connection idle for a
        while is also pinged, for what a closed socket would not show (a vanished host)."""
        if self.conn.closed or self.conn.broken:
            return False
        try:
            readable, _, _ = select.select([self.conn.fileno()], [], [], 0)
            if readable:
                return False
            if time.monotonic() - self._last_checked > PING_AFTER_IDLE_SECONDS:
                self.conn.execute("SELECT 1")
        except (psycopg.Error, OSError, ValueError):
            return False
        self._last_checked = time.monotonic()
        return True

    def is_disconnect(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.OperationalError) or bool(
            self.conn.closed or self.conn.broken
        )

    def table_exists(self, name: str) -> bool:
        row = self.fetchone("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(row and row[0])

    def rename_table(self, old: str, new: str) -> None:
        self.execute(f"ALTER TABLE {old} RENAME TO {new}")

    def rename_index(self, table: Table, old: str, new: str) -> None:
        self.execute(f"ALTER INDEX IF EXISTS {old} RENAME TO {new}")

    def adapt(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "json":
            return Jsonb(value)
        if kind == "timestamptz":  # a date means midnight UTC, whatever the session zone
            return _utc(value)
        return value

    def normalise(self, value: Any, kind: str) -> Any:
        return _normalise(value, kind)

    def decode(self, value: Any, kind: str) -> Any:
        return value


class SqliteDb(ReadDb):
    dialect = "sqlite"
    events_table, snapshots_table = "stored_events", "stored_snapshots"
    log_position = "rowid"

    def __init__(self, config: ConnectionConfig, lock_timeout_seconds: int) -> None:
        self.conn = sqlite3.connect(
            config.dbname,
            timeout=lock_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.lock_timeout = lock_timeout_seconds

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%s", "?")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(self._sql(sql), rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(self._sql(sql), params).fetchall()

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        # BEGIN IMMEDIATE takes SQLite's single write lock up front: a second projector
        # waits (up to the lock timeout) instead of failing half-way with SQLITE_BUSY.
        if self.conn.in_transaction:  # nested (a migration's steps): a savepoint, as psycopg
            self.conn.execute("SAVEPOINT nested")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK TO nested")
                self.conn.execute("RELEASE nested")
                raise
            self.conn.execute("RELEASE nested")
            return
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise Busy(lock or "sqlite") from e
                time.sleep(0.05)
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def table_exists(self, name: str) -> bool:
        return (
            self.fetchone("SELECT 1 FROM sqlite_master WHERE type='table' AND name=%s", (name,))
            is not None
        )

    def rename_table(self, old: str, new: str) -> None:
        self.execute(f"ALTER TABLE {old} RENAME TO {new}")

    def rename_index(self, table: Table, old: str, new: str) -> None:
        # SQLite cannot rename an index: recreate it under the new name.
        suffix = new.rsplit("__", 1)[1]
        self.execute(f"DROP INDEX IF EXISTS {old}")
        self.execute(
            f"CREATE INDEX IF NOT EXISTS {new} ON {table.name} ({', '.join(table.indexes[suffix])})"
        )

    def adapt(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "uuid":
            return str(value)
        if kind == "json":
            return json.dumps(value, sort_keys=True, separators=(",", ":"))
        if kind == "bool":
            return int(bool(value))
        if kind == "timestamptz":
            return _utc(value).isoformat(timespec="microseconds")
        if kind == "date":
            return value.isoformat()
        return value

    def decode(self, value: Any, kind: str) -> Any:
        """A stored value as the native Python value PostgreSQL would have returned."""
        if value is None:
            return None
        if kind == "uuid":
            return UUID(value)
        if kind == "json":
            return json.loads(value)
        if kind == "timestamptz":
            return datetime.fromisoformat(value)
        if kind == "date":
            return date.fromisoformat(value)
        if kind == "bool":
            return bool(value)
        return value

    def normalise(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "json":
            value = json.loads(value)
        elif kind == "timestamptz":
            value = datetime.fromisoformat(value)
        elif kind == "date":
            value = date.fromisoformat(value)
        elif kind == "bool":
            value = bool(value)
        return _normalise(value, kind)


def _utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _normalise(value: Any, kind: str) -> Any:
    """One comparable form per type, whatever the dialect returned."""
    if value is None:
        return None
    if kind == "uuid":
        return str(UUID(str(value)))
    if kind == "timestamptz":
        return _utc(value).isoformat(timespec="microseconds")
    if kind == "date":
        return value.isoformat()
    if kind == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if kind == "numeric":
        return round(float(value), 6)
    return value

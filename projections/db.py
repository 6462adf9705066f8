"""One small interface over the two read-model databases: PostgreSQL (psycopg) and the
embedded SQLite file. Projections write portable SQL with `%s` placeholders and declare
their tables with portable column types; the two dialects differ only here.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from ..settings import DatabaseConfig

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
    # The event store's tables in the same database (named by the eventsourcing library),
    # and the column that orders the log.
    events_table: str
    snapshots_table: str
    log_position: str

    @staticmethod
    def connect(config: DatabaseConfig, lock_timeout_seconds: int = 5) -> ReadDb:
        if config.kind == "postgres":
            return PostgresDb(config, lock_timeout_seconds)
        return SqliteDb(config, lock_timeout_seconds)

    # -- to implement
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def transaction(self, lock: str | None = None) -> Any: ...
    def close(self) -> None: ...
    def table_exists(self, name: str) -> bool: ...
    def rename_table(self, old: str, new: str) -> None: ...
    def rename_index(self, table: Table, old: str, new: str) -> None: ...
    def adapt(self, value: Any, kind: str) -> Any: ...
    def normalise(self, value: Any, kind: str) -> Any: ...
    def decode(self, value: Any, kind: str) -> Any: ...

    def alive(self) -> bool:
        """Whether the connection still works (a cheap round trip where there is one)."""
        return True

    def is_disconnect(self, error: BaseException) -> bool:
        """Whether `error` means the server dropped the connection (safe to retry afresh)."""
        return False

    # -- shared
    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def create_table(self, table: Table, name: str | None = None) -> None:
        name = name or table.name
        kind = 0 if self.dialect == "postgres" else 1
        cols = ", ".join(f"{col} {TYPES[typ][kind]}" for col, typ in table.columns)
        pk = ", ".join(table.primary_key)
        self.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols}, PRIMARY KEY ({pk}))")
        for suffix, columns in table.indexes.items():
            self.execute(f"CREATE INDEX IF NOT EXISTS {name}__{suffix} ON {name} "
                         f"({', '.join(columns)})")

    def drop_table(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {name}")

    def upsert(self, table: Table, name: str, rows: Sequence[dict[str, Any]],
               guard: str | None = "version") -> None:
        """Insert rows or update existing ones; with `guard`, never move a row backwards."""
        if not rows:
            return
        cols = table.column_names
        types = table.types()
        updates = [c for c in cols if c not in table.primary_key]
        sql = (f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
               f" ON CONFLICT ({', '.join(table.primary_key)}) DO ")
        if updates:
            sql += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates)
            if guard:
                sql += f" WHERE {name}.{guard} < excluded.{guard}"
        else:
            sql += "NOTHING"
        self.executemany(sql, [[self.adapt(row[c], types[c]) for c in cols] for row in rows])

    def rows(self, table: Table, name: str) -> list[tuple[Any, ...]]:
        """Every row, normalised to comparable plain values, in primary-key order."""
        cols = table.column_names
        types = table.types()
        found = self.fetchall(f"SELECT {', '.join(cols)} FROM {name} "
                              f"ORDER BY {', '.join(table.primary_key)}")
        return [tuple(self.normalise(v, types[c]) for c, v in zip(cols, row, strict=True))
                for row in found]


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode())


class PostgresDb(ReadDb):
    dialect = "postgres"
    events_table, snapshots_table = "serviceorders_events", "serviceorders_snapshots"
    log_position = "notification_id"

    def __init__(self, config: DatabaseConfig, lock_timeout_seconds: int) -> None:
        self.conn = psycopg.connect(
            host=config.host, port=config.port, dbname=config.dbname, user=config.user,
            password=config.password or None, autocommit=True, connect_timeout=10,
            **config.options)
        self.lock_timeout = lock_timeout_seconds
        # orjson for json / jsonb on this connection: several times faster than the stdlib.
        set_json_dumps(_orjson_text, context=self.conn)
        set_json_loads(orjson.loads, context=self.conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params or None).fetchall()

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        with self.conn.transaction():
            self.conn.execute(f"SET LOCAL lock_timeout = '{self.lock_timeout}s'")
            if lock is not None:
                got = self.conn.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                        (lock_key(lock),)).fetchone()
                if not got or not got[0]:
                    raise Busy(lock)
            yield

    def close(self) -> None:
        self.conn.close()

    def alive(self) -> bool:
        if self.conn.closed or self.conn.broken:
            return False
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def is_disconnect(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.OperationalError) or bool(
            self.conn.closed or self.conn.broken)

    def table_exists(self, name: str) -> bool:
        return self.fetchone("SELECT to_regclass(%s) IS NOT NULL", (name,))[0]  # type: ignore[index]

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

    def __init__(self, config: DatabaseConfig, lock_timeout_seconds: int) -> None:
        self.conn = sqlite3.connect(config.dbname, timeout=lock_timeout_seconds,
                                    isolation_level=None, check_same_thread=False)
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
        return self.fetchone("SELECT 1 FROM sqlite_master WHERE type='table' AND name=%s",
                             (name,)) is not None

    def rename_table(self, old: str, new: str) -> None:
        self.execute(f"ALTER TABLE {old} RENAME TO {new}")

    def rename_index(self, table: Table, old: str, new: str) -> None:
        # SQLite cannot rename an index: recreate it under the new name.
        suffix = new.rsplit("__", 1)[1]
        self.execute(f"DROP INDEX IF EXISTS {old}")
        self.execute(f"CREATE INDEX IF NOT EXISTS {new} ON {table.name} "
                     f"({', '.join(table.indexes[suffix])})")

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

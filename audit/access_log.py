"""The auditors' access log: every API request made with an auditor key, one row each.

`audit_access_log` (created by `serviceorders db init`, `create_tables`): when (`at`, UTC),
who (`actor`, `role`), what (`method`, `path` with its query string) and the answer
(`status`). The API's `AccessLog` middleware (`api/audit.py`) inserts the row *before* the
request is served (an auditor request that cannot be logged is refused with 503) and sets
the status once the answer is known; a row whose status stays null was not answered (the
process stopped, or the request is the one reading the log). It is not a projection: the
rows are written by the API, never rebuilt from the event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from serviceorders.storage.db import ReadDb, Table

MAX_PATH = 2000  # characters of path and query kept

ACCESS_LOG = Table(
    name="audit_access_log",
    columns=(
        ("id", "text"),
        ("at", "timestamptz"),
        ("actor", "text"),
        ("role", "text"),
        ("method", "text"),
        ("path", "text"),
        ("status", "int"),
    ),
    primary_key=("id",),
    indexes={"at": ("at",), "actor": ("actor", "at")},
)
TABLES = (ACCESS_LOG,)


def create_tables(db: ReadDb) -> None:
    """The access log's table (idempotent); `serviceorders db init` calls this."""
    with db.transaction():
        for table in TABLES:
            db.create_table(table)


def clean_path(path: str) -> str:
    """What is stored: at most MAX_PATH characters, NUL spelled %00 (PostgreSQL text
    cannot hold it)."""
    return path.replace("\x00", "%00")[:MAX_PATH]


def record(
    db: ReadDb, actor: str, role: str, method: str, path: str, at: datetime | None = None
) -> str:
    """Insert one access (status unknown yet); returns its id for `finish`."""
    entry_id = str(uuid4())
    types = ACCESS_LOG.types()
    values = {
        "id": entry_id,
        "at": at or datetime.now(UTC),
        "actor": actor,
        "role": role,
        "method": method,
        "path": clean_path(path),
        "status": None,
    }
    columns = ACCESS_LOG.column_names
    db.execute(
        f"INSERT INTO {ACCESS_LOG.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})",
        [db.adapt(values[c], types[c]) for c in columns],
    )
    return entry_id


def finish(db: ReadDb, entry_id: str, status: int) -> None:
    db.execute(f"UPDATE {ACCESS_LOG.name} SET status = %s WHERE id = %s", (status, entry_id))


@dataclass(frozen=True)
class AccessFilter:
    actor: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def entries(
    db: ReadDb, where: AccessFilter = AccessFilter(), offset: int = 0, limit: int = 100
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of entries), newest first."""
    clauses, params = [], []
    if where.actor is not None:
        clauses.append("actor = %s")
        params.append(where.actor)
    if where.since is not None:
        clauses.append("at >= %s")
        params.append(db.adapt(where.since, "timestamptz"))
    if where.until is not None:
        clauses.append("at < %s")
        params.append(db.adapt(where.until, "timestamptz"))
    sql_where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    total = db.fetchone(f"SELECT count(*) FROM {ACCESS_LOG.name}{sql_where}", params)
    rows = db.fetchall(
        f"SELECT at, actor, role, method, path, status FROM {ACCESS_LOG.name}"
        f"{sql_where} ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    found = [
        {
            "at": _utc(db.decode(at, "timestamptz")),
            "actor": actor,
            "role": role,
            "method": method,
            "path": path,
            "status": status,
        }
        for at, actor, role, method, path, status in rows
    ]
    return (total[0] if total else 0), found


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

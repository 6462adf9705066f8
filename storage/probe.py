"""The start-up probe of the configured database: one connection attempt with a short
timeout, so that a process started against a wrong `DATABASE_URL` stops at once with the
reason (refused, unknown database, unknown role, unknown host, ...) instead of waiting on a
connection pool. Running processes do not use it: they keep their reconnect loops for
transient outages (docs/reliability.md).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from serviceorders.settings import DatabaseConfig

PROBE_TIMEOUT_SECONDS = 2


class DatabaseUnreachable(Exception):
    """The configured database cannot be used; the message says where and why (never the
    password)."""


# libpq / psycopg wording -> what to tell the operator (the first match wins).
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason)
    for pattern, reason in (
        (
            r"connection refused",
            "connection refused (is PostgreSQL running and listening on that host and port?)",
        ),
        (
            r"database \"(?P<name>[^\"]*)\" does not exist",
            'unknown database: database "{name}" does not exist',
        ),
        (r"role \"(?P<name>[^\"]*)\" does not exist", 'unknown role: role "{name}" does not exist'),
        (r"password authentication failed", "password authentication failed"),
        (
            r"(failed to resolve host|could not translate host name|name or service not known|"
            r"nodename nor servname|temporary failure in name resolution)",
            "unknown host (the name does not resolve)",
        ),
        (r"timeout expired", f"no answer within {PROBE_TIMEOUT_SECONDS} s (timeout)"),
    )
)


def reason(error: BaseException) -> str:
    """One line saying why a connection attempt failed."""
    text = str(error)
    for pattern, said in _REASONS:
        found = pattern.search(text)
        if found:
            return said.format(**found.groupdict())
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    # 'connection failed: connection to server at "h", port p failed: FATAL:  why'
    return re.sub(r"^.*failed:\s*(FATAL:\s*)?", "", first) or first


def where(config: DatabaseConfig) -> str:
    return f"{config.host}:{config.port}/{config.dbname} as {config.user}"


def probe(config: DatabaseConfig, timeout: int = PROBE_TIMEOUT_SECONDS) -> None:
    """Raise DatabaseUnreachable when the database cannot be used right now."""
    if config.kind == "postgres":
        _probe_postgres(config, timeout)
    elif config.dbname != ":memory:":
        _probe_sqlite(Path(config.dbname))


def _probe_postgres(config: DatabaseConfig, timeout: int) -> None:
    import psycopg

    failed: list[BaseException] = []

    def attempt() -> None:
        try:
            params: dict[str, Any] = {
                "host": config.host,
                "port": config.port,
                "dbname": config.dbname,
                "user": config.user,
                "password": config.password or None,
                "connect_timeout": timeout,
                **config.options,
            }
            psycopg.connect(**params).close()
        except Exception as e:  # reported below
            failed.append(e)

    # In a thread, so that the bound holds for the host name lookup too (connect_timeout
    # does not cover it, and a resolver that does not answer can take much longer).
    worker = threading.Thread(target=attempt, name="database-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if worker.is_alive():
        failed.append(TimeoutError("timeout expired"))
    if failed:
        raise DatabaseUnreachable(
            f"cannot connect to PostgreSQL at {where(config)}: {reason(failed[0])}"
        )


def _probe_sqlite(path: Path) -> None:
    """The file can be opened for writing, or, when it does not exist yet, its directory
    takes new files (the probe itself creates nothing)."""
    problem = None
    if not path.parent.is_dir():
        problem = (
            f"the directory {path.parent} does not exist"
            if not path.parent.exists()
            else f"{path.parent} is not a directory"
        )
    elif path.is_dir():
        problem = "it is a directory"
    elif path.exists():
        try:  # opened, never created: a probe leaves no file behind
            os.close(os.open(path, os.O_RDWR))
        except OSError as e:
            problem = f"{e.strerror.lower() if e.strerror else e} (it must be writable)"
    else:
        try:  # a throwaway file, gone when closed: the directory takes new files
            tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as e:
            problem = (
                f"the directory {path.parent} does not take new files: "
                f"{e.strerror.lower() if e.strerror else e} (it must be writable)"
            )
    if problem:
        raise DatabaseUnreachable(f"cannot open the SQLite database {path}: {problem}")

"""`serviceorders project` killed with SIGKILL at random moments while catching up, and
restarted each time, ends with exactly the read models of an uninterrupted run (PostgreSQL).

Each page is applied in one transaction together with the projections' positions, so a
kill can only lose a whole page, which the next run applies again: never half a page,
never a page twice (the daily counts would show it).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from builders import fulfilment, manager, upstream
from builders import item as build_item
from psycopg import sql
from serviceorders.bootstrap import build_application, event_mapper, init_database, open_read_db
from serviceorders.domain.order import ServiceOrder, order_id_for
from serviceorders.domain.values import (
    ItemState,
    OrderHeader,
    OrderItem,
    Party,
    Place,
)
from serviceorders.projections import maintenance
from serviceorders.projections.runner import POSITIONS, Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXE = shutil.which("serviceorders")
BATCH = 50
ORDERS = 600
KILLS = 5

UPSTREAM, MANAGER, FULFILMENT = upstream(), manager(), fulfilment()


# ------------------------------------------------------------------ databases
def _server_url() -> str:
    return (
        os.environ.get("SERVICEORDERS_TEST_PG") or "postgresql://postgres@127.0.0.1:5432"
    ).rstrip("/")


def _url(dbname: str) -> str:
    parts = urlsplit(_server_url())
    return urlunsplit(("postgresql", parts.netloc, "/" + dbname, parts.query, ""))


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(_url("postgres"), autocommit=True, connect_timeout=5)


@pytest.fixture
def new_database() -> Iterator[Any]:
    """Makes fresh PostgreSQL databases (with the engine's tables); drops them after."""
    made: list[str] = []

    def make() -> Settings:
        dbname = f"so_kill_{secrets.token_hex(6)}"
        with _admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        made.append(dbname)
        settings = Settings.from_env({"DATABASE_URL": _url(dbname)})
        init_database(settings)
        return settings

    yield make
    with _admin() as conn:
        for dbname in made:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


# ------------------------------------------------------------------ the log
def items() -> list[OrderItem]:
    return [
        build_item(
            "1",
            "internet-access",
            characteristics={"bandwidthMbps": 100, "accessType": "fibre"},
            place=Place(id="site-1"),
        ),
        build_item(
            "2",
            "managed-router",
            characteristics={"model": "c1100"},
            place=Place(id="site-2"),
            depends_on=("1",),
        ),
    ]


def write_log(settings: Settings) -> tuple[int, int]:
    """ORDERS orders received, then approved, then completed (every tenth cancelled
    instead), each phase saved in chunks: pages mix new orders with orders created pages
    earlier. Returns (events, state transitions)."""
    app = build_application(settings)
    try:
        orders = [
            ServiceOrder.receive(
                UPSTREAM,
                OrderHeader(
                    external_id=f"kill-{n}",
                    category=("a", "b", "c")[n % 3],
                    priority=str(n % 4),
                    related_parties=(Party(id=f"cust-{n % 7}"),),
                ),
                items(),
                app.catalog,
                order_id_for(f"kill-{n}"),
            )
            for n in range(ORDERS)
        ]

        def save_all() -> None:
            for i in range(0, ORDERS, 100):
                app.save(*orders[i : i + 100])

        save_all()
        for order in orders:
            order.approve(MANAGER)
        save_all()
        for n, order in enumerate(orders):
            if n % 10 == 0:
                order.request_cancellation(UPSTREAM, "moved")
                order.approve_cancellation(MANAGER)
                order.cancel(FULFILMENT)
            else:
                order.change_item_state(FULFILMENT, "1", ItemState.COMPLETED)
                order.change_item_state(FULFILMENT, "2", ItemState.COMPLETED)
        save_all()
    finally:
        app.close()
    cancelled = len(range(0, ORDERS, 10))
    events = (ORDERS - cancelled) * 6 + cancelled * 6
    transitions = (ORDERS - cancelled) * 4 + cancelled * 6
    return events, transitions


def copy_events(source: Settings, target: Settings) -> None:
    """The same stored events (ids included) into another database."""
    with (
        psycopg.connect(_url(source.database.dbname)) as src,
        psycopg.connect(_url(target.database.dbname)) as dst,
        src.cursor().copy("COPY serviceorders_events TO STDOUT (FORMAT BINARY)") as out,
        dst.cursor().copy("COPY serviceorders_events FROM STDIN (FORMAT BINARY)") as inp,
    ):
        for data in out:
            inp.write(data)


# ------------------------------------------------------------------ the projector
def start(settings: Settings, *args: str) -> subprocess.Popen[str]:
    assert EXE, "the serviceorders console script is not installed"
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("SERVICEORDERS_")
    }
    env.update(
        DATABASE_URL=settings.database.url(with_password=True),
        SERVICEORDERS_PROJECTION_BATCH=str(BATCH),
    )
    return subprocess.Popen(
        [EXE, "project", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def positions(db: ReadDb) -> list[int]:
    return [int(r[0]) for r in db.fetchall(f"SELECT position FROM {POSITIONS.name}")]


def wait_for(condition: Any, timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the projector exited {proc.returncode} while waiting for {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def all_rows(db: ReadDb) -> dict[str, list[tuple[Any, ...]]]:
    return {p.name: db.rows(p.table, p.name) for p in PROJECTIONS}


# ======================================================================= the test
def test_projector_killed_at_random_moments_ends_exactly_as_an_uninterrupted_run(new_database):
    killed_store, clean_store = new_database(), new_database()
    events, transitions = write_log(killed_store)
    copy_events(killed_store, clean_store)
    seed = random.randrange(2**32)
    rnd = random.Random(seed)
    db = open_read_db(killed_store)
    try:
        head = Projector(db, event_mapper()).log.head()
        assert db.fetchone("SELECT COUNT(*) FROM serviceorders_events")[0] == events
        assert positions(db) == [0] * len(PROJECTIONS)

        kills = []
        while len(kills) < KILLS:
            proc = start(killed_store)
            before = min(positions(db))
            # Let it apply a random number of pages, then kill it at a random moment in
            # the middle of its work (not between two polls of ours only: a random sleep).
            target = before + rnd.randint(1, 3) * BATCH
            wait_for(
                lambda t=target: min(positions(db)) >= t,
                60,
                f"position {target} (seed {seed})",
                proc,
            )
            time.sleep(rnd.uniform(0, 0.05))
            at_kill = positions(db)
            assert min(at_kill) < head, f"caught up before kill {len(kills) + 1}; seed {seed}"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
            proc.communicate()
            after = positions(db)
            # All projections move together, one whole page at a time.
            assert len(set(after)) == 1, after
            assert after[0] >= before
            kills.append(after[0])
        assert kills == sorted(kills) and kills[-1] < head, (kills, seed)

        proc = start(killed_store)
        projector = Projector(db, event_mapper())
        wait_for(lambda: {s.lag for s in projector.status()} == {0}, 60, "lag 0", proc)
        time.sleep(0.3)  # following the log now, idle
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.communicate()
        _, err = proc.communicate()
        assert "caught up" in err
        assert positions(db) == [head] * len(PROJECTIONS)

        # Exactly once: every state transition counted once, every order once.
        assert (
            db.fetchone("SELECT SUM(orders) FROM daily_state_counts WHERE dimension = 'all'")[0]
            == transitions
        )
        assert db.fetchone("SELECT COUNT(*) FROM order_state_history")[0] == transitions
        assert db.fetchone("SELECT COUNT(*) FROM order_summary")[0] == ORDERS
        assert db.fetchone("SELECT COUNT(*) FROM order_item")[0] == 2 * ORDERS
        assert db.fetchone("SELECT COUNT(*) FROM order_document")[0] == ORDERS
        assert db.fetchone("SELECT COUNT(*) FROM review_queue")[0] == 0
        assert db.fetchone("SELECT COUNT(*) FROM cancellation_request WHERE state = 'done'")[
            0
        ] == len(range(0, ORDERS, 10))

        # A rebuild from scratch equals the killed-and-restarted run...
        assert maintenance.verify(db, event_mapper()) == []

        # ... and so does an uninterrupted run over the same events in another database.
        clean = start(clean_store, "--once")
        assert clean.wait(timeout=60) == 0, clean.communicate()
        clean.communicate()
        clean_db = open_read_db(clean_store)
        try:
            assert positions(clean_db) == [head] * len(PROJECTIONS)
            killed_rows, clean_rows = all_rows(db), all_rows(clean_db)
            assert {n: len(r) for n, r in killed_rows.items()} == {
                n: len(r) for n, r in clean_rows.items()
            }
            for name in killed_rows:
                assert killed_rows[name] == clean_rows[name], name
        finally:
            clean_db.close()
    finally:
        db.close()

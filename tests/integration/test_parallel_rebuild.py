"""Rebuild over order-id ranges (projections/parallel.py), PostgreSQL: K worker processes
each fold and write one partition of the log (by aggregate id) into the same fresh tables.

The rows must be exactly those of the single-process rebuild and of the live projector, in
every read model, on a log with many orders in several states (notes, holds, cancellations,
rejections, revisions...) and the services their completions make; `verify` then finds no
difference; a failing worker leaves the live tables as they were.

The histories and the row comparisons are test_projections.py's (loaded from its file: the
tests run with --import-mode=importlib).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.domain.application import ServiceOrders
from serviceorders.projections import maintenance, parallel
from serviceorders.projections.runner import Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings
from serviceorders.storage import seen
from serviceorders.storage.db import ReadDb


def _helpers() -> Any:
    name = "_parallel_rebuild_test_projections"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_projections.py")
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


h = _helpers()

pytestmark = pytest.mark.integration
# PostgreSQL only: SQLite keeps the single-process rebuild.
POSTGRES = pytest.mark.parametrize("settings", ["postgres"], indirect=True)

NAMES = [p.name for p in PROJECTIONS]


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Iterator[ReadDb]:
    read_db = open_read_db(settings)
    h.reset_read_models(read_db)
    yield read_db
    read_db.close()


@pytest.fixture
def log(app: ServiceOrders, db: ReadDb) -> dict[str, Any]:
    """Many orders in many states (random commands: notes, holds, information asked and
    given, cancellations, rejections, revisions, deletions...), completed orders whose
    services the inventory holds, projected live in small pages."""
    history = h.random_history(app, seed=2107, orders=24, commands=200)
    ids = [*history.order_ids.values(), *h.simple_orders(app, 5)]
    Projector(db, event_mapper(), batch_size=7).catch_up()
    h.assert_read_models_match(app, db, ids)
    return {"ids": ids, "live": h.snapshot(db), "positions": h.positions(db)}


def leftovers(db: ReadDb) -> list[str]:
    return [
        r[0]
        for r in db.fetchall(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND "
            "(tablename LIKE '%%\\_\\_rebuild%%' OR tablename LIKE '%%\\_\\_verify%%' "
            "OR tablename LIKE '%%\\_\\_old')"
        )
    ]


def aggregates(db: ReadDb) -> dict[UUID, int]:
    """Every aggregate of the log (orders and services) and its last version."""
    return {
        UUID(str(oid)): int(version)
        for oid, version in db.fetchall(
            f"SELECT originator_id, MAX(originator_version) FROM {db.events_table} "
            f"GROUP BY originator_id"
        )
    }


def test_every_read_model_is_partitioned_or_summed() -> None:
    """A new read model is classified on purpose (an unclassified one is still built
    right: by the main process, from the first event; see the test below)."""
    assert set(parallel.PARTITIONED) | set(parallel.SUMMED) == set(NAMES)
    assert not set(parallel.PARTITIONED) & set(parallel.SUMMED)


@POSTGRES
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rebuild_over_k_partitions_equals_one_process_and_the_live_tables(
    app: ServiceOrders, db: ReadDb, log: dict[str, Any], k: int
) -> None:
    head = h.head(db)
    parts = {parallel.partition_of(a, k) for a in aggregates(db)}
    assert parts == set(range(k))  # every worker has aggregates of its own

    assert maintenance.rebuild(db, event_mapper(), workers=0) == dict.fromkeys(NAMES, head)
    single = h.snapshot(db)
    assert single == log["live"]

    assert maintenance.rebuild(db, event_mapper(), workers=k) == dict.fromkeys(NAMES, head)
    assert h.snapshot(db) == single
    assert h.positions(db) == log["positions"]
    assert leftovers(db) == []
    for name in NAMES:
        assert h.index_names(db, name) == h.expected_index_names(db, name), name
    # the chain heads the workers read: every aggregate at its last version
    assert {UUID(o): v for o, (v, _, _) in seen.load(db).items()} == aggregates(db)

    assert maintenance.verify(db, event_mapper(), workers=k) == []
    assert maintenance.verify(db, event_mapper(), workers=0) == []
    assert leftovers(db) == []

    # The projector goes on into the swapped-in tables.
    more = h.random_history(app, seed=2108, orders=4, commands=30)
    assert Projector(db, event_mapper()).catch_up() > 0
    h.assert_read_models_match(app, db, [*log["ids"], *more.order_ids.values()])


@POSTGRES
def test_the_main_process_catches_up_what_the_workers_did_not_read(
    app: ServiceOrders, db: ReadDb, log: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers stop at the head taken at the start; later events (here: the last
    third of the log) are applied by the main process, as the single-process rebuild's
    swap does; a read model left unclassified is built there from the first event."""
    head = h.head(db)
    monkeypatch.setattr(maintenance, "log_head", lambda _db: head * 2 // 3)
    monkeypatch.setattr(parallel, "PARTITIONED", parallel.PARTITIONED - {"order_outcome"})
    assert maintenance.rebuild(db, event_mapper(), workers=2) == dict.fromkeys(NAMES, head)
    assert h.snapshot(db) == log["live"]
    assert maintenance.verify(db, event_mapper(), workers=2) == []
    assert leftovers(db) == []


@POSTGRES
def test_verify_over_partitions_finds_a_tampered_row(db: ReadDb, log: dict[str, Any]) -> None:
    victim = log["ids"][0]
    db.execute("UPDATE order_summary SET priority = 'tampered' WHERE id = %s", (victim,))
    db.execute(
        "UPDATE daily_state_counts SET orders = orders + 1 WHERE dimension = 'all' "
        "AND state = 'completed'"
    )
    found = maintenance.verify(db, event_mapper(), workers=2)
    assert {
        (d.projection, d.key[0] if d.projection == "order_summary" else None) for d in found
    } == {
        ("order_summary", str(victim)),
        ("daily_state_counts", None),
    }
    assert leftovers(db) == []


def unreadable_event(db: ReadDb) -> UUID:
    """An event no process can decode (written by a newer release), at the log's end."""
    oid = uuid4()
    db.execute(
        f"INSERT INTO {db.events_table} (originator_id, originator_version, topic, state) "
        "VALUES (%s, 1, %s, %s)",
        (oid, "serviceorders.domain.events:EventOfANewerRelease", b"{}"),
    )
    return oid


@POSTGRES
def test_a_failing_worker_fails_the_rebuild_and_leaves_the_live_tables_untouched(
    settings: Settings, db: ReadDb, log: dict[str, Any]
) -> None:
    unreadable_event(db)
    with pytest.raises(parallel.WorkerFailed, match=r"process [12] of 2 failed: UnknownEvent"):
        maintenance.rebuild(db, event_mapper(), workers=2)
    assert h.snapshot(db) == log["live"]
    assert h.positions(db) == log["positions"]
    assert leftovers(db) == []
    # (verify reads only up to the live tables' position: before the event, all equal)
    assert maintenance.verify(db, event_mapper(), workers=2) == []
    assert leftovers(db) == []

    # The command: one line, exit status 3, the live tables as they were.
    done = h.run_cli("projections", "rebuild", "--workers", "2", settings=settings)
    assert done.returncode == 3, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "UnknownEvent" in error[0], done.stderr
    assert "Traceback" not in done.stderr
    assert h.snapshot(db) == log["live"]
    assert leftovers(db) == []


@POSTGRES
def test_a_worker_killed_fails_the_rebuild_and_leaves_the_live_tables_untouched(
    db: ReadDb, log: dict[str, Any]
) -> None:
    """A worker that dies without a word (the OOM killer, kill -9) fails the rebuild too."""
    killed: list[int] = []

    def kill_the_first_worker() -> None:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                if child.name.startswith("rebuild-") and child.pid:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_the_first_worker)
    killer.start()
    try:
        with pytest.raises(parallel.WorkerFailed, match=r"process 2 of 2 exited with code -9"):
            maintenance.rebuild(db, event_mapper(), workers=2)
    finally:
        killer.join()
    assert killed
    assert h.snapshot(db) == log["live"]
    assert h.positions(db) == log["positions"]
    assert leftovers(db) == []


@POSTGRES
def test_the_commands_take_workers(settings: Settings, db: ReadDb, log: dict[str, Any]) -> None:
    done = h.run_cli("projections", "rebuild", "--workers", "2", settings=settings)
    assert done.returncode == 0, done.stderr
    assert f"rebuilt order_summary at position {h.head(db)}" in done.stdout
    assert h.snapshot(db) == log["live"]
    checked = h.run_cli("projections", "verify", "--workers", "3", settings=settings)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == len(NAMES)


def test_how_many_processes(settings: Settings, app: ServiceOrders) -> None:
    """One per core by default on PostgreSQL for a log of PARALLEL_ABOVE events or more;
    the single-process rebuild (0) for a smaller log, when asked, and always on SQLite."""
    read_db = open_read_db(settings)
    try:
        h.simple_orders(app, 2)
        if settings.database.kind == "sqlite":
            assert maintenance.workers(read_db, 3) == 0
            assert parallel.workers_for(read_db, None, events=10**6) == 0
            return
        assert maintenance.workers(read_db) == 0  # a small log
        assert maintenance.workers(read_db, 3) == 3
        assert maintenance.workers(read_db, 0) == 0
        big = parallel.PARALLEL_ABOVE
        assert parallel.workers_for(read_db, None, events=big) == (os.cpu_count() or 1)
        assert parallel.workers_for(read_db, None, events=big - 1) == 0
    finally:
        read_db.close()

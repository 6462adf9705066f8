"""Group commit (consumers/recorders.GroupCommit), shared read-your-writes rounds
(api/context._Rounds) and the read connections' liveness check, against real PostgreSQL.

The grouping itself is forced deterministically: the first transaction is held open (its
insert waits on an event) while other writers queue behind it; they must then share the
next transaction, and each must still get its own outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from serviceorders.api.auth import Authenticator
from serviceorders.api.context import ApiContext, _Rounds
from serviceorders.bootstrap import build_projector, open_read_db
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.commands import AddNote, ReceiveOrder
from serviceorders.domain.errors import ConcurrencyConflict
from serviceorders.domain.order import order_id_for
from serviceorders.projections.queries import ReadModels
from serviceorders.settings import Settings
from serviceorders.storage.recorders import GroupCommit

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_settings(pg_database: Any, pg_cleaner: Callable[[], None]) -> Settings:
    """Group commit is the PostgreSQL recorder's (SQLite has a single writer anyway)."""
    pg_cleaner()
    return Settings.from_env({"DATABASE_URL": pg_database.url()})


class HeldFirst:
    """Wraps a GroupCommit's insert: the first call blocks until released; every call's
    batch size is recorded."""

    def __init__(self, insert: Callable[[Sequence[Any]], Any]) -> None:
        self.insert = insert
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, events: Sequence[Any]) -> Any:
        self.sizes.append(len(events))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.insert(events)


def _hold(app: ServiceOrders) -> HeldFirst:
    group: GroupCommit = app.recorder._group  # type: ignore[attr-defined]
    held = HeldFirst(group.insert)
    group.insert = held
    return held


def _receive(
    app: ServiceOrders, actors: Any, samples: Any, external_id: str, results: dict[str, Any]
) -> None:
    try:
        command = ReceiveOrder(samples.header(external_id), tuple(samples.items()))
        outcome = app.handle(actors.upstream, command)
        results[external_id] = (outcome.order.id, outcome.created)
    except Exception as e:  # recorded for the assertions
        results[external_id] = e


def _start(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _queued(group: GroupCommit, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(group._queue) < n:
        assert time.monotonic() < deadline, f"{len(group._queue)} of {n} writers queued"
        time.sleep(0.005)


def test_writers_queued_behind_a_transaction_share_the_next_one(
    pg_settings: Settings, open_app: Any, actors: Any, samples: Any
) -> None:
    app = open_app(pg_settings)
    held = _hold(app)
    results: dict[str, Any] = {}
    first = _start(_receive, app, actors, samples, "GC-0", results)
    assert held.entered.wait(30), results
    others = [_start(_receive, app, actors, samples, f"GC-{i}", results) for i in range(1, 9)]
    _queued(app.recorder._group, 8)  # type: ignore[attr-defined]
    held.release.set()
    for thread in [first, *others]:
        thread.join(30)

    assert all(results[f"GC-{i}"] == (order_id_for(f"GC-{i}"), True) for i in range(9))
    events_per_order = held.sizes[0]
    assert held.sizes == [events_per_order, 8 * events_per_order]  # 2 transactions, not 9
    for i in range(9):
        order = app.get_order(order_id_for(f"GC-{i}"))
        assert order.header.external_id == f"GC-{i}"
        assert order.version == events_per_order
    # Notification ids: every event has its own, gap-free across the two transactions.
    db = open_read_db(pg_settings)
    try:
        ids = [
            r[0]
            for r in db.fetchall(
                "SELECT notification_id FROM serviceorders_events ORDER BY notification_id"
            )
        ]
    finally:
        db.close()
    assert len(ids) == 9 * events_per_order == len(set(ids))


def test_a_conflict_in_a_group_fails_only_its_own_writer(
    pg_settings: Settings, open_app: Any, actors: Any, samples: Any, monkeypatch: Any
) -> None:
    """A duplicate of an order (same externalId) and a stale write share a group with good
    writes: the group falls back to one transaction per write, the duplicate is answered
    as 'already there' (not created), the stale write gets a conflict, the rest commit."""
    app = open_app(pg_settings)
    app.handle(actors.upstream, ReceiveOrder(samples.header("GC-DUP"), tuple(samples.items())))
    stale = app.get_order(order_id_for("GC-DUP"))  # will be one version behind
    app.handle(actors.upstream, AddNote(stale.id, "moves the order on"))

    held = _hold(app)
    results: dict[str, Any] = {}
    first = _start(_receive, app, actors, samples, "GC-A", results)
    assert held.entered.wait(30)
    threads = [
        _start(_receive, app, actors, samples, "GC-B", results),
        _start(_receive, app, actors, samples, "GC-DUP", results),
    ]

    # The stale writer's command reads the stale copy (the other threads read the store).
    stale_reader = threading.local()
    real_get = app.repository.get

    def get(*args: Any, **kwargs: Any) -> Any:
        return stale if getattr(stale_reader, "on", False) else real_get(*args, **kwargs)

    monkeypatch.setattr(app.repository, "get", get)

    def stale_note() -> None:
        stale_reader.on = True
        try:
            app.handle(actors.upstream, AddNote(stale.id, "written on a stale copy"))
            results["stale"] = "saved"
        except Exception as e:
            results["stale"] = e

    threads.append(_start(stale_note))
    threads.append(_start(_receive, app, actors, samples, "GC-C", results))
    _queued(app.recorder._group, 4)  # type: ignore[attr-defined]
    held.release.set()
    for thread in [first, *threads]:
        thread.join(30)

    assert results["GC-A"] == (order_id_for("GC-A"), True)
    assert results["GC-B"] == (order_id_for("GC-B"), True)
    assert results["GC-C"] == (order_id_for("GC-C"), True)
    assert results["GC-DUP"] == (order_id_for("GC-DUP"), False)
    assert isinstance(results["stale"], ConcurrencyConflict)
    # the grouped attempt (4 writes), then each write alone
    assert len(held.sizes) == 1 + 1 + 4
    dup = app.get_order(order_id_for("GC-DUP"))
    assert [n.text for n in dup.notes][-1] == "moves the order on"
    assert len(app.history(dup.id)) == dup.version


def test_a_database_error_reaches_every_writer_of_the_group(
    pg_settings: Settings, open_app: Any, actors: Any, samples: Any
) -> None:
    app = open_app(pg_settings)
    group: GroupCommit = app.recorder._group  # type: ignore[attr-defined]
    real = group.insert
    calls: list[int] = []

    def failing(events: Sequence[Any]) -> Any:
        calls.append(len(events))
        if len(calls) == 1:
            time.sleep(0.3)  # let the others queue
            return real(events)
        raise psycopg.OperationalError("the server went away")

    group.insert = failing
    results: dict[str, Any] = {}
    first = _start(_receive, app, actors, samples, "GC-F0", results)
    time.sleep(0.1)
    others = [_start(_receive, app, actors, samples, f"GC-F{i}", results) for i in (1, 2, 3)]
    for thread in [first, *others]:
        thread.join(30)
    assert results["GC-F0"] == (order_id_for("GC-F0"), True)
    failed = [results[f"GC-F{i}"] for i in (1, 2, 3)]
    assert all(isinstance(r, psycopg.OperationalError) for r in failed), failed
    assert len(calls) <= 3  # never retried one by one after a non-conflict error
    group.insert = real
    assert not app.exists(order_id_for("GC-F1"))


# ------------------------------------------------------------------ _Rounds
def test_a_round_serves_everyone_who_called_before_it_started() -> None:
    rounds = _Rounds()
    started = threading.Event()
    release = threading.Event()
    runs: list[int] = []

    def work() -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            started.set()
            assert release.wait(30)

    first = _start(rounds.join, work)
    assert started.wait(30)
    # These call while round 1 runs: round 1 may have read too early for them, so they
    # need round 2 — one round for all of them.
    waiting = [_start(rounds.join, work) for _ in range(6)]
    time.sleep(0.2)
    assert runs == [1]
    release.set()
    for thread in [first, *waiting]:
        thread.join(30)
    assert runs == [1, 2]


def test_a_failed_round_fails_its_callers_and_the_next_call_runs_again() -> None:
    rounds = _Rounds()
    outcomes: list[str] = []

    def broken() -> None:
        raise RuntimeError("projection failed")

    with pytest.raises(RuntimeError, match="projection failed"):
        rounds.join(broken)
    rounds.join(lambda: outcomes.append("ran"))
    assert outcomes == ["ran"]


# ------------------------------------------------------------- read connections
def test_a_connection_the_server_closed_is_noticed_without_a_query(pg_settings: Settings) -> None:
    db = open_read_db(pg_settings)
    try:
        assert db.alive()
        pid = db.conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(_admin_url(pg_settings), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while db.alive():
            assert time.monotonic() < deadline, "a terminated connection still looks alive"
            time.sleep(0.05)
    finally:
        db.close()


def test_reads_after_the_server_dropped_every_connection_get_fresh_ones(
    pg_settings: Settings, open_app: Any, actors: Any, samples: Any
) -> None:
    app = open_app(pg_settings)
    received = ReceiveOrder(samples.header("GC-R"), tuple(samples.items()))
    order_id = app.handle(actors.upstream, received).order.id
    ctx = ApiContext(settings=pg_settings, app=app, auth=Authenticator([]))
    ctx.sync()
    pids = []
    for _ in range(3):
        with ctx.read() as models:
            pids.append(models.db.conn.info.backend_pid)  # type: ignore[attr-defined]
    with psycopg.connect(_admin_url(pg_settings), autocommit=True) as admin:
        for pid in set(pids):  # as a restart would: every pooled connection dropped
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    for _ in range(3):
        with ctx.read() as models:
            row = ReadModels.document(models, order_id)
            assert row is not None and row["version"] >= 1
            assert models.db.conn.info.backend_pid not in pids  # type: ignore[attr-defined]
    ctx._drain(ctx._pool)
    ctx._drain(ctx._projectors)


def _admin_url(settings: Settings) -> str:
    db = settings.database
    return f"postgresql://{db.user}@{db.host}:{db.port}/{db.dbname}"


def test_waiting_for_the_projection_lock_returns_when_its_holder_lets_go(
    pg_settings: Settings,
) -> None:
    """`wait_for_lock` (used by read-your-writes when another projector is busy) sleeps
    until the holder's transaction ends, and never keeps the lock itself."""
    from serviceorders.storage.db import lock_key

    holder, waiter, third = (open_read_db(pg_settings) for _ in range(3))
    try:
        release, held = threading.Event(), threading.Event()

        def hold() -> None:
            with holder.transaction(lock="test.lock"):
                held.set()
                assert release.wait(30)

        holding = _start(hold)
        assert held.wait(30)
        waited = _start(waiter.wait_for_lock, "test.lock", 30.0)
        waited.join(0.3)
        assert waited.is_alive(), "returned while the lock was still held"
        release.set()
        holding.join(30)
        waited.join(30)
        assert not waited.is_alive()
        row = third.fetchone("SELECT pg_try_advisory_lock(%s)", (lock_key("test.lock"),))
        assert row is not None and row[0] is True  # the waiter did not keep it
        third.execute("SELECT pg_advisory_unlock(%s)", (lock_key("test.lock"),))
        # Still held after the timeout: it returns anyway, without the lock.
        with holder.transaction(lock="test.lock"):
            waiter.wait_for_lock("test.lock", 0.05)
            row = third.fetchone("SELECT pg_try_advisory_lock(%s)", (lock_key("test.lock"),))
            assert row is not None and row[0] is False
    finally:
        for db in (holder, waiter, third):
            db.close()


def test_read_your_writes_waits_out_a_database_restart(
    pg_settings: Settings, open_app: Any, actors: Any, samples: Any
) -> None:
    """The round's connections are gone and the server refuses new ones for a moment: the
    round tries again every 0.2 s instead of failing the request."""
    app = open_app(pg_settings)
    received = ReceiveOrder(samples.header("GC-S"), tuple(samples.items()))
    order_id = app.handle(actors.upstream, received).order.id
    refusals = {"left": 3}

    def flaky() -> Any:  # the composition root's projector factory, refused three times
        if refusals["left"]:
            refusals["left"] -= 1
            raise psycopg.OperationalError("connection refused (the server is restarting)")
        return build_projector(pg_settings)

    ctx = ApiContext(settings=pg_settings, app=app, auth=Authenticator([]), new_projector=flaky)
    ctx.sync()
    assert refusals["left"] == 0
    with ctx.read() as models:
        assert ReadModels.document(models, order_id) is not None
    ctx._drain(ctx._pool)
    ctx._drain(ctx._projectors)

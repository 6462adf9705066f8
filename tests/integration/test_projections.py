"""The projections against real stores (SQLite and PostgreSQL): every read model equals what
the aggregates say, however the log is paged; rebuild and verify; exactly-once application;
lag.

Expected rows are computed here from the application (`app.get_order`, `app.history`), never
from the projector's own folding: the row functions of views.py are applied to the current
aggregates, and state transitions, daily counts and cancellation requests are derived
independently from each order's events.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from builders import agent, fulfilment, manager, operator, upstream
from histories import KINDS, PER_ORDER, History, _header, random_history, simple_orders
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from serviceorders.bootstrap import (
    build_application,
    build_projector,
    event_mapper,
    init_database,
    open_read_db,
)
from serviceorders.domain import commands as cmd
from serviceorders.domain import events as ev
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.values import (
    OrderState,
)
from serviceorders.projections import maintenance
from serviceorders.projections.runner import (
    POSITIONS,
    PositionMoved,
    Projector,
    create_tables,
)
from serviceorders.projections.views import (
    PROJECTIONS,
    item_rows,
    milestone_rows,
    outcome_rows,
    place_rows,
    queue_rows,
    relationship_rows,
    summary_row,
)
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb, Table
from serviceorders.tmf.tmf641 import order_to_tmf641

pytestmark = pytest.mark.integration

TABLES: dict[str, Table] = {p.name: p.table for p in PROJECTIONS}
EXE = shutil.which("serviceorders")

UPSTREAM, AGENT, FULFILMENT, OPERATOR = upstream(), agent(), fulfilment(), operator()
MANAGERS = (manager("bob"), manager("carol"))


# ------------------------------------------------------------------------ stores
def reset_read_models(db: ReadDb) -> None:
    """Empty read models at position 0 (the session's PostgreSQL database keeps its
    read-model tables and positions between tests: only the event tables are truncated)."""
    with db.transaction():
        for p in PROJECTIONS:
            for suffix in ("", "__rebuild", "__verify", "__old"):
                db.drop_table(p.name + suffix)
        db.drop_table(POSITIONS.name)
    create_tables(db)


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Iterator[ReadDb]:
    """The read-model database of `app`'s store, with empty read models."""
    read_db = open_read_db(settings)
    reset_read_models(read_db)
    yield read_db
    read_db.close()


@pytest.fixture
def fresh_store(
    settings: Settings, request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[Callable[[], tuple[ServiceOrders, ReadDb]]]:
    """A new empty store per call (hypothesis runs many examples in one test function):
    a new SQLite file, or the session's PostgreSQL database truncated."""
    opened: list[tuple[ServiceOrders, ReadDb]] = []
    counter = itertools.count()

    def close_all() -> None:
        while opened:
            app_, db_ = opened.pop()
            db_.close()
            app_.close()

    def make() -> tuple[ServiceOrders, ReadDb]:
        close_all()
        n = next(counter)
        if settings.database.kind == "sqlite":
            store = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / f'{n}.db'}"})
        else:
            request.getfixturevalue("pg_cleaner")()
            store = settings
        if n == 0 or store.database.kind == "sqlite":
            init_database(store)
        app_ = build_application(store)
        db_ = open_read_db(store)
        if n == 0:
            reset_read_models(db_)
        else:  # cheaper than new tables: empty them
            with db_.transaction():
                for p in PROJECTIONS:
                    db_.execute(f"DELETE FROM {p.name}")
                db_.execute(f"UPDATE {POSITIONS.name} SET position = 0")
        opened.append((app_, db_))
        return app_, db_

    yield make
    close_all()


# ---------------------------------------------------------------- expected read models
def norm_value(db: ReadDb, value: Any, kind: str) -> Any:
    """A Python value as `db.rows` returns it from the table."""
    if db.dialect == "sqlite":  # SQLite's normalise parses what its adapt stored
        return db.normalise(db.adapt(value, kind), kind)
    return db.normalise(value, kind)


def keyed(table: Table, rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    at = [table.column_names.index(k) for k in table.primary_key]
    found = {tuple(r[i] for i in at): r for r in rows}
    assert len(found) == len(rows)
    return found


def expected_rows(
    db: ReadDb, table: Table, rows: list[dict[str, Any]]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    types = table.types()
    assert all(set(r) == set(table.column_names) for r in rows)
    return keyed(
        table, [tuple(norm_value(db, r[c], types[c]) for c in table.column_names) for r in rows]
    )


def live_rows(db: ReadDb, name: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return keyed(TABLES[name], db.rows(TABLES[name], name))


def transitions_of(app: ServiceOrders, order_id: UUID) -> list[dict[str, Any]]:
    """Each state change of the order, found by folding its events one by one."""
    order: Any = None
    found = []
    state, since = None, None
    for event in app.history(order_id):
        order = event.mutate(order)
        if order.state != state:
            found.append(
                {
                    "order_id": order_id,
                    "version": event.originator_version,
                    "from_state": state.value if state else None,
                    "to_state": order.state.value,
                    "changed_at": event.timestamp,
                    "previous_state_since": since,
                    "seconds_in_previous_state": (
                        (event.timestamp - since).total_seconds() if since else None
                    ),
                    "actor_id": event.actor.id,
                    "actor_role": event.actor.role.value,
                    # what the daily counts break down by, as the order was at that event
                    "_day": event.timestamp.astimezone(UTC).date(),
                    "_category": order.header.category or "",
                    "_specs": {i.specification.id for i in order.items.values() if i.specification},
                    "_sites": {i.place.id for i in order.items.values() if i.place},
                }
            )
            state, since = order.state, event.timestamp
    return found


def cancellation_rows(app: ServiceOrders, order_id: UUID) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for event in app.history(order_id):
        if isinstance(event, ev.CancellationRequested):
            rows[event.request_id] = {
                "id": event.request_id,
                "order_id": order_id,
                "state": "accepted",
                "decision": None,
                "reason": event.reason,
                "requested_cancellation_date": event.requested_date,
                "requested_by": event.actor.id,
                "requested_at": event.timestamp,
                "decided_by": None,
                "decided_at": None,
                "decision_reason": None,
                "effective_cancellation_date": None,
                "version": event.originator_version,
            }
        elif isinstance(event, ev.CancellationApproved | ev.CancellationDenied):
            approved = isinstance(event, ev.CancellationApproved)
            rows[event.request_id].update(
                state="inProgress" if approved else "done",
                decision="approved" if approved else "denied",
                decided_by=event.actor.id,
                decided_at=event.timestamp,
                decision_reason=event.note if approved else event.reason,
                version=event.originator_version,
            )
        elif isinstance(event, ev.OrderCancelled) and event.request_id:
            rows[event.request_id].update(
                state="done",
                effective_cancellation_date=event.timestamp,
                version=event.originator_version,
            )
    return list(rows.values())


def assert_read_models_match(app: ServiceOrders, db: ReadDb, order_ids: list[UUID]) -> None:
    orders = [app.get_order(order_id) for order_id in order_ids]
    versions = {str(o.id): o.version for o in orders}

    def check(name: str, rows: list[dict[str, Any]]) -> None:
        live, expected = live_rows(db, name), expected_rows(db, TABLES[name], rows)
        assert live == expected, f"{name} differs from the aggregates"

    check("order_summary", [summary_row(o) for o in orders])
    check("order_item", [r for o in orders for r in item_rows(o)])
    check("review_queue", [r for o in orders for r in queue_rows(o)])
    check(
        "order_document",
        [
            {
                "order_id": o.id,
                "external_id": o.header.external_id,
                "state": o.state.value,
                "category": o.header.category,
                "priority": o.header.priority,
                "order_date": o.submitted_at,
                "document": order_to_tmf641(o),
                "last_change_at": o.modified_on,
                "version": o.version,
            }
            for o in orders
            if o.state is not OrderState.DRAFT and not o.deleted
        ],
    )
    check("cancellation_request", [r for o in orders for r in cancellation_rows(app, o.id)])
    check("order_relationship", [r for o in orders for r in relationship_rows(o)])
    check("order_item_place", [r for o in orders for r in place_rows(o)])
    check("order_outcome", [r for o in orders for r in outcome_rows(o)])
    check("order_milestone", [r for o in orders for r in milestone_rows(o)])

    transitions = {o.id: transitions_of(app, o.id) for o in orders}
    for o in orders:  # the fold agrees with the aggregate
        assert transitions[o.id][-1]["to_state"] == o.state.value
    every = [t for ts in transitions.values() for t in ts]
    check(
        "order_state_history",
        [{k: v for k, v in t.items() if not k.startswith("_")} for t in every],
    )

    counts: Counter[tuple[Any, ...]] = Counter()
    for t in every:
        dims = [("all", ""), ("category", t["_category"])]
        dims += [("specification", s) for s in t["_specs"]] + [("site", s) for s in t["_sites"]]
        for dimension, value in dims:
            counts[(t["_day"], t["to_state"], dimension, value)] += 1
    check(
        "daily_state_counts",
        [
            {"day": d, "state": s, "dimension": dim, "value": v, "orders": n}
            for (d, s, dim, v), n in counts.items()
        ],
    )
    # the overall totals, spelled out: one per transition per (UTC day, state)
    totals = Counter((t["_day"].isoformat(), t["to_state"]) for t in every)
    assert {
        (r[0], r[1]): r[4]
        for r in db.rows(TABLES["daily_state_counts"], "daily_state_counts")
        if r[2] == "all"
    } == totals

    # Every row that carries the order's version carries its current version.
    for name, column in (
        ("order_summary", "id"),
        ("order_item", "order_id"),
        ("review_queue", "order_id"),
        ("order_document", "order_id"),
        ("order_relationship", "order_id"),
        ("order_item_place", "order_id"),
        ("order_outcome", "order_id"),
        ("order_milestone", "order_id"),
    ):
        cols = TABLES[name].column_names
        for row in db.rows(TABLES[name], name):
            assert row[cols.index("version")] == versions[row[cols.index(column)]], name


def snapshot(db: ReadDb) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    return {name: live_rows(db, name) for name in TABLES}


def positions(db: ReadDb) -> dict[str, int]:
    return {
        name: int(pos) for name, pos in db.fetchall(f"SELECT name, position FROM {POSITIONS.name}")
    }


def head(db: ReadDb) -> int:
    return Projector(db, event_mapper()).log.head()


# ================================================================== the property
# Mostly a command likely in the order's state, else any command (mostly refused).
command = st.tuples(
    st.integers(0, 3),
    st.sampled_from(KINDS),
    st.integers(0, 7),
    st.integers(0, 99),
    st.integers(0, 99),
).map(lambda c: ("likely" if c[0] else c[1], *c[2:]))


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    creations=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), min_size=3, max_size=8),
    batch_size=st.integers(1, 8),
    steps=st.lists(
        st.tuples(command, st.sampled_from(["-", "-", "page", "catch_up"])),
        min_size=15,
        max_size=50,
    ),
)
def test_read_models_equal_the_aggregates_however_the_log_is_paged(
    fresh_store, creations, batch_size, steps
):
    app, db = fresh_store()
    projector = Projector(db, event_mapper(), batch_size=batch_size)
    history = History(app, len(creations))
    # Every slot gets its order, created in between the other commands.
    for slot, (a, b) in enumerate(creations):
        steps = [*steps[: slot * 3], (("create", slot, a, b), "-"), *steps[slot * 3 :]]
    for command, then in steps:
        history.run(command)
        if then == "page":
            projector.run_once()
        elif then == "catch_up":
            projector.catch_up()
    projector.catch_up()

    assert [s.lag for s in projector.status()] == [0] * len(PROJECTIONS)
    assert set(positions(db).values()) == {head(db)}
    assert_read_models_match(app, db, list(history.order_ids.values()))


# ======================================================================= verify
def run_cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    assert EXE, "the serviceorders console script is not installed"
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("SERVICEORDERS_")
    }
    env["DATABASE_URL"] = settings.database.url(with_password=True)
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_verify_proves_rebuild_equals_incremental_and_finds_a_tampered_row(settings, app, db):
    history = random_history(app, seed=641, orders=10, commands=80)
    projector = Projector(db, event_mapper(), batch_size=3)
    projector.catch_up()
    assert_read_models_match(app, db, list(history.order_ids.values()))

    assert maintenance.verify(db, event_mapper()) == []
    clean = run_cli("projections", "verify", settings=settings)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    for name in TABLES:
        assert f"{name}: OK" in clean.stdout

    # Tamper with one live row.
    victim = app.get_order(history.order_ids[0])
    fake = "completed" if victim.state is not OrderState.COMPLETED else "failed"
    db.execute(
        "UPDATE order_summary SET state = %s WHERE id = %s", (fake, db.adapt(victim.id, "uuid"))
    )

    differences = maintenance.verify(db, event_mapper())
    assert len(differences) == 1
    (diff,) = differences
    state_at = TABLES["order_summary"].column_names.index("state")
    assert diff.projection == "order_summary"
    assert diff.key == (str(victim.id),)
    assert diff.live is not None and diff.rebuilt is not None
    assert diff.live[state_at] == fake
    assert diff.rebuilt[state_at] == victim.state.value
    assert [i for i, (x, y) in enumerate(zip(diff.live, diff.rebuilt, strict=True)) if x != y] == [
        state_at
    ]

    tampered = run_cli("projections", "verify", settings=settings)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "order_summary: 1 differing row(s)" in tampered.stdout
    assert f"key ('{victim.id}',)" in tampered.stdout
    assert f"'{fake}'" in tampered.stdout
    for name in TABLES:
        if name != "order_summary":
            assert f"{name}: OK" in tampered.stdout
    # verify leaves nothing behind
    assert not [n for n in TABLES if db.table_exists(f"{n}__verify")]
    assert set(positions(db)) == set(TABLES)


def test_verify_reports_missing_and_extra_rows(app, db):
    history = random_history(app, seed=7, orders=5, commands=30)
    Projector(db, event_mapper(), batch_size=4).catch_up()
    some = next(iter(history.order_ids.values()))
    db.execute(
        "DELETE FROM order_state_history WHERE order_id = %s AND version = 1",
        (db.adapt(some, "uuid"),),
    )
    db.execute(
        "INSERT INTO order_item (order_id, item_id, action, version) "
        "VALUES (%s, 'ghost', 'add', 1)",
        (db.adapt(some, "uuid"),),
    )

    # Events the live tables have not reached yet are no difference: verify compares at
    # the live position.
    random_history(app, seed=8, orders=3, commands=10)
    assert Projector(db, event_mapper()).status()[0].lag > 0

    found = {
        (d.projection, d.key): (d.live is None, d.rebuilt is None)
        for d in maintenance.verify(db, event_mapper())
    }
    assert found == {
        ("order_state_history", (str(some), 1)): (True, False),
        ("order_item", (str(some), "ghost")): (False, True),
    }


# ====================================================================== rebuild
def index_names(db: ReadDb, table: str) -> set[str]:
    if db.dialect == "postgres":
        return {
            r[0]
            for r in db.fetchall(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = %s",
                (table,),
            )
        }
    return {
        r[0]
        for r in db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
            "AND name NOT LIKE 'sqlite_autoindex%%'",
            (table,),
        )
    }


def expected_index_names(db: ReadDb, name: str) -> set[str]:
    names = {f"{name}__{suffix}" for suffix in TABLES[name].indexes}
    return names | ({f"{name}_pkey"} if db.dialect == "postgres" else set())


def test_rebuild_swaps_in_equal_tables_and_keeps_positions_twice_in_a_row(app, db):
    history = random_history(app, seed=4711, orders=8, commands=60)
    projector = Projector(db, event_mapper(), batch_size=5)
    projector.catch_up()
    before, at = snapshot(db), positions(db)
    assert set(at.values()) == {head(db)}

    for _ in range(2):  # twice in a row: no index or constraint name may collide
        rebuilt = maintenance.rebuild(db, event_mapper())
        assert rebuilt == {name: head(db) for name in TABLES}
        assert positions(db) == at
        assert snapshot(db) == before
        for name in TABLES:
            assert index_names(db, name) == expected_index_names(db, name), name
            for suffix in ("__rebuild", "__old"):
                assert not db.table_exists(name + suffix)
        assert maintenance.verify(db, event_mapper()) == []

    # Rebuilding some projections only.
    assert maintenance.rebuild(db, event_mapper(), ["daily_state_counts", "review_queue"]) == {
        "daily_state_counts": head(db),
        "review_queue": head(db),
    }
    assert snapshot(db) == before

    # The projector goes on from the kept positions into the swapped-in tables.
    more = random_history(app, seed=4712, orders=4, commands=30)
    assert projector.catch_up() > 0
    assert_read_models_match(app, db, [*history.order_ids.values(), *more.order_ids.values()])
    assert maintenance.verify(db, event_mapper()) == []


def test_rebuild_catches_events_the_live_tables_got_meanwhile(app, db):
    """Events the live projector applied while the rebuild ran are applied by the swap."""
    history = random_history(app, seed=99, orders=6, commands=40)
    projector = Projector(db, event_mapper(), batch_size=4)
    projector.catch_up()
    stop_at = head(db)
    more = random_history(app, seed=100, orders=3, commands=20)

    # The rebuild's first pass reads only up to `stop_at`; the live tables then move on.
    original = Projector.catch_up

    def rebuild_pass(self, stop=None, progress=None):
        if self.lock is not None:  # the live projector
            return original(self, stop=stop, progress=progress)
        done = original(self, stop=stop_at, progress=progress)
        assert original(projector) > 0  # meanwhile, the live tables move on
        return done

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Projector, "catch_up", rebuild_pass)
        result = maintenance.rebuild(db, event_mapper())
    assert result == {name: head(db) for name in TABLES}
    assert_read_models_match(app, db, [*history.order_ids.values(), *more.order_ids.values()])


# ================================================================= exactly once
def test_two_projectors_at_once_apply_every_page_exactly_once(settings, app, db):
    ids = simple_orders(app, 25)
    history = random_history(app, seed=12, orders=6, commands=40)
    total = head(db)
    dbs = [open_read_db(settings), open_read_db(settings)]
    projectors = [
        Projector(dbs[0], event_mapper(), batch_size=3),
        Projector(dbs[1], event_mapper(), batch_size=5),
    ]
    applied: list[int] = [0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(n: int) -> None:
        try:
            start.wait()
            applied[n] = projectors[n].catch_up()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
    finally:
        for d in dbs:
            d.close()

    # Every event applied once, by one or the other.
    assert sum(applied) == db.fetchone(f"SELECT COUNT(*) FROM {projectors[0].log.table}")[0]
    assert set(positions(db).values()) == {total}
    order_ids = [*ids, *history.order_ids.values()]
    assert_read_models_match(app, db, order_ids)
    transitions = sum(len(transitions_of(app, o)) for o in order_ids)
    all_counts = db.fetchone("SELECT SUM(orders) FROM daily_state_counts WHERE dimension = 'all'")[
        0
    ]
    assert all_counts == transitions
    # ... and the same tables as one projector alone (a rebuild).
    assert maintenance.verify(db, event_mapper()) == []


def test_a_page_is_never_applied_twice_on_a_stale_position(app, db):
    simple_orders(app, 3)
    projector = Projector(db, event_mapper(), batch_size=4)
    assert projector.run_once() == 4
    # 6 order events each, and since issue 20 three of the inventory's: the completion
    # creates the internet access and the router that depends on it (ServiceCreated twice,
    # ServiceDependentAdded)
    head = 3 * PER_ORDER
    assert projector.catch_up() == head - 4
    before = snapshot(db)

    with pytest.raises(PositionMoved), db.transaction():
        projector._advance(["order_summary", "daily_state_counts"], expected=4, new=head)
    with pytest.raises(PositionMoved), db.transaction():
        projector._advance(["order_summary"], expected=0, new=4)
    assert set(positions(db).values()) == {head}
    assert snapshot(db) == before


def test_a_racing_projector_without_the_lock_rolls_back_its_page(settings, app, db):
    """Were the lock ever bypassed, the compare-and-set on the position rolls back the page
    that lost the race: its daily counts are not added twice."""
    if settings.database.kind != "postgres":
        pytest.skip(
            "SQLite takes its single write lock when the page starts (BEGIN "
            "IMMEDIATE): two pages can't interleave there at all"
        )
    simple_orders(app, 4)
    other_db = open_read_db(settings)
    try:
        winner = Projector(other_db, event_mapper(), batch_size=10, lock=None)
        loser = Projector(db, event_mapper(), batch_size=10, lock=None)
        read = loser.log.read
        raced = []

        def read_then_race(*args, **kwargs):
            found = read(*args, **kwargs)
            if not raced:  # the loser has read its positions and page: the winner commits
                raced.append(winner.run_once())
            return found

        loser.log.read = read_then_race  # type: ignore[method-assign]
        with pytest.raises(PositionMoved):
            loser.run_once()
        assert raced == [10]
        assert set(positions(db).values()) == {10}
        loser.log.read = read  # type: ignore[method-assign]
        loser.catch_up()
    finally:
        other_db.close()
    assert (
        db.fetchone("SELECT SUM(orders) FROM daily_state_counts WHERE dimension = 'all'")[0]
        == 4 * 4
    )
    assert maintenance.verify(db, event_mapper()) == []


# =================================================================== lag / status
def test_status_shows_the_lag_until_caught_up(settings, app, db):
    projector = build_projector(settings, db)
    assert [(s.position, s.head, s.lag) for s in projector.status()] == [(0, 0, 0)] * len(TABLES)
    simple_orders(app, 5)
    head = 5 * PER_ORDER
    assert {(s.position, s.head, s.lag) for s in projector.status()} == {(0, head, head)}
    assert [s.name for s in projector.status()] == list(TABLES)

    projector.batch_size = 7
    assert projector.run_once() == 7
    assert {(s.position, s.lag) for s in projector.status()} == {(7, head - 7)}
    assert projector.catch_up() == head - 7
    assert {(s.position, s.head, s.lag) for s in projector.status()} == {(head, head, 0)}

    # New events show up as lag again, and only those are applied.
    order_id = app.handle(AGENT, cmd.DraftOrder(_header(1, 1))).order.id
    app.handle(AGENT, cmd.AddNote(order_id, "hello"))
    assert {(s.position, s.head, s.lag) for s in projector.status()} == {(head, head + 2, 2)}
    assert projector.catch_up() == 2
    assert {s.lag for s in projector.status()} == {0}


def test_each_projection_has_its_own_position_and_lag(app, db):
    """A projection behind the others shows its own lag; the next pages go to it alone
    (the others, at the head, are not applied twice)."""
    ids = simple_orders(app, 2)
    head = 2 * PER_ORDER
    projector = Projector(db, event_mapper(), batch_size=5)
    projector.catch_up()
    db.execute(f"UPDATE {POSITIONS.name} SET position = 6 WHERE name = 'order_summary'")
    assert {s.name: s.lag for s in projector.status()} == {
        **{name: 0 for name in TABLES},
        "order_summary": head - 6,
    }
    assert projector.run_once() == 5
    assert {s.name: s.lag for s in projector.status()}["order_summary"] == head - 11
    assert projector.catch_up() == head - 11
    assert {s.lag for s in projector.status()} == {0}
    assert_read_models_match(app, db, ids)


# ================================================================= bulk writes
BULK = Table(
    name="bulk_probe",
    columns=(
        ("id", "uuid"),
        ("k", "text"),
        ("note", "text"),
        ("doc", "json"),
        ("at", "timestamptz"),
        ("flag", "bool"),
        ("ratio", "numeric"),
        ("n", "int"),
        ("version", "int"),
    ),
    primary_key=("id", "k"),
)


def _probe_rows(db: ReadDb) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    cols = BULK.column_names
    return {
        (row[0], row[1]): dict(zip(cols, row, strict=True))  # type: ignore[misc]
        for row in db.rows(BULK, BULK.name)
    }


@pytest.mark.parametrize("copy_above", [0, 1000])  # binary COPY + staging / one VALUES
def test_bulk_upsert_never_moves_a_row_backwards(settings, app, db, monkeypatch, copy_above):
    monkeypatch.setattr(type(db), "copy_above", copy_above, raising=False)
    db.drop_table(BULK.name)
    db.create_table(BULK)
    ids = [uuid4() for _ in range(4)]
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def row(i: int, version: int, note: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": ids[i],
            "k": "a",
            "note": note,
            "doc": {"v": version, "x": [1, None]},
            "at": at,
            "flag": version % 2 == 0,
            "ratio": version / 3,
            "n": version,
            "version": version,
            **extra,
        }

    with db.transaction():
        db.upsert(BULK, BULK.name, [row(0, 5, "five"), row(1, 5, "five"), row(2, 5, "five")])
    with db.transaction():
        db.upsert(
            BULK,
            BULK.name,
            [
                row(0, 4, "older"),  # older than stored: kept as it was
                row(1, 5, "same"),  # the same version: kept as it was
                row(2, 6, "newer", at=date(2026, 5, 2)),  # newer: replaces (a date = UTC)
                row(3, 1, "new", doc=None, at=None),  # new: inserted
                # the same key twice in one call: the newer wins, as one by one
                row(3, 3, "newest"),
                row(3, 2, "between"),
            ],
        )
        # the staging table serves again in the same transaction
        db.upsert(BULK, BULK.name, [row(0, 7, "again")])
    found = _probe_rows(db)
    by_id = {str(i): n for n, i in enumerate(ids)}
    got = {by_id[k[0]]: (r["note"], r["version"]) for k, r in found.items()}
    assert got == {0: ("again", 7), 1: ("five", 5), 2: ("newer", 6), 3: ("newest", 3)}
    third = found[(str(ids[2]), "a")]
    assert third["at"] == "2026-05-02T00:00:00.000000+00:00"
    assert json.loads(third["doc"]) == {"v": 6, "x": [1, None]}
    assert third["flag"] is True and third["ratio"] == 2.0 and third["n"] == 6

    # Counters add up; unguarded rows are replaced; outside a transaction too.
    db.upsert(BULK, BULK.name, [row(1, 1, "x", n=10), row(1, 1, "x", n=5)], guard=None, add=("n",))
    assert _probe_rows(db)[(str(ids[1]), "a")]["n"] == 5 + 10 + 5
    db.upsert(BULK, BULK.name, [row(2, 1, "unguarded")], guard=None)
    assert _probe_rows(db)[(str(ids[2]), "a")]["note"] == "unguarded"

    # A transaction that fails after a write leaves nothing, and the next one works.
    with pytest.raises(RuntimeError), db.transaction():
        db.upsert(BULK, BULK.name, [row(0, 99, "lost")])
        raise RuntimeError("rolled back")
    with db.transaction():
        db.insert(BULK, BULK.name, [{**row(0, 1, "inserted"), "k": "b"}])
        db.upsert(BULK, BULK.name, [row(0, 8, "kept")])
    found = _probe_rows(db)
    assert found[(str(ids[0]), "a")]["note"] == "kept"
    assert found[(str(ids[0]), "b")]["note"] == "inserted"
    db.drop_table(BULK.name)


@pytest.mark.parametrize("build_batch", [1, 4, 10_000])
def test_rebuild_with_pages_splitting_orders_equals_the_live_tables(
    app, db, monkeypatch, build_batch
):
    """Rebuild inserts the rows of orders created in the page and upserts the others;
    with pages that split orders, and writes by COPY and by one statement, it ends with
    the same rows as the live projector, and `verify` agrees."""
    monkeypatch.setattr(maintenance, "BUILD_BATCH", build_batch)
    history = random_history(app, seed=2026, orders=12, commands=90)
    ids = [*history.order_ids.values(), *simple_orders(app, 3)]
    Projector(db, event_mapper(), batch_size=7).catch_up()
    live = snapshot(db)
    assert_read_models_match(app, db, ids)
    monkeypatch.setattr(type(db), "copy_above", 0, raising=False)  # every write by COPY
    maintenance.rebuild(db, event_mapper())
    assert snapshot(db) == live
    monkeypatch.setattr(type(db), "copy_above", 10_000, raising=False)  # none by COPY
    assert maintenance.verify(db, event_mapper()) == []
    for name in TABLES:
        assert index_names(db, name) == expected_index_names(db, name), name


def test_live_pages_written_by_copy_equal_the_aggregates(app, db, monkeypatch):
    monkeypatch.setattr(type(db), "copy_above", 0, raising=False)
    history = random_history(app, seed=99, orders=10, commands=70)
    Projector(db, event_mapper(), batch_size=6).catch_up()
    assert_read_models_match(app, db, list(history.order_ids.values()))
    monkeypatch.setattr(type(db), "copy_above", 10_000, raising=False)
    assert maintenance.verify(db, event_mapper()) == []

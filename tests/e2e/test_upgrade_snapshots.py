"""Upgrade of issue 17: order snapshots of format 1 are dropped, orders load as a full
replay, new snapshots are format 2, and four-eyes holds on old orders that wait in review.

What this shows, and how (honestly): the recorded stores of tests/fixtures/upgrade_doors
(written by the release before issue 16, e69602e; both backends) hold no snapshot at all
(no order reached the 50 events of the snapshot interval). So the test builds the case:
on one copy of the fixture, this code replays every order and dumps its state at some
version (the head, or one or two versions earlier), and leaves out what format 2 added
(`contributors`, `proposal`, `held_for_proposal`, `format`); the remaining keys are
checked to be exactly the fields of e69602e's OrderSnapshotState (listed below from
`git show e69602e:domain/snapshot.py`), so each row has the shape the old release wrote,
with the values this code's replay gives (not bytes the old release wrote). Those rows go
into the snapshot table of a second, untouched copy (schema version 3, as recorded), and
this code reads that copy only after `serviceorders db init` (migrations 4 and 5). This
code cannot read such a row (an old snapshot has no contributors: four-eyes would open),
which is why migration 5 deletes them. Then:

- `db init` leaves no snapshot; `audit verify` exits 0;
- every order loads, and equals a replay of its events from the first (no snapshot);
- snapshots taken now are of the current format (2 then, 3 since issue 19), with the
  contributors rebuilt from the old events, and every order loaded from them still
  equals the replay, and `audit verify` (which checks each snapshot against a replay)
  exits 0;
- on the old orders waiting in review after an in-review revision, whoever drafted,
  changed lines, submitted or revised may neither approve nor reject (the CLI and the
  application, loading from a format-2 snapshot); a revision by someone other than the
  submitter (the console / v1 orders that crm revised) counts too, which the old rule
  (submitter only) missed; a third person approves.
"""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from builders import ctx
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from serviceorders.bootstrap import build_application, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.errors import ANSWERS, NotPermitted
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.snapshot import FORMAT
from serviceorders.domain.values import Role
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade_doors"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text("utf-8"))
EXE = shutil.which("serviceorders")

# OrderSnapshotState's fields at e69602e (the release that recorded the fixture): format 1.
FORMAT_1_FIELDS = frozenset(
    {
        "created_on",
        "modified_on",
        "header",
        "state",
        "state_since",
        "items",
        "flags",
        "notes",
        "submitted_by",
        "decided_by",
        "submitted_at",
        "decided_at",
        "rejection_reason",
        "waiting_reason",
        "prior_state",
        "cancellation_request_id",
        "cancellation_reason",
        "cancellation_requested_by",
        "point_of_no_return",
        "deleted",
        "revision",
        "head_hash",
    }
)
ADDED_IN_FORMAT_2 = frozenset({"contributors", "proposal", "held_for_proposal", "format"})
# Format 3 (issue 19; tests/e2e/test_upgrade_outcomes.py): not in a format-1 row either.
ADDED_IN_FORMAT_3 = frozenset(
    {"outcomes", "milestones", "cancellation_information", "item_states_before_cancellation"}
)
# Format 4 (issue 20): what the inventory held of each item naming a service.
ADDED_IN_FORMAT_4 = frozenset({"inventory"})
# The events by which someone contributes to an order's content (domain/events.py).
CONTRIBUTING = frozenset(
    {"OrderDrafted", "LineAdded", "LineConfigured", "LineRemoved", "OrderSubmitted", "OrderRevised"}
)


def run(*args: str, url: str, expect: int = 0, timeout: float = 300) -> str:
    assert EXE, "the serviceorders console script is not installed"
    done = subprocess.run(
        [EXE, "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == expect, (
        f"serviceorders {' '.join(args)} exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done.stdout + done.stderr


@pytest.fixture(params=["sqlite", "postgres"])
def copies(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> tuple[str, Callable[[str], str]]:
    """(backend, make): `make(name)` is the URL of a fresh copy of the recorded store."""
    backend = request.param

    def make(name: str) -> str:
        if backend == "sqlite":
            copy = tmp_path / f"{name}.db"
            copy.write_bytes(gzip.decompress((FIXTURES / "doors.db.gz").read_bytes()))
            return f"sqlite:///{copy}"
        return new_pg_database(f"so_upg_snap_{name}", FIXTURES / "doors-postgres.sql.gz")

    return backend, make


def settings_for(url: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": url})


@contextmanager
def application(url: str) -> Iterator[ServiceOrders]:
    app = build_application(settings_for(url))
    try:
        yield app
    finally:
        app.close()


@contextmanager
def read_db(url: str) -> Iterator[ReadDb]:
    db = open_read_db(settings_for(url))
    try:
        yield db
    finally:
        db.close()


def replayed(app: ServiceOrders, order_id: UUID) -> ServiceOrder:
    """The order from its first event to its last (no snapshot)."""
    order: Any = functools.reduce(lambda agg, e: e.mutate(agg), app.events.get(order_id), None)
    assert order is not None
    return order


def snapshot_rows(db: ReadDb) -> list[tuple[Any, int, str, dict[str, Any]]]:
    return [
        (oid, version, topic, orjson.loads(bytes(state)))
        for oid, version, topic, state in db.fetchall(
            f"SELECT originator_id, originator_version, topic, state FROM {db.snapshots_table}"
        )
    ]


def format_1_rows(url: str, order_ids: list[str]) -> list[tuple[Any, int, str, bytes]]:
    """Snapshot rows in the shape the old release wrote (see the module's docstring): this
    code's snapshot at the head or one or two versions before, without format 2's keys."""
    with application(url) as app:
        for n, order_id in enumerate(order_ids):
            head = app.get_order(UUID(order_id)).version
            app.take_snapshot(UUID(order_id), version=max(1, head - n % 3))
    with read_db(url) as db:
        rows = []
        for oid, version, topic, stored in snapshot_rows(db):
            added = ADDED_IN_FORMAT_2 | ADDED_IN_FORMAT_3 | ADDED_IN_FORMAT_4
            state = {k: v for k, v in stored["state"].items() if k not in added}
            assert set(state) == FORMAT_1_FIELDS, set(state) ^ FORMAT_1_FIELDS
            rows.append((oid, version, topic, orjson.dumps({**stored, "state": state})))
    assert len(rows) == len(order_ids)
    return rows


def four_eyes_cases(backend: str) -> dict[str, set[str]]:
    """The recorded orders waiting in review after a revision in review -> who contributed
    (from the recorded plan and the events, read below)."""
    plan = EXPECTED["backends"][backend]["plan"]
    return {
        order_id: set()
        for order_id, p in plan.items()
        if p["path"] == "revised_in_review" and p["state"] == "acknowledged"
    }


def test_format_1_snapshots_are_dropped_and_four_eyes_holds_on_old_orders(
    copies: tuple[str, Callable[[str], str]],
) -> None:
    backend, make = copies
    order_ids = sorted(EXPECTED["backends"][backend]["orders"])

    # The old snapshots, made on one copy, stored in a second, untouched one (schema 3).
    source, url = make("source"), make("old")
    run("db", "init", url=source)
    old_rows = format_1_rows(source, order_ids)
    with read_db(url) as db:
        assert not snapshot_rows(db), "the recording holds no snapshots"
        with db.transaction():
            db.executemany(
                f"INSERT INTO {db.snapshots_table} "
                "(originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                old_rows,
            )
        assert len(snapshot_rows(db)) == len(order_ids)
    # This code cannot read a format-1 snapshot (no contributors): why migration 5 exists.
    oid, version, topic, state = old_rows[0]
    with pytest.raises(MapperDeserialisationError, match="contributors"):
        PydanticMapper(transcoder=OrjsonTranscoder()).to_domain_event(
            StoredEvent(UUID(str(oid)), version, topic, state)
        )

    # The upgrade.
    run("db", "init", url=url)
    with read_db(url) as db:
        assert snapshot_rows(db) == []
    run("audit", "verify", url=url)

    cases = four_eyes_cases(backend)
    assert len(cases) >= 10
    with application(url) as app:
        # Every order loads, equal to a full replay (no snapshot is left to load from).
        for order_id in order_ids:
            loaded, replay = app.get_order(UUID(order_id)), replayed(app, UUID(order_id))
            assert loaded.version == replay.version, order_id
            assert loaded.snapshot_state() == replay.snapshot_state(), order_id
        # New snapshots are format 2, and loading from them equals the replay too.
        for order_id in order_ids:
            app.take_snapshot(UUID(order_id))
        for order_id in order_ids:
            loaded, replay = app.get_order(UUID(order_id)), replayed(app, UUID(order_id))
            assert loaded.snapshot_state() == replay.snapshot_state(), order_id
        revisers: dict[str, set[str]] = {}
        for order_id in cases:
            history = app.history(UUID(order_id))
            cases[order_id] = {e.actor.id for e in history if type(e).__name__ in CONTRIBUTING}
            submitter = next(e.actor.id for e in history if type(e).__name__ == "OrderSubmitted")
            revisers[order_id] = {
                e.actor.id for e in history if type(e).__name__ == "OrderRevised"
            } - {submitter}
    with read_db(url) as db:
        new_rows = snapshot_rows(db)
    assert len(new_rows) == len(order_ids)
    assert {row[3]["state"]["format"] for row in new_rows} == {FORMAT}  # 2 then, 3 since #19
    contributors = {UUID(str(row[0])): row[3]["state"]["contributors"] for row in new_rows}
    for order_id, who in cases.items():
        assert set(contributors[UUID(order_id)]) == who, order_id
    run("audit", "verify", url=url)  # each snapshot against a replay

    # Four-eyes on the old orders in review: every contributor is refused, loading from
    # the format-2 snapshot; among them revisers other than the submitter (the old rule
    # counted the submitter only).
    revised_by_another = sorted(order_id for order_id, who in revisers.items() if who)
    assert revised_by_another, "the fixture has in-review revisions by someone else"
    with application(url) as app:
        for order_id, who in cases.items():
            for actor in sorted(who):
                for command in (cmd.Approve(UUID(order_id)), cmd.Reject(UUID(order_id), "no")):
                    with pytest.raises(NotPermitted, match="four-eyes"):
                        app.handle(ctx(actor, Role.MANAGER), command)
        third = app.handle(ctx("upgrade-third", Role.MANAGER), cmd.Approve(UUID(min(cases))))
        assert third.order.state == "inProgress"
    # The same through the CLI (the operator, acting as the declared actor): a reviser.
    target = revised_by_another[0]
    refused = run(
        "order",
        "--actor",
        sorted(revisers[target])[0],
        "approve",
        target,
        url=url,
        expect=ANSWERS["not_permitted"].cli_exit,
    )
    assert "refused (not_permitted)" in refused and "four-eyes" in refused

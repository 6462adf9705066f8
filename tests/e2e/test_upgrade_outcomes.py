"""Upgrade of issue 19: order snapshots of format 2 are dropped (migration 7), every old
order loads as a full replay with the same state as before, and gains the outcomes and
milestones its events carried all along; new snapshots are format 4 (issue 20 added
`inventory`; the same upgrade from issue 19's format 3 runs beside it).

What this shows, and how (honestly, as tests/e2e/test_upgrade_snapshots.py does for format
1): the recorded stores of tests/fixtures/upgrade_doors (written by e69602e, before issues
17-19; both backends) hold no snapshot. So the test builds the case: on one copy, brought
to the current schema, this code snapshots every order (at its head or one or two versions
before) and leaves out what format 3 added (`outcomes`, `milestones`,
`cancellation_information`, `item_states_before_cancellation`), with `format` 2; the
remaining keys are checked to be exactly format 2's fields. The rows then go into a second
copy brought to schema 6 only (the schema of the release before this one), which this
code reads only after `serviceorders db init` (migrations 7 and on). Then:

- `db init` leaves no snapshot; `audit verify` exits 0;
- every order loads, equal to a replay of its events from the first;
- its state and every item's state are those the old release's read models recorded
  (expected.json), except that the open items of an order assessing (or carrying out) a
  cancellation now mirror it (assessingCancellation / pendingCancellation);
- its outcomes and milestones are those its events carry, one by one (rejections, failed
  items, denied cancellations with their reasons; approvals, items started and completed,
  points of no return);
- snapshots taken now are format 4, loading from them equals the replay, `audit verify`
  exits 0.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from builders import cli
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from serviceorders import schema
from serviceorders.bootstrap import build_application, open_read_db
from serviceorders.domain import events as ev
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import ItemState, OrderState
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade_doors"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text("utf-8"))

# OrderSnapshotState's fields of format 2 (issue 17, up to this issue).
FORMAT_2_FIELDS = frozenset(
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
        "contributors",
        "proposal",
        "held_for_proposal",
        "format",
    }
)
ADDED_IN_FORMAT_3 = frozenset(
    {"outcomes", "milestones", "cancellation_information", "item_states_before_cancellation"}
)
ADDED_IN_FORMAT_4 = frozenset({"inventory"})  # issue 20: what the inventory held per item

# The releases upgraded from: (snapshot format, the fields it lacks, its schema version, a
# field this code misses when reading such a snapshot).
OLD_RELEASES = {
    "format 2 (issue 17)": (2, ADDED_IN_FORMAT_3 | ADDED_IN_FORMAT_4, 6, "outcomes"),
    "format 3 (issue 19)": (3, ADDED_IN_FORMAT_4, 8, "inventory"),
}


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
        return new_pg_database(f"so_upg_out_{name}", FIXTURES / "doors-postgres.sql.gz")

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
    order: Any = functools.reduce(lambda agg, e: e.mutate(agg), app.events.get(order_id), None)
    return order


def snapshot_rows(db: ReadDb) -> list[tuple[Any, int, str, dict[str, Any]]]:
    return [
        (oid, version, topic, orjson.loads(bytes(state)))
        for oid, version, topic, state in db.fetchall(
            f"SELECT originator_id, originator_version, topic, state FROM {db.snapshots_table}"
        )
    ]


def old_format_rows(
    url: str, order_ids: list[str], fmt: int, lacks: frozenset[str]
) -> list[tuple[Any, int, str, bytes]]:
    """Snapshot rows in an older format's shape (see the module's docstring)."""
    with application(url) as app:
        for n, order_id in enumerate(order_ids):
            head = app.get_order(UUID(order_id)).version
            app.take_snapshot(UUID(order_id), version=max(1, head - n % 3))
    with read_db(url) as db:
        rows = []
        for oid, version, topic, stored in snapshot_rows(db):
            state = {k: v for k, v in stored["state"].items() if k not in lacks}
            state["format"] = fmt
            fields = FORMAT_2_FIELDS | (ADDED_IN_FORMAT_3 if fmt == 3 else frozenset())
            assert set(state) == fields, set(state) ^ fields
            rows.append((oid, version, topic, orjson.dumps({**stored, "state": state})))
    assert len(rows) == len(order_ids)
    return rows


def told(history: list[ev.OrderEvent]) -> tuple[list[tuple[str, str]], list[str]]:
    """The outcomes (code, message) and milestone names the events carry, read directly."""
    outcomes: list[tuple[str, str]] = []
    milestones: list[str] = []
    for e in history:
        if isinstance(e, ev.OrderRejected):
            outcomes.append(("rejected", e.reason))
        elif isinstance(e, ev.ProposalRefused):
            outcomes.append(("proposal_refused", e.reason))
        elif isinstance(e, ev.CancellationDenied):
            outcomes.append(("cancellation_denied", e.reason))
        elif isinstance(e, ev.ItemStateChanged) and e.state is ItemState.FAILED:
            outcomes.append(("item_failed", e.reason or f"order item {e.item_id} failed"))
        elif isinstance(e, ev.OrderApproved):
            milestones.append("approved")
        elif isinstance(e, ev.PointOfNoReturnReached):
            milestones.append("pointOfNoReturn")
        elif isinstance(e, ev.ItemStateChanged) and e.state is ItemState.IN_PROGRESS:
            milestones.append("itemStarted")
        elif isinstance(e, ev.ItemStateChanged) and e.state is ItemState.COMPLETED:
            milestones.append("itemCompleted")
    return outcomes, milestones


def old_item_states(backend: str) -> dict[tuple[str, str], str | None]:
    """(order id, item id) -> the item's state as the old release's read model has it."""
    table = EXPECTED["backends"][backend]["read_models"]["order_item"]
    columns = table["columns"]
    at = columns.index("order_id"), columns.index("item_id"), columns.index("state")
    return {(str(r[at[0]]), str(r[at[1]])): r[at[2]] for r in table["rows"]}


@pytest.mark.parametrize("release", sorted(OLD_RELEASES))
def test_old_snapshots_are_dropped_and_old_orders_gain_their_outcomes(
    copies: tuple[str, Callable[[str], str]], release: str
) -> None:
    """Issue 20 added format 4 (`inventory`, migration 9): the same upgrade from the
    release of issue 19 (format 3, schema 8), beside the one from issue 17's (format 2)."""
    fmt, lacks, old_schema, missing = OLD_RELEASES[release]
    backend, make = copies
    order_ids = sorted(EXPECTED["backends"][backend]["orders"])
    plan = EXPECTED["backends"][backend]["plan"]

    source, url = make("source"), make("old")
    cli("db", "init", url=source)
    rows = old_format_rows(source, order_ids, fmt, lacks)
    with read_db(url) as db:
        schema.migrate(db, schema.MIGRATIONS[:old_schema])  # that release's schema
        assert schema.version(db) == old_schema
        assert not snapshot_rows(db), "the recording holds no snapshots"
        with db.transaction():
            db.executemany(
                f"INSERT INTO {db.snapshots_table} "
                "(originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                rows,
            )
        assert len(snapshot_rows(db)) == len(order_ids)
    # This code cannot read an older snapshot (no outcomes, no inventory): why migrations 7
    # and 9 exist.
    oid, version, topic, state = rows[0]
    with pytest.raises(MapperDeserialisationError, match=missing):
        PydanticMapper(transcoder=OrjsonTranscoder()).to_domain_event(
            StoredEvent(UUID(str(oid)), version, topic, state)
        )

    cli("db", "init", url=url)  # the upgrade
    with read_db(url) as db:
        assert snapshot_rows(db) == []
        assert schema.version(db) == schema.CURRENT
    cli("audit", "verify", url=url)

    before = old_item_states(backend)
    seen = {"outcomes": 0, "milestones": 0, "mirrored": 0}
    with application(url) as app:
        for order_id in order_ids:
            oid = UUID(order_id)
            loaded, replay = app.get_order(oid), replayed(app, oid)
            assert loaded.snapshot_state() == replay.snapshot_state(), order_id
            assert loaded.state.value == plan[order_id]["state"], order_id
            mirror = {
                OrderState.ASSESSING_CANCELLATION: ItemState.ASSESSING_CANCELLATION,
                OrderState.PENDING_CANCELLATION: ItemState.PENDING_CANCELLATION,
            }.get(loaded.state)
            for item_id, item in loaded.items.items():
                old = before.get((order_id, item_id))
                if (order_id, item_id) not in before:
                    continue  # a deleted order's items are in no read model
                now = item.state.value if item.state else None
                if mirror is not None and old is not None and not ItemState(old).is_final:
                    assert now == mirror.value, (order_id, item_id, old)
                    seen["mirrored"] += 1
                else:
                    assert now == old, (order_id, item_id)
            outcomes, milestones = told(list(app.events.get(oid)))
            assert [(o.code, o.message) for o in loaded.outcomes] == outcomes, order_id
            assert [m.name for m in loaded.milestones] == milestones, order_id
            seen["outcomes"] += len(outcomes)
            seen["milestones"] += len(milestones)
        assert seen["outcomes"] >= 26 + 14  # every rejection and denial at least
        assert seen["milestones"] >= 208  # every approval at least
        assert seen["mirrored"] > 0  # the fixture's orders assessing a cancellation

        for order_id in order_ids:  # new snapshots: this format, equal to the replay
            app.take_snapshot(UUID(order_id))
        for order_id in order_ids:
            loaded, replay = app.get_order(UUID(order_id)), replayed(app, UUID(order_id))
            assert loaded.snapshot_state() == replay.snapshot_state(), order_id
    with read_db(url) as db:
        formats = {row[3]["state"]["format"] for row in snapshot_rows(db)}
    assert formats == {4}
    cli("audit", "verify", url=url)  # each snapshot against a replay

"""Tamper evidence (docs/audit.md): every change made directly in the database is found,
with the right order and first bad version; a clean store verifies clean.

Each test builds five orders through the application (two events each, checkpoint 1, four
more events each, checkpoint 2), then tampers with the tables by SQL, as an attacker with
database write access would.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from serviceorders.audit.checkpoints import (
    Checkpointer,
    create_checkpoint,
    export_checkpoints,
    load_checkpoints,
)
from serviceorders.audit.export import export
from serviceorders.audit.report import Report
from serviceorders.audit.store import Store
from serviceorders.audit.verify import verify, verify_file
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.chain import event_hash
from serviceorders.domain.events import NoteAdded, OrderHeld
from serviceorders.projections import maintenance
from serviceorders.projections.runner import Projector
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb
from serviceorders.storage.seen import load as seen_heads

pytestmark = pytest.mark.integration

KEY = "audit-secret-key"
ORDERS = 5


def clear_audit_tables(db: ReadDb) -> None:
    """The session's PostgreSQL database outlives a test; its checkpoints must not."""
    db.execute("DELETE FROM audit_checkpoint_head")
    db.execute("DELETE FROM audit_checkpoint")
    db.execute("DELETE FROM audit_seen_head")


class Tamper:
    """Direct SQL on the events, snapshots and checkpoint tables (both dialects)."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db
        self.store = Store(db)

    def key(self, order_id: UUID) -> Any:
        return self.store.key(order_id)

    def rows(self, order_id: UUID) -> list[tuple[int, str, dict[str, Any]]]:
        return [
            (int(v), t, orjson.loads(bytes(s)))
            for v, t, s in self.db.fetchall(
                f"SELECT originator_version, topic, state FROM {self.store.events} "
                "WHERE originator_id = %s ORDER BY originator_version",
                (self.key(order_id),),
            )
        ]

    def state(self, order_id: UUID, version: int) -> dict[str, Any]:
        return next(s for v, _, s in self.rows(order_id) if v == version)

    def topic(self, order_id: UUID, version: int) -> str:
        return next(t for v, t, _ in self.rows(order_id) if v == version)

    def set_state(self, order_id: UUID, version: int, state: dict[str, Any] | bytes) -> None:
        data = state if isinstance(state, bytes) else orjson.dumps(state)
        self.db.execute(
            f"UPDATE {self.store.events} SET state = %s WHERE originator_id = %s "
            "AND originator_version = %s",
            (data, self.key(order_id), version),
        )

    def delete(self, order_id: UUID, *versions: int) -> None:
        for version in versions:
            self.db.execute(
                f"DELETE FROM {self.store.events} WHERE originator_id = %s AND "
                "originator_version = %s",
                (self.key(order_id), version),
            )

    def delete_order(self, order_id: UUID) -> None:
        self.db.execute(
            f"DELETE FROM {self.store.events} WHERE originator_id = %s", (self.key(order_id),)
        )

    def insert(self, order_id: UUID, version: int, topic: str, state: dict[str, Any]) -> None:
        self.db.execute(
            f"INSERT INTO {self.store.events} (originator_id, originator_version, "
            "topic, state) VALUES (%s, %s, %s, %s)",
            (self.key(order_id), version, topic, orjson.dumps(state)),
        )

    def rehash_from(
        self, order_id: UUID, version: int, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Change one event and re-hash it and every later one: a consistent chain."""
        rows = self.rows(order_id)
        previous = rows[version - 2][2]["hash"] if version > 1 else "0" * 64
        for v, topic, state in rows[version - 1 :]:
            if v == version:
                change(state)
            state["prev_hash"] = previous
            state["hash"] = event_hash(topic, order_id, v, state)
            previous = state["hash"]
            self.set_state(order_id, v, state)

    def snapshot(self, order_id: UUID, version: int) -> dict[str, Any]:
        row = self.db.fetchone(
            f"SELECT state FROM {self.store.snapshots} WHERE originator_id "
            "= %s AND originator_version = %s",
            (self.key(order_id), version),
        )
        assert row is not None, f"no snapshot of {order_id} at v{version}"
        return orjson.loads(bytes(row[0]))

    def set_snapshot(self, order_id: UUID, version: int, state: dict[str, Any]) -> None:
        self.db.execute(
            f"UPDATE {self.store.snapshots} SET state = %s WHERE originator_id = "
            "%s AND originator_version = %s",
            (orjson.dumps(state), self.key(order_id), version),
        )


@dataclass
class World:
    settings: Settings
    make_settings: Callable[..., Settings]
    app: Any
    db: ReadDb
    tamper: Tamper
    orders: list[UUID]

    def verify(self, key: str | None = None, **kw: Any) -> Report:
        return on_own_db(self.settings, lambda db: verify(db, key=key, **kw))

    def checkpoint(self, key: str | None = None) -> Any:
        return on_own_db(self.settings, lambda db: create_checkpoint(db, key=key))


def on_own_db(settings: Settings, fn: Callable[[ReadDb], Any]) -> Any:
    """`fn` on a connection of its own, as a separate `audit` process would run it."""
    db = open_read_db(settings)
    try:
        return fn(db)
    finally:
        db.close()


def build(app: Any, actors: Any, samples: Any, first: int, count: int) -> list[UUID]:
    return [
        app.handle(
            actors.upstream,
            cmd.ReceiveOrder(samples.header(f"audit-{i}"), tuple(samples.items())),
        ).order.id
        for i in range(first, first + count)
    ]


def advance(app: Any, actors: Any, order_id: UUID) -> None:
    app.handle(actors.manager, cmd.Approve(order_id, note="go"))  # v3
    app.handle(actors.fulfilment, cmd.AddNote(order_id, "survey booked"))  # v4 (snapshot)
    app.handle(actors.fulfilment, cmd.Hold(order_id, "access denied"))  # v5
    app.handle(actors.fulfilment, cmd.Resume(order_id))  # v6


@pytest.fixture
def world(
    settings: Settings,
    make_settings: Callable[..., Settings],
    open_app: Any,
    actors: Any,
    samples: Any,
    request: pytest.FixtureRequest,
) -> Iterator[World]:
    key = getattr(request, "param", None)
    app = open_app(make_settings(snapshot_interval=4))
    db = open_read_db(settings)
    clear_audit_tables(db)
    orders = build(app, actors, samples, 0, ORDERS)
    assert on_own_db(settings, lambda db: create_checkpoint(db, key=key)).seq == 1
    for order_id in orders:
        advance(app, actors, order_id)
    assert on_own_db(settings, lambda db: create_checkpoint(db, key=key)).seq == 2
    try:
        yield World(settings, make_settings, app, db, Tamper(db), orders)
    finally:
        clear_audit_tables(db)
        db.close()


def only_broken(report: Report) -> dict[str, tuple[int, str]]:
    return {oid: (p.version, p.kind) for oid, p in report.broken_orders().items()}


def assert_one_broken(report: Report, order_id: UUID, version: int, kind: str) -> None:
    assert not report.ok
    assert only_broken(report) == {str(order_id): (version, kind)}, report.lines()


# ------------------------------------------------------------------ clean store
def test_a_clean_store_verifies_clean(world: World) -> None:
    report = world.verify()
    assert report.ok, report.lines()
    assert (report.orders, report.events, report.checkpoints) == (ORDERS, ORDERS * 6, 2)
    assert report.snapshots == ORDERS  # one at v4 each, all equal to a replay
    assert world.verify(KEY).checkpoint_problems  # unsigned checkpoints, a key now set
    assert world.verify(KEY, unsigned_up_to=2).ok


def test_checkpoints_are_chained_and_cover_every_head(world: World) -> None:
    first, second = load_checkpoints(world.db)
    assert second.prev_digest == first.digest
    assert (first.order_count, second.order_count) == (ORDERS, ORDERS)
    assert {c[0] for c in first.changes} == {str(o) for o in world.orders}
    assert {c[1] for c in second.changes} == {6}
    assert second.position == Store(world.db).head()
    again = world.checkpoint()  # nothing new since: a no-op
    assert (again.seq, again.fresh) == (2, False)
    assert len(load_checkpoints(world.db)) == 2


@pytest.mark.parametrize("world", [KEY], indirect=True)
def test_signed_checkpoints_verify_with_the_key_only(world: World) -> None:
    assert all(c.hmac for c in load_checkpoints(world.db))
    assert world.verify(KEY).ok
    wrong = world.verify("another key")
    assert {(p.seq, p.kind) for p in wrong.checkpoint_problems} == {(1, "hmac"), (2, "hmac")}
    assert "audit-secret-key" not in repr(world.make_settings(audit_hmac_key=KEY))


# ----------------------------------------------------------------- events
def test_altered_event_state(world: World) -> None:
    order = world.orders[0]
    state = world.tamper.state(order, 3)
    state["note"] = "approved without review"  # the stored hash is kept
    world.tamper.set_state(order, 3, state)
    assert_one_broken(world.verify(), order, 3, "altered")


def test_altered_state_bytes_that_no_longer_decode(world: World) -> None:
    order = world.orders[1]
    world.tamper.set_state(order, 2, b"\x00garbage")
    assert_one_broken(world.verify(), order, 2, "altered")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"hash_rule": "sha3"}, "unknown hash rule 'sha3'"),
        ({"hash_rule": None}, "unknown hash rule None"),  # absent is legacy; null is not
        ({"note": 2**60}, "exceeds safe integer domain"),  # "jcs" cannot write it
    ],
)
def test_a_state_its_rule_cannot_hash_is_reported_altered_not_a_crash(
    world: World, change: dict[str, Any], why: str, tmp_path: Path
) -> None:
    """Tampering that leaves nothing to hash (issue 18): reported, live and offline."""
    order = world.orders[0]
    world.tamper.set_state(order, 3, {**world.tamper.state(order, 3), **change})
    report = world.verify()
    assert_one_broken(report, order, 3, "altered")
    assert why in report.order_problems[0].detail
    out = io.StringIO()
    on_own_db(world.settings, lambda db: export(db, out))
    path = tmp_path / "export.jsonl"
    path.write_text(out.getvalue(), "utf-8")
    assert_one_broken(verify_file(path), order, 3, "altered")


def test_deleted_middle_event(world: World) -> None:
    order = world.orders[1]
    world.tamper.delete(order, 3)
    assert_one_broken(world.verify(), order, 3, "deleted")


def test_deleted_newest_events_covered_by_a_checkpoint(world: World) -> None:
    order = world.orders[2]
    world.tamper.delete(order, 6, 5)  # the chain v1..v4 is intact on its own
    report = world.verify()
    assert_one_broken(report, order, 5, "head_moved_back")
    assert "checkpoint 2" in report.broken_orders()[str(order)].detail


def test_deleted_whole_order_covered_by_a_checkpoint(world: World) -> None:
    order = world.orders[3]
    world.tamper.delete_order(order)
    report = world.verify()
    assert_one_broken(report, order, 1, "missing")
    assert not report.checkpoint_problems, report.lines()


def test_newest_events_deleted_before_a_checkpoint_or_the_projector_read_them_go_unnoticed(
    world: World, actors: Any
) -> None:
    """The documented limit: an event read by no projector is protected only by the next
    checkpoint (or anchor). (No projector runs here.)"""
    order = world.orders[0]
    world.app.handle(actors.fulfilment, cmd.AddNote(order, "after the checkpoint"))  # v7
    world.tamper.delete(order, 7)
    report = world.verify()
    assert report.ok, report.lines()
    world.app.handle(actors.fulfilment, cmd.AddNote(order, "again"))  # v7 again, then checkpointed
    world.checkpoint()
    world.tamper.delete(order, 7)
    assert_one_broken(world.verify(), order, 7, "head_moved_back")


def test_inserted_forged_event(world: World) -> None:
    order = world.orders[4]
    world.tamper.insert(order, 7, world.tamper.topic(order, 2), world.tamper.state(order, 2))
    report = world.verify()
    assert_one_broken(report, order, 7, "inserted")
    assert "copy of v2" in report.broken_orders()[str(order)].detail


def test_reordered_events(world: World) -> None:
    order = world.orders[0]
    note, held = world.tamper.state(order, 4), world.tamper.state(order, 5)
    assert world.tamper.topic(order, 4) == NoteAdded.TOPIC
    assert world.tamper.topic(order, 5) == OrderHeld.TOPIC
    world.tamper.set_state(order, 4, held)
    world.tamper.set_state(order, 5, note)
    report = world.verify()
    assert_one_broken(report, order, 4, "reordered")
    assert not report.snapshot_problems  # its snapshot (v4) is not checked: chain broken
    assert any("not checked" in n for n in report.notes)


@pytest.mark.parametrize("world", [None, KEY], indirect=True)
def test_consistently_rewritten_chain_is_caught_by_the_checkpoints(
    world: World, chain_tools: Any
) -> None:
    order = world.orders[1]
    world.tamper.rehash_from(order, 3, lambda s: s.update(note="approved by nobody"))
    assert chain_tools.chain_break(chain_tools.stored_rows(world.app, order)) is None
    report = world.verify(KEY if load_checkpoints(world.db)[0].hmac else None)
    # checkpoint 1 recorded v2 (still matching), checkpoint 2 recorded another v6 hash
    assert_one_broken(report, order, 3, "rewritten")
    assert not report.checkpoint_problems, report.lines()
    # its snapshot (v4) recorded the old head hash: it no longer equals a replay
    assert [(p.order_id, p.version, p.kind) for p in report.snapshot_problems] == [
        (str(order), 4, "differs")
    ]


def _attacker_recomputes_checkpoints(world: World, attacker_key: str | None) -> None:
    # a thorough attacker drops the rewritten order's snapshots (their head_hash betrays it)
    world.db.execute(f"DELETE FROM {world.tamper.store.snapshots}")
    world.db.execute("DELETE FROM audit_checkpoint_head")
    world.db.execute("DELETE FROM audit_checkpoint")
    assert create_checkpoint(world.db, key=attacker_key).seq == 1


def test_rewrite_with_recomputed_checkpoints_needs_an_anchor_without_a_key(
    world: World, tmp_path: Path
) -> None:
    anchor = tmp_path / "anchor.json"
    anchor.write_bytes(orjson.dumps(export_checkpoints(world.db, all_checkpoints=True)))
    order = world.orders[2]
    world.tamper.rehash_from(order, 1, lambda s: s.update(correlation_id="forged"))
    _attacker_recomputes_checkpoints(world, None)
    assert world.verify().ok  # no key, no anchor: nothing left to compare with
    report = world.verify(anchor=anchor)
    assert {(p.seq, p.kind) for p in report.checkpoint_problems} == {(1, "anchor"), (2, "anchor")}


@pytest.mark.parametrize("world", [KEY], indirect=True)
@pytest.mark.parametrize("attacker_key", [None, "guessed key"])
def test_rewrite_with_recomputed_checkpoints_is_caught_with_the_key(
    world: World, attacker_key: str | None
) -> None:
    order = world.orders[2]
    world.tamper.rehash_from(order, 1, lambda s: s.update(correlation_id="forged"))
    _attacker_recomputes_checkpoints(world, attacker_key)
    assert world.verify().ok  # without the key the forgery is consistent
    report = world.verify(KEY)
    kind = "unsigned" if attacker_key is None else "hmac"
    assert [(p.seq, p.kind) for p in report.checkpoint_problems] == [(1, kind)]


# ------------------------------------------------------------- checkpoints
def test_tampered_checkpoint_row(world: World) -> None:
    world.db.execute("UPDATE audit_checkpoint SET order_count = order_count - 1 WHERE seq = 1")
    report = world.verify()
    assert [(p.seq, p.kind) for p in report.checkpoint_problems] == [(1, "digest")]
    assert not report.order_problems


def test_tampered_checkpoint_head_row(world: World) -> None:
    world.db.execute(
        "UPDATE audit_checkpoint_head SET version = 5 WHERE seq = 2 AND order_id = %s",
        (world.db.adapt(world.orders[0], "uuid"),),
    )
    report = world.verify()
    assert [(p.seq, p.kind) for p in report.checkpoint_problems] == [(2, "changes")]
    assert not report.order_problems


def test_deleted_checkpoint(world: World) -> None:
    world.db.execute("DELETE FROM audit_checkpoint WHERE seq = 1")
    report = world.verify()
    assert {(p.seq, p.kind) for p in report.checkpoint_problems} == {(2, "chain")}


def test_a_checkpoint_refuses_to_bless_a_store_that_went_back(world: World) -> None:
    from serviceorders.audit.checkpoints import AuditError

    world.tamper.delete(world.orders[0], 6)
    world.tamper.insert(
        world.orders[1],
        7,
        world.tamper.topic(world.orders[1], 6),
        world.tamper.state(world.orders[1], 6),
    )  # something new to cover
    with pytest.raises(AuditError, match=str(world.orders[0])):
        world.checkpoint()


# ------------------------------------------------------------------ snapshots
def test_tampered_snapshot(world: World) -> None:
    order = world.orders[3]
    snap = world.tamper.snapshot(order, 4)
    snap["state"]["waiting_reason"] = "never"
    world.tamper.set_snapshot(order, 4, snap)
    report = world.verify()
    assert not report.order_problems and not report.checkpoint_problems
    assert [(p.order_id, p.version, p.kind) for p in report.snapshot_problems] == [
        (str(order), 4, "differs")
    ]
    assert "waiting_reason" in report.snapshot_problems[0].detail


# ------------------------------------------------------------------- export
def _export(world: World, **kw: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    export(world.db, out, **kw)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def test_export_verifies_offline_and_catches_an_edited_file(world: World, tmp_path: Path) -> None:
    lines = _export(world)
    assert lines[0]["type"] == "export" and lines[0]["complete"] is True
    events = [line for line in lines if line["type"] == "event"]
    assert len(events) == ORDERS * 6
    assert len([line for line in lines if line["type"] == "checkpoint"]) == 2
    assert verify_file(_write(tmp_path / "clean.jsonl", lines)).ok

    edited = [dict(line) for line in lines]
    target = next(
        i for i, line in enumerate(edited) if line["type"] == "event" and line["version"] == 3
    )
    edited[target] = {**edited[target], "state": {**edited[target]["state"], "note": "x"}}
    report = verify_file(_write(tmp_path / "edited.jsonl", edited))
    assert only_broken(report) == {edited[target]["order_id"]: (3, "altered")}

    newest = max(
        (i for i, line in enumerate(lines) if line["type"] == "event"),
        key=lambda i: lines[i]["version"],
    )
    dropped = lines[:newest] + lines[newest + 1 :]
    report = verify_file(_write(tmp_path / "dropped.jsonl", dropped))
    assert only_broken(report) == {lines[newest]["order_id"]: (6, "head_moved_back")}


def test_partial_export_of_one_order_says_what_it_cannot_check(
    world: World, tmp_path: Path
) -> None:
    order = world.orders[0]
    lines = _export(world, order_id=order)
    assert {line["order_id"] for line in lines if line["type"] == "event"} == {str(order)}
    report = verify_file(_write(tmp_path / "one.jsonl", lines))
    assert report.ok, report.lines()
    assert any("Merkle roots" in n and "cannot be checked" in n for n in report.notes)
    # dropping its newest event is still found against the checkpoints' recorded heads
    report = verify_file(_write(tmp_path / "short.jsonl", lines[:-3] + lines[-2:]))
    assert only_broken(report) == {str(order): (6, "head_moved_back")}


def test_offline_verify_checks_the_key_and_an_anchor(world: World, tmp_path: Path) -> None:
    path = _write(tmp_path / "all.jsonl", _export(world))
    anchor = tmp_path / "anchor.json"
    anchor.write_bytes(orjson.dumps(export_checkpoints(world.db)))
    assert verify_file(path, anchor=anchor).ok
    assert verify_file(path, key=KEY).checkpoint_problems  # unsigned
    forged = orjson.loads(anchor.read_bytes())
    forged["checkpoints"][0]["root"] = "0" * 64
    anchor.write_bytes(orjson.dumps(forged))
    assert [p.kind for p in verify_file(path, anchor=anchor).checkpoint_problems] == ["anchor"]


# -------------------------------------------------------------- checkpointer
def test_checkpointer_runs_until_stopped(world: World, actors: Any, samples: Any) -> None:
    build(world.app, actors, samples, 100, 1)
    stopping = threading.Event()
    checkpointer = Checkpointer(lambda: open_read_db(world.settings))
    thread = checkpointer.start(stopping, interval=0.05)
    try:
        for _ in range(200):
            if checkpointer.last is not None:
                break
            stopping.wait(0.05)
    finally:
        stopping.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert checkpointer.last is not None and checkpointer.last.seq == 3
    assert checkpointer.last.order_count == ORDERS + 1
    assert world.verify().ok


# ------------------------------------------------- the heads the projector read
def project(world: World, batch_size: int = 500) -> int:
    """What the running projector does: apply the log's pages to the read models."""
    return Projector(world.db, event_mapper(), batch_size=batch_size).catch_up()


def test_newest_event_and_whole_order_deleted_seconds_after_the_projector_read_them(
    world: World, actors: Any, samples: Any
) -> None:
    """No checkpoint between the projector's page and the deletions: the heads it recorded
    in that page's transaction name both orders."""
    order = world.orders[0]
    world.app.handle(actors.fulfilment, cmd.AddNote(order, "after the checkpoint"))  # v7
    (gone,) = build(world.app, actors, samples, 50, 1)  # a new order, after the checkpoint
    assert project(world)
    assert seen_heads(world.db)[str(order)][0] == 7
    world.tamper.delete(order, 7)
    world.tamper.delete_order(gone)
    report = world.verify()
    assert only_broken(report) == {
        str(order): (7, "head_moved_back"),
        str(gone): (1, "missing"),
    }, report.lines()
    assert "the projector read v7" in report.broken_orders()[str(order)].detail
    assert not report.checkpoint_problems, report.lines()
    assert report.seen_heads == ORDERS + 1


def test_the_same_without_any_checkpoint(world: World, actors: Any, samples: Any) -> None:
    clear_audit_tables(world.db)  # no checkpoint at all, only the projector's heads
    assert project(world, batch_size=7) == ORDERS * 6
    order, whole = world.orders[1], world.orders[2]
    world.tamper.delete(order, 6)
    world.tamper.delete_order(whole)
    report = world.verify()
    assert only_broken(report) == {
        str(order): (6, "head_moved_back"),
        str(whole): (1, "missing"),
    }, report.lines()
    assert report.checkpoints == 0


def test_a_chain_rewritten_after_the_projector_read_its_head(world: World) -> None:
    clear_audit_tables(world.db)
    project(world)
    order = world.orders[3]
    world.tamper.rehash_from(order, 5, lambda s: s.update(reason="nobody held it"))
    assert_one_broken(world.verify(), order, 1, "rewritten")  # no checkpoint to narrow it


def test_an_untampered_store_verifies_clean_after_many_pages_and_a_rebuild(
    world: World, actors: Any, samples: Any
) -> None:
    more = build(world.app, actors, samples, 10, 3)
    assert project(world, batch_size=3) == ORDERS * 6 + 3 * 2  # ~12 pages, orders interleaved
    for order_id in more:
        advance(world.app, actors, order_id)
    project(world, batch_size=5)
    heads = seen_heads(world.db)
    assert {oid: h[0] for oid, h in heads.items()} == {str(o): 6 for o in world.orders + more}
    report = world.verify()
    assert report.ok, report.lines()
    assert report.seen_heads == ORDERS + 3
    assert not any("read by no projector" in n for n in report.notes), report.notes

    maintenance.rebuild(world.db, event_mapper())  # the evidence is kept, as it was
    assert seen_heads(world.db) == heads
    assert world.verify().ok

    world.tamper.delete(more[0], 6)
    maintenance.rebuild(world.db, event_mapper())  # reads v5 as the head: never goes back
    assert seen_heads(world.db)[str(more[0])] == heads[str(more[0])]
    assert_one_broken(world.verify(), more[0], 6, "head_moved_back")


def test_events_read_by_no_projector_are_named_in_a_note(world: World, actors: Any) -> None:
    project(world)
    world.app.handle(actors.fulfilment, cmd.AddNote(world.orders[0], "not projected"))
    report = world.verify()
    assert report.ok, report.lines()
    assert any("read by no projector" in n for n in report.notes), report.notes


def test_a_checkpoint_refuses_to_bless_what_the_projector_read_and_then_vanished(
    world: World, actors: Any, samples: Any
) -> None:
    from serviceorders.audit.checkpoints import AuditError

    order = world.orders[4]
    world.app.handle(actors.fulfilment, cmd.AddNote(order, "after the checkpoint"))  # v7
    (gone,) = build(world.app, actors, samples, 60, 1)
    project(world)
    world.tamper.delete(order, 7)
    world.tamper.delete_order(gone)
    build(world.app, actors, samples, 61, 1)  # something new to cover
    with pytest.raises(AuditError) as refused:
        world.checkpoint()
    assert f"order {order}: head v6 where the projector read v7" in str(refused.value)
    assert f"order {gone}: missing (the projector read v2)" in str(refused.value)


def test_an_export_carries_the_heads_the_projector_read(
    world: World, actors: Any, samples: Any, tmp_path: Path
) -> None:
    order = world.orders[1]
    world.app.handle(actors.fulfilment, cmd.AddNote(order, "after the checkpoint"))  # v7
    (new,) = build(world.app, actors, samples, 70, 1)
    project(world)
    lines = _export(world)
    assert {line["order_id"] for line in lines if line["type"] == "seen_head"} == {
        str(o) for o in [*world.orders, new]
    }
    assert verify_file(_write(tmp_path / "clean.jsonl", lines)).ok

    def event(line: dict[str, Any], oid: UUID, version: int | None = None) -> bool:
        return (
            line["type"] == "event"
            and line["order_id"] == str(oid)
            and (version is None or line["version"] == version)
        )

    dropped = [x for x in lines if not event(x, order, 7) and not event(x, new)]
    report = verify_file(_write(tmp_path / "dropped.jsonl", dropped))
    assert only_broken(report) == {
        str(order): (7, "head_moved_back"),
        str(new): (1, "missing"),
    }, report.lines()

    one = _export(world, order_id=order)
    assert [x["order_id"] for x in one if x["type"] == "seen_head"] == [str(order)]
    cut = [x for x in one if not event(x, order, 7)]
    report = verify_file(_write(tmp_path / "one.jsonl", cut))
    assert only_broken(report) == {str(order): (7, "head_moved_back")}, report.lines()
    since = _export(world, since=datetime(2000, 1, 1, tzinfo=UTC))
    assert not [x for x in since if x["type"] == "seen_head"]


@pytest.mark.parametrize("world", [KEY], indirect=True)
def test_an_hmac_damaged_into_other_characters_is_a_problem_not_a_traceback(
    world: World, tmp_path: Path
) -> None:
    """compare_digest compares text only when it is ASCII: a damaged HMAC in an export
    holding other characters is reported like any wrong HMAC."""
    out = io.StringIO()
    on_own_db(world.settings, lambda db: export(db, out))
    lines = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if '"type":"checkpoint"' in line)
    data = orjson.loads(lines[at])
    data["hmac"] = "é" * 64
    lines[at] = orjson.dumps(data).decode()
    path = tmp_path / "damaged.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    report = verify_file(path, key=KEY)
    assert not report.ok
    assert "hmac" in {p.kind for p in report.checkpoint_problems}, report.lines()

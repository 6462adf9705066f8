"""What `audit verify` says it could not check (docs/audit.md, issue 18 part 4): a log never
checkpointed is a warning, live and offline; after a checkpoint the warning is gone and the
notes count exactly the events and orders no checkpoint covers; anchors not checked is noted
unless an anchor is given."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from serviceorders.audit.checkpoints import create_checkpoint, export_checkpoints
from serviceorders.audit.export import export
from serviceorders.audit.report import Report
from serviceorders.audit.store import Store
from serviceorders.audit.verify import verify, verify_file
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.projections.runner import Projector
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

NEVER = "was never checkpointed"
ANCHORS = "anchors not checked (no --anchor)"


@dataclass
class Log:
    settings: Settings
    app: Any
    db: ReadDb
    actors: Any
    samples: Any
    made: int = 0

    def receive(self, count: int = 1) -> list[UUID]:
        """`count` new orders, two events each (received, validated)."""
        ids = []
        for _ in range(count):
            self.made += 1
            ids.append(
                self.app.handle(
                    self.actors.upstream,
                    cmd.ReceiveOrder(
                        self.samples.header(f"notes-{self.made}"), tuple(self.samples.items())
                    ),
                ).order.id
            )
        return ids

    def note(self, order_id: UUID, text: str = "called") -> None:
        self.app.handle(self.actors.fulfilment, cmd.AddNote(order_id, text))

    def on_own_db(self, fn: Callable[[ReadDb], Any]) -> Any:
        db = open_read_db(self.settings)
        try:
            return fn(db)
        finally:
            db.close()

    def verify(self, **kw: Any) -> Report:
        return self.on_own_db(lambda db: verify(db, **kw))

    def checkpoint(self) -> Any:
        return self.on_own_db(lambda db: create_checkpoint(db))

    def project(self) -> int:
        return int(Projector(self.db, event_mapper()).catch_up())

    def export(self, path: Path, **kw: Any) -> Path:
        out = io.StringIO()
        self.on_own_db(lambda db: export(db, out, **kw))
        path.write_text(out.getvalue(), "utf-8")
        return path


@pytest.fixture
def log(settings: Settings, open_app: Any, actors: Any, samples: Any) -> Iterator[Log]:
    app = open_app(settings)
    db = open_read_db(settings)
    try:
        yield Log(settings, app, db, actors, samples)
    finally:
        db.close()


def anchors_noted(report: Report) -> bool:
    return any(n.startswith(ANCHORS) for n in report.notes)


def uncovered(report: Report) -> list[str]:
    return [n for n in report.notes if "covered by no checkpoint" in n]


def test_a_log_never_checkpointed_is_a_warning_live_and_offline(log: Log, tmp_path: Path) -> None:
    orders = log.receive(3)
    report = log.verify()
    assert report.ok, report.lines()
    assert report.checkpoints == 0 and report.events == 6
    (warning,) = report.warnings
    assert warning.startswith(f"the log {NEVER}: ")
    for what in ("deleted newest events", "deleted whole order", "re-hashed consistently"):
        assert what in warning
    assert "the projector has read none of its events" in warning
    assert report.to_json()["warnings"] == [warning]
    assert anchors_noted(report)
    # no projector read, no checkpoint: the warning says it; no note repeats it
    assert not any("read by no projector" in n for n in report.notes), report.notes

    offline = verify_file(log.export(tmp_path / "all.jsonl"))
    assert offline.ok, offline.lines()
    (warning,) = offline.warnings
    assert warning.startswith(f"the exported log {NEVER}: ")
    assert "the projector has read none of its events" in warning

    one = verify_file(log.export(tmp_path / "one.jsonl", order_id=orders[0]))
    assert one.ok and [NEVER in w for w in one.warnings] == [True]
    since = verify_file(
        log.export(tmp_path / "since.jsonl", since=datetime(2000, 1, 1, tzinfo=UTC))
    )
    (warning,) = since.warnings
    assert "a --since export carries no heads the projector read" in warning


def test_the_warning_names_what_the_projector_read(log: Log, tmp_path: Path) -> None:
    (first, second) = log.receive(2)
    assert log.project() == 4
    report = log.verify()
    (warning,) = report.warnings
    assert "except for the events the projector has read (the heads of 2 orders" in warning
    assert not any("read by no projector" in n for n in report.notes), report.notes
    log.note(first)
    log.note(second)
    report = log.verify()
    assert report.ok and len(report.warnings) == 1
    (unread,) = [n for n in report.notes if "read by no projector" in n]
    assert unread.startswith("2 events after position ")
    (warning,) = verify_file(log.export(tmp_path / "all.jsonl")).warnings
    assert "the heads of 2 orders" in warning


def test_an_empty_log_has_nothing_to_warn_about(log: Log) -> None:
    report = log.verify()
    assert report.ok and report.events == 0
    assert report.warnings == []


def test_after_a_checkpoint_the_notes_count_what_it_does_not_cover(
    log: Log, tmp_path: Path
) -> None:
    a, b = log.receive(2)
    checkpoint = log.checkpoint()
    assert checkpoint is not None and checkpoint.seq == 1
    report = log.verify()
    assert report.ok and report.warnings == [], report.warnings
    assert uncovered(report) == []
    assert not any("in no checkpoint at all" in n for n in report.notes)

    log.note(a)
    log.note(a, "again")
    log.note(b)
    (c,) = log.receive(1)  # two events, in no checkpoint at all
    report = log.verify()
    assert report.ok and report.warnings == [], report.warnings
    p = checkpoint.position
    assert uncovered(report) == [
        f"5 events of 3 orders after position {p} (the latest checkpoint) are covered by no "
        "checkpoint, and read by no projector either: they can be deleted unnoticed (run the "
        "projector, take a checkpoint)"
    ]
    assert f"1 order is in no checkpoint at all (all its events are after position {p})" in (
        report.notes
    )
    assert report.to_json()["warnings"] == []

    offline = verify_file(log.export(tmp_path / "all.jsonl"))
    assert offline.ok and offline.warnings == []
    assert uncovered(offline) == uncovered(report)
    assert f"1 order is in no checkpoint at all (all its events are after position {p})" in (
        offline.notes
    )

    # once the projector has read them, they are still covered by no checkpoint; only the
    # event written after its page is unprotected
    log.project()
    read = Store(log.db).head()
    log.note(c)
    report = log.verify()
    assert uncovered(report) == [
        f"6 events of 3 orders after position {p} (the latest checkpoint) are covered by no "
        f"checkpoint; 1 event after position {read} (read by no projector, covered by no "
        "checkpoint) can be deleted unnoticed: run the projector, take a checkpoint"
    ]

    second = log.checkpoint()
    assert second.seq == 2
    report = log.verify()
    assert uncovered(report) == [] and report.warnings == []
    assert not any("in no checkpoint at all" in n for n in report.notes)


def test_anchors_not_checked_is_noted_without_an_anchor_only(log: Log, tmp_path: Path) -> None:
    log.receive(1)
    log.checkpoint()
    anchor = tmp_path / "anchor.json"
    anchor.write_bytes(orjson.dumps(log.on_own_db(export_checkpoints)))
    assert anchors_noted(log.verify())
    anchored = log.verify(anchor=anchor)
    assert anchored.ok, anchored.lines()
    assert not anchors_noted(anchored), anchored.notes
    path = log.export(tmp_path / "all.jsonl")
    assert anchors_noted(verify_file(path))
    offline = verify_file(path, anchor=anchor)
    assert offline.ok and not anchors_noted(offline)

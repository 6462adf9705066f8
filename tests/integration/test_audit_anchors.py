"""Anchors outside the database (docs/audit.md, "Anchors"): every fresh checkpoint is
appended to a file once, in seq order; a checkpoint the anchor missed while it could not be
written is appended at the next round; an anchor catches a rewrite that also recomputed the
checkpoints in the database (`audit verify --anchor`), which the database alone cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from builders import cli
from prometheus_client import CollectorRegistry
from serviceorders.audit.anchors import FileAnchor, anchor_line, open_anchor
from serviceorders.audit.checkpoints import Checkpointer, create_checkpoint, load_checkpoints
from serviceorders.audit.store import Store
from serviceorders.audit.verify import verify
from serviceorders.bootstrap import open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.chain import event_hash
from serviceorders.metrics import EngineMetrics
from serviceorders.settings import Settings, SettingsError
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration


def clear_audit_tables(db: ReadDb) -> None:
    """The session's PostgreSQL database outlives a test; its checkpoints must not."""
    db.execute("DELETE FROM audit_checkpoint_head")
    db.execute("DELETE FROM audit_checkpoint")
    db.execute("DELETE FROM audit_seen_head")


class Store_:
    """The test's store: orders made through the application, checkpoints by a
    Checkpointer whose anchor is `anchor` (a file)."""

    def __init__(self, settings: Settings, app: Any, actors: Any, samples: Any) -> None:
        self.settings, self.app, self.actors, self.samples = settings, app, actors, samples
        self.orders: list[UUID] = []

    def connect(self) -> ReadDb:
        return open_read_db(self.settings)

    def order(self) -> UUID:
        n = len(self.orders)
        made = self.app.handle(
            self.actors.upstream,
            cmd.ReceiveOrder(self.samples.header(f"anchor-{n}"), tuple(self.samples.items())),
        ).order.id
        self.orders.append(made)
        return made

    def note(self, order_id: UUID, text: str = "survey booked") -> None:
        self.app.handle(self.actors.fulfilment, cmd.AddNote(order_id, text))

    def checkpointer(self, anchor: Any, on_failure: Callable[[], Any] | None = None) -> Any:
        return Checkpointer(self.connect).anchor_to(anchor, on_failure)

    def stored(self) -> list[dict[str, Any]]:
        db = self.connect()
        try:
            return [c.to_json() for c in load_checkpoints(db)]
        finally:
            db.close()


@pytest.fixture
def store(settings: Settings, app: Any, actors: Any, samples: Any) -> Iterator[Store_]:
    db = open_read_db(settings)
    clear_audit_tables(db)
    try:
        yield Store_(settings, app, actors, samples)
    finally:
        clear_audit_tables(db)
        db.close()


def anchored(path: Path) -> list[dict[str, Any]]:
    """The anchor file's lines (each must be JSON)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def seqs(path: Path) -> list[int]:
    return [line["seq"] for line in anchored(path)]


# ------------------------------------------------------------------ the setting
@pytest.mark.parametrize(
    "value", ["anchor.jsonl", "file:", "kafka:", "kafka:two words", "s3://bucket/x", "kafka:.."]
)
def test_an_anchor_setting_that_names_no_anchor_is_refused_at_start(value: str) -> None:
    with pytest.raises(SettingsError, match=r"SERVICEORDERS_AUDIT_ANCHOR: .*not an anchor"):
        Settings.from_env({"SERVICEORDERS_AUDIT_ANCHOR": value})


def test_a_kafka_anchor_needs_the_engines_kafka() -> None:
    with pytest.raises(SettingsError, match="needs KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env({"SERVICEORDERS_AUDIT_ANCHOR": "kafka:audit.anchor"})
    found = Settings.from_env(
        {"SERVICEORDERS_AUDIT_ANCHOR": "kafka:audit.anchor", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    )
    assert found.audit_anchor == "kafka:audit.anchor"
    assert isinstance(open_anchor("file:/var/anchor.jsonl"), FileAnchor)


def test_the_cli_refuses_a_bad_anchor_setting_in_one_line(tmp_path: Path) -> None:
    done = cli(
        "audit",
        "checkpoint",
        url=f"sqlite:///{tmp_path / 'x.db'}",
        expect=2,
        env={"SERVICEORDERS_AUDIT_ANCHOR": "/no/scheme.jsonl"},
    )
    assert "SERVICEORDERS_AUDIT_ANCHOR" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------- appended, in order
def test_each_fresh_checkpoint_is_appended_once_in_order(store: Store_, tmp_path: Path) -> None:
    path = tmp_path / "worm" / "anchor.jsonl"
    path.parent.mkdir()
    checkpointer = store.checkpointer(FileAnchor(path))
    first = store.order()
    assert checkpointer.run_once().seq == 1
    assert checkpointer.run_once().fresh is False  # nothing new: nothing appended
    store.note(first)
    store.order()
    assert checkpointer.run_once().seq == 2
    checkpointer.run_once()
    lines = anchored(path)
    assert [line["type"] for line in lines] == ["checkpoint", "checkpoint"]
    # each line is the stored checkpoint, as the export writes it (without "changes")
    assert [{k: v for k, v in line.items() if k != "type"} for line in lines] == store.stored()
    assert "changes" not in lines[0]
    # a second process's anchor (a restart) reads where the anchor stands, and goes on
    store.note(first, "again")
    assert store.checkpointer(FileAnchor(path)).run_once().seq == 3
    assert seqs(path) == [1, 2, 3]


def test_the_cli_checkpoint_appends_to_the_anchor(store: Store_, tmp_path: Path) -> None:
    path = tmp_path / "anchor.jsonl"
    url = store.settings.database.url(with_password=True)
    env = {"SERVICEORDERS_AUDIT_ANCHOR": f"file:{path}"}
    store.order()
    made = cli("audit", "checkpoint", url=url, env=env)
    assert orjson.loads(made.stdout)["seq"] == 1
    assert f"anchored checkpoint(s) 1 to anchor file {path}" in made.stderr
    again = cli("audit", "checkpoint", url=url, env=env)  # nothing new: nothing appended
    assert "nothing new since checkpoint 1" in again.stderr
    assert seqs(path) == [1]
    clean = cli("audit", "verify", "--anchor", f"file:{path}", url=url)
    assert clean.stdout.rstrip().endswith("OK")


# ------------------------------------------------------- a rewrite the anchor catches
def _rewrite_and_recompute_checkpoints(store: Store_, order_id: UUID) -> None:
    """An attacker with write access to the database: one order's chain re-hashed from
    v1 on, every checkpoint deleted and taken again over the rewritten store."""
    db = store.connect()
    try:
        events = Store(db).events
        key = Store(db).key(order_id)
        rows = db.fetchall(
            f"SELECT originator_version, topic, state FROM {events} WHERE originator_id = %s "
            "ORDER BY originator_version",
            (key,),
        )
        previous = "0" * 64
        for version, topic, raw in rows:
            state = orjson.loads(bytes(raw))
            if version == 1:
                state["correlation_id"] = "forged"
            state["prev_hash"] = previous
            state.pop("hash", None)
            state["hash"] = event_hash(topic, order_id, int(version), state)
            previous = state["hash"]
            db.execute(
                f"UPDATE {events} SET state = %s WHERE originator_id = %s AND "
                "originator_version = %s",
                (orjson.dumps(state), key, version),
            )
        db.execute(f"DELETE FROM {Store(db).snapshots}")
        db.execute("DELETE FROM audit_checkpoint_head")
        db.execute("DELETE FROM audit_checkpoint")
        assert create_checkpoint(db).seq == 1
        assert create_checkpoint(db).fresh is False
    finally:
        db.close()


def test_the_anchor_catches_a_rewrite_that_recomputed_the_checkpoints(
    store: Store_, tmp_path: Path
) -> None:
    path = tmp_path / "anchor.jsonl"
    checkpointer = store.checkpointer(FileAnchor(path))
    orders = [store.order(), store.order()]
    checkpointer.run_once()
    store.note(orders[0])
    checkpointer.run_once()
    assert seqs(path) == [1, 2]
    _rewrite_and_recompute_checkpoints(store, orders[1])
    db = store.connect()
    try:
        assert verify(db).ok  # the database alone agrees with itself
        report = verify(db, anchor=path)
        by_anchor = verify(db, anchor=open_anchor(f"file:{path}"))
    finally:
        db.close()
    assert not report.ok
    problems = {(p.seq, p.kind) for p in report.checkpoint_problems}
    assert problems == {(1, "anchor"), (2, "anchor")}, report.lines()
    assert {(p.seq, p.kind) for p in by_anchor.checkpoint_problems} == problems
    # and the command says so, exit 1
    url = store.settings.database.url(with_password=True)
    failed = cli("audit", "verify", "--anchor", str(path), url=url, expect=1)
    assert "anchor" in failed.stdout and "FAILED" in failed.stdout
    # the anchor was never rewritten: the checkpointer did not append the forged seq 1 again
    assert seqs(path) == [1, 2]


# ----------------------------------------------------- an anchor that cannot be written
def test_missed_checkpoints_are_appended_next_round_in_order(
    store: Store_, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worm = tmp_path / "worm"
    worm.mkdir()
    path = worm / "anchor.jsonl"
    metrics = EngineMetrics(CollectorRegistry(), projector=True)
    checkpointer = store.checkpointer(FileAnchor(path), metrics.anchor_failed)
    order = store.order()
    checkpointer.run_once()
    worm.rename(tmp_path / "unmounted")  # the anchor's storage goes away
    caplog.set_level(logging.WARNING, logger="serviceorders.audit.checkpoints")
    for text in ("first", "second"):
        store.note(order, text)
        made = checkpointer.run_once()
        assert made is not None and made.fresh  # the checkpoint stays recorded
    assert [c["seq"] for c in store.stored()] == [1, 2, 3]
    assert "audit checkpoint(s) 2 recorded but not anchored" in caplog.text
    assert "audit checkpoint(s) 2, 3 recorded but not anchored" in caplog.text
    failures = "serviceorders_audit_anchor_failures_total"
    assert metrics.registry.get_sample_value(failures) == 2
    (tmp_path / "unmounted").rename(worm)  # back
    assert checkpointer.run_once().fresh is False  # nothing new, yet the missed ones go out
    assert seqs(path) == [1, 2, 3]
    assert [{k: v for k, v in x.items() if k != "type"} for x in anchored(path)] == store.stored()
    checkpointer.run_once()
    assert seqs(path) == [1, 2, 3]
    assert metrics.registry.get_sample_value(failures) == 2


def test_an_anchor_that_failed_from_its_first_checkpoint_keeps_it(
    store: Store_, tmp_path: Path
) -> None:
    path = tmp_path / "later" / "anchor.jsonl"
    checkpointer = store.checkpointer(FileAnchor(path))
    order = store.order()
    assert checkpointer.run_once().seq == 1  # its directory does not exist yet
    assert not path.exists()
    path.parent.mkdir()
    store.note(order)
    assert checkpointer.run_once().seq == 2
    assert seqs(path) == [1, 2]


def test_a_torn_line_stays_on_its_own_and_is_skipped_when_read(
    store: Store_, tmp_path: Path
) -> None:
    path = tmp_path / "anchor.jsonl"
    checkpointer = store.checkpointer(FileAnchor(path))
    order = store.order()
    checkpointer.run_once()
    with path.open("ab") as f:  # a write the disk cut short: a cut-off copy of seq 1
        f.write(path.read_bytes()[:40])
    store.note(order)
    checkpointer.run_once()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3 and lines[1] == lines[0][:40]
    assert [c.seq for c in _read(path)] == [1, 2]
    db = store.connect()
    try:
        assert verify(db, anchor=path).ok
    finally:
        db.close()


def _read(path: Path) -> list[Any]:
    from serviceorders.audit.verify import load_anchor

    return load_anchor(path)


def test_the_cli_says_a_checkpoint_was_recorded_but_not_anchored(
    store: Store_, tmp_path: Path
) -> None:
    worm = tmp_path / "worm"
    worm.mkdir()
    path = worm / "anchor.jsonl"
    url = store.settings.database.url(with_password=True)
    env = {"SERVICEORDERS_AUDIT_ANCHOR": f"file:{path}"}
    order = store.order()
    cli("audit", "checkpoint", url=url, env=env)
    worm.rename(tmp_path / "unmounted")
    store.note(order)
    failed = cli("audit", "checkpoint", url=url, env=env, expect=1)
    assert orjson.loads(failed.stdout)["seq"] == 2  # printed: it is recorded
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint 2 recorded but not anchored: anchor file ")
    assert "Traceback" not in failed.stderr
    assert [c["seq"] for c in store.stored()] == [1, 2]
    (tmp_path / "unmounted").rename(worm)
    store.note(order, "again")
    done = cli("audit", "checkpoint", url=url, env=env)  # another process: reads the anchor
    assert "anchored checkpoint(s) 2, 3" in done.stderr
    assert seqs(path) == [1, 2, 3]
    assert anchor_line(_read(path)[0]) == path.read_bytes().splitlines(keepends=True)[0]


def test_verify_refuses_an_anchor_it_cannot_read(store: Store_, tmp_path: Path) -> None:
    url = store.settings.database.url(with_password=True)
    missing = cli("audit", "verify", "--anchor", str(tmp_path / "none.jsonl"), url=url, expect=2)
    assert "no such file" in missing.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": "world"}')
    bad = cli("audit", "verify", "--anchor", str(junk), url=url, expect=2)
    assert "not a checkpoint anchor" in bad.stderr and "Traceback" not in bad.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nothing = cli("audit", "verify", "--anchor", f"file:{empty}", url=url, expect=2)
    assert "holds no checkpoint" in nothing.stderr  # checked against nothing is no check
    kafka = cli("audit", "verify", "--anchor", "kafka:t", url=url, expect=2)
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in kafka.stderr


def test_an_anchor_that_lost_what_was_appended_is_not_refilled_silently(
    store: Store_, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worm = tmp_path / "worm"
    worm.mkdir()
    path = worm / "anchor.jsonl"
    checkpointer = store.checkpointer(FileAnchor(path))
    order = store.order()
    checkpointer.run_once()
    store.note(order)
    checkpointer.run_once()
    worm.rename(tmp_path / "unmounted")
    store.note(order, "again")
    checkpointer.run_once()  # not anchored: the storage is away
    worm.mkdir()  # ... and comes back empty (another volume)
    caplog.set_level(logging.WARNING, logger="serviceorders.audit.checkpoints")
    assert checkpointer.run_once().fresh is False
    assert "holds checkpoints up to none, although 2 was appended to it" in caplog.text
    assert not path.exists()  # not re-filled from checkpoint 3 on as if it were new


def test_a_key_rotation_checkpoint_is_anchored_too(store: Store_, tmp_path: Path) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    for key in (old, new):
        cli("audit", "keygen", "-o", str(key), url=None)
    path = tmp_path / "anchor.jsonl"
    url = store.settings.database.url(with_password=True)
    env = {
        "SERVICEORDERS_AUDIT_ANCHOR": f"file:{path}",
        "SERVICEORDERS_AUDIT_SIGNING_KEY": str(old),
    }
    store.order()
    cli("audit", "checkpoint", url=url, env=env)
    rotated = cli("audit", "rotate-key", "--new", str(new), url=url, env=env)
    assert "anchored checkpoint(s) 2" in rotated.stderr
    lines = anchored(path)
    assert [line["seq"] for line in lines] == [1, 2]
    assert lines[1]["endorsement"] and lines[1]["public_key"] != lines[0]["public_key"]

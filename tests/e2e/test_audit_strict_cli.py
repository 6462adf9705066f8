"""`serviceorders audit verify` says what it could not check (issue 18 part 4), run as a real
process against PostgreSQL and SQLite: a log never checkpointed prints a warning, live and
`--file`; `--strict` then exits 1 while the plain command exits 0; `--json` carries the
warnings; after a checkpoint the warning is gone and a note counts the events written after
it; the anchors note goes away with `--anchor`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from uuid import UUID

import orjson
import pytest
from builders import cli
from serviceorders.audit.store import Store
from serviceorders.bootstrap import open_read_db
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

NEVER = "warning: the log was never checkpointed: "
NEVER_FILE = "warning: the exported log was never checkpointed: "
ANCHORS = "note: anchors not checked (no --anchor)"


def run(
    *args: str, url: str | None, cwd: Path | None = None, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """No HMAC key, no signing key, no anchor configured."""
    env = {
        "SERVICEORDERS_AUDIT_HMAC_KEY": None,
        "SERVICEORDERS_AUDIT_SIGNING_KEY": None,
        "SERVICEORDERS_AUDIT_ANCHOR": None,
    }
    return cli(*args, url=url, cwd=cwd, expect=expect, timeout=120, env=env)


def output(done: subprocess.CompletedProcess[str]) -> list[str]:
    return done.stdout.splitlines()


def test_a_log_never_checkpointed_warns_and_strict_fails(url: str, tmp_path: Path) -> None:
    run("demo", url=url)
    plain = output(run("audit", "verify", url=url))
    assert plain[-1] == "OK"
    (warning,) = [line for line in plain if line.startswith("warning: ")]
    assert warning.startswith(NEVER)
    assert "deleted newest events" in warning and "deleted whole order" in warning
    # the warning comes before the notes, the verdict last
    first_note = next(i for i, line in enumerate(plain) if line.startswith("note: "))
    assert plain.index(warning) < first_note

    strict = output(run("audit", "verify", "--strict", url=url, expect=1))
    assert warning in strict
    assert strict[-1] == "FAILED (--strict): 1 warning(s)"

    report = json.loads(run("audit", "verify", "--json", url=url).stdout)
    assert report["ok"] is True
    assert report["warnings"] == [warning.removeprefix("warning: ")]
    strict_json = json.loads(run("audit", "verify", "--json", "--strict", url=url, expect=1).stdout)
    assert strict_json["warnings"] == report["warnings"]

    exported = tmp_path / "audit.jsonl"
    run("audit", "export", "-o", str(exported), url=url)
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    offline = output(run("audit", "verify", "--file", str(exported), url=None, cwd=auditor))
    assert offline[-1] == "OK"
    (warning,) = [line for line in offline if line.startswith("warning: ")]
    assert warning.startswith(NEVER_FILE)
    failed = output(
        run("audit", "verify", "--file", str(exported), "--strict", url=None, cwd=auditor, expect=1)
    )
    assert failed[-1] == "FAILED (--strict): 1 warning(s)"


def test_after_a_checkpoint_strict_passes_and_the_notes_count(url: str, tmp_path: Path) -> None:
    run("demo", url=url)
    checkpoint = json.loads(run("audit", "checkpoint", url=url).stdout)
    before = json.loads(run("audit", "verify", "--json", "--strict", url=url).stdout)
    assert before["warnings"] == [] and before["checkpoints"] == 1
    assert not [n for n in before["notes"] if "covered by no checkpoint" in n]

    # one more order, all its events after the checkpoint; and, since issue 20, the four
    # services its completed items make: five chains (the report counts chains as orders)
    run("demo", url=url)
    after = json.loads(run("audit", "verify", "--json", "--strict", url=url).stdout)
    assert after["ok"] and after["warnings"] == []
    written = after["events"] - before["events"]
    chains = 1 + 4
    assert written > 0 and after["orders"] == before["orders"] + chains
    position = checkpoint["position"]
    assert [n for n in after["notes"] if "covered by no checkpoint" in n] == [
        f"{written} events of {chains} orders after position {position} (the latest "
        "checkpoint) are covered by no checkpoint, and read by no projector either: they can "
        "be deleted unnoticed (run the projector, take a checkpoint)"
    ]
    assert (
        f"{chains} orders are in no checkpoint at all (all their events are after position "
        f"{position})" in after["notes"]
    )

    plain = output(run("audit", "verify", "--strict", url=url))
    assert plain[-1] == "OK" and not [line for line in plain if line.startswith("warning: ")]
    assert any(line.startswith(ANCHORS) for line in plain)
    anchor = tmp_path / "anchor.json"
    run("audit", "anchor", "-o", str(anchor), url=url)
    anchored = output(run("audit", "verify", "--anchor", str(anchor), url=url))
    assert anchored[-1] == "OK"
    assert not any(line.startswith(ANCHORS) for line in anchored), anchored


def test_strict_does_not_hide_a_problem_and_the_help_gives_the_exit_codes(
    url: str, settings: Settings
) -> None:
    helped = run("audit", "verify", "--help", url=url).stdout
    assert "--strict" in helped
    for code in ("0  OK", "1  problems found", "2  usage error", "3  the database cannot be read"):
        assert code in helped, helped
    run("audit", "verify", "--strict", "--unsigned-up-to", "many", url=url, expect=2)

    run("demo", url=url)
    db = open_read_db(settings)
    try:
        store = Store(db)
        oid, state = db.fetchone(
            f"SELECT originator_id, state FROM {store.events} WHERE originator_version = 2"
        )
        edited = orjson.loads(bytes(state))
        edited["correlation_id"] = "forged"
        db.execute(
            f"UPDATE {store.events} SET state = %s WHERE originator_id = %s AND "
            "originator_version = 2",
            (orjson.dumps(edited), oid),
        )
    finally:
        db.close()
    for strict in ([], ["--strict"]):
        broken = output(run("audit", "verify", *strict, url=url, expect=1))
        bad = f"order {UUID(str(oid))}: first bad version 2: altered"
        assert any(line.startswith(bad) for line in broken), broken
        assert any(line.startswith(NEVER) for line in broken)
        assert broken[-1].startswith("FAILED: 1 broken order(s)")

"""`serviceorders audit ...` run as a real process against PostgreSQL and SQLite."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import orjson
import pytest
from builders import cli
from serviceorders.audit.store import Store
from serviceorders.bootstrap import open_read_db
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

KEY = "cli-audit-key"
# The hash chains one `serviceorders demo` adds: its order and, since issue 20, the four
# services its completed items make (the checkpoints and `verify` count chains of both).
CHAINS_PER_DEMO = 1 + 4


def run(
    *args: str, url: str | None, cwd: Path | None = None, expect: int = 0, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The command with the audit key `key` (None: no key configured)."""
    env = {"SERVICEORDERS_AUDIT_HMAC_KEY": key}
    return cli(*args, url=url, cwd=cwd, expect=expect, timeout=120, env=env)


@pytest.fixture
def url(url: str, settings: Settings) -> Iterator[str]:
    """The prepared store (tests/e2e/conftest.py) without audit checkpoints."""
    db = open_read_db(settings)
    try:
        db.execute("DELETE FROM audit_checkpoint_head")
        db.execute("DELETE FROM audit_checkpoint")
        yield url
        db.execute("DELETE FROM audit_checkpoint_head")
        db.execute("DELETE FROM audit_checkpoint")
    finally:
        db.close()


def test_checkpoint_verify_anchor_and_tampering(
    url: str, settings: Settings, tmp_path: Path
) -> None:
    run("demo", url=url)
    run("demo", url=url)
    made = run("audit", "checkpoint", url=url, key=KEY)
    checkpoint = json.loads(made.stdout)
    assert checkpoint["seq"] == 1 and checkpoint["hmac"]
    assert checkpoint["order_count"] == 2 * CHAINS_PER_DEMO
    assert "created checkpoint 1" in made.stderr and KEY not in made.stderr + made.stdout
    again = run("audit", "checkpoint", url=url, key=KEY)
    assert "nothing new since checkpoint 1" in again.stderr

    anchor = tmp_path / "anchor.json"
    run("audit", "anchor", "-o", str(anchor), url=url)
    assert json.loads(anchor.read_text())["checkpoints"][0]["digest"] == checkpoint["digest"]

    clean = run("audit", "verify", "--anchor", str(anchor), url=url, key=KEY)
    assert clean.stdout.rstrip().endswith("OK")
    assert "verify" in clean.stderr  # the progress bar
    report = json.loads(run("audit", "verify", "--json", url=url, key=KEY).stdout)
    assert report["ok"] and report["orders"] == 2 * CHAINS_PER_DEMO
    assert report["checkpoints"] == 1

    # an attacker edits one stored event
    db = open_read_db(settings)
    try:
        store = Store(db)
        oid, _, state = db.fetchone(
            f"SELECT originator_id, originator_version, state FROM {store.events} "
            "WHERE originator_version = 3"
        )
        edited = orjson.loads(bytes(state))
        edited["note"] = "nobody approved this"
        db.execute(
            f"UPDATE {store.events} SET state = %s WHERE originator_id = %s AND "
            "originator_version = 3",
            (orjson.dumps(edited), oid),
        )
    finally:
        db.close()
    order = str(UUID(str(oid)))
    broken = run("audit", "verify", url=url, key=KEY, expect=1)
    assert f"order {order}: first bad version 3: altered" in broken.stdout
    assert "FAILED: 1 broken order(s)" in broken.stdout
    found = json.loads(run("audit", "verify", "--json", url=url, expect=1).stdout)
    assert [(p["order_id"], p["version"], p["kind"]) for p in found["broken_orders"]] == [
        (order, 3, "altered")
    ]


def test_export_and_offline_verify(url: str, tmp_path: Path) -> None:
    run("demo", url=url)
    run("audit", "checkpoint", url=url)
    run("demo", url=url)
    run("audit", "checkpoint", url=url)
    exported = tmp_path / "audit.jsonl"
    done = run("audit", "export", "-o", str(exported), url=url)
    assert "(complete)" in done.stderr
    # offline: no DATABASE_URL, in an empty directory
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    offline = run("audit", "verify", "--file", str(exported), url=None, cwd=auditor)
    assert offline.stdout.rstrip().endswith("OK")
    assert not list(auditor.iterdir())  # no database was opened or created

    lines = exported.read_text().splitlines()
    event = next(i for i, line in enumerate(lines) if '"version":2' in line)
    data = json.loads(lines[event])
    data["state"]["correlation_id"] = "forged"
    lines[event] = json.dumps(data)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    failed = run("audit", "verify", "--file", str(tampered), url=None, cwd=auditor, expect=1)
    assert f"order {data['order_id']}: first bad version 2: altered" in failed.stdout

    order = data["order_id"]
    part = tmp_path / "one.jsonl"
    run("audit", "export", "--order", order, "-o", str(part), url=url)
    partial = run("audit", "verify", "--file", str(part), url=None, cwd=auditor)
    assert "partial export" in partial.stdout and partial.stdout.rstrip().endswith("OK")
    since = run("audit", "export", "--since", "2000-01-01", url=url)
    assert "(partial)" in since.stderr and '"type":"checkpoint"' in since.stdout


def test_verify_names_orders_deleted_seconds_after_the_projector_read_them(
    url: str, settings: Settings
) -> None:
    """No checkpoint at all: the heads the projector recorded in its page's transaction
    are what `audit verify` compares the store with."""
    for _ in range(3):
        run("demo", url=url)
    run("project", "--once", url=url)
    clean = json.loads(run("audit", "verify", "--json", url=url).stdout)
    assert clean["ok"] and clean["checkpoints"] == 0
    assert clean["seen_heads"] == 3 * CHAINS_PER_DEMO

    db = open_read_db(settings)
    try:
        store = Store(db)
        (shortened, newest), (gone, _) = db.fetchall(  # two orders (not services)
            f"SELECT originator_id, MAX(originator_version) FROM {store.events} "
            "WHERE topic LIKE 'serviceorders.order:%%' "
            "GROUP BY originator_id ORDER BY originator_id LIMIT 2"
        )
        db.execute(
            f"DELETE FROM {store.events} WHERE originator_id = %s AND originator_version = %s",
            (shortened, newest),
        )
        db.execute(f"DELETE FROM {store.events} WHERE originator_id = %s", (gone,))
    finally:
        db.close()
    cut, whole = str(UUID(str(shortened))), str(UUID(str(gone)))
    broken = run("audit", "verify", url=url, expect=1)
    assert f"order {cut}: first bad version {newest}: head_moved_back" in broken.stdout
    assert f"order {whole}: first bad version 1: missing" in broken.stdout
    assert "FAILED: 2 broken order(s)" in broken.stdout
    found = json.loads(run("audit", "verify", "--json", url=url, expect=1).stdout)
    assert sorted((p["order_id"], p["kind"]) for p in found["broken_orders"]) == sorted(
        [(cut, "head_moved_back"), (whole, "missing")]
    )

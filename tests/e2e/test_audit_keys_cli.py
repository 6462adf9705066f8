"""`serviceorders audit keygen | public-key | rotate-key` and `audit verify --public-key`
run as real processes (each backend): signed checkpoints, a rotation, pinned keys, and the
errors (an unreadable or wrong key file: one line, an exit status, no traceback)."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from serviceorders.bootstrap import open_read_db
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration


def run(
    *args: str, url: str | None, key: Path | None = None, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """The command with SERVICEORDERS_AUDIT_SIGNING_KEY = `key` (None: unset)."""
    env = {
        "SERVICEORDERS_AUDIT_SIGNING_KEY": str(key) if key else None,
        "SERVICEORDERS_AUDIT_HMAC_KEY": None,
        "SERVICEORDERS_AUDIT_ANCHOR": None,
    }
    done = cli(*args, url=url, expect=expect, timeout=120, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_error_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


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


def test_keygen_and_public_key(tmp_path: Path) -> None:
    key = tmp_path / "k1.pem"
    made = run("audit", "keygen", "-o", str(key), url=None)
    public = made.stdout.strip()
    assert len(public) == 64 and int(public, 16) >= 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    before = key.read_bytes()
    refused = run("audit", "keygen", "-o", str(key), url=None, expect=2)
    one_error_line(refused, "exists", "refusing to overwrite")
    assert key.read_bytes() == before

    assert run("audit", "public-key", url=None, key=key).stdout.strip() == public
    pem = run("audit", "public-key", "--pem", url=None, key=key).stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    one_error_line(
        run("audit", "public-key", url=None, expect=2), "no SERVICEORDERS_AUDIT_SIGNING_KEY"
    )


def test_a_bad_signing_key_file_is_a_one_line_settings_error(tmp_path: Path) -> None:
    wrong = tmp_path / "ec.pem"
    wrong.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path, reason in (
        (tmp_path / "missing.pem", "cannot read the key file"),
        (wrong, "not an Ed25519 private key"),
    ):
        done = run("audit", "public-key", url=None, key=path, expect=2)
        errors = [line for line in done.stderr.splitlines() if "Error: " in line]
        assert len(errors) == 1 and "SERVICEORDERS_AUDIT_SIGNING_KEY" in errors[0], done.stderr
        assert reason in errors[0]


def test_signed_checkpoints_rotation_and_pinned_keys(url: str, tmp_path: Path) -> None:
    k1, k2 = tmp_path / "k1.pem", tmp_path / "k2.pem"
    hex1 = run("audit", "keygen", "-o", str(k1), url=None).stdout.strip()
    hex2 = run("audit", "keygen", "-o", str(k2), url=None).stdout.strip()
    (tmp_path / "k1.pub").write_text(run("audit", "public-key", "--pem", url=None, key=k1).stdout)
    run("demo", url=url)

    made = run("audit", "checkpoint", url=url, key=k1)
    first = json.loads(made.stdout)
    assert (first["format"], first["public_key"]) == ("serviceorders-audit/2", hex1)
    assert first["signature"] and f"signed by key {hex1[:16]}" in made.stderr

    # rotate-key: refused without a configured key, or with an unreadable new key file
    one_error_line(
        run("audit", "rotate-key", "--new", str(k2), url=url, expect=2),
        "no SERVICEORDERS_AUDIT_SIGNING_KEY",
    )
    one_error_line(
        run("audit", "rotate-key", "--new", str(tmp_path / "nope.pem"), url=url, key=k1, expect=2),
        "cannot read the key file",
    )
    rotated = run("audit", "rotate-key", "--new", str(k2), url=url, key=k1)
    second = json.loads(rotated.stdout)
    assert (second["seq"], second["public_key"]) == (2, hex2) and second["endorsement"]
    assert "SERVICEORDERS_AUDIT_SIGNING_KEY" in rotated.stderr and str(k2) in rotated.stderr
    run("demo", url=url)
    assert json.loads(run("audit", "checkpoint", url=url, key=k2).stdout)["seq"] == 3

    for pins in ([hex1], [str(tmp_path / "k1.pub")], []):
        args = [a for p in pins for a in ("--public-key", p)]
        done = run("audit", "verify", *args, "--no-snapshots", url=url)
        assert done.stdout.rstrip().endswith("OK"), done.stdout
        assert ("not pinned" in done.stdout) == (not pins)
    export = tmp_path / "export.jsonl"
    run("audit", "export", "-o", str(export), url=url)
    header = json.loads(export.read_text().splitlines()[0])
    assert [k["public_key"] for k in header["public_keys"]] == [hex1, hex2]
    offline = run("audit", "verify", "--file", str(export), "--public-key", hex1, url=None)
    assert offline.stdout.rstrip().endswith("OK"), offline.stdout

    # the new key alone pinned: the first checkpoints' key is trusted by nothing
    failed = run("audit", "verify", "--public-key", hex2, "--json", url=url, expect=1)
    problems = json.loads(failed.stdout)["checkpoint_problems"]
    assert [(p["seq"], p["kind"]) for p in problems] == [(1, "key")]

    # a checkpoint signed by the old key again, with no rotation: written, then reported
    run("demo", url=url)
    again = run("audit", "checkpoint", url=url, key=k1)
    assert "rotate-key" in again.stderr  # the warning
    failed = run("audit", "verify", "--json", url=url, expect=1)
    problems = json.loads(failed.stdout)["checkpoint_problems"]
    assert [(p["seq"], p["kind"]) for p in problems] == [(4, "key")]

    # a pinned key that is not one: one line, exit 2
    one_error_line(
        run("audit", "verify", "--public-key", str(k1), url=url, expect=2), "a private key"
    )
    one_error_line(
        run("audit", "verify", "--public-key", "abc", url=url, expect=2), "--public-key abc"
    )

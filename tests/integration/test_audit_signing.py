"""Checkpoints signed with Ed25519 (format 2, docs/audit.md "Checkpoints"): they verify live
and from an export; a forged checkpoint fails its signature; a checkpoint re-signed by
another key fails the trust rule, pinned keys or not; a rotation endorsed by the previous
key verifies, an unendorsed key change does not; checkpoints of format 1 stored before keep
verifying; HMAC still works beside the signature; a bad SERVICEORDERS_AUDIT_SIGNING_KEY is a
one-line settings error.

Each test builds three orders through the application, a signed checkpoint, more events and
a second signed checkpoint, then changes the checkpoint table by SQL as an attacker with
database write access would. The digests and signatures a test writes are computed here
from the spec's rules (sorted keys, no whitespace, SHA-256, Ed25519), not by the package.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from serviceorders.audit.checkpoints import (
    Checkpoint,
    create_checkpoint,
    export_checkpoints,
    load_checkpoints,
    rotate_key,
)
from serviceorders.audit.export import export
from serviceorders.audit.report import Report
from serviceorders.audit.verify import verify, verify_file
from serviceorders.bootstrap import open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.settings import Settings, SettingsError
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

HMAC_KEY = "audit-hmac-key"
F1_FIELDS = (
    "changes_digest",
    "created_at",
    "format",
    "order_count",
    "position",
    "prev_digest",
    "root",
    "seq",
)


# ---------------------------------------------------------- the spec's rules, by hand
def jcs(value: Any) -> bytes:
    """C_jcs of a checkpoint's fields (ASCII strings, integers, null): sorted keys, no
    whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def hexkey(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def fields_of(row: dict[str, Any]) -> dict[str, Any]:
    """F1 or F2 of a checkpoint's JSON (`to_json`, an export line)."""
    names = F1_FIELDS
    if row["format"] == "serviceorders-audit/2":
        names = (*F1_FIELDS, "public_key", "endorsement")
    return {k: row[k] for k in names}


def resign(row: dict[str, Any], key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """`row` (a checkpoint's JSON) with its public_key, digest and signature made anew by
    `key` (None: unsigned), as an attacker holding `key` would."""
    row = {**row, "public_key": hexkey(key) if key else None}
    fields = fields_of(row)
    row["digest"] = hashlib.sha256(jcs(fields)).hexdigest()
    row["signature"] = key.sign(jcs(fields)).hex() if key else None
    return row


# ------------------------------------------------------------------------- the world
def clear_audit_tables(db: ReadDb) -> None:
    db.execute("DELETE FROM audit_checkpoint_head")
    db.execute("DELETE FROM audit_checkpoint")
    db.execute("DELETE FROM audit_seen_head")


@dataclass
class World:
    settings: Settings
    app: Any
    actors: Any
    db: ReadDb
    orders: list[UUID]
    k1: Ed25519PrivateKey
    tmp: Path

    def own(self, fn: Callable[[ReadDb], Any]) -> Any:
        """`fn` on a connection of its own, as a separate `audit` process would run it."""
        db = open_read_db(self.settings)
        try:
            return fn(db)
        finally:
            db.close()

    def verify(self, **kw: Any) -> Report:
        return self.own(lambda db: verify(db, snapshots=False, **kw))

    def checkpoint(self, **kw: Any) -> Checkpoint:
        return self.own(lambda db: create_checkpoint(db, **kw))

    def more_events(self) -> None:
        for order_id in self.orders:
            self.app.handle(self.actors.fulfilment, cmd.AddNote(order_id, "more"))

    def rows(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in load_checkpoints(self.db)]

    def store(self, row: dict[str, Any]) -> None:
        """Overwrite the stored checkpoint `row["seq"]` with `row` (direct SQL)."""
        created = datetime.fromisoformat(row["created_at"])
        self.db.execute(
            "UPDATE audit_checkpoint SET created_at = %s, digest = %s, prev_digest = %s, "
            "hmac = %s, format = %s, public_key = %s, endorsement = %s, signature = %s "
            "WHERE seq = %s",
            (
                self.db.adapt(created, "timestamptz"),
                row["digest"],
                row["prev_digest"],
                row.get("hmac"),
                None if row["format"] == "serviceorders-audit/1" else 2,
                row.get("public_key"),
                row.get("endorsement"),
                row.get("signature"),
                row["seq"],
            ),
        )

    def export(self, **kw: Any) -> Path:
        out = io.StringIO()
        self.own(lambda db: export(db, out))
        path = self.tmp / "export.jsonl"
        path.write_text(out.getvalue(), "utf-8")
        return path

    def verify_file(self, path: Path | None = None, **kw: Any) -> Report:
        return verify_file(path or self.export(), **kw)


def problems(report: Report) -> set[tuple[int, str]]:
    assert not report.order_problems, report.lines()
    return {(p.seq, p.kind) for p in report.checkpoint_problems}


def later(created_at: str) -> str:
    return (datetime.fromisoformat(created_at) + timedelta(seconds=1)).isoformat(
        timespec="microseconds"
    )


@pytest.fixture
def world(
    settings: Settings,
    make_settings: Callable[..., Settings],
    open_app: Any,
    actors: Any,
    samples: Any,
    tmp_path: Path,
) -> Iterator[World]:
    app = open_app(make_settings())
    db = open_read_db(settings)
    clear_audit_tables(db)
    orders = [
        app.handle(
            actors.upstream, cmd.ReceiveOrder(samples.header(f"sign-{i}"), tuple(samples.items()))
        ).order.id
        for i in range(3)
    ]
    w = World(settings, app, actors, db, orders, Ed25519PrivateKey.generate(), tmp_path)
    try:
        yield w
    finally:
        clear_audit_tables(db)
        db.close()


@pytest.fixture
def signed(world: World) -> World:
    """Two checkpoints signed by world.k1."""
    assert world.checkpoint(signing_key=world.k1).seq == 1
    world.more_events()
    assert world.checkpoint(signing_key=world.k1).seq == 2
    return world


# ------------------------------------------------------------------------ signed
def test_signed_checkpoints_verify_live_and_from_an_export(signed: World) -> None:
    k1 = hexkey(signed.k1)
    rows = signed.rows()
    for row in rows:
        assert row["format"] == "serviceorders-audit/2"
        assert (row["public_key"], row["endorsement"]) == (k1, None)
        # the digest and the signature cover F2, as the spec computes them
        assert row["digest"] == hashlib.sha256(jcs(fields_of(row))).hexdigest()
        signed.k1.public_key().verify(bytes.fromhex(row["signature"]), jcs(fields_of(row)))
        assert Checkpoint.from_json(row).to_json() == row  # anchors round-trip

    unpinned = signed.verify()
    assert unpinned.ok, unpinned.lines()
    assert any("not pinned" in n and k1 in n and "checkpoint 1" in n for n in unpinned.notes)
    assert not any("without a verifiable signature" in n for n in unpinned.notes)
    pinned = signed.verify(public_keys=[k1])
    assert pinned.ok, pinned.lines()
    assert not any("not pinned" in n for n in pinned.notes)

    path = signed.export()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["public_keys"] == [{"public_key": k1, "first_seq": 1}]
    checkpoint_lines = [line for line in lines if line["type"] == "checkpoint"]
    assert [
        {k: v for k, v in c.items() if k not in ("type", "changes")} for c in checkpoint_lines
    ] == rows
    assert signed.verify_file(path, public_keys=[k1]).ok
    assert (
        signed.own(lambda db: export_checkpoints(db, all_checkpoints=True))["checkpoints"] == rows
    )


def test_a_forged_checkpoint_fails_its_signature(signed: World) -> None:
    """A field changed and the digest recomputed: the signature no longer covers it."""
    row = signed.rows()[1]
    row["created_at"] = later(row["created_at"])
    row["digest"] = hashlib.sha256(jcs(fields_of(row))).hexdigest()
    signed.store(row)
    assert problems(signed.verify()) == {(2, "signature")}
    assert problems(signed.verify(public_keys=[hexkey(signed.k1)])) == {(2, "signature")}
    assert problems(signed.verify_file()) == {(2, "signature")}


def test_a_checkpoint_resigned_by_another_key_fails_the_trust_rule(signed: World) -> None:
    attacker = Ed25519PrivateKey.generate()
    row = signed.rows()[1]
    row["created_at"] = later(row["created_at"])
    signed.store(resign(row, attacker))
    assert problems(signed.verify()) == {(2, "key")}
    report = signed.verify(public_keys=[hexkey(signed.k1)])
    assert problems(report) == {(2, "key")}
    assert hexkey(attacker) in report.checkpoint_problems[0].detail
    assert problems(signed.verify_file(public_keys=[hexkey(signed.k1)])) == {(2, "key")}


def test_a_chain_resigned_from_the_start_is_caught_by_a_pinned_key_only(signed: World) -> None:
    attacker = Ed25519PrivateKey.generate()
    previous = "0" * 64
    for row in signed.rows():
        row["prev_digest"] = previous
        row = resign(row, attacker)
        signed.store(row)
        previous = row["digest"]
    unpinned = signed.verify()
    assert unpinned.ok, unpinned.lines()  # the note is what warns the auditor
    assert any("not pinned" in n and hexkey(attacker) in n for n in unpinned.notes)
    assert problems(signed.verify(public_keys=[hexkey(signed.k1)])) == {(1, "key")}
    assert problems(signed.verify_file(public_keys=[hexkey(signed.k1)])) == {(1, "key")}


# ---------------------------------------------------------------------- rotation
def test_a_rotation_verifies_with_the_old_key_pinned(signed: World) -> None:
    k1, k2 = signed.k1, Ed25519PrivateKey.generate()
    rotated = signed.own(lambda db: rotate_key(db, k2, k1))
    assert (rotated.seq, rotated.public_key, rotated.fresh) == (3, hexkey(k2), True)
    assert rotated.position == signed.rows()[1]["position"]  # nothing new: recorded anyway
    rotation = jcs({"format": "serviceorders-audit-rotation/1", "public_key": hexkey(k2), "seq": 3})
    k1.public_key().verify(bytes.fromhex(rotated.endorsement or ""), rotation)
    signed.more_events()
    assert signed.checkpoint(signing_key=k2).endorsement is None  # same key as before

    for report in (
        signed.verify(),
        signed.verify(public_keys=[hexkey(k1)]),
        signed.verify_file(public_keys=[hexkey(k1)]),
        signed.verify(public_keys=[hexkey(k1), hexkey(k2)]),
    ):
        assert report.ok, report.lines()
    # pinned: only the new key; the first one is neither pinned nor endorsed
    assert problems(signed.verify(public_keys=[hexkey(k2)])) == {(1, "key")}
    header = json.loads(signed.export().read_text().splitlines()[0])
    assert header["public_keys"] == [
        {"public_key": hexkey(k1), "first_seq": 1},
        {"public_key": hexkey(k2), "first_seq": 3},
    ]


def test_a_forged_endorsement_fails(signed: World) -> None:
    attacker = Ed25519PrivateKey.generate()
    rotated = signed.own(lambda db: rotate_key(db, attacker, signed.k1)).to_json()
    # endorsed by the attacker's own key, then re-signed
    rotated["endorsement"] = attacker.sign(b"anything").hex()
    signed.store(resign(rotated, attacker))
    assert problems(signed.verify(public_keys=[hexkey(signed.k1)])) == {(3, "key")}


def test_rotation_refusals(signed: World) -> None:
    from serviceorders.audit.checkpoints import AuditError

    other = Ed25519PrivateKey.generate()
    with pytest.raises(AuditError, match="new key is the current key"):
        signed.own(lambda db: rotate_key(db, signed.k1, signed.k1))
    with pytest.raises(AuditError, match="not the key of the latest signed checkpoint 2"):
        signed.own(lambda db: rotate_key(db, signed.k1, other))
    assert len(signed.rows()) == 2


def test_an_unendorsed_key_change_is_written_warned_and_reported(
    signed: World, caplog: pytest.LogCaptureFixture
) -> None:
    k2 = Ed25519PrivateKey.generate()
    signed.more_events()
    with caplog.at_level(logging.WARNING, "serviceorders.audit.checkpoints"):
        changed = signed.checkpoint(signing_key=k2)
    assert (changed.seq, changed.public_key, changed.endorsement) == (3, hexkey(k2), None)
    assert any("rotate-key" in r.getMessage() for r in caplog.records)
    assert problems(signed.verify()) == {(3, "key")}
    assert problems(signed.verify(public_keys=[hexkey(signed.k1)])) == {(3, "key")}
    assert signed.verify(public_keys=[hexkey(signed.k1), hexkey(k2)]).ok  # both pinned


def test_a_key_rotated_away_from_needs_an_endorsement_to_come_back(signed: World) -> None:
    k2 = Ed25519PrivateKey.generate()
    signed.own(lambda db: rotate_key(db, k2, signed.k1))
    signed.more_events()
    signed.checkpoint(signing_key=signed.k1)  # the old key again, unendorsed
    assert problems(signed.verify()) == {(4, "key")}


def test_an_unsigned_checkpoint_after_signed_ones_is_reported(signed: World) -> None:
    signed.more_events()
    assert signed.checkpoint().public_key is None
    assert problems(signed.verify()) == {(3, "unsigned")}
    report = signed.verify(unsigned_up_to=3)
    assert report.ok, report.lines()
    assert any("without a verifiable signature" in n and "unsigned: 3" in n for n in report.notes)


def test_checkpoints_all_recomputed_unsigned_fail_against_a_pinned_key(signed: World) -> None:
    """An attacker who cannot sign recomputes every checkpoint unsigned: without a pin that
    is only a note; with the operator's key pinned, each one is `unsigned`."""
    previous = "0" * 64
    for row in signed.rows():
        row["prev_digest"] = previous
        row = resign(row, None)
        signed.store(row)
        previous = row["digest"]
    unpinned = signed.verify()
    assert unpinned.ok, unpinned.lines()
    assert any("without a verifiable signature" in n for n in unpinned.notes)
    pinned = [hexkey(signed.k1)]
    assert problems(signed.verify(public_keys=pinned)) == {(1, "unsigned"), (2, "unsigned")}
    assert problems(signed.verify_file(public_keys=pinned)) == {(1, "unsigned"), (2, "unsigned")}
    assert signed.verify(public_keys=pinned, unsigned_up_to=2).ok


def test_an_endorsement_on_the_first_signed_checkpoint_is_reported(world: World) -> None:
    """There is no previous key to endorse the first one: an endorsement there is forged."""
    world.checkpoint(signing_key=world.k1)
    row = world.rows()[0]
    row["endorsement"] = world.k1.sign(b"anything").hex()
    world.store(resign(row, world.k1))
    report = world.verify()
    assert problems(report) == {(1, "key")}
    assert "first signed checkpoint" in report.checkpoint_problems[0].detail


# ---------------------------------------------------------------- format 1, HMAC
def test_format_1_checkpoints_stored_before_still_verify(world: World) -> None:
    """Checkpoints 1 and 2 written as the code before format 2 wrote them (F1 digested,
    HMAC over F1, no format / key / signature columns set), then a signed format-2 one."""
    previous = "0" * 64
    for seq in (1, 2):
        made = world.checkpoint().to_json()
        assert made["seq"] == seq
        f1 = {k: made[k] for k in F1_FIELDS}
        f1["format"], f1["prev_digest"] = "serviceorders-audit/1", previous
        old = {
            **f1,
            "digest": hashlib.sha256(jcs(f1)).hexdigest(),
            "hmac": hmac.new(HMAC_KEY.encode(), jcs(f1), hashlib.sha256).hexdigest(),
        }
        world.store(old)
        previous = old["digest"]
        world.more_events()
    world.checkpoint(signing_key=world.k1, key=HMAC_KEY)

    first, second, third = load_checkpoints(world.db)
    assert (first.format, second.format, third.format) == (1, 1, 2)
    assert "public_key" not in first.fields() and "signature" not in first.to_json()
    assert third.prev_digest == second.digest
    pinned = [hexkey(world.k1)]
    for report in (
        world.verify(key=HMAC_KEY),
        world.verify(key=HMAC_KEY, public_keys=pinned, unsigned_up_to=2),
        world.verify_file(key=HMAC_KEY),
    ):
        assert report.ok, report.lines()
        assert not any("without a verifiable signature" in n for n in report.notes)
    unkeyed = world.verify()
    assert unkeyed.ok, unkeyed.lines()
    assert any(
        "2 checkpoint(s) without a verifiable signature" in n and "HMAC only" in n and "1-2" in n
        for n in unkeyed.notes
    ), unkeyed.notes
    # a pinned key says every checkpoint is signed: those made before signing are named
    assert problems(world.verify(key=HMAC_KEY, public_keys=pinned)) == {
        (1, "unsigned"),
        (2, "unsigned"),
    }
    wrong = world.verify(key="another key")
    assert problems(wrong) == {(1, "hmac"), (2, "hmac"), (3, "hmac")}


def test_hmac_beside_the_signature(world: World) -> None:
    made = world.checkpoint(signing_key=world.k1, key=HMAC_KEY).to_json()
    expected = hmac.new(HMAC_KEY.encode(), jcs(fields_of(made)), hashlib.sha256).hexdigest()
    assert made["hmac"] == expected and made["signature"]
    assert world.verify(key=HMAC_KEY, public_keys=[hexkey(world.k1)]).ok
    assert problems(world.verify(key="another key")) == {(1, "hmac")}


def test_old_rows_read_back_as_format_1(world: World) -> None:
    """A row as a release before format 2 stored it: the new columns null."""
    world.checkpoint()
    world.db.execute("UPDATE audit_checkpoint SET format = NULL")
    (old,) = load_checkpoints(world.db)
    assert old.format == 1 and old.fields()["format"] == "serviceorders-audit/1"


# --------------------------------------------------------------------- settings
def test_the_signing_key_setting(tmp_path: Path) -> None:
    good = tmp_path / "k.pem"
    key = Ed25519PrivateKey.generate()
    good.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db'}"}
    settings = Settings.from_env({**env, "SERVICEORDERS_AUDIT_SIGNING_KEY": str(good)})
    loaded = settings.signing_key()
    assert loaded is not None and hexkey(loaded) == hexkey(key)
    assert str(good) not in repr(settings)
    assert Settings.from_env(env).signing_key() is None

    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    for path, reason in (
        (tmp_path / "missing.pem", "cannot read the key file"),
        (ec_key, "not an Ed25519 private key"),
        (garbage, "not a PEM private key"),
    ):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({**env, "SERVICEORDERS_AUDIT_SIGNING_KEY": str(path)})
        message = str(raised.value)
        assert message.startswith("SERVICEORDERS_AUDIT_SIGNING_KEY: ") and reason in message
        assert "\n" not in message

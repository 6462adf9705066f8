"""Checkpoints over the log (docs/audit.md): the tables, the record, creating one, the
background checkpointer, and exporting them as an anchor.

A checkpoint (`audit_checkpoint`) covers the log up to a position: the Merkle root over
every order's chain head (order id, version, head hash) as of that position, chained to the
previous checkpoint by digest, signed with an Ed25519 key (`SERVICEORDERS_AUDIT_SIGNING_KEY`;
format 2: the public key and, on a key rotation, the previous key's endorsement are among
the digested fields) and, with a key (`SERVICEORDERS_AUDIT_HMAC_KEY`), HMAC'd. Checkpoints of
format 1 (stored before format 2) keep their fields and keep verifying.
`audit_checkpoint_head` keeps the heads that changed since the previous checkpoint, so that
a mismatch names the order.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_lib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from serviceorders.audit.merkle import HeadTree, changes_digest, sha
from serviceorders.audit.store import Store, as_order_id
from serviceorders.domain.chain import GENESIS, canonical
from serviceorders.storage import seen
from serviceorders.storage.db import Busy, ReadDb, Table
from serviceorders.support.isotime import now_iso
from serviceorders.support.signing import public_hex, sign

log = logging.getLogger(__name__)

FORMAT_1 = "serviceorders-audit/1"
FORMAT = "serviceorders-audit/2"  # every new checkpoint's
FORMATS = {1: FORMAT_1, 2: FORMAT}
ROTATION_FORMAT = "serviceorders-audit-rotation/1"
ANCHOR_FORMAT = "serviceorders-audit-checkpoints/1"

CHECKPOINTS = Table(
    name="audit_checkpoint",
    columns=(
        ("seq", "bigint"),
        ("created_at", "timestamptz"),
        ("position", "bigint"),
        ("order_count", "bigint"),
        ("root", "text"),
        ("changes_digest", "text"),
        ("prev_digest", "text"),
        ("digest", "text"),
        ("hmac", "text"),
        # format 2 (null: format 1, stored before it)
        ("format", "bigint"),
        ("public_key", "text"),
        ("endorsement", "text"),
        ("signature", "text"),
    ),
    primary_key=("seq",),
)
CHECKPOINT_HEADS = Table(
    name="audit_checkpoint_head",
    columns=(("seq", "bigint"), ("order_id", "uuid"), ("version", "bigint"), ("head_hash", "text")),
    primary_key=("seq", "order_id"),
    indexes={"order": ("order_id", "seq")},
)
TABLES = (CHECKPOINTS, CHECKPOINT_HEADS)

Progress = Callable[[int], Any]


class AuditError(Exception):
    """The audit cannot proceed (e.g. a checkpoint would bless a store that went back)."""


def create_tables(db: ReadDb) -> None:
    """The audit's tables (idempotent); `serviceorders db init` calls this."""
    with db.transaction():
        for table in TABLES:
            db.create_table(table)


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    created_at: str  # ISO 8601 UTC, microseconds
    position: int  # the last log position covered (notification id / rowid)
    order_count: int
    root: str
    changes_digest: str
    prev_digest: str
    digest: str
    hmac: str | None = None
    format: int = 2  # 1: stored before format 2 (no public_key, endorsement, signature)
    public_key: str | None = None  # hex of the raw Ed25519 public key that signed it
    endorsement: str | None = None  # on a key rotation: the previous key's signature
    signature: str | None = None  # Ed25519 over canonical(fields()) by public_key
    # the heads that changed since the previous checkpoint: (order id, version, head hash)
    changes: tuple[tuple[str, int, str], ...] = field(default=(), compare=False, repr=False)
    fresh: bool = field(default=False, compare=False)  # created by this call

    def fields(self) -> dict[str, Any]:
        """What the digest, the signature and the HMAC cover: F1 for a checkpoint of
        format 1, F2 (with public_key and endorsement) for format 2."""
        return canonical_fields(
            self.seq,
            self.created_at,
            self.position,
            self.order_count,
            self.root,
            self.changes_digest,
            self.prev_digest,
            format=self.format,
            public_key=self.public_key,
            endorsement=self.endorsement,
        )

    def to_json(self, *, with_changes: bool = False) -> dict[str, Any]:
        data = {**self.fields(), "digest": self.digest, "hmac": self.hmac}
        if self.format >= 2:
            data["signature"] = self.signature
        if with_changes:
            data["changes"] = [list(c) for c in self.changes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """A checkpoint from its JSON (`to_json`, an export line, an anchor); ValueError
        for an unknown format."""
        format = format_number(data.get("format", FORMAT_1))
        signed = format >= 2
        return cls(
            seq=int(data["seq"]),
            created_at=str(data["created_at"]),
            position=int(data["position"]),
            order_count=int(data["order_count"]),
            root=str(data["root"]),
            changes_digest=str(data["changes_digest"]),
            prev_digest=str(data["prev_digest"]),
            digest=str(data["digest"]),
            hmac=data.get("hmac"),
            format=format,
            public_key=_text(data.get("public_key")) if signed else None,
            endorsement=_text(data.get("endorsement")) if signed else None,
            signature=_text(data.get("signature")) if signed else None,
            changes=tuple((str(o), int(v), str(h)) for o, v, h in data.get("changes") or ()),
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def format_number(name: Any) -> int:
    """1 or 2 for "serviceorders-audit/1" or "/2"; ValueError otherwise."""
    for number, known in FORMATS.items():
        if name == known:
            return number
    raise ValueError(f"unknown checkpoint format {name!r} (known: {', '.join(FORMATS.values())})")


def canonical_fields(
    seq: int,
    created_at: str,
    position: int,
    order_count: int,
    root: str,
    changes: str,
    prev_digest: str,
    *,
    format: int = 2,
    public_key: str | None = None,
    endorsement: str | None = None,
) -> dict[str, Any]:
    """F1 (format 1) or F2 (format 2: F1 with public_key and endorsement)."""
    fields: dict[str, Any] = {
        "format": FORMATS[format],
        "seq": seq,
        "created_at": created_at,
        "position": position,
        "order_count": order_count,
        "root": root,
        "changes_digest": changes,
        "prev_digest": prev_digest,
    }
    if format >= 2:
        fields["public_key"] = public_key
        fields["endorsement"] = endorsement
    return fields


def rotation_message(public_key: str, seq: int) -> bytes:
    """What the previous key signs to endorse `public_key` from checkpoint `seq` on."""
    return canonical({"format": ROTATION_FORMAT, "public_key": public_key, "seq": seq})


def checkpoint_digest(fields: dict[str, Any]) -> str:
    return sha(canonical(fields))


def checkpoint_hmac(key: str, fields: dict[str, Any]) -> str:
    return hmac_lib.new(key.encode(), canonical(fields), hashlib.sha256).hexdigest()


def latest_public_key(checkpoints: list[Checkpoint]) -> tuple[int, str] | None:
    """(seq, public key) of the latest checkpoint that has a public key."""
    for checkpoint in reversed(checkpoints):
        if checkpoint.public_key is not None:
            return checkpoint.seq, checkpoint.public_key
    return None


def load_checkpoints(db: ReadDb) -> list[Checkpoint]:
    """Every stored checkpoint with its changed heads, in seq order."""
    changes: dict[int, list[tuple[str, int, str]]] = {}
    for seq, oid, version, head in db.fetchall(
        "SELECT seq, order_id, version, head_hash FROM audit_checkpoint_head ORDER BY seq, order_id"
    ):
        changes.setdefault(int(seq), []).append((as_order_id(oid), int(version), head))
    found = []
    for row in db.fetchall(
        "SELECT seq, created_at, position, order_count, root, "
        "changes_digest, prev_digest, digest, hmac, format, public_key, endorsement, "
        "signature FROM audit_checkpoint ORDER BY seq"
    ):
        seq, created, position, count, root, cdigest, prev, digest, mac = row[:9]
        format, public_key, endorsement, signature = row[9:]
        found.append(
            Checkpoint(
                seq=int(seq),
                created_at=checkpoint_time(db.decode(created, "timestamptz")),
                position=int(position),
                order_count=int(count),
                root=root,
                changes_digest=cdigest,
                prev_digest=prev,
                digest=digest,
                hmac=mac,
                format=1 if format is None else int(format),
                public_key=public_key,
                endorsement=endorsement,
                signature=signature,
                changes=tuple(changes.get(int(seq), ())),
            )
        )
    return found


def checkpoint_time(value: datetime) -> str:
    """A checkpoint's `created_at` as its digest and HMAC cover it: UTC as `+00:00`, with
    microseconds. A stored format, not the wire's (`support.isotime` writes `Z`): changing
    it would break every checkpoint already recorded."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def create_checkpoint(
    db: ReadDb,
    *,
    key: str | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    now: datetime | None = None,
) -> Checkpoint | None:
    """Record a checkpoint over the log as it is now; returns it (`fresh=True`).

    Nothing new since the latest checkpoint: returns that one (`fresh=False`), or None for
    an empty store. Another process checkpointing at the same moment: returns None.
    `signing_key` signs it (Ed25519; the runtime passes `SERVICEORDERS_AUDIT_SIGNING_KEY`'s
    key), `key` HMACs it (HMAC-SHA256; `SERVICEORDERS_AUDIT_HMAC_KEY`). A signing key other
    than the latest signed checkpoint's, without `rotate_key`: the checkpoint is written
    unendorsed (verification reports it) and a warning logged.
    Refuses (AuditError) when an order went back or vanished since the latest checkpoint,
    or since the projector read it (`storage/seen.py`): that is tampering, and a checkpoint
    must not bless it."""
    try:
        with db.transaction(lock="audit_checkpoint"):
            return _create(db, key, now or datetime.now(UTC), signing_key)
    except Busy:
        return None


def rotate_key(
    db: ReadDb,
    new_key: Ed25519PrivateKey,
    current_key: Ed25519PrivateKey,
    *,
    key: str | None = None,
    now: datetime | None = None,
) -> Checkpoint:
    """Record a checkpoint now (even with nothing new since the latest) signed by
    `new_key`, with the endorsement of `current_key`, which must be the key of the latest
    signed checkpoint. AuditError when it cannot be done (no signed checkpoint yet, the
    current key is not the latest checkpoint's, the new key is the current one, another
    process is checkpointing)."""
    new, current = public_hex(new_key), public_hex(current_key)
    if new == current:
        raise AuditError("the new key is the current key: nothing to rotate")
    try:
        with db.transaction(lock="audit_checkpoint"):
            latest = latest_public_key(load_checkpoints(db))
            if latest is None:
                raise AuditError(
                    "no signed checkpoint yet: nothing to rotate from; point "
                    "SERVICEORDERS_AUDIT_SIGNING_KEY at the new key file instead"
                )
            if latest[1] != current:
                raise AuditError(
                    f"the configured SERVICEORDERS_AUDIT_SIGNING_KEY ({current[:16]}…) is "
                    f"not the key of the latest signed checkpoint {latest[0]} "
                    f"({latest[1][:16]}…): it cannot endorse a new key"
                )
            made = _create(
                db, key, now or datetime.now(UTC), new_key, endorser=current_key, force=True
            )
    except Busy:
        raise AuditError("another process is checkpointing: try again") from None
    assert made is not None and made.fresh
    return made


def _create(
    db: ReadDb,
    key: str | None,
    now: datetime,
    signing_key: Ed25519PrivateKey | None = None,
    *,
    endorser: Ed25519PrivateKey | None = None,
    force: bool = False,
) -> Checkpoint | None:
    store = Store(db)
    checkpoints = load_checkpoints(db)
    last = checkpoints[-1] if checkpoints else None
    position = store.head()
    if force and last is not None and position < last.position:
        raise AuditError(
            f"the log ends at position {position}, before the latest checkpoint's "
            f"{last.position}: run `serviceorders audit verify`"
        )
    if not force and (position == 0 or (last is not None and position <= last.position)):
        return last
    recorded: dict[str, tuple[int, str]] = {}
    for checkpoint in checkpoints:
        for oid, version, head in checkpoint.changes:
            recorded[oid] = (version, head)
    heads = store.heads_as_of(position)
    tree = HeadTree()
    changes: list[tuple[str, int, str]] = []
    wrong: list[str] = []
    for oid, (version, maybe_head) in sorted(heads.items()):
        if maybe_head is None:
            wrong.append(f"order {oid}: head v{version} cannot be decoded")
            continue
        head = maybe_head
        tree.set(oid, version, head)
        before = recorded.get(oid)
        if before == (version, head):
            continue
        if before is not None and version <= before[0]:
            wrong.append(
                f"order {oid}: head v{version} where checkpoint recorded v{before[0]}"
                f" {'(another hash)' if version == before[0] else ''}".rstrip()
            )
        changes.append((oid, version, head))
    wrong += [
        f"order {oid}: missing (checkpoint recorded v{recorded[oid][0]})"
        for oid in sorted(recorded.keys() - heads.keys())
    ]
    for oid, (version, _, _) in sorted(seen.load(db).items()):
        if heads.get(oid, (0, None))[0] >= version:
            continue
        # Behind the projector as of this position: read the order's events as they are
        # now (the projector may have read events written after `position`).
        newest = max((row.version for row in store.rows(UUID(oid))), default=None)
        if newest is None:
            wrong.append(f"order {oid}: missing (the projector read v{version})")
        elif newest < version:
            wrong.append(f"order {oid}: head v{newest} where the projector read v{version}")
    if wrong:
        raise AuditError(
            "refusing to checkpoint a store that contradicts the earlier "
            "checkpoints; run `serviceorders audit verify`: " + "; ".join(wrong[:5])
        )
    seq = last.seq + 1 if last else 1
    created_at = checkpoint_time(now)
    public_key = public_hex(signing_key) if signing_key is not None else None
    endorsement = None
    previous = latest_public_key(checkpoints)
    if public_key is None and previous is not None:
        log.warning(
            "audit checkpoint %s is unsigned (no SERVICEORDERS_AUDIT_SIGNING_KEY) although "
            "checkpoint %s was signed: `audit verify` will report it",
            seq,
            previous[0],
        )
    elif public_key is not None and previous is not None and previous[1] != public_key:
        if endorser is not None and public_hex(endorser) == previous[1]:
            endorsement = sign(endorser, rotation_message(public_key, seq))
        else:
            log.warning(
                "audit checkpoint %s is signed by key %s, not by the key of checkpoint %s "
                "(%s), and no rotation endorses it: `audit verify` will report it; use "
                "`serviceorders audit rotate-key` to change keys",
                seq,
                public_key,
                previous[0],
                previous[1],
            )
    fields = canonical_fields(
        seq,
        created_at,
        position,
        len(tree),
        tree.root(),
        changes_digest(changes),
        last.digest if last else GENESIS,
        public_key=public_key,
        endorsement=endorsement,
    )
    checkpoint = Checkpoint(
        seq=seq,
        created_at=created_at,
        position=position,
        order_count=len(tree),
        root=fields["root"],
        changes_digest=fields["changes_digest"],
        prev_digest=fields["prev_digest"],
        digest=checkpoint_digest(fields),
        hmac=checkpoint_hmac(key, fields) if key else None,
        format=2,
        public_key=public_key,
        endorsement=endorsement,
        signature=sign(signing_key, canonical(fields)) if signing_key is not None else None,
        changes=tuple(changes),
        fresh=True,
    )
    db.execute(
        "INSERT INTO audit_checkpoint (seq, created_at, position, order_count, root, "
        "changes_digest, prev_digest, digest, hmac, format, public_key, endorsement, "
        "signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            seq,
            db.adapt(now, "timestamptz"),
            position,
            len(tree),
            checkpoint.root,
            checkpoint.changes_digest,
            checkpoint.prev_digest,
            checkpoint.digest,
            checkpoint.hmac,
            checkpoint.format,
            checkpoint.public_key,
            checkpoint.endorsement,
            checkpoint.signature,
        ),
    )
    if changes:
        db.executemany(
            "INSERT INTO audit_checkpoint_head (seq, order_id, version, head_hash) "
            "VALUES (%s, %s, %s, %s)",
            [(seq, db.adapt(UUID(oid), "uuid"), version, head) for oid, version, head in changes],
        )
    return checkpoint


class Checkpointer:
    """Creates a checkpoint every `interval` seconds until `stopping` is set.

    Thread-friendly: `run` blocks (give it its own thread, or use `start`); errors are
    logged and the next round goes on; one connection per round, from `connect`, signed
    with `signing_key` (Ed25519) and HMAC'd with `key` (the runtime passes its settings'
    values)."""

    def __init__(
        self,
        connect: Callable[[], ReadDb],
        *,
        key: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        interval: float = 300.0,
    ) -> None:
        self.connect = connect
        self.key = key
        self.signing_key = signing_key
        self.interval = interval
        self.last: Checkpoint | None = None

    def run_once(self) -> Checkpoint | None:
        try:
            db = self.connect()
            try:
                checkpoint = create_checkpoint(db, key=self.key, signing_key=self.signing_key)
            finally:
                db.close()
        except Exception as e:  # the database went away, a refused checkpoint, ...
            log.warning("audit checkpoint failed: %s: %s", type(e).__name__, e)
            return None
        if checkpoint is not None and checkpoint.fresh:
            log.info(
                "audit checkpoint %s at position %s: root %s",
                checkpoint.seq,
                checkpoint.position,
                checkpoint.root[:16],
            )
            self.last = checkpoint
        if checkpoint is not None and self.anchor is not None:
            self._anchor(checkpoint)
        return checkpoint

    def run(self, stopping: threading.Event, interval: float | None = None) -> None:
        every = interval if interval is not None else self.interval
        while not stopping.wait(every):
            self.run_once()

    def start(self, stopping: threading.Event, interval: float | None = None) -> threading.Thread:
        from serviceorders.support.logs import start_worker

        return start_worker(
            "audit checkpointer", "audit-checkpointer", self.run, stopping, interval
        )

    # The anchor outside the database every fresh checkpoint is also appended to
    # (SERVICEORDERS_AUDIT_ANCHOR, audit/anchors.py; the runtime sets it with `anchor_to`),
    # and what counts the rounds it could not be written (a metric).
    anchor: Any = None
    on_anchor_failure: Callable[[], Any] | None = None

    def anchor_to(self, anchor: Any, on_failure: Callable[[], Any] | None = None) -> Checkpointer:
        self.anchor, self.on_anchor_failure = anchor, on_failure
        return self

    def _anchor(self, checkpoint: Checkpoint) -> None:
        """Append the checkpoint, and those missed before, to the anchor. A failure is
        logged (the checkpoint stays recorded) and the missed ones retried next round."""
        try:
            db = self.connect()
            try:
                done = self.anchor.catch_up(db, checkpoint)
            finally:
                db.close()
        except Exception as e:  # the anchor cannot be written (or the database went away)
            seqs = getattr(e, "seqs", ()) or (checkpoint.seq,)
            log.warning(
                "audit checkpoint(s) %s recorded but not anchored (retried next round): %s",
                ", ".join(map(str, seqs)),
                e,
            )
            if self.on_anchor_failure is not None:
                self.on_anchor_failure()
            return
        if done:
            log.info(
                "audit checkpoint(s) %s anchored to %s",
                ", ".join(map(str, done)),
                self.anchor.description,
            )


def export_checkpoints(db: ReadDb, *, all_checkpoints: bool = False) -> dict[str, Any]:
    """The latest checkpoint (or all) as JSON, to anchor outside the database."""
    checkpoints = load_checkpoints(db)
    chosen = checkpoints if all_checkpoints else checkpoints[-1:]
    return {
        "format": ANCHOR_FORMAT,
        "exported_at": now_iso(),
        "checkpoints": [c.to_json() for c in chosen],
    }

"""Tamper evidence for the event store: verify every hash chain, checkpoint the chain heads,
export for offline audit (docs/audit.md).

* `verify` recomputes every order's hash chain from the stored rows (before any upcasting),
  checks every checkpoint (its digest chain, HMAC, and the Merkle root recomputed from the
  store as of the checkpoint's log position), an optional external anchor, and every
  snapshot against a replay of the events up to its version.
* A checkpoint (`audit_checkpoint`) covers the log up to a position: the Merkle root over
  every order's chain head (order id, version, head hash) as of that position, chained to
  the previous checkpoint by digest and, with `SERVICEORDERS_AUDIT_HMAC_KEY`, signed.
  `audit_checkpoint_head` keeps the heads that changed since the previous checkpoint, so
  that a mismatch names the order.
* `export` writes JSON lines (events exactly as stored, then the checkpoints) that
  `verify_file` checks without a database.

The SQL is portable through `ReadDb` (`%s` placeholders); the events table is read in
(order id, version) order with keyset pagination, so verification is one pass.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_lib
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple
from uuid import UUID

import orjson
from serviceorders.domain.chain import GENESIS, canonical, event_hash
from serviceorders.settings import Settings
from serviceorders.storage.db import Busy, ReadDb, Table

log = logging.getLogger(__name__)

FORMAT = "serviceorders-audit/1"
ANCHOR_FORMAT = "serviceorders-audit-checkpoints/1"
PAGE = 2000

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


# ============================================================== hashing primitives
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EMPTY_ROOT = _sha(b"\x02")  # the root over no heads at all


def head_leaf(order_id: str, version: int, head_hash: str) -> bytes:
    """A Merkle leaf: SHA-256 of 0x00 + canonical JSON [order id, version, head hash]."""
    return hashlib.sha256(b"\x00" + canonical([order_id, version, head_hash])).digest()


def merkle(nodes: list[bytes]) -> bytes:
    """Binary Merkle tree over the nodes in order: a parent is SHA-256(0x01 + left + right);
    an odd node at the end of a level is carried up unchanged."""
    if not nodes:
        return bytes.fromhex(EMPTY_ROOT)
    while len(nodes) > 1:
        paired = [
            hashlib.sha256(b"\x01" + nodes[i] + nodes[i + 1]).digest()
            for i in range(0, len(nodes) - 1, 2)
        ]
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
    return nodes[0]


class HeadTree:
    """Every order's chain head, and their Merkle root.

    The orders, sorted by id, fall into 256 consecutive buckets by the first byte of the
    id; the root is the Merkle root over the 256 bucket roots (each the Merkle root over its
    sorted leaves, an empty bucket the empty root). Sorted by id overall, but only the
    buckets that changed are recomputed from one checkpoint to the next."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self._leaves: list[dict[str, bytes]] = [{} for _ in range(256)]
        self._roots: list[bytes | None] = [None] * 256

    def __len__(self) -> int:
        return len(self.heads)

    def get(self, order_id: str) -> tuple[int, str] | None:
        return self.heads.get(order_id)

    def set(self, order_id: str, version: int, head_hash: str) -> None:
        self.heads[order_id] = (version, head_hash)
        bucket = int(order_id[:2], 16)
        self._leaves[bucket][order_id] = head_leaf(order_id, version, head_hash)
        self._roots[bucket] = None

    def root(self) -> str:
        for i, root in enumerate(self._roots):
            if root is None:
                leaves = self._leaves[i]
                self._roots[i] = merkle([leaves[k] for k in sorted(leaves)])
        return merkle(list(self._roots)).hex()  # type: ignore[arg-type]


def changes_digest(changes: Iterable[tuple[str, int, str]]) -> str:
    """SHA-256 of the canonical JSON list of [order id, version, head hash], sorted."""
    return _sha(canonical(sorted([list(c) for c in changes])))


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
    # the heads that changed since the previous checkpoint: (order id, version, head hash)
    changes: tuple[tuple[str, int, str], ...] = field(default=(), compare=False, repr=False)
    fresh: bool = field(default=False, compare=False)  # created by this call

    def fields(self) -> dict[str, Any]:
        """What the digest and the HMAC cover."""
        return canonical_fields(
            self.seq,
            self.created_at,
            self.position,
            self.order_count,
            self.root,
            self.changes_digest,
            self.prev_digest,
        )

    def to_json(self, *, with_changes: bool = False) -> dict[str, Any]:
        data = {**self.fields(), "digest": self.digest, "hmac": self.hmac}
        if with_changes:
            data["changes"] = [list(c) for c in self.changes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
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
            changes=tuple((str(o), int(v), str(h)) for o, v, h in data.get("changes") or ()),
        )


def canonical_fields(
    seq: int,
    created_at: str,
    position: int,
    order_count: int,
    root: str,
    changes: str,
    prev_digest: str,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "seq": seq,
        "created_at": created_at,
        "position": position,
        "order_count": order_count,
        "root": root,
        "changes_digest": changes,
        "prev_digest": prev_digest,
    }


def checkpoint_digest(fields: dict[str, Any]) -> str:
    return _sha(canonical(fields))


def checkpoint_hmac(key: str, fields: dict[str, Any]) -> str:
    return hmac_lib.new(key.encode(), canonical(fields), hashlib.sha256).hexdigest()


# ===================================================================== the store
class Row(NamedTuple):
    """One stored event: its state decoded exactly as stored (None: not decodable)."""

    order_id: str
    version: int
    topic: str
    state: dict[str, Any] | None
    position: int
    raw: bytes | None = None  # the stored bytes (kept for snapshot replay)


def _oid(value: Any) -> str:
    return str(value) if isinstance(value, UUID) else str(UUID(str(value)))


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        state = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return state if isinstance(state, dict) else None


def _stored_hash(state: dict[str, Any] | None) -> str | None:
    value = state.get("hash") if state is not None else None
    return value if isinstance(value, str) else None


class Store:
    """The events and snapshots tables of either dialect, read directly."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db
        self.events, self.snapshots = db.events_table, db.snapshots_table
        self.position = db.log_position

    def key(self, order_id: UUID) -> Any:
        return order_id if self.db.dialect == "postgres" else order_id.hex

    def head(self) -> int:
        row = self.db.fetchone(f"SELECT MAX({self.position}) FROM {self.events}")
        return int(row[0]) if row and row[0] is not None else 0

    def count(self) -> int:
        row = self.db.fetchone(f"SELECT COUNT(*) FROM {self.events}")
        return int(row[0]) if row else 0

    def rows(self, order_id: UUID | None = None, *, keep_raw: bool = False) -> Iterator[Row]:
        """Every stored event in (order id, version) order, page by page (keyset)."""
        sql = (
            f"SELECT originator_id, originator_version, topic, state, {self.position} "
            f"FROM {self.events}"
        )
        where: list[str] = []
        base: list[Any] = []
        if order_id is not None:
            where.append("originator_id = %s")
            base.append(self.key(order_id))
        last: tuple[Any, int] | None = None
        while True:
            clauses, params = list(where), list(base)
            if last is not None:
                clauses.append("(originator_id, originator_version) > (%s, %s)")
                params.extend(last)
            page = self.db.fetchall(
                sql
                + (" WHERE " + " AND ".join(clauses) if clauses else "")
                + " ORDER BY originator_id, originator_version LIMIT %s",
                [*params, PAGE],
            )
            for oid, version, topic, state, position in page:
                data = bytes(state)
                yield Row(
                    _oid(oid),
                    int(version),
                    topic,
                    _decode(data),
                    int(position),
                    data if keep_raw else None,
                )
            if len(page) < PAGE:
                return
            last = (page[-1][0], page[-1][1])

    def snapshot_rows(self) -> Iterator[tuple[str, int, str, bytes]]:
        last: tuple[Any, int] | None = None
        sql = f"SELECT originator_id, originator_version, topic, state FROM {self.snapshots}"
        while True:
            where, params = "", []
            if last is not None:
                where, params = " WHERE (originator_id, originator_version) > (%s, %s)", [*last]
            page = self.db.fetchall(
                sql + where + " ORDER BY originator_id, originator_version LIMIT %s",
                [*params, PAGE],
            )
            for oid, version, topic, state in page:
                yield _oid(oid), int(version), topic, bytes(state)
            if len(page) < PAGE:
                return
            last = (page[-1][0], page[-1][1])

    def heads_as_of(self, position: int) -> dict[str, tuple[int, str | None]]:
        """Every order's newest event at or before `position`: (version, stored hash)."""
        rows = self.db.fetchall(
            f"SELECT e.originator_id, e.originator_version, e.state FROM {self.events} e "
            f"JOIN (SELECT originator_id AS oid, MAX(originator_version) AS v FROM "
            f"{self.events} WHERE {self.position} <= %s GROUP BY originator_id) m "
            f"ON e.originator_id = m.oid AND e.originator_version = m.v",
            (position,),
        )
        return {_oid(oid): (int(v), _stored_hash(_decode(bytes(state)))) for oid, v, state in rows}


def load_checkpoints(db: ReadDb) -> list[Checkpoint]:
    """Every stored checkpoint with its changed heads, in seq order."""
    changes: dict[int, list[tuple[str, int, str]]] = {}
    for seq, oid, version, head in db.fetchall(
        "SELECT seq, order_id, version, head_hash FROM audit_checkpoint_head ORDER BY seq, order_id"
    ):
        changes.setdefault(int(seq), []).append((_oid(oid), int(version), head))
    found = []
    for row in db.fetchall(
        "SELECT seq, created_at, position, order_count, root, "
        "changes_digest, prev_digest, digest, hmac FROM audit_checkpoint "
        "ORDER BY seq"
    ):
        seq, created, position, count, root, cdigest, prev, digest, mac = row
        found.append(
            Checkpoint(
                seq=int(seq),
                created_at=_iso(db.decode(created, "timestamptz")),
                position=int(position),
                order_count=int(count),
                root=root,
                changes_digest=cdigest,
                prev_digest=prev,
                digest=digest,
                hmac=mac,
                changes=tuple(changes.get(int(seq), ())),
            )
        )
    return found


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# ================================================================= checkpoints
def _open(target: Settings | ReadDb) -> tuple[ReadDb, bool]:
    if isinstance(target, ReadDb):
        return target, False
    from serviceorders.bootstrap import open_read_db

    return open_read_db(target), True


def create_checkpoint(
    target: Settings | ReadDb, *, key: str | None = None, now: datetime | None = None
) -> Checkpoint | None:
    """Record a checkpoint over the log as it is now; returns it (`fresh=True`).

    Nothing new since the latest checkpoint: returns that one (`fresh=False`), or None for
    an empty store. Another process checkpointing at the same moment: returns None.
    Given Settings, the HMAC key is `SERVICEORDERS_AUDIT_HMAC_KEY`; given a ReadDb, `key`.
    Refuses (AuditError) when an order went back or vanished since the latest checkpoint:
    that is tampering, and a checkpoint must not bless it."""
    if isinstance(target, Settings):
        key = target.audit_hmac_key
    db, owned = _open(target)
    try:
        with db.transaction(lock="audit_checkpoint"):
            return _create(db, key, now or datetime.now(UTC))
    except Busy:
        return None
    finally:
        if owned:
            db.close()


def _create(db: ReadDb, key: str | None, now: datetime) -> Checkpoint | None:
    store = Store(db)
    checkpoints = load_checkpoints(db)
    last = checkpoints[-1] if checkpoints else None
    position = store.head()
    if position == 0 or (last is not None and position <= last.position):
        return last
    recorded: dict[str, tuple[int, str]] = {}
    for checkpoint in checkpoints:
        for oid, version, head in checkpoint.changes:
            recorded[oid] = (version, head)
    heads = store.heads_as_of(position)
    tree = HeadTree()
    changes: list[tuple[str, int, str]] = []
    wrong: list[str] = []
    for oid, (version, head) in sorted(heads.items()):
        if head is None:
            wrong.append(f"order {oid}: head v{version} cannot be decoded")
            continue
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
    if wrong:
        raise AuditError(
            "refusing to checkpoint a store that contradicts the earlier "
            "checkpoints; run `serviceorders audit verify`: " + "; ".join(wrong[:5])
        )
    seq = last.seq + 1 if last else 1
    created_at = _iso(now)
    fields = canonical_fields(
        seq,
        created_at,
        position,
        len(tree),
        tree.root(),
        changes_digest(changes),
        last.digest if last else GENESIS,
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
        changes=tuple(changes),
        fresh=True,
    )
    db.execute(
        "INSERT INTO audit_checkpoint (seq, created_at, position, order_count, root, "
        "changes_digest, prev_digest, digest, hmac) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
    logged and the next round goes on; one connection per round."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last: Checkpoint | None = None

    def run_once(self) -> Checkpoint | None:
        try:
            checkpoint = create_checkpoint(self.settings)
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
        return checkpoint

    def run(self, stopping: threading.Event, interval: float | None = None) -> None:
        every = interval if interval is not None else self.settings.audit_checkpoint_interval
        while not stopping.wait(every):
            self.run_once()

    def start(self, stopping: threading.Event, interval: float | None = None) -> threading.Thread:
        from serviceorders.support.logs import worker as logged

        thread = threading.Thread(
            target=logged("audit checkpointer", self.run),
            args=(stopping, interval),
            name="audit-checkpointer",
            daemon=True,
        )
        thread.start()
        return thread


def export_checkpoints(
    target: Settings | ReadDb, *, all_checkpoints: bool = False
) -> dict[str, Any]:
    """The latest checkpoint (or all) as JSON, to anchor outside the database."""
    db, owned = _open(target)
    try:
        checkpoints = load_checkpoints(db)
    finally:
        if owned:
            db.close()
    chosen = checkpoints if all_checkpoints else checkpoints[-1:]
    return {
        "format": ANCHOR_FORMAT,
        "exported_at": _iso(datetime.now(UTC)),
        "checkpoints": [c.to_json() for c in chosen],
    }


# ======================================================================= report
@dataclass(frozen=True)
class OrderProblem:
    order_id: str
    version: int  # the first bad version
    kind: str  # altered, deleted, inserted, reordered, head_moved_back, missing, rewritten
    detail: str


@dataclass(frozen=True)
class CheckpointProblem:
    seq: int
    kind: str  # digest, chain, hmac, unsigned, changes, root, order_count, anchor, position
    detail: str


@dataclass(frozen=True)
class SnapshotProblem:
    order_id: str
    version: int
    kind: str  # differs, undecodable, beyond_head, no_events
    detail: str


@dataclass
class Report:
    orders: int = 0
    events: int = 0
    checkpoints: int = 0
    snapshots: int = 0
    order_problems: list[OrderProblem] = field(default_factory=list)
    checkpoint_problems: list[CheckpointProblem] = field(default_factory=list)
    snapshot_problems: list[SnapshotProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not (or could not be) checked

    @property
    def ok(self) -> bool:
        return not (self.order_problems or self.checkpoint_problems or self.snapshot_problems)

    def broken_orders(self) -> dict[str, OrderProblem]:
        """Each broken order's earliest problem (its first bad version)."""
        found: dict[str, OrderProblem] = {}
        for p in self.order_problems:
            if p.order_id not in found or p.version < found[p.order_id].version:
                found[p.order_id] = p
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "orders": self.orders,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "snapshots": self.snapshots,
            "broken_orders": [
                vars(p) for p in sorted(self.broken_orders().values(), key=lambda p: p.order_id)
            ],
            "order_problems": [vars(p) for p in self.order_problems],
            "checkpoint_problems": [vars(p) for p in self.checkpoint_problems],
            "snapshot_problems": [vars(p) for p in self.snapshot_problems],
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        out = []
        for p in sorted(self.broken_orders().values(), key=lambda p: p.order_id):
            out.append(f"order {p.order_id}: first bad version {p.version}: {p.kind}: {p.detail}")
            out += [
                f"  also v{q.version}: {q.kind}: {q.detail}"
                for q in self.order_problems
                if q.order_id == p.order_id and q is not p
            ]
        out += [f"checkpoint {p.seq}: {p.kind}: {p.detail}" for p in self.checkpoint_problems]
        out += [
            f"snapshot {p.order_id} v{p.version}: {p.kind}: {p.detail}"
            for p in self.snapshot_problems
        ]
        return out


# ================================================================ verification
def _fits(order_id: str, row: Row, version: int | None = None, topic: str | None = None) -> bool:
    head = _stored_hash(row.state)
    return (
        head is not None
        and event_hash(
            topic or row.topic, order_id, row.version if version is None else version, row.state
        )
        == head
    )  # type: ignore[arg-type]


def check_chain(order_id: str, rows: list[Row], *, from_start: bool = True) -> OrderProblem | None:
    """The first place where the order's chain fails, classified; None if it verifies.

    `rows` are in version order. Without `from_start` (a partial export) the chain is
    checked from its first row on, whose link to earlier events cannot be checked."""
    by_version = {r.version: r for r in rows}
    expected = 1 if from_start or not rows else rows[0].version
    previous = (
        GENESIS if from_start or not rows else rows[0].state and rows[0].state.get("prev_hash")
    )

    def problem(version: int, kind: str, detail: str) -> OrderProblem:
        return OrderProblem(order_id, version, kind, detail)

    for row in rows:
        ok = _fits(order_id, row)
        origin = None if ok or row.state is None else _origin(order_id, row, rows)
        copy = origin is not None and _fits(order_id, by_version[origin])
        if row.version != expected:
            if copy:
                return problem(
                    row.version,
                    "inserted",
                    f"v{row.version} is a copy of v{origin} (and v{expected}"
                    f"..v{row.version - 1} are missing)",
                )
            if row.version < expected:
                return problem(row.version, "inserted", f"v{row.version} appears twice")
            missing = (
                f"v{expected}"
                if row.version == expected + 1
                else f"v{expected}..v{row.version - 1}"
            )
            return problem(expected, "deleted", f"{missing} missing (next stored: v{row.version})")
        if not ok:
            if row.state is None:
                return problem(row.version, "altered", "the stored state cannot be decoded")
            if copy:
                return problem(
                    row.version,
                    "inserted",
                    f"v{row.version} is a copy of v{origin} stored under another version",
                )
            if origin is not None:
                return problem(
                    row.version, "reordered", f"v{row.version} holds the content of v{origin}"
                )
            return problem(
                row.version, "altered", "the stored hash does not match the stored content"
            )
        if row.state.get("prev_hash") != previous:  # type: ignore[union-attr]
            if row.version == 1:
                return problem(1, "altered", "v1 does not start from the genesis hash (re-hashed)")
            return problem(
                row.version - 1,
                "altered",
                f"v{row.version}'s prev_hash does not link to v{row.version - 1}:"
                f" v{row.version - 1} was re-hashed, or v{row.version} forged",
            )
        previous = row.state["hash"]  # type: ignore[index]
        expected += 1
    return None


def _origin(order_id: str, row: Row, rows: list[Row]) -> int | None:
    """The version a misplaced state was hashed for (another row of the same order)."""
    for other in rows:
        if other.version == row.version:
            continue
        for topic in {row.topic, other.topic}:
            if _fits(order_id, row, other.version, topic):
                return other.version
    return None


class _Verifier:
    """One pass over an order-sorted row stream, then the checkpoints."""

    def __init__(
        self,
        checkpoints: list[Checkpoint],
        key: str | None,
        *,
        unsigned_up_to: int = 0,
        scope: set[str] | None = None,
        from_start: bool = True,
    ) -> None:
        self.report = Report(checkpoints=len(checkpoints))
        self.checkpoints = checkpoints
        self.key = key
        self.unsigned_up_to = unsigned_up_to
        self.scope = scope  # only these orders were exported (None: all)
        self.from_start = from_start
        running = 0
        self.positions = []  # the covered position, never going back
        for c in checkpoints:
            running = max(running, c.position)
            self.positions.append(running)
        # checkpoint index -> order id -> the head (version, hash) from there on
        self.changes: list[dict[str, tuple[int, str | None]]] = [{} for _ in checkpoints]
        self.broken: dict[str, int] = {}  # order id -> first bad version (chain)

    def order(self, order_id: str, rows: list[Row]) -> None:
        self.report.orders += 1
        self.report.events += len(rows)
        problem = check_chain(order_id, rows, from_start=self.from_start)
        if problem is not None:
            self.report.order_problems.append(problem)
            self.broken[order_id] = problem.version
        if not self.checkpoints:
            return
        newest: dict[int, Row] = {}  # first covering checkpoint -> newest row it covers
        for row in rows:
            k = bisect_left(self.positions, row.position)
            if k < len(self.positions):
                newest[k] = row
        top = 0
        for k in sorted(newest):
            row = newest[k]
            if row.version > top:
                top = row.version
                self.changes[k][order_id] = (row.version, _stored_hash(row.state))

    def finish(self) -> Report:
        self._checkpoint_chain()
        self._checkpoint_heads()
        return self.report

    def _checkpoint_chain(self) -> None:
        add = self.report.checkpoint_problems.append
        self.unsound: set[int] = set()
        previous_digest, previous_position = GENESIS, 0
        for i, c in enumerate(self.checkpoints):
            fields = c.fields()
            if c.seq != i + 1:
                add(
                    CheckpointProblem(
                        c.seq, "chain", f"expected seq {i + 1}: checkpoint(s) deleted or inserted"
                    )
                )
            if checkpoint_digest(fields) != c.digest:
                add(
                    CheckpointProblem(
                        c.seq,
                        "digest",
                        "the stored digest does not match the "
                        "checkpoint's fields (the row was altered)",
                    )
                )
                self.unsound.add(i)
            if c.prev_digest != previous_digest:
                add(
                    CheckpointProblem(
                        c.seq, "chain", "prev_digest does not link to the previous checkpoint"
                    )
                )
            if changes_digest(c.changes) != c.changes_digest:
                add(
                    CheckpointProblem(
                        c.seq,
                        "changes",
                        "the recorded changed heads "
                        "(audit_checkpoint_head) do not match changes_digest",
                    )
                )
                self.unsound.add(i)
            if c.position < previous_position:
                add(CheckpointProblem(c.seq, "position", "the position went backwards"))
            if self.key:
                if c.hmac is None:
                    if c.seq > self.unsigned_up_to:
                        add(
                            CheckpointProblem(
                                c.seq, "unsigned", "no HMAC although a key is configured"
                            )
                        )
                        self.unsound.add(i)
                elif not hmac_lib.compare_digest(checkpoint_hmac(self.key, fields), c.hmac):
                    add(
                        CheckpointProblem(
                            c.seq,
                            "hmac",
                            "the HMAC does not match (forged, or signed with another key)",
                        )
                    )
                    self.unsound.add(i)
            previous_digest, previous_position = c.digest, c.position
        if self.checkpoints and not self.key:
            self.report.notes.append(
                "no SERVICEORDERS_AUDIT_HMAC_KEY: checkpoint HMACs not "
                "checked; a rewrite that also recomputes the checkpoints "
                "is caught only by an external anchor"
            )

    def _checkpoint_heads(self) -> None:
        tree = HeadTree()
        recorded: dict[str, tuple[int, str]] = {}  # the checkpoints' heads so far
        matched: dict[str, int] = {}  # the newest checkpointed version still matching
        diverged: set[str] = set()  # orders whose heads differ from the checkpoints'
        reported: set[str] = set()
        whole = self.scope is None and self.from_start
        for i, c in enumerate(self.checkpoints):
            computed = self.changes[i]
            for oid, (version, head) in computed.items():
                tree.set(oid, version, head or "")
            stored = {oid: (v, h) for oid, v, h in c.changes}
            recorded.update(stored)
            for oid in stored.keys() | computed.keys():
                if tree.get(oid) == recorded.get(oid):
                    diverged.discard(oid)
                    matched[oid] = recorded[oid][0]
                else:
                    diverged.add(oid)
            if i in self.unsound:
                continue  # already reported; its heads are not evidence
            differing = {
                o for o in stored.keys() | computed.keys() if stored.get(o) != computed.get(o)
            }
            for oid in sorted(differing):
                if oid in reported or (self.scope is not None and oid not in self.scope):
                    continue
                problem = self._compare(
                    oid, tree.get(oid), recorded.get(oid), c, matched.get(oid, 0)
                )
                if problem is not None:
                    reported.add(oid)
                    self.report.order_problems.append(problem)
            if not whole or diverged:
                continue  # the differing orders explain the root and the count
            if c.order_count != len(tree):
                self.report.checkpoint_problems.append(
                    CheckpointProblem(
                        c.seq,
                        "order_count",
                        f"recorded {c.order_count} orders, the store has "
                        f"{len(tree)} as of position {c.position}",
                    )
                )
            if tree.root() != c.root:
                self.report.checkpoint_problems.append(
                    CheckpointProblem(
                        c.seq,
                        "root",
                        "the Merkle root does not match the store's heads as of "
                        f"position {c.position}",
                    )
                )

    def _compare(
        self,
        oid: str,
        now: tuple[int, str] | None,
        then: tuple[int, str] | None,
        c: Checkpoint,
        matched: int,
    ) -> OrderProblem | None:
        where = f"checkpoint {c.seq} (position {c.position})"
        if now is None and then is None:
            return None
        if now is None:
            if not self.from_start:
                return None  # a partial export need not hold it
            return OrderProblem(
                oid,
                1,
                "missing",
                f"{where} recorded the order at v{then[0]}; the store has none of its events",
            )  # type: ignore[index]
        if then is None:
            return OrderProblem(
                oid,
                1,
                "inserted",
                f"the order is not in {where}, yet the "
                f"store has its v{now[0]} at or before that position",
            )
        if now[0] < then[0]:
            return OrderProblem(
                oid,
                now[0] + 1,
                "head_moved_back",
                f"{where} recorded v{then[0]}; the store's newest is "
                f"v{now[0]} (newest event(s) deleted)",
            )
        if now[0] > then[0]:
            return OrderProblem(
                oid,
                then[0] + 1,
                "inserted",
                f"{where} recorded v{then[0]}; the store has v{now[0]} at or before that position",
            )
        if now[1] != then[1]:
            if self.broken.get(oid, then[0] + 1) <= then[0]:
                return None  # the broken chain explains it (e.g. an unreadable head)
            return OrderProblem(
                oid,
                matched + 1,
                "rewritten",
                f"{where} recorded another hash for v{then[0]}: the chain "
                f"was rewritten between v{matched + 1} and v{then[0]}",
            )
        return None


def _by_order(rows: Iterable[Row]) -> Iterator[tuple[str, list[Row]]]:
    current: str | None = None
    group: list[Row] = []
    for row in rows:
        if row.order_id != current:
            if group:
                yield current, group  # type: ignore[misc]
            current, group = row.order_id, []
        group.append(row)
    if group:
        yield current, group  # type: ignore[misc]


def verify(
    target: Settings | ReadDb,
    *,
    key: str | None = None,
    anchor: Path | None = None,
    progress: Progress | None = None,
    unsigned_up_to: int = 0,
    snapshots: bool = True,
) -> Report:
    """Verify every chain, checkpoint, the anchor (if given) and every snapshot."""
    if isinstance(target, Settings):
        key = target.audit_hmac_key
    db, owned = _open(target)
    try:
        store = Store(db)
        checkpoints = load_checkpoints(db) if db.table_exists("audit_checkpoint") else []
        verifier = _Verifier(checkpoints, key, unsigned_up_to=unsigned_up_to)
        snaps = _SnapshotCheck(store) if snapshots else None
        for order_id, rows in _by_order(store.rows(keep_raw=snapshots)):
            verifier.order(order_id, rows)
            if snaps is not None:
                snaps.order(order_id, rows, verifier.broken.get(order_id))
            if progress:
                progress(len(rows))
        report = verifier.finish()
        if snaps is not None:
            snaps.finish(report)
        else:
            report.notes.append("snapshots not checked")
        if not checkpoints:
            report.notes.append(
                "no checkpoints: deleting an order's newest events or a whole "
                "order, or rewriting a chain consistently, cannot be detected"
            )
        elif store.head() > checkpoints[-1].position:
            report.notes.append(
                f"events after position {checkpoints[-1].position} (the "
                f"latest checkpoint) are covered by no checkpoint yet"
            )
        if anchor is not None:
            report.checkpoint_problems += check_anchor(checkpoints, load_anchor(anchor))
        return report
    finally:
        if owned:
            db.close()


class _SnapshotCheck:
    """Snapshots, merged in (order id, version) order with the events: each must equal a
    replay of the order's events up to its version."""

    def __init__(self, store: Store) -> None:
        from serviceorders.bootstrap import event_mapper

        self.mapper = event_mapper()
        if getattr(self.mapper, "reveal", False) is None:
            # personal data sealed in the stored states: compare revealed values, as the
            # application loads them (same keys, same database; see projections/log.py)
            from serviceorders.audit.pii import KeyStore, Vault

            self.mapper.reveal = Vault(KeyStore(db=store.db)).reveal  # type: ignore[attr-defined]
        self.pending = store.snapshot_rows()
        self.peeked: tuple[str, int, str, bytes] | None = next(self.pending, None)
        self.problems: list[SnapshotProblem] = []
        self.count = 0
        self.unchecked = 0

    def _take(self, order_id: str) -> list[tuple[str, int, str, bytes]]:
        """The snapshots of this order; those of orders without events are problems."""
        found = []
        while self.peeked is not None and UUID(self.peeked[0]) <= UUID(order_id):
            if self.peeked[0] == order_id:
                found.append(self.peeked)
            else:
                self._orphan(self.peeked)
            self.peeked = next(self.pending, None)
        return found

    def _orphan(self, snap: tuple[str, int, str, bytes]) -> None:
        self.count += 1
        self.problems.append(
            SnapshotProblem(snap[0], snap[1], "no_events", "a snapshot of an order without events")
        )

    def order(self, order_id: str, rows: list[Row], broken_at: int | None) -> None:
        snaps = self._take(order_id)
        if not snaps:
            return
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.utils import get_topic
        from serviceorders.domain.snapshot import OrderSnapshot

        uid = UUID(order_id)
        order: Any = None
        replayed = 0
        rows_iter = iter(rows)
        for _, version, topic, state in snaps:
            self.count += 1
            if broken_at is not None and broken_at <= version:
                self.unchecked += 1
                continue
            if version > rows[-1].version:
                self.problems.append(
                    SnapshotProblem(
                        order_id, version, "beyond_head", f"the newest event is v{rows[-1].version}"
                    )
                )
                continue
            try:
                while replayed < version:
                    row = next(rows_iter)
                    event = self.mapper.to_domain_event(
                        StoredEvent(
                            originator_id=uid,
                            originator_version=row.version,
                            topic=row.topic,
                            state=row.raw or b"",
                        )
                    )
                    order = event.mutate(order)
                    replayed = row.version
            except Exception as e:
                self.unchecked += 1
                log.debug("cannot replay %s: %s", order_id, e)
                continue
            try:
                snap = self.mapper.to_domain_event(
                    StoredEvent(
                        originator_id=uid, originator_version=version, topic=topic, state=state
                    )
                )
            except Exception as e:
                self.problems.append(SnapshotProblem(order_id, version, "undecodable", str(e)))
                continue
            if not isinstance(snap, OrderSnapshot):
                self.problems.append(
                    SnapshotProblem(
                        order_id, version, "undecodable", f"not an order snapshot: {topic}"
                    )
                )
                continue
            expected = order.snapshot_state()
            if snap.state != expected or snap.topic != get_topic(type(order)):
                fields = [
                    k
                    for k in type(expected).model_fields
                    if getattr(snap.state, k) != getattr(expected, k)
                ]
                if snap.topic != get_topic(type(order)):
                    fields.append("topic")
                self.problems.append(
                    SnapshotProblem(
                        order_id,
                        version,
                        "differs",
                        f"differs from a replay of v1..v{version} in: {', '.join(fields)}",
                    )
                )

    def finish(self, report: Report) -> None:
        while self.peeked is not None:
            self._orphan(self.peeked)
            self.peeked = next(self.pending, None)
        report.snapshots = self.count
        report.snapshot_problems += self.problems
        if self.unchecked:
            report.notes.append(
                f"{self.unchecked} snapshot(s) not checked: their order's "
                "chain is broken at or before them"
            )


# ====================================================================== anchors
def load_anchor(path: Path) -> list[Checkpoint]:
    """Checkpoints from an anchor: `audit anchor` JSON, one checkpoint object, a JSON list,
    or an `audit export` JSONL file."""
    text = path.read_text("utf-8")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        data = [d for d in data if d.get("type") == "checkpoint"]
    if isinstance(data, dict):
        data = data.get("checkpoints", [data])
    return [Checkpoint.from_json(d) for d in data]


def check_anchor(stored: list[Checkpoint], anchored: list[Checkpoint]) -> list[CheckpointProblem]:
    by_seq = {c.seq: c for c in stored}
    problems = []
    for a in anchored:
        if checkpoint_digest(a.fields()) != a.digest:
            problems.append(
                CheckpointProblem(
                    a.seq, "anchor", "the anchor's own digest does not match its fields"
                )
            )
            continue
        s = by_seq.get(a.seq)
        if s is None:
            problems.append(
                CheckpointProblem(
                    a.seq, "anchor", "the anchored checkpoint is missing from the store"
                )
            )
        elif s.to_json() != a.to_json():
            differ = [k for k, v in a.to_json().items() if s.to_json().get(k) != v]
            problems.append(
                CheckpointProblem(
                    a.seq,
                    "anchor",
                    f"the stored checkpoint differs from the anchor in: {', '.join(differ)}",
                )
            )
    return problems


# ======================================================================== export
def export(
    target: Settings | ReadDb,
    out: IO[str],
    *,
    order_id: UUID | None = None,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write JSON lines: a header, every stored event (state exactly as stored, decoded, not
    upcast), then every checkpoint with its changed heads. Returns the header."""
    db, owned = _open(target)
    try:
        store = Store(db)
        checkpoints = load_checkpoints(db) if db.table_exists("audit_checkpoint") else []
        header = {
            "type": "export",
            "format": FORMAT,
            "exported_at": _iso(datetime.now(UTC)),
            "position": store.head(),
            "order": str(order_id) if order_id else None,
            "since": _iso(since) if since else None,
            "complete": order_id is None and since is None,
        }
        out.write(orjson.dumps(header).decode() + "\n")
        events = 0
        for row in store.rows(order_id, keep_raw=True):
            if progress:
                progress(1)
            if since is not None and not _since(row, since):
                continue
            line: dict[str, Any] = {
                "type": "event",
                "order_id": row.order_id,
                "version": row.version,
                "topic": row.topic,
                "position": row.position,
            }
            if row.state is not None:
                line["state"] = row.state
            else:
                line["state_raw"] = (row.raw or b"").hex()
            out.write(orjson.dumps(line).decode() + "\n")
            events += 1
        for c in checkpoints:
            out.write(
                orjson.dumps({"type": "checkpoint", **c.to_json(with_changes=True)}).decode() + "\n"
            )
        return {**header, "events": events, "checkpoints": len(checkpoints)}
    finally:
        if owned:
            db.close()


def _since(row: Row, since: datetime) -> bool:
    stamp = row.state.get("timestamp") if row.state is not None else None
    if not isinstance(stamp, str):
        return True  # cannot tell: keep it
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return at >= since


def verify_file(
    path: Path,
    *,
    key: str | None = None,
    anchor: Path | None = None,
    unsigned_up_to: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Verify an `audit export` file offline: the chains it holds and its checkpoints."""
    header: dict[str, Any] = {}
    rows: list[Row] = []
    checkpoints: list[Checkpoint] = []
    bad_lines: list[str] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if progress:
                progress(1)
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                kind = data.get("type")
                if kind == "export":
                    header = data
                elif kind == "event":
                    state = data.get("state")
                    rows.append(
                        Row(
                            _oid(data["order_id"]),
                            int(data["version"]),
                            str(data["topic"]),
                            state if isinstance(state, dict) else None,
                            int(data["position"]),
                        )
                    )
                elif kind == "checkpoint":
                    checkpoints.append(Checkpoint.from_json(data))
                else:
                    bad_lines.append(f"line {number}: unknown type {kind!r}")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                bad_lines.append(f"line {number}: {type(e).__name__}: {e}")
    rows.sort(key=lambda r: (r.order_id, r.version))
    checkpoints.sort(key=lambda c: c.seq)
    complete = bool(header.get("complete"))
    by_order = list(_by_order(rows))
    scope = None if header.get("order") is None else {_oid(header["order"])}
    verifier = _Verifier(
        checkpoints,
        key,
        unsigned_up_to=unsigned_up_to,
        scope=scope,
        from_start=header.get("since") is None,
    )
    for order_id, group in by_order:
        verifier.order(order_id, group)
    report = verifier.finish()
    report.checkpoint_problems += [CheckpointProblem(0, "file", b) for b in bad_lines]
    if not header:
        report.checkpoint_problems.append(
            CheckpointProblem(
                0, "file", "no export header line: not an `audit export` file, or truncated"
            )
        )
    report.notes.append("offline: snapshots are not exported and not checked")
    if not complete:
        if header.get("order"):
            report.notes.append(
                f"partial export (order {header['order']}): that order's chain and its heads "
                "recorded in the checkpoints were checked, and every checkpoint's digest chain "
                "and HMAC; the checkpoints' Merkle roots and order counts cannot be checked "
                "(the other orders are not in the file)"
            )
        if header.get("since"):
            report.notes.append(
                f"partial export (since {header['since']}): each chain was checked from its "
                "first exported event on; the link of that event to the earlier ones, deleted "
                "events before it, the Merkle roots and order counts cannot be checked"
            )
    if anchor is not None:
        report.checkpoint_problems += check_anchor(checkpoints, load_anchor(anchor))
    return report

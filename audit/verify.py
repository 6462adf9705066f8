"""Verification (docs/audit.md): every order's hash chain recomputed from the stored rows
(before any upcasting), every checkpoint (its digest chain, HMAC, and the Merkle root
recomputed from the store as of the checkpoint's log position), the chain heads the
projector has read (`storage/seen.py`: each order's chain must still reach them), an
optional external anchor, and every snapshot against a replay of the events up to its
version (`snapshots.py`).
`verify_file` checks an `audit export` file without a database.
"""

from __future__ import annotations

import hmac as hmac_lib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from serviceorders.audit.anchors import Anchor, AnchorError, checkpoint_lines
from serviceorders.audit.checkpoints import (
    Checkpoint,
    checkpoint_digest,
    checkpoint_hmac,
    load_checkpoints,
    rotation_message,
)
from serviceorders.audit.merkle import HeadTree, changes_digest
from serviceorders.audit.report import CheckpointProblem, OrderProblem, Report
from serviceorders.audit.snapshots import SnapshotCheck
from serviceorders.audit.store import Row, Store, as_order_id, stored_hash
from serviceorders.domain.chain import GENESIS, canonical, event_hash
from serviceorders.domain.codec import PydanticMapper
from serviceorders.storage import seen as seen_heads
from serviceorders.storage.db import ReadDb
from serviceorders.support import signing

Progress = Callable[[int], Any]


def _fits(order_id: str, row: Row, version: int | None = None, topic: str | None = None) -> bool:
    head = stored_hash(row.state)
    if head is None or row.state is None:
        return False
    at = row.version if version is None else version
    try:
        return event_hash(topic or row.topic, order_id, at, row.state) == head
    except ValueError:  # an unknown hash_rule, or a value its rule cannot write: tampered
        return False


def _unhashable(state: dict[str, Any]) -> str | None:
    """Why a stored state cannot be hashed at all under its rule, if it cannot."""
    try:
        event_hash("", "", 0, state)
    except ValueError as e:
        return str(e)
    return None


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
            why = _unhashable(row.state)
            return problem(
                row.version,
                "altered",
                "the stored hash does not match the stored content"
                + (f" (it cannot be hashed: {why})" if why else ""),
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
        seen: dict[str, tuple[int, str, int]] | None = None,
        public_keys: Iterable[str] = (),
    ) -> None:
        self.public_keys = tuple(public_keys)  # pinned (hex): trusted signing keys
        self.report = Report(checkpoints=len(checkpoints), seen_heads=len(seen or {}))
        # order id -> (version, hash, log position): the newest event the projector read
        self.seen = seen or {}
        # order id -> (the store's newest version, its stored hash at the seen version)
        self.reached: dict[str, tuple[int, str | None]] = {}
        # order id -> the newest checkpointed version whose head still matches
        self.matched: dict[str, int] = {}
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
        if order_id in self.seen:
            at = self.seen[order_id][0]
            self.reached[order_id] = (
                max(r.version for r in rows),
                next((stored_hash(r.state) for r in rows if r.version == at), None),
            )
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
                self.changes[k][order_id] = (row.version, stored_hash(row.state))

    def finish(self) -> Report:
        self._checkpoint_chain()
        self._checkpoint_heads()
        self._seen_heads()
        return self.report

    def _seen_heads(self) -> None:
        """Each head the projector read must still be in the store: same version, same
        hash. An order the checkpoints already found wrong is not reported twice."""
        named = {
            p.order_id
            for p in self.report.order_problems
            if p.kind in ("head_moved_back", "missing", "rewritten")
        }
        for oid, (version, head, position) in sorted(self.seen.items()):
            if oid in named:
                continue
            where = f"the projector read v{version} (log position {position})"
            reached = self.reached.get(oid)
            if reached is None:
                self.report.order_problems.append(
                    OrderProblem(
                        oid, 1, "missing", f"{where}; the store has none of the order's events"
                    )
                )
            elif reached[0] < version:
                self.report.order_problems.append(
                    OrderProblem(
                        oid,
                        reached[0] + 1,
                        "head_moved_back",
                        f"{where}; the store's newest is v{reached[0]} (newest event(s) deleted)",
                    )
                )
            elif reached[1] != head and self.broken.get(oid, version + 1) > version:
                # (a chain broken at or before that version already explains it)
                first = self.matched.get(oid, 0) + 1
                self.report.order_problems.append(
                    OrderProblem(
                        oid,
                        first,
                        "rewritten",
                        f"{where} with another hash: the chain was rewritten between "
                        f"v{first} and v{version}",
                    )
                )

    def _checkpoint_chain(self) -> None:
        add = self.report.checkpoint_problems.append
        self.unsound: set[int] = set()
        previous_digest, previous_position = GENESIS, 0
        trust = _Trust(self.public_keys, self.unsigned_up_to, add)
        unverifiable: list[Checkpoint] = []  # neither an Ed25519 signature nor a checked HMAC
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
            hmac_ok = unsigned = False
            if self.key:
                if c.hmac is None:
                    if c.seq > self.unsigned_up_to and c.public_key is None:
                        add(
                            CheckpointProblem(
                                c.seq, "unsigned", "no HMAC although a key is configured"
                            )
                        )
                        self.unsound.add(i)
                        unsigned = True
                elif not hmac_lib.compare_digest(
                    # as bytes: a damaged HMAC may hold any character (str compares ASCII only)
                    checkpoint_hmac(self.key, fields).encode(),
                    str(c.hmac).encode("utf-8", "surrogatepass"),
                ):
                    add(
                        CheckpointProblem(
                            c.seq,
                            "hmac",
                            "the HMAC does not match (forged, or signed with another key)",
                        )
                    )
                    self.unsound.add(i)
                else:
                    hmac_ok = True
            if not trust.check(c, fields, reported=unsigned):
                self.unsound.add(i)
            if c.public_key is None and not hmac_ok and not (self.key and c.hmac):
                unverifiable.append(c)  # (a wrong HMAC is a problem already)
            previous_digest, previous_position = c.digest, c.position
        trust.tell(self.report, unverifiable)

    def _checkpoint_heads(self) -> None:
        tree = HeadTree()
        recorded: dict[str, tuple[int, str]] = {}  # the checkpoints' heads so far
        matched = self.matched  # the newest checkpointed version still matching
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
            if not self.from_start or then is None:
                return None  # a partial export need not hold it
            return OrderProblem(
                oid,
                1,
                "missing",
                f"{where} recorded the order at v{then[0]}; the store has none of its events",
            )
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


def _seqs(seqs: list[int]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    runs: list[list[int]] = []
    for seq in sorted(seqs):
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class _Trust:
    """The signatures and the trust rule of docs/audit.md ("Checkpoints"), checkpoint by
    checkpoint in seq order: every signature verifies under the checkpoint's own
    public_key; the first signed checkpoint's key is trusted when pinned (`--public-key`)
    or, with no pin, as the first; a key other than the previous signed checkpoint's is
    accepted when pinned, or with an endorsement by the previous key if that one was
    trusted (a rotation; a key rotated away from and back again needs one too); an
    unsigned checkpoint after a signed one is a problem unless its seq is at most
    `unsigned_up_to`."""

    def __init__(
        self, pinned: tuple[str, ...], unsigned_up_to: int, add: Callable[[CheckpointProblem], Any]
    ) -> None:
        self.pinned = pinned
        self.trusted = False  # whether the previous signed checkpoint's key is
        self.unsigned_up_to = unsigned_up_to
        self.add = add
        self.previous: str | None = None  # the key of the latest signed checkpoint
        self.first: tuple[str, int] | None = None  # (key, seq) of the first signed one

    def check(self, c: Checkpoint, fields: dict[str, Any], *, reported: bool = False) -> bool:
        """Whether the checkpoint's signature holds and its key is trusted (problems added;
        `reported`: its being unsigned is already)."""
        key = c.public_key
        if key is None:
            if (self.previous is not None or self.pinned) and c.seq > self.unsigned_up_to:
                if reported:
                    return False
                after = (
                    f"after checkpoints signed by key {self.previous}"
                    if self.previous is not None
                    else "although signing keys are pinned (--public-key; checkpoints "
                    "made before signing: --unsigned-up-to SEQ)"
                )
                self.add(
                    CheckpointProblem(
                        c.seq,
                        "unsigned",
                        f"no Ed25519 signature, {after}: rewritten and left unsigned?",
                    )
                )
                return False
            return True
        if self.first is None:
            self.first = (key, c.seq)
        sound = True
        if not c.signature or not signing.verify(key, c.signature, canonical(fields)):
            self.add(
                CheckpointProblem(
                    c.seq,
                    "signature",
                    f"the Ed25519 signature does not verify under the checkpoint's key {key} "
                    "(the checkpoint was altered, or the signature forged)",
                )
            )
            sound = False
        previous, self.previous = self.previous, key
        endorsed = False
        if c.endorsement is not None:
            endorsed = previous is not None and signing.verify(
                previous, c.endorsement, rotation_message(key, c.seq)
            )
            if not endorsed:
                self.add(
                    CheckpointProblem(
                        c.seq,
                        "key",
                        f"the endorsement of key {key} does not verify under the previous "
                        f"signed checkpoint's key {previous}"
                        if previous is not None
                        else f"an endorsement of key {key} on the first signed checkpoint, "
                        "which has no previous key to endorse it",
                    )
                )
                sound = False
        if key == previous:
            return sound and self.trusted  # (an untrusted key is reported once)
        trusted_before, self.trusted = self.trusted, True
        if key in self.pinned or (previous is None and not self.pinned):
            return sound  # pinned, or the first key when nothing is pinned
        if endorsed and trusted_before:
            return sound  # a rotation endorsed by a trusted key
        self.trusted = False  # (its later checkpoints are not reported again)
        self.add(
            CheckpointProblem(
                c.seq,
                "key",
                f"signed by a key neither pinned nor endorsed: {key}"
                + (f" (the previous signed checkpoint's key is {previous})" if previous else "")
                + "; a checkpoint re-signed by someone else?",
            )
        )
        return False

    def tell(self, report: Report, unverifiable: list[Checkpoint]) -> None:
        """The notes: keys not pinned; checkpoints without a verifiable signature."""
        if self.first is not None and not self.pinned:
            key, seq = self.first
            report.notes.append(
                f"signing keys not pinned (no --public-key): trusted the first key, {key} "
                f"(checkpoint {seq}), and the keys it endorsed; pin the operator's published "
                "public key to rule out checkpoints re-signed from the start by another key"
            )
        if not unverifiable:
            return
        unsigned = [c.seq for c in unverifiable if c.hmac is None]
        hmac_only = [c.seq for c in unverifiable if c.hmac is not None]
        parts = []
        if unsigned:
            parts.append(f"unsigned: {_seqs(unsigned)}")
        if hmac_only:
            parts.append(f"HMAC only, no SERVICEORDERS_AUDIT_HMAC_KEY given: {_seqs(hmac_only)}")
        report.notes.append(
            f"{len(unverifiable)} checkpoint(s) without a verifiable signature "
            f"({'; '.join(parts)}): a rewrite that also recomputes them is caught only "
            "against an anchor"
        )


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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class _Coverage:
    """What the report must say it could not check (docs/audit.md): the events no
    checkpoint covers (after the latest checkpoint's position), the orders in no checkpoint
    at all, the events neither a checkpoint nor the projector's heads protect, a log never
    checkpointed (a warning), anchors not checked. Counted while the rows pass."""

    def __init__(
        self, checkpoints: list[Checkpoint], seen: dict[str, tuple[int, str, int]] | None
    ) -> None:
        self.checkpointed = bool(checkpoints)
        self.position = max((c.position for c in checkpoints), default=0)
        self.heads = seen  # None: the heads the projector read are not known (--since)
        self.read = seen_heads.covered_position(seen or {})
        self.watched = max(self.read, self.position)
        self.events = 0  # after the latest checkpoint
        self.orders = 0  # that have such events
        self.new_orders = 0  # whose every event is after it
        self.unwatched = 0  # events after both the latest checkpoint and the projector

    def order(self, rows: list[Row]) -> None:
        after = sum(1 for r in rows if r.position > self.position)
        self.events += after
        self.orders += after > 0
        self.new_orders += after == len(rows)
        self.unwatched += sum(1 for r in rows if r.position > self.watched)

    def tell(self, report: Report, *, anchored: bool, log: str) -> None:
        """Add the warnings and notes to `report` (`log`: "the log", "the exported log")."""
        unwatched = (
            f"{_count(self.unwatched, 'event')} after position {self.watched} (read by no "
            "projector, covered by no checkpoint) can be deleted unnoticed: run the projector, "
            "take a checkpoint"
        )
        if not self.checkpointed:
            if report.events:
                if self.heads is None:
                    limit = "(a --since export carries no heads the projector read)"
                elif not report.seen_heads:
                    limit = "(the projector has read none of its events)"
                else:
                    limit = (
                        "except for the events the projector has read (the heads of "
                        f"{_count(report.seen_heads, 'order')}, up to position {self.read})"
                    )
                report.warnings.append(
                    f"{log} was never checkpointed: an order's deleted newest events, a "
                    "deleted whole order and a chain re-hashed consistently cannot be "
                    f"detected {limit}; take a checkpoint (`serviceorders audit checkpoint`) "
                    "and anchor it"
                )
            if self.heads is not None and self.read and self.unwatched:
                report.notes.append(unwatched)
        else:
            if self.events:
                note = (
                    f"{_count(self.events, 'event')} of {_count(self.orders, 'order')} after "
                    f"position {self.position} (the latest checkpoint) "
                    f"{'is' if self.events == 1 else 'are'} covered by no checkpoint"
                )
                if self.heads is not None and self.unwatched == self.events:
                    note += (
                        f", and read by no projector either: {'it' if self.events == 1 else 'they'}"
                        " can be deleted unnoticed (run the projector, take a checkpoint)"
                    )
                elif self.heads is not None and self.unwatched:
                    note += f"; {unwatched}"
                report.notes.append(note)
            if self.new_orders:
                report.notes.append(
                    f"{_count(self.new_orders, 'order')} "
                    f"{'is' if self.new_orders == 1 else 'are'} in no checkpoint at all (all "
                    f"{'its' if self.new_orders == 1 else 'their'} events are after position "
                    f"{self.position})"
                )
        if not anchored:
            report.notes.append(
                "anchors not checked (no --anchor): with no copy of the checkpoints kept "
                "outside the database, the newest checkpoints (or all of them) deleted, and "
                "checkpoints recomputed by whoever can sign them (or carrying no verifiable "
                "signature), go unnoticed"
            )


def verify(
    db: ReadDb,
    *,
    key: str | None = None,
    anchor: Path | Anchor | None = None,
    progress: Progress | None = None,
    unsigned_up_to: int = 0,
    snapshots: bool = True,
    mapper: PydanticMapper | None = None,
    public_keys: Iterable[str] = (),
) -> Report:
    """Verify every chain, checkpoint, the anchor (if given) and every snapshot.

    `key` checks the checkpoints' HMACs (the runtime passes `SERVICEORDERS_AUDIT_HMAC_KEY`);
    `mapper` decodes events and snapshots for the replay (default: the domain's codec)."""
    store = Store(db)
    checkpoints = load_checkpoints(db) if db.table_exists("audit_checkpoint") else []
    seen = seen_heads.load(db)  # before the events: whatever it names is stored by then
    verifier = _Verifier(
        checkpoints, key, unsigned_up_to=unsigned_up_to, seen=seen, public_keys=public_keys
    )
    snaps = SnapshotCheck(store, mapper) if snapshots else None
    coverage = _Coverage(checkpoints, seen)
    for order_id, rows in _by_order(store.rows(keep_raw=snapshots)):
        verifier.order(order_id, rows)
        coverage.order(rows)
        if snaps is not None:
            snaps.order(order_id, rows, verifier.broken.get(order_id))
        if progress:
            progress(len(rows))
    report = verifier.finish()
    if snaps is not None:
        snaps.finish(report)
    else:
        report.notes.append("snapshots not checked")
    coverage.tell(report, anchored=anchor is not None, log="the log")
    if anchor is not None:
        report.checkpoint_problems += check_anchor(checkpoints, load_anchor(anchor))
    return report


def load_anchor(anchor: Path | Anchor) -> list[Checkpoint]:
    """Checkpoints from an anchor: the file or Kafka topic the checkpointer appends to
    (SERVICEORDERS_AUDIT_ANCHOR: JSON lines, read from the start to the end; a torn line
    skipped), `audit anchor` JSON, one checkpoint object, a JSON list, or an `audit export`
    JSONL file. AnchorError (one line) when it cannot be read or is not one."""
    if isinstance(anchor, Anchor):
        data: Any = anchor.read()
        where = anchor.description
    else:
        where = f"anchor {anchor}"
        try:
            text = anchor.read_bytes()
        except OSError as e:
            raise AnchorError(f"{where}: {e.strerror or e}") from None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = checkpoint_lines(text)
        if isinstance(data, dict):
            data = data.get("checkpoints", [data])
    try:
        found = [Checkpoint.from_json(d) for d in data]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AnchorError(f"{where}: not a checkpoint anchor ({type(e).__name__}: {e})") from None
    if not found:  # checked against nothing is no check (a wrong file or topic name, say)
        raise AnchorError(f"{where}: holds no checkpoint")
    return found


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


def verify_file(
    path: Path,
    *,
    key: str | None = None,
    anchor: Path | Anchor | None = None,
    unsigned_up_to: int = 0,
    progress: Progress | None = None,
    public_keys: Iterable[str] = (),
) -> Report:
    """Verify an `audit export` file offline: the chains it holds and its checkpoints."""
    header: dict[str, Any] = {}
    rows: list[Row] = []
    checkpoints: list[Checkpoint] = []
    seen: dict[str, tuple[int, str, int]] = {}
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
                            as_order_id(data["order_id"]),
                            int(data["version"]),
                            str(data["topic"]),
                            state if isinstance(state, dict) else None,
                            int(data["position"]),
                        )
                    )
                elif kind == "checkpoint":
                    checkpoints.append(Checkpoint.from_json(data))
                elif kind == "seen_head":
                    seen[as_order_id(data["order_id"])] = (
                        int(data["version"]),
                        str(data["head_hash"]),
                        int(data["position"]),
                    )
                else:
                    bad_lines.append(f"line {number}: unknown type {kind!r}")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                bad_lines.append(f"line {number}: {type(e).__name__}: {e}")
    rows.sort(key=lambda r: (r.order_id, r.version))
    checkpoints.sort(key=lambda c: c.seq)
    complete = bool(header.get("complete"))
    by_order = list(_by_order(rows))
    scope = None if header.get("order") is None else {as_order_id(header["order"])}
    verifier = _Verifier(
        checkpoints,
        key,
        unsigned_up_to=unsigned_up_to,
        scope=scope,
        from_start=header.get("since") is None,
        seen=seen if header.get("since") is None else None,
        public_keys=public_keys,
    )
    coverage = _Coverage(checkpoints, seen if header.get("since") is None else None)
    for order_id, group in by_order:
        verifier.order(order_id, group)
        coverage.order(group)
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
    coverage.tell(report, anchored=anchor is not None, log="the exported log")
    if anchor is not None:
        report.checkpoint_problems += check_anchor(checkpoints, load_anchor(anchor))
    return report

"""An independent verifier of `serviceorders audit export` files, written as an external
auditor would: from the specification in docs/audit.md alone (the canonical serialisation,
the hashed object, the chain, the Merkle tree, checkpoints, signatures, the export format).

It imports nothing from `serviceorders`: the standard library and `cryptography` (Ed25519)
only. `verify_export(path, public_keys=..., hmac_key=..., anchors=...)` returns the problems
it finds (an empty list: the export verifies); `audit_export(...)` returns them with the
notes on what could not be checked.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_lib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

GENESIS = "0" * 64
JCS, LEGACY = "jcs", "legacy"
FORMAT_1, FORMAT_2 = "serviceorders-audit/1", "serviceorders-audit/2"
ROTATION_FORMAT = "serviceorders-audit-rotation/1"
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
F2_FIELDS = (*F1_FIELDS, "public_key", "endorsement")
MAX_JCS_INT = 2**53 - 1
LEGACY_INT_RANGE = (-(2**63), 2**64 - 1)


class NotCanonical(ValueError):
    """A value the rule cannot serialise (a number out of range, a lone surrogate, NaN)."""


# ------------------------------------------------------------------ canonical serialisation
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise NotCanonical(f"lone surrogate U+{code:04X} in a string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def shortest_digits(x: float) -> tuple[str, int]:
    """(ds, n) for a finite non-zero |x|: the shortest round-tripping digit string, without
    leading or trailing zeros, and n with |x| = 0.ds * 10^n. Python's repr of a float is
    the shortest string that round-trips (the closest one when several are shortest)."""
    text = repr(abs(x))
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    n = len(whole) + exponent
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if not digits:
        raise NotCanonical("zero has no digit string")
    return digits, n


def _exponent_form(ds: str, n: int) -> str:
    mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    e = n - 1
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def format_double(x: float, rule: str) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        raise NotCanonical("NaN and Infinity have no canonical form")
    if x == 0:
        if rule == JCS:
            return "0"
        return "-0.0" if str(x).startswith("-") else "0.0"
    sign = "-" if x < 0 else ""
    ds, n = shortest_digits(x)
    k = len(ds)
    big, small = (21, -6) if rule == JCS else (16, -5)
    if k <= n <= big:
        body = ds + "0" * (n - k) + ("" if rule == JCS else ".0")
    elif 0 < n <= big:
        body = ds[:n] + "." + ds[n:]
    elif small < n <= 0:
        body = "0." + "0" * (-n) + ds
    else:
        body = _exponent_form(ds, n)
    return sign + body


def _sort_key(rule: str) -> Any:
    if rule == JCS:
        return lambda key: key.encode("utf-16-be", "surrogatepass")  # UTF-16 code units
    return lambda key: key  # code points


def _serialise(value: Any, rule: str, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        low, high = (-MAX_JCS_INT, MAX_JCS_INT) if rule == JCS else LEGACY_INT_RANGE
        if not low <= value <= high:
            raise NotCanonical(f"integer {value} out of range for rule {rule!r}")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_double(value, rule))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _serialise(item, rule, out)
        out.append("]")
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise NotCanonical(f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_sort_key(rule))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _serialise(value[key], rule, out)
        out.append("}")
    else:
        raise NotCanonical(f"{type(value).__name__} is not a JSON value")


def canonical(value: Any, rule: str = JCS) -> bytes:
    """C_rule(value) as UTF-8 bytes (rule "jcs" or "legacy")."""
    if rule not in (JCS, LEGACY):
        raise NotCanonical(f"unknown rule {rule!r}")
    out: list[str] = []
    _serialise(value, rule, out)
    return "".join(out).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ events and chains
def rule_of(state: Mapping[str, Any]) -> str | None:
    """The event's rule; None: it names a rule this verifier does not know."""
    if "hash_rule" not in state:
        return LEGACY
    return JCS if state["hash_rule"] == JCS else None


def event_hash(topic: str, order_id: str, version: int, state: Mapping[str, Any]) -> str:
    rule = rule_of(state)
    if rule is None:
        raise NotCanonical(f"unknown hash_rule {state.get('hash_rule')!r}")
    hashed = {
        "originator_id": order_id,
        "originator_version": version,
        "state": {k: v for k, v in state.items() if k != "hash"},
        "topic": topic,
    }
    return sha256_hex(canonical(hashed, rule))


def content_hash(decision: Mapping[str, Any], rule: str) -> str:
    """A decision's content_hash: over its header, items and proposal."""
    return sha256_hex(canonical({k: decision[k] for k in ("header", "items", "proposal")}, rule))


# ------------------------------------------------------------------ Merkle tree
EMPTY = hashlib.sha256(b"\x02").digest()


def leaf(order_id: str, version: int, head_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + canonical([order_id, version, head_hash])).digest()


def merkle(nodes: Sequence[bytes]) -> bytes:
    if not nodes:
        return EMPTY
    level = list(nodes)
    while len(level) > 1:
        upper = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            upper.append(level[-1])
        level = upper
    return level[0]


def bucket_of(order_id: str) -> int:
    """The first byte of the UUID's 16-byte binary form (ValueError: not a UUID)."""
    return uuid.UUID(order_id).bytes[0]


def merkle_root(heads: Mapping[str, tuple[int, str]]) -> str:
    """The root over {order id: (version, head hash)}: 256 buckets, each a Merkle tree over
    its leaves sorted by order id text, then a tree over the bucket roots."""
    buckets: list[list[str]] = [[] for _ in range(256)]
    for order_id in heads:
        buckets[bucket_of(order_id)].append(order_id)
    roots = [
        merkle([leaf(o, heads[o][0], heads[o][1]) for o in sorted(bucket)]) for bucket in buckets
    ]
    return merkle(roots).hex()


def changes_digest(changes: Iterable[Sequence[Any]]) -> str:
    return sha256_hex(canonical(sorted([list(c) for c in changes], key=lambda c: c[0])))


# ------------------------------------------------------------------ checkpoints
def checkpoint_fields(line: Mapping[str, Any]) -> dict[str, Any]:
    """F1 or F2, by the line's format (KeyError when one is missing)."""
    names = F2_FIELDS if line.get("format") == FORMAT_2 else F1_FIELDS
    return {name: line[name] for name in names}


def checkpoint_digest(fields: Mapping[str, Any]) -> str:
    return sha256_hex(canonical(fields))


def checkpoint_hmac(fields: Mapping[str, Any], key: str) -> str:
    return hmac_lib.new(key.encode("utf-8"), canonical(fields), hashlib.sha256).hexdigest()


def rotation_message(public_key: str, seq: int) -> bytes:
    return canonical({"format": ROTATION_FORMAT, "public_key": public_key, "seq": seq})


def ed25519_verifies(public_key_hex: str, signature_hex: Any, message: bytes) -> bool:
    if not isinstance(signature_hex, str):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_key_hex(pin: str | bytes | Ed25519PublicKey) -> str:
    """A pinned key, as PEM text, 64-hex text, raw 32 bytes or a key object, in hex."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if isinstance(pin, Ed25519PublicKey):
        return pin.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    if isinstance(pin, bytes) and len(pin) == 32:
        return pin.hex()
    text = pin.decode() if isinstance(pin, bytes) else pin
    if "BEGIN" in text:
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the pinned PEM key is not an Ed25519 public key")
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    text = text.strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("a pinned key is PEM or 64 hex digits")
    return text


# ------------------------------------------------------------------ the report
@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str
    order: str | None = None
    version: int | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = (
            f"order {self.order} v{self.version}"
            if self.order is not None
            else f"checkpoint {self.seq}"
            if self.seq is not None
            else "export"
        )
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def broken_orders(self) -> dict[str, tuple[int, str]]:
        """{order id: (first bad version, kind)}: its problem at the lowest version (the
        first found on a tie)."""
        out: dict[str, tuple[int, str]] = {}
        for p in self.problems:
            if p.order is None:
                continue
            version = p.version or 0
            if p.order not in out or version < out[p.order][0]:
                out[p.order] = (version, p.kind)
        return out

    def checkpoint_problems(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for p in self.problems:
            if p.order is None and p.seq is not None:
                out.setdefault(p.seq, set()).add(p.kind)
        return out


@dataclass
class Event:
    order_id: str
    version: int
    topic: str
    position: int
    state: dict[str, Any] | None  # None: given as state_raw (undecodable)
    line: int


class _Verifier:
    def __init__(
        self,
        lines: list[dict[str, Any]],
        public_keys: Iterable[str | bytes | Ed25519PublicKey],
        hmac_key: str | None,
        unsigned_up_to: int,
        anchors: Iterable[Path | str] = (),
    ) -> None:
        self.result = Result()
        self.anchors = [Path(a) for a in anchors]
        self.pins = [public_key_hex(p) for p in public_keys]
        self.hmac_key = hmac_key
        self.unsigned_up_to = unsigned_up_to
        self.header: dict[str, Any] = {}
        self.events: dict[str, list[Event]] = {}
        self.checkpoints: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []
        self.broken: set[str] = set()
        self.broken_at: dict[str, int] = {}  # step 2: the first bad version
        self.matched: dict[str, int] = {}  # M(o)
        self.kinds_found: dict[str, str] = {}  # step 4's problem per order
        self.unsorted = 0
        self._read(lines)

    # ---------------------------------------------------------------- reading
    def problem(self, kind: str, detail: str, **where: Any) -> None:
        self.result.problems.append(Problem(kind, detail, **where))
        if where.get("order") is not None:
            self.broken.add(where["order"])

    def _read(self, lines: list[dict[str, Any]]) -> None:
        if not lines or lines[0].get("type") != "export":
            self.problem("file", "the first line is not the export header")
        else:
            self.header = lines[0]
        last_key: tuple[str, int] | None = None
        for number, line in enumerate(lines[1:], start=2):
            kind = line.get("type")
            if kind == "event":
                state = line.get("state") if "state" in line else None
                if state is not None and not isinstance(state, dict):
                    state = None
                try:
                    event = Event(
                        str(line["order_id"]),
                        _integer(line["version"]),
                        str(line["topic"]),
                        _integer(line["position"]),
                        state,
                        number,
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    self.problem("file", f"line {number}: not an event line ({exc})")
                    continue
                key = (event.order_id, event.version)
                if last_key is not None and key < last_key and not self.unsorted:
                    # not a problem of the events (step 2 sorts them): said, not failed
                    self.unsorted = number
                    self.result.notes.append(
                        f"line {number}: event lines not in (order id, version) order"
                    )
                last_key = key
                self.events.setdefault(event.order_id, []).append(event)
            elif kind == "checkpoint":
                self.checkpoints.append(line)
            elif kind == "seen_head":
                if _is_head([line.get("order_id"), line.get("version"), line.get("head_hash")]):
                    self.seen.append(line)
                else:
                    self.problem("file", f"line {number}: not a seen_head line")
            else:
                self.problem("file", f"line {number}: unreadable, or an unknown line type {kind!r}")

    @property
    def complete(self) -> bool:
        return bool(self.header.get("complete"))

    @property
    def since(self) -> bool:
        return self.header.get("since") is not None

    # ---------------------------------------------------------------- chains
    def fits(self, event: Event, version: int, topic: str | None = None) -> bool:
        """The event fits `version`: a state whose `hash` is a string, a known rule that can
        serialise it, and H(C_rule(E)) with that version (and topic) equal to state.hash."""
        state = event.state
        if state is None or not isinstance(state.get("hash"), str):
            return False
        try:
            got = event_hash(topic or event.topic, event.order_id, version, state)
        except (NotCanonical, TypeError, ValueError):
            return False
        return got == state["hash"]

    def _fits_another(
        self, event: Event, by_version: Mapping[int, Event]
    ) -> tuple[int, bool] | None:
        """(v', its own event fits v' too: a copy) for another version v' of the order the
        event fits, computed with its own topic or v''s; None: none."""
        for other in sorted(by_version):
            if other == event.version:
                continue
            mate = by_version[other]
            if any(self.fits(event, other, t) for t in {event.topic, mate.topic}):
                return other, self.fits(mate, other)
        return None

    def check_chains(self) -> None:
        """Step 2: each order's first bad version."""
        for order_id, events in self.events.items():
            try:
                well_formed = str(uuid.UUID(order_id)) == order_id
            except ValueError:
                well_formed = False
            if not well_formed:
                self.problem(
                    "file",
                    "order id is not lowercase hyphenated UUID text",
                    order=order_id,
                    version=min(e.version for e in events),
                )
                self.broken_at[order_id] = 1
                continue
            self._check_chain(order_id, sorted(events, key=lambda e: e.version))

    def _check_chain(self, order_id: str, events: list[Event]) -> None:
        by_version: dict[int, Event] = {}
        for e in events:
            by_version.setdefault(e.version, e)
        if self.since:
            first = events[0]
            expected = first.version
            previous = first.state.get("prev_hash") if first.state else None
        else:
            expected, previous = 1, GENESIS

        def bad(kind: str, version: int, detail: str) -> None:
            self.problem(kind, detail, order=order_id, version=version)
            self.broken_at[order_id] = version

        for event in events:
            if event.version != expected:
                other = self._fits_another(event, by_version)
                if other is not None and other[1]:
                    bad("inserted", event.version, f"a copy of v{other[0]}")
                elif event.version < expected:
                    bad("inserted", event.version, f"a second event at v{event.version}")
                else:
                    bad("deleted", expected, f"v{expected} missing (next: v{event.version})")
                return
            if not self.fits(event, event.version):
                if event.state is None:
                    bad("altered", event.version, "the stored state cannot be decoded")
                    return
                other = self._fits_another(event, by_version)
                if other is not None and other[1]:
                    bad("inserted", event.version, f"a copy of v{other[0]}")
                elif other is not None:
                    bad("reordered", event.version, f"holds the content of v{other[0]}")
                else:
                    bad("altered", event.version, "the stored content does not match its hash")
                return
            assert event.state is not None
            if event.state.get("prev_hash") != previous:
                at = 1 if event.version == 1 else event.version - 1
                bad("altered", at, f"v{event.version}'s prev_hash does not link")
                return
            previous = event.state["hash"]
            expected = event.version + 1

    # ---------------------------------------------------------------- heads
    def heads_at(self, position: int | None) -> dict[str, tuple[int, str | None]]:
        """S: each order's newest event at or before `position` (None: the newest)."""
        out: dict[str, tuple[int, str | None]] = {}
        for order_id, events in self.events.items():
            for e in events:
                if position is not None and e.position > position:
                    continue
                if order_id not in out or e.version > out[order_id][0]:
                    h = e.state.get("hash") if e.state else None
                    out[order_id] = (e.version, h if isinstance(h, str) else None)
        return out

    def _stored_hash(self, order_id: str, version: int) -> str | None:
        for e in self.events.get(order_id, []):
            if e.version == version and e.state is not None:
                h = e.state.get("hash")
                return h if isinstance(h, str) else None
        return None

    def check_checkpoints(self) -> None:
        """Step 3 (the checkpoint chain, HMACs, signatures and keys), then step 4 (the
        heads as of each checkpoint) with the checkpoints that passed step 3."""
        self.checkpoints.sort(key=_seq_of)
        failed: set[Any] = set()
        previous_digest, previous_position = GENESIS, -1
        parsed: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for index, line in enumerate(self.checkpoints):
            seq = line.get("seq")
            where = {"seq": seq}
            if seq != index + 1:
                self.problem("chain", f"expected seq {index + 1}, found {seq}", **where)
            try:
                fields = checkpoint_fields(line)
                digest = checkpoint_digest(fields)
            except KeyError as missing:
                self.problem("file", f"field {missing} missing", **where)
                continue
            except NotCanonical as exc:
                self.problem("digest", f"fields cannot be serialised: {exc}", **where)
                continue
            if fields["format"] not in (FORMAT_1, FORMAT_2):
                self.problem("file", f"unknown format {fields['format']!r}", **where)
                continue
            if not _fields_typed(fields):
                self.problem("file", "a field of the wrong JSON type", **where)
                continue
            if fields["prev_digest"] != previous_digest:
                self.problem(
                    "chain", "prev_digest does not link to the previous checkpoint", **where
                )
            if line.get("digest") != digest:
                self.problem("digest", "the digest does not match the fields", **where)
                failed.add(seq)
            if not isinstance(fields["position"], int) or fields["position"] < previous_position:
                self.problem("position", "lower than the previous checkpoint's", **where)
            else:
                previous_position = fields["position"]
            previous_digest = str(line.get("digest"))
            changes = line.get("changes")
            if not isinstance(changes, list) or not all(map(_is_head, changes)):
                self.problem("changes", "no changes listed, or one is not a head", **where)
                failed.add(seq)
                line["changes"] = changes = []
            elif changes_digest(changes) != fields["changes_digest"]:
                self.problem("changes", "the changes do not match changes_digest", **where)
                failed.add(seq)
            if not self._check_hmac(line, fields):
                failed.add(seq)
            parsed.append((line, fields))
        failed |= self._check_signatures(parsed)
        self._check_heads(parsed, failed)

    def _check_hmac(self, line: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
        """Rule 7: with a key, every HMAC present must match; a checkpoint with neither a
        signature nor an HMAC (beyond --unsigned-up-to) is `unsigned`; a signed one without
        an HMAC is accepted (its signature is the stronger evidence)."""
        if self.hmac_key is None:
            return True
        seq = fields["seq"]
        given = line.get("hmac")
        if given is None:
            if fields.get("public_key") is not None or seq <= self.unsigned_up_to:
                return True
            self.problem("unsigned", "neither a signature nor an HMAC, a key is given", seq=seq)
            return False
        expected = checkpoint_hmac(fields, self.hmac_key).encode()
        if not hmac_lib.compare_digest(str(given).encode("utf-8", "surrogatepass"), expected):
            self.problem("hmac", "the HMAC does not verify under the key", seq=seq)
            return False
        return True

    def _check_signatures(self, parsed: list[tuple[dict[str, Any], dict[str, Any]]]) -> set[int]:
        """The signatures, and which keys to trust (docs/audit.md): the seqs that fail."""
        failed: set[int] = set()
        trusted = set(self.pins)
        last_key: str | None = None
        for line, fields in parsed:
            seq = fields["seq"]
            key = fields.get("public_key")
            if key is None:  # rule 7: after a signed one, or with keys pinned
                if (last_key is not None or self.pins) and seq > self.unsigned_up_to:
                    self.problem("unsigned", "unsigned checkpoint after a signed one", seq=seq)
                    failed.add(seq)
                continue
            if not ed25519_verifies(str(key), line.get("signature"), canonical(fields)):
                self.problem("signature", "does not verify under its public_key", seq=seq)
                failed.add(seq)
            endorsement = fields.get("endorsement")
            if last_key is None:  # the first signed checkpoint
                if endorsement is not None:  # no previous key it could verify under
                    self.problem("key", "an endorsement, and no previous signed key", seq=seq)
                    failed.add(seq)
                if not self.pins:
                    trusted.add(key)  # the first key in the chain (keys not pinned)
                elif key not in trusted:
                    self.problem("key", "signed by a key neither pinned nor endorsed", seq=seq)
                    failed.add(seq)
                last_key = key
                continue
            endorsed = endorsement is not None and ed25519_verifies(
                last_key, endorsement, rotation_message(key, seq)
            )
            if endorsement is not None and not endorsed:  # even where the key did not change
                self.problem("key", "the endorsement does not verify", seq=seq)
                failed.add(seq)
            if key != last_key:  # a rotation: pinned, or endorsed by a trusted key
                if key in self.pins or (endorsed and last_key in trusted):
                    trusted.add(key)
                else:
                    trusted.discard(key)  # rotated away and back: endorsed again, or not
                    self.problem("key", "signed by a key neither pinned nor endorsed", seq=seq)
                    failed.add(seq)
            elif key not in trusted:
                failed.add(seq)  # the same key as an untrusted one: no evidence
            last_key = key
        return failed

    def _check_heads(
        self, parsed: list[tuple[dict[str, Any], dict[str, Any]]], failed: set[Any]
    ) -> None:
        """Step 4: the heads as of each checkpoint (S_k from the events, R_k from the
        changes), compared at each checkpoint that is evidence."""
        whole = self.complete and not self.since and not self.header.get("order")
        only = self.header.get("order")
        recorded: dict[str, tuple[int, str]] = {}
        previous_s: dict[str, tuple[int, str | None]] = {}
        highest = -1
        reported: set[str] = set()
        for line, fields in parsed:
            seq = fields["seq"]
            changes = line.get("changes") or []
            for order_id, version, head_hash in changes:
                recorded[order_id] = (version, head_hash)
            highest = max(highest, fields["position"])
            actual = self.heads_at(highest)
            for order_id in set(actual) | set(recorded):  # M(o): S_j(o) = R_j(o)
                if order_id in recorded and actual.get(order_id) == recorded[order_id]:
                    self.matched[order_id] = recorded[order_id][0]
            if seq not in failed:  # evidence
                moved = {o for o in actual if actual[o] != previous_s.get(o)}
                moved |= {o for o in previous_s if o not in actual}
                candidates = moved | {c[0] for c in changes}
                for order_id in sorted(candidates - reported):
                    if only and order_id != only:
                        continue
                    if self.since and order_id not in actual:
                        continue  # no exported event at or before P_k
                    if self._compare_head(
                        order_id, actual.get(order_id), recorded.get(order_id), seq
                    ):
                        reported.add(order_id)
                if whole and all(
                    actual.get(o) == recorded.get(o) for o in set(actual) | set(recorded)
                ):
                    if fields["order_count"] != len(actual):
                        self.problem(
                            "order_count",
                            f"records {fields['order_count']}, the events give {len(actual)}",
                            seq=seq,
                        )
                    complete_heads = {o: (v, str(h)) for o, (v, h) in actual.items()}
                    if fields["root"] != merkle_root(complete_heads):
                        self.problem("root", "the Merkle root of the heads differs", seq=seq)
            previous_s = actual

    def _compare_head(
        self,
        order_id: str,
        s: tuple[int, str | None] | None,
        r: tuple[int, str] | None,
        seq: int,
    ) -> bool:
        """One order's head at checkpoint `seq`: True when a problem was reported."""
        if s == r:
            return False
        by = f"checkpoint {seq}"
        where = {"order": order_id}
        if s is None and r is not None:
            self.problem("missing", f"{by} recorded v{r[0]}; no event of it", version=1, **where)
        elif r is None and s is not None:
            self.problem("inserted", f"an order {by} does not know", version=1, **where)
        elif s is not None and r is not None and s[0] < r[0]:
            self.problem(
                "head_moved_back",
                f"{by} recorded v{r[0]}, the newest at its position is v{s[0]}",
                version=s[0] + 1,
                **where,
            )
        elif s is not None and r is not None and s[0] > r[0]:
            self.problem(
                "inserted",
                f"v{s[0]} at or before {by}, which recorded v{r[0]}",
                version=r[0] + 1,
                **where,
            )
        elif r is not None:
            broken = self.broken_at.get(order_id)
            if broken is not None and broken <= r[0]:
                return False
            self.problem(
                "rewritten",
                f"{by} recorded another hash for v{r[0]}",
                version=self.matched.get(order_id, 0) + 1,
                **where,
            )
        else:
            return False
        self.kinds_found[order_id] = self.result.problems[-1].kind
        return True

    # ---------------------------------------------------------------- seen heads
    def check_seen_heads(self) -> None:
        """Step 5: every seen head still held (none in a --since export)."""
        if self.since:
            return
        for line in self.seen:
            order_id, version, head_hash = line["order_id"], line["version"], line["head_hash"]
            if self.kinds_found.get(order_id) in ("missing", "head_moved_back", "rewritten"):
                continue
            events = self.events.get(order_id, [])
            where = {"order": order_id}
            if not events:
                self.problem("missing", "the projector read it; no event of it", version=1, **where)
                continue
            newest = max(e.version for e in events)
            if newest < version:
                self.problem(
                    "head_moved_back",
                    f"the projector read v{version}, the newest is v{newest}",
                    version=newest + 1,
                    **where,
                )
            elif self._stored_hash(order_id, version) != head_hash:
                broken = self.broken_at.get(order_id)
                if broken is not None and broken <= version:
                    continue
                self.problem(
                    "rewritten",
                    f"the projector read another hash for v{version}",
                    version=self.matched.get(order_id, 0) + 1,
                    **where,
                )

    # ---------------------------------------------------------------- notes
    def notes(self) -> None:
        r = self.result
        if not self.checkpoints:
            r.warnings.append("the log was never checkpointed")
        if self.hmac_key is None and any(c.get("hmac") for c in self.checkpoints):
            r.notes.append("HMACs not checked (no key)")
        if any(c.get("public_key") for c in self.checkpoints) and not self.pins:
            r.notes.append("keys not pinned: the first public key in the chain is trusted")
        covered = self.checkpoints[-1].get("position", -1) if self.checkpoints else -1
        seen = {(s["order_id"], s["version"]) for s in self.seen}
        uncovered = [
            e
            for events in self.events.values()
            for e in events
            if e.position > covered and not any(o == e.order_id and v >= e.version for o, v in seen)
        ]
        if uncovered:
            r.notes.append(
                f"{len(uncovered)} events covered by no checkpoint and no projector head"
            )

    # ---------------------------------------------------------------- anchors
    def check_anchors(self) -> None:
        """Step 6: every anchored checkpoint's digest matches its fields, and the export
        holds a checkpoint of the same seq equal to it in every member."""
        held = {_seq_of(c): c for c in self.checkpoints}
        for path in self.anchors:
            found = read_anchor(path)
            if not found:  # checked against nothing is no check
                self.problem("anchor", f"{path.name}: holds no checkpoint")
            for anchored in found:
                seq = _seq_of(anchored)
                try:
                    fields = checkpoint_fields(anchored)
                    own = checkpoint_digest(fields) == anchored.get("digest")
                except (KeyError, NotCanonical):
                    own = False
                if not own:
                    self.problem("anchor", f"{path.name}: the anchored digest fails", seq=seq)
                    continue
                stored = held.get(seq)
                if stored is None:
                    self.problem("anchor", f"{path.name}: anchored, absent here", seq=seq)
                    continue
                members = set(anchored) | set(stored)
                members -= {"type", "changes"}
                differ = sorted(m for m in members if anchored.get(m) != stored.get(m))
                if differ:
                    self.problem(
                        "anchor", f"{path.name}: differs from the anchor in {differ}", seq=seq
                    )

    def run(self) -> Result:
        self.check_chains()
        self.check_checkpoints()
        self.check_seen_heads()
        self.check_anchors()
        self.notes()
        return self.result


def _is_head(change: Any) -> bool:
    """[order id (UUID text), version (integer), head hash (text)]."""
    if not (isinstance(change, list) and len(change) == 3):
        return False
    order_id, version, head_hash = change
    try:
        uuid.UUID(order_id)
    except (ValueError, TypeError, AttributeError):
        return False
    return isinstance(version, int) and not isinstance(version, bool) and isinstance(head_hash, str)


def _fields_typed(fields: Mapping[str, Any]) -> bool:
    """The fields' JSON types as the Specification gives them."""
    integers = ("seq", "position", "order_count")
    texts = ("changes_digest", "created_at", "prev_digest", "root")
    optional = ("public_key", "endorsement")
    return (
        all(isinstance(fields[n], int) and not isinstance(fields[n], bool) for n in integers)
        and all(isinstance(fields[n], str) for n in texts)
        and all(fields.get(n) is None or isinstance(fields[n], str) for n in optional)
    )


def _seq_of(line: Mapping[str, Any]) -> int:
    seq = line.get("seq")
    return seq if isinstance(seq, int) else 0


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def read_lines(path: Path | str) -> list[dict[str, Any]]:
    """The export's lines; numbers parsed as the spec says (json: int or float)."""
    lines: list[dict[str, Any]] = []
    # lines end at "\n" only (U+2028, U+0085 ... may appear unescaped inside strings)
    with open(path, encoding="utf-8", newline="\n", errors="replace") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = None
            lines.append(line if isinstance(line, dict) else {"type": None, "_line": number})
    return lines


def read_anchor(path: Path | str) -> list[dict[str, Any]]:
    """The checkpoints an anchor holds: `audit anchor` output ({"checkpoints": [...]}), one
    checkpoint object, a JSON list of them, or JSON lines (an anchor file, an export)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("checkpoints"), list):
        found = whole["checkpoints"]
    elif isinstance(whole, dict):
        found = [whole]
    elif isinstance(whole, list):
        found = whole
    else:
        found = [line for line in read_lines(path) if line.get("type") == "checkpoint"]
    return [c for c in found if isinstance(c, dict)]


def audit_export(
    path: Path | str,
    *,
    public_keys: Iterable[str | bytes | Ed25519PublicKey] = (),
    hmac_key: str | None = None,
    unsigned_up_to: int = 0,
    anchors: Iterable[Path | str] = (),
) -> Result:
    return _Verifier(read_lines(path), public_keys, hmac_key, unsigned_up_to, anchors).run()


def verify_export(
    path: Path | str,
    *,
    public_keys: Iterable[str | bytes | Ed25519PublicKey] = (),
    hmac_key: str | None = None,
    unsigned_up_to: int = 0,
    anchors: Iterable[Path | str] = (),
) -> list[Problem]:
    """Every problem found in the export (empty: it verifies)."""
    return audit_export(
        path,
        public_keys=public_keys,
        hmac_key=hmac_key,
        unsigned_up_to=unsigned_up_to,
        anchors=anchors,
    ).problems

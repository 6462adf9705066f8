"""Make the audit test vectors: docs/audit-vectors/*.json and docs/audit-vectors.md.

    python3 tests/vectors/make_audit_vectors.py            # rewrite the files in docs/
    python3 tests/vectors/make_audit_vectors.py --out DIR  # write them under DIR instead

Deterministic: fixed order ids (from external ids), event times, proposal ids, personal data
key and nonces, HMAC key and Ed25519 seeds (all TEST ONLY), so that running it again gives
the same bytes. tests/integration/test_audit_vectors.py regenerates them into a temporary
folder and compares, and recomputes every vector with the engine: a change to how the engine
hashes cannot slip by unnoticed. The values come from the engine itself (events through
`ServiceOrders.handle`, canonical forms from domain/chain.py, Merkle roots from
audit/merkle.py, checkpoints from audit/checkpoints.py); the independent verifier in the
tests checks them against docs/audit.md's rules, which the engine does not read.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

from audit_scenario import EVENT_TYPES, deterministic, drive  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from serviceorders.audit import checkpoints as cp  # noqa: E402
from serviceorders.audit.merkle import (  # noqa: E402
    EMPTY_ROOT,
    HeadTree,
    changes_digest,
    head_leaf,
    merkle,
)
from serviceorders.audit.pii import Vault  # noqa: E402
from serviceorders.domain import chain  # noqa: E402
from serviceorders.domain.application import ServiceOrders  # noqa: E402
from serviceorders.domain.codec import decode_state  # noqa: E402
from serviceorders.support.signing import public_hex, sign  # noqa: E402

SPEC = "../audit.md#specification"  # from docs/audit-vectors/ and docs/ alike: see LINK
LINK = "audit.md#specification"
TOPIC_PREFIX = "serviceorders.order:"
UPCAST_FIXTURE = REPO / "tests" / "fixtures" / "events" / "note_added_v1.json"

# TEST ONLY: keys published with the vectors so that anyone can recompute them. Never use
# them for anything else.
PII_KEY = hashlib.sha256(b"serviceorders audit vectors: TEST ONLY personal data key").digest()
HMAC_KEY = "serviceorders audit vectors: TEST ONLY hmac key"
SEED_A = hashlib.sha256(b"serviceorders audit vectors: TEST ONLY Ed25519 seed A").digest()
SEED_B = hashlib.sha256(b"serviceorders audit vectors: TEST ONLY Ed25519 seed B").digest()


# ------------------------------------------------------------------------ helpers
class _FixedKeys:
    """The vault's key store with one fixed key for every scope."""

    def get(self, scope: str) -> tuple[bytes | None, bool]:
        return PII_KEY, False

    def get_or_create(self, scope: str) -> bytes | None:
        return PII_KEY

    def close(self) -> None:
        pass


class _FixedVault(Vault):
    """AES-GCM sealing as the engine does it, with counted nonces (reproducible tokens)."""

    def __init__(self) -> None:
        super().__init__(_FixedKeys())  # type: ignore[arg-type]
        self._count = itertools.count(1)

    def _nonce(self) -> bytes:
        return next(self._count).to_bytes(12, "big")


def _hashed_object(topic: str, order_id: str, version: int, state: dict[str, Any]) -> Any:
    return {
        "originator_id": order_id,
        "originator_version": version,
        "state": {k: v for k, v in state.items() if k != "hash"},
        "topic": topic,
    }


def _event_vector(
    name: str, note: str, topic: str, order_id: str, version: int, state: dict[str, Any]
) -> dict[str, Any]:
    rule = chain.rule_of(state)
    text = chain.canonical_for(rule)(_hashed_object(topic, order_id, version, state))
    digest = chain.event_hash(topic, order_id, version, state)
    assert digest == state["hash"] == hashlib.sha256(text).hexdigest(), name
    return {
        "name": name,
        "note": note,
        "topic": topic,
        "originator_id": order_id,
        "originator_version": version,
        "rule": rule,
        "state": state,
        "canonical": text.decode("utf-8"),
        "hash": digest,
    }


# ------------------------------------------------------------------------- events
def _engine_events() -> list[tuple[str, int, str, dict[str, Any]]]:
    """(topic, order id, version, stored state) of every event the scenario writes,
    on the in-memory store, deterministically."""
    app = ServiceOrders(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, sealer=_FixedVault())
    try:
        with deterministic():
            orders = drive(app)
        return [
            (s.topic, str(s.originator_id), s.originator_version, decode_state(app.mapper, s))
            for order_id in orders.values()
            for s in app.recorder.select_events(order_id)  # type: ignore[attr-defined]
        ]
    finally:
        app.close()


NOTES = {
    "OrderDrafted": "awkward characteristics (1e-7, 2.775411931247677e-05, 10.0, -0.0, 1e21, "
    "+-(2^53-1), emoji and U+E000 keys, control characters, U+2028) and sealed personal "
    "data (the customer's name, the contact, the places' names)",
    "LineConfigured": "10.0, 1e16 and -0.0 set, an emoji key and a U+E000 key",
    "NoteAdded": "class version 2: `class_version` is in the state",
    "OrderApproved": "a decision: version and content_hash of what the manager saw",
}


def event_vectors() -> dict[str, Any]:
    vectors = []
    seen: set[str] = set()
    for topic, order_id, version, state in _engine_events():
        name = topic.removeprefix(TOPIC_PREFIX)
        if name in seen:
            continue
        seen.add(name)
        vectors.append(_event_vector(name, NOTES.get(name, ""), topic, order_id, version, state))
    assert seen == set(EVENT_TYPES), set(EVENT_TYPES) - seen
    vectors.sort(key=lambda v: EVENT_TYPES.index(v["name"]))

    fixture = json.loads(UPCAST_FIXTURE.read_text(encoding="utf-8"))
    for event in fixture["events"]:
        name = event["topic"].removeprefix(TOPIC_PREFIX)
        upcast = name == "NoteAdded"
        note = (
            "stored by an older release (legacy rule, no hash_rule); class version 1 "
            "(plain `text`): hashed as stored, upcast to version 2 only after verification"
            if upcast
            else "stored by an older release: legacy rule (no hash_rule)"
        )
        vectors.append(
            _event_vector(
                f"{name} (legacy{', upcast' if upcast else ''})",
                note,
                event["topic"],
                fixture["originator_id"],
                event["originator_version"],
                event["state"],
            )
        )

    # The awkward OrderDrafted as the release before this one stored it: no hash_rule,
    # hashed under the legacy rule (10.0 stays 10.0, U+E000 sorts before the emoji).
    first = next(v for v in vectors if v["name"] == "OrderDrafted")
    state = {k: v for k, v in first["state"].items() if k not in ("hash", "hash_rule")}
    state["hash"] = chain.event_hash(first["topic"], first["originator_id"], 1, state)
    vectors.append(
        _event_vector(
            "OrderDrafted (legacy, awkward)",
            "the awkward OrderDrafted above without hash_rule, hashed under the legacy rule "
            "(made for the vectors: what the release before would have stored)",
            first["topic"],
            first["originator_id"],
            1,
            state,
        )
    )
    return {
        "description": "Stored events with their canonical forms and hashes: one of every "
        "event type as this release writes it (rule jcs), and events stored by older "
        "releases (rule legacy), one of them of an older class version (upcast after "
        "verification). hash = SHA-256 of the UTF-8 `canonical`, the canonical form of "
        "{originator_id, originator_version, state without hash, topic} under `rule`.",
        "specification": SPEC,
        "test_only_keys": {
            "personal_data_aes_256_gcm_key_hex": PII_KEY.hex(),
            "note": "TEST ONLY. The sealed tokens (pii:1:<scope>:<nonce+ciphertext>) decrypt "
            "with this key; a verifier never needs it (tokens are hashed as stored).",
        },
        "events": vectors,
    }


# ---------------------------------------------------------------------- canonical
def canonical_vectors() -> dict[str, Any]:
    values: list[tuple[str, Any]] = [
        ("zero", 0.0),
        ("negative zero", -0.0),
        ("integral double", 10.0),
        ("1e-7", 1e-7),
        ("1e-6", 1e-6),
        ("1e-5", 1e-5),
        ("2.775411931247677e-05", 2.775411931247677e-05),
        ("0.1", 0.1),
        ("0.1 + 0.2", 0.1 + 0.2),
        ("123.45", 123.45),
        ("123456.789", 123456.789),
        ("-1.5", -1.5),
        ("1e16", 1e16),
        ("1e20", 1e20),
        ("1e21", 1e21),
        ("1e22", 1e22),
        ("smallest subnormal", 5e-324),
        ("largest double", 1.7976931348623157e308),
        ("2^53 - 1", 2**53 - 1),
        ("-(2^53 - 1)", -(2**53 - 1)),
        ("integer 0", 0),
        ("integer -7", -7),
        ("literals", [True, False, None]),
        ("empty", [{}, [], ""]),
        ("non-ASCII text", "Zürich — 東京 Ω ß 😀 👩‍👩‍👧"),
        ("escaped characters", 'quote " backslash \\ \b \t \n \f \r'),
        ("other controls", "\u0000 \u0001 \u001f \u007f"),
        ("never escaped", "/ \u2028 \u2029 \ue000"),
        ("key order", {"b": 1, "a": 2, "A": 3, "é": 4, "😀": 5, "\ue000": 6, "aa": 7, "": 8}),
        ("nested", {"z": [1e-7, {"y": 10.0, "x": -0.0}], "a": {"c": None, "b": "é"}}),
    ]
    refused: list[tuple[str, Any]] = [
        ("2^53 (beyond I-JSON)", 2**53),
        ("-(2^63)", -(2**63)),
        ("2^64 - 1", 2**64 - 1),
    ]
    out = []
    for name, value in values:
        out.append(
            {
                "name": name,
                "value": value,
                "jcs": chain.canonical(value).decode("utf-8"),
                "legacy": chain.canonical_legacy(value).decode("utf-8"),
            }
        )
    for name, value in refused:
        try:
            chain.canonical(value)
        except ValueError:
            pass
        else:
            raise AssertionError(f"the jcs rule wrote {name}")
        out.append(
            {
                "name": name,
                "value": value,
                "jcs": None,
                "legacy": chain.canonical_legacy(value).decode("utf-8"),
            }
        )
    return {
        "description": "JSON values with their canonical forms under the jcs rule (RFC 8785) "
        "and the legacy rule. `value` is parsed as docs/audit.md says (no . e E: integer, "
        "else double). jcs null: the rule refuses the value (an integer beyond +-(2^53-1)); "
        "the engine never stores one under it.",
        "specification": SPEC,
        "values": out,
    }


# ------------------------------------------------------------------------- merkle
def _uuid(prefix: str, n: int) -> str:
    return str(UUID(prefix.ljust(20, "0") + f"{n:012x}"))


def _head(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# Order ids chosen so that: bucket 0x00 holds three (an odd level), bucket 0x0a two (its
# text starts with "0" like bucket 0x00's: the bucket is the first BYTE), 0xa0 and 0xff one
# each; every other bucket is empty.
MERKLE_HEADS: list[tuple[str, int, str]] = [
    (_uuid("00", 3), 4, _head("order 1 v4")),
    (_uuid("00ff", 1), 1, _head("order 2 v1")),
    (_uuid("0012", 2), 7, _head("order 3 v7")),
    (_uuid("0a", 1), 2, _head("order 4 v2")),
    (_uuid("0aff", 2), 12, _head("order 5 v12")),
    (_uuid("a0", 9), 3, _head("order 6 v3")),
    (_uuid("ff", 5), 1, _head("order 7 v1")),
]


def _tree(heads: list[tuple[str, int, str]]) -> HeadTree:
    tree = HeadTree()
    for order_id, version, head in heads:
        tree.set(order_id, version, head)
    return tree


def merkle_vectors() -> dict[str, Any]:
    heads = MERKLE_HEADS
    tree = _tree(heads)
    buckets: dict[int, list[tuple[str, int, str]]] = {}
    for head in sorted(heads):
        buckets.setdefault(UUID(head[0]).bytes[0], []).append(head)
    bucket_roots = {
        str(index): merkle([head_leaf(*h) for h in members]).hex()
        for index, members in sorted(buckets.items())
    }
    return {
        "description": "A Merkle tree over chain heads (order id, version, head hash): the "
        "leaves, the roots of the non-empty buckets (every other bucket's root is "
        "empty_root), and the root. Bucket = the first byte of the order id's 16-byte UUID. "
        "Also the root over no heads at all and two changes digests.",
        "specification": SPEC,
        "empty_root": EMPTY_ROOT,
        "heads": [
            {
                "order_id": o,
                "version": v,
                "head_hash": h,
                "bucket": UUID(o).bytes[0],
                "leaf": head_leaf(o, v, h).hex(),
            }
            for o, v, h in heads
        ],
        "bucket_roots": bucket_roots,
        "root": tree.root(),
        "root_of_no_heads": HeadTree().root(),
        "changes_digests": [
            {"changes": [list(h) for h in sorted(heads)], "digest": changes_digest(heads)},
            {"changes": [], "digest": changes_digest([])},
        ],
    }


# -------------------------------------------------------------------- checkpoints
def checkpoint_vectors() -> dict[str, Any]:
    key_a = Ed25519PrivateKey.from_private_bytes(SEED_A)
    key_b = Ed25519PrivateKey.from_private_bytes(SEED_B)
    start = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
    heads = {o: (v, h) for o, v, h in MERKLE_HEADS}
    tree = HeadTree()
    ids = sorted(heads)
    # (format, signing key, endorsing key, the heads changed since the previous checkpoint)
    plan: list[tuple[int, Ed25519PrivateKey | None, Ed25519PrivateKey | None, list[str]]] = [
        (1, None, None, ids[:4]),  # stored before format 2: HMAC only
        (2, None, None, ids[4:]),  # format 2, unsigned (before a signing key was set)
        (2, key_a, None, ids[:1]),  # the first signed checkpoint: key A
        (2, key_a, None, []),  # key A again (nothing changed: changes digest of [])
        (2, key_b, key_a, ids[5:6]),  # key B, endorsed by key A (a rotation)
    ]
    made = []
    prev = chain.GENESIS
    position = 0
    for seq, (format, signer, endorser, changed) in enumerate(plan, start=1):
        changes = []
        for order_id in changed:
            version, head = heads[order_id]
            if order_id in tree.heads:  # a newer event since
                version, head = version + 1, _head(f"{order_id} v{version + 1}")
                heads[order_id] = (version, head)
            tree.set(order_id, version, head)
            changes.append((order_id, version, head))
        position += 3 * len(changes) + 1
        public_key = public_hex(signer) if signer else None
        endorsement = (
            sign(endorser, cp.rotation_message(public_key, seq))
            if endorser and public_key
            else None
        )
        fields = cp.canonical_fields(
            seq,
            cp.checkpoint_time(start + timedelta(minutes=5 * seq, microseconds=seq)),
            position,
            len(tree),
            tree.root(),
            changes_digest(changes),
            prev,
            format=format,
            public_key=public_key,
            endorsement=endorsement,
        )
        text = chain.canonical(fields)
        vector: dict[str, Any] = {
            "fields": fields,
            "canonical": text.decode("utf-8"),
            "digest": cp.checkpoint_digest(fields),
            "hmac": cp.checkpoint_hmac(HMAC_KEY, fields),
        }
        if format >= 2:
            vector["signature"] = sign(signer, text) if signer else None
        if endorsement is not None:
            assert public_key is not None
            vector["rotation_message"] = cp.rotation_message(public_key, seq).decode("utf-8")
        vector["changes"] = [list(c) for c in sorted(changes)]
        made.append(vector)
        prev = vector["digest"]
    return {
        "description": "A chain of checkpoints over the heads of merkle.json (then some newer "
        "heads): format 1 (digest, HMAC), format 2 unsigned, signed by key A, again by key A, "
        "then by key B with key A's endorsement (a key rotation). `canonical` is what the "
        "digest hashes, the signature signs and the HMAC authenticates.",
        "specification": SPEC,
        "test_only_keys": {
            "note": "TEST ONLY: published so that anyone can recompute the vectors. Never "
            "sign or HMAC anything real with them.",
            "hmac_key": HMAC_KEY,
            "ed25519_seed_a_hex": SEED_A.hex(),
            "ed25519_public_key_a_hex": public_hex(key_a),
            "ed25519_seed_b_hex": SEED_B.hex(),
            "ed25519_public_key_b_hex": public_hex(key_b),
        },
        "checkpoints": made,
    }


# ------------------------------------------------------------------------ writing
def dump(value: Any) -> str:
    """The vector files' own layout: indented, UTF-8 as is (not canonical: parse them)."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _code(text: str) -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}\n{text}\n{fence}\n"


def _shown(text: str) -> str:
    """A canonical text for the page: control characters, U+007F, the line separators
    and private-use characters shown as <U+XXXX> (they are the raw characters in the
    files)."""
    return "".join(
        f"<U+{ord(c):04X}>"
        if ord(c) < 0x20 or c in "\u2028\u2029\u007f" or 0xE000 <= ord(c) <= 0xF8FF
        else c
        for c in text
    )


def markdown(files: dict[str, Any]) -> str:
    events, canon, tree, checkpoints = (
        files["events.json"],
        files["canonical.json"],
        files["merkle.json"],
        files["checkpoints.json"],
    )
    out = [
        "# Audit test vectors\n",
        "<!-- Generated by tests/vectors/make_audit_vectors.py from docs/audit-vectors/*.json:"
        " do not edit; run the script. -->\n",
        f"Values to check an independent audit verifier against, computed by the engine and "
        f"recomputed by tests/integration/test_audit_vectors.py. The rules are in "
        f"[docs/audit.md, Specification]({LINK}); the files in "
        f"[audit-vectors/](audit-vectors/) hold every value in full (JSON, UTF-8; parse "
        f"numbers as the specification says: no `.`/`e`/`E` is an integer, else a double).\n",
        "Every key here is **TEST ONLY**, published so that anyone can recompute the vectors.\n",
        "## Canonical forms ([canonical.json](audit-vectors/canonical.json))\n",
        "Control characters, U+007F, U+2028, U+2029 and U+E000 are shown as `<U+XXXX>`; in "
        "the files "
        "they are the characters themselves (escaped only where the rule escapes them).\n",
        "| value | jcs | legacy |",
        "|---|---|---|",
    ]
    for v in canon["values"]:
        jcs = "refused" if v["jcs"] is None else f"`{_shown(v['jcs'])}`"
        out.append(f"| {v['name']} | {jcs} | `{_shown(v['legacy'])}` |")
    out += [
        "",
        "## Events ([events.json](audit-vectors/events.json))\n",
        "hash = SHA-256 of the canonical form (under the event's rule) of `{originator_id, "
        "originator_version, state without hash, topic}`.\n",
        "| event | rule | order id | version | hash |",
        "|---|---|---|---|---|",
    ]
    for v in events["events"]:
        out.append(
            f"| {v['name']} | {v['rule']} | `{v['originator_id']}` | "
            f"{v['originator_version']} | `{v['hash']}` |"
        )
    out.append("")
    for v in events["events"]:
        if v["note"]:
            out.append(f"- **{v['name']}**: {v['note']}.")
    out.append("")
    shown = ["OrderDrafted", "OrderDrafted (legacy, awkward)", "NoteAdded (legacy, upcast)"]
    for v in events["events"]:
        if v["name"] in shown:
            out += [f"### {v['name']}: the canonical text hashed\n", _code(_shown(v["canonical"]))]
    out += [
        "## Merkle tree ([merkle.json](audit-vectors/merkle.json))\n",
        f"Empty root (no nodes): `{tree['empty_root']}`\n",
        "| order id | bucket | version | head hash | leaf |",
        "|---|---|---|---|---|",
    ]
    for h in tree["heads"]:
        out.append(
            f"| `{h['order_id']}` | {h['bucket']} | {h['version']} | `{h['head_hash'][:16]}…` "
            f"| `{h['leaf']}` |"
        )
    out += ["", "| bucket | bucket root |", "|---|---|"]
    out += [f"| {k} | `{r}` |" for k, r in tree["bucket_roots"].items()]
    out += [
        "",
        f"Every other bucket's root is the empty root. Root over the 256 bucket roots: "
        f"`{tree['root']}`; over no heads at all: `{tree['root_of_no_heads']}`.\n",
        f"changes_digest of all seven heads: `{tree['changes_digests'][0]['digest']}`; of no "
        f"change: `{tree['changes_digests'][1]['digest']}`.\n",
        "## Checkpoints ([checkpoints.json](audit-vectors/checkpoints.json))\n",
    ]
    keys = checkpoints["test_only_keys"]
    out += [
        "TEST ONLY keys:\n",
        f"- HMAC key (UTF-8): `{keys['hmac_key']}`",
        f"- Ed25519 key A: seed `{keys['ed25519_seed_a_hex']}`, public key "
        f"`{keys['ed25519_public_key_a_hex']}`",
        f"- Ed25519 key B: seed `{keys['ed25519_seed_b_hex']}`, public key "
        f"`{keys['ed25519_public_key_b_hex']}`\n",
    ]
    for c in checkpoints["checkpoints"]:
        fields = c["fields"]
        who = (
            "unsigned"
            if fields.get("public_key") is None
            else f"signed by `{fields['public_key'][:16]}…`"
        )
        out += [
            f"### Checkpoint {fields['seq']}: {fields['format']}, "
            f"{who if fields['format'].endswith('/2') else 'HMAC only'}"
            f"{', endorsed (key rotation)' if fields.get('endorsement') else ''}\n",
            "Canonical fields (what the digest, the signature and the HMAC cover):\n",
            _code(c["canonical"]),
            f"- digest: `{c['digest']}`",
            f"- hmac: `{c['hmac']}`",
        ]
        if "signature" in c:
            signature = c["signature"]
            out.append(f"- signature: {f'`{signature}`' if signature else 'null (unsigned)'}")
        if "rotation_message" in c:
            out.append(f"- endorsement signs: `{c['rotation_message']}`")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def make() -> dict[str, Any]:
    return {
        "events.json": event_vectors(),
        "canonical.json": canonical_vectors(),
        "merkle.json": merkle_vectors(),
        "checkpoints.json": checkpoint_vectors(),
    }


def write(out: Path, page: Path) -> list[Path]:
    """Write the vector files into `out` and the page to `page`; returns the paths."""
    files = make()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = out / name
        path.write_text(dump(content), encoding="utf-8", newline="\n")
        written.append(path)
    page.write_text(markdown(files), encoding="utf-8", newline="\n")
    return [*written, page]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        help="write audit-vectors/*.json and audit-vectors.md under this folder "
        "(default: the repository's docs/)",
    )
    args = parser.parse_args(argv)
    docs = args.out if args.out is not None else REPO / "docs"
    for path in write(docs / "audit-vectors", docs / "audit-vectors.md"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

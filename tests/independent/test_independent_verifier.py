"""The auditor's own verifier (verifier.py: written from docs/audit.md alone, standard
library and `cryptography` only) against the engine (issue 18, acceptance 1):

(a) the test vectors in docs/audit-vectors/ verify under it;
(b) an export of a real database — an older release's orders (rule "legacy", a format 1
    checkpoint), the audit scenario's orders through every event type with awkward values
    and sealed personal data (rule "jcs", HMAC checkpoints), then checkpoints signed with
    Ed25519, a key rotation and the projector's heads — verifies under it and under
    `serviceorders audit verify --file`;
(c) every tampering case, applied to the export file, fails under both, and both name the
    same orders (first bad version and kind) and the same checkpoints.

The engine is run only as the auditor runs it: `serviceorders audit verify --file` as a
process. The database is built once for the module (SQLite).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import verifier
from builders import fulfilment
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "audit-vectors"
PREVIOUS_RELEASE = ROOT / "tests" / "fixtures" / "upgrade" / "prev.db"
SERVICEORDERS = shutil.which("serviceorders")
HMAC_KEY = "independent-verifier-hmac-key"
LEGACY_ORDER = "5ada1071-78cf-5e9f-9e1c-8d82982d4e8c"  # prev.db's: 8 events, rule "legacy"
Lines = list[dict[str, Any]]


def test_the_verifier_imports_nothing_of_the_engine() -> None:
    """verifier.py loads, in a fresh interpreter, the standard library and `cryptography`
    only: no `serviceorders`, and none of the engine's libraries (orjson, pydantic)."""
    here = Path(verifier.__file__).parent
    code = (
        f"import sys; sys.path.insert(0, {str(here)!r}); import verifier; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert "verifier" in loaded and "cryptography" in loaded
    assert not loaded & {"serviceorders", "orjson", "pydantic", "eventsourcing"}, loaded


# =================================================================== (a) the test vectors
def vectors(name: str) -> dict[str, Any]:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"docs/audit-vectors/{name} is not written yet (issue 18, H6)")
    return json.loads(path.read_text(encoding="utf-8"))


def test_vectors_canonical_forms() -> None:
    values = vectors("canonical.json")["values"]
    assert values
    for v in values:
        for rule in ("jcs", "legacy"):
            if v[rule] is None:
                with pytest.raises(verifier.NotCanonical):
                    verifier.canonical(v["value"], rule)
            else:
                assert verifier.canonical(v["value"], rule) == v[rule].encode(), (v["name"], rule)


def test_vectors_events() -> None:
    events = vectors("events.json")["events"]
    assert {e["rule"] for e in events} == {"jcs", "legacy"}
    for e in events:
        state = e["state"]
        assert verifier.rule_of(state) == e["rule"], e["name"]
        hashed = {
            "originator_id": e["originator_id"],
            "originator_version": e["originator_version"],
            "state": {k: v for k, v in state.items() if k != "hash"},
            "topic": e["topic"],
        }
        assert verifier.canonical(hashed, e["rule"]).decode() == e["canonical"], e["name"]
        assert hashlib.sha256(e["canonical"].encode()).hexdigest() == e["hash"], e["name"]
        assert state["hash"] == e["hash"], e["name"]
        got = verifier.event_hash(e["topic"], e["originator_id"], e["originator_version"], state)
        assert got == e["hash"], e["name"]


def test_vectors_merkle_tree() -> None:
    m = vectors("merkle.json")
    assert verifier.EMPTY.hex() == m["empty_root"]
    assert verifier.merkle_root({}) == m["root_of_no_heads"]
    heads = {}
    for h in m["heads"]:
        assert verifier.bucket_of(h["order_id"]) == h["bucket"], h
        assert verifier.leaf(h["order_id"], h["version"], h["head_hash"]).hex() == h["leaf"]
        heads[h["order_id"]] = (h["version"], h["head_hash"])
    buckets: dict[int, list[str]] = {}
    for order_id in sorted(heads):
        buckets.setdefault(verifier.bucket_of(order_id), []).append(order_id)
    assert {str(b) for b in buckets} == set(m["bucket_roots"])
    for b, ids in buckets.items():
        root = verifier.merkle([verifier.leaf(o, *heads[o]) for o in ids])
        assert root.hex() == m["bucket_roots"][str(b)], b
    assert verifier.merkle_root(heads) == m["root"]
    for c in m["changes_digests"]:
        assert verifier.changes_digest(c["changes"]) == c["digest"]


def test_vectors_checkpoint_chain() -> None:
    v = vectors("checkpoints.json")
    keys = v["test_only_keys"]
    for name in ("a", "b"):  # the published public keys belong to the published seeds
        seed = bytes.fromhex(keys[f"ed25519_seed_{name}_hex"])
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
        assert verifier.public_key_hex(public) == keys[f"ed25519_public_key_{name}_hex"]
    previous, recorded = verifier.GENESIS, {}
    signed_keys: list[str] = []
    for cp in v["checkpoints"]:
        fields = cp["fields"]
        seq = fields["seq"]
        assert verifier.checkpoint_fields(fields) == fields, seq  # F1 / F2 exactly
        assert verifier.canonical(fields).decode() == cp["canonical"], seq
        assert verifier.checkpoint_digest(fields) == cp["digest"], seq
        assert verifier.checkpoint_hmac(fields, keys["hmac_key"]) == cp["hmac"], seq
        assert fields["prev_digest"] == previous, seq
        assert verifier.changes_digest(cp["changes"]) == fields["changes_digest"], seq
        for order_id, version, head_hash in cp["changes"]:
            recorded[order_id] = (version, head_hash)
        assert verifier.merkle_root(recorded) == fields["root"], seq
        assert len(recorded) == fields["order_count"], seq
        key = fields.get("public_key")
        if key is not None:
            message = cp["canonical"].encode()
            assert verifier.ed25519_verifies(key, cp["signature"], message), seq
            assert not verifier.ed25519_verifies(key, cp["signature"], message + b" "), seq
            if signed_keys and key != signed_keys[-1]:
                rotation = verifier.rotation_message(key, seq)
                assert rotation.decode() == cp["rotation_message"], seq
                assert verifier.ed25519_verifies(signed_keys[-1], fields["endorsement"], rotation)
            else:
                assert fields["endorsement"] is None, seq
            signed_keys.append(key)
        previous = cp["digest"]
    assert signed_keys[0] == keys["ed25519_public_key_a_hex"]
    assert signed_keys[-1] == keys["ed25519_public_key_b_hex"]


def test_the_worked_examples_in_docs_audit_md() -> None:
    """The Specification's own examples (an event, a Merkle tree of three heads, a changes
    digest, a format 1 checkpoint) recomputed by the independent verifier; each expected
    value is checked to be the one docs/audit.md prints."""
    doc = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")

    def printed(value: str) -> str:
        assert value in doc, f"{value} is no longer in docs/audit.md"
        return value

    state = {
        "timestamp": "2026-12-06T13:20:02.500000Z",
        "actor": {"id": "agent-7", "role": "agent"},
        "source": {
            "channel": "api",
            "topic": None,
            "partition": None,
            "offset": None,
            "event_id": None,
            "request_id": "r-1",
        },
        "correlation_id": "c-1",
        "causation_id": None,
        "prev_hash": verifier.GENESIS,
        "hash_rule": "jcs",
        "item_id": "1",
        "characteristics": {
            "ratio": 10.0,
            "tiny": 1e-7,
            "small": 2.775411931247677e-05,
            "😀": "smile\n",
        },
        "cleared": [],
        "changes": {},
    }
    order = "c3f1e2d4-0b5a-4c6e-9d7f-1a2b3c4d5e6f"
    got = verifier.event_hash("serviceorders.order:LineConfigured", order, 2, state)
    assert got == printed("a519ed4add2ad1b495e94cb0002b2561e3d0b4cbe08a891d48b24b221e1b697f")
    heads = {
        "0f3a6c2e-8d41-4b7a-9c55-2e1f0a9b7d31": (3, "a" * 64),
        "0f9e1b70-2c3d-4e5f-8a6b-7c8d9e0f1a2b": (1, "b" * 64),
        order: (2, "c" * 64),
    }
    assert verifier.bucket_of(order) == 0xC3
    first_two = [verifier.leaf(o, *heads[o]) for o in sorted(heads)[:2]]
    bucket_15 = "686b673231b7bc539c314b47e88c85cce7f8f45ecd44e8a10251f458688863a8"
    assert verifier.merkle(first_two).hex() == printed(bucket_15)
    root = "05ed1f3b7fc8fa81f0c7844adb3c72d3c929505e7196a23b6fee332c6da2763a"
    assert verifier.merkle_root(heads) == printed(root)
    changes = "82a0eadd0f8ea6c8cfb3f07697c2dba21d58371e2b68fee695dd0813b8829eb3"
    assert verifier.changes_digest([[o, *h] for o, h in heads.items()]) == printed(changes)
    no_change = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
    assert verifier.changes_digest([]) == printed(no_change)
    assert verifier.EMPTY.hex() == printed(
        "dbc1b4c900ffe48d575b5da5c638040125f65db0fe3e24494b76ea986457d986"
    )
    fields = {
        "changes_digest": changes,
        "created_at": "2026-12-06T13:30:00.000000+00:00",
        "format": "serviceorders-audit/1",
        "order_count": 3,
        "position": 42,
        "prev_digest": verifier.GENESIS,
        "root": root,
        "seq": 1,
    }
    assert printed(verifier.canonical(fields).decode())
    digest = "1445ded7715ee259ae3c95e821be45a411a707a42014883b06ec804dfd7f4693"
    assert verifier.checkpoint_digest(fields) == printed(digest)
    hmac = "a694be40bcd799e1d6ac2f56a2de1a06a0c0424cb1bf7dcd62963565ca9f854a"
    assert verifier.checkpoint_hmac(fields, "test-key") == printed(hmac)


# ================================================================ (b) a real export
def pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def hex_of(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def run_cli(
    *args: str, url: str | None = None, **env: str | None
) -> subprocess.CompletedProcess[str]:
    assert SERVICEORDERS, "the serviceorders console script is not installed"
    child = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SERVICEORDERS_") and k != "DATABASE_URL"
    }
    if url is not None:
        child["DATABASE_URL"] = url
    child.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [SERVICEORDERS, *args], env=child, capture_output=True, text=True, timeout=120
    )


@dataclass
class Export:
    path: Path
    lines: Lines
    orders: dict[str, str]  # name -> order id
    keys: list[str]  # the signing keys (hex) in the order they signed: a, b, c
    uncovered: tuple[str, int]  # an event no checkpoint and no projector head covers
    tmp: Path
    url: str  # the database (for partial exports)
    anchor: Path  # `audit anchor --all` right after checkpoint 7
    stolen: Ed25519PrivateKey  # key c, which signed checkpoint 7

    def write(self, lines: Lines, name: str) -> Path:
        path = self.tmp / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        return path

    def copy(self) -> Lines:
        return copy.deepcopy(self.lines)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """Checkpoint 1: the old release's (format 1, no HMAC); 2, 3: the scenario's, signed by
    its key a; 4: by its key b, endorsed by a; 5: by b; 6: by a fresh key c, endorsed by b
    (`audit rotate-key`); 7: by c. Every format 2 checkpoint HMAC'd."""
    from audit_scenario import build_scenario, signing_key
    from serviceorders.bootstrap import build_application
    from serviceorders.domain import commands as cmd
    from serviceorders.settings import Settings

    tmp = tmp_path_factory.mktemp("independent")
    db = tmp / "audit.db"
    shutil.copyfile(PREVIOUS_RELEASE, db)  # legacy events and a format 1 checkpoint
    url = f"sqlite:///{db}"
    assert run_cli("db", "init", url=url).returncode == 0
    scenario = build_scenario(db, hmac_key=HMAC_KEY)  # checkpoints 2..4
    # the seqs and keys below assume the scenario's three signed checkpoints (a, a, b)
    assert [cp.seq for cp in scenario.checkpoints] == [2, 3, 4], scenario.checkpoints
    assert scenario.public_keys == [hex_of(signing_key("a")), hex_of(signing_key("b"))]
    orders = {name: str(order_id) for name, order_id in scenario.orders.items()}
    orders["legacy"] = LEGACY_ORDER

    b, c = signing_key("b"), Ed25519PrivateKey.generate()
    (tmp / "b.pem").write_bytes(pem(b))
    (tmp / "c.pem").write_bytes(pem(c))
    app = build_application(Settings.from_env({"DATABASE_URL": url}))

    def note(name: str, text: str) -> None:
        app.handle(fulfilment(), cmd.AddNote(UUID(orders[name]), text))

    def audit(*args: str, key: str) -> None:
        done = run_cli(
            "audit",
            *args,
            url=url,
            SERVICEORDERS_AUDIT_HMAC_KEY=HMAC_KEY,
            SERVICEORDERS_AUDIT_SIGNING_KEY=str(tmp / key),
        )
        assert done.returncode == 0, done.stderr

    try:
        note("drafted", "signed by b ✓ 😀")
        note("legacy", "a jcs event after legacy ones")
        audit("checkpoint", key="b.pem")  # 5
        note("drafted", "rotation")
        audit("rotate-key", "--new", str(tmp / "c.pem"), key="b.pem")  # 6
        note("drafted", "signed by c")
        note("completed", "\u2028 line separator \x1f \x85")
        audit("checkpoint", key="c.pem")  # 7
        audit("anchor", "--all", "-o", str(tmp / "anchor.json"), key="c.pem")
        note("drafted", "read by the projector only")
        assert run_cli("projections", "rebuild", url=url).returncode == 0
        note("completed", "after everything: covered by nothing")
    finally:
        app.close()
    path = tmp / "export.jsonl"
    done = run_cli("audit", "export", "-o", str(path), url=url)
    assert done.returncode == 0, done.stderr
    lines = _lines_of(path.read_text(encoding="utf-8"))
    newest = max(
        (ln for ln in lines if ln["type"] == "event" and ln["order_id"] == orders["completed"]),
        key=lambda ln: ln["version"],
    )
    keys = [hex_of(signing_key("a")), hex_of(b), hex_of(c)]
    uncovered = (newest["order_id"], newest["version"])
    return Export(path, lines, orders, keys, uncovered, tmp, url, tmp / "anchor.json", c)


def _lines_of(text: str) -> Lines:
    # "\n" only: U+2028, U+2029 and U+0085 appear unescaped inside strings
    return [json.loads(line) for line in text.split("\n") if line.strip()]


@dataclass
class Verdicts:
    mine: verifier.Result
    engine: dict[str, Any]

    def engine_orders(self) -> dict[str, tuple[int, str]]:
        return {p["order_id"]: (p["version"], p["kind"]) for p in self.engine["broken_orders"]}

    def engine_checkpoints(self) -> set[int]:
        return {p["seq"] for p in self.engine["checkpoint_problems"]}

    def kinds(self) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
        """(seq, kind) of every checkpoint problem: (the independent verifier's, the engine's)."""
        mine = {(p.seq, p.kind) for p in self.mine.problems if p.order is None and p.seq}
        engine = {(p["seq"], p["kind"]) for p in self.engine["checkpoint_problems"]}
        return mine, engine

    def agree(self, orders: dict[str, tuple[int, str]], checkpoints: set[int]) -> None:
        """Both verifiers name exactly these orders (first bad version, kind) and these
        checkpoints, with the same problem kinds on each (docs/audit.md's tables)."""
        mine = (self.mine.broken_orders(), set(self.mine.checkpoint_problems()))
        engine = (self.engine_orders(), self.engine_checkpoints())
        detail = f"\nmine: {[str(p) for p in self.mine.problems]}\nengine: {self.engine}"
        assert mine == (orders, checkpoints), "independent verifier" + detail
        assert engine == (orders, checkpoints), "serviceorders audit verify --file" + detail
        assert self.engine["ok"] is self.mine.ok is (not orders and not checkpoints), detail
        mine_kinds, engine_kinds = self.kinds()
        assert mine_kinds == engine_kinds, "checkpoint problem kinds" + detail


def verdicts(
    path: Path,
    *,
    hmac_key: str | None = HMAC_KEY,
    pins: tuple[str, ...] = (),
    anchors: tuple[Path, ...] = (),
    unsigned_up_to: int = 1,
) -> Verdicts:
    """Both verifiers on the file: with the HMAC key (the old release's checkpoint 1 has
    none: --unsigned-up-to 1), the pinned public keys and the anchors."""
    mine = verifier.audit_export(
        path,
        public_keys=pins,
        hmac_key=hmac_key,
        unsigned_up_to=unsigned_up_to,
        anchors=anchors,
    )
    args = ["audit", "verify", "--file", str(path), "--json"]
    args += ["--unsigned-up-to", str(unsigned_up_to)]
    for pin in pins:
        args += ["--public-key", pin]
    for anchor in anchors:
        args += ["--anchor", str(anchor)]
    done = run_cli(*args, SERVICEORDERS_AUDIT_HMAC_KEY=hmac_key)
    assert done.returncode in (0, 1), done.stderr
    engine = json.loads(done.stdout)
    assert (done.returncode == 0) is engine["ok"]
    return Verdicts(mine, engine)


def test_the_export_holds_what_the_acceptance_asks(export: Export) -> None:
    events = [ln for ln in export.lines if ln["type"] == "event"]
    checkpoints = [ln for ln in export.lines if ln["type"] == "checkpoint"]
    rules = {verifier.rule_of(ln["state"]) for ln in events}
    assert rules == {"jcs", "legacy"}
    assert len({ln["topic"] for ln in events}) >= 28  # every event type of the scenario
    assert [c["format"] for c in checkpoints] == ["serviceorders-audit/1"] + [
        "serviceorders-audit/2"
    ] * 6
    a, b, c = export.keys
    assert [cp.get("public_key") for cp in checkpoints] == [None, a, a, b, b, c, c]
    endorsed = [cp["seq"] for cp in checkpoints if cp.get("endorsement")]
    assert endorsed == [4, 6]  # the two rotations
    assert any(ln["type"] == "seen_head" for ln in export.lines)
    header = export.lines[0]
    assert header["complete"] is True
    assert header["public_keys"] == [
        {"public_key": a, "first_seq": 2},
        {"public_key": b, "first_seq": 4},
        {"public_key": c, "first_seq": 6},
    ]
    legacy = [ln for ln in events if ln["order_id"] == export.orders["legacy"]]
    assert {verifier.rule_of(ln["state"]) for ln in legacy} == {
        "jcs",
        "legacy",
    }  # one chain, both rules


@pytest.mark.parametrize("pins", [(), (0,), (0, 1, 2)], ids=["unpinned", "pin a", "pin a b c"])
def test_the_export_verifies_under_both(export: Export, pins: tuple[int, ...]) -> None:
    keys = tuple(export.keys[i] for i in pins)
    both = verdicts(export.path, pins=keys)
    both.agree({}, set())
    assert ("keys not pinned" in " ".join(both.mine.notes)) is (not pins)
    assert any("not pinned" in n for n in both.engine["notes"]) is (not pins)
    # the event after the last checkpoint, read by no projector: both say so
    assert any("no checkpoint" in n for n in both.mine.notes)
    assert any("covered by no checkpoint" in n for n in both.engine["notes"])


def test_without_the_hmac_key_both_still_verify(export: Export) -> None:
    verdicts(export.path, hmac_key=None).agree({}, set())


def test_a_wrong_hmac_key_fails_every_hmac_checkpoint_under_both(export: Export) -> None:
    both = verdicts(export.path, hmac_key="not the key")
    both.agree({}, {2, 3, 4, 5, 6, 7})


def test_the_hmac_key_asks_for_a_signature_or_an_hmac(export: Export) -> None:
    """With an HMAC key: the old release's checkpoint 1 carries neither (unsigned, unless
    --unsigned-up-to 1); a signed checkpoint without its HMAC is accepted (its signature is
    the stronger evidence)."""
    verdicts(export.path, unsigned_up_to=0).agree({}, {1})
    lines = export.copy()
    checkpoint(lines, 7)["hmac"] = None  # not in the digest: the signature still holds
    verdicts(export.write(lines, "no-hmac")).agree({}, set())


# ============================================================ (c) tampering with the file
def events_of(lines: Lines, order_id: str) -> list[dict[str, Any]]:
    return sorted(
        (ln for ln in lines if ln["type"] == "event" and ln["order_id"] == order_id),
        key=lambda ln: ln["version"],
    )


def event(lines: Lines, order_id: str, version: int) -> dict[str, Any]:
    return next(ln for ln in events_of(lines, order_id) if ln["version"] == version)


def drop(lines: Lines, keep: Callable[[dict[str, Any]], bool]) -> Lines:
    return [ln for ln in lines if keep(ln)]


def checkpoint(lines: Lines, seq: int) -> dict[str, Any]:
    return next(ln for ln in lines if ln["type"] == "checkpoint" and ln["seq"] == seq)


def rehash(line: dict[str, Any]) -> None:
    """The checkpoint's digest recomputed over its (edited) fields, as a forger would."""
    line["digest"] = verifier.checkpoint_digest(verifier.checkpoint_fields(line))


def relink(lines: Lines, start: int) -> None:
    """Every checkpoint from `start` on: prev_digest and digest recomputed."""
    for line in lines:
        if line["type"] == "checkpoint" and line["seq"] >= start:
            line["prev_digest"] = checkpoint(lines, line["seq"] - 1)["digest"]
            rehash(line)


def resign(line: dict[str, Any], key: Ed25519PrivateKey) -> None:
    """public_key replaced by `key`'s, the digest recomputed and the fields signed by it
    (the HMAC is left: the forger does not hold that key)."""
    line["public_key"] = hex_of(key)
    line["endorsement"] = None
    rehash(line)
    line["signature"] = key.sign(verifier.canonical(verifier.checkpoint_fields(line))).hex()


def test_edited_value(export: Export) -> None:
    lines = export.copy()
    awkward = export.orders["awkward"]
    state = event(lines, awkward, 1)["state"]
    characteristics = state["items"][0]["characteristics"]
    name = next(k for k, v in characteristics.items() if isinstance(v, float))
    characteristics[name] = characteristics[name] * 2 or 1.5
    legacy = export.orders["legacy"]
    event(lines, legacy, 3)["state"]["actor"]["id"] = "somebody else"
    both = verdicts(export.write(lines, "edited"))
    both.agree({awkward: (1, "altered"), legacy: (3, "altered")}, set())


def test_an_integral_double_rewritten_as_an_integer_is_no_change(export: Export) -> None:
    """The export is not canonical: 10.0 written `10` reads as another JSON value, but
    under "jcs" both serialise alike — so re-writing a jcs state's numbers changes no hash,
    while a legacy state's `10.0` -> `10` does (legacy writes `10.0`)."""
    lines = export.copy()
    changed = []
    for ln in lines:
        if ln["type"] != "event":
            continue
        for item in ln["state"].get("items") or []:
            for k, v in (item.get("characteristics") or {}).items():
                if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                    item["characteristics"][k] = int(v)
                    changed.append((ln["order_id"], ln["version"], verifier.rule_of(ln["state"])))
    assert any(rule == "jcs" for *_, rule in changed)
    both = verdicts(export.write(lines, "integral"))
    broken = {(o, v) for o, v, rule in changed if rule == "legacy"}
    first: dict[str, tuple[int, str]] = {}
    for o, v in sorted(broken):
        first.setdefault(o, (v, "altered"))
    both.agree(first, set())


def test_deleted_middle_event(export: Export) -> None:
    awkward, legacy = export.orders["awkward"], export.orders["legacy"]
    lines = drop(
        export.copy(),
        lambda ln: (
            not (
                ln["type"] == "event"
                and (ln["order_id"], ln["version"]) in {(awkward, 7), (legacy, 4)}
            )
        ),
    )
    verdicts(export.write(lines, "middle")).agree(
        {awkward: (7, "deleted"), legacy: (4, "deleted")}, set()
    )


def test_deleted_newest_events(export: Export) -> None:
    """The awkward order's newest two (recorded by checkpoint 4), the drafted order's newest
    (after every checkpoint, read by the projector)."""
    awkward, drafted = export.orders["awkward"], export.orders["drafted"]
    newest = {o: events_of(export.lines, o)[-1]["version"] for o in (awkward, drafted)}
    gone = {(awkward, newest[awkward]), (awkward, newest[awkward] - 1), (drafted, newest[drafted])}
    lines = drop(
        export.copy(),
        lambda ln: not (ln["type"] == "event" and (ln["order_id"], ln["version"]) in gone),
    )
    verdicts(export.write(lines, "newest")).agree(
        {
            awkward: (newest[awkward] - 1, "head_moved_back"),
            drafted: (newest[drafted], "head_moved_back"),
        },
        set(),
    )


def test_deleting_an_event_nothing_covers_goes_unnoticed_by_both(export: Export) -> None:
    """The documented limit: an event after the latest checkpoint that no projector read."""
    order_id, version = export.uncovered
    lines = drop(
        export.copy(),
        lambda ln: (
            not (ln["type"] == "event" and (ln["order_id"], ln["version"]) == (order_id, version))
        ),
    )
    verdicts(export.write(lines, "uncovered")).agree({}, set())


def test_deleted_order(export: Export) -> None:
    """Every event of two orders gone: one recorded by checkpoints and the projector, the
    legacy one by the old release's checkpoint 1 too."""
    gone = {export.orders["failed"], export.orders["legacy"]}
    lines = drop(export.copy(), lambda ln: not (ln["type"] == "event" and ln["order_id"] in gone))
    verdicts(export.write(lines, "order")).agree({o: (1, "missing") for o in gone}, set())


def test_deleted_order_and_its_projector_head(export: Export) -> None:
    """The checkpoints still record it (a complete export)."""
    gone = export.orders["resubmitted"]
    lines = drop(export.copy(), lambda ln: ln.get("order_id") != gone)
    verdicts(export.write(lines, "order-and-head")).agree({gone: (1, "missing")}, set())


def test_inserted_copy_of_an_event(export: Export) -> None:
    """A copy of the awkward order's v2 added as its next version (after every checkpoint):
    its hash was computed for v2, so the chain breaks there."""
    lines = export.copy()
    awkward = export.orders["awkward"]
    chain = events_of(lines, awkward)
    forged = copy.deepcopy(chain[1])
    forged["version"] = chain[-1]["version"] + 1
    forged["position"] = lines[0]["position"] + 1
    lines.insert(lines.index(chain[-1]) + 1, forged)
    verdicts(export.write(lines, "inserted")).agree(
        {awkward: (forged["version"], "inserted")}, set()
    )


def test_one_event_re_hashed_alone(export: Export) -> None:
    """v3 edited and its own hash recomputed, v4 left linking to the old hash: the break
    shows at v4's prev_hash, and the event named is v3 (the one re-hashed)."""
    lines = export.copy()
    awkward = export.orders["awkward"]
    three = event(lines, awkward, 3)
    three["state"]["note"] = "re-hashed alone"
    three["state"]["hash"] = verifier.event_hash(three["topic"], awkward, 3, three["state"])
    verdicts(export.write(lines, "rehash-one")).agree({awkward: (3, "altered")}, set())


def test_a_copy_beyond_a_gap_is_inserted_not_deleted(export: Export) -> None:
    """A copy of v2 stored two versions past the newest (a gap before it): the spec's
    step 2.1 names the copy (inserted at its version), not the gap."""
    lines = export.copy()
    drafted = export.orders["drafted"]
    chain = events_of(lines, drafted)
    forged = copy.deepcopy(chain[1])
    forged["version"] = chain[-1]["version"] + 2
    forged["position"] = lines[0]["position"] + 1
    lines.insert(lines.index(chain[-1]) + 1, forged)
    verdicts(export.write(lines, "copy-gap")).agree(
        {drafted: (forged["version"], "inserted")}, set()
    )


def test_reordered_events(export: Export) -> None:
    """Two events' states swapped (each line keeps its version, topic and position)."""
    lines = export.copy()
    awkward = export.orders["awkward"]
    four, five = event(lines, awkward, 4), event(lines, awkward, 5)
    four["state"], five["state"] = five["state"], four["state"]
    verdicts(export.write(lines, "reordered")).agree({awkward: (4, "reordered")}, set())


def test_rehashed_chain(export: Export) -> None:
    """v3 of the awkward order edited, it and every later event re-hashed with the spec's
    serialiser: a consistent chain, which only the checkpoints (and the projector's head)
    contradict. Checkpoint 2 recorded v2, which still matches: v3 is the first bad one."""
    lines = export.copy()
    awkward = export.orders["awkward"]
    chain = events_of(lines, awkward)
    previous = chain[1]["state"]["hash"]
    for line in chain[2:]:
        state = line["state"]
        if line["version"] == 3:
            state["note"] = "approved by nobody"
        state["prev_hash"] = previous
        state["hash"] = verifier.event_hash(line["topic"], awkward, line["version"], state)
        previous = state["hash"]
    mine = verifier.audit_export(
        export.write(lines, "chain-only"), hmac_key=HMAC_KEY, unsigned_up_to=1
    )
    assert all(p.kind != "altered" for p in mine.problems)  # the chain itself verifies
    verdicts(export.write(lines, "rehashed")).agree({awkward: (3, "rewritten")}, set())


def test_forged_checkpoint_field(export: Export) -> None:
    """The latest checkpoint's created_at changed and its digest recomputed; the old
    signature (and HMAC) kept."""
    lines = export.copy()
    last = checkpoint(lines, 7)
    last["created_at"] = "2020-01-01T00:00:00.000000+00:00"
    rehash(last)
    verdicts(export.write(lines, "forged-last")).agree({}, {7})
    verdicts(export.write(lines, "forged-last-nokey"), hmac_key=None).agree({}, {7})


def test_forged_middle_checkpoint(export: Export) -> None:
    """Checkpoint 5's order_count raised and its digest recomputed: its signature fails and
    checkpoint 6 no longer links to it."""
    lines = export.copy()
    cp = checkpoint(lines, 5)
    cp["order_count"] += 1
    rehash(cp)
    verdicts(export.write(lines, "forged-middle"), hmac_key=None).agree({}, {5, 6})


def test_latest_checkpoint_signed_by_another_key(export: Export) -> None:
    """Checkpoint 7 re-signed by a fresh key (public_key replaced): not the previous signed
    checkpoint's key (c), no endorsement: kind "key", pinned or not."""
    lines = export.copy()
    resign(checkpoint(lines, 7), Ed25519PrivateKey.generate())
    path = export.write(lines, "other-key")
    for pins in ((), (export.keys[0],)):
        both = verdicts(path, hmac_key=None, pins=pins)
        both.agree({}, {7})
        assert {p.kind for p in both.mine.problems} == {"key"}
        assert {p["kind"] for p in both.engine["checkpoint_problems"]} == {"key"}
    # with the HMAC key, the HMAC the forger could not recompute fails too: same checkpoint
    verdicts(path).agree({}, {7})


def test_first_signed_checkpoint_signed_by_another_key(export: Export) -> None:
    """Checkpoint 2 (the first signed one) re-signed by a fresh key x. Unpinned, x is the
    first key in the chain and trusted: checkpoint 3 fails (key a, endorsed by nobody; and
    its prev_digest), and so does every later key change (4: b, 6: c), endorsed by keys no
    longer trusted. With a pinned, checkpoint 2 fails (x neither pinned nor endorsed) and
    3 no longer links to it; a, b and c stay trusted."""
    lines = export.copy()
    resign(checkpoint(lines, 2), Ed25519PrivateKey.generate())
    path = export.write(lines, "first-other-key")
    verdicts(path, hmac_key=None).agree({}, {3, 4, 6})
    verdicts(path, hmac_key=None, pins=(export.keys[0],)).agree({}, {2, 3})


def test_an_endorsement_on_the_first_signed_checkpoint(export: Export) -> None:
    """Checkpoint 2, the first signed one, given an endorsement (by the holder of every key:
    the chain re-signed and re-linked to the end). There is no previous signed key it could
    verify under: kind "key" at 2, and nothing else."""
    from audit_scenario import signing_key

    signers = {2: "a", 3: "a", 4: "b", 5: "b"}
    lines = export.copy()
    checkpoint(lines, 2)["endorsement"] = "ab" * 64
    for seq in range(2, 8):
        cp = checkpoint(lines, seq)
        cp["prev_digest"] = checkpoint(lines, seq - 1)["digest"]
        rehash(cp)
        key = signing_key(signers[seq]) if seq in signers else export.stolen
        cp["signature"] = key.sign(verifier.canonical(verifier.checkpoint_fields(cp))).hex()
    both = verdicts(export.write(lines, "endorsed-first"), hmac_key=None)
    both.agree({}, {2})
    assert both.kinds()[0] == {(2, "key")}


def test_every_signed_checkpoint_re_signed_needs_a_pinned_key(export: Export) -> None:
    """Checkpoints 2..7 all re-signed by one fresh key, the digest chain recomputed: the
    file is self-consistent, so unpinned both verifiers accept it (noting the keys are not
    pinned) — what pinning the operator's published key is for: pinned, the first checkpoint
    signed by the other key fails. The HMACs (with their key) fail on every one."""
    lines = export.copy()
    other = Ed25519PrivateKey.generate()
    for seq in range(2, 8):
        cp = checkpoint(lines, seq)
        cp["prev_digest"] = checkpoint(lines, seq - 1)["digest"]
        resign(cp, other)
    path = export.write(lines, "all-other-key")
    unpinned = verdicts(path, hmac_key=None)
    unpinned.agree({}, set())
    assert any("not pinned" in n for n in unpinned.engine["notes"])
    assert any("not pinned" in n for n in unpinned.mine.notes)
    verdicts(path, hmac_key=None, pins=(export.keys[0],)).agree({}, {2})
    verdicts(path, hmac_key=HMAC_KEY).agree({}, {2, 3, 4, 5, 6, 7})  # HMACs cannot be redone


def test_every_checkpoint_recomputed_unsigned_fails_against_a_pinned_key(export: Export) -> None:
    """A forger without any signing key recomputes checkpoints 2..7 unsigned (public_key,
    endorsement and signature null, the digest chain relinked): unpinned and without the
    HMAC key that is only a note; with the operator's key pinned every one is `unsigned`."""
    lines = export.copy()
    for seq in range(2, 8):
        cp = checkpoint(lines, seq)
        cp["public_key"] = cp["endorsement"] = cp["signature"] = None
        cp["prev_digest"] = checkpoint(lines, seq - 1)["digest"]
        rehash(cp)
    path = export.write(lines, "all-unsigned")
    verdicts(path, hmac_key=None).agree({}, set())
    pinned = verdicts(path, hmac_key=None, pins=(export.keys[0],))
    pinned.agree({}, {2, 3, 4, 5, 6, 7})
    assert pinned.kinds()[0] == {(seq, "unsigned") for seq in range(2, 8)}


def test_event_lines_out_of_order_change_nothing(export: Export) -> None:
    """Two event lines of one order swapped in the file, their content intact: the verifier
    sorts each order's events by version (the spec's step 2), so nothing is wrong."""
    lines = export.copy()
    at = next(
        i
        for i, ln in enumerate(lines)
        if ln["type"] == "event" and ln["order_id"] == export.orders["awkward"]
    )
    lines[at + 3], lines[at + 4] = lines[at + 4], lines[at + 3]
    both = verdicts(export.write(lines, "lines-swapped"))
    both.agree({}, set())


# ========================================================= partial exports (--order, --since)
def partial(export: Export, name: str, *args: str) -> Lines:
    path = export.tmp / f"{name}.jsonl"
    done = run_cli("audit", "export", *args, "-o", str(path), url=export.url)
    assert done.returncode == 0, done.stderr
    return _lines_of(path.read_text(encoding="utf-8"))


def test_an_order_export_verifies_and_its_deleted_newest_event_is_found(export: Export) -> None:
    awkward = export.orders["awkward"]
    lines = partial(export, "order", "--order", awkward)
    assert lines[0]["order"] == awkward and lines[0]["complete"] is False
    assert {ln["order_id"] for ln in lines if ln["type"] == "event"} == {awkward}
    verdicts(export.write(lines, "order-clean")).agree({}, set())
    newest = events_of(lines, awkward)[-1]["version"]
    cut = drop(lines, lambda ln: not (ln["type"] == "event" and ln["version"] == newest))
    verdicts(export.write(cut, "order-cut")).agree({awkward: (newest, "head_moved_back")}, set())


def test_a_since_export_verifies_and_an_edit_in_it_is_found(export: Export) -> None:
    """--since T: chains from their first exported event; heads the checkpoints recorded
    before it cannot be checked (and are not reported)."""
    drafted = export.orders["drafted"]
    since = events_of(export.lines, drafted)[-4]["state"]["timestamp"]
    lines = partial(export, "since", "--since", since)
    assert lines[0]["since"] and lines[0]["complete"] is False
    exported = [ln for ln in lines if ln["type"] == "event"]
    assert 0 < len(exported) < len([ln for ln in export.lines if ln["type"] == "event"])
    verdicts(export.write(lines, "since-clean")).agree({}, set())
    first = events_of(lines, drafted)[0]
    first["state"]["note"] = "edited"
    verdicts(export.write(lines, "since-edited")).agree(
        {drafted: (first["version"], "altered")}, set()
    )


# ============================================================================ anchors
def test_the_export_verifies_against_the_anchor(export: Export) -> None:
    verdicts(export.path, anchors=(export.anchor,)).agree({}, set())


def test_the_newest_checkpoint_deleted_is_found_only_against_the_anchor(export: Export) -> None:
    lines = drop(export.copy(), lambda ln: not (ln["type"] == "checkpoint" and ln["seq"] == 7))
    path = export.write(lines, "checkpoint-deleted")
    verdicts(path).agree({}, set())  # the documented limit: nothing inside the file shows it
    verdicts(path, anchors=(export.anchor,)).agree({}, {7})


def test_a_checkpoint_re_signed_with_the_stolen_key_is_found_only_against_the_anchor(
    export: Export,
) -> None:
    """Checkpoint 7 edited and re-signed with key c itself (stolen): its signature and key
    hold; without the HMAC key and the anchor nothing shows it."""
    lines = export.copy()
    last = checkpoint(lines, 7)
    last["created_at"] = "2020-01-01T00:00:00.000000+00:00"
    resign(last, export.stolen)
    path = export.write(lines, "stolen-key")
    verdicts(path, hmac_key=None).agree({}, set())
    verdicts(path, hmac_key=None, anchors=(export.anchor,)).agree({}, {7})
    verdicts(path).agree({}, {7})  # the HMAC the thief could not recompute


# ============================================================================ damaged files
def test_a_damaged_export_is_reported_never_a_traceback(export: Export) -> None:
    """300 exports with one to three lines damaged (a character inserted, a member removed
    or replaced by a value of another JSON type): the independent verifier reports, and a
    damaged line (unparsable, a member of the wrong type) is a problem — never an exception."""
    rng = random.Random(18)
    text = export.path.read_text(encoding="utf-8").split("\n")
    values: list[Any] = [None, True, 0, -1, 1.5, "x", [], {}, "0" * 64, 2**70, ["a", 1, "b"]]

    def damage(value: Any) -> Any:
        if isinstance(value, dict) and value and rng.random() < 0.8:
            key = rng.choice(list(value))
            if rng.random() < 0.2:
                del value[key]
            else:
                value[key] = damage(value[key])
            return value
        if isinstance(value, list) and value and rng.random() < 0.8:
            at = rng.randrange(len(value))
            value[at] = damage(value[at])
            return value
        return rng.choice(values)

    reported = 0
    for _ in range(300):
        lines = list(text)
        for _damage in range(rng.randint(1, 3)):
            at = rng.randrange(len(lines) - 1)
            if rng.random() < 0.2:
                cut = rng.randrange(len(lines[at]) + 1)
                lines[at] = lines[at][:cut] + rng.choice('"}\\x,\u2028') + lines[at][cut:]
            else:
                try:
                    lines[at] = json.dumps(damage(json.loads(lines[at])), ensure_ascii=False)
                except ValueError:  # already damaged by a character
                    lines[at] = ""
        path = export.tmp / "damaged.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        result = verifier.audit_export(path, hmac_key=HMAC_KEY, unsigned_up_to=1)
        reported += not result.ok
    # most damage is found; some lands where nothing is evidence (a seen head's position)
    assert reported > 250, reported

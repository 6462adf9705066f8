"""The audit test vectors (docs/audit-vectors/, docs/audit-vectors.md) against the engine.

Every vector is recomputed with the engine's own code: event hashes with
domain.chain.event_hash, canonical forms with domain.chain, Merkle trees with
audit/merkle.py, checkpoint digests, HMACs and signatures with audit/checkpoints.py and
support/signing.py. And the files are what tests/vectors/make_audit_vectors.py makes now
(regenerated into a temporary folder, compared byte for byte): a change to how the engine
hashes fails here until the vectors are regenerated on purpose (and docs/audit.md says why).
The scenario database the audit tests share (tests/support/audit_scenario.py) verifies clean.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from audit_scenario import EVENT_TYPES, build_scenario
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from serviceorders.audit import checkpoints as cp
from serviceorders.audit.merkle import EMPTY_ROOT, HeadTree, changes_digest, head_leaf, merkle
from serviceorders.audit.verify import verify
from serviceorders.bootstrap import open_read_db
from serviceorders.domain import chain
from serviceorders.domain.events import ALL_EVENTS
from serviceorders.settings import Settings
from serviceorders.support import signing

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "docs" / "audit-vectors"
PAGE = REPO / "docs" / "audit-vectors.md"
MAKER = REPO / "tests" / "vectors" / "make_audit_vectors.py"
FILES = ("events.json", "canonical.json", "merkle.json", "checkpoints.json")


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def hashed_object(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "originator_id": v["originator_id"],
        "originator_version": v["originator_version"],
        "state": {k: x for k, x in v["state"].items() if k != "hash"},
        "topic": v["topic"],
    }


# ------------------------------------------------------------------------ files
def test_the_vector_files_are_what_the_maker_makes_now(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(MAKER), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    stale = [
        name
        for name in FILES
        if (tmp_path / "audit-vectors" / name).read_bytes() != (VECTORS / name).read_bytes()
    ]
    if (tmp_path / "audit-vectors.md").read_bytes() != PAGE.read_bytes():
        stale.append("docs/audit-vectors.md")
    assert not stale, (
        f"the engine no longer makes {stale}: if the change to hashing is meant, run "
        f"`python3 {MAKER.relative_to(REPO)}` and say why in docs/audit.md"
    )


# ------------------------------------------------------------------------ events
def test_every_event_type_has_a_vector_and_old_events_are_there_too() -> None:
    events = load("events.json")["events"]
    jcs = [v for v in events if v["rule"] == "jcs"]
    assert sorted(v["topic"].rsplit(":", 1)[1] for v in jcs) == sorted(
        e.__name__ for e in ALL_EVENTS
    )
    assert set(EVENT_TYPES) == {e.__name__ for e in ALL_EVENTS}
    legacy = [v for v in events if v["rule"] == "legacy"]
    assert len(legacy) >= 2 and all("hash_rule" not in v["state"] for v in legacy)
    upcast = [v for v in legacy if v["topic"].endswith(":NoteAdded")]
    assert upcast and "text" in upcast[0]["state"] and "class_version" not in upcast[0]["state"]
    drafted = next(v for v in jcs if v["topic"].endswith(":OrderDrafted"))
    text = drafted["canonical"]
    for awkward in ("1e-7", '"ten":10,', '"negativeZero":0,', "1e+21", "9007199254740991"):
        assert awkward in text, awkward
    assert '"name":"pii:1:' in text  # the customer's name sealed
    emoji, private = '"😀":"an emoji key"', '"\ue000":"a private-use key'
    assert text.index(emoji) < text.index(private)  # UTF-16 order
    old = next(v for v in legacy if v["name"] == "OrderDrafted (legacy, awkward)")["canonical"]
    assert '"ten":10.0,' in old and old.index(private) < old.index(emoji)  # code points


@pytest.mark.parametrize("vector", load("events.json")["events"], ids=lambda v: v["name"])
def test_the_engine_recomputes_each_event_vector(vector: dict[str, Any]) -> None:
    state = vector["state"]
    assert chain.rule_of(state) == vector["rule"]
    canonical = chain.canonical_for(vector["rule"])(hashed_object(vector))
    assert canonical.decode("utf-8") == vector["canonical"]
    assert hashlib.sha256(vector["canonical"].encode("utf-8")).hexdigest() == vector["hash"]
    assert (
        chain.event_hash(
            vector["topic"], UUID(vector["originator_id"]), vector["originator_version"], state
        )
        == vector["hash"]
        == state["hash"]
    )
    # one changed value, and the hash no longer matches
    changed = {**state, "correlation_id": state["correlation_id"] + "x"}
    assert chain.event_hash(vector["topic"], vector["originator_id"], 1, changed) != state["hash"]


# --------------------------------------------------------------------- canonical
@pytest.mark.parametrize("vector", load("canonical.json")["values"], ids=lambda v: v["name"])
def test_the_engine_writes_each_canonical_vector(vector: dict[str, Any]) -> None:
    value = vector["value"]
    assert chain.canonical_legacy(value).decode("utf-8") == vector["legacy"]
    if vector["jcs"] is None:
        with pytest.raises(ValueError):
            chain.canonical(value)
    else:
        assert chain.canonical(value).decode("utf-8") == vector["jcs"]


def test_the_canonical_vectors_hold_the_numbers_the_specification_names() -> None:
    jcs = {v["name"]: v["jcs"] for v in load("canonical.json")["values"]}
    legacy = {v["name"]: v["legacy"] for v in load("canonical.json")["values"]}
    assert (jcs["integral double"], legacy["integral double"]) == ("10", "10.0")
    assert (jcs["negative zero"], legacy["negative zero"]) == ("0", "-0.0")
    assert (jcs["1e-7"], jcs["1e21"], jcs["1e-6"]) == ("1e-7", "1e+21", "0.000001")
    assert jcs["2.775411931247677e-05"] == "0.00002775411931247677"
    assert (jcs["1e16"], legacy["1e16"]) == ("10000000000000000", "1e+16")


# ------------------------------------------------------------------------ merkle
def test_the_engine_recomputes_the_merkle_vectors() -> None:
    tree_vector = load("merkle.json")
    assert tree_vector["empty_root"] == EMPTY_ROOT
    tree = HeadTree()
    by_bucket: dict[int, list[tuple[str, bytes]]] = {}
    for h in tree_vector["heads"]:
        leaf = head_leaf(h["order_id"], h["version"], h["head_hash"])
        assert leaf.hex() == h["leaf"]
        assert UUID(h["order_id"]).bytes[0] == h["bucket"]
        tree.set(h["order_id"], h["version"], h["head_hash"])
        by_bucket.setdefault(h["bucket"], []).append((h["order_id"], leaf))
    # buckets 0x00 and 0x0a both start with the text "0": the bucket is the first byte
    assert {0, 10} <= set(by_bucket) and any(len(v) == 3 for v in by_bucket.values())
    roots = {
        str(b): merkle([leaf for _, leaf in sorted(members)]).hex()
        for b, members in by_bucket.items()
    }
    assert roots == tree_vector["bucket_roots"]
    all_roots = [
        bytes.fromhex(roots.get(str(i), EMPTY_ROOT)) for i in range(256)
    ]  # the empty ones: the empty root
    assert merkle(all_roots).hex() == tree.root() == tree_vector["root"]
    assert HeadTree().root() == tree_vector["root_of_no_heads"]
    for d in tree_vector["changes_digests"]:
        assert changes_digest([tuple(c) for c in d["changes"]]) == d["digest"]
    assert tree_vector["changes_digests"][-1]["digest"] == hashlib.sha256(b"[]").hexdigest()


# -------------------------------------------------------------------- checkpoints
def test_the_engine_recomputes_the_checkpoint_vectors() -> None:
    data = load("checkpoints.json")
    keys = data["test_only_keys"]
    public = {}
    for name in ("a", "b"):
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys[f"ed25519_seed_{name}_hex"]))
        public[name] = signing.public_hex(key)
        assert public[name] == keys[f"ed25519_public_key_{name}_hex"]
    prev, signer = chain.GENESIS, None
    formats = []
    for vector in data["checkpoints"]:
        fields = vector["fields"]
        checkpoint = cp.Checkpoint.from_json({**fields, **vector})
        assert checkpoint.fields() == fields  # the engine's field set, format 1 or 2
        text = chain.canonical(fields)
        assert text.decode("utf-8") == vector["canonical"]
        assert cp.checkpoint_digest(fields) == vector["digest"]
        assert cp.checkpoint_hmac(keys["hmac_key"], fields) == vector["hmac"]
        assert fields["prev_digest"] == prev
        assert changes_digest([tuple(c) for c in vector["changes"]]) == fields["changes_digest"]
        formats.append(checkpoint.format)
        key = fields.get("public_key")
        if key is not None:
            assert signing.verify(key, vector["signature"], text)
            assert not signing.verify(key, vector["signature"], text + b" ")
            if signer is not None and key != signer:
                message = cp.rotation_message(key, fields["seq"])
                assert message.decode("utf-8") == vector["rotation_message"]
                assert signing.verify(signer, fields["endorsement"], message)
                assert not signing.verify(key, fields["endorsement"], message)
            else:
                assert fields["endorsement"] is None
            signer = key
        prev = vector["digest"]
    assert formats[0] == 1 and set(formats[1:]) == {2}
    signers = [v["fields"].get("public_key") for v in data["checkpoints"]]
    assert signers[-3:] == [public["a"], public["a"], public["b"]]


# ---------------------------------------------------------------- the scenario
def test_the_scenario_database_has_every_event_type_and_verifies(settings: Settings) -> None:
    scenario = build_scenario(settings)
    assert scenario.event_types() == set(EVENT_TYPES)
    assert [c.seq for c in scenario.checkpoints] == [1, 2, 3]
    assert [c.public_key for c in scenario.checkpoints] == [
        scenario.public_keys[0],
        scenario.public_keys[0],
        scenario.public_keys[1],
    ]
    assert scenario.checkpoints[2].endorsement  # the rotation from key a to key b
    db = open_read_db(scenario.settings)
    try:
        report = verify(db, key=scenario.hmac_key)
        assert report.ok, report.lines()
        # every chain, the orders' and (issue 20) the services' they made
        assert (report.orders, report.events) == (scenario.chains, scenario.all_events)
        assert len(scenario.services) == 3  # the awkward access line, the completed two
        tokens = db.fetchall("SELECT count(*) FROM pii_key")
        assert tokens[0][0] >= 1  # personal data sealed under a customer's key
    finally:
        db.close()

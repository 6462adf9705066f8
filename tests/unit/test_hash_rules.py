"""The canonical rules of the hash chain (issue 18, docs/audit.md "Specification"): every
new event is hashed under RFC 8785 (JCS) and says so (`hash_rule: "jcs"`); an event stored
without `hash_rule` keeps verifying under the legacy rule; a value RFC 8785 cannot write
exactly is refused as a command error, never stored. The byte-for-byte equality of the
engine's serialisers with the specification's is tests/independent/test_canonical_property.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785
from builders import item, memory_app, receive, upstream
from serviceorders.domain import chain
from serviceorders.domain.errors import InvalidCommand
from serviceorders.domain.order import order_id_for

pytestmark = pytest.mark.unit

LEGACY = Path(__file__).parents[1] / "fixtures" / "events" / "note_added_v1.json"


def envelope(topic: str, order_id: str, version: int, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "topic": topic,
        "originator_id": order_id,
        "originator_version": version,
        "state": {k: v for k, v in state.items() if k != "hash"},
    }


def test_a_new_event_is_hashed_under_rfc_8785_and_names_the_rule() -> None:
    app = memory_app()
    characteristics = {
        "bandwidthMbps": 100,
        "accessType": "fibre",
        "ratio": 2.775411931247677e-05,
        "whole": 10.0,
        "tiny": 1e-7,
        "😀": "émoji ✓",
        "\ue000": "private use",
    }
    order_id = app.handle(
        upstream(), receive("jcs-1", order_items=[item("1", characteristics=characteristics)])
    ).order.id
    events = app.history(order_id)
    assert events
    for event in events:
        state = event.stored_state()
        assert state["hash_rule"] == "jcs"
        expected = rfc8785.dumps(
            envelope(event.TOPIC, str(order_id), event.originator_version, state)
        )
        assert state["hash"] == hashlib.sha256(expected).hexdigest()
        assert (
            chain.event_hash(event.TOPIC, order_id, event.originator_version, state)
            == (state["hash"])
        )
    # the awkward values are written as RFC 8785 writes them, not as the legacy rule does
    drafted = envelope(events[0].TOPIC, str(order_id), 1, events[0].stored_state())
    text = chain.canonical(drafted).decode()
    assert '"whole":10,' in text and '"tiny":1e-7' in text
    assert '"ratio":0.00002775411931247677' in text
    assert text.index('"😀"') < text.index('"\ue000"')  # UTF-16 order
    legacy = chain.canonical_legacy(drafted).decode()
    assert '"whole":10.0' in legacy and legacy.index('"\ue000"') < legacy.index('"😀"')


def test_an_event_stored_without_a_rule_verifies_under_the_legacy_rule() -> None:
    fixture = json.loads(LEGACY.read_text())
    for event in fixture["events"]:
        state = event["state"]
        assert "hash_rule" not in state
        args = (event["topic"], fixture["originator_id"], event["originator_version"], state)
        assert chain.event_hash(*args) == state["hash"]
        legacy = orjson.dumps(envelope(*args), option=orjson.OPT_SORT_KEYS)
        assert hashlib.sha256(legacy).hexdigest() == state["hash"]
        # under the other rule the same state would not verify (its floats, if any, and
        # the rule member are what differ): naming the rule is what keeps it verifying
        marked = {**state, "hash_rule": "jcs"}
        assert (
            chain.event_hash(event["topic"], fixture["originator_id"], 1, marked) != (state["hash"])
        )


def test_an_unknown_rule_cannot_be_verified() -> None:
    with pytest.raises(chain.UnknownHashRule, match="'sha3'"):
        chain.event_hash("t", "0" * 32, 1, {"hash_rule": "sha3", "hash": "x"})


@pytest.mark.parametrize(
    "value",
    [
        {"timestamp": "2026-12-06T13:20:02.123456Z", "n": 12, "s": "a:1.5b", "l": [1, 2]},
        {"f": 1.5, "g": [0.1, -0.0, 1e21, 1e-6, 123456789012345680.0]},
        {"big": 9007199254740991, "neg": -9007199254740991, "small": 999999999999999},
        {"😀": 1, "\ue000": 2, "a": {"\u2028": "\x7f\x1f\n"}},
        {"x": "1,2.5]", "y": [[], {}], "z": None, "t": True},
    ],
)
def test_the_fast_path_and_the_library_agree(value: dict[str, Any]) -> None:
    assert chain.canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**63, 2**70])
def test_a_value_rfc_8785_cannot_write_exactly_is_refused_not_stored(value: int) -> None:
    app = memory_app()
    characteristics = {"bandwidthMbps": 100, "accessType": "fibre", "serial": value}
    with pytest.raises(InvalidCommand, match=r"2\^53-1"):
        app.handle(
            upstream(), receive("big-1", order_items=[item("1", characteristics=characteristics)])
        )
    with pytest.raises(ValueError):
        chain.canonical({"serial": value})
    assert not app.exists(order_id_for("big-1"))

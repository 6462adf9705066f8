"""The per-order hash chain over a canonical serialisation of each stored event.

The hash covers exactly what is stored (topic, order id, version and the event state
without its own hash), so verification can recompute it from stored rows alone,
before any upcasting.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

import orjson

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    """Key order and whitespace independent JSON of a JSON-compatible value."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def event_hash(
    topic: str, originator_id: UUID | str, originator_version: int, state: dict[str, Any]
) -> str:
    """SHA-256 of the canonical form of one stored event; `state` excludes `hash`."""
    body = {k: v for k, v in state.items() if k != "hash"}
    envelope = {
        "topic": topic,
        "originator_id": str(originator_id),
        "originator_version": originator_version,
        "state": body,
    }
    return hashlib.sha256(canonical(envelope)).hexdigest()

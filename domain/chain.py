"""The per-order hash chain over a canonical serialisation of each stored event.

The hash covers exactly what is stored (topic, order id, version and the event state
without its own hash), so verification can recompute it from stored rows alone,
before any upcasting. docs/audit.md ("Specification") defines it without this code.

Two canonical rules, named by the stored state's `hash_rule` member:

* `"jcs"` — RFC 8785 (JSON Canonicalization Scheme): every event written from issue 18 on.
* no `hash_rule` — the legacy rule the events stored before were hashed with (sorted keys
  by code point, 64-bit integers, doubles as docs/audit.md spells out). Those events keep
  verifying under it: no stored byte changes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from uuid import UUID

import orjson
import rfc8785

GENESIS = "0" * 64

HASH_RULE = "jcs"  # the rule new events are hashed with (state["hash_rule"])
LEGACY = "legacy"  # the rule of an event without `hash_rule`
MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON: the integers RFC 8785 can write exactly


class UnknownHashRule(ValueError):
    """A stored state names a canonical rule this code does not know."""


# Where orjson's sorted-keys output may differ from RFC 8785: a number token with a fraction
# or an exponent (orjson writes 10.0 and 1e16 otherwise), an integer of 16 digits or more
# (beyond 2^53 RFC 8785 refuses it), and a byte that starts a character at or above U+E000
# (code point order and UTF-16 order differ there, for keys). A number token sits between
# `:`, `,` or `[` and `,`, `]` or `}` in compact output; the same bytes inside a string only
# cost the exact path (timestamps like "13:20:02.5Z" are followed by a letter, not matched).
_NOT_PLAIN = re.compile(
    rb"[:,\[]-?\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)[,\]}]"
    rb"|[:,\[]-?\d{16,}[,\]}]"
    rb"|[\xee-\xf4]"
)


def canonical(value: Any) -> bytes:
    """RFC 8785 (JCS) of a JSON value: the `jcs` rule (docs/audit.md).

    Objects and arrays made of text below U+E000, integers of fewer than 16 digits and no
    fractional numbers — nearly every event — come out of orjson byte for byte as RFC 8785
    writes them (keys sorted, no whitespace, the same string escapes), at a hundredth of
    the cost; anything else goes through `rfc8785` (the reference-tested library). Raises
    ValueError (rfc8785's errors) for an integer beyond +-(2^53-1) or a lone surrogate."""
    if isinstance(value, dict | list):
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # e.g. an integer beyond 64 bits: the exact path says why
            fast = None
        if fast is not None and _NOT_PLAIN.search(fast) is None:
            return fast
    return rfc8785.dumps(value)


def canonical_legacy(value: Any) -> bytes:
    """The legacy rule (events stored without `hash_rule`): keys sorted by code point,
    64-bit integers, doubles as docs/audit.md's legacy rule spells out."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def canonical_for(rule: str) -> Any:
    """The serialiser of a rule name (`jcs`, `legacy`)."""
    if rule == HASH_RULE:
        return canonical
    if rule == LEGACY:
        return canonical_legacy
    raise UnknownHashRule(f"unknown hash rule {rule!r}")


def rule_of(state: dict[str, Any]) -> str:
    """The canonical rule an event's stored state was hashed with."""
    rule = state.get("hash_rule")
    if rule is None:
        return LEGACY
    if rule == HASH_RULE:
        return HASH_RULE
    raise UnknownHashRule(f"unknown hash rule {rule!r}")


def event_hash(
    topic: str, originator_id: UUID | str, originator_version: int, state: dict[str, Any]
) -> str:
    """SHA-256 of the canonical form of one stored event; `state` excludes `hash`.

    The rule is the state's own (`hash_rule`); raises UnknownHashRule for one not known."""
    body = {k: v for k, v in state.items() if k != "hash"}
    envelope = {
        "topic": topic,
        "originator_id": str(originator_id),
        "originator_version": originator_version,
        "state": body,
    }
    serialise = canonical if rule_of(state) == HASH_RULE else canonical_legacy
    return hashlib.sha256(serialise(envelope)).hexdigest()

"""The engine's canonical form equals the specification's (docs/audit.md), byte for byte:
`serviceorders.domain.chain.canonical` (rule "jcs") and `canonical_legacy` (rule "legacy")
against the independent serialiser in verifier.py, over random JSON values."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import verifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serviceorders.domain import chain

pytestmark = pytest.mark.unit

AWKWARD_FLOATS = [
    0.0,
    -0.0,
    10.0,
    -10.0,
    1e-7,
    1e-6,
    1e-5,
    1e-4,
    2.775411931247677e-05,
    0.1,
    123.45,
    1e15,
    1e16,
    1e17,
    1e20,
    1e21,
    1e22,
    9007199254740991.0,
    9007199254740992.0,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    123456789012345680000.0,
    0.000001234,
    4.35,
    1 / 3,
]

# Characters a key or a string may hold: control characters, quotes and backslashes,
# U+007F, U+2028, non-ASCII, emoji (outside the BMP) and the private use area from U+E000.
CONTROLS = ["\x00", "\x01", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1f", '"', "\\", "/"]
OTHERS = ["\x7f", "\u2028", "\u2029", "é", "ß", "中", "😀", "🙂", "𝄞", "\ue000", "\uffff", "\ufeff"]
SPECIAL = st.sampled_from([*CONTROLS, *OTHERS])
CHARS = st.one_of(SPECIAL, st.characters(codec="utf-8"))
TEXT = st.text(CHARS, max_size=12)
FLOATS = st.one_of(
    st.sampled_from(AWKWARD_FLOATS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3)),
    st.integers(-(2**60), 2**60).map(float),
    st.builds(lambda m, e: m * 10.0**e, st.integers(-999, 999), st.integers(-30, 30)),
)


def json_values(ints: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), ints, FLOATS, TEXT)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5), st.dictionaries(TEXT, children, max_size=5)
        ),
        max_leaves=25,
    )


JCS_INTS = st.one_of(
    st.integers(-(2**53 - 1), 2**53 - 1), st.sampled_from([0, -1, 2**53 - 1, -(2**53 - 1)])
)
LEGACY_INTS = st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.sampled_from([-(2**63), 2**63 - 1, 2**63, 2**64 - 1])
)
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(json_values(JCS_INTS))
def test_jcs_engine_equals_the_specification(value: Any) -> None:
    assert chain.canonical(value) == verifier.canonical(value, "jcs")


@PROPERTY
@given(json_values(LEGACY_INTS))
def test_legacy_engine_equals_the_specification(value: Any) -> None:
    assert chain.canonical_legacy(value) == verifier.canonical(value, "legacy")


@PROPERTY
@given(json_values(JCS_INTS))
def test_the_jcs_form_is_json_that_reads_back_as_the_value(value: Any) -> None:
    """What the spec's serialiser writes parses back to an equal value (integral doubles
    read back as integers, which compare equal), so its escapes and numbers are JSON."""
    text = verifier.canonical(value, "jcs").decode("utf-8")
    assert _same(json.loads(text), value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float):
        # an integral double is written like an integer and may read back as a large int
        return isinstance(a, (int, float)) and not isinstance(a, bool) and float(a) == b
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


# ------------------------------------------------------------ fixed examples (issue 18)
@pytest.mark.parametrize(
    ("value", "jcs", "legacy"),
    [
        (1e-7, "1e-7", "1e-7"),
        (1e-6, "0.000001", "1e-6"),
        (10.0, "10", "10.0"),
        (-0.0, "0", "-0.0"),
        (0.0, "0", "0.0"),
        (1e20, "100000000000000000000", "1e+20"),
        (1e21, "1e+21", "1e+21"),
        (1e16, "10000000000000000", "1e+16"),
        (123.45, "123.45", "123.45"),
        (2.775411931247677e-05, "0.00002775411931247677", "0.00002775411931247677"),
        (5e-324, "5e-324", "5e-324"),
        (2**53 - 1, "9007199254740991", "9007199254740991"),
        ("\u2028\x7f😀\x1f\n", '"\u2028\x7f😀\\u001f\\n"', '"\u2028\x7f😀\\u001f\\n"'),
        ({"\ue000": 1, "😀": 2}, '{"😀":2,"\ue000":1}', '{"\ue000":1,"😀":2}'),
        ({"b": [1, {"a": None}], "a": True}, '{"a":true,"b":[1,{"a":null}]}', None),
    ],
)
def test_fixed_examples(value: Any, jcs: str, legacy: str | None) -> None:
    legacy = jcs if legacy is None else legacy
    assert verifier.canonical(value, "jcs") == jcs.encode()
    assert verifier.canonical(value, "legacy") == legacy.encode()
    assert chain.canonical(value) == jcs.encode()
    assert chain.canonical_legacy(value) == legacy.encode()


def test_values_out_of_a_rule_are_refused() -> None:
    with pytest.raises(verifier.NotCanonical):
        verifier.canonical(2**53, "jcs")
    assert verifier.canonical(2**64 - 1, "legacy") == b"18446744073709551615"
    with pytest.raises(verifier.NotCanonical):
        verifier.canonical(2**64, "legacy")
    with pytest.raises(verifier.NotCanonical):
        verifier.canonical(math.nan, "jcs")
    with pytest.raises(verifier.NotCanonical):
        verifier.canonical("\ud800", "jcs")

"""Fuzzing the Kafka intake (issue "Reliability", bad input): hypothesis-generated bad
messages (random bytes, truncated envelopes, deep nesting, wrong types in every field,
unknown enum values, other encodings, nulls, keys that are not UTF-8, NaN / Infinity /
numbers beyond the double range or 64 bits) mixed with valid
orders and a payload over 1 MiB, published to the real broker and consumed by a
`ConsumerWorker`:

* the worker never fails a batch (`stats.failures == 0`) and its thread lives until stopped;
* every record of the topic is accounted for exactly once: applied (`intake_applied`) or
  dead-lettered (`dead_letter`), never both, never neither (no duplicates were sent);
* every dead letter has a non-empty reason and one of the documented categories
  (`envelope.CATEGORIES`; `internal_error` would be an engine defect);
* every message that must be refused is dead-lettered with the expected category; every
  valid order exists.

`SERVICEORDERS_FUZZ_SEED=N` runs another seed (default: fixed, for reproducible CI).
"""

from __future__ import annotations

import copy
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from builders import json_paths, json_values, wait_for
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka import KafkaProducer
from serviceorders.bootstrap import build_application
from serviceorders.consumers import envelope as env
from serviceorders.consumers.sample import envelope, order
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain.order import order_id_for
from serviceorders.notifications.kafka import client_options
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb
from serviceorders.support import limits
from serviceorders.tmf.tmf641_in import MAX_TEXT

from .conftest import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEED = int(os.environ.get("SERVICEORDERS_FUZZ_SEED", "641"))
BAD_MESSAGES = 200
VALID_ORDERS = 30
ANY = "(any)"  # expected category: any documented one (the message may also be applied)


@dataclass(frozen=True)
class Fuzzed:
    kind: str
    key: bytes | None
    value: bytes | None
    category: str | tuple[str, ...] | None  # what the dead letter must say; None: valid
    headers: tuple[tuple[str, bytes], ...] = ()
    external_id: str | None = None  # a valid order's external id
    reason: str | None = None  # what the dead letter's reason must say, where it is known


def valid_order(n: int, rng: random.Random) -> dict[str, Any]:
    return order(f"FUZZ-OK-{n:04d}", rng)


def create(event_id: str, body: Any, event_type: str = env.CREATE) -> dict[str, Any]:
    return envelope(event_id, event_type, {"serviceOrder": body})


def deep(depth: int) -> Any:
    value: Any = 1
    for n in range(depth):
        value = [value] if n % 2 else {"x": value}
    return value


# ----------------------------------------------------------------- hypothesis strategies
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON = json_values(LEAVES, width=3, key_size=10, max_leaves=15)
NOT_UTF8_KEYS = st.sampled_from(
    [
        b"\xff\xfe\xfd",
        b"\xc3",
        b"\x80abc",
        "Müller".encode("latin-1"),
        "key".encode("utf-16"),
        b"\x00",
        b"",
    ]
)
EVENT_ID = st.uuids().map(lambda u: f"fz-{u}")


def paths_of(value: Any) -> list[tuple[Any, ...]]:
    """The path of every field in `value` (not the document's own, empty path)."""
    return json_paths(value)[1:]


TEMPLATE = create("template", valid_order(0, random.Random(1)))
ENVELOPE_PATHS = paths_of(TEMPLATE)


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    """The object or list holding the field at `path`."""
    for step in path[:-1]:
        doc = doc[step]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    _parent(doc, path)[path[-1]] = value


@st.composite
def random_bytes(draw: st.DrawFn) -> Fuzzed:
    raw = draw(st.binary(min_size=0, max_size=400))
    try:
        parsed = orjson.loads(raw)
        category: Any = env.NOT_ENVELOPE if not isinstance(parsed, dict) else ANY
    except orjson.JSONDecodeError:
        category = env.NOT_JSON
    return Fuzzed("random-bytes", draw(st.none() | st.binary(max_size=20)), raw, category)


@st.composite
def truncated(draw: st.DrawFn) -> Fuzzed:
    n = draw(st.integers(0, 10_000))
    value = orjson.dumps(create(draw(EVENT_ID), valid_order(n, random.Random(n))))
    cut = draw(st.integers(0, len(value) - 1))
    return Fuzzed("truncated", f"FUZZ-TR-{n}".encode(), value[:cut], env.NOT_JSON)


@st.composite
def nested(draw: st.DrawFn) -> Fuzzed:
    depth = draw(st.integers(env.MAX_DEPTH + 1, 3000))
    body = valid_order(depth, random.Random(depth))
    where = draw(st.sampled_from(["description", "note", "serviceOrderItem", "extra"]))
    body[where] = deep(depth)
    # Deeper than orjson parses (1024 levels) the value is not JSON to it at all.
    return Fuzzed(
        "deep",
        b"FUZZ-DEEP",
        orjson.dumps(create(draw(EVENT_ID), body))
        if depth < 250
        else _deep_bytes(draw(EVENT_ID), depth),
        env.NOT_ENVELOPE if depth < 1000 else (env.NOT_ENVELOPE, env.NOT_JSON),
    )


def _deep_bytes(event_id: str, depth: int) -> bytes:
    # Deeper than orjson writes (255): built as text.
    inner = b'{"x":' * depth + b"1" + b"}" * depth
    return (
        b'{"eventId":"' + event_id.encode() + b'","eventType":"ServiceOrderCreateEvent",'
        b'"event":{"serviceOrder":' + inner + b"}}"
    )


@st.composite
def wrong_type(draw: st.DrawFn) -> Fuzzed:
    """A valid create envelope with one field (anywhere) replaced by a random JSON value,
    or removed: refused or applied on its merits, never lost."""
    doc = copy.deepcopy(TEMPLATE)
    doc["eventId"] = draw(EVENT_ID)
    n = draw(st.integers(0, 10**6))
    doc["event"]["serviceOrder"]["externalId"] = f"FUZZ-WT-{n}"
    path = draw(st.sampled_from(ENVELOPE_PATHS))
    if path == ("eventId",):
        doc["eventId"] = draw(JSON)  # ANY: a string is a fresh eventId
    elif draw(st.booleans()):
        parent = _parent(doc, path)
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = None
    else:
        _set(doc, path, draw(JSON))
    return Fuzzed("wrong-type", f"FUZZ-WT-{n}".encode(), orjson.dumps(doc), ANY)


ITEM_ACTIONS = st.sampled_from(["explode", "Add", "ADD", "remove", "", " add", "noChange2"])
ITEM_STATES = st.sampled_from(["teleported", "Completed", "done", "", "inprogress", "1"])
EVENT_TYPES = st.sampled_from(
    [
        "ServiceOrderMilestoneEvent",
        "serviceOrderCreateEvent",
        "ServiceOrderCreateEvent ",
        "X" * 200,
        "ServiceOrderDeleteEvent",
    ]
)


@st.composite
def unknown_enum(draw: st.DrawFn) -> Fuzzed:
    n = draw(st.integers(0, 10**6))
    body = valid_order(n, random.Random(n))
    body["externalId"] = f"FUZZ-EN-{n}"
    which = draw(st.sampled_from(["action", "state", "event-type"]))
    if which == "action":
        body["serviceOrderItem"][draw(st.integers(0, 2))]["action"] = draw(ITEM_ACTIONS)
        doc, category = create(draw(EVENT_ID), body), env.INVALID_ORDER
    elif which == "state":
        items = [{"id": "1", "state": draw(ITEM_STATES)}]
        doc = envelope(
            draw(EVENT_ID),
            env.STATE_CHANGE,
            {"serviceOrder": {"externalId": body["externalId"], "serviceOrderItem": items}},
        )
        category = env.INVALID_ORDER
    else:
        doc = envelope(draw(EVENT_ID), draw(EVENT_TYPES), {"serviceOrder": body})
        category = env.UNKNOWN_EVENT_TYPE
    return Fuzzed(f"unknown-{which}", body["externalId"].encode(), orjson.dumps(doc), category)


@st.composite
def wrong_encoding(draw: st.DrawFn) -> Fuzzed:
    n = draw(st.integers(0, 10**6))
    body = valid_order(n, random.Random(n))
    body["externalId"] = f"FUZZ-ENC-{n}"
    body["description"] = "Straße Müller — 東京 " + draw(st.text(max_size=20))
    text = orjson.dumps(create(draw(EVENT_ID), body)).decode()
    codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]))
    value = text.encode(codec, errors="replace")
    return Fuzzed(f"encoding-{codec}", body["externalId"].encode(), value, env.NOT_JSON)


NULLABLE = [
    ("eventId",),
    ("eventType",),
    ("event",),
    ("event", "serviceOrder"),
    ("event", "serviceOrder", "serviceOrderItem"),
    ("event", "serviceOrder", "serviceOrderItem", 0),
    ("event", "serviceOrder", "serviceOrderItem", 0, "id"),
    ("event", "serviceOrder", "serviceOrderItem", 0, "action"),
    ("event", "serviceOrder", "serviceOrderItem", 0, "service"),
]


@st.composite
def nulls(draw: st.DrawFn) -> Fuzzed:
    n = draw(st.integers(0, 10**6))
    doc = create(draw(EVENT_ID), valid_order(n, random.Random(n)))
    path = draw(st.sampled_from(NULLABLE))
    _set(doc, path, None)
    category = env.NOT_ENVELOPE if len(path) <= 2 else env.INVALID_ORDER
    return Fuzzed(f"null-{'.'.join(map(str, path))}", b"FUZZ-NULL", orjson.dumps(doc), category)


@st.composite
def bad_key(draw: st.DrawFn) -> Fuzzed:
    """No externalId and a key that is not UTF-8 (or empty, or NUL): nothing names the
    order."""
    n = draw(st.integers(0, 10**6))
    body = valid_order(n, random.Random(n))
    del body["externalId"]
    return Fuzzed(
        "bad-key",
        draw(NOT_UTF8_KEYS),
        orjson.dumps(create(draw(EVENT_ID), body)),
        env.INVALID_ORDER,
    )


# Numbers JSON cannot carry (some writers emit them): NaN, the infinities, and numbers beyond
# the double range (1e400, 400 nines). orjson refuses them; the reason names the number.
NON_FINITE = (
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5E+309", "-2e99999"])
    | st.integers(310, 5000).map(lambda n: "9" * n)
    | st.integers(310, 400).map(lambda n: f"-{'1' * n}.5")
)
# Not JSON for any parser (no reason to expect beyond "not JSON").
NOT_NUMBERS = st.sampled_from(["nan", "inf", "-inf", "+Infinity", "NAN", "0x10", "1e", "--1"])
# Within the double range but beyond 64-bit integers or double precision: valid JSON, applied
# or refused on its merits, never lost.
BIG = st.sampled_from(
    [
        "18446744073709551616",
        "-9223372036854775809",
        "1e308",
        "123456789012345678901234567890",
        "1e-400",
        "4.9e-324",
    ]
)
PLACEHOLDER = "\u2063FUZZ-NUMBER\u2063"


@st.composite
def non_finite(draw: st.DrawFn) -> Fuzzed:
    """A valid create envelope with one value (anywhere: a characteristic's value, an id,
    the envelope's own fields) replaced by a non-finite or out-of-range number."""
    doc = copy.deepcopy(TEMPLATE)
    doc["eventId"] = draw(EVENT_ID)
    n = draw(st.integers(0, 10**6))
    doc["event"]["serviceOrder"]["externalId"] = f"FUZZ-NF-{n}"
    _set(doc, draw(st.sampled_from(ENVELOPE_PATHS)), PLACEHOLDER)
    kind = draw(st.sampled_from(["non-finite", "not-a-number", "big"]))
    token = draw({"non-finite": NON_FINITE, "not-a-number": NOT_NUMBERS, "big": BIG}[kind])
    value = orjson.dumps(doc).replace(orjson.dumps(PLACEHOLDER), token.encode(), 1)
    category: Any = {"non-finite": env.NOT_JSON, "not-a-number": env.NOT_JSON, "big": ANY}[kind]
    reason = "is not a JSON number" if kind == "non-finite" else None
    return Fuzzed(f"number-{kind}", f"FUZZ-NF-{n}".encode(), value, category, reason=reason)


# Strings over their bounds (serviceorders.support.limits, the envelope and TMF641 models): the
# envelope's own fields, and the order's. Dead-lettered, the reason naming the field.
OVER_BOUNDS = [
    (("eventId",), limits.MAX_ID, env.NOT_ENVELOPE, "eventId"),
    (("correlationId",), limits.MAX_CORRELATION_ID, env.NOT_ENVELOPE, "correlationId"),
    (
        ("event", "serviceOrder", "externalId"),
        limits.MAX_ID,
        env.INVALID_ORDER,
        "serviceOrder.externalId",
    ),
    (
        ("event", "serviceOrder", "description"),
        MAX_TEXT,
        env.INVALID_ORDER,
        "serviceOrder.description",
    ),
    (("event", "serviceOrder", "@type"), limits.MAX_TYPE, env.INVALID_ORDER, "serviceOrder.@type"),
]


@st.composite
def oversized(draw: st.DrawFn) -> Fuzzed:
    """A valid create envelope with one string just over its bound, or far over it; or a
    valid order carrying oversized Kafka headers (only traceparent's trace id is read:
    applied)."""
    doc = copy.deepcopy(TEMPLATE)
    doc["eventId"] = draw(EVENT_ID)
    n = draw(st.integers(0, 10**6))
    external = f"FUZZ-BIG-{n}"
    doc["event"]["serviceOrder"]["externalId"] = external
    if draw(st.booleans(), label="headers"):
        name = draw(st.sampled_from(["traceparent", "x-request-id", "x-big"]), label="name")
        size = draw(st.integers(257, 200_000), label="size")
        return Fuzzed(
            "oversized-header",
            external.encode(),
            orjson.dumps(doc),
            None,
            headers=((name, b"h" * size),),
            external_id=external,
        )
    path, bound, category, field = draw(st.sampled_from(OVER_BOUNDS), label="field")
    length = bound + draw(st.integers(1, 3) | st.integers(1000, 100_000), label="over by")
    _set(doc, path, "s" * length)
    return Fuzzed(
        f"oversized-{field}",
        external.encode(),
        orjson.dumps(doc),
        category,
        reason=f"{field}: String should have at most {bound} characters",
    )


BAD = st.one_of(
    random_bytes(),
    truncated(),
    nested(),
    wrong_type(),
    unknown_enum(),
    wrong_encoding(),
    nulls(),
    bad_key(),
    non_finite(),
    oversized(),
)


def generate(count: int) -> list[Fuzzed]:
    """`count` messages drawn by Hypothesis (each example one message)."""
    found: list[Fuzzed] = []

    @seed(SEED)
    @hsettings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(message=BAD)
    def draw(message: Fuzzed) -> None:
        found.append(message)

    draw()
    return found[:count]


def special(rng: random.Random) -> list[Fuzzed]:
    """What the generators are not meant to draw: payloads over the limit, tombstones, and
    valid orders whose key is not UTF-8 (the externalId names them)."""
    huge = valid_order(9001, rng)
    huge["description"] = "x" * 3000
    huge["note"] = [{"text": "n" * 3000} for _ in range(400)]  # ~1.2 MB
    value = orjson.dumps(create("fz-huge", huge))
    assert len(value) > env.MAX_MESSAGE_BYTES
    keyed = valid_order(9002, rng)
    return [
        Fuzzed("too-large", b"FUZZ-HUGE", value, env.TOO_LARGE),
        Fuzzed("tombstone", b"FUZZ-TOMB", None, env.NOT_JSON),
        Fuzzed(
            "valid-bad-key",
            b"\xff\xfe",
            orjson.dumps(create("fz-keyed", keyed)),
            None,
            external_id=keyed["externalId"],
        ),
        Fuzzed(
            "nul-in-header", b"FUZZ-HDR", b"{", env.NOT_JSON, headers=(("h\u00e9", b"\x00\xff"),)
        ),
    ]


# -------------------------------------------------------------------------- helpers
def publish(settings: Settings, messages: list[Fuzzed]) -> None:
    # kafka-python refuses records over max_request_size (1 MiB by default) itself.
    producer = KafkaProducer(
        acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024, **client_options(settings)
    )
    try:
        futures = [
            producer.send(settings.inbound_topic, key=m.key, value=m.value, headers=list(m.headers))
            for m in messages
        ]
        producer.flush(timeout=60)
        for f in futures:
            f.get(timeout=30)  # the broker took every one (the huge one included)
    finally:
        producer.close(timeout=10)


def consumed(settings: Settings, db: ReadDb, total: int) -> Callable[[], bool]:
    return lambda: sum(IntakeStore(db).positions(settings.inbound_topic).values()) >= total


# ---------------------------------------------------------------------------- the test
def test_fuzzed_messages_are_applied_or_dead_lettered_never_lost(ks, db, run_worker):
    rng = random.Random(SEED)
    bad = generate(BAD_MESSAGES)
    assert len(bad) == BAD_MESSAGES
    valid = []
    for n in range(1, VALID_ORDERS + 1):
        body = valid_order(n, rng)
        valid.append(
            Fuzzed(
                "valid",
                body["externalId"].encode(),
                orjson.dumps(create(f"fz-valid-{n}", body)),
                None,
                external_id=body["externalId"],
            )
        )
    messages = bad + valid + special(rng)
    rng.shuffle(messages)
    publish(ks, messages)
    total = len(messages)

    running = run_worker(ks)
    wait_for(consumed(ks, db, total), timeout=120, what=f"{total} messages consumed")
    stats = running.worker.stats
    assert running.thread.is_alive(), "the consumer thread died"
    assert stats.failures == 0 and stats.stale_batches == 0, stats
    running.stop()

    # Every record of the topic: applied or dead-lettered, exactly once.
    records = read_topic(ks, ks.inbound_topic, expect=total, idle=0.5)
    assert len(records) == total
    by_position = {(r.partition, r.offset): r for r in records}
    applied = {
        (p, o): event_id
        for event_id, p, o in db.fetchall(
            'SELECT event_id, partition, "offset" FROM intake_applied WHERE topic = %s',
            (ks.inbound_topic,),
        )
    }
    dead = {
        (d["source_partition"], d["source_offset"]): d
        for d in IntakeStore(db).dead_letters(limit=10_000)
    }
    assert len(dead) == len(IntakeStore(db).dead_letters(limit=10_000)), "one per message"
    assert not set(applied) & set(dead), "a message both applied and dead-lettered"
    # Neither applied nor refused: only a duplicate (an eventId a mutation made repeat).
    missing = set(by_position) - set(applied) - set(dead)
    assert len(missing) == stats.duplicates, [by_position[p].value[:200] for p in missing]
    for position in missing:
        assert orjson.loads(by_position[position].value)["eventId"] in applied.values()
    assert stats.applied + stats.dead_letters + stats.duplicates == total, stats
    assert stats.applied == len(applied) and stats.dead_letters == len(dead), stats

    # Dead letters: a reason, a documented category, the original bytes.
    for d in dead.values():
        assert d["reason"].strip(), d
        assert d["category"] in env.CATEGORIES, (d["category"], d["reason"])
        assert d["value"] == by_position[d["source_partition"], d["source_offset"]].value

    # What must be refused is, with the expected category; what is valid took effect.
    expected = {}
    for m in messages:
        expected.setdefault((m.key, m.value), m)
    categories: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for position, r in by_position.items():
        m = expected[r.key, r.value]
        kinds[m.kind] += 1
        if m.category is None:
            assert position in applied, (m.kind, dead.get(position, {}).get("reason"))
        elif m.category != ANY:
            assert position in dead, (m.kind, r.value[:200] if r.value else r.value)
            wanted = m.category if isinstance(m.category, tuple) else (m.category,)
            assert dead[position]["category"] in wanted, (m.kind, dead[position]["reason"])
            if m.reason is not None:
                assert m.reason in dead[position]["reason"], (m.kind, dead[position]["reason"])
        if position in dead:
            categories[dead[position]["category"]] += 1
    print(
        f"\n{total} messages: {len(applied)} applied, {len(dead)} dead letters; kinds "
        f"{dict(sorted(kinds.items()))}; categories {dict(sorted(categories.items()))}"
    )
    assert categories[env.TOO_LARGE] == 1
    app = build_application(ks)
    try:
        for m in messages:
            if m.category is None:
                assert app.exists(order_id_for(m.external_id)), m.external_id
    finally:
        app.close()


# ------------------------------------------ every event type, parsed without the broker
TEMPLATES = {
    env.CREATE: TEMPLATE,
    env.REVISE: envelope(
        "t-revise",
        env.REVISE,
        {
            "serviceOrder": {
                "externalId": "FUZZ-OK-0001",
                "description": "new",
                "priority": "1",
                "requestedStartDate": "2031-01-02T10:00:00Z",
                "relatedParty": [{"id": "C-1", "role": "customer"}],
                "serviceOrderItem": TEMPLATE["event"]["serviceOrder"]["serviceOrderItem"],
            }
        },
    ),
    env.CANCEL: envelope(
        "t-cancel",
        env.CANCEL,
        {
            "cancelServiceOrder": {
                "cancellationReason": "moving",
                "requestedCancellationDate": "2031-01-02T10:00:00Z",
                "serviceOrder": {
                    "id": "5b0e4a4e-9f6c-4d4e-8a43-7f5e4b3c2a10",
                    "externalId": "FUZZ-OK-0001",
                },
            }
        },
    ),
    env.STATE_CHANGE: envelope(
        "t-state",
        env.STATE_CHANGE,
        {
            "serviceOrder": {
                "externalId": "FUZZ-OK-0001",
                "serviceOrderItem": [
                    {"id": "1", "state": "inProgress"},
                    {"id": "2", "state": "failed", "stateReason": "no stock"},
                ],
            }
        },
    ),
}
TEMPLATE_PATHS = [(t, p) for t, doc in TEMPLATES.items() for p in paths_of(doc)]


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    event_type, _ = draw(st.sampled_from(TEMPLATE_PATHS))
    doc = copy.deepcopy(TEMPLATES[event_type])
    doc["eventId"] = draw(EVENT_ID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(doc) or [("eventId",)]))
        try:
            if draw(st.booleans()):
                parent = _parent(doc, path)
                if isinstance(parent, dict):
                    del parent[path[-1]]
                    continue
            _set(doc, path, draw(JSON | ITEM_ACTIONS | ITEM_STATES))
        except (KeyError, IndexError, TypeError):
            continue
    return orjson.dumps(doc)


@seed(SEED)
@hsettings(max_examples=600, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=mutated_envelopes(), key=st.none() | st.binary(max_size=12))
def test_parsing_any_envelope_gives_a_command_or_a_refusal(value, key):
    """`envelope.parse` runs outside the per-message error handling of a batch (only a
    `Refusal` is dead-lettered there): anything else it raised would fail the whole batch
    again and again (a poison message). Every event type, every field mutated."""
    try:
        env.parse(value, key)
    except env.Refusal as r:
        assert r.category in env.CATEGORIES and r.reason.strip()


# The broker run also gets every event type mutated (revisions, cancellations and item
# states of FUZZ-OK-0001, one of the valid orders): refused or applied on their merits.
BAD = st.one_of(
    BAD,
    mutated_envelopes().map(
        lambda value: Fuzzed(
            "mutated-" + str(orjson.loads(value).get("eventType"))[:40], b"FUZZ-OK-0001", value, ANY
        )
    ),
)

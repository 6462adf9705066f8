"""The outbound record's value of a notification (notifications/kafka.py
`notification_value`), which the publisher now makes from the payload's JSON text decoded
one row at a time, and with a base URL by a bytes replace inside the encoded `event`: the
same bytes as the publisher's earlier derivation, `orjson.dumps(absolute_hrefs(payload,
base))` of the payload as psycopg (or SQLite's reader) decoded it. And the partition of a
record (`KeyPartitioner`): kafka-python's DefaultPartitioner's choice.

Random envelopes whose resources hold `href`s at every depth, keys and strings that spell
`"href":"/` inside them (escaped quotes, backslashes), a top-level `href` (which
`absolute_hrefs` leaves alone), no `event` at all; base URLs with characters JSON escapes;
and the same through the real `notification_outbox` table of both backends, read as the
publisher reads it (`payload::text` on PostgreSQL) against the earlier read (`payload`).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from builders import json_values
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka.cluster import ClusterMetadata
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2
from serviceorders.bootstrap import init_database, open_read_db
from serviceorders.notifications.kafka import KeyPartitioner, murmur2, notification_value
from serviceorders.projections.notifications import NotificationOutbox, absolute_hrefs
from serviceorders.settings import Settings

BASES = [
    None,
    "",
    "/",
    "https://orders.example.com",
    "https://orders.example.com/api/",
    'http://h.example/a"b\\c/é\u2028',
]

# Keys and strings that look like an href from inside a string, or are one.
tricky_text = st.sampled_from(
    [
        "href",
        "/",
        "/x/y",
        '"href":"/',
        '{"href":"/x',
        ',"href":"/x"',
        'x"href',
        "x\\",
        "\\",
        '"',
        "/tmf-api/serviceOrdering/v4/serviceOrder/1",
        "é\u2028\x00\x1f",
    ]
)
texts = st.text(max_size=12) | tricky_text
keys = st.sampled_from(["href", "id", "@type", "x", 'x"href', "href\\"]) | st.text(max_size=6)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
resources = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=5)
        | st.fixed_dictionaries({"href": texts}, optional={"id": texts, "sub": inner})
    ),
    max_leaves=30,
)
envelopes = st.fixed_dictionaries(
    {
        "eventId": st.uuids().map(str),
        "eventType": st.sampled_from(["ServiceOrderCreateEvent", "ServiceOrderStateChangeEvent"]),
    },
    optional={
        "event": resources,
        "href": texts,  # never in an envelope: absolute_hrefs leaves it, and so must this
        "correlationId": st.none() | texts,
        "fieldPath": st.lists(texts, max_size=3) | json_values(leaves, 3, 5, 6),
    },
)


def earlier(payload: Any, base: str | None) -> bytes:
    """The publisher's value before: the decoded payload, hrefs rewritten, encoded."""
    return orjson.dumps(absolute_hrefs(payload, base))


@hsettings(max_examples=400, deadline=None)
@given(payload=envelopes, base=st.sampled_from(BASES))
def test_the_value_is_the_earlier_value(payload: dict[str, Any], base: str | None) -> None:
    assert notification_value(payload, base) == earlier(payload, base)
    assert notification_value(orjson.loads(orjson.dumps(payload)), base) == earlier(payload, base)


def test_every_relative_href_of_the_event_is_made_absolute() -> None:
    payload = {
        "eventId": "e",
        "href": "/top",
        "event": {
            "serviceOrder": {
                "href": "/tmf-api/serviceOrdering/v4/serviceOrder/1",
                "note": [{"text": '{"href":"/not-a-key"}', "href": "/n"}],
                'x"href': "/escaped-key",
                "relatedParty": [{"href": "https://abs.example/p", "id": "p"}],
            }
        },
    }
    value = orjson.loads(notification_value(payload, "https://h.example/"))
    order = value["event"]["serviceOrder"]
    assert order["href"] == "https://h.example/tmf-api/serviceOrdering/v4/serviceOrder/1"
    assert order["note"] == [{"text": '{"href":"/not-a-key"}', "href": "https://h.example/n"}]
    assert order['x"href'] == "/escaped-key"
    assert order["relatedParty"][0]["href"] == "https://abs.example/p"
    assert value["href"] == "/top"
    assert list(value) == list(payload)
    # no event: absolute_hrefs adds "event": null, last
    assert notification_value({"eventId": "e"}, "https://h") == b'{"eventId":"e","event":null}'


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=st.lists(envelopes, min_size=1, max_size=8), base=st.sampled_from(BASES))
def test_through_the_outbox_table_as_the_publisher_reads_it(
    settings: Settings, payloads: list[dict[str, Any]], base: str | None
) -> None:
    # PostgreSQL's jsonb holds no NUL character (the projection never writes one)
    assume(not any(b"\\u0000" in orjson.dumps(p) for p in payloads))
    init_database(settings)
    db = open_read_db(settings)
    table = NotificationOutbox.table
    try:
        with db.transaction():
            db.execute(f"DELETE FROM {table.name}")
            db.insert(
                table,
                table.name,
                [
                    {
                        "position": n,
                        "seq": 0,
                        "event_id": p["eventId"],
                        "order_id": p["eventId"],
                        "order_version": 1,
                        "event_type": p["eventType"],
                        "event_time": None,
                        "payload": p,
                    }
                    for n, p in enumerate(payloads, 1)
                ],
            )
        text = "payload::text" if db.dialect == "postgres" else "payload"
        now = db.fetchall(f"SELECT {text} FROM {table.name} ORDER BY position")
        before = db.fetchall(f"SELECT payload FROM {table.name} ORDER BY position")
        assert len(now) == len(before) == len(payloads)
        for (t,), (p,) in zip(now, before, strict=True):
            assert isinstance(t, str)
            decoded = p if isinstance(p, dict) else orjson.loads(p)
            assert notification_value(orjson.loads(t), base) == earlier(decoded, base)
    finally:
        db.close()


# ------------------------------------------------------------------ partition choice
class _Partition:
    leader_id = 1


def cluster_of(topic: str, partitions: set[int]) -> ClusterMetadata:
    cluster = ClusterMetadata()
    cluster._partitions[topic] = {p: _Partition() for p in partitions}
    return cluster


@hsettings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80) | st.uuids().map(lambda u: str(u).encode()))
def test_murmur2_is_kafka_pythons(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data)


@hsettings(max_examples=100, deadline=None)
@given(
    keys=st.lists(
        st.none() | st.binary(max_size=40) | st.uuids().map(lambda u: str(u).encode()),
        max_size=30,
    ),
    partitions=st.sets(st.integers(min_value=0, max_value=40), min_size=1, max_size=12),
    remember=st.integers(min_value=1, max_value=8),
)
def test_the_partition_of_a_key_is_the_default_partitioners(
    keys: list[bytes | None], partitions: set[int], remember: int
) -> None:
    """Every key, again and again (remembered, forgotten), on any set of partitions: the
    DefaultPartitioner's choice (a record without a key: one of the topic's partitions)."""
    cluster = cluster_of("t", partitions)
    ours, theirs = KeyPartitioner(remember=remember), DefaultPartitioner()
    for key in keys + keys:
        chosen = ours.partition("t", key, key, b"v", b"v", cluster)
        if key is None:
            assert chosen in partitions
        else:
            assert chosen == theirs.partition("t", key, key, b"v", b"v", cluster)
        assert len(ours._hashes) <= remember


def test_an_unknown_topic_is_refused_as_before() -> None:
    cluster = cluster_of("t", {0, 1})
    with pytest.raises(ValueError, match="not found"):
        KeyPartitioner().partition("other", b"k", b"k", b"v", b"v", cluster)

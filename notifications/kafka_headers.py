"""Kafka record headers as the outbox tables keep them (the `headers` column of
`dead_letter` and `kafka_outbox`): written by the Kafka intake (consumers/store.py), read
back by the publishers (notifications/kafka.py) and the operator's DLQ commands.

A list of [name, value] with the value in base64, so that any bytes round-trip
(PostgreSQL's jsonb cannot hold a NUL character, header values may). No kafka-python here:
the intake's tables are written by processes that never publish.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any


def headers_json(headers: Iterable[tuple[str, bytes | None]]) -> str:
    """Headers as the JSON the tables keep."""
    return json.dumps(
        [[k, None if v is None else base64.b64encode(bytes(v)).decode("ascii")] for k, v in headers]
    )


def headers_from_json(value: Any) -> list[tuple[str, bytes | None]]:
    """The headers back from the column (a JSON text, or what the driver decoded)."""
    items = json.loads(value) if isinstance(value, str) else value
    return [(k, None if v is None else base64.b64decode(v)) for k, v in items]

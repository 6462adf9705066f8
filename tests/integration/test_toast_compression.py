"""On a PostgreSQL server with lz4, the values above about 2 KB that the engine stores (an
order's first event, its TMF641 document, its notifications) are compressed with lz4, by
the sessions that write them (storage/db.py `use_lz4`; the events through the intake's
recorder): the server's setting for other sessions is left as it was (issue 21)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from serviceorders.bootstrap import build_application, build_projector, open_read_db
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import traffic
from serviceorders.consumers.store import IntakeStore
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    db = request.getfixturevalue("pg_database")
    request.getfixturevalue("pg_cleaner")()
    return str(db.url())


def _methods(conn: psycopg.Connection[Any], sql: str) -> set[str | None]:
    return {r[0] for r in conn.execute(sql).fetchall()}


def test_large_values_are_stored_with_lz4(pg_url: str) -> None:
    url = pg_url
    pg_settings = Settings.from_env({"DATABASE_URL": url})
    with psycopg.connect(url, autocommit=True) as conn:
        server_default = conn.execute("SHOW default_toast_compression").fetchone()
        has_lz4 = conn.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()
    if not (has_lz4 and has_lz4[0]):
        pytest.skip("this PostgreSQL has no lz4")
    app = build_application(pg_settings)
    db = open_read_db(pg_settings)
    try:
        topic = pg_settings.inbound_topic
        sample = traffic(20, duplicates=0, bad=0, seed=3, prefix="LZ4")
        messages = [Message(topic, 0, i, m.key, m.value) for i, m in enumerate(sample.messages)]
        result = Intake(app, IntakeStore(db), pg_settings.events_topic).process(
            messages, {(topic, 0): None}
        )
        assert result.applied == 20
        build_projector(pg_settings, db).catch_up()
    finally:
        db.close()
        app.close()
    with psycopg.connect(url, autocommit=True) as conn:
        drafted = _methods(
            conn,
            "SELECT pg_column_compression(state) FROM serviceorders_events "
            "WHERE topic LIKE '%:OrderDrafted'",
        )
        documents = _methods(conn, "SELECT pg_column_compression(document) FROM order_document")
        payloads = _methods(conn, "SELECT pg_column_compression(payload) FROM notification_outbox")
        # Compressed, and with lz4 (None: stored as it was, too small to compress).
        assert drafted == {"lz4"}, drafted
        assert documents == {"lz4"}, documents
        assert payloads == {"lz4"}, payloads
        assert conn.execute("SHOW default_toast_compression").fetchone() == server_default

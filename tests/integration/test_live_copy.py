"""A live page's rows of the orders it creates, and its notifications, go into the read
models by a plain COPY on PostgreSQL (storage/db.py `insert_new`, issue 21). If such rows
are there already (the positions went back while the tables kept their rows: a table
restored by hand, a position reset), the COPY fails on a key and the page writes them the
upsert way instead: the same rows as the reference, a warning, no error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from histories import simple_orders
from projected import build, rows_of
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.domain.application import ServiceOrders
from serviceorders.projections.maintenance import _discard, _fresh
from serviceorders.projections.runner import POSITIONS, Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Any:
    read_db = open_read_db(settings)
    yield read_db
    read_db.close()


def test_rows_already_there_are_written_over(app, db, caplog):
    simple_orders(app, 50)  # 50 orders in the first page: above the COPY's threshold
    reference = build(db, "ref", fast=False, batch_size=4000, fresh=True)
    tables = _fresh(db, PROJECTIONS, "again")
    try:
        projector = Projector(
            db, event_mapper(), PROJECTIONS, tables=tables, lock=None, batch_size=400
        )
        assert projector.catch_up() > 0
        assert rows_of(db, tables) == reference
        # The positions go back to the start; the tables keep every row.
        with db.transaction():
            for name in tables.values():
                db.execute(f"UPDATE {POSITIONS.name} SET position = 0 WHERE name = %s", (name,))
        with caplog.at_level(logging.WARNING, logger="serviceorders.storage.db"):
            again = Projector(
                db, event_mapper(), PROJECTIONS, tables=tables, lock=None, batch_size=400
            )
            assert again.catch_up() > 0
        # The counters add a page's transitions to what is there: applied twice, they count
        # twice, with or without the COPY (they are upserts that add); every other row is
        # the reference's.
        counters = {"daily_state_counts", "service_daily_changes"}
        again_rows = rows_of(db, tables)
        assert {k: v for k, v in again_rows.items() if k not in counters} == {
            k: v for k, v in reference.items() if k not in counters
        }
        if db.dialect == "postgres":
            assert any("were already there" in r.getMessage() for r in caplog.records)
    finally:
        _discard(db, tables)

"""Every read model built from the first event, the projector decoding stored events
either way (projections/decoding.py's mirrors, or pydantic: `Projector(fast=False)`),
into tables of their own, and their rows compared (issue 21)."""

from __future__ import annotations

from typing import Any

from serviceorders.bootstrap import event_mapper
from serviceorders.projections.maintenance import _discard, _fresh
from serviceorders.projections.runner import Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.storage.db import ReadDb


def build(
    db: ReadDb, suffix: str, *, fast: bool, batch_size: int, fresh: bool, keep: int = 0
) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model's rows, built from the first event into `<name>__<suffix>`
    (dropped after): live pages (upserts) unless `fresh` (COPY, as rebuild does); `keep`:
    the orders the projector keeps folded between pages (projections/log.py OrderCache)."""
    tables = _fresh(db, PROJECTIONS, suffix)
    try:
        Projector(
            db,
            event_mapper(),
            PROJECTIONS,
            tables=tables,
            lock=None,
            batch_size=batch_size,
            fresh=fresh,
            fast=fast,
            keep=keep,
        ).catch_up()
        return rows_of(db, tables)
    finally:
        _discard(db, tables)


def rows_of(db: ReadDb, tables: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model's rows in `tables`, sorted."""
    return {p.name: sorted(db.rows(p.table, tables[p.name]), key=repr) for p in PROJECTIONS}


def assert_same_rows(db: ReadDb, batch_size: int) -> dict[str, list[tuple[Any, ...]]]:
    """The fast decoding, in live pages of `batch_size` (keeping three orders folded
    between pages, as `project` keeps thousands) and fresh (as rebuild: none kept), gives
    the rows of the pydantic decoding with no order kept in every read model; returns the
    reference rows."""
    reference = build(db, "slow", fast=False, batch_size=4000, fresh=True)
    assert sum(len(rows) for rows in reference.values()) > 0
    for fresh in (False, True):
        built = build(
            db, "fast", fast=True, batch_size=batch_size, fresh=fresh, keep=0 if fresh else 3
        )
        for name, rows in reference.items():
            assert built[name] == rows, f"{name} differs (batch {batch_size}, fresh {fresh})"
    return reference

"""The orders the projector keeps folded between pages (projections/log.py `OrderCache`,
issue 21): a page that touches a kept order starts from it instead of reading, decoding and
folding the order's history again. The rows must be those of the reference (pydantic
decoding, every history read), whatever the paging, the cache's size, two projectors taking
turns, a page that fails half-way, or an erasure of the customer while orders are kept.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from builders import id_created, item
from histories import random_history
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from projected import build, rows_of
from serviceorders.api.auth import Authenticator
from serviceorders.audit.pii import erase
from serviceorders.bootstrap import build_api_context, build_projector, event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.privacy import ERASED
from serviceorders.domain.values import CommandContext, OrderHeader, Party, Place, Role
from serviceorders.projections import views
from serviceorders.projections.log import OrderCache
from serviceorders.projections.maintenance import _discard, _fresh
from serviceorders.projections.runner import Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

pytestmark = pytest.mark.integration

UPSTREAM = CommandContext.for_actor("crm", Role.UPSTREAM)
MANAGER = CommandContext.for_actor("bob", Role.MANAGER)


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Any:
    read_db = open_read_db(settings)
    yield read_db
    read_db.close()


def projector(db: ReadDb, tables: dict[str, str], batch_size: int, keep: int) -> Projector:
    return Projector(
        db, event_mapper(), PROJECTIONS, tables=tables, lock=None, batch_size=batch_size, keep=keep
    )


@hsettings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32),
    batch_size=st.integers(1, 12),
    keep=st.sampled_from([1, 2, 5000]),
)
def test_kept_orders_project_the_same_rows(app, db, seed, batch_size, keep):
    """Random histories of every kind of command, small pages (an order's events spread
    over many), a cache that holds one order, two, or all of them."""
    history = random_history(app, seed, orders=4, commands=40)
    assert history.applied > 0
    reference = build(db, "ref", fast=False, batch_size=4000, fresh=True)
    tables = _fresh(db, PROJECTIONS, "kept")
    try:
        kept = projector(db, tables, batch_size, keep)
        kept.catch_up()
        assert rows_of(db, tables) == reference
    finally:
        _discard(db, tables)


def test_a_kept_order_is_not_read_again(app, db):
    """Each order's events in pages of their own: from the second page on, every order the
    page touches was kept by the page before (no history read), and the rows are the
    reference's."""
    orders = [_order(app, f"K-{n}", f"C-{n}", f"Name {n}") for n in range(3)]
    tables = _fresh(db, PROJECTIONS, "kept")
    try:
        kept = projector(db, tables, batch_size=100, keep=10)
        read: list[int] = []
        real = kept.log.history
        kept.log.history = lambda ids, before: read.append(len(list(ids))) or real(ids, before)  # type: ignore[method-assign]
        kept.catch_up()
        for order_id in orders:
            app.handle(MANAGER, cmd.Approve(order_id))
        kept.catch_up()
        cache = kept.log.kept
        assert isinstance(cache, OrderCache)
        assert (cache.hits, cache.misses) == (3, 0)
        assert read == []  # no history read for the approvals
        assert rows_of(db, tables) == build(db, "ref", fast=False, batch_size=4000, fresh=True)
    finally:
        _discard(db, tables)


def test_two_projectors_taking_turns(app, db):
    """Two projectors (two `project` processes, or the API's workers) applying the pages in
    turn: each one's kept orders fall behind the other's pages and are not used then."""
    random_history(app, 641, orders=5, commands=60)
    reference = build(db, "ref", fast=False, batch_size=4000, fresh=True)
    tables = _fresh(db, PROJECTIONS, "turns")
    try:
        first, second = (projector(db, tables, batch_size=3, keep=100) for _ in range(2))
        while first.run_once() + second.run_once():
            pass
        assert rows_of(db, tables) == reference
        caches = [p.log.kept for p in (first, second)]
        assert all(c is not None and c.misses > 0 for c in caches)  # stale ones refused
    finally:
        _discard(db, tables)


def test_a_failed_page_leaves_nothing_half_applied_in_the_cache(app, db, monkeypatch):
    """A page that fails after folding (its transaction rolled back): the orders it took
    from the cache are gone from it, so the retry reads their histories again."""
    random_history(app, 7, orders=4, commands=50)
    reference = build(db, "ref", fast=False, batch_size=4000, fresh=True)
    tables = _fresh(db, PROJECTIONS, "failed")
    real = views.OrderSummary.apply
    calls = {"n": 0}

    def fail_once(self: Any, db: ReadDb, batch: Any, table: str) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("the database went away")
        real(self, db, batch, table)

    try:
        kept = projector(db, tables, batch_size=4, keep=100)
        monkeypatch.setattr(views.OrderSummary, "apply", fail_once)
        with pytest.raises(RuntimeError):
            kept.catch_up()
        kept.catch_up()
        assert calls["n"] > 4
        assert rows_of(db, tables) == reference
    finally:
        _discard(db, tables)


def test_an_erasure_drops_the_kept_orders(app, db):
    """The kept orders hold revealed personal data: once an erasure is recorded, the next
    page reads the erased customer's orders again, and the rows show them erased."""
    alice = _order(app, "A-1", "CUST-A", "Alice Smith")
    bob = _order(app, "B-1", "CUST-B", "Bob Jones")
    tables = _fresh(db, PROJECTIONS, "erased")
    try:
        kept = projector(db, tables, batch_size=100, keep=10)
        kept.catch_up()
        assert sorted(db.fetchall(f"SELECT customer_name FROM {tables['order_summary']}")) == [
            ("Alice Smith",),
            ("Bob Jones",),
        ]
        erase(db, "CUST-A", "dpo", None, 1)
        # This process's key cache keeps a key for up to CACHE_SECONDS: forget it now.
        kept.log.mapper.reveal.__self__.forget("CUST-A")  # type: ignore[attr-defined]
        app.sealer.forget("CUST-A")
        for order_id in (alice, bob):
            app.handle(MANAGER, cmd.Approve(order_id))
        kept.catch_up()
        names = dict(
            db.fetchall(f"SELECT external_id, customer_name FROM {tables['order_summary']}")
        )
        assert names == {"A-1": ERASED, "B-1": "Bob Jones"}
        docs = " ".join(
            str(r[0]) for r in db.fetchall(f"SELECT document FROM {tables['order_document']}")
        )
        assert "Alice Smith" not in docs and "Bob Jones" in docs
    finally:
        _discard(db, tables)


def test_the_project_process_keeps_orders_the_api_keeps_none(settings, app):
    """`project` keeps SERVICEORDERS_PROJECTION_CACHE orders; the API's read-your-writes
    projectors keep none (the collector's walk over kept orders lengthened the requests'
    tail: docs/performance.md, "Issue 21, continued")."""
    project = build_projector(settings)
    try:
        assert project.log.kept is not None
        assert project.log.kept.size == settings.projection_cache_orders > 0
    finally:
        project.db.close()
    ctx = build_api_context(settings, Authenticator([]))
    try:
        api = ctx._projector()
        assert api.log.kept is None
        api.db.close()
    finally:
        ctx.close()


def _order(app: ServiceOrders, external: str, customer: str, name: str) -> UUID:
    header = OrderHeader(
        external_id=external,
        notification_contact=f"{external}@example.com",
        related_parties=(Party(id=customer, name=name),),
    )
    line = item("1", place=Place(id="S1", name=f"{name}'s site"))
    order_id, created = id_created(app.handle(UPSTREAM, cmd.ReceiveOrder(header, (line,))))
    assert created
    return order_id

"""The projector's fast decoding (projections/decoding.py: stored order events decoded into
msgspec mirrors, folded by the domain's own `apply`) against the reference, every event
decoded into its pydantic model (`Projector(fast=False)`, the fold of earlier releases):
the same rows in every read model, on random histories of every event type, however the
log is paged, live (upserts) or fresh (COPY); and each event type's mirror holds what its
model holds.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any
from uuid import UUID

import pytest
from histories import (
    AGENT,
    FULFILMENT,
    MANAGERS,
    UPSTREAM,
    History,
    _header,
    _item,
    _items_for,
    random_history,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from projected import assert_same_rows
from pydantic import BaseModel
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain import events as ev
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import DomainError
from serviceorders.domain.service import ServiceEvent
from serviceorders.domain.values import HeaderChange, ItemState
from serviceorders.projections import decoding
from serviceorders.projections.log import EventLog, visible
from serviceorders.projections.views import document_items
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb
from serviceorders.tmf.tmf641 import Renders, order_to_tmf641

pytestmark = pytest.mark.integration


def more_events(app: ServiceOrders, history: History, seed: int) -> None:
    """A tour of what random histories rarely reach: a draft captured line by line, a
    rejected order corrected and resubmitted, the cancellation's question and answer, a
    failed order, a refused proposal."""
    manager = MANAGERS[0]

    def received(n: int) -> UUID:
        order_id: UUID = app.handle(
            UPSTREAM, cmd.ReceiveOrder(_header(seed + n, n), tuple(_items_for(1)))
        ).order.id
        history.order_ids[1000 + n] = order_id
        return order_id

    draft = app.handle(AGENT, cmd.DraftOrder(_header(seed, 90))).order.id
    history.order_ids[999] = draft
    rejected, asked, failed, revised = received(1), received(2), received(3), received(4)
    for ctx, command in (
        (AGENT, cmd.AddLine(draft, _item(0))),
        (AGENT, cmd.AddLine(draft, _item(1))),
        (AGENT, cmd.ConfigureLine(draft, "i0", characteristics={"bandwidthMbps": 200})),
        (AGENT, cmd.RemoveLine(draft, "i1")),
        (AGENT, cmd.Submit(draft)),
        (manager, cmd.Reject(rejected, "wrong site")),
        (
            UPSTREAM,
            cmd.Resubmit(
                rejected,
                external_id=f"resubmitted-{seed}",
                header=HeaderChange(description="corrected"),
                items=tuple(_items_for(1)),
                submit=True,
            ),
        ),
        (manager, cmd.Approve(asked)),
        (UPSTREAM, cmd.RequestCancellation(asked, reason="moved")),
        (manager, cmd.RequestCancellationInformation(asked, "which date?")),
        (UPSTREAM, cmd.ProvideCancellationInformation(asked, "next month")),
        (manager, cmd.DenyCancellation(asked, "work has started")),
        (manager, cmd.Approve(failed)),
        (FULFILMENT, cmd.ChangeItemStates.one(failed, "i0", ItemState.FAILED)),
        (manager, cmd.Approve(revised)),
        (UPSTREAM, cmd.Revise(revised, header=HeaderChange(priority="1"))),
        (manager, cmd.RefuseProposal(revised, "not now")),
    ):
        with contextlib.suppress(DomainError):  # the coverage assertion says what is missing
            app.handle(ctx, command)


def event_types(db: ReadDb) -> set[str]:
    return {
        r[0].rsplit(":", 1)[-1]
        for r in db.fetchall(f"SELECT DISTINCT topic FROM {db.events_table}")
    }


@pytest.fixture
def db(settings: Settings, app: ServiceOrders) -> Any:
    read_db = open_read_db(settings)
    yield read_db
    read_db.close()


@hsettings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), orders=st.integers(2, 6), batch_size=st.integers(1, 40))
def test_fast_decoding_projects_the_same_rows_as_pydantic(app, db, seed, orders, batch_size):
    history = random_history(app, seed, orders=orders, commands=orders * 12)
    assert history.applied > 0
    assert_same_rows(db, batch_size)


def test_every_event_type_projects_the_same_rows(app, db):
    """One long history that holds every order event type (and services' events)."""
    history = random_history(app, 20261206, orders=12, commands=700)
    more_events(app, history, 1)
    seen = event_types(db)
    order_types = {cls.__name__ for cls in ev.ALL_EVENTS}
    missing = order_types - seen
    assert not missing, f"the history lacks {sorted(missing)}"
    assert seen & {cls.__name__ for cls in ServiceEvent.__subclasses__()}
    for batch_size in (3, 50, 4000):
        assert_same_rows(db, batch_size)


def test_each_mirror_holds_what_its_model_holds(app, db):
    """Every stored order event decoded both ways: the same value in every field."""
    random_history(app, 7, orders=8, commands=300)
    mapper = event_mapper()
    log = EventLog(db, mapper)
    decoder = decoding.FastDecoder(log.mapper)
    rows = db.fetchall(
        f"SELECT originator_id, originator_version, topic, state FROM {db.events_table} "
        f"ORDER BY {db.log_position}"
    )
    mirrored: set[str] = set()
    for originator_id, version, topic, state in rows:
        from eventsourcing.persistence import StoredEvent

        stored = StoredEvent(
            originator_id=originator_id
            if isinstance(originator_id, UUID)
            else UUID(str(originator_id)),
            originator_version=int(version),
            topic=topic,
            state=bytes(state),
        )
        reference = log.mapper.to_domain_event(stored)
        fast = decoder.decode(stored)
        if fast is reference or type(fast) is type(reference):
            continue  # decoded the pydantic way (services' events, SLOW types)
        mirrored.add(type(reference).__name__)
        assert decoding.model_of(fast) is type(reference)
        assert decoding.is_a(fast, type(reference))
        copied = copy.deepcopy(fast)  # a copy of a mirror is built from values, not text
        for name in type(reference).model_fields:
            assert _same(getattr(fast, name), getattr(reference, name)), (topic, name)
            assert _same(getattr(copied, name), getattr(reference, name)), (topic, name)
    assert {"OrderDrafted", "OrderSubmitted", "OrderApproved"} <= mirrored


def _same(a: Any, b: Any) -> bool:
    """Equal values, a mirror compared with its model field by field."""
    if isinstance(b, BaseModel):
        return all(_same(getattr(a, n), getattr(b, n)) for n in type(b).model_fields)
    if isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    return type(a) is type(b) and a == b if not isinstance(b, str) else a == b


def test_an_order_with_an_event_only_pydantic_folds_is_decoded_the_pydantic_way(app, db):
    """A configured line (LineConfigured validates a model in its `apply`): every event of
    that order, in the page and before it, is decoded into pydantic models."""
    order_id = app.handle(AGENT, cmd.DraftOrder(_header(1, 2))).order.id
    app.handle(AGENT, cmd.AddLine(order_id, _items_for(1)[0]))
    log = EventLog(db, event_mapper())
    first = log.read(after=0, limit=100)
    assert any(hasattr(type(e), "__mirror_of__") for _, e in first)  # fast before
    app.handle(
        AGENT, cmd.ConfigureLine(order_id, _items_for(1)[0].id, characteristics={"model": "x"})
    )
    page = log.read(after=first[-1][0], limit=100)
    assert [type(e).__name__ for _, e in page] == ["LineConfigured"]
    assert order_id in log._slow
    history = log.history([order_id], before=page[0][0])[order_id]
    assert history and all(not hasattr(type(e), "__mirror_of__") for e in history)


# ------------------------------------- documents rendered from earlier items (issue 21)
def _documents_match(db: ReadDb, fast: bool) -> tuple[int, int]:
    """Every order of the log folded event by event (decoded as the projector decodes it,
    mirrors or pydantic): at each version, its TMF641 document rendered from the items'
    renderings of its earlier versions equals the document rendered whole. Returns (items
    rendered, items taken from an earlier rendering), milestones counted as items."""
    log = EventLog(db, event_mapper(), fast=fast)
    events = log.read(after=0, limit=1_000_000)
    orders: dict[UUID, Any] = {}
    renders: dict[UUID, Renders] = {}
    shown = reused = 0
    for _, event in events:
        if not decoding.is_a(event, ev.OrderEvent):
            continue
        oid = event.originator_id
        earlier = dict(renders[oid].items) if oid in renders else {}
        before = [r for _, r in renders[oid].milestones] if oid in renders else []
        order = orders[oid] = event.mutate(orders.get(oid))
        if not visible(order):
            continue
        doc = order_to_tmf641(order, renders.setdefault(oid, Renders()))
        assert doc == order_to_tmf641(order), (event.TOPIC, order.version)
        for item in document_items(doc):
            shown += 1
            reused += any(item is found[3] for found in earlier.values())
        for milestone in doc.get("milestone", ()):
            shown += 1
            reused += any(milestone is r for r in before)
    return shown, reused


def test_a_document_renders_again_only_the_items_that_changed(app, db):
    """Every order event type (and both decodings): the incremental document is the
    whole one, and most items of a later event's document are taken as they were."""
    history = random_history(app, 20261206, orders=12, commands=700)
    more_events(app, history, 1)
    assert {cls.__name__ for cls in ev.ALL_EVENTS} <= event_types(db)
    for fast in (True, False):
        shown, reused = _documents_match(db, fast)
        assert 0 < reused < shown, (shown, reused)


@hsettings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), orders=st.integers(1, 5))
def test_incremental_documents_on_random_histories(app, db, seed, orders):
    random_history(app, seed, orders=orders, commands=orders * 15)
    _documents_match(db, fast=True)

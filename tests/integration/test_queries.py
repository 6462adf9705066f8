"""The query module the API uses: review queue filters and order, paging, order search,
counts — on PostgreSQL and SQLite, with hostile filter values kept as plain data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builders import id_created
from builders import item as build_item
from serviceorders.bootstrap import build_projector
from serviceorders.domain import commands as cmd
from serviceorders.domain import values as v
from serviceorders.projections.queries import OrderFilter, QueueFilter, ReadModels

pytestmark = pytest.mark.integration


def item(item_id: str, site: str, spec: str = "internet-access", **chars: Any) -> v.OrderItem:
    values = (
        {"bandwidthMbps": 100, "accessType": "fibre"}
        if spec == "internet-access"
        else {"model": "c1100"}
    )
    return build_item(item_id, spec, characteristics={**values, **chars}, place=v.Place(id=site))


@pytest.fixture
def world(app, settings, actors) -> Iterator[tuple[ReadModels, dict[str, Any]]]:
    """Five orders: three in review (priorities 1, 2, none), one being cancelled, one done."""
    ids = {}

    def receive(
        ext: str,
        priority: str | None,
        customer: str,
        items: list[v.OrderItem],
        category: str = "enterprise",
    ) -> Any:
        header = v.OrderHeader(
            external_id=ext,
            priority=priority,
            category=category,
            related_parties=(v.Party(id=customer),),
        )
        order_id, _ = id_created(
            app.handle(actors.upstream, cmd.ReceiveOrder(header, tuple(items)))
        )
        ids[ext] = order_id
        return order_id

    receive("A", "2", "C1", [item("1", "S1")])
    receive("B", "1", "C2", [item("1", "S2"), item("2", "S2", "managed-router")])
    receive("C", None, "C1", [item("1", "S3", bandwidthMbps=7)], category="smb")
    cancelling = receive("D", "1", "C3", [item("1", "S1")])
    app.handle(actors.manager, cmd.Approve(cancelling))
    app.handle(actors.agent, cmd.RequestCancellation(cancelling, reason="moved office"))
    done = receive("E", "3", "C1", [item("1", "S4")])
    app.handle(actors.manager, cmd.Approve(done))
    app.handle(actors.fulfilment, cmd.ChangeItemStates.one(done, "1", v.ItemState.COMPLETED))
    app.handle(actors.agent, cmd.DraftOrder(v.OrderHeader(external_id="F-draft")))
    projector = build_projector(settings)
    projector.catch_up()
    yield ReadModels(projector.db), ids
    projector.db.close()


def test_review_queue_is_sorted_by_priority_then_age(world) -> None:
    models, ids = world
    page = models.review_queue()
    assert [(r["order_id"], r["kind"]) for r in page.items] == [
        (ids["B"], "approval"),
        (ids["D"], "cancellation"),
        (ids["A"], "approval"),
        (ids["C"], "approval"),
    ]
    assert page.total == 4
    assert all(r["age_seconds"] >= 0 for r in page.items)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (QueueFilter(kind="cancellation"), ["D"]),
        (QueueFilter(kind="approval", customer="C1"), ["A", "C"]),
        (QueueFilter(site="S2"), ["B"]),
        (QueueFilter(site="S1"), ["D", "A"]),
        (QueueFilter(priority="1"), ["B", "D"]),
        (QueueFilter(specification="managed-router"), ["B"]),
        (QueueFilter(older_than=timedelta(hours=1)), []),
        (QueueFilter(younger_than=timedelta(hours=1)), ["B", "D", "A", "C"]),
    ],
)
def test_review_queue_filters(world, where: QueueFilter, expected: list[str]) -> None:
    models, ids = world
    assert [r["order_id"] for r in models.review_queue(where).items] == [ids[e] for e in expected]


def test_age_is_computed_at_query_time(world) -> None:
    models, _ids = world
    later = datetime.now(UTC) + timedelta(days=2)
    page = models.review_queue(QueueFilter(older_than=timedelta(days=1)), now=later)
    assert page.total == 4
    assert min(r["age_seconds"] for r in page.items) > 86400


def test_review_queue_rows_carry_flags_for_the_reviewer(world) -> None:
    models, ids = world
    row = next(r for r in models.review_queue().items if r["order_id"] == ids["C"])
    assert row["flag_count"] == 1 and row["flags"][0]["code"] == "value_not_allowed"
    assert row["sites"] == ["S3"] and row["item_actions"] == {"add": 1}


def test_paging(world) -> None:
    models, _ids = world
    first = models.review_queue(offset=0, limit=3)
    rest = models.review_queue(offset=3, limit=3)
    assert first.total == rest.total == 4
    assert len(first.items) == 3 and len(rest.items) == 1
    assert models.review_queue(limit=-5).items == []
    assert len(models.review_queue(limit=10**9).items) == 4  # clamped, not refused


def test_order_search(world) -> None:
    models, ids = world
    assert {r["id"] for r in models.search_orders(OrderFilter(state="acknowledged")).items} == {
        ids["A"],
        ids["B"],
        ids["C"],
    }
    assert [r["id"] for r in models.search_orders(OrderFilter(external_id="E")).items] == [ids["E"]]
    assert models.search_orders(OrderFilter(category="smb")).total == 1
    assert models.search_orders(OrderFilter(customer="C1")).total == 3
    assert models.search_orders().total == 5  # drafts are left out unless asked for
    assert models.search_orders(OrderFilter(include_drafts=True)).total == 6
    future = datetime.now(UTC) + timedelta(minutes=5)
    assert models.search_orders(OrderFilter(order_date_from=future)).total == 0
    assert models.search_orders(OrderFilter(order_date_to=future)).total == 5


def test_documents_never_include_drafts(world) -> None:
    models, ids = world
    docs = models.documents(limit=100)
    assert docs.total == 5
    assert all(d["document"]["state"] != "draft" for d in docs.items)
    assert models.document(ids["E"])["document"]["state"] == "completed"


def test_counts(world) -> None:
    models, _ = world
    assert models.counts("state") == {"acknowledged": 3, "assessingCancellation": 1, "completed": 1}
    assert models.counts("state", include_drafts=True)["draft"] == 1
    assert models.counts("customer")["C1"] == 3
    with pytest.raises(ValueError, match="cannot count"):
        models.counts("state; DROP TABLE order_summary")


def test_cancellation_requests(world) -> None:
    models, ids = world
    page = models.cancellation_requests(order_id=ids["D"])
    assert page.total == 1
    request = page.items[0]
    assert request["state"] == "accepted" and request["reason"] == "moved office"
    assert models.cancellation_request(request["id"])["order_id"] == ids["D"]


@pytest.mark.parametrize(
    "hostile", ["' OR '1'='1", "x'; DROP TABLE order_summary; --", '") OR 1=1 --', "%", "S1' --"]
)
def test_filter_values_cannot_reach_sql(world, hostile: str) -> None:
    models, _ = world
    assert models.review_queue(QueueFilter(site=hostile, customer=hostile)).total == 0
    assert models.search_orders(OrderFilter(state=hostile, external_id=hostile)).total == 0
    assert models.search_orders().total == 5  # the table is still there

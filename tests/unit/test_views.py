"""The read-model row functions of projections/views.py on hand-built orders (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from builders import agent, fulfilment, manager, upstream
from builders import item as build_item
from builders import router as build_router
from serviceorders.domain import values as v
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.proposals import diff
from serviceorders.projections import views
from serviceorders.projections.log import Transition
from serviceorders.projections.views import (
    dimensions,
    history_row,
    item_rows,
    milestone_rows,
    outcome_rows,
    place_rows,
    queue_rows,
    relationship_rows,
    summary_row,
)

pytestmark = pytest.mark.unit

CATALOG = Catalog.default()
UPSTREAM, AGENT, MANAGER, FULFILMENT = upstream(), agent(), manager(), fulfilment()


def internet(item_id: str = "1", site: str | None = "site-1", **kw):
    return build_item(item_id, place=v.Place(id=site, name=f"{site} name") if site else None, **kw)


def router(item_id: str = "2", site: str | None = "site-1", **kw):
    return build_router(item_id, place=v.Place(id=site) if site else None, **kw)


def header(**kw) -> v.OrderHeader:
    fields = {
        "external_id": f"ext-{uuid4().hex[:8]}",
        "category": "enterprise",
        "priority": "2",
        "description": "two services",
        "related_parties": (
            v.Party(id="cust-9", name="ACME"),
            v.Party(id="acct-1", role="billing"),
        ),
    }
    return v.OrderHeader(**{**fields, **kw})


def received(items=None, **kw) -> ServiceOrder:
    items = (
        items
        if items is not None
        else [internet("1", "site-1"), router("2", "site-2", depends_on=("1",))]
    )
    return ServiceOrder.receive(UPSTREAM, header(**kw), items, CATALOG)


# ---------------------------------------------------------------------- summary_row
def test_summary_row_of_an_order_in_review():
    order = received()
    row = summary_row(order)

    assert row["id"] == order.id and row["version"] == order.version == 2
    assert row["state"] == "acknowledged"
    assert row["external_id"] == order.header.external_id
    assert (row["category"], row["priority"], row["description"]) == (
        "enterprise",
        "2",
        "two services",
    )
    # The customer is the related party with role customer, not any other party.
    assert (row["customer_id"], row["customer_name"]) == ("cust-9", "ACME")
    assert (row["item_count"], row["site_count"], row["flag_count"]) == (2, 2, 0)
    assert row["submitted_by"] == "crm"
    assert row["submitted_at"] == row["order_date"] == order.submitted_at is not None
    assert row["created_at"] == order.created_on
    assert row["last_change_at"] == order.modified_on
    assert row["state_since"] == order.state_since == order.submitted_at
    for column in ("approved_by", "approved_at", "rejected_by", "rejected_at", "rejection_reason"):
        assert row[column] is None, column
    assert row["point_of_no_return"] is False


def test_summary_row_approved_fills_the_approval_columns_only():
    order = received()
    order.approve(MANAGER, note="fine")
    order.reach_point_of_no_return(FULFILMENT)
    row = summary_row(order)

    assert row["state"] == "inProgress"
    assert (row["approved_by"], row["approved_at"]) == ("bob", order.decided_at)
    assert row["approved_at"] is not None
    assert (row["rejected_by"], row["rejected_at"], row["rejection_reason"]) == (None,) * 3
    assert row["point_of_no_return"] is True
    assert row["version"] == order.version == 4


def test_summary_row_rejected_fills_the_rejection_columns_only():
    order = received()
    order.reject(MANAGER, "  no budget ")
    row = summary_row(order)

    assert row["state"] == "rejected"
    assert (row["rejected_by"], row["rejected_at"]) == ("bob", order.decided_at)
    assert row["rejected_at"] is not None
    assert row["rejection_reason"] == "no budget"
    assert (row["approved_by"], row["approved_at"]) == (None, None)


def test_summary_row_counts_distinct_sites_and_flags():
    # Three items on two sites, one without a site (a flag, not a refusal), one unknown
    # characteristic (another flag).
    items = [
        internet("1", "site-a"),
        router("2", "site-a"),
        internet("3", None, quantity=2),
        router("4", "site-b").model_copy(
            update={"characteristics": {"model": "c1100", "colour": "red"}}
        ),
    ]
    order = received(items)
    row = summary_row(order)

    assert row["item_count"] == 4
    assert row["site_count"] == 2
    assert row["flag_count"] == len(order.flags) == 2
    assert {f.code for f in order.flags} == {"missing_place", "unknown_characteristic"}


def test_summary_row_of_a_draft_without_customer():
    order = ServiceOrder.draft(AGENT, v.OrderHeader(external_id=None))
    row = summary_row(order)

    assert row["state"] == "draft"
    assert row["external_id"] is None
    assert (row["customer_id"], row["customer_name"]) == (None, None)
    assert (row["item_count"], row["site_count"], row["flag_count"]) == (0, 0, 0)
    assert (row["submitted_by"], row["submitted_at"], row["order_date"]) == (None, None, None)
    assert row["version"] == 1
    assert row["state_since"] == row["created_at"] == order.created_on


def test_summary_row_marks_deleted_orders():
    order = received()
    assert summary_row(order)["deleted"] is False
    order.reject(MANAGER, "no")
    order.delete(MANAGER, "archived")
    row = summary_row(order)
    assert row["deleted"] is True
    assert row["state"] == "rejected"  # deletion keeps the state
    assert row["version"] == order.version == 4
    assert queue_rows(order) == []


# ------------------------------------------------------------------------ item_rows
def test_item_rows_one_per_item_with_the_order_version():
    order = received([internet("1", "site-1"), router("2", None, depends_on=("1",), quantity=3)])
    order.approve(MANAGER)
    order.change_item_state(FULFILMENT, "1", v.ItemState.COMPLETED)
    rows = {r["item_id"]: r for r in item_rows(order)}

    assert set(rows) == {"1", "2"}
    assert all(r["order_id"] == order.id and r["version"] == order.version for r in rows.values())
    one, two = rows["1"], rows["2"]
    assert one["action"] == "add"
    assert one["specification_id"] == "internet-access"
    # The catalog filled in the specification's name and version.
    assert one["specification_name"] == "Dedicated Internet Access"
    assert one["specification_version"] == "2.1"
    assert (one["place_id"], one["place_name"]) == ("site-1", "site-1 name")
    assert one["state"] == "completed"
    assert one["depends_on"] == []
    assert one["characteristics"] == {"bandwidthMbps": 100, "accessType": "fibre"}
    assert two["state"] == "acknowledged"
    assert (two["place_id"], two["place_name"]) == (None, None)
    assert two["quantity"] == 3
    assert two["depends_on"] == ["1"]
    assert one["parent_id"] is None and two["parent_id"] is None


def test_item_rows_of_nested_items_name_their_parent():
    order = received([internet("1"), router("1.1", parent="1"), router("1.1.1", parent="1.1")])
    parents = {r["item_id"]: r["parent_id"] for r in item_rows(order)}
    assert parents == {"1": None, "1.1": "1", "1.1.1": "1.1"}


# ------------------------------------------- relationship, place, outcome, milestone
def test_orders_without_relationships_or_places_have_no_rows_and_render_no_document(
    monkeypatch,
):
    def rendered(_order):
        raise AssertionError("the document was rendered")

    monkeypatch.setattr(views, "order_to_tmf641", rendered)
    order = received([internet("1", None), router("2", None)])
    assert relationship_rows(order) == [] and place_rows(order) == []


def test_relationship_rows_the_order_s_then_each_item_s():
    order = received(
        [
            internet("1"),
            router(
                "2",
                depends_on=("1",),
                relationships=(
                    v.ItemRelation(
                        relationship_type="dependency",
                        item_id="1",
                        extra={"orderItem": {"@referredType": "ServiceOrderItem"}},
                    ),
                ),
            ),
        ],
        order_relationships=(
            v.OrderRelationship(
                id="PO-1", relationship_type="reliesOn", extra={"@referredType": "ProductOrder"}
            ),
            v.OrderRelationship(id="SO-2", relationship_type="succeeds"),
        ),
    )
    rows = relationship_rows(order)
    assert [r["seq"] for r in rows] == [0, 1, 2]
    assert [
        (
            r["item_id"],
            r["relationship_type"],
            r["related_order_id"],
            r["related_item_id"],
            r["referred_type"],
        )
        for r in rows
    ] == [
        (None, "reliesOn", "PO-1", None, "ProductOrder"),
        (None, "succeeds", "SO-2", None, "ServiceOrder"),  # the document's default
        ("2", "dependency", None, "1", "ServiceOrderItem"),
    ]
    assert all(r["order_id"] == order.id and r["version"] == order.version for r in rows)


def test_place_rows_every_place_as_the_document_shows_it():
    by_value = {"role": "deliveryContact", "@type": "GeographicAddress", "city": "Leeds"}
    site = {"id": "site-1", "name": "site-1 name", "@referredType": "GeographicSite"}
    order = received(
        [
            internet("1", service_extra={"place": [site, by_value]}),
            router("2", None),
            router("3", "site-3"),
        ]
    )
    rows = place_rows(order)
    assert [
        (r["item_id"], r["position"], r["place_id"], r["name"], r["place_type"]) for r in rows
    ] == [
        ("1", 0, "site-1", "site-1 name", "GeographicSite"),
        ("1", 1, None, None, "GeographicAddress"),
        ("3", 0, "site-3", None, "GeographicSite"),
    ]
    assert rows[1]["place"] == by_value and rows[1]["role"] == "deliveryContact"


def test_outcome_and_milestone_rows_in_the_order_they_happened():
    order = received([internet("1"), router("2")])
    order.approve(MANAGER)
    order.change_item_state(FULFILMENT, "1", v.ItemState.IN_PROGRESS)
    order.change_item_state(FULFILMENT, "1", v.ItemState.FAILED, "no line")
    milestones = milestone_rows(order)
    assert [(r["seq"], r["name"], r["item_ids"]) for r in milestones] == [
        (0, "approved", []),
        (1, "itemStarted", ["1"]),
    ]
    assert [r["milestone_id"] for r in milestones] == [m.id for m in order.milestones]
    (failed,) = outcome_rows(order)
    assert (failed["code"], failed["message"], failed["item_ids"]) == (
        "item_failed",
        "no line",
        ["1"],
    )
    assert failed["occurred_at"] == order.modified_on
    assert outcome_rows(received()) == [] and milestone_rows(received()) == []


def test_item_rows_of_a_draft_have_no_state_and_modify_items_keep_their_service():
    order = ServiceOrder.draft(AGENT, header())
    assert item_rows(order) == []
    order.add_line(
        AGENT,
        v.OrderItem(
            id="m", action=v.ItemAction.MODIFY, service_id="svc-7", place=v.Place(id="site-1")
        ),
        CATALOG,
    )
    (row,) = item_rows(order)
    assert row["state"] is None
    assert row["action"] == "modify"
    assert row["service_id"] == "svc-7"
    assert (row["specification_id"], row["specification_name"], row["specification_version"]) == (
        None,
        None,
        None,
    )
    assert row["version"] == 2


# ----------------------------------------------------------------------- queue_rows
def test_queue_rows_approval_for_an_acknowledged_order():
    order = received()
    (row,) = queue_rows(order)

    assert row["kind"] == "approval"
    assert row["order_id"] == order.id and row["version"] == order.version
    assert row["submitted_at"] == order.submitted_at
    assert row["submitted_by"] == "crm"
    assert row["reason"] is None
    assert (row["customer_id"], row["customer_name"]) == ("cust-9", "ACME")
    assert row["sites"] == ["site-1", "site-2"] and row["site_count"] == 2
    assert row["specifications"] == ["internet-access", "managed-router"]
    assert row["item_actions"] == {"add": 2}
    assert row["item_count"] == 2
    assert row["flags"] == [] and row["flag_count"] == 0
    assert (row["external_id"], row["priority"]) == (order.header.external_id, "2")


def test_queue_rows_approval_lists_flags_and_actions():
    items = [
        internet("1", None),
        v.OrderItem(
            id="2", action=v.ItemAction.DELETE, service_id="svc-1", place=v.Place(id="site-9")
        ),
    ]
    order = received(items)
    (row,) = queue_rows(order)
    assert row["item_actions"] == {"add": 1, "delete": 1}
    assert row["sites"] == ["site-9"]
    assert row["specifications"] == ["internet-access"]
    assert row["flag_count"] == 1
    assert row["flags"] == [f.model_dump(mode="json") for f in order.flags]
    assert row["flags"][0]["code"] == "missing_place"


def test_queue_rows_cancellation_while_assessing_cancellation():
    order = received()
    order.approve(MANAGER)
    requester = agent("dave")
    order.request_cancellation(requester, "customer moved")
    (row,) = queue_rows(order)

    assert order.state is v.OrderState.ASSESSING_CANCELLATION
    assert row["kind"] == "cancellation"
    assert row["reason"] == "customer moved"
    assert row["submitted_by"] == "dave"  # the requester, not the order's submitter
    assert row["submitted_at"] == order.state_since  # when the request came in
    assert row["submitted_at"] != order.submitted_at
    assert row["version"] == order.version


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([], id="draft"),
        pytest.param(["receive", "approve"], id="inProgress"),
        pytest.param(["receive", "reject"], id="rejected"),
        pytest.param(["receive", "approve", "hold"], id="held"),
        pytest.param(["receive", "approve", "info"], id="pending"),
        pytest.param(["receive", "approve", "request", "accept"], id="pendingCancellation"),
        pytest.param(["receive", "approve", "request", "accept", "cancel"], id="cancelled"),
        pytest.param(["receive", "approve", "request", "deny"], id="denied-back-inProgress"),
        pytest.param(["receive", "approve", "complete"], id="completed"),
    ],
)
def test_queue_rows_none_outside_review_and_assessment(steps):
    order = received() if steps else ServiceOrder.draft(AGENT, header())
    actions = {
        "receive": lambda: None,
        "approve": lambda: order.approve(MANAGER),
        "reject": lambda: order.reject(MANAGER, "no"),
        "hold": lambda: order.hold(FULFILMENT, "waiting"),
        "info": lambda: order.request_information(FULFILMENT, "which port?"),
        "request": lambda: order.request_cancellation(UPSTREAM, "changed mind"),
        "accept": lambda: order.approve_cancellation(MANAGER),
        "deny": lambda: order.deny_cancellation(MANAGER, "too late"),
        "cancel": lambda: order.cancel(FULFILMENT),
        "complete": lambda: [
            order.change_item_state(FULFILMENT, i, v.ItemState.COMPLETED) for i in ("1", "2")
        ],
    }
    for step in steps:
        actions[step]()
    assert queue_rows(order) == []


def test_queue_rows_back_to_approval_after_a_denied_cancellation_in_review():
    order = received()
    order.request_cancellation(UPSTREAM, "oops")
    assert queue_rows(order)[0]["kind"] == "cancellation"
    order.deny_cancellation(MANAGER, "keep it")
    (row,) = queue_rows(order)
    assert row["kind"] == "approval"
    assert row["reason"] is None
    assert row["submitted_at"] == order.submitted_at
    assert row["submitted_by"] == "crm"


# ---------------------------------------------------------------------- history_row
def transition(**kw) -> Transition:
    at = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    fields = {
        "position": 7,
        "order_id": uuid4(),
        "version": 3,
        "from_state": v.OrderState.ACKNOWLEDGED,
        "to_state": v.OrderState.IN_PROGRESS,
        "at": at,
        "previous_since": at - timedelta(hours=2, seconds=1.5),
        "actor": v.Actor(id="bob", role=v.Role.MANAGER),
        "category": "enterprise",
        "specifications": ("internet-access", "managed-router"),
        "sites": ("site-1", "site-2"),
    }
    return Transition(**{**fields, **kw})


def test_history_row_seconds_in_previous_state():
    t = transition()
    row = history_row(t)
    assert row == {
        "order_id": t.order_id,
        "version": 3,
        "from_state": "acknowledged",
        "to_state": "inProgress",
        "changed_at": t.at,
        "previous_state_since": t.previous_since,
        "seconds_in_previous_state": 7201.5,
        "actor_id": "bob",
        "actor_role": "manager",
    }


def test_history_row_of_the_creation_has_no_previous_state():
    t = transition(
        version=1,
        from_state=None,
        to_state=v.OrderState.DRAFT,
        previous_since=None,
        actor=v.Actor(id="alice", role=v.Role.AGENT),
    )
    row = history_row(t)
    assert row["from_state"] is None
    assert row["to_state"] == "draft"
    assert row["previous_state_since"] is None
    assert row["seconds_in_previous_state"] is None
    assert (row["actor_id"], row["actor_role"]) == ("alice", "agent")


def test_history_row_across_days_and_timezones():
    at = datetime(2024, 3, 2, 0, 30, tzinfo=UTC)
    since = datetime(2024, 3, 1, 23, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    row = history_row(transition(at=at, previous_since=since))
    assert row["seconds_in_previous_state"] == 3600.0


# ----------------------------------------------------------------------- dimensions
def test_dimensions_overall_category_each_specification_and_site():
    assert list(dimensions(transition())) == [
        ("all", ""),
        ("category", "enterprise"),
        ("specification", "internet-access"),
        ("specification", "managed-router"),
        ("site", "site-1"),
        ("site", "site-2"),
    ]


def test_dimensions_without_category_specifications_or_sites():
    t = transition(category=None, specifications=(), sites=())
    assert list(dimensions(t)) == [("all", ""), ("category", "")]


# ------------------------------------------------------------ queue_rows: proposals
def proposed(**kw) -> ServiceOrder:
    """An approved order with a proposal by alice: item 1 at 1000 Mbit/s, a description."""
    order = received(**kw)
    order.approve(MANAGER)
    faster = internet("1", "site-1", characteristics={"bandwidthMbps": 1000, "accessType": "fibre"})
    change = v.HeaderChange(description="faster")
    assert order.revise(AGENT, CATALOG, [faster], (), change) is not None
    return order


def test_queue_rows_proposal_while_a_change_to_an_approved_order_waits():
    order = proposed()
    (row,) = queue_rows(order)
    proposal = order.proposal
    assert proposal is not None and order.state is v.OrderState.IN_PROGRESS
    assert row["kind"] == "proposal"
    assert (row["submitted_at"], row["submitted_by"]) == (proposal.proposed_at, "alice")
    assert row["reason"] == proposal.id and row["version"] == order.version
    assert row["flags"] == [f.model_dump(mode="json") for f in proposal.flags]
    assert row["changes"] == [
        {
            "path": "description",
            "kind": "changed",
            "current": "two services",
            "proposed": "faster",
        },
        {
            "path": "items[1].characteristics.bandwidthMbps",
            "kind": "changed",
            "current": 100,
            "proposed": 1000,
        },
    ]
    # decided: out of the queue
    order.refuse_proposal(manager("carol"), "no")
    assert queue_rows(order) == []


def test_queue_rows_proposal_beside_a_cancellation_request():
    order = proposed()
    order.request_cancellation(agent("dave"), "customer moved")
    rows = {row["kind"]: row for row in queue_rows(order)}
    assert set(rows) == {"cancellation", "proposal"}
    assert rows["cancellation"]["changes"] == []
    assert rows["proposal"]["changes"]


def test_the_diff_of_a_proposal_read_back_from_the_store_names_only_its_changes():
    order = proposed()
    proposal = order.proposal
    assert proposal is not None
    # the event store writes every attribute of the HeaderChange (None: unchanged)
    stored = v.Proposal.model_validate(proposal.model_dump(mode="json"))
    assert stored.header.model_fields_set > {"description"}
    assert [c.path for c in diff(order.header, order.items, stored)] == [
        "description",
        "items[1].characteristics.bandwidthMbps",
    ]

"""Services on the write side (issue 20), through the one door on in-memory recorders: a
completed order changes the inventory in its own save; change and disconnect items are
checked against it (refused naming the item, or flagged); imports apply once."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from builders import (
    MemorySealer,
    customer,
    fulfilment,
    item,
    manager,
    memory_app,
    operator,
    receive,
    router,
    upstream,
)
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import (
    NotPermitted,
    ServiceConflict,
    ServiceNotFound,
    ValidationFailed,
    answer_for,
)
from serviceorders.domain.inventory import CheckMode
from serviceorders.domain.service import Service, service_id_for, service_key
from serviceorders.domain.values import (
    ItemAction,
    ItemState,
    OrderState,
    Party,
    Place,
    ServiceRecord,
    ServiceState,
    SpecRef,
)

pytestmark = pytest.mark.unit

ACME = customer("CUST-1", "Acme")
OTHER = customer("CUST-2", "Other")


@pytest.fixture
def app() -> Iterator[ServiceOrders]:
    application = memory_app()
    yield application
    application.close()


def complete(app: ServiceOrders, order_id: UUID) -> None:
    app.handle(manager(), cmd.Approve(order_id))
    order = app.get_order(order_id)
    changes = tuple(cmd.ItemStateChange(i, ItemState.COMPLETED) for i in order.items)
    app.handle(fulfilment(), cmd.ChangeItemStates(order_id, changes))


def added(app: ServiceOrders, ext: str = "add-1", party: Party = ACME, **kw) -> str:
    """A completed order adding internet access: the new service's id."""
    outcome = app.handle(upstream(), receive(ext, [item("1", **kw)], related_parties=(party,)))
    complete(app, outcome.order_id)
    return service_id_for(outcome.order_id, "1")


def change(service_id: str, action: ItemAction = ItemAction.MODIFY, **kw) -> list:
    return [item("1", action=action, service_id=service_id, **kw)]


def test_a_completed_add_item_creates_its_service_in_the_same_save(app) -> None:
    outcome = app.handle(upstream(), receive("add-1", [item("1")], related_parties=(ACME,)))
    app.handle(manager(), cmd.Approve(outcome.order_id))
    position = app.recorder.max_notification_id()
    app.handle(
        fulfilment(),
        cmd.ChangeItemStates(outcome.order_id, (cmd.ItemStateChange("1", ItemState.COMPLETED),)),
    )
    service = app.get_service(service_id_for(outcome.order_id, "1"))
    assert service.state is ServiceState.ACTIVE
    assert service.customer_id == "CUST-1"
    assert service.specification.id == "internet-access"
    assert service.characteristics == {"bandwidthMbps": 100, "accessType": "fibre"}
    assert [p.id for p in service.places] == ["site-1"]
    assert service.created_by == (str(outcome.order_id), "1")
    # the order's completion and the service's creation: one save, consecutive positions
    new = app.recorder.select_notifications(position + 1, 10)
    assert [n.topic.rsplit(":", 1)[1] for n in new] == [
        "ItemStateChanged",
        "OrderCompleted",
        "ServiceCreated",
    ]


def test_a_modify_right_after_is_checked_against_the_truth_and_records_previous_values(
    app,
) -> None:
    sid = added(app)
    outcome = app.handle(
        upstream(),
        receive(
            "mod-1",
            change(sid, characteristics={"bandwidthMbps": 500, "accessType": "fibre"}),
            related_parties=(ACME,),
        ),
    )
    order = outcome.order
    assert order.state is OrderState.ACKNOWLEDGED
    check = order.inventory["1"]
    assert check.service_id == sid and check.previous == {"bandwidthMbps": 100}
    assert app.get_service(sid).open_orders == {str(order.id): ("1",)}
    complete(app, order.id)
    service = app.get_service(sid)
    assert service.characteristics["bandwidthMbps"] == 500
    assert service.open_orders == {}
    assert service.modified_by == (str(order.id), "1")


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown", "service_not_found"),
        ("terminated", "service_not_active"),
        ("other customer", "service_other_customer"),
        ("other specification", "service_other_specification"),
    ],
)
@pytest.mark.parametrize("action", [ItemAction.MODIFY, ItemAction.DELETE, ItemAction.NO_CHANGE])
def test_every_failing_check_is_refused_naming_the_item_or_flagged(case, code, action) -> None:
    for mode in CheckMode:
        app = memory_app(inventory_check=mode)
        sid = added(app)
        party, items = ACME, change(sid, action)
        if case == "unknown":
            items = change("SVC-DOES-NOT-EXIST", action)
        elif case == "terminated":
            done = app.handle(
                upstream(),
                receive("del-0", change(sid, ItemAction.DELETE), related_parties=(ACME,)),
            )
            complete(app, done.order_id)
        elif case == "other customer":
            party = OTHER
        else:
            items = [router("1", action=action, service_id=sid)]
        command = receive(f"{case}-{action}", items, related_parties=(party,))
        if mode is CheckMode.REFUSE:
            with pytest.raises(ValidationFailed) as refused:
                app.handle(upstream(), command)
            assert [(p.code, p.item_id) for p in refused.value.problems] == [(code, "1")]
            assert "item 1" in str(refused.value)
            assert answer_for(refused.value).http_status == 400
        else:
            order = app.handle(upstream(), command).order
            assert [(f.code, f.item_id) for f in order.flags] == [(code, "1")]
        app.close()


def test_two_open_orders_on_one_service_flag_the_second(app) -> None:
    sid = added(app)
    first = app.handle(upstream(), receive("mod-1", change(sid), related_parties=(ACME,)))
    assert first.order.flags == ()
    second = app.handle(upstream(), receive("mod-2", change(sid), related_parties=(ACME,)))
    assert [f.code for f in second.order.flags] == ["service_in_open_order"]
    assert str(first.order_id) in second.order.flags[0].message
    # the first ends (rejected): a third is not flagged any more for it
    app.handle(manager(), cmd.Reject(first.order_id, "no"))
    third = app.handle(upstream(), receive("mod-3", change(sid), related_parties=(ACME,)))
    assert [f.message for f in third.order.flags] == [
        f"item 1: service {sid} is also changed by open order(s) {second.order_id} "
        "(service_in_open_order)"
    ]


def test_disconnecting_a_service_another_active_one_depends_on_is_flagged(app) -> None:
    outcome = app.handle(
        upstream(),
        receive("add-2", [item("1"), router("2", depends_on=("1",))], related_parties=(ACME,)),
    )
    complete(app, outcome.order_id)
    access, box = (service_id_for(outcome.order_id, i) for i in ("1", "2"))
    assert app.get_service(box).depends_on == (access,)
    assert app.get_service(access).dependents == (box,)
    order = app.handle(
        upstream(), receive("del-1", change(access, ItemAction.DELETE), related_parties=(ACME,))
    ).order
    assert [f.code for f in order.flags] == ["service_has_dependents"]
    # once the router is disconnected, the access line is free to go
    gone = app.handle(
        upstream(),
        receive(
            "del-2",
            [router("1", action=ItemAction.DELETE, service_id=box)],
            related_parties=(ACME,),
        ),
    )
    complete(app, gone.order_id)
    assert app.get_service(box).state is ServiceState.TERMINATED
    assert app.get_service(access).dependents == ()


def test_a_failed_or_cancelled_order_releases_its_services_unchanged(app) -> None:
    sid = added(app)
    before = app.get_service(sid).characteristics
    order = app.handle(
        upstream(),
        receive(
            "mod-1", change(sid, characteristics={"bandwidthMbps": 9}), related_parties=(ACME,)
        ),
    )
    app.handle(manager(), cmd.Approve(order.order_id))
    app.handle(
        fulfilment(),
        cmd.ChangeItemStates(order.order_id, (cmd.ItemStateChange("1", ItemState.FAILED),)),
    )
    service = app.get_service(sid)
    assert service.characteristics == before and service.open_orders == {}


def test_import_applies_once_and_refuses_other_content_under_its_id(app) -> None:
    record = ServiceRecord(
        id="LEGACY-1",
        name="Acme HQ line",
        specification=SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 50},
        places=(Place(id="site-1", name="HQ"),),
        customer=Party(id="CUST-1", name="Acme", role="customer"),
        extra={"category": "business"},
    )
    assert app.handle(operator(), cmd.ImportService(record)).created
    again = app.handle(operator(), cmd.ImportService(record))
    assert not again.created and again.service.version == 1
    with pytest.raises(ServiceConflict):
        app.handle(operator(), cmd.ImportService(record.model_copy(update={"name": "x"})))
    with pytest.raises(NotPermitted):
        app.handle(manager(), cmd.ImportService(record.model_copy(update={"id": "LEGACY-2"})))
    # an imported service is changed by orders like any other
    order = app.handle(
        upstream(), receive("mod-1", change("LEGACY-1"), related_parties=(ACME,))
    ).order
    assert order.inventory["1"].previous == {"bandwidthMbps": 50}


def test_personal_data_of_a_service_is_sealed_under_the_customers_key() -> None:
    sealer = MemorySealer()
    app = memory_app(sealer=sealer)
    sid = added(app, place=Place(id="site-1", name="Main St 1"))
    stored = app.recorder.select_events(service_key(sid))
    assert b"Main St 1" not in stored[0].state and b"Acme" not in stored[0].state
    service = app.get_service(sid)  # the repository reveals
    assert service.places[0].name == "Main St 1" and service.customer.name == "Acme"
    assert "CUST-1" in sealer.scopes


def test_an_order_id_is_not_a_service_and_a_service_id_is_not_an_order(app) -> None:
    sid = added(app)
    with pytest.raises(ServiceNotFound):
        app.get_service("nope")
    from serviceorders.domain.errors import OrderNotFound

    with pytest.raises(OrderNotFound):
        app.get_order(service_key(sid))
    assert isinstance(app.repository.get(service_key(sid)), Service)


def test_the_same_change_order_again_is_the_order_it_is_after_the_inventory_moved_on(app) -> None:
    sid = added(app)
    command = receive("del-1", change(sid, ItemAction.DELETE), related_parties=(ACME,))
    first = app.handle(upstream(), command)
    complete(app, first.order_id)
    assert app.get_service(sid).state is ServiceState.TERMINATED
    again = app.handle(upstream(), command)  # its service is gone now: still that order
    assert again.order_id == first.order_id and not again.created
    assert again.order.state is OrderState.COMPLETED


def test_a_modify_at_the_same_named_place_is_no_move_with_personal_data_sealed() -> None:
    app = memory_app(sealer=MemorySealer())
    place = Place(id="site-1", name="Main St 1")
    sid = added(app, place=place, service_name="HQ line")
    order = app.handle(
        upstream(),
        receive(
            "mod-1",
            change(
                sid, characteristics={"bandwidthMbps": 300}, place=place, service_name="HQ line"
            ),
            related_parties=(ACME,),
        ),
    )
    complete(app, order.order_id)
    modified = app.service_history(sid)[-1]
    assert type(modified).__name__ == "ServiceModified"
    assert (modified.place, modified.name) == (None, None)  # same place, same name
    assert modified.characteristics == {"bandwidthMbps": 300}
    moved = app.handle(
        upstream(),
        receive(
            "mod-2", change(sid, place=Place(id="site-9", name="Elm Rd")), related_parties=(ACME,)
        ),
    )
    complete(app, moved.order_id)
    assert app.get_service(sid).places[0].name == "Elm Rd"


def test_the_service_as_of_a_time_without_an_offset_is_as_of_that_utc_time(app) -> None:
    from datetime import UTC, timedelta

    sid = added(app)
    created = app.get_service(sid).created_at
    naive = created.astimezone(UTC).replace(tzinfo=None)
    assert app.service_as_of(sid, naive + timedelta(seconds=1)).service_id == sid
    assert app.service_as_of(sid, naive - timedelta(seconds=1)) is None


def test_an_approved_proposal_keeps_the_inventory_flags_of_the_items_it_leaves_alone() -> None:
    app = memory_app(inventory_check=CheckMode.FLAG)
    unknown = change("SVC-UNKNOWN")
    order_id = app.handle(
        upstream(), receive("flagged", [*unknown, item("2")], related_parties=(ACME,))
    ).order_id
    assert [(f.code, f.item_id) for f in app.get_order(order_id).flags] == [
        ("service_not_found", "1")
    ]
    app.handle(manager(), cmd.Approve(order_id))
    faster = item("2", characteristics={"bandwidthMbps": 1000, "accessType": "fibre"})
    proposal = app.handle(upstream(), cmd.Revise(order_id, (faster,)))
    assert proposal.proposal_id is not None
    app.handle(manager("carol"), cmd.ApproveProposal(order_id))
    order = app.get_order(order_id)
    assert order.items["2"].characteristics["bandwidthMbps"] == 1000
    assert [(f.code, f.item_id) for f in order.flags] == [("service_not_found", "1")]

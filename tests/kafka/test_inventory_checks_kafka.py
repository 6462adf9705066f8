"""Change and disconnect orders over Kafka, checked against the inventory (issue 20,
acceptance 2), on a real broker: every failing check (an unknown service, a terminated one,
another customer's, one of another specification), for `modify`, `delete` and `noChange`,
is a dead letter (category `refused`) whose reason names the item, and nothing is created
(SERVICEORDERS_INVENTORY_CHECK=refuse, the default); under `flag` each order comes in,
flagged to its reviewer with the problem's code and item. A change of the customer's own
service, in the same batch, is applied with its previous values. On both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from builders import customer, fulfilment, item, manager, order_body, receive, upstream, wait_for
from serviceorders.bootstrap import build_application
from serviceorders.consumers import envelope as env
from serviceorders.consumers.sample import create_event
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.order import order_id_for
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import ItemAction, ItemState
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb

from .conftest import produce

pytestmark = pytest.mark.kafka

UNKNOWN = "SVC-DOES-NOT-EXIST"
CASES = {
    "unknown": "service_not_found",
    "terminated": "service_not_active",
    "other-customer": "service_other_customer",
    "other-specification": "service_other_specification",
}
ACTIONS = ("modify", "delete", "noChange")
MESSAGES = {f"{case}-{action}": (case, action) for case in CASES for action in ACTIONS}
GOOD = "own-modify"


def complete(app: ServiceOrders, order_id: UUID) -> None:
    app.handle(manager(), cmd.Approve(order_id))
    items = app.get_order(order_id).items
    changes = tuple(cmd.ItemStateChange(i, ItemState.COMPLETED) for i in items)
    app.handle(fulfilment(), cmd.ChangeItemStates(order_id, changes))


@pytest.fixture
def services(ks: Settings) -> dict[str, str]:
    """Two services of CUST-1 made by completed orders: `active`, and `terminated` (a
    completed delete): their ids."""
    app = build_application(ks)
    try:
        made = {}
        for name in ("active", "terminated"):
            outcome = app.handle(
                upstream(), receive(f"add-{name}", [item("1")], related_parties=(customer(),))
            )
            complete(app, outcome.order_id)
            made[name] = service_id_for(outcome.order_id, "1")
        gone = app.handle(
            upstream(),
            receive(
                "del-0",
                [item("1", action=ItemAction.DELETE, service_id=made["terminated"])],
                related_parties=(customer(),),
            ),
        )
        complete(app, gone.order_id)
        return made
    finally:
        app.close()


def change_item(service_id: str, action: str, spec: str = "internet-access") -> dict[str, Any]:
    service: dict[str, Any] = {
        "id": service_id,
        "serviceSpecification": {"id": spec},
        "place": [{"id": "S1", "name": "Site one"}],
    }
    if action == "modify":
        chars = {"bandwidthMbps": 500} if spec == "internet-access" else {"model": "c8300"}
        service["serviceCharacteristic"] = [{"name": k, "value": v} for k, v in chars.items()]
    return {"id": "1", "action": action, "service": service}


def messages(services: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """One create per failing check and action (key = external id), and a good modify."""
    out = []
    for external_id, (case, action) in MESSAGES.items():
        sid, spec, party = services["active"], "internet-access", ("CUST-1", "Acme")
        if case == "unknown":
            sid = UNKNOWN
        elif case == "terminated":
            sid = services["terminated"]
        elif case == "other-customer":
            party = ("CUST-2", "Other")
        else:
            spec = "managed-router"
        body = order_body(external_id, customer=party, order_items=[change_item(sid, action, spec)])
        out.append((external_id.encode(), create_event(f"{external_id}-create", body)))
    good = order_body(GOOD, order_items=[change_item(services["active"], "modify")])
    out.append((GOOD.encode(), create_event(f"{GOOD}-create", good)))
    return out


def consume_all(
    ks: Settings, db: ReadDb, run_worker: Callable[..., Any], sent: list[tuple[bytes, bytes]]
) -> None:
    produce(ks, sent)
    running = run_worker(ks)
    wait_for(
        lambda: sum(IntakeStore(db).positions(ks.inbound_topic).values()) >= len(sent),
        what=f"{len(sent)} messages consumed",
    )
    running.stop()


def good_one_applied(ks: Settings, services: dict[str, str], alone: bool) -> None:
    """The change of the customer's own service came in, with its previous value; `alone`:
    no other order holds the service (under `flag` the flagged ones do)."""
    app = build_application(ks)
    try:
        order = app.get_order(order_id_for(GOOD))
        assert {f.code for f in order.flags} <= {"service_in_open_order"}
        assert not order.flags or not alone
        check = order.inventory["1"]
        assert check.service_id == services["active"] and check.previous == {"bandwidthMbps": 100}
        holding = list(app.get_service(services["active"]).open_orders)
        assert str(order.id) in holding and (len(holding) == 1 or not alone)
    finally:
        app.close()


# ----------------------------------------------------------------------------- refuse
@pytest.fixture
def refused(
    ks: Settings, db: ReadDb, run_worker: Callable[..., Any], services: dict[str, str]
) -> Iterator[dict[str, dict[str, Any]]]:
    """The messages consumed under `refuse`: the dead letters by key."""
    consume_all(ks, db, run_worker, messages(services))
    yield {d["key"].decode(): d for d in IntakeStore(db).dead_letters(limit=1000)}


def test_every_failing_check_is_a_dead_letter_naming_the_item(ks, refused, services) -> None:
    assert set(refused) == set(MESSAGES), "exactly the failing orders, each once"
    for key, (case, _) in MESSAGES.items():
        letter = refused[key]
        assert letter["category"] == env.REFUSED, letter
        assert letter["event_id"] == f"{key}-create"
        sid = {"unknown": UNKNOWN, "terminated": services["terminated"]}.get(
            case, services["active"]
        )
        assert f"item 1: service {sid} " in letter["reason"], letter["reason"]
    app = build_application(ks)
    try:
        assert not any(app.exists(order_id_for(key)) for key in MESSAGES)
    finally:
        app.close()
    good_one_applied(ks, services, alone=True)


def test_the_dead_letter_names_the_problem_code(refused) -> None:
    for key, (case, _) in MESSAGES.items():
        assert CASES[case] in refused[key]["reason"], refused[key]["reason"]


# ------------------------------------------------------------------------------- flag
@pytest.fixture
def flag_ks(ks: Settings) -> Settings:
    return ks.model_copy(update={"inventory_check": "flag"})


def test_under_the_flag_policy_every_order_comes_in_flagged(
    flag_ks, db, run_worker, services
) -> None:
    consume_all(flag_ks, db, run_worker, messages(services))
    assert IntakeStore(db).dead_letters(limit=1000) == []
    app = build_application(flag_ks)
    try:
        for key, (case, _) in MESSAGES.items():
            order = app.get_order(order_id_for(key))
            assert str(order.state) == "acknowledged"
            # (orders of one batch holding the same service also flag each other)
            found = [(f.code, f.item_id) for f in order.flags if f.code != "service_in_open_order"]
            assert found == [(CASES[case], "1")], (key, order.flags)
            assert all(f.message.startswith("item 1: service ") for f in order.flags)
    finally:
        app.close()
    good_one_applied(flag_ks, services, alone=False)

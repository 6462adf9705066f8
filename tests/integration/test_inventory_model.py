"""The inventory against an independent model (issue 20, acceptance 1).

Hypothesis draws sequences of orders for three customers: `add`, `modify`, `delete` and
`noChange` items naming new, existing, terminated, unknown, other customers' and other
specifications' services, several orders open at once on the same service; imports of
services that existed before (active, inactive or reserved; of a customer or of none); and
revisions of open orders (an item naming another service, or removed). Each open order then
ends: completed, failed, partial (one item completed, the other failed), rejected or
cancelled, in any order (two open orders changing one service complete in either order).

The model is plain dicts (service id -> state, specification, characteristics, place,
customer, the orders holding it open, the order items that made and last changed it),
updated only from what each completed item did, and it says which orders and revisions the
checks refuse (under `refuse`) or which flags they carry (under `flag`). After every step
the time and a copy of the model are recorded; the application's services must equal the
model after each step (`get_service`) and, as of every recorded time, equal the model as it
was then (`service_as_of`). On a SQLite file the projector then applies the whole log: when the
`service` read model exists, its rows equal the model and `projections verify` finds no
difference.

What a completed item does, as the model has it: an `add` creates its service (its own id,
or `service_id_for(order, item)`) unless a service has that id already (then nothing); a
`modify` changes the service its item names when one exists and is not terminated
(characteristics merged, the item's place first, the item's specification); a `delete`
terminates a service that is not terminated yet; a `noChange` changes nothing. Every service
an ended order named is released, and one a revision makes it name no more.

`SERVICEORDERS_FUZZ_SEED=N` runs another seed (default: fixed, for reproducible CI).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from builders import (
    cli,
    customer,
    fulfilment,
    header,
    manager,
    memory_app,
    operator,
    upstream,
)
from builders import item as build_item
from hypothesis import HealthCheck, Phase, given, note, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from serviceorders.bootstrap import build_application, event_mapper, init_database, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import ServiceNotFound, ValidationFailed
from serviceorders.domain.inventory import CheckMode
from serviceorders.domain.service import Service, service_id_for
from serviceorders.domain.values import (
    ItemAction,
    ItemState,
    OrderItem,
    OrderState,
    Place,
    ServiceRecord,
    ServiceState,
    SpecRef,
)
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("SERVICEORDERS_FUZZ_SEED", "641"))
ROUNDS = hsettings(
    max_examples=200,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CUSTOMERS = ("CUST-1", "CUST-2", "CUST-3")
INTERNET, ROUTER = "internet-access", "managed-router"
# Allowed values of the default catalog (domain/catalog/default.json).
CHARACTERISTICS: dict[str, dict[str, list[Any]]] = {
    INTERNET: {"bandwidthMbps": [10, 100, 500, 1000], "accessType": ["fibre", "copper"]},
    ROUTER: {"model": ["c1100", "isr4331", "c8300"]},
}
SITES = ("site-1", "site-2")
UNKNOWN = "SVC-DOES-NOT-EXIST"
OPEN_ORDER = "service_in_open_order"  # always a flag
# Most orders complete (they make the inventory); every other ending as well.
ENDINGS = ("complete", "complete", "complete", "fail", "partial", "reject", "cancel")


# ------------------------------------------------------------------------- the model
@dataclass
class Model:
    """What each completed item did, in plain dicts; the orders still open."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    open: dict[str, list[OrderItem]] = field(default_factory=dict)  # order id -> items
    customers: dict[str, str] = field(default_factory=dict)  # order id -> customer id
    # ids named that no service has (yet), in the order they came (a dict: drawing from
    # them must not depend on the random ids' order)
    never: dict[str, None] = field(default_factory=dict)

    def problems(
        self, customer_id: str, items: list[OrderItem], order_id: str | None = None
    ) -> list[tuple[str, str]]:
        """(code, item id) of every finding the checks must make on the items a new order
        (or a revision of `order_id`) brings."""
        found: list[tuple[str, str]] = []
        for it in items:
            sid = it.service_id
            assert sid is not None or it.action is ItemAction.ADD
            spec = it.specification.id if it.specification else None
            if it.action is ItemAction.ADD:
                if sid is not None and sid in self.services:
                    found.append(("service_exists", it.id))
                continue
            service = self.services.get(sid or "")
            if service is None:
                found.append(("service_not_found", it.id))
                continue
            if service["state"] != "active":
                found.append(("service_not_active", it.id))
            if service["customer"] is not None and service["customer"] != customer_id:
                found.append(("service_other_customer", it.id))
            if spec != service["specification"]:
                found.append(("service_other_specification", it.id))
            if set(service["open_orders"]) - {order_id}:
                found.append((OPEN_ORDER, it.id))
        return found

    def imported(self, service_id: str, state: str, spec: str, customer_id: str | None) -> None:
        self.services[service_id] = {
            "state": state,
            "specification": spec,
            "characteristics": {},
            "places": [],
            "customer": customer_id,
            "open_orders": {},
            "created_by": None,
            "modified_by": None,
        }

    def revise(self, order_id: str, items: list[OrderItem]) -> None:
        """The open order's items are now `items`: a service it names no more lets go of
        it, those it names hold it."""
        before = {i.service_id for i in self.open[order_id] if i.action is not ItemAction.ADD}
        self.open[order_id] = items
        now = {i.service_id for i in items if i.action is not ItemAction.ADD}
        for sid in before - now:
            if sid in self.services:
                self.services[sid]["open_orders"].pop(order_id, None)
        for it in items:
            if it.action is not ItemAction.ADD and it.service_id in self.services:
                self.services[it.service_id]["open_orders"][order_id] = [it.id]

    def accept(self, order_id: str, customer_id: str, items: list[OrderItem]) -> None:
        """An accepted order holds every existing service its change items name."""
        self.open[order_id] = items
        self.customers[order_id] = customer_id
        for it in items:
            if it.action is not ItemAction.ADD and it.service_id in self.services:
                self.services[it.service_id]["open_orders"][order_id] = [it.id]

    def end(self, order_id: str, completed: set[str]) -> None:
        """The order ended; `completed`: the ids of its items that completed."""
        items = self.open.pop(order_id)
        customer_id = self.customers.pop(order_id)
        for it in items:
            if it.id not in completed:
                continue
            spec = it.specification.id if it.specification else None
            place = it.place.id if it.place else None
            if it.action is ItemAction.ADD:
                sid = it.service_id or service_id_for(UUID(order_id), it.id)
                if sid not in self.services:
                    self.services[sid] = {
                        "state": "active",
                        "specification": spec,
                        "characteristics": dict(it.characteristics),
                        "places": [place],
                        "customer": customer_id,
                        "open_orders": {},
                        "created_by": [order_id, it.id],
                        "modified_by": None,
                    }
                    self.never.pop(sid, None)
                continue
            service = self.services.get(it.service_id or "")
            if service is None:
                continue
            if it.action is ItemAction.MODIFY and service["state"] != "terminated":
                service["characteristics"] = {**service["characteristics"], **it.characteristics}
                service["places"] = [place, *(p for p in service["places"][1:] if p != place)]
                service["specification"] = spec
                service["modified_by"] = [order_id, it.id]
            elif it.action is ItemAction.DELETE and service["state"] != "terminated":
                service["state"] = "terminated"
                service["modified_by"] = [order_id, it.id]
        for it in items:  # released
            if it.action is not ItemAction.ADD and it.service_id in self.services:
                self.services[it.service_id]["open_orders"].pop(order_id, None)


def seen(service: Service) -> dict[str, Any]:
    """The application's service in the model's terms."""
    return {
        "state": str(service.state),
        "specification": service.specification.id if service.specification else None,
        "characteristics": dict(service.characteristics),
        "places": [p.id for p in service.places],
        "customer": service.customer_id,
        "open_orders": {k: list(v) for k, v in service.open_orders.items()},
        "created_by": list(service.created_by) if service.created_by else None,
        "modified_by": list(service.modified_by) if service.modified_by else None,
    }


# --------------------------------------------------------------------- drawing orders
@st.composite
def characteristics(draw: st.DrawFn, spec: str, partial: bool) -> dict[str, Any]:
    allowed = CHARACTERISTICS[spec]
    names = list(allowed)
    if partial:
        names = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    return {name: draw(st.sampled_from(allowed[name])) for name in names}


def draw_change(
    data: st.DataObject,
    model: Model,
    token: str,
    customer_id: str,
    item_id: str,
    action: ItemAction,
    named: set[str],
) -> OrderItem | None:
    """An item naming an existing service: mostly one of the customer's own, else any other,
    an unknown one or one not made yet; None when it would name one of `named`."""
    ours = [s for s, v in model.services.items() if v["customer"] == customer_id]
    pool = ours or list(model.services) or [UNKNOWN]
    choices = [
        st.sampled_from(pool),
        st.sampled_from(list(model.services) or [UNKNOWN]),
        st.sampled_from([UNKNOWN, f"{token}-A", *model.never]),
    ]
    sid = data.draw(st.one_of(*[choices[0]] * 4, choices[1], choices[2]))
    if sid in named:
        return None
    have = model.services.get(sid, {}).get("specification", INTERNET)
    other = ROUTER if have == INTERNET else INTERNET
    spec = data.draw(st.sampled_from([have, have, have, other]), label="spec")
    chars = data.draw(characteristics(spec, partial=True)) if action is ItemAction.MODIFY else {}
    site = data.draw(st.sampled_from(SITES), label="site")
    return build_item(
        item_id, spec, action=action, service_id=sid, characteristics=chars, place=Place(id=site)
    )


def draw_items(data: st.DataObject, model: Model, token: str, customer_id: str) -> list[OrderItem]:
    """One or two items naming different services."""
    made: list[OrderItem] = []
    named: set[str] = set()
    for n in range(data.draw(st.integers(1, 2), label="items")):
        actions = list(ItemAction) if model.services else [ItemAction.ADD, ItemAction.MODIFY]
        action = data.draw(st.sampled_from(actions), label="action")
        if action is ItemAction.ADD:
            spec = data.draw(st.sampled_from([INTERNET, ROUTER]), label="spec")
            sid = data.draw(st.sampled_from([None, None, f"{token}-A", f"{token}-B"]))
            if sid is not None and sid in named:
                continue
            chars = data.draw(characteristics(spec, partial=False))
            site = data.draw(st.sampled_from(SITES), label="site")
            it: OrderItem | None = build_item(
                str(n + 1),
                spec,
                action=action,
                service_id=sid,
                characteristics=chars,
                place=Place(id=site),
            )
        else:
            it = draw_change(data, model, token, customer_id, str(n + 1), action, named)
        if it is None:
            continue
        if it.service_id is not None:
            named.add(it.service_id)
        made.append(it)
    return made or [build_item("1", INTERNET, place=Place(id=SITES[0]))]


# ---------------------------------------------------------------------- the run
def problems_of(flags: Any) -> list[tuple[str, str]]:
    return sorted((p.code, p.item_id) for p in flags if p.code.startswith("service_"))


def end_order(app: ServiceOrders, order_id: UUID, items: list[OrderItem], how: str) -> set[str]:
    """End the open order `how`; the ids of its items that completed."""
    if how == "reject":
        app.handle(manager(), cmd.Reject(order_id, "not now"))
        assert app.get_order(order_id).state is OrderState.REJECTED
        return set()
    app.handle(manager(), cmd.Approve(order_id))
    if how == "cancel":
        app.handle(upstream(), cmd.RequestCancellation(order_id, "not needed"))
        app.handle(manager(), cmd.ApproveCancellation(order_id))
        app.handle(fulfilment(), cmd.Cancel(order_id))
        assert app.get_order(order_id).state is OrderState.CANCELLED
        return set()
    ids = [i.id for i in items]
    completed = {
        "complete": set(ids),
        "fail": set(),
        "partial": set(ids[:1]) if len(ids) > 1 else set(ids),
    }[how]
    changes = tuple(
        cmd.ItemStateChange(i, ItemState.COMPLETED if i in completed else ItemState.FAILED)
        for i in ids
    )
    app.handle(fulfilment(), cmd.ChangeItemStates(order_id, changes))
    state = app.get_order(order_id).state
    expected = (
        OrderState.COMPLETED
        if completed == set(ids)
        else OrderState.FAILED
        if not completed
        else OrderState.PARTIAL
    )
    assert state is expected, (how, state)
    return completed


def assert_equal_now(app: ServiceOrders, model: Model) -> None:
    for sid, expected in model.services.items():
        assert seen(app.get_service(sid)) == expected, sid
    for sid in model.never:
        with pytest.raises(ServiceNotFound):
            app.get_service(sid)


def tick(after: datetime) -> None:
    """Wait until the clock has passed `after`: the next event is later than a recorded time."""
    while datetime.now(UTC) <= after:
        pass


def run_steps(
    app: ServiceOrders,
    data: st.DataObject,
    mode: CheckMode,
    into: dict[str, dict[str, Any]] | None = None,
) -> Model:
    """One drawn sequence of steps, checked as it goes; `into`: every service of the model
    after each step (an example hypothesis abandons half way has made some)."""
    token = secrets.token_hex(4)  # ids of this example's own (one store for every example)
    model = Model(never={UNKNOWN: None})
    timeline: list[tuple[datetime, dict[str, dict[str, Any]]]] = []
    count = 0
    for _ in range(data.draw(st.integers(6, 20), label="steps")):
        kinds = ["order", "order", "import"] + ["end", "end", "end", "revise"] * bool(model.open)
        kind = data.draw(st.sampled_from(kinds), label="step")
        if kind == "end":
            oid = data.draw(st.sampled_from(list(model.open)), label="order")
            how = data.draw(st.sampled_from(ENDINGS), label="ending")
            note(f"end {oid} {how}")
            completed = end_order(app, UUID(oid), model.open[oid], how)
            model.end(oid, completed)
        elif kind == "import":
            count += 1
            sid = f"{token}-I{count}"
            state = data.draw(st.sampled_from(["active", "active", "inactive", "reserved"]))
            spec = data.draw(st.sampled_from([INTERNET, ROUTER]), label="spec")
            owner = data.draw(st.sampled_from([*CUSTOMERS, None]), label="customer")
            party = customer(owner, f"name of {owner}") if owner is not None else None
            record = ServiceRecord(
                id=sid, state=ServiceState(state), specification=SpecRef(id=spec), customer=party
            )
            note(f"import {sid} {state} {spec} of {owner}")
            assert app.handle(operator(), cmd.ImportService(record)).created
            model.imported(sid, state, spec, owner)
        elif kind == "revise":
            oid = data.draw(st.sampled_from(list(model.open)), label="order")
            items = model.open[oid]
            customer_id = model.customers[oid]
            target = data.draw(st.sampled_from(items), label="item")
            if len(items) > 1 and data.draw(st.booleans(), label="remove"):
                note(f"revise {oid}: remove item {target.id}")
                app.handle(upstream(), cmd.Revise(UUID(oid), removed_item_ids=(target.id,)))
                model.revise(oid, [i for i in items if i.id != target.id])
            else:
                action = data.draw(
                    st.sampled_from([ItemAction.MODIFY, ItemAction.DELETE, ItemAction.NO_CHANGE])
                )
                others = {str(i.service_id) for i in items if i.id != target.id}
                new = draw_change(data, model, token, customer_id, target.id, action, others)
                if new is not None:
                    expected = sorted(model.problems(customer_id, [new], oid))
                    refused = sorted(p for p in expected if p[0] != OPEN_ORDER)
                    note(f"revise {oid}: {new!r}; expecting {expected}")
                    revise = cmd.Revise(UUID(oid), (new,))
                    if mode is CheckMode.REFUSE and refused:
                        with pytest.raises(ValidationFailed) as error:
                            app.handle(upstream(), revise)
                        assert problems_of(error.value.problems) == refused
                    else:
                        app.handle(upstream(), revise)
                        flags = app.get_order(UUID(oid)).flags
                        assert problems_of(f for f in flags if f.item_id == new.id) == expected
                        model.revise(oid, [new if i.id == new.id else i for i in items])
                        if new.service_id not in model.services:
                            model.never[str(new.service_id)] = None
        else:
            count += 1
            customer_id = data.draw(st.sampled_from(CUSTOMERS), label="customer")
            items = draw_items(data, model, token, customer_id)
            expected = sorted(model.problems(customer_id, items))
            refused = sorted(p for p in expected if p[0] != OPEN_ORDER)
            note(f"order {count} of {customer_id}: {items!r}; expecting {expected}")
            command = cmd.ReceiveOrder(build_header(f"{token}-{count}", customer_id), tuple(items))
            if mode is CheckMode.REFUSE and refused:
                with pytest.raises(ValidationFailed) as error:
                    app.handle(upstream(), command)
                assert problems_of(error.value.problems) == refused
                for code, item_id in refused:
                    assert f"item {item_id}: " in str(error.value), code
            else:
                outcome = app.handle(upstream(), command)
                assert outcome.created
                assert problems_of(outcome.order.flags) == expected
                oid = str(outcome.order_id)
                model.accept(oid, customer_id, items)
                for it in items:
                    if it.action is ItemAction.ADD and it.service_id is None:
                        model.never[service_id_for(outcome.order_id, it.id)] = None
                    elif it.service_id not in model.services:
                        model.never[str(it.service_id)] = None
        for sid in model.services:
            model.never.pop(sid, None)
        assert_equal_now(app, model)
        now = datetime.now(UTC)
        timeline.append((now, copy.deepcopy(model.services)))
        if into is not None:
            into.update(copy.deepcopy(model.services))
        tick(now)
    # as of every recorded time: the model as it was then
    for when, then in timeline:
        for sid in model.services:
            found = app.service_as_of(sid, when)
            assert (seen(found) if found is not None else None) == then.get(sid), (sid, when)
    for sid in model.never:
        with pytest.raises(ServiceNotFound):
            app.service_as_of(sid, timeline[-1][0])
    return model


def build_header(external_id: str, customer_id: str) -> Any:
    return header(external_id, related_parties=(customer(customer_id, f"name of {customer_id}"),))


# ------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("mode", list(CheckMode))
def test_the_inventory_equals_the_model_at_every_point_in_time(mode: CheckMode) -> None:
    app = memory_app(inventory_check=mode)

    @ROUNDS
    @seed(SEED)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        run_steps(app, data, mode)

    try:
        run()
    finally:
        app.close()


def test_a_modify_completed_after_a_concurrent_delete_leaves_the_service_terminated() -> None:
    """The case the model found (both orders open on one service under `refuse`: the second
    is only flagged service_in_open_order): the delete completes first, then the modify;
    the terminated service keeps its characteristics, and the modify's order lets go of it."""
    app = memory_app()
    try:
        acme = (customer("CUST-1", "Acme"),)
        add = app.handle(
            upstream(), cmd.ReceiveOrder(header("ADD", related_parties=acme), (build_item("1"),))
        )
        end_order(app, add.order_id, [build_item("1")], "complete")
        sid = service_id_for(add.order_id, "1")
        gone = build_item("1", action=ItemAction.DELETE, service_id=sid, characteristics={})
        faster = build_item(
            "1", action=ItemAction.MODIFY, service_id=sid, characteristics={"bandwidthMbps": 500}
        )
        delete = app.handle(
            upstream(), cmd.ReceiveOrder(header("DEL", related_parties=acme), (gone,))
        )
        modify = app.handle(
            upstream(), cmd.ReceiveOrder(header("MOD", related_parties=acme), (faster,))
        )
        assert [f.code for f in modify.order.flags] == [OPEN_ORDER]
        end_order(app, delete.order_id, [gone], "complete")
        end_order(app, modify.order_id, [faster], "complete")
        service = app.get_service(sid)
        assert service.state is ServiceState.TERMINATED
        assert service.characteristics == {"bandwidthMbps": 100, "accessType": "fibre"}
        assert service.modified_by == (str(delete.order_id), "1")
        assert service.open_orders == {}
        assert [type(e).__name__ for e in app.service_history(sid)][-2:] == [
            "ServiceTerminated",
            "ServiceOrderClosed",
        ]
    finally:
        app.close()


def two_services(app: ServiceOrders) -> tuple[str, str]:
    """Two completed internet accesses of CUST-1: their ids."""
    made = []
    for ext in ("ADD-1", "ADD-2"):
        acme = (customer("CUST-1", "Acme"),)
        add = app.handle(
            upstream(), cmd.ReceiveOrder(header(ext, related_parties=acme), (build_item("1"),))
        )
        end_order(app, add.order_id, [build_item("1")], "complete")
        made.append(service_id_for(add.order_id, "1"))
    return made[0], made[1]


def faster(service_id: str, item_id: str = "1") -> OrderItem:
    return build_item(
        item_id,
        action=ItemAction.MODIFY,
        service_id=service_id,
        characteristics={"bandwidthMbps": 500},
    )


@pytest.mark.parametrize("how", ["another service", "item removed"])
def test_a_revision_that_names_a_service_no_more_lets_go_of_it(how: str) -> None:
    """A service an open order named before its revision, and names no more, is not held
    by it any more (else every later order on it would be flagged service_in_open_order,
    for ever); the one it names now is held, and changed when the order completes."""
    app = memory_app()
    try:
        first, second = two_services(app)
        acme = (customer("CUST-1", "Acme"),)
        items = (faster(first), build_item("2"))
        order = app.handle(upstream(), cmd.ReceiveOrder(header("MOD", related_parties=acme), items))
        assert list(app.get_service(first).open_orders) == [str(order.order_id)]
        if how == "another service":
            app.handle(upstream(), cmd.Revise(order.order_id, (faster(second),)))
            assert list(app.get_service(second).open_orders) == [str(order.order_id)]
        else:
            app.handle(upstream(), cmd.Revise(order.order_id, removed_item_ids=("1",)))
        assert app.get_service(first).open_orders == {}
        later = app.handle(
            upstream(), cmd.ReceiveOrder(header("LATER", related_parties=acme), (faster(first),))
        )
        assert later.order.flags == ()
        end_order(
            app, order.order_id, list(app.get_order(order.order_id).items.values()), "complete"
        )
        assert app.get_service(first).characteristics["bandwidthMbps"] == 100
        assert app.get_service(second).characteristics["bandwidthMbps"] == (
            500 if how == "another service" else 100
        )
        assert app.get_service(second).open_orders == {}
    finally:
        app.close()


def test_an_approved_proposal_moves_the_hold_to_the_service_it_names() -> None:
    """A revision of an approved order is a proposal; once a second manager approves it,
    the service it names holds the order (a concurrent order on it is flagged) and the one
    it named before lets go."""
    app = memory_app()
    try:
        first, second = two_services(app)
        acme = (customer("CUST-1", "Acme"),)
        order = app.handle(
            upstream(), cmd.ReceiveOrder(header("MOD", related_parties=acme), (faster(first),))
        )
        app.handle(manager(), cmd.Approve(order.order_id))
        proposed = app.handle(upstream(), cmd.Revise(order.order_id, (faster(second),)))
        assert proposed.proposal_id is not None
        assert list(app.get_service(first).open_orders) == [str(order.order_id)]  # not yet
        app.handle(manager("carol"), cmd.ApproveProposal(order.order_id))
        assert app.get_service(first).open_orders == {}
        assert list(app.get_service(second).open_orders) == [str(order.order_id)]
        other = app.handle(
            upstream(), cmd.ReceiveOrder(header("OTHER", related_parties=acme), (faster(second),))
        )
        assert [f.code for f in other.order.flags] == [OPEN_ORDER]
    finally:
        app.close()


@pytest.mark.parametrize("state", [ServiceState.INACTIVE, ServiceState.RESERVED])
def test_a_completed_delete_terminates_a_service_that_was_not_active(state) -> None:
    """Under `flag` a disconnect of a service that is not active (an imported one, inactive
    or reserved) comes in flagged service_not_active; once its reviewer approved it and
    fulfilment completed it, the service is terminated (TMF638: any state but terminated
    may go to terminated), not left as it was."""
    app = memory_app(inventory_check=CheckMode.FLAG)
    try:
        acme = customer("CUST-1", "Acme")
        record = ServiceRecord(
            id="LEGACY-1",
            state=state,
            specification=SpecRef(id=INTERNET),
            characteristics={"bandwidthMbps": 50},
            customer=acme,
        )
        app.handle(operator(), cmd.ImportService(record))
        gone = build_item("1", action=ItemAction.DELETE, service_id="LEGACY-1", characteristics={})
        order = app.handle(
            upstream(), cmd.ReceiveOrder(header("DEL", related_parties=(acme,)), (gone,))
        )
        assert [f.code for f in order.order.flags] == ["service_not_active"]
        end_order(app, order.order_id, [gone], "complete")
        service = app.get_service("LEGACY-1")
        assert service.state is ServiceState.TERMINATED
        assert service.modified_by == (str(order.order_id), "1")
        assert service.terminated_at is not None and service.open_orders == {}
    finally:
        app.close()


def test_a_revision_of_another_item_keeps_an_items_inventory_flag() -> None:
    """Under `flag` an order whose item 1 names an unknown service is flagged for it; a
    revision that changes only item 2 does not make the reviewer forget item 1's flag."""
    app = memory_app(inventory_check=CheckMode.FLAG)
    try:
        acme = (customer("CUST-1", "Acme"),)
        unknown = build_item(
            "1",
            action=ItemAction.MODIFY,
            service_id=UNKNOWN,
            characteristics={"bandwidthMbps": 500},
        )
        order = app.handle(
            upstream(),
            cmd.ReceiveOrder(header("FLAGGED", related_parties=acme), (unknown, build_item("2"))),
        )
        assert problems_of(order.order.flags) == [("service_not_found", "1")]
        faster_add = build_item("2", characteristics={"bandwidthMbps": 500, "accessType": "fibre"})
        app.handle(upstream(), cmd.Revise(order.order_id, (faster_add,)))
        assert problems_of(app.get_order(order.order_id).flags) == [("service_not_found", "1")]
    finally:
        app.close()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'serviceorders.db'}",
            "SERVICEORDERS_INVENTORY_CHECK": "refuse",
        }
    )


def test_on_a_sqlite_file_and_its_read_models(sqlite_settings: Settings) -> None:
    init_database(sqlite_settings)
    app = build_application(sqlite_settings)
    assert app.inventory_check is CheckMode.REFUSE
    final: dict[str, dict[str, Any]] = {}

    @hsettings(ROUNDS, max_examples=50)
    @seed(SEED)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        run_steps(app, data, CheckMode.REFUSE, into=final)

    try:
        run()
    finally:
        app.close()
    assert final, "no example made a service"
    from serviceorders.projections import maintenance
    from serviceorders.projections.runner import Projector
    from serviceorders.projections.views import PROJECTIONS

    db = open_read_db(sqlite_settings)
    try:
        projector = Projector(db, event_mapper())
        projector.catch_up()
        assert {s.lag for s in projector.status()} == {0}
        tables = {p.name: p.table for p in PROJECTIONS}
        if "service" not in tables:
            pytest.skip("the service read model (projections/inventory.py) is not there yet")
        table = tables["service"]
        rows = {
            r[table.column_names.index("service_id")]: dict(zip(table.column_names, r, strict=True))
            for r in db.rows(table, "service")
        }
        assert set(rows) == set(final)
        for sid, expected in final.items():
            row = rows[sid]
            chars = row["characteristics"]
            chars = chars if isinstance(chars, dict) else json.loads(chars)
            opened = row["open_orders"]
            opened = opened if isinstance(opened, list | dict) else json.loads(opened)
            assert (row["state"], row["specification_id"], row["customer_id"], chars) == (
                expected["state"],
                expected["specification"],
                expected["customer"],
                expected["characteristics"],
            ), sid
            assert row["site_id"] == (expected["places"] or [None])[0], sid
            assert sorted(opened) == sorted(expected["open_orders"]), sid
            made = [row["created_order_id"], row["created_item_id"]]
            assert made == (expected["created_by"] or [None, None]), sid  # None: imported
            last = expected["modified_by"] or expected["created_by"] or [None]
            assert row["last_order_id"] == last[0], sid
        assert maintenance.verify(db, event_mapper()) == []
    finally:
        db.close()
    # and as the operator runs it: every read model OK, the service tables among them
    done = cli("projections", "verify", url=sqlite_settings.database.url(with_password=True))
    for name in ("service", "service_history", "service_daily_changes"):
        if name in tables:
            assert f"{name}: OK" in done.stdout, done.stdout

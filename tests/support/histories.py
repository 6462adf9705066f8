"""Random command histories over a few orders (shared by the projection tests): every
kind of command an order can take, chosen mostly among those its state allows, so that
the log holds every order event type. Moved out of tests/integration/test_projections.py
(issue 21) for tests/integration/test_fast_decoding.py."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from uuid import UUID, uuid4

from builders import agent, fulfilment, id_created, manager, operator, upstream
from builders import item as build_item
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import DomainError, ServiceNotFound
from serviceorders.domain.lifecycle import ITEM_TRANSITIONS
from serviceorders.domain.values import (
    FINAL_ORDER_STATES,
    HeaderChange,
    ItemAction,
    ItemState,
    OrderHeader,
    OrderItem,
    OrderState,
    Party,
    Place,
    ServiceRecord,
    SpecRef,
)

UPSTREAM, AGENT, FULFILMENT, OPERATOR = upstream(), agent(), fulfilment(), operator()
MANAGERS = (manager("bob"), manager("carol"))


# ---------------------------------------------------------------- command histories
def _item(k: int) -> OrderItem:
    """Item i<k> from a small pool: valid ones, flagged ones, a modify."""
    k %= 6
    if k == 0:
        return build_item(
            "i0",
            "internet-access",
            characteristics={"bandwidthMbps": 100, "accessType": "fibre"},
            place=Place(id="site-1", name="Main"),
        )
    if k == 1:
        return build_item(
            "i1", "managed-router", characteristics={"model": "c1100"}, place=Place(id="site-1")
        )
    if k == 2:
        return build_item(
            "i2",
            "sdwan-site",
            characteristics={"bandwidthProfile": "small", "siteRole": "spoke"},
            place=Place(id="site-2"),
            quantity=2,
        )
    if k == 3:  # no site: a flag
        return build_item(
            "i3",
            "internet-access",
            place=None,
            characteristics={"bandwidthMbps": 50, "accessType": "copper"},
        )
    if k == 4:
        return build_item(
            "i4",
            action=ItemAction.MODIFY,
            service_id="svc-4",
            characteristics={"bandwidthMbps": 200},
            place=Place(id="site-3"),
        )
    # an unknown characteristic: a flag
    return build_item(
        "i5",
        "managed-router",
        characteristics={"model": "c8300", "colour": "red"},
        place=Place(id="site-2"),
    )


def _items_for(mask: int) -> list[OrderItem]:
    chosen = [_item(k) for k in range(6) if mask & (1 << k)] or [_item(0)]
    ids = {i.id for i in chosen}
    if {"i0", "i1"} <= ids:  # the router depends on the internet access
        chosen = [
            i.model_copy(update={"depends_on": ("i0",)}) if i.id == "i1" else i for i in chosen
        ]
    return chosen


def _header(a: int, b: int) -> OrderHeader:
    parties = (Party(id=f"cust-{b % 3}", name=f"Customer {b % 3}"),) if b % 4 else ()
    return OrderHeader(
        external_id=f"ext-{uuid4().hex}" if a % 5 else None,
        category=("enterprise", "wholesale", None)[a % 3],
        priority=str(b % 4),
        description=f"order {a}/{b}",
        requested_start_date=(datetime(2030, 1, 1 + b % 20, tzinfo=UTC) if b % 2 else None),
        related_parties=parties,
    )


def in_inventory(app: ServiceOrders) -> None:
    """The service the orders' modify item (i4) names, imported once (issue 20: a change of
    a service the inventory lacks is refused): no customer, so any customer's order may
    change it."""
    try:
        app.get_service("svc-4")
    except ServiceNotFound:
        record = ServiceRecord(id="svc-4", specification=SpecRef(id="internet-access"))
        app.handle(OPERATOR, cmd.ImportService(record))


def create_order(app: ServiceOrders, a: int, b: int) -> UUID:
    in_inventory(app)
    if a % 3 == 0:
        return app.handle(AGENT, cmd.DraftOrder(_header(a, b))).order.id
    order_id, created = id_created(
        app.handle(UPSTREAM, cmd.ReceiveOrder(_header(a, b), tuple(_items_for(b % 64))))
    )
    assert created
    return order_id


# The states a fulfilment system may report for an item (any move the lifecycle allows
# from acknowledged), in ItemState's order so a drawn index always picks the same state.
ITEM_STATES = tuple(s for s in ItemState if s in ITEM_TRANSITIONS[ItemState.ACKNOWLEDGED])
FINAL_CHOICES = (ItemState.COMPLETED, ItemState.COMPLETED, ItemState.FAILED, ItemState.CANCELLED)


def _finish_items(app: ServiceOrders, order_id: UUID, b: int) -> None:
    """Drive every open item to a final state (dependencies first), one command each."""
    if app.get_order(order_id).state is not OrderState.IN_PROGRESS:
        raise DomainError("only an order in progress has items to finish")
    for step in range(12):
        order = app.get_order(order_id)
        open_items = [i for i in order.items.values() if not (i.state and i.state.is_final)]
        if not open_items or order.state is not OrderState.IN_PROGRESS:
            return
        item = open_items[0]
        target = FINAL_CHOICES[(b + step) % len(FINAL_CHOICES)]
        try:
            app.handle(FULFILMENT, cmd.ChangeItemStates.one(order_id, item.id, target))
        except DomainError:
            app.handle(FULFILMENT, cmd.ChangeItemStates.one(order_id, item.id, ItemState.CANCELLED))


def run_command(app: ServiceOrders, order_id: UUID, kind: str, a: int, b: int) -> None:
    """One command on one order; illegal ones raise DomainError (the caller skips them)."""
    manager = MANAGERS[a % 2]
    if kind == "add_line":
        app.handle(AGENT, cmd.AddLine(order_id, _item(a)))
    elif kind == "configure":
        if b % 2:
            app.handle(
                AGENT, cmd.ConfigureLine(order_id, f"i{a % 6}", place=Place(id=f"site-{b % 5}"))
            )
        else:
            app.handle(
                AGENT,
                cmd.ConfigureLine(
                    order_id,
                    f"i{a % 6}",
                    characteristics={"bandwidthMbps": 500, "accessType": "fibre"},
                ),
            )
    elif kind == "remove_line":
        app.handle(AGENT, cmd.RemoveLine(order_id, f"i{a % 6}"))
    elif kind == "submit":
        app.handle(AGENT, cmd.Submit(order_id))
    elif kind == "approve":
        app.handle(manager, cmd.Approve(order_id, "ok" if b % 2 else None))
    elif kind == "reject":
        app.handle(manager, cmd.Reject(order_id, f"no budget {b}"))
    elif kind == "hold":
        app.handle((FULFILMENT, manager)[b % 2], cmd.Hold(order_id, "maintenance window"))
    elif kind == "resume":
        app.handle((FULFILMENT, manager)[b % 2], cmd.Resume(order_id))
    elif kind == "request_info":
        app.handle(FULFILMENT, cmd.RequestInformation(order_id, "which port?"))
    elif kind == "provide_info":
        app.handle((UPSTREAM, FULFILMENT)[b % 2], cmd.ProvideInformation(order_id, "port 3"))
    elif kind == "item_state":
        items = sorted(app.get_order(order_id).items)
        if not items:
            raise DomainError("no items")
        app.handle(
            FULFILMENT,
            cmd.ChangeItemStates.one(
                order_id, items[a % len(items)], ITEM_STATES[b % len(ITEM_STATES)], "reported"
            ),
        )
    elif kind == "finish_items":
        _finish_items(app, order_id, b)
    elif kind == "revise":
        variant = b % 4
        if variant == 0:
            app.handle(UPSTREAM, cmd.Revise(order_id, header=HeaderChange(priority=str(a % 5))))
        elif variant == 1:
            app.handle(UPSTREAM, cmd.Revise(order_id, items=(_item(a),)))
        elif variant == 2:
            app.handle(UPSTREAM, cmd.Revise(order_id, removed_item_ids=(f"i{a % 6}",)))
        else:
            app.handle(
                UPSTREAM,
                cmd.Revise(
                    order_id,
                    items=(_item(a + 1),),
                    header=HeaderChange(category="revised", description="changed"),
                ),
            )
    elif kind == "approve_proposal":  # the proposer is the upstream: any manager decides
        app.handle(manager, cmd.ApproveProposal(order_id, (None, "fine")[b % 2]))
    elif kind == "refuse_proposal":
        app.handle(manager, cmd.RefuseProposal(order_id, f"not now {b}"))
    elif kind == "withdraw_proposal":  # its proposer, or a manager
        app.handle((UPSTREAM, manager)[b % 2], cmd.WithdrawProposal(order_id))
    elif kind == "ponr":
        app.handle(FULFILMENT, cmd.ReachPointOfNoReturn(order_id, "cabled"))
    elif kind == "request_cancel":
        app.handle(
            (UPSTREAM, AGENT)[a % 2],
            cmd.RequestCancellation(
                order_id,
                reason=(None, "customer moved")[b % 2],
                requested_date=datetime(2031, 5, 1, tzinfo=UTC) if b % 3 == 0 else None,
            ),
        )
    elif kind == "approve_cancel":
        app.handle(manager, cmd.ApproveCancellation(order_id, (None, "fine")[b % 2]))
    elif kind == "deny_cancel":
        app.handle(manager, cmd.DenyCancellation(order_id, "work has started"))
    elif kind == "cancel":
        app.handle((FULFILMENT, manager)[b % 2], cmd.Cancel(order_id, (None, "gone")[a % 2]))
    elif kind == "note":
        app.handle((AGENT, FULFILMENT)[a % 2], cmd.AddNote(order_id, f"note {b}"))
    elif kind == "delete":  # agents discard drafts; managers also archive final orders
        app.handle((AGENT, MANAGERS[a % 2])[b % 2], cmd.Delete(order_id, (None, "tidy")[a % 2]))
    else:  # pragma: no cover
        raise AssertionError(kind)


KINDS = (
    "add_line",
    "configure",
    "remove_line",
    "submit",
    "approve",
    "reject",
    "hold",
    "resume",
    "request_info",
    "provide_info",
    "item_state",
    "finish_items",
    "revise",
    "approve_proposal",
    "refuse_proposal",
    "withdraw_proposal",
    "ponr",
    "request_cancel",
    "approve_cancel",
    "deny_cancel",
    "cancel",
    "note",
    "delete",
)

# What usually happens next in each state (repeats weigh); "any" commands are drawn from
# KINDS instead, most of them illegal there. Issue 17: a revision after approval is a
# proposal a manager decides (or its proposer withdraws); a direct cancel is fulfilment's
# exit from held / pending only, so acknowledged and inProgress orders are cancelled on request.
LIKELY: dict[OrderState, tuple[str, ...]] = {
    OrderState.DRAFT: (
        "add_line",
        "add_line",
        "add_line",
        "configure",
        "remove_line",
        "submit",
        "submit",
        "note",
        "delete",
    ),
    OrderState.ACKNOWLEDGED: (
        "approve",
        "approve",
        "approve",
        "reject",
        "revise",
        "request_cancel",
        "note",
    ),
    OrderState.IN_PROGRESS: (
        "item_state",
        "item_state",
        "item_state",
        "finish_items",
        "finish_items",
        "hold",
        "request_info",
        "ponr",
        "revise",
        "approve_proposal",
        "refuse_proposal",
        "withdraw_proposal",
        "request_cancel",
        "note",
    ),
    OrderState.HELD: ("resume", "resume", "request_cancel", "cancel", "ponr", "note"),
    OrderState.PENDING: ("provide_info", "provide_info", "request_cancel", "cancel", "note"),
    OrderState.ASSESSING_CANCELLATION: ("approve_cancel", "deny_cancel", "deny_cancel", "note"),
    OrderState.PENDING_CANCELLATION: ("cancel", "cancel", "note"),
    **{final: ("note", "note", "delete") for final in FINAL_ORDER_STATES},
}

Command = tuple[str, int, int, int]  # kind ("likely": chosen by state), slot, two parameters


class History:
    """Runs commands over order slots; a slot's first command creates its order."""

    def __init__(self, app: ServiceOrders, slots: int) -> None:
        self.app = app
        self.slots = slots
        self.order_ids: dict[int, UUID] = {}
        self.applied = self.refused = 0

    def run(self, command: Command) -> None:
        kind, slot, a, b = command
        slot %= self.slots
        if slot not in self.order_ids:
            self.order_ids[slot] = create_order(self.app, a, b)
        if kind == "create":
            return
        order_id = self.order_ids[slot]
        if kind == "likely":
            likely = LIKELY.get(self.app.get_order(order_id).state, ("note", *KINDS))
            kind = likely[(a * 7 + b) % len(likely)]
        try:
            run_command(self.app, order_id, kind, a, b)
            self.applied += 1
        except DomainError:
            self.refused += 1


def random_history(app: ServiceOrders, seed: int, orders: int, commands: int) -> History:
    rnd = random.Random(seed)
    history = History(app, orders)
    for slot in range(orders):  # every slot gets an order
        history.run(("create", slot, rnd.randrange(100), rnd.randrange(100)))
    for _ in range(commands):
        kind = rnd.choice(KINDS) if rnd.random() < 0.2 else "likely"
        history.run((kind, rnd.randrange(orders), rnd.randrange(100), rnd.randrange(100)))
    return history


# The events of one of simple_orders' orders: 6 of the order, and since issue 20 three of
# the inventory's (its completion creates the internet access and the router that depends
# on it: ServiceCreated twice, ServiceDependentAdded).
PER_ORDER = 6 + 3


def simple_orders(app: ServiceOrders, count: int) -> list[UUID]:
    """`count` orders received, approved and completed: 6 events and 4 transitions each
    (and 3 events of the two services each completion creates, issue 20)."""
    ids = []
    for n in range(count):
        order_id, _ = id_created(
            app.handle(UPSTREAM, cmd.ReceiveOrder(_header(n + 1, n), tuple(_items_for(0b11))))
        )
        app.handle(MANAGERS[n % 2], cmd.Approve(order_id))
        app.handle(FULFILMENT, cmd.ChangeItemStates.one(order_id, "i0", ItemState.COMPLETED))
        app.handle(FULFILMENT, cmd.ChangeItemStates.one(order_id, "i1", ItemState.COMPLETED))
        ids.append(order_id)
    return ids

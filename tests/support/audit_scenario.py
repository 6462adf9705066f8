"""An audit scenario: orders that go through every event type of domain/events.py, with
awkward values (numbers, text, keys) and sealed personal data, in a real database with
checkpoints.

For the audit tests (the independent verifier, tampering, the test vectors):

    from audit_scenario import build_scenario
    scenario = build_scenario(tmp_path / "audit.db")   # or a DATABASE_URL, or Settings
    scenario.url, scenario.orders["awkward"], scenario.topics, scenario.checkpoints,
    scenario.hmac_key, scenario.public_keys      # signed: key a (1, 2), then key b (3)

`drive(app)` runs the same commands on any ServiceOrders (e.g. the in-memory one);
`deterministic()` fixes the event clock and the proposal ids while it runs (the test
vectors are made that way). Every event comes from a command through `app.handle`, as a
door sends it: nothing is written to the store directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from serviceorders.audit.checkpoints import Checkpoint, create_checkpoint, rotate_key
from serviceorders.bootstrap import build_application, init_database, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain import order as order_module
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.events import ALL_EVENTS, ChainedEvent
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import (
    Channel,
    CommandContext,
    HeaderChange,
    ItemAction,
    ItemState,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    Role,
    SpecRef,
)
from serviceorders.settings import Settings
from serviceorders.support.signing import public_hex

# Every event type's class name, as the topic ends (serviceorders.order:<name>).
EVENT_TYPES: tuple[str, ...] = tuple(sorted(e.__name__ for e in ALL_EVENTS))

MAX_SAFE = 2**53 - 1

# Characteristics whose canonical forms are hard to get right (docs/audit.md,
# "Specification"): numbers whose JCS and legacy (orjson) forms differ from Python's repr
# or from each other, integers at the I-JSON limit, text that is escaped or must not be,
# keys whose UTF-16 order differs from their code point order (U+E000 vs an emoji).
AWKWARD: dict[str, Any] = {
    "bandwidthMbps": 100,
    "accessType": "fibre",
    "tiny": 1e-7,
    "small": 2.775411931247677e-05,
    "millionth": 1e-6,
    "ten": 10.0,
    "negativeZero": -0.0,
    "huge": 1e21,
    "e16": 1e16,
    "e20": 1e20,
    "decimal": 123456.789,
    "tenth": 0.1,
    "negative": -1.5,
    "maxSafe": MAX_SAFE,
    "minSafe": -MAX_SAFE,
    "nearMax": MAX_SAFE - 1,
    "zürich": "Zürich — 東京 Ω ß",
    "😀": "an emoji key",
    "\ue000": "a private-use key (sorts after the emoji in UTF-16 order)",
    "rocket": "🚀 ✨ 👩‍👩‍👧",
    "controls": "tab\there, nul\u0000, unit sep\u001f, bell\u0007, newline\n, cr\r",
    "separators": "line\u2028paragraph\u2029end",
    "escapes": 'quote " backslash \\ slash / del \u007f',
    "flag": True,
    "nothing": None,
    "nested": {"list": [1e-6, 1e20, 0.5, -0.0, 3, "x"], "é": {"😀": 1e-7}},
}

# Personal data (sealed in the events: related parties' and places' names, the contact).
CUSTOMER = Party(id="CUST-Ä-1", name="Jürgen Ø'Brien-Łukasiewicz 😀", role="customer")
CONTACT = "jürgen@example.org"


@dataclass
class Scenario:
    """What `build_scenario` made.

    `orders`: name -> order id ("awkward", "drafted", "resubmitted", "completed", "failed");
    `topics`: name -> its events' class names, oldest first; `checkpoints`: the checkpoints
    created (seq order); `hmac_key`: the key they are HMAC'd with (None: none);
    `public_keys`: hex of the Ed25519 keys that signed them, in order (key a, then key b)."""

    settings: Settings
    url: str
    path: Path | None
    orders: dict[str, UUID]
    topics: dict[str, list[str]]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    hmac_key: str | None = None
    public_keys: list[str] = field(default_factory=list)
    # issue 20: the services the orders made or named (aggregate id -> its events' class
    # names): chains in the same log, which verify counts with the orders'
    services: dict[UUID, list[str]] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(len(t) for t in self.topics.values())

    @property
    def chains(self) -> int:
        return len(self.orders) + len(self.services)

    @property
    def all_events(self) -> int:
        return self.events + sum(len(t) for t in self.services.values())

    def event_types(self) -> set[str]:
        return {t for topics in self.topics.values() for t in topics}


# ----------------------------------------------------------------------- the actors
def _ctx(
    actor: str, role: Role, channel: Channel, correlation: Iterator[int]
) -> Callable[[], CommandContext]:
    return lambda: CommandContext.for_actor(
        actor, role, channel, correlation_id=f"corr-{next(correlation):03d}"
    )


@dataclass
class _Actors:
    upstream: Callable[[], CommandContext]
    agent: Callable[[], CommandContext]
    manager: Callable[[], CommandContext]
    other_manager: Callable[[], CommandContext]
    fulfilment: Callable[[], CommandContext]

    @classmethod
    def make(cls) -> _Actors:
        counter = itertools.count(1)
        return cls(
            upstream=_ctx("crm-Ω", Role.UPSTREAM, Channel.KAFKA, counter),
            agent=_ctx("alice", Role.AGENT, Channel.API, counter),
            manager=_ctx("bob", Role.MANAGER, Channel.API, counter),
            other_manager=_ctx("carol", Role.MANAGER, Channel.CLI, counter),
            fulfilment=_ctx("fulfil-1", Role.FULFILMENT, Channel.KAFKA, counter),
        )


def _item(item_id: str, spec: str, characteristics: dict[str, Any], **kw: Any) -> OrderItem:
    return OrderItem(
        id=item_id,
        action=ItemAction.ADD,
        specification=SpecRef(id=spec),
        characteristics=characteristics,
        place=Place(id="site-Ω", name="Müllerstraße 5, 東京 🏢"),
        **kw,
    )


def _items() -> tuple[OrderItem, ...]:
    return (
        _item("1", "internet-access", dict(AWKWARD)),
        _item("2", "managed-router", {"model": "c1100"}, depends_on=("1",)),
    )


def _header(external_id: str, **kw: Any) -> OrderHeader:
    return OrderHeader(
        external_id=external_id,
        description="an order with awkward values: ünïcødé, 😀, 1e-7",
        related_parties=(CUSTOMER,),
        notification_contact=CONTACT,
        **kw,
    )


# --------------------------------------------------------------------- the commands
Phase = Callable[[ServiceOrders, _Actors, dict[str, UUID]], None]


def _phase_one(app: ServiceOrders, a: _Actors, orders: dict[str, UUID]) -> None:
    """Orders received, drafted, configured; one rejected."""
    orders["awkward"] = app.handle(
        a.upstream(), cmd.ReceiveOrder(_header("scenario-awkward"), _items())
    ).order.id  # OrderDrafted, OrderSubmitted
    drafted = app.handle(
        a.agent(), cmd.DraftOrder(_header("scenario-drafted", priority="1"))
    ).order.id  # OrderDrafted
    orders["drafted"] = drafted
    for line in _items():
        app.handle(a.agent(), cmd.AddLine(drafted, line))  # LineAdded
    app.handle(
        a.agent(),
        cmd.ConfigureLine(
            drafted,
            "1",
            characteristics={"ten": 10.0, "e16": 1e16, "emoji 😀": "🚀", "\ue000": -0.0},
            cleared=("tiny",),
            quantity=2,
        ),
    )  # LineConfigured
    app.handle(a.agent(), cmd.AddLine(drafted, _item("3", "managed-router", {"model": "c1100"})))
    app.handle(a.agent(), cmd.RemoveLine(drafted, "3"))  # LineRemoved
    app.handle(a.agent(), cmd.Submit(drafted))  # OrderSubmitted
    app.handle(a.manager(), cmd.Reject(drafted, "bandwidth of 1e21 Mbit/s — no"))  # OrderRejected
    for name in ("completed", "failed"):
        orders[name] = app.handle(
            a.upstream(), cmd.ReceiveOrder(_header(f"scenario-{name}"), _items())
        ).order.id


def _phase_two(app: ServiceOrders, a: _Actors, orders: dict[str, UUID]) -> None:
    """Fulfilment, proposals, a resubmission, cancellation requests."""
    awkward = orders["awkward"]
    app.handle(a.manager(), cmd.Approve(awkward, note="ok ✓"))  # OrderApproved
    app.handle(a.fulfilment(), cmd.AddNote(awkward, "survey: 東京, 10.0 m"))  # NoteAdded
    app.handle(a.fulfilment(), cmd.Hold(awkward, "access denied \u2028 gate"))  # OrderHeld
    app.handle(a.fulfilment(), cmd.Resume(awkward, note="gate open"))  # OrderResumed
    app.handle(a.fulfilment(), cmd.RequestInformation(awkward, "floor? 🏢"))  # InformationRequested
    app.handle(a.upstream(), cmd.ProvideInformation(awkward, "3rd floor"))  # InformationProvided
    bigger = _item("1", "internet-access", {**AWKWARD, "bandwidthMbps": 1000, "tiny": 2e-7})
    app.handle(a.agent(), cmd.Revise(awkward, items=(bigger,)))  # RevisionProposed
    app.handle(a.manager(), cmd.ApproveProposal(awkward, note="fine"))  # ProposalApproved
    app.handle(a.agent(), cmd.Revise(awkward, header=HeaderChange(priority="0")))
    app.handle(a.other_manager(), cmd.RefuseProposal(awkward, "no 😀"))  # ProposalRefused
    app.handle(a.agent(), cmd.Revise(awkward, header=HeaderChange(description="again")))
    app.handle(a.agent(), cmd.WithdrawProposal(awkward, "never mind"))  # ProposalWithdrawn
    app.handle(a.fulfilment(), cmd.ReachPointOfNoReturn(awkward, note="digging"))

    drafted = orders["drafted"]
    resubmitted = app.handle(
        a.agent(),
        cmd.Resubmit(drafted, external_id="scenario-resubmitted", submit=True),
    ).order.id  # OrderResubmitted (rejected order); OrderDrafted, OrderSubmitted (new one)
    orders["resubmitted"] = resubmitted
    app.handle(
        a.agent(), cmd.Revise(resubmitted, header=HeaderChange(category="ß"))
    )  # OrderRevised (before approval: no proposal)
    app.handle(a.manager(), cmd.Approve(resubmitted))
    app.handle(
        a.upstream(), cmd.RequestCancellation(resubmitted, reason="moved", request_id="req-1")
    )  # CancellationRequested
    app.handle(
        a.manager(), cmd.RequestCancellationInformation(resubmitted, "which date?")
    )  # CancellationInformationRequested
    app.handle(
        a.upstream(), cmd.ProvideCancellationInformation(resubmitted, "the 1st ✓")
    )  # CancellationInformationProvided
    app.handle(a.manager(), cmd.DenyCancellation(resubmitted, "too late?"))  # CancellationDenied

    for name in ("completed", "failed"):
        app.handle(a.manager(), cmd.Approve(orders[name]))


def _phase_three(app: ServiceOrders, a: _Actors, orders: dict[str, UUID]) -> None:
    """Every order ends: completed, failed, partially completed (then deleted), cancelled;
    a change of a service the completed order made is rejected."""

    def items(order: UUID, *states: tuple[str, ItemState]) -> None:
        changes = tuple(cmd.ItemStateChange(i, s, reason="done ✓") for i, s in states)
        app.handle(a.fulfilment(), cmd.ChangeItemStates(order, changes))  # ItemStateChanged

    done, failed = ItemState.COMPLETED, ItemState.FAILED
    items(orders["awkward"], ("1", done), ("2", failed))  # OrderPartiallyCompleted
    app.handle(a.manager(), cmd.Delete(orders["awkward"], "archived"))  # OrderDeleted
    items(orders["completed"], ("1", done), ("2", done))  # OrderCompleted
    items(orders["failed"], ("1", failed), ("2", failed))  # OrderFailed
    resubmitted = orders["resubmitted"]
    app.handle(
        a.upstream(), cmd.RequestCancellation(resubmitted, reason="moved out", request_id="req-2")
    )
    app.handle(a.other_manager(), cmd.ApproveCancellation(resubmitted))  # CancellationApproved
    app.handle(a.manager(), cmd.Cancel(resubmitted, "customer left"))  # OrderCancelled
    # Issue 20: a change of the internet access the completed order made, checked against
    # the inventory (InventoryChecked; the service: ServiceOrderOpened, then Closed), rejected.
    access = service_id_for(orders["completed"], "1")
    change = _item("1", "internet-access", {"bandwidthMbps": 500}).model_copy(
        update={"action": ItemAction.MODIFY, "service_id": access}
    )
    orders["changed"] = app.handle(
        a.upstream(), cmd.ReceiveOrder(_header("scenario-changed"), (change,))
    ).order.id  # OrderDrafted, InventoryChecked, OrderSubmitted
    app.handle(a.manager(), cmd.Reject(orders["changed"], "not this month"))


PHASES: tuple[Phase, ...] = (_phase_one, _phase_two, _phase_three)


def drive(app: ServiceOrders, after_phase: Callable[[int], Any] | None = None) -> dict[str, UUID]:
    """Run the scenario's commands on `app`; `after_phase(n)` after phase n (1..3).
    Returns the orders by name."""
    actors = _Actors.make()
    orders: dict[str, UUID] = {}
    for n, phase in enumerate(PHASES, start=1):
        phase(app, actors, orders)
        if after_phase is not None:
            after_phase(n)
    return orders


def service_topics(app: ServiceOrders, orders: dict[str, UUID]) -> dict[UUID, list[str]]:
    """The services' stored events' class names (every aggregate of the log that is not
    one of the orders), oldest first."""
    found: dict[UUID, list[str]] = {}
    for n in app.recorder.select_notifications(start=1, limit=100_000):  # type: ignore[attr-defined]
        if n.originator_id not in orders.values():
            found.setdefault(n.originator_id, []).append(n.topic.rsplit(":", 1)[1])
    return found


def stored_topics(app: ServiceOrders, orders: dict[str, UUID]) -> dict[str, list[str]]:
    """Each order's stored events' class names, oldest first."""
    return {
        name: [
            s.topic.removeprefix("serviceorders.order:")
            for s in app.recorder.select_events(order_id)  # type: ignore[attr-defined]
        ]
        for name, order_id in orders.items()
    }


# ---------------------------------------------------------------- determinism
@contextlib.contextmanager
def deterministic(
    start: datetime = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    step: timedelta = timedelta(milliseconds=250),
) -> Iterator[None]:
    """While it runs, events get timestamps `start`, `start + step`, ... (so some have a
    fraction, some none) and proposals the ids 00000000-0000-4000-8000-00000000000n."""
    ticks = itertools.count()
    ids = itertools.count(1)
    # (on the base of order and service events alike: a service's events are in the log too)
    saved_clock = ChainedEvent.__dict__.get("create_timestamp")
    saved_uuid4 = order_module.uuid4
    ChainedEvent.create_timestamp = staticmethod(  # type: ignore[method-assign]
        lambda: start + step * next(ticks)
    )
    order_module.uuid4 = lambda: UUID(f"00000000-0000-4000-8000-{next(ids):012d}")  # type: ignore[assignment]
    try:
        yield
    finally:
        order_module.uuid4 = saved_uuid4  # type: ignore[assignment]
        if saved_clock is None:
            del ChainedEvent.create_timestamp
        else:
            ChainedEvent.create_timestamp = saved_clock  # type: ignore[method-assign]


# ---------------------------------------------------------------- the database
def signing_key(name: str) -> Ed25519PrivateKey:
    """The scenario's Ed25519 key `name` ("a", "b"): TEST ONLY (a fixed seed, published)."""
    seed = hashlib.sha256(f"serviceorders audit scenario: TEST ONLY key {name}".encode())
    return Ed25519PrivateKey.from_private_bytes(seed.digest())


def build_scenario(
    target: Path | str | Settings,
    *,
    hmac_key: str | None = "scenario-hmac-key",
    checkpoints: bool = True,
    signed: bool = True,
    now: datetime | None = None,
) -> Scenario:
    """A database holding the scenario's orders, with a checkpoint after each phase.

    `target`: a SQLite file path, a DATABASE_URL (e.g. a fresh PostgreSQL database) or
    Settings; the database must hold no orders yet. Checkpoints (unless `checkpoints` is
    False): three, HMAC'd with `hmac_key` (None: no HMAC); `signed`: 1 and 2 signed by
    `signing_key("a")`, 3 by `signing_key("b")` with key a's endorsement (a key rotation);
    `now` fixes their times (now + n minutes)."""
    if isinstance(target, Settings):
        settings = target
    elif "://" in str(target):
        settings = Settings.from_env({"DATABASE_URL": str(target)})
    else:
        settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{Path(target).resolve()}"})
    path = Path(settings.database.dbname) if settings.database.kind == "sqlite" else None
    init_database(settings)
    app = build_application(settings)
    made: list[Checkpoint] = []
    keys = {1: signing_key("a"), 2: signing_key("a"), 3: signing_key("b")}

    def checkpoint(n: int) -> None:
        if not checkpoints:
            return
        db = open_read_db(settings)
        try:
            at = now + timedelta(minutes=n) if now else None
            if signed and n == 3:
                found = rotate_key(db, keys[3], keys[2], key=hmac_key, now=at)
            else:
                key = keys[n] if signed else None
                found = create_checkpoint(db, key=hmac_key, signing_key=key, now=at)
        finally:
            db.close()
        assert found is not None and found.fresh, "no fresh checkpoint after a phase"
        made.append(found)

    try:
        orders = drive(app, checkpoint)
        topics = stored_topics(app, orders)
        services = service_topics(app, orders)
    finally:
        app.close()
    missing = set(EVENT_TYPES) - {t for ts in topics.values() for t in ts}
    assert not missing, f"the scenario reached no {sorted(missing)}"
    return Scenario(
        settings,
        settings.database.url(with_password=True),
        path,
        orders,
        topics,
        made,
        hmac_key if checkpoints else None,
        [public_hex(keys[1]), public_hex(keys[3])] if checkpoints and signed else [],
        services,
    )

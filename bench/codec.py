"""The intake's data path per typical order, in one process: no database, no Kafka
(issue 21, deliverable 1). `python3 -m bench.codec [--orders N] [--passes P]`.

Typical intake orders are `consumers/sample.traffic`'s valid create envelopes (3 items,
one customer, one note). Each figure is the median over P passes of the CPU time per
order of one stage run over the N orders (`time.process_time`), the collector paused as
the consume loop pauses it. The machine is shared: compare figures of the same run only.

(a) today's path per stage: the envelope (orjson + pydantic `Envelope`), the TMF641
    resource (pydantic `ServiceOrderCreate`), `order_to_domain`, sealing (`_seal_new`'s
    maps with the vault's AES-GCM, keys in memory), `ServiceOrder.receive` (catalog,
    events, dump, hash), and the events' dump + hash alone;
(b) building the two events validated (the library's `event_class(**kwargs)`) against
    trusted construction (`model_construct`) from the values just validated;
(c) msgspec (0.23) decoding the envelope and the TMF641 resource into Structs against
    orjson + pydantic;
(d) the TMF641 resource to the domain values: through the TMF641 models and
    `order_to_domain` against straight (tmf/tmf641_direct.py); and the mapping from the
    TMF641 graph with validated domain constructors, pydantic's `model_construct`, and
    domain/trusted.py.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from serviceorders.audit.pii import KeyStore, Vault
from serviceorders.consumers import envelope as env
from serviceorders.consumers.sample import traffic
from serviceorders.domain import events as ev
from serviceorders.domain import privacy
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.chain import GENESIS
from serviceorders.domain.order import ServiceOrder, envelope, order_id_for
from serviceorders.domain.trusted import trusted
from serviceorders.domain.values import (
    Actor,
    Channel,
    CommandContext,
    Note,
    OrderHeader,
    OrderItem,
    Role,
    Source,
)
from serviceorders.tmf import tmf641_in as tmf
from serviceorders.tmf.tmf641_direct import decode_create
from serviceorders.tmf.tmf641_in import ServiceOrderCreate, order_to_domain


class _MemoryKeys(KeyStore):
    """The vault's keys in a dict: sealing costs what it costs, without a database."""

    def __init__(self) -> None:
        super().__init__(db=None)
        self.keys: dict[str, bytes] = {}

    def get(self, scope: str) -> tuple[bytes | None, bool]:
        return self.keys.get(scope), False

    def get_or_create(self, scope: str) -> bytes | None:
        return self.keys.setdefault(scope, b"k" * 32)


def _ctx(n: int, event_id: str) -> CommandContext:
    return CommandContext(
        actor=Actor(id="kafka:orders", role=Role.UPSTREAM),
        source=Source(
            channel=Channel.KAFKA, topic="orders", partition=0, offset=n, event_id=event_id
        ),
        correlation_id=event_id,
        causation_id=event_id,
    )


def measure(fn: Callable[[Any], Any], inputs: Sequence[Any], passes: int) -> float:
    """Median over `passes` of the CPU µs per input of `fn` over every input."""
    times = []
    for _ in range(passes):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            for x in inputs:
                fn(x)
            times.append((time.process_time() - start) / len(inputs) * 1e6)
        finally:
            gc.enable()
    return statistics.median(times)


# ------------------------------------------------------------------------------ (b)
def _trusted(cls: type[ev.ChainedEvent], **fields: Any) -> ev.ChainedEvent:
    """An event built without validation (model_construct runs model_post_init)."""
    return cls.model_construct(**fields)


# ------------------------------------------------------------------------------ (c)
def _msgspec_decoder() -> Callable[[bytes], Any] | None:
    """msgspec's decoder of a typical create envelope into Structs (bench/codec_structs.py),
    or None without msgspec (not a dependency of the engine: `pip install msgspec`)."""
    try:
        import msgspec

        from .codec_structs import Envelope
    except ImportError:
        return None
    return msgspec.json.Decoder(Envelope).decode


# ------------------------------------------------------------------------------ (d)
def _construct(cls: type[Any], **fields: Any) -> Any:
    return cls.model_construct(**fields)


def _trusted_domain(
    body: ServiceOrderCreate, make: Callable[..., Any] = _construct
) -> tuple[OrderHeader, list[OrderItem], list[Note]]:
    """What order_to_domain makes, by `model_construct` from the validated TMF641 graph
    (the common case only: no extension attributes, no nesting, plain dependencies)."""
    items = []
    for item in body.service_order_item:
        service = item.service
        spec = service.service_specification
        place = next((p for p in service.place if p.id), None)
        items.append(
            make(
                OrderItem,
                id=item.id,
                action=item.action,
                specification=(
                    make(tmf.SpecRef, id=spec.id, name=spec.name, version=spec.version)
                    if spec
                    else None
                ),
                service_id=service.id,
                service_name=service.name,
                characteristics={c.name: c.value for c in service.service_characteristic},
                place=(
                    make(tmf.Place, id=place.id, name=place.name, role=place.role)
                    if place
                    else None
                ),
                quantity=item.quantity,
                depends_on=tuple(
                    r.order_item.target
                    for r in item.service_order_item_relationship
                    if r.order_item and r.order_item.target
                ),
            )
        )
    header = make(
        OrderHeader,
        **body.header_attributes(),
        external_id=body.external_id,
        category=body.category,
        related_parties=tuple(
            make(
                tmf.Party,
                id=p.id,
                name=p.name,
                role=p.role,
                referred_type=p.referred_type,
                extra=p.rest(),
            )
            for p in body.related_party
        ),
        order_relationships=(),
        extra=body.rest(),
    )
    notes = [
        make(Note, text=n.text, author=n.author, date=n.date, extra=n.rest()) for n in body.note
    ]
    return header, items, notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.codec", description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args(argv)
    n, passes = args.orders, args.passes

    messages = [m for m in traffic(n, duplicates=0, bad=0).messages if m.kind == "valid"]
    values = [m.value for m in messages]
    envelopes = [env.read_envelope(v) for v in values]
    resources = [e.event["serviceOrder"] for e in envelopes]
    bodies = [ServiceOrderCreate.model_validate(r, context=env.CHECKED) for r in resources]
    domain = [order_to_domain(b) for b in bodies]
    ctxs = [_ctx(i, e.event_id) for i, e in enumerate(envelopes)]
    catalog = Catalog.default()
    vault = Vault(_MemoryKeys())

    def seal(values: tuple[OrderHeader, list[OrderItem], list[Note]]) -> Any:
        header, items, notes = values
        scope = privacy.scope_of(header)

        def fn(text: str) -> str:
            return vault.seal(scope, text)

        return (
            privacy.map_header(header, fn),
            [privacy.map_item(i, fn) for i in items],
            tuple(privacy.map_note(n, fn) for n in notes),
        )

    sealed = [seal(d) for d in domain]
    work = list(zip(ctxs, sealed, strict=True))

    def receive(x: Any) -> ServiceOrder:
        ctx, (header, items, notes) = x
        return ServiceOrder.receive(ctx, header, items, catalog, None, notes)

    orders = [receive(x) for x in work]
    events = [e for o in orders for e in o.pending_events]

    def dump_and_hash(event: ev.ChainedEvent) -> Any:
        state = event._dump()
        return ev.event_hash(event.TOPIC, event.originator_id, event.originator_version, state)

    rows: list[tuple[str, str, float, str]] = []

    def row(
        group: str,
        name: str,
        fn: Callable[[Any], Any],
        inputs: Sequence[Any],
        per: float = 1.0,
        note: str = "",
    ) -> float:
        found = measure(fn, inputs, passes) * per
        rows.append((group, name, found, note))
        return found

    # (a) today's path, stage by stage
    row("a", "envelope: orjson + pydantic Envelope", env.read_envelope, values)
    row(
        "a",
        "TMF641 resource: pydantic ServiceOrderCreate",
        lambda r: ServiceOrderCreate.model_validate(r, context=env.CHECKED),
        resources,
    )
    row("a", "order_to_domain (TMF641 graph -> domain values)", order_to_domain, bodies)
    row("a", "sealing (map_header/item/note, AES-GCM)", seal, domain)
    row("a", "ServiceOrder.receive (all of it)", receive, work)
    row(
        "a",
        "  of which the events' dump + hash",
        dump_and_hash,
        events,
        per=len(events) / len(work),
    )
    row("a", "parse(): envelope .. ReceiveOrder", lambda m: env.parse(m.value, m.key), messages)

    # (b) the events: validated (as the library builds them) or trusted
    drafted: list[dict[str, Any]] = []
    submitted: list[dict[str, Any]] = []
    for ctx, (header, items, notes) in work:
        common = {**envelope(ctx), "timestamp": datetime.now().astimezone(), "prev_hash": GENESIS}
        oid = order_id_for(header.external_id)
        drafted.append(
            dict(
                common,
                originator_id=oid,
                originator_version=1,
                originator_topic=ServiceOrder.TOPIC,
                header=header,
                items=tuple(catalog.resolve(i) for i in items),
                notes=tuple(notes),
            )
        )
        submitted.append(dict(common, originator_id=oid, originator_version=2, flags=()))
    for label, build in (
        ("validated: cls(**kw)", lambda c, **kw: c(**kw)),
        ("trusted: pydantic model_construct", _trusted),
        ("trusted: domain/trusted.py", trusted),
    ):
        row(
            "b",
            f"OrderDrafted + OrderSubmitted, {label} (with dump + hash)",
            lambda pair, build=build: (
                build(ev.OrderDrafted, **pair[0]),
                build(ev.OrderSubmitted, **pair[1]),
            ),
            list(zip(drafted, submitted, strict=True)),
        )
    a = ev.OrderDrafted(**drafted[0])
    b = _trusted(ev.OrderDrafted, **drafted[0])
    c = trusted(ev.OrderDrafted, **drafted[0])
    same = all(
        orjson.dumps(a.stored_state()) == orjson.dumps(x.stored_state()) and a.hash == x.hash
        for x in (b, c)
    )

    # (c) msgspec Structs against orjson + pydantic, the envelope and its resource
    decode = _msgspec_decoder()
    row(
        "c",
        "orjson + pydantic Envelope + ServiceOrderCreate",
        lambda v: ServiceOrderCreate.model_validate(
            env.read_envelope(v).event["serviceOrder"], context=env.CHECKED
        ),
        values,
    )
    if decode is not None:
        row("c", "msgspec Structs (typed fields only, no extras)", decode, values)
    row("c", "orjson.loads alone", orjson.loads, values)

    # (d) the TMF641 graph to domain values
    row(
        "d",
        "TMF641 models + order_to_domain (the models' path)",
        lambda r: order_to_domain(ServiceOrderCreate.model_validate(r, context=env.CHECKED)),
        resources,
    )
    row(
        "d",
        "direct: tmf641_direct.decode_create (resource -> domain values)",
        lambda r: decode_create(r, nul_checked=True),
        resources,
    )
    row("d", "order_to_domain alone, as it is now", order_to_domain, bodies)
    row(
        "d",
        "validated: the domain classes' constructors",
        lambda b: _trusted_domain(b, lambda cls, **kw: cls(**kw)),
        bodies,
    )
    row("d", "trusted: pydantic model_construct from the TMF641 graph", _trusted_domain, bodies)
    row(
        "d",
        "trusted: domain/trusted.py from the TMF641 graph",
        lambda b: _trusted_domain(b, trusted),
        bodies,
    )

    print(
        f"bench.codec: {len(values)} typical intake orders, median of {passes} passes, "
        "CPU µs per order"
    )
    print(f"(b) trusted events store the same bytes and hash: {same}")
    print("| | candidate | µs/order |")
    print("|---|---|---|")
    for group, name, value, note in rows:
        print(f"| {group} | {name} | {value:.1f}{(' ' + note) if note else ''} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

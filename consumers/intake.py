"""A micro-batch of inbound messages -> one transaction (no Kafka here: tests drive it with
plain `Message`s, the consumer in `kafka.py` with what it polled).

Per message, in offset order: parse it into a domain command (envelope.py), skip it if its
`eventId` already took effect, apply it in the batch's unit of work (`app.unit_of_work`: one
instance per order for the whole batch; a refused command leaves its order as it was), or
dead-letter it with the category every door answers that refusal with (`answer_for`). Then
one `uow.commit(intake=...)` writes every order's new events, the applied `eventId`s, the
dead letters, the outbox records and the new partition positions (compare-and-set) in one
transaction. One bad message never holds back the rest of its batch; a failed transaction
leaves no trace and the batch is read again.

The inventory import topic (`inventory_topic`) rides the same batches under the same rules:
its messages are read by `envelope.parse_service` into `ImportService` commands, applied in
the same unit of work (the same service twice: once; another under its id: a
`service_conflict` dead letter), their eventIds recorded in `intake_applied`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid5

import orjson
from pydantic import ValidationError
from serviceorders.consumers import envelope as env
from serviceorders.consumers.store import (
    Applied,
    DeadLetter,
    IntakeStore,
    IntakeWrite,
    OutboxRecord,
    digest,
    seal_dead_letters,
)
from serviceorders.domain.application import ServiceOrders, UnitOfWork
from serviceorders.domain.errors import DomainError, OrderNotFound, ServiceConflict, answer_for
from serviceorders.domain.values import Actor, Channel, CommandContext, Source
from serviceorders.support import isotime, logs
from serviceorders.support.gcpause import gc_paused

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
REFUSAL_NAMESPACE = UUID("0d9c6a52-3f7e-5b8e-a1d4-5c2e9b7f3a10")


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class BatchResult:
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # new next offsets
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    dead_categories: dict[str, int] = field(default_factory=dict)  # dead letters by category
    skipped: int = 0  # below the stored position: read again after a seek
    orders_saved: int = 0
    # The correlation ids and orders of the messages applied (for the batch's log record)
    correlation_ids: set[str] = field(default_factory=set)
    order_ids: set[UUID] = field(default_factory=set)


class Intake:
    def __init__(
        self,
        app: ServiceOrders,
        store: IntakeStore,
        events_topic: str,
        inventory_topic: str | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.events_topic = events_topic
        # The topic of TMF638 services to import (None: no such topic in this batch).
        self.inventory_topic = inventory_topic

    def process(
        self, messages: Sequence[Message], stored: dict[tuple[str, int], int | None]
    ) -> BatchResult:
        """Apply one batch. `stored` holds, per partition, the next offset the database
        recorded when the batch was read (None: nothing recorded yet); the commit only
        succeeds if that is still so. Raises StaleBatch or the database's error, having
        written nothing."""
        with gc_paused():
            return self._process(messages, stored)

    def _process(
        self, messages: Sequence[Message], stored: dict[tuple[str, int], int | None]
    ) -> BatchResult:
        result = BatchResult()
        fresh: list[Message] = []
        for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
            start = stored.get((m.topic, m.partition))
            if start is not None and m.offset < start:
                result.skipped += 1
                continue
            fresh.append(m)
        if not fresh:
            return result
        batch = _Batch(self, fresh)
        batch.run()
        # Dead letters keep the message's bytes sealed (consumers/store.py, docs/kafka.md).
        sealed = seal_dead_letters(batch.dead, self.app.sealer, self.store.customer_of)
        write = IntakeWrite(applied=batch.applied, dead_letters=sealed, outbox=batch.outbox)
        last: dict[tuple[str, int], Message] = {}
        for m in fresh:  # sorted by offset: the last one per partition wins
            tp = (m.topic, m.partition)
            result.positions[tp] = max(result.positions.get(tp, 0), m.offset + 1)
            last[tp] = m
        write.positions = {
            tp: (stored.get(tp), new, digest(last[tp].key, last[tp].value))
            for tp, new in result.positions.items()
        }
        saved = len(batch.uow.pending())
        batch.uow.commit(intake=write)  # the events and the intake's rows: one transaction
        result.applied, result.duplicates = len(batch.applied), batch.duplicates
        result.dead_letters, result.orders_saved = len(batch.dead), saved
        result.correlation_ids, result.order_ids = batch.correlations, batch.order_ids
        for dead, known in zip(batch.dead, batch.dead_context, strict=True):
            # The reason only: never the message's bytes (they may hold personal data).
            fields = {
                **known,
                "category": dead.category,
                "event_id": dead.event_id,
                "kafka_topic": dead.topic,
                "kafka_partition": dead.partition,
                "kafka_offset": dead.offset,
            }
            log.info(
                "dead letter (%s): %s",
                dead.category,
                dead.reason,
                extra={k: v for k, v in fields.items() if v is not None},
            )
        for dead in batch.dead:
            result.dead_categories[dead.category] = result.dead_categories.get(dead.category, 0) + 1
        return result


def _correlation(m: Message, e: env.Envelope) -> tuple[str, str | None]:
    """(correlation id, trace id) of a message: its envelope's correlationId, else the trace
    id of its W3C `traceparent` header, else its eventId."""
    return logs.correlation(
        e.correlation_id, logs.header(m.headers, "traceparent"), default=lambda: e.event_id
    )


class _Batch:
    """The in-memory side of one batch: its commands applied in order in one unit of work
    (each order loaded once; a refused command leaves its order as it was before it)."""

    def __init__(self, intake: Intake, messages: list[Message]) -> None:
        self.intake = intake
        self.app = intake.app
        self.messages = messages
        # Replaced in `run` once the batch's existing orders are known; this one (nothing
        # exists, nothing to apply) is what a batch of refusals only commits.
        self.uow: UnitOfWork = self.app.unit_of_work(())
        self.applied: list[Applied] = []
        self.dead: list[DeadLetter] = []
        self.outbox: list[OutboxRecord] = []
        self.duplicates = 0
        self.correlations: set[str] = set()
        self.order_ids: set[UUID] = set()
        self.dead_context: list[dict[str, Any]] = []

    def run(self) -> None:
        parsed: list[tuple[Message, env.Parsed | env.ParsedService]] = []
        inventory = self.intake.inventory_topic
        for m in self.messages:
            try:
                if m.topic == inventory:
                    parsed.append((m, env.parse_service(m.value)))
                else:
                    parsed.append((m, env.parse(m.value, m.key)))
            except env.Refusal as r:
                correlation, trace = (
                    _correlation(m, r.envelope)
                    if r.envelope is not None
                    else (None, logs.trace_id(logs.header(m.headers, "traceparent")))
                )
                with logs.bind(correlation_id=correlation, trace_id=trace):
                    self._dead(m, r.category, r.reason, env.event_id_of(m.value))
                if r.envelope is not None and r.envelope.event_type in env.UPSTREAM_TYPES:
                    self._announce(
                        r.envelope,
                        r.category,
                        r.reason,
                        r.external_id,
                        None,
                        correlation or r.envelope.event_id,
                    )
        if not parsed:
            return
        done = self.intake.store.applied_ids([p.envelope.event_id for _, p in parsed])
        wanted = [
            order_id
            for _, p in parsed
            if isinstance(p, env.Parsed)
            for order_id in p.ref.candidates()
        ]
        # The orders that exist, in one query: any other is new, without a read.
        self.uow = self.app.unit_of_work(self.intake.store.existing_orders(wanted))
        for m, p in parsed:
            correlation, trace = _correlation(m, p.envelope)
            with logs.bind(
                correlation_id=correlation,
                trace_id=trace,
                order_id=p.order_id,
                kafka_topic=m.topic,
                kafka_partition=m.partition,
                kafka_offset=m.offset,
            ):
                if isinstance(p, env.ParsedService):
                    self._import(m, p, done, correlation)
                else:
                    self._one(m, p, done, correlation)

    def _import(self, m: Message, p: env.ParsedService, done: set[str], correlation: str) -> None:
        """One service of the import topic: a duplicate, imported (or already there with
        the same content: taken, nothing written), or dead-lettered."""
        event_id = p.envelope.event_id
        if event_id in done:
            self.duplicates += 1
            log.debug("duplicate eventId %s: already applied", event_id)
            return
        try:
            outcome = self.uow.apply(self._ctx(m, p), p.command)
        except ServiceConflict as e:
            self._dead(m, env.SERVICE_CONFLICT, str(e), p.sent_event_id)
            return
        except DomainError as e:
            self._dead(m, answer_for(e).category or env.INVALID_COMMAND, str(e), p.sent_event_id)
            return
        except Exception as e:  # a defect must not stop the partition: dead-letter it
            log.exception("message %s[%d]@%d failed unexpectedly", m.topic, m.partition, m.offset)
            self._dead(m, INTERNAL_ERROR, f"internal error: {type(e).__name__}", p.sent_event_id)
            return
        done.add(event_id)
        self.applied.append(
            Applied(
                event_id, m.topic, m.partition, m.offset, outcome.service.id, env.SERVICE_CREATE
            )
        )
        self.correlations.add(correlation)
        log.debug(
            "service %s %s (eventId %s)",
            p.command.service.id,
            "imported" if outcome.created else "already imported",
            event_id,
        )

    def _one(self, m: Message, p: env.Parsed, done: set[str], correlation: str) -> None:
        """One parsed message: a duplicate, applied, or dead-lettered."""
        event_id = p.envelope.event_id
        if event_id in done:
            self.duplicates += 1
            log.debug("duplicate eventId %s: already applied", event_id)
            return
        try:
            if p.check is not None and (refused := self._check(p)) is not None:
                self._refuse(m, p, env.INVALID_ORDER, refused)  # as REST PATCH's 400
                return
            order_id = self.uow.apply(self._ctx(m, p), p.command).order.id
        except DomainError as e:
            # The same category every door answers this refusal with (domain/errors.py).
            self._refuse(m, p, answer_for(e).category or env.INVALID_COMMAND, str(e))
            return
        except ValidationError as e:
            self._refuse(m, p, env.INVALID_ORDER, env._errors(e, "serviceOrder"))
            return
        except Exception as e:  # a defect must not stop the partition: dead-letter it
            log.exception("message %s[%d]@%d failed unexpectedly", m.topic, m.partition, m.offset)
            self._refuse(m, p, INTERNAL_ERROR, f"internal error: {type(e).__name__}")
            return
        done.add(event_id)
        self.applied.append(
            Applied(event_id, m.topic, m.partition, m.offset, order_id, p.envelope.event_type)
        )
        self.correlations.add(correlation)
        self.order_ids.add(order_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "applied %s (eventId %s)",
                p.envelope.event_type,
                event_id,
                extra={"order_id": str(order_id)},
            )

    def _check(self, p: env.Parsed) -> str | None:
        """`p.check` on its order as this batch has it so far (None: not found)."""
        assert p.check is not None
        try:
            order = self.uow.resolve(p.ref)
        except OrderNotFound:
            order = None
        sealer = self.app.sealer
        return p.check(order, sealer.reveal if sealer is not None else None)

    def _ctx(self, m: Message, p: env.Parsed | env.ParsedService) -> CommandContext:
        e = p.envelope
        return CommandContext(
            actor=Actor(id=f"kafka:{m.topic}", role=p.role),
            source=Source(
                channel=Channel.KAFKA,
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                event_id=e.event_id,
            ),
            correlation_id=_correlation(m, e)[0],
            causation_id=e.event_id,
        )

    # ----------------------------------------------------------------- refusals
    def _dead(self, m: Message, category: str, reason: str, event_id: str | None) -> None:
        self.dead.append(
            DeadLetter(
                m.topic,
                m.partition,
                m.offset,
                m.key,
                m.value,
                m.headers,
                reason,
                category,
                event_id,
            )
        )
        self.dead_context.append(dict(logs.context()))  # logged once the batch is written

    def _refuse(self, m: Message, p: env.Parsed, category: str, reason: str) -> None:
        e = p.envelope
        self._dead(m, category, reason, e.event_id)
        if not p.upstream:
            return  # fulfilment systems read the DLQ; the upstream hears of its own orders
        ref = p.ref
        self._announce(e, category, reason, ref.external_id, ref.order_id, _correlation(m, e)[0])

    def _announce(
        self,
        e: env.Envelope,
        category: str,
        reason: str,
        external: str | None,
        order_id: UUID | None,
        correlation: str,
    ) -> None:
        """Tell the upstream on the outbound topic: its order (or change) was refused."""
        key = external or (str(order_id) if order_id else None)
        now = isotime.now_iso()
        order: dict[str, Any] = {"@type": "ServiceOrder", "state": "rejected"}
        if order_id is not None:
            order["id"] = str(order_id)
        if external:
            order["externalId"] = external
        order["errorMessage"] = [
            {
                "@type": "ServiceOrderErrorMessage",
                "code": category,
                "reason": category,
                "message": reason,
                "timestamp": now,
            }
        ]
        event_id = str(uuid5(REFUSAL_NAMESPACE, e.event_id))
        body = {
            "eventId": event_id,
            "eventTime": now,
            "eventType": env.STATE_CHANGE,
            "correlationId": correlation,
            "domain": "serviceOrdering",
            "title": f"{e.event_type} refused",
            "description": reason,
            "event": {"serviceOrder": order},
        }
        self.outbox.append(
            OutboxRecord(
                event_id,
                self.intake.events_topic,
                key.encode() if key else None,
                orjson.dumps(body),
                (
                    ("eventType", env.STATE_CHANGE.encode()),
                    ("refusal.category", category.encode()),
                    ("refusal.event_id", e.event_id.encode()),
                ),
            )
        )

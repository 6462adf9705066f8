"""The Kafka commands: `consume`, `dlq list|show|replay|skip|purge`, `publish-sample`
(docs/kafka.md)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click
from serviceorders.cli.main import METRICS_PORT, Context, main, refusals

if TYPE_CHECKING:
    from serviceorders.settings import Settings

log = logging.getLogger("serviceorders.cli")


def _kafka_settings(settings: Settings) -> Settings:
    if not settings.kafka_bootstrap_servers:
        raise click.UsageError(
            "set KAFKA_BOOTSTRAP_SERVERS (host:port[,host:port]) to reach "
            "Kafka; `serviceorders serve` starts an embedded broker instead"
        )
    return settings


def _require_tables(settings: Settings) -> None:
    from serviceorders import schema
    from serviceorders.bootstrap import open_read_db

    db = open_read_db(settings)
    try:
        if not db.table_exists("intake_position"):
            raise click.UsageError(
                "the database has no intake tables: run `serviceorders db init` once first"
            )
        schema.check(db)  # before Kafka: a newer or older schema is refused at once
    finally:
        db.close()


@main.command()
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Exit once no message has arrived for this long (tests, batch jobs).",
)
@METRICS_PORT
@click.pass_obj
@refusals
def consume(obj: Context, idle_exit: float | None, metrics_port: int | None) -> None:
    """Consume TMF641 traffic from Kafka into orders, exactly once in effect.

    Joins the consumer group on the inbound topic, creates the topics it uses, and
    publishes dead letters and refusal notices. SIGTERM finishes the batch, commits and
    leaves the group."""
    from serviceorders.bootstrap import build_application
    from serviceorders.consumers.kafka import ConsumerWorker, ensure_topics
    from serviceorders.consumers.store import purge_hourly
    from serviceorders.notifications.kafka import start_publisher
    from serviceorders.serve import database_collector, serve_metrics
    from serviceorders.support.logs import configure, start_worker
    from serviceorders.support.logs import worker as logged

    settings = _kafka_settings(obj.settings)
    configure(settings.log_level, settings.log_format)
    _require_tables(settings)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    ensure_topics(settings, stopping)
    publisher = start_publisher(settings, stopping, dead_letters=True, notifications=False)
    start_worker("dead-letter purge", "dlq-purge", purge_hourly, settings, stopping)
    from serviceorders.metrics import EngineMetrics

    metrics = EngineMetrics(intake=True)
    metrics.registry.register(database_collector(settings, intake_outbox=True))
    worker = ConsumerWorker(settings, stopping, metrics=metrics, app=build_application(settings))
    server = serve_metrics(
        settings,
        metrics_port,
        metrics.registry,
        lambda: (not stopping.is_set(), {"process": "consume", "partitions": len(worker.stored)}),
    )
    last = [time.monotonic()]
    watcher = None
    if idle_exit is not None:

        def watch() -> None:
            while not stopping.wait(0.2):
                if not worker.stored:  # not consuming yet (joining the group): not idle
                    last[0] = time.monotonic()
                elif time.monotonic() - last[0] > idle_exit:
                    stopping.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

    def on_batch(_: Any) -> None:
        last[0] = time.monotonic()

    log.info(
        "consuming %s as group %s on %s",
        settings.inbound_topic,
        settings.consumer_group,
        settings.kafka_bootstrap_servers,
    )
    code = logged("kafka intake", worker.run)(on_batch=on_batch)
    stopping.set()
    publisher.join(timeout=30)
    if server is not None:
        server.shutdown()
    s = worker.stats
    log.info(
        "stopped: %d messages in %d batches, %d applied, %d duplicates, %d dead letters",
        s.messages,
        s.batches,
        s.applied,
        s.duplicates,
        s.dead_letters,
    )
    sys.exit(code)


@main.group()
def dlq() -> None:
    """Dead letters: inspect and re-submit refused inbound messages."""


def _text(value: bytes | None, limit: int) -> str:
    if value is None:
        return ""
    text = value.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "…"


@dlq.command("list")
@click.option("--category", default=None, help="Only this category (e.g. refused).")
@click.option("--pending", is_flag=True, help="Only those not replayed yet.")
@click.option("--since-id", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def dlq_list(
    obj: Context, category: str | None, pending: bool, since_id: int, limit: int, as_json: bool
) -> None:
    """The dead letters, oldest first, with their reasons."""
    from serviceorders.bootstrap import open_read_db
    from serviceorders.consumers.store import IntakeStore

    db = open_read_db(obj.settings)
    try:
        rows = IntakeStore(db).dead_letters(
            since_id=since_id, limit=limit, category=category, include_replayed=not pending
        )
    finally:
        db.close()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        **{
                            k: v
                            for k, v in r.items()
                            if k not in ("key", "value", "headers", "sealed_scope")
                        },
                        "sealed": _sealed(r),
                        "key": _text(r["key"], 10**9),
                        "value": _text(r["value"], 10**9),
                        "headers": {k: _text(v, 10**9) for k, v in r["headers"]},
                    }
                    for r in rows
                ],
                indent=2,
                default=str,
            )
        )
        return
    if not rows:
        click.echo("no dead letters", err=True)
        return
    for r in rows:
        replayed = f" replayedx{r['replay_count']}" if r["replay_count"] else ""
        key = "[erased]" if r["erased"] else repr(_text(r["key"], 40))
        click.echo(
            f"#{r['id']:<6} {r['source_topic']}[{r['source_partition']}]@"
            f"{r['source_offset']}  {r['category']}{replayed}  key={key}"
            f"  eventId={r['event_id'] or '-'}  sealed={_sealed(r)}\n        {r['reason']}"
        )


def _sealed(r: dict[str, Any]) -> str:
    """How a dead letter's bytes are kept: the customer's key, the month's dead-letter key
    (dropped after the retention), plain (written before dead letters were sealed), or
    erased (the key is gone)."""
    scope = r["sealed_scope"]
    if r["erased"]:
        return "erased"
    if scope is None:
        return "plain"
    return "retention" if scope.startswith("deadletter:") else "customer"


@dlq.command("show")
@click.argument("dl_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def dlq_show(obj: Context, dl_id: int, as_json: bool) -> None:
    """One dead letter: its reason and metadata, then the message as it came (revealed)."""
    from serviceorders.bootstrap import open_read_db
    from serviceorders.consumers.store import IntakeStore

    db = open_read_db(obj.settings)
    try:
        r = IntakeStore(db).dead_letter(dl_id)
    finally:
        db.close()
    if r is None:
        raise click.BadParameter(f"no dead letter #{dl_id}", param_hint="ID")
    meta = {k: v for k, v in r.items() if k not in ("key", "value", "headers", "sealed_scope")}
    meta["sealed"] = _sealed(r)
    meta["headers"] = {k: _text(v, 10**9) for k, v in r["headers"]}
    if as_json:
        meta["key"] = _text(r["key"], 10**9)
        meta["value"] = _text(r["value"], 10**9)
        click.echo(json.dumps(meta, indent=2, default=str))
        return
    for name, value in meta.items():
        click.echo(f"{name}: {value}")
    if r["erased"]:
        click.echo("message: [erased] (its key was deleted: erasure or retention)")
        return
    click.echo(f"key: {_text(r['key'], 10**9)}")
    click.echo("value:")
    click.echo(_text(r["value"], 10**9))


@dlq.command("purge")
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    default=None,
    help="Override SERVICEORDERS_DLQ_RETENTION_DAYS.",
)
@click.pass_obj
@refusals
def dlq_purge(obj: Context, retention_days: int | None) -> None:
    """Drop the dead letters that name no customer once past the retention, and the
    dead-letter keys no row needs any more (`consume` does it hourly too)."""
    from serviceorders.bootstrap import open_read_db
    from serviceorders.consumers.store import purge_dead_letters

    days = retention_days or obj.settings.dlq_retention_days
    _require_tables(obj.settings)
    db = open_read_db(obj.settings)
    try:
        done = purge_dead_letters(db, days)
    finally:
        db.close()
    click.echo(
        f"purged {done.rows} dead letter(s) older than {days} days"
        + (f"; deleted the keys {', '.join(done.keys)}" if done.keys else ""),
        err=True,
    )


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter not replayed yet.")
@click.option("--category", default=None, help="With --all: only this category.")
@click.pass_obj
@refusals
def dlq_replay(obj: Context, ids: tuple[int, ...], replay_all: bool, category: str | None) -> None:
    """Re-publish dead letters to the inbound topic as they were (after a fix); those of
    the inventory import topic (and of `inventory import` files) to the import topic.

    A dead-lettered eventId was never marked as applied, so its replay is not a duplicate."""
    from kafka import KafkaProducer
    from serviceorders.bootstrap import open_read_db
    from serviceorders.consumers.kafka import UNDECODABLE
    from serviceorders.consumers.store import IntakeStore
    from serviceorders.notifications.kafka import producer_options

    settings = _kafka_settings(obj.settings)
    if not ids and not replay_all:
        raise click.UsageError("name dead letter ids, or give --all")
    db = open_read_db(settings)
    store = IntakeStore(db)
    try:
        if replay_all:
            rows = [
                r
                for r in store.dead_letters(limit=10**6, category=category, include_replayed=False)
                if r["category"] != UNDECODABLE and not r["erased"]
            ]
        else:
            rows = []
            for dl_id in ids:
                found = store.dead_letter(dl_id)
                if found is None:
                    raise click.BadParameter(f"no dead letter #{dl_id}", param_hint="IDS")
                if found["category"] == UNDECODABLE:
                    raise click.BadParameter(
                        f"#{dl_id} is a skipped record batch (raw bytes, not a message): it "
                        "cannot be replayed; have its producer send the orders again",
                        param_hint="IDS",
                    )
                if found["erased"]:
                    raise click.BadParameter(
                        f"#{dl_id} cannot be replayed: its key was deleted (its customer's "
                        "data was erased, or its retention passed); have its producer send "
                        "it again",
                        param_hint="IDS",
                    )
                rows.append(found)
        producer = KafkaProducer(acks="all", **producer_options(settings))
        topics = set()
        try:
            for r in rows:
                headers = [(k, v) for k, v in r["headers"] if not k.startswith("dlq.")]
                headers.append(("dlq.replay_of", str(r["id"]).encode()))
                source = r["source_topic"]
                imported = source == settings.inventory_topic or source.startswith("file:")
                topic = settings.inventory_topic if imported else settings.inbound_topic
                topics.add(topic)
                producer.send(topic, key=r["key"], value=r["value"], headers=headers).get(
                    timeout=30
                )
                store.mark_replayed(r["id"])
        finally:
            producer.close(timeout=10)
    finally:
        db.close()
    named = ", ".join(sorted(topics)) or settings.inbound_topic
    click.echo(f"replayed {len(rows)} dead letter(s) to {named}", err=True)


@dlq.command("skip")
@click.option(
    "--topic",
    default=None,
    metavar="TOPIC",
    help="The stalled partition's topic (default: the inbound topic).",
)
@click.option("--partition", type=click.IntRange(min=0), required=True)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    required=True,
    help="The offset the consumer's log line and metric name.",
)
@click.option("--actor", required=True, help="Who decides (recorded with the dead letter).")
@click.option("--reason", required=True, help="Why (recorded with the dead letter).")
@click.pass_obj
@refusals
def dlq_skip(
    obj: Context, topic: str | None, partition: int, offset: int, actor: str, reason: str
) -> None:
    """Dead-letter a record batch that cannot be decoded and move the intake past it.

    Reads the batch at OFFSET from the broker (it must still fail to decode there), then in
    one transaction records a dead letter of category `undecodable` with the batch's raw
    bytes, the actor and the reason, and moves the partition's intake position past the
    batch. A running consumer resumes the partition within a few seconds."""
    from serviceorders.bootstrap import open_read_db
    from serviceorders.consumers.kafka import (
        STALL_RECHECK_SECONDS,
        SkipRefused,
        read_undecodable,
        skip_batch,
    )

    settings = _kafka_settings(obj.settings)
    _require_tables(settings)
    topic = topic or settings.inbound_topic
    actor, reason = actor.strip(), reason.strip()
    for name, value in (("--actor", actor), ("--reason", reason)):
        if not value or len(value) > 200 or not value.isprintable():
            raise click.BadParameter("1 to 200 printable characters", param_hint=name)
    try:
        bad = read_undecodable(settings, topic, partition, offset)
    except (LookupError, TimeoutError) as e:
        raise click.ClickException(str(e)) from None
    if bad is None:
        raise click.ClickException(
            f"the record at {topic}[{partition}] offset {offset} decodes fine: nothing to skip"
        )
    db = open_read_db(settings)
    try:
        dl_id = skip_batch(db, bad, actor, reason)
    except SkipRefused as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    log.warning(
        "%s skipped the undecodable record batch %s[%d] offsets %s (%s): %s",
        actor,
        topic,
        partition,
        bad.offsets,
        bad.why,
        reason,
    )
    click.echo(
        f"skipped {topic}[{partition}] offsets {bad.offsets} "
        f"({len(bad.raw or b'')} bytes, {bad.why}) as dead letter #{dl_id}; the intake "
        f"position is now {bad.end}: a running consumer resumes within "
        f"{STALL_RECHECK_SECONDS:.0f} s",
        err=True,
    )


@main.command("publish-sample")
@click.option("--count", type=int, default=100, show_default=True, help="Distinct orders.")
@click.option(
    "--duplicates",
    type=float,
    default=0.1,
    show_default=True,
    help="Share of extra messages repeating an order.",
)
@click.option(
    "--bad",
    type=float,
    default=0.05,
    show_default=True,
    help="Share of extra bad messages (each kind of refusal).",
)
@click.option("--seed", type=int, default=None, help="Same seed, same traffic.")
@click.option("--prefix", default=None, help="External id prefix (default: per run).")
@click.pass_obj
@refusals
def publish_sample(
    obj: Context, count: int, duplicates: float, bad: float, seed: int | None, prefix: str | None
) -> None:
    """Publish realistic TMF641 traffic to the inbound topic: multi-site orders with mixed
    actions, some published twice, a few bad ones, so you can watch the engine work."""
    from serviceorders.consumers.kafka import ensure_topics, publish_inbound
    from serviceorders.consumers.sample import traffic

    settings = _kafka_settings(obj.config)  # needs no database
    if count < 0:
        raise click.BadParameter("must be 0 or more", param_hint="--count")
    seed = seed if seed is not None else int(time.time())
    prefix = prefix or f"SAMPLE-{seed}"
    sample = traffic(count, duplicates=duplicates, bad=bad, seed=seed, prefix=prefix)
    ensure_topics(settings)
    publish_inbound(settings, [(m.key, m.value) for m in sample.messages])
    kinds: dict[str, int] = {}
    for m in sample.messages:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    click.echo(
        f"published {len(sample.messages)} messages to {settings.inbound_topic}: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
        err=True,
    )

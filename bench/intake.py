"""Intake end to end: N orders published to a fresh inbound topic -> every order stored
as events, acknowledged (its intake row and partition position committed), and visible in
`review_queue` and `order_summary` -- with the real `serviceorders consume` (1 or 2
processes) and `serviceorders project` processes, on a fresh database.

Timing. The consumers join their (fresh) group on an empty topic first: Tansu's group
join takes ~3.5 s and a second member's rebalance ~5 s, which is not throughput. Once
every consumer holds its partitions (and the group has been quiet for a second), the N
messages are published in one burst (kafka-python, ~10k msgs/s, so the publisher is done
long before the engine) and the clock starts at the first send. A poller (every 50 ms)
reads the database: the orders/s figures divide N by the time until the last order is
stored (`intake_applied`) and until every order is visible in both read models.
Projection lag = the moment every order is visible - the last intake commit
(`max(intake_applied.applied_at)`, stamped just before the commit).

Paced (`rate`): the same orders published at a steady rate below capacity instead of in one
burst; the lag at the end then shows how far the read models trail a steady stream.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaProducer
from serviceorders.consumers.kafka import ensure_topics
from serviceorders.settings import Settings

from .ceiling import publish
from .common import Proc, engine_env, log, processes, run_cli, wait_for

SECTION = "intake"
ASSIGNED = re.compile(r"partitions (assigned|revoked)")


@dataclass
class IntakeRun:
    consumers: int
    orders: int
    events: int
    stored_s: float
    visible_s: float
    lag_s: float
    peak_consume_mb: float
    peak_project_mb: float
    consume_cpu_s: float
    project_cpu_s: float
    kafka_committed: int | None
    database_url: str

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.visible_s

    @property
    def stored_per_s(self) -> float:
        return self.orders / self.stored_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.visible_s


def _group_settled(consumers: list[Proc], quiet: float) -> bool:
    """Every consumer logged an assignment and none logged anything about partitions for
    `quiet` seconds."""
    for p in consumers:
        if not ASSIGNED.search(p.text()):
            return False
    newest = max(p.log_path.stat().st_mtime for p in consumers)
    return time.time() - newest >= quiet


def _state(conn: psycopg.Connection[Any]) -> tuple[int, datetime | None, int, int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM intake_applied), (SELECT max(applied_at) FROM "
        "intake_applied), (SELECT count(*) FROM order_summary), (SELECT count(*) FROM "
        "review_queue), (SELECT coalesce(max(notification_id), 0) FROM serviceorders_events),"
        " (SELECT coalesce(min(position), 0) FROM projection_position)"
    ).fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


def _kafka_committed(bootstrap: str, group: str, topic: str) -> int | None:
    """The group's committed offsets on the inbound topic, summed (the Kafka-side ack)."""
    try:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
        finally:
            consumer.close(autocommit=False)
    except Exception:
        return None


def publish_at(bootstrap: str, topic: str, messages: list[Any], rate: float) -> None:
    """Publish at a steady `rate` (messages/s), in ticks of 20 ms, each flushed."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    t0 = time.perf_counter()
    per_tick = max(1, round(rate * 0.02))
    try:
        for i in range(0, len(messages), per_tick):
            due = t0 + i / rate
            if due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            for m in messages[i : i + per_tick]:
                producer.send(topic, key=m.key, value=m.value)
            producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def run(
    *,
    database_url: str,
    bootstrap: str,
    messages: list[Any],
    consumers: int,
    tag: str,
    logs: Path,
    partitions: int = 4,
    batch: int | None = None,
    profile: str | None = None,
    timeout: float = 300,
    rate: float | None = None,
) -> IntakeRun:
    """`rate`: publish at that steady rate instead of in one burst."""
    count = len(messages)
    inbound, group = f"bench.{tag}.inbound", f"bench-{tag}"
    extra = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SERVICEORDERS_INBOUND_TOPIC": inbound,
        "SERVICEORDERS_CONSUMER_GROUP": group,
        "SERVICEORDERS_EVENTS_TOPIC": f"bench.{tag}.events",
        "SERVICEORDERS_TOPIC_PARTITIONS": str(partitions),
    }
    if batch:
        extra["SERVICEORDERS_CONSUME_BATCH"] = str(batch)
    env = engine_env(database_url, **extra)
    run_cli(["db", "init"], env)
    ensure_topics(Settings.from_env(env))
    with processes() as procs, psycopg.connect(database_url, autocommit=True) as conn:
        project = Proc("project", ["project"], env, logs / f"{tag}-project.log").start()
        if profile:
            project.attach_profiler(Path(profile) / f"project-{tag}.txt")
        procs.append(project)
        workers = []
        for n in range(consumers):
            w = Proc(f"consume{n}", ["consume"], env, logs / f"{tag}-consume{n}.log").start()
            if profile and n == 0:
                w.attach_profiler(Path(profile) / f"consume-{tag}.txt")
            workers.append(w)
            procs.append(w)
        wait_for(
            lambda: _group_settled(workers, 1.0),
            60,
            "the consumer group to settle",
            interval=0.1,
            alive=[project, *workers],
        )
        t0 = time.time()
        sender = None
        if rate is None:
            publish(bootstrap, inbound, messages)
        else:
            sender = threading.Thread(
                target=publish_at, args=(bootstrap, inbound, messages, rate), daemon=True
            )
            sender.start()
        stored_at = visible_at = None
        last = None
        deadline = time.monotonic() + timeout
        while visible_at is None:
            applied, last, summary, review, head, position = _state(conn)
            now = time.time()
            for p in (project, *workers):
                p.sample()
            if stored_at is None and applied >= count:
                stored_at = last.timestamp() if last else now
            if applied >= count and summary >= count and review >= count and position >= head > 0:
                visible_at = now
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"intake {tag}: {applied}/{count} stored, {summary} in "
                    f"order_summary, {review} in review_queue, projections at "
                    f"{position} of {head}"
                )
            for p in (project, *workers):
                p.check_alive()
            time.sleep(0.05)
        if sender is not None:
            sender.join(60)
        events = int(conn.execute("SELECT count(*) FROM serviceorders_events").fetchone()[0])
        time.sleep(0.3)  # the Kafka commit follows the database commit
        committed = _kafka_committed(bootstrap, group, inbound)
        for p in procs:
            p.sample()
        for p in procs:
            p.stop()
    assert last is not None and stored_at is not None
    result = IntakeRun(
        consumers=consumers,
        orders=count,
        events=events,
        stored_s=stored_at - t0,
        visible_s=visible_at - t0,
        lag_s=max(0.0, visible_at - last.timestamp()),
        peak_consume_mb=max(w.peak_mb for w in workers),
        peak_project_mb=project.peak_mb,
        consume_cpu_s=sum(w.cpu_seconds for w in workers),
        project_cpu_s=project.cpu_seconds,
        kafka_committed=committed,
        database_url=database_url,
    )
    paced = "" if rate is None else f" (published at {rate:,.0f}/s)"
    log(
        f"intake x{consumers}{paced}: {result.orders_per_s:,.0f} orders/s visible "
        f"({result.stored_per_s:,.0f}/s stored), {result.events_per_s:,.0f} events/s, lag "
        f"{result.lag_s:.2f}s, consume CPU {result.consume_cpu_s:.1f}s, project CPU "
        f"{result.project_cpu_s:.1f}s, RSS consume {result.peak_consume_mb:.0f} MB / "
        f"project {result.peak_project_mb:.0f} MB, Kafka committed {committed}"
    )
    return result


def verify_projections(database_url: str) -> int:
    """`projections verify` on the intake's database (the live projector's tables against
    a rebuild at the same position): the number of rows that differ (0 expected)."""
    from serviceorders.bootstrap import event_mapper, open_read_db
    from serviceorders.projections.maintenance import verify

    db = open_read_db(Settings.from_env(engine_env(database_url)))
    try:
        differences = verify(db, event_mapper())
    finally:
        db.close()
    for d in differences[:5]:
        log(f"projections verify: {d.projection} {d.key}: live {d.live} rebuilt {d.rebuilt}")
    return len(differences)

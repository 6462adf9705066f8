"""Reliability under faults: `python3 -m bench.reliability [--short] [--orders N] [--kills K]
[--seed S] [--json PATH]`.

One scripted scenario, with traffic flowing the whole time through both doors:

- Kafka: TMF641 create events (`consumers.sample.traffic`: 10% repeated messages, 5% bad ones
  of every kind), published at a steady pace to the inbound topic;
- REST: a client posting orders (unique `externalId`s, an `Idempotency-Key`), retrying with
  the same key on a connection error or a 5xx (every 5xx answer is counted).

The engine runs as real processes (2 x `serviceorders consume`, 1 x `project`, 1 x `api`)
under a supervisor loop that restarts a process whenever it exits, as a process manager
would. Faults, at seeded random points (the seed is printed):

- SIGKILL of a consumer, the projector or the API server (at least 20 in one run);
- a PostgreSQL restart (a private throwaway cluster: `pg_ctl stop -m fast`, 2 s down,
  `start`): the processes must ride it out by themselves -- a process exiting on its own
  with a non-zero status is a crash;
- a broker restart (the embedded, memory-only broker: it forgets every topic, so the topics
  are created again and the rest of the traffic is published after the restart): intake and
  outbound publication must resume by themselves.

Then everything is drained (every order stored and projected, every outbox published) and
compared with an uninterrupted reference run of the same traffic on a fresh database:
the same orders, the same number of events per order (none lost, none doubled), the same
read-model rows (timestamps and log positions aside), the same dead letters;
`projections verify` must pass on the faulted database. The figures table is printed,
the JSON written, and the exit status is 1 on any loss, doubling, 5xx, crash or difference.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from serviceorders.consumers.broker import stop_group
from serviceorders.projections.views import PROJECTIONS

from .common import ROOT, engine_env, free_port, log, run_cli, serviceorders, spawn

PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"
PARTITIONS = 3


# ------------------------------------------------------------ a private cluster
class Cluster:
    """A throwaway PostgreSQL cluster (trust auth, loopback, its own port) that this
    scenario may stop and start at will: never the shared server."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "pgdata"
        self.port = free_port()
        self.logfile = workdir / "postgres.log"

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> Cluster:
        parent = self.dir.parent
        if os.geteuid() == 0:
            shutil.chown(parent, "postgres")
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        return self

    @property
    def options(self) -> str:
        # fsync off: a fast shutdown is clean (it writes everything), and this is a scratch
        # cluster on a shared machine; the scenario's outage is the restart, not a power cut.
        return (
            f"-p {self.port} -k /tmp -h 127.0.0.1 -c fsync=off -c max_connections=200 "
            "-c shared_buffers=64MB"
        )

    def start(self) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            self.options,
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.dir),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "stop",
            check=False,
        )

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


# ------------------------------------------------------------------ supervisor
@dataclass
class Slot:
    """One engine process under supervision; restarted whenever it exits."""

    name: str
    kind: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    killing: bool = False
    starts: int = 0
    started_at: float = 0.0

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            out.write(
                f"\n===== start #{self.starts + 1} at {time.strftime('%H:%M:%S')} =====\n".encode()
            )
            out.flush()
            self.popen = spawn(self.args, self.env, out)
        self.starts += 1
        self.started_at = time.monotonic()
        self.killing = False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        assert self.popen is not None
        self.killing = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def tail(self, n: int = 2500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def terminate(self, timeout: float = 30) -> int | None:
        if self.popen is None:
            return None
        if stop_group(self.popen, timeout):
            return -9
        return self.popen.returncode


@dataclass
class Crash:
    process: str
    status: int | None
    at_s: float
    log_tail: str


class Supervisor:
    """Restarts every process that exits; an exit we did not cause (SIGKILL) is a crash."""

    def __init__(self, slots: list[Slot], t0: float) -> None:
        self.slots = slots
        self.t0 = t0
        self.lock = threading.Lock()
        self.crashes: list[Crash] = []
        self.restarts: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def start(self) -> None:
        for s in self.slots:
            s.start()
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.wait(0.1):
            with self.lock:
                for s in self.slots:
                    if s.popen is None or s.popen.poll() is None:
                        continue
                    if not s.killing:
                        crash = Crash(
                            s.name,
                            s.popen.returncode,
                            round(time.monotonic() - self.t0, 1),
                            s.tail(),
                        )
                        self.crashes.append(crash)
                        log(
                            f"!!! CRASH: {s.name} exited by itself with status "
                            f"{s.popen.returncode}:\n{crash.log_tail[-1500:]}"
                        )
                    self.restarts[s.kind] += 1
                    s.start()

    def kill(self, slot: Slot) -> bool:
        with self.lock:
            if not slot.alive():
                return False
            slot.kill()
            return True

    def stop(self) -> list[tuple[str, int | None]]:
        """Stop supervising, then SIGTERM every process; their exit statuses."""
        self.stopping.set()
        self.thread.join(10)
        out = []
        for s in self.slots:
            out.append((s.name, s.terminate()))
        return out


# ---------------------------------------------------------------------- traffic
@dataclass
class Plan:
    seed: int
    kafka_orders: int
    rest_orders: int
    kills: int
    duration_s: float
    pg_restart_at: float  # share of the duration
    broker_restart_at: float  # share of the Kafka messages published before the restart
    burst_after_restart: bool = False  # the rest at once (a backlog), not paced


@dataclass
class Figures:
    seed: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    pg_restarts: int = 0
    broker_restarts: int = 0
    kafka_messages: int = 0
    kafka_orders: int = 0
    rest_orders: int = 0
    rest_5xx: int = 0
    rest_5xx_statuses: Counter[int] = field(default_factory=Counter)
    rest_conn_errors: int = 0
    rest_retries: int = 0
    rest_other_errors: list[str] = field(default_factory=list)
    stored: int = 0
    lost: int = 0
    doubled: int = 0
    unexpected: int = 0
    crashes: list[Crash] = field(default_factory=list)
    unclean_stops: list[tuple[str, int | None]] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    outbound_missing: int = 0
    outbound_after_restart: int = 0
    verify_ok: bool = False
    drained: bool = False
    duration_s: float = 0.0
    reference_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def faults(self) -> int:
        return sum(self.kills.values()) + self.pg_restarts + self.broker_restarts

    @property
    def ok(self) -> bool:
        return (
            self.drained
            and not self.lost
            and not self.doubled
            and not self.unexpected
            and not self.rest_5xx
            and not self.crashes
            and not self.unclean_stops
            and not self.differences
            and not self.rest_other_errors
            and not self.outbound_missing
            and self.verify_ok
        )


def rest_bodies(count: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    from serviceorders.consumers.sample import order

    rng = random.Random(seed * 7919 + 1)
    return [order(f"{prefix}-{n:06d}", rng) for n in range(count)]


class RestClient:
    """Posts orders one by one; a connection error or a 5xx is retried with the same
    Idempotency-Key (5xx answers are counted: there must be none)."""

    def __init__(self, port: int, key: str, figures: Figures, lock: threading.Lock) -> None:
        self.port, self.key, self.figures, self.lock = port, key, figures, lock
        self.conn: http.client.HTTPConnection | None = None
        self.created: dict[str, str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return self.conn

    def post(self, body: dict[str, Any], deadline: float) -> None:
        data = orjson.dumps(body)
        ext = body["externalId"]
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
            "Idempotency-Key": ext,
        }
        wait = 0.1
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"POST {ext} did not succeed in time")
            try:
                conn = self._connection()
                conn.request("POST", PATH, body=data, headers=headers)
                r = conn.getresponse()
                status, answer = r.status, r.read()
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                with self.lock:
                    self.figures.rest_conn_errors += 1
                time.sleep(wait)
                wait = min(1.0, wait * 2)
                continue
            if status == 201:
                self.created[ext] = str(orjson.loads(answer)["id"])
                return
            if status >= 500:
                with self.lock:
                    self.figures.rest_5xx += 1
                    self.figures.rest_5xx_statuses[status] += 1
                log(f"POST {ext}: {status} {answer[:300]!r}")
            else:
                with self.lock:
                    self.figures.rest_other_errors.append(f"{ext}: {status} {answer[:200]!r}")
                log(f"POST {ext}: unexpected {status} {answer[:300]!r}")
                return
            with self.lock:
                self.figures.rest_retries += 1
            time.sleep(wait)
            wait = min(1.0, wait * 2)


def paced(
    items: list[Any], duration: float, act: Callable[[int, Any], None], stopping: threading.Event
) -> None:
    """`act(i, item)` for each item, spread evenly over `duration` seconds."""
    t0 = time.monotonic()
    n = len(items)
    for i, item in enumerate(items):
        due = t0 + duration * i / max(1, n)
        delay = due - time.monotonic()
        if delay > 0 and stopping.wait(delay):
            return
        act(i, item)


# ------------------------------------------------------------------ the database
def q(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as c:
        return c.execute(sql, params).fetchall()


def q1(url: str, sql: str, params: Any = None) -> Any:
    rows = q(url, sql, params)
    return rows[0][0] if rows else None


def inbound_position(url: str, topic: str) -> int:
    return int(
        q1(
            url,
            "SELECT coalesce(sum(next_offset), 0) FROM intake_position WHERE topic = %s",
            (topic,),
        )
        or 0
    )


@dataclass
class Expected:
    orders: set[str]  # externalIds (Kafka and REST)
    applied: set[str]  # Kafka eventIds that must be recorded as applied
    dead: int


def drain_state(url: str, expected: Expected, rest_done: bool) -> tuple[bool, str]:
    row = q(
        url,
        """
        SELECT (SELECT count(*) FROM intake_applied), (SELECT count(*) FROM dead_letter),
               (SELECT count(DISTINCT originator_id) FROM serviceorders_events),
               (SELECT coalesce(max(notification_id), 0) FROM serviceorders_events),
               (SELECT coalesce(min(position), 0) FROM projection_position),
               (SELECT count(*) FROM order_summary),
               (SELECT count(*) FROM dead_letter WHERE published_at IS NULL),
               (SELECT count(*) FROM kafka_outbox WHERE published_at IS NULL),
               (SELECT coalesce(max(position), 0) FROM notification_outbox),
               (SELECT coalesce(max(position), 0) FROM outbound_position
                 WHERE name = 'notifications')""",
    )[0]
    (applied, dead, streams, head, projected, summary, dl_pending, ob_pending, nmax, published) = (
        row
    )
    done = (
        rest_done
        and applied >= len(expected.applied)
        and dead >= expected.dead
        and streams >= len(expected.orders)
        and projected >= head > 0
        and summary >= len(expected.orders)
        and dl_pending == 0
        and ob_pending == 0
        and published >= nmax
    )
    return done, (
        f"applied {applied}/{len(expected.applied)}, dead letters {dead}/"
        f"{expected.dead}, orders {streams}/{len(expected.orders)}, projected "
        f"{projected}/{head}, order_summary {summary}, unpublished dlq {dl_pending} "
        f"outbox {ob_pending}, notifications published {published}/{nmax}"
    )


def wait_drained(
    url: str, expected: Expected, rest_done: Callable[[], bool], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        try:
            done, state = drain_state(url, expected, rest_done())
        except psycopg.Error as e:
            done, state = False, f"database: {e}"
        if done:
            log(f"drained: {state}")
            return True
        time.sleep(0.5)
    log(f"NOT drained after {timeout:.0f}s: {state}")
    return False


# Columns that legitimately differ between two runs of the same traffic: when things
# happened, and where in the log / the broker they landed.
VOLATILE = {
    "id",
    "position",
    "seq",
    "notification_id",
    "source_offset",
    "source_partition",
    "offset",
    "partition",
    "event_id_seq",
    "digest",
    "headers",
    "payload",
    "document",
    "hash",
    "prev_hash",
}
VOLATILE_IN = {
    ("kafka_outbox", "value"),  # a refusal notice carries its eventTime
    # Sealed since issue 19 (AES-GCM with a random nonce): compared by `digest` instead,
    # the digest of the original bytes (STABLE_IN).
    ("dead_letter", "key"),
    ("dead_letter", "value"),
}
STABLE_IN = {("dead_letter", "digest")}  # compared although VOLATILE names it elsewhere
COMPARED = (  # the read models, and the intake's and the outbox's tables
    *(projection.name for projection in PROJECTIONS),
    "dead_letter",
    "kafka_outbox",
    "intake_applied",
)


def stable_columns(url: str, table: str) -> list[str]:
    rows = q(
        url,
        "SELECT column_name, data_type FROM information_schema.columns WHERE "
        "table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [
        name
        for name, kind in rows
        if (name not in VOLATILE or (table, name) in STABLE_IN)
        and not name.endswith("_at")
        and "time" not in kind
        and kind not in ("date", "json", "jsonb", "interval")
        and "seconds" not in name
        and not name.endswith("_ms")
    ]


def snapshot(url: str, tag: str) -> dict[str, Any]:
    """What must be equal between the faulted and the reference run (topic names, which
    carry the run's tag, normalised)."""
    own = f"rel.{tag}."

    def norm(v: Any) -> str:
        return str(v).replace(own, "rel.<run>.")

    out: dict[str, Any] = {}
    events = q(
        url,
        "SELECT originator_id::text, count(*), min(originator_version), "
        "max(originator_version) FROM serviceorders_events GROUP BY originator_id",
    )
    out["events"] = {oid: (int(n), int(lo), int(hi)) for oid, n, lo, hi in events}
    for table in COMPARED:
        cols = [c for c in stable_columns(url, table) if (table, c) not in VOLATILE_IN]
        if not cols:
            continue
        rows = q(url, f"SELECT {', '.join(cols)} FROM {table}")
        out[table] = (cols, Counter(tuple(norm(v) for v in r) for r in rows))
    return out


def compare(faulted: dict[str, Any], reference: dict[str, Any], figures: Figures) -> None:
    ev_f, ev_r = faulted["events"], reference["events"]
    figures.stored = len(ev_f)
    figures.lost = len(set(ev_r) - set(ev_f))
    figures.unexpected = len(set(ev_f) - set(ev_r))
    figures.doubled = sum(1 for oid in set(ev_f) & set(ev_r) if ev_f[oid][0] > ev_r[oid][0])
    short = [oid for oid in set(ev_f) & set(ev_r) if ev_f[oid][0] < ev_r[oid][0]]
    gaps = [oid for oid, (n, lo, hi) in ev_f.items() if (lo, hi) != (1, n)]
    if short:
        figures.differences.append(f"{len(short)} orders with fewer events than the reference")
    if gaps:
        figures.differences.append(f"{len(gaps)} orders with gaps in their versions")
    if figures.lost:
        figures.differences.append(f"lost orders: {sorted(set(ev_r) - set(ev_f))[:5]}")
    if figures.unexpected:
        figures.differences.append(f"unexpected orders: {sorted(set(ev_f) - set(ev_r))[:5]}")
    for table in COMPARED:
        if table not in reference:
            continue
        cols, want = reference[table]
        got_cols, got = faulted.get(table, (cols, Counter()))
        if got_cols != cols:
            figures.differences.append(f"{table}: columns differ {got_cols} vs {cols}")
            continue
        if got != want:
            missing = list((want - got).items())[:3]
            extra = list((got - want).items())[:3]
            figures.differences.append(
                f"{table}: {sum(got.values())} rows vs {sum(want.values())} in the reference; "
                f"columns {cols}; missing {missing}; extra {extra}"
            )


def read_events_topic(bootstrap: str, topic: str) -> set[str]:
    """Every eventId on the outbound topic (from the first offset)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ids = set()
        for record in consumer:
            headers = dict(record.headers or ())
            if "eventId" in headers:
                ids.add(headers["eventId"].decode())
        return ids
    finally:
        consumer.close()


# ----------------------------------------------------------------------- the runs
@dataclass
class Env:
    cluster: Cluster
    broker: Any
    logs: Path
    api_key: str


def engine(env: Env, url: str, tag: str) -> dict[str, str]:
    return engine_env(
        url,
        KAFKA_BOOTSTRAP_SERVERS=env.broker.bootstrap_servers,
        SERVICEORDERS_INBOUND_TOPIC=f"rel.{tag}.inbound",
        SERVICEORDERS_EVENTS_TOPIC=f"rel.{tag}.events",
        SERVICEORDERS_CONSUMER_GROUP=f"rel-{tag}",
        SERVICEORDERS_TOPIC_PARTITIONS=str(PARTITIONS),
        SERVICEORDERS_API_KEYS=f"crm:integrator:{env.api_key}",
        SERVICEORDERS_AUDIT_CHECKPOINT_INTERVAL="5",
    )


def slots_for(
    env: Env, settings_env: dict[str, str], tag: str, consumers: int, port: int
) -> list[Slot]:
    logs = env.logs
    slots = [
        Slot(f"consume{n}", "consume", ["consume"], settings_env, logs / f"{tag}-consume{n}.log")
        for n in range(consumers)
    ]
    slots.append(Slot("project", "project", ["project"], settings_env, logs / f"{tag}-project.log"))
    slots.append(
        Slot("api", "api", ["api", "--port", str(port)], settings_env, logs / f"{tag}-api.log")
    )
    return slots


def wait_api(port: int, key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", f"{PATH}?limit=1", headers={"Authorization": f"Bearer {key}"})
            if c.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise TimeoutError("the API did not answer")


def producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)


def run_reference(
    env: Env, sample: Any, bodies: list[dict[str, Any]], expected: Expected, figures: Figures
) -> dict[str, Any]:
    """The same traffic, no faults, on a fresh database."""
    from serviceorders.consumers.kafka import ensure_topics
    from serviceorders.settings import Settings

    t0 = time.monotonic()
    url = env.cluster.create_db("reference")
    settings_env = engine(env, url, "ref")
    run_cli(["db", "init"], settings_env)
    ensure_topics(Settings.from_env(settings_env))
    port = free_port()
    slots = slots_for(env, settings_env, "ref", 1, port)
    sup = Supervisor(slots, t0)
    sup.start()
    try:
        wait_api(port, env.api_key)
        p = producer(env.broker.bootstrap_servers)
        for m in sample.messages:
            p.send("rel.ref.inbound", key=m.key, value=m.value)
        p.flush(60)
        p.close(10)
        lock = threading.Lock()
        ref_figures = Figures()
        client = RestClient(port, env.api_key, ref_figures, lock)
        deadline = time.monotonic() + 300
        for body in bodies:
            client.post(body, deadline)
        if not wait_drained(url, expected, lambda: True, 300):
            figures.differences.append("the reference run did not drain")
        if ref_figures.rest_5xx or ref_figures.rest_other_errors:
            figures.notes.append(
                f"reference run: {ref_figures.rest_5xx} 5xx, {ref_figures.rest_other_errors[:3]}"
            )
    finally:
        stops = sup.stop()
    figures.crashes += sup.crashes  # without faults, any exit is a crash
    bad = [(n, c) for n, c in stops if c not in (0, None)]
    if bad:
        figures.notes.append(f"reference run unclean stops: {bad}")
    figures.reference_s = round(time.monotonic() - t0, 1)
    return snapshot(url, "ref")


def run_faulted(
    env: Env,
    plan: Plan,
    sample: Any,
    bodies: list[dict[str, Any]],
    expected: Expected,
    figures: Figures,
) -> dict[str, Any]:
    from serviceorders.consumers.kafka import ensure_topics
    from serviceorders.settings import Settings

    url = env.cluster.create_db("faulted")
    settings_env = engine(env, url, "flt")
    settings = Settings.from_env(settings_env)
    inbound = settings.inbound_topic
    run_cli(["db", "init"], settings_env)
    ensure_topics(settings)
    port = free_port()
    slots = slots_for(env, settings_env, "flt", 2, port)
    t0 = time.monotonic()
    sup = Supervisor(slots, t0)
    sup.start()
    rng = random.Random(plan.seed)
    lock = threading.Lock()
    stopping = threading.Event()
    quiet = threading.Event()  # set: no kills (a PostgreSQL outage is in progress)
    errors: list[str] = []
    rest_done = threading.Event()
    kafka_done = threading.Event()
    marks: dict[str, Any] = {}
    try:
        wait_api(port, env.api_key)
        time.sleep(2)  # let the consumers start joining their group
        log(
            f"faulted run: engine up ({time.monotonic() - t0:.1f}s); traffic for "
            f"{plan.duration_s:.0f}s"
        )
        # ---- Kafka traffic, with the broker restart part-way
        messages = sample.messages
        cut = int(len(messages) * plan.broker_restart_at)

        def kafka_traffic() -> None:
            try:
                p = producer(env.broker.bootstrap_servers)
                first, rest = messages[:cut], messages[cut:]
                share = plan.duration_s * len(first) / max(1, len(messages))

                def send(_: int, m: Any) -> None:
                    p.send(inbound, key=m.key, value=m.value).get(30)

                paced(first, share, send, stopping)
                p.flush(30)
                p.close(10)
                # The memory-only broker loses what it holds: restart it once everything
                # published so far is applied (the broker's loss is not the engine's).
                deadline = time.monotonic() + 180
                while inbound_position(url, inbound) < len(first):
                    if time.monotonic() > deadline:
                        raise TimeoutError("intake did not catch up before the broker restart")
                    time.sleep(0.2)
                marks["broker_restart_s"] = round(time.monotonic() - t0, 1)
                log(f"broker restart at {marks['broker_restart_s']}s")
                env.broker.stop()
                marks["outbound_at_restart"] = int(
                    q1(
                        url,
                        "SELECT coalesce(max(position), 0) FROM outbound_position WHERE "
                        "name = 'notifications'",
                    )
                    or 0
                )
                time.sleep(1.0)
                env.broker.start()
                ensure_topics(settings)
                with lock:
                    figures.broker_restarts += 1
                p = producer(env.broker.bootstrap_servers)
                paced(
                    rest,
                    0.0 if plan.burst_after_restart else plan.duration_s - share,
                    send,
                    stopping,
                )
                p.flush(30)
                p.close(10)
            except Exception as e:
                errors.append(f"kafka traffic: {type(e).__name__}: {e}")
                log(f"kafka traffic failed: {e}")
            finally:
                kafka_done.set()

        # ---- REST traffic: two clients
        clients = [RestClient(port, env.api_key, figures, lock) for _ in range(2)]

        def rest_traffic(client: RestClient, share: list[dict[str, Any]]) -> None:
            try:
                deadline = time.monotonic() + plan.duration_s + 240
                paced(share, plan.duration_s, lambda _, b: client.post(b, deadline), stopping)
            except Exception as e:
                errors.append(f"rest traffic: {type(e).__name__}: {e}")
                log(f"rest traffic failed: {e}")

        rest_threads = [
            threading.Thread(target=rest_traffic, args=(c, bodies[i::2]), daemon=True)
            for i, c in enumerate(clients)
        ]
        kafka_thread = threading.Thread(target=kafka_traffic, daemon=True)
        traffic_t0 = time.monotonic()
        kafka_thread.start()
        for th in rest_threads:
            th.start()

        # ---- the faults: kills at seeded random points, one PostgreSQL restart
        consume_kills = max(2, plan.kills // 6)
        kinds = ["consume"] * consume_kills + [
            rng.choice(("project", "api")) for _ in range(plan.kills - consume_kills)
        ]
        # at least a third each of project and api
        kinds.sort()
        rng.shuffle(kinds)
        times = sorted(rng.uniform(1.0, plan.duration_s) for _ in kinds)
        pg_at = plan.duration_s * plan.pg_restart_at
        # No kill for 5 s either side of the PostgreSQL restart: the processes meet it with
        # their pools and connections warm (a process restarted just before would start
        # with none), and come out of it by themselves.
        times = sorted(t + 10 if pg_at - 5 < t < pg_at + 5 else t for t in times)
        schedule: list[tuple[float, str]] = list(zip(times, kinds, strict=True))
        schedule.append((pg_at, "postgres"))
        schedule.sort()
        by_kind = {k: [s for s in slots if s.kind == k] for k in ("consume", "project", "api")}
        for at, kind in schedule:
            delay = traffic_t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if kind == "postgres":
                quiet.set()
                marks["pg_restart_s"] = round(time.monotonic() - t0, 1)
                log(f"PostgreSQL restart at {marks['pg_restart_s']}s (stop -m fast, 2 s down)")
                env.cluster.stop("fast")
                time.sleep(2.0)
                env.cluster.start()
                figures.pg_restarts += 1
                time.sleep(3.0)  # the processes reconnect on their own
                quiet.clear()
                continue
            target = rng.choice(by_kind[kind])
            for _ in range(100):  # a process being restarted: wait for it
                if sup.kill(target):
                    with lock:
                        figures.kills[kind] += 1
                    log(f"SIGKILL {target.name} at {time.monotonic() - t0:.1f}s")
                    break
                time.sleep(0.1)
        for th in rest_threads:
            th.join(plan.duration_s + 300)
        rest_done.set()
        kafka_thread.join(600)
        figures.kafka_messages = len(messages)
        log(f"traffic done at {time.monotonic() - t0:.1f}s; draining")
        figures.drained = wait_drained(url, expected, rest_done.is_set, 240) and not errors
        figures.notes += errors
        if "outbound_at_restart" in marks:
            on_topic = read_events_topic(env.broker.bootstrap_servers, settings.events_topic)
            after = q(
                url,
                "SELECT payload FROM notification_outbox WHERE position > %s",
                (marks["outbound_at_restart"],),
            )
            wanted = {(p if isinstance(p, dict) else orjson.loads(p))["eventId"] for (p,) in after}
            figures.outbound_after_restart = len(wanted)
            figures.outbound_missing = len(wanted - on_topic)
            if figures.outbound_missing:
                figures.notes.append(
                    f"{figures.outbound_missing} of {len(wanted)} "
                    "notifications after the broker restart are not on the "
                    "events topic"
                )
    finally:
        stops = sup.stop()
        figures.crashes = sup.crashes
        figures.unclean_stops = [(n, c) for n, c in stops if c not in (0, None)]
        figures.duration_s = round(time.monotonic() - t0, 1)
        figures.notes.append(f"marks: {marks}; restarts by the supervisor: {dict(sup.restarts)}")
    verify = subprocess.run(
        serviceorders("projections", "verify"),
        env=settings_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    figures.verify_ok = verify.returncode == 0
    if not figures.verify_ok:
        figures.notes.append(f"projections verify: {verify.stdout[-2000:]}{verify.stderr[-1000:]}")
    return snapshot(url, "flt")


# ---------------------------------------------------------------------- report
def table(f: Figures) -> str:
    rows = [
        ("seed", str(f.seed)),
        ("faults injected", str(f.faults)),
        ("  SIGKILL consume", str(f.kills["consume"])),
        ("  SIGKILL project", str(f.kills["project"])),
        ("  SIGKILL api", str(f.kills["api"])),
        ("  PostgreSQL restart", str(f.pg_restarts)),
        ("  broker restart", str(f.broker_restarts)),
        ("orders sent (Kafka)", f"{f.kafka_orders} ({f.kafka_messages} messages)"),
        ("orders sent (REST)", str(f.rest_orders)),
        ("orders stored", str(f.stored)),
        ("lost", str(f.lost)),
        ("doubled", str(f.doubled)),
        ("unexpected orders", str(f.unexpected)),
        ("5xx", str(f.rest_5xx) + (f" {dict(f.rest_5xx_statuses)}" if f.rest_5xx else "")),
        ("REST connection errors (retried)", str(f.rest_conn_errors)),
        ("crashes", str(len(f.crashes))),
        ("unclean stops (SIGTERM)", str(len(f.unclean_stops))),
        (
            "notifications after broker restart",
            f"{f.outbound_after_restart} ({f.outbound_missing} missing on the topic)",
        ),
        (
            "read models equal reference",
            "yes" if not f.differences else f"NO ({len(f.differences)})",
        ),
        ("projections verify", "OK" if f.verify_ok else "FAILED"),
        ("drained", "yes" if f.drained else "NO"),
        ("duration (faulted run)", f"{f.duration_s:.0f} s"),
        ("duration (reference run)", f"{f.reference_s:.0f} s"),
        ("verdict", "PASS" if f.ok else "FAIL"),
    ]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def to_json(f: Figures, plan: Plan) -> dict[str, Any]:
    return {
        "ok": f.ok,
        "plan": asdict(plan),
        "figures": {
            "faults": f.faults,
            "kills": dict(f.kills),
            "kills_total": sum(f.kills.values()),
            "pg_restarts": f.pg_restarts,
            "broker_restarts": f.broker_restarts,
            "orders_kafka": f.kafka_orders,
            "kafka_messages": f.kafka_messages,
            "orders_rest": f.rest_orders,
            "orders_sent": f.kafka_orders + f.rest_orders,
            "stored": f.stored,
            "lost": f.lost,
            "doubled": f.doubled,
            "unexpected": f.unexpected,
            "5xx": f.rest_5xx,
            "rest_connection_errors": f.rest_conn_errors,
            "crashes": len(f.crashes),
            "unclean_stops": len(f.unclean_stops),
            "differences": len(f.differences),
            "outbound_after_restart": f.outbound_after_restart,
            "outbound_missing": f.outbound_missing,
            "verify_ok": f.verify_ok,
            "drained": f.drained,
            "duration_s": f.duration_s,
            "reference_s": f.reference_s,
        },
        "crashes": [asdict(c) for c in f.crashes],
        "unclean_stops": f.unclean_stops,
        "differences": f.differences,
        "rest_errors": f.rest_other_errors,
        "notes": f.notes,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--short", action="store_true", help="The CI version (~3 minutes).")
    ap.add_argument("--orders", type=int, default=None, help="Orders in all (3/4 Kafka).")
    ap.add_argument("--kills", type=int, default=None, help="SIGKILLs (at least 20).")
    ap.add_argument("--duration", type=float, default=None, help="Seconds of traffic.")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--broker-restart-at",
        type=float,
        default=0.6,
        metavar="SHARE",
        help="Share of the Kafka messages published before the broker restart.",
    )
    ap.add_argument(
        "--burst-after-restart",
        action="store_true",
        help="Publish the rest of the Kafka traffic at once after the broker "
        "restart (a backlog) instead of at the steady pace.",
    )
    ap.add_argument("--json", default=None, help="Write the figures here.")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="Keep the work directory (logs, cluster) for inspection.",
    )
    args = ap.parse_args(argv)
    orders = args.orders or (200 if args.short else 1000)
    kills = args.kills or (24 if args.short else 40)
    duration = args.duration or (60.0 if args.short else 150.0)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    rest = max(1, orders // 4)
    plan = Plan(
        seed=seed,
        kafka_orders=orders - rest,
        rest_orders=rest,
        kills=kills,
        duration_s=duration,
        pg_restart_at=0.3,
        broker_restart_at=args.broker_restart_at,
        burst_after_restart=args.burst_after_restart,
    )
    log(
        f"reliability: seed {seed}, {plan.kafka_orders} Kafka + {rest} REST orders, "
        f"{kills} kills, {duration:.0f}s of traffic"
    )
    print(f"seed {seed}", flush=True)

    from serviceorders.consumers.broker import EmbeddedBroker
    from serviceorders.consumers.sample import traffic

    sample = traffic(plan.kafka_orders, seed=seed, prefix=f"REL{seed}-K")
    bodies = rest_bodies(rest, seed, f"REL{seed}-R")
    expected = Expected(
        orders=set(sample.orders) | {b["externalId"] for b in bodies},
        applied={
            orjson.loads(m.value)["eventId"]
            for m in sample.messages
            if m.kind in ("valid", "duplicate")
        },
        dead=len(sample.bad),
    )
    figures = Figures(seed=seed, kafka_orders=plan.kafka_orders, rest_orders=rest)

    work = Path(tempfile.mkdtemp(prefix="so-reliability-"))
    logs = work / "logs"
    logs.mkdir()
    cluster = Cluster(work)
    broker = EmbeddedBroker(log_file=logs / "broker.log")
    started = time.monotonic()
    try:
        cluster.init()
        cluster.start()
        broker.start()
        env = Env(cluster, broker, logs, f"rel-{secrets.token_hex(12)}")
        faulted = run_faulted(env, plan, sample, bodies, expected, figures)
        reference = run_reference(env, sample, bodies, expected, figures)
        compare(faulted, reference, figures)
    except Exception as e:
        figures.notes.append(f"scenario failed: {type(e).__name__}: {e}")
        log(f"scenario failed: {type(e).__name__}: {e}")
    finally:
        broker.stop()
        cluster.stop("immediate")
        if not args.keep and (figures.ok or os.environ.get("CI")):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs and cluster kept in {work}")
    log(f"total {time.monotonic() - started:.0f}s")
    print(table(figures), flush=True)
    for d in figures.differences:
        print(f"difference: {d}")
    for n in figures.notes:
        print(f"note: {n}")
    for c in figures.crashes:
        print(f"crash: {c.process} exited {c.status} at {c.at_s}s:\n{c.log_tail[-1200:]}")
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(figures, plan), indent=2, default=str))
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The limit of one database: how many commits/s and orders/s the event store takes from 1, 2
and 4 concurrent writer processes, each committing through the engine's own recorder
(`storage.recorders.IntakePostgresRecorder`: the events-table lock `LOCK TABLE ... IN
EXCLUSIVE MODE`, NOTIFY, the unnest insert, and, for a consume batch, the intake's rows in
the same transaction).

Two kinds of commit:

- a consume batch (`batch` orders per commit, the consume default 500): the events of
  `batch` orders plus what `consume` writes beside them (`consumers.store.IntakeWrite`: the
  compare-and-set of the batch's partition positions, one `intake_applied` row per message),
  `recorder.insert_events(events, intake=write)`, exactly what `uow.commit(intake=...)` does;
- one order per commit (the API's case): `recorder.insert_events(events)`, through the
  recorder's group commit as the API's saves go (one thread per writer: nothing to group).

The stored events are built before the clock starts: a few orders are received by the
domain once (`ReceiveOrder`, as `consume` does; 2 events, about 3.9 KB per order), their
stored events read back, and every writer re-uses those bytes under new originator ids. The
figures are therefore the database's, not the client's CPU: no domain, no pydantic, no
encoding inside the clock.

Each writer count runs on a fresh database (`db init`, then one warm-up commit per writer:
connection and prepared statements). The writers are processes (`spawn`), started together
on an event; each times its commits (`perf_counter` around `insert_events`). The harness
meanwhile samples `pg_stat_activity` every 20 ms for the writers' backends: the share of
their in-transaction samples spent waiting for a lock (the events-table lock: nothing else
is contended) is the "lock wait" figure. CPU: the writers' and their PostgreSQL backends'
time on a CPU over the run (`/proc/<pid>/schedstat`, nanoseconds; the backends' pids
from `pg_stat_activity`), as % of one core (the machine has 2), and the backends' time
runnable but waiting for a core (the same file): on a shared machine, the other work's.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg

from .common import Databases, engine_env, log, percentile

SECTION = "writers"
TOPIC = "bench.writers"
PARTITIONS = 4  # per writer: the positions a consume batch moves
TEMPLATES = 16  # distinct orders whose events are re-used
SAMPLE_S = 0.02  # pg_stat_activity sampling interval

# One template order: (originator_version, topic, state) of each of its stored events.
Template = list[tuple[int, str, bytes]]


def consume_default_batch() -> int:
    """SERVICEORDERS_CONSUME_BATCH's default (runtime/settings.py)."""
    from serviceorders.settings import Settings

    return int(Settings.model_fields["consume_batch"].default)


@dataclass
class WritersRun:
    writers: int
    databases: int
    per_commit: int  # orders per commit
    intake: bool  # a consume batch's intake rows in the same transaction
    commits: int
    orders: int
    events: int
    wall_s: float
    latencies_ms: list[float]
    writers_cpu_s: float
    postgres_cpu_s: float | None
    postgres_runq_s: float | None  # the backends' time runnable, waiting for a CPU
    lock_wait_share: float | None  # of the backends' in-transaction samples
    wal_wait_share: float | None  # the same, waiting for WAL (the commit's flush)
    samples: int = 0
    doing: dict[str, float] = field(default_factory=dict)  # share of in-transaction samples
    notes: list[str] = field(default_factory=list)

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.wall_s

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.wall_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def mean_ms(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def writers_cpu_pct(self) -> float:
        return 100 * self.writers_cpu_s / self.wall_s

    @property
    def postgres_cpu_pct(self) -> float | None:
        return None if self.postgres_cpu_s is None else 100 * self.postgres_cpu_s / self.wall_s


# ------------------------------------------------------------------ templates
def templates(database_url: str, count: int = TEMPLATES) -> list[Template]:
    """The stored events of `count` orders received by the domain (as `consume` receives
    them), read back from the event store of `database_url` (a scratch database)."""
    import random

    from serviceorders.bootstrap import build_application, init_database, open_read_db
    from serviceorders.consumers.sample import order
    from serviceorders.domain import commands as cmd
    from serviceorders.domain.values import Channel, CommandContext, Role
    from serviceorders.settings import Settings
    from serviceorders.tmf.tmf641_in import ServiceOrderCreate, order_to_domain

    settings = Settings.from_env(engine_env(database_url))
    init_database(settings)
    app = build_application(settings)
    rng = random.Random(641)
    upstream = CommandContext.for_actor("bench", Role.UPSTREAM, Channel.KAFKA)
    ids: list[UUID] = []
    try:
        for i in range(count):
            body = order(f"WRITERS-{i:04d}", rng)
            header, items, notes = order_to_domain(ServiceOrderCreate.model_validate(body))
            got = app.handle(upstream, cmd.ReceiveOrder(header, tuple(items), tuple(notes)))
            ids.append(got.order.id)
    finally:
        app.close()
    db = open_read_db(settings)
    try:
        out = []
        for oid in ids:
            rows = db.fetchall(
                "SELECT originator_version, topic, state FROM serviceorders_events "
                "WHERE originator_id = %s ORDER BY originator_version",
                (oid,),
            )
            out.append([(int(v), str(t), bytes(s)) for v, t, s in rows])
    finally:
        db.close()
    return out


# -------------------------------------------------------------------- writers
def _batches(
    tpls: list[Template], index: int, commits: int, per_commit: int, intake: bool
) -> list[tuple[list[Any], Any]]:
    """`commits` commits of `per_commit` new orders each (new originator ids, the
    templates' bytes), with the intake rows a consume batch writes beside them."""
    from eventsourcing.persistence import StoredEvent
    from serviceorders.consumers.envelope import CREATE
    from serviceorders.consumers.store import Applied, IntakeWrite

    topic = f"{TOPIC}.{index}"
    next_offset: dict[int, int] = {}
    out: list[tuple[list[Any], Any]] = []
    n = 0
    for _ in range(commits):
        events: list[Any] = []
        applied: list[Any] = []
        moved: dict[int, int] = {}
        for _ in range(per_commit):
            oid = uuid4()
            for version, event_topic, state in tpls[n % len(tpls)]:
                events.append(StoredEvent(oid, version, event_topic, state))
            partition = n % PARTITIONS
            offset = next_offset.get(partition, 0) + moved.get(partition, 0)
            applied.append(Applied(f"w{index}-{n}", topic, partition, offset, oid, CREATE))
            moved[partition] = moved.get(partition, 0) + 1
            n += 1
        write = None
        if intake:
            positions: dict[tuple[str, int], tuple[int | None, int, str | None]] = {}
            for partition, count in moved.items():
                start = next_offset.get(partition)
                end = (start or 0) + count
                positions[(topic, partition)] = (start, end, f"digest-{partition}-{end}")
            write = IntakeWrite(positions=positions, applied=applied)
        for partition, count in moved.items():
            next_offset[partition] = next_offset.get(partition, 0) + count
        out.append((events, write))
    return out


def _writer(
    database_url: str,
    tpls: list[Template],
    index: int,
    commits: int,
    per_commit: int,
    intake: bool,
    ready: Any,
    go: Any,
    release: Any,
    results: Any,
) -> None:
    """One writer process: builds its commits, warms up (one commit, not timed), waits
    for `go`, commits them all timing each, reports, waits for `release` (so that its
    backend is still there when the harness reads the backends' CPU)."""
    try:
        from serviceorders.bootstrap import build_application
        from serviceorders.settings import Settings

        app = build_application(Settings.from_env(engine_env(database_url)))
        recorder = app.recorder
        work = _batches(tpls, index, commits + 1, per_commit, intake)

        def commit(events: list[Any], write: Any) -> None:
            if write is None:
                recorder.insert_events(events)
            else:
                recorder.insert_events(events, intake=write)

        commit(*work[0])  # warm-up: the connection, the prepared statements
        ready.put(os.getpid())
        go.wait()
        latencies = []
        started = time.monotonic()
        for events, write in work[1:]:
            t = time.perf_counter()
            commit(events, write)
            latencies.append((time.perf_counter() - t) * 1000)
        ended = time.monotonic()
        results.put((index, started, ended, latencies, None))
        release.wait(120)
        app.close()
    except BaseException as e:  # reported to the harness, which raises
        import traceback

        ready.put(os.getpid())
        results.put((index, 0.0, 0.0, [], traceback.format_exc() or repr(e)))


# ------------------------------------------------------------------ sampling
def _cpu_s(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of `pid` so far, from
    /proc/<pid>/schedstat (nanoseconds; /proc/<pid>/stat counts 10 ms ticks)."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _backends(admin_url: str, dbnames: list[str]) -> list[int]:
    with psycopg.connect(admin_url, autocommit=True) as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND backend_type = "
            "'client backend' AND pid <> pg_backend_pid()",
            (dbnames,),
        ).fetchall()
    return [int(r[0]) for r in rows]


class _WaitSampler(threading.Thread):
    """Samples what the writers' backends are doing, every SAMPLE_S, until stopped."""

    def __init__(self, admin_url: str, dbnames: list[str]) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.dbnames = admin_url, dbnames
        self.stopping = threading.Event()
        self.in_transaction = 0
        self.lock_waits = 0
        self.wal_waits = 0
        self.samples = 0
        # in-transaction samples by what the backend did: a wait event, "CPU" (active,
        # no wait event: running or runnable) or "client" (idle in transaction)
        self.doing: dict[str, int] = {}

    def run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            query = (
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            )
            while not self.stopping.wait(SAMPLE_S):
                self.samples += 1
                for state, wait_type, wait in c.execute(query, (self.dbnames,), prepare=True):
                    if state in ("active", "idle in transaction"):
                        self.in_transaction += 1
                        what = wait or ("client" if state != "active" else "CPU")
                        self.doing[what] = self.doing.get(what, 0) + 1
                        if wait_type == "Lock":
                            self.lock_waits += 1
                        elif str(wait).startswith("WAL"):  # the commit's flush
                            self.wal_waits += 1


# ------------------------------------------------------------------------ run
def run(
    database_urls: list[str],
    admin_url: str,
    tpls: list[Template],
    writers: int,
    orders: int,
    per_commit: int,
    intake: bool,
) -> WritersRun:
    """`writers` processes commit `orders` orders between them (whole commits of
    `per_commit`) on the (fresh) databases at `database_urls`, writer i on database
    i % len(database_urls): more than one, the intake partitioned across databases (each
    its own event store, its own lock)."""
    from serviceorders.bootstrap import init_database
    from serviceorders.settings import Settings

    for url in database_urls:
        init_database(Settings.from_env(engine_env(url)))
    dbnames = [url.rsplit("/", 1)[1] for url in database_urls]
    at = [database_urls[i % len(database_urls)] for i in range(writers)]
    commits = max(1, orders // (per_commit * writers))
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go, release = ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(
            target=_writer,
            args=(at[i], tpls, i, commits, per_commit, intake, ready, go, release, results),
            name=f"bench-writer-{i}",
        )
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    try:
        pids = [_get(ready, procs, 180) for _ in procs]
        backends = _backends(admin_url, dbnames)
        before = {pid: _cpu_s(pid) for pid in pids + backends}
        sampler = _WaitSampler(admin_url, dbnames)
        sampler.start()
        go.set()
        got = [_get(results, procs, 600) for _ in procs]
        after = {pid: _cpu_s(pid) for pid in pids + backends}
        sampler.stopping.set()
        sampler.join(10)
    finally:
        release.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.terminate()
    errors = [e for *_, e in got if e]
    if errors:
        raise RuntimeError(f"a writer failed:\n{errors[0][-3000:]}")

    def used(which: list[int], field: int = 0) -> float | None:
        deltas = [
            b[field] - a[field]
            for pid in which
            if (a := before.get(pid)) is not None and (b := after.get(pid)) is not None
        ]
        return sum(deltas) if deltas else None

    started = min(g[1] for g in got)
    ended = max(g[2] for g in got)
    latencies = [x for g in got for x in g[3]]
    events_per_order = len(tpls[0])
    total = writers * commits * per_commit
    out = WritersRun(
        writers=writers,
        databases=len(database_urls),
        per_commit=per_commit,
        intake=intake,
        commits=writers * commits,
        orders=total,
        events=total * events_per_order,
        wall_s=ended - started,
        latencies_ms=latencies,
        writers_cpu_s=used(pids) or 0.0,
        postgres_cpu_s=used(backends),
        postgres_runq_s=used(backends, 1),
        lock_wait_share=(
            sampler.lock_waits / sampler.in_transaction if sampler.in_transaction else None
        ),
        wal_wait_share=(
            sampler.wal_waits / sampler.in_transaction if sampler.in_transaction else None
        ),
        samples=sampler.samples,
        doing={
            k: v / sampler.in_transaction
            for k, v in sorted(sampler.doing.items(), key=lambda kv: -kv[1])
        },
    )
    for url in database_urls:
        _check_rows(url, out, commits, at.count(url))
    log(
        f"writers x{writers} on {len(database_urls)} database(s), {per_commit} orders/commit"
        f"{' + intake rows' if intake else ''}: {out.commits_per_s:,.1f} commits/s, "
        f"{out.orders_per_s:,.0f} orders/s, commit mean {out.mean_ms:.1f} ms p99 "
        f"{out.p99_ms:.1f} ms; CPU writers {out.writers_cpu_pct:.0f}% postgres "
        f"{out.postgres_cpu_pct or 0:.0f}% of a core, "
        f"{1e6 * (out.postgres_cpu_s or 0) / out.orders:.0f} us per order (waiting for a core "
        f"{100 * (out.postgres_runq_s or 0) / out.wall_s:.0f}%); lock wait "
        f"{100 * (out.lock_wait_share or 0):.0f}%, WAL wait "
        f"{100 * (out.wal_wait_share or 0):.0f}% of in-transaction samples ("
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(out.doing.items())[:5])
        + ")"
    )
    return out


def _get(queue: Any, procs: list[Any], timeout: float) -> Any:
    """The next item of `queue`; RuntimeError if a writer died without reporting."""
    import queue as q

    deadline = time.monotonic() + timeout
    while True:
        try:
            return queue.get(timeout=0.5)
        except q.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited {dead[0].exitcode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no word from the writers in {timeout:.0f}s") from None


def _check_rows(database_url: str, got: WritersRun, commits: int, writers: int) -> None:
    """Every commit of the `writers` that wrote to this database is in it (the warm-ups
    included): the figures count real writes."""
    orders = writers * (commits + 1) * got.per_commit
    with psycopg.connect(database_url, autocommit=True) as c:
        row = c.execute(
            "SELECT (SELECT count(*) FROM serviceorders_events), "
            "(SELECT count(*) FROM intake_applied)"
        ).fetchone()
    assert row is not None
    events, applied = int(row[0]), int(row[1])
    want_events = orders * (got.events // got.orders)
    want_applied = orders if got.intake else 0
    if events != want_events or applied != want_applied:
        raise RuntimeError(
            f"writers x{got.writers}: {events} events and {applied} intake rows stored, "
            f"expected {want_events} and {want_applied}"
        )


def drop(dbs: Databases, database_url: str) -> None:
    """Drop one scratch database now (the section makes one per writer count)."""
    name = database_url.rsplit("/", 1)[1]
    with (
        contextlib.suppress(Exception),
        psycopg.connect(dbs.admin_url, autocommit=True) as c,
    ):
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if name in dbs.created:
        dbs.created.remove(name)

"""Rebuild over order-id ranges (PostgreSQL): the log split by aggregate into partitions,
folded and written by K processes (this one and K-1 workers) into the same fresh tables, up
to a log position taken at the start; the caller (maintenance.rebuild, verify) then catches
up the rest and swaps, as a single-process rebuild does.

A partition is a stable function of the aggregate id (`PARTITION`): every event of an
order (or of a service) is in the same partition, in log order, so a process folds whole
aggregates exactly as the single-process projector does, with the same code (Projector,
EventLog, fold: its connection sees only the partition's events). There are a few
partitions per process (`SLICES_PER_PROCESS`), handed out one at a time.

Which read models go which way (docs/performance.md, "Rebuild over order-id ranges"):

- PARTITIONED: every row is a function of one aggregate's events (keyed by its id, or by
  the log position of one of its events): the process that folds the aggregate writes them.
- SUMMED: counters that add up rows of many aggregates (per day, state, ...): each process
  counts into a table of its own; the main process sums them into the built table with
  one statement.
- any other read model (one added later and not classified here) is built from the first
  event by the main process after the partitions, the single-process way.

The chain heads the projector has read (`audit_seen_head`, storage/seen.py) are keyed by
aggregate too: each process records the heads of the aggregates it folds, as the projector
does.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import queue as queues
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Mapper
from serviceorders.projections.runner import POSITIONS, Projector
from serviceorders.projections.views import PROJECTIONS, Projection
from serviceorders.storage.db import ReadDb

log = logging.getLogger(__name__)
# The partition of an event: a byte of its aggregate id (random in a uuid4, and in the
# uuid5s of services) modulo K. Computed by the server, so a worker reads only its events.
PARTITION = "get_byte(uuid_send(originator_id), 15) % {k}"

PARTITIONED: frozenset[str] = frozenset(
    {
        "order_summary",
        "order_item",
        "review_queue",
        "order_document",
        "cancellation_request",  # keyed by request id: requests of one order
        "order_state_history",
        "order_relationship",
        "order_item_place",
        "order_outcome",
        "order_milestone",
        "notification_outbox",  # keyed by log position: each event's own notifications
        "service",
        "service_history",
    }
)
# read model -> its counter columns (upserted with `add`, runner.py applies each page once)
SUMMED: dict[str, tuple[str, ...]] = {
    "daily_state_counts": ("orders",),
    "service_daily_changes": ("changes",),
}

# Below this many events a single process rebuilds faster than K processes start.
PARALLEL_ABOVE = 5_000
# Partitions of the log per process at most (`slices`): handed out one at a time, so that
# a worker that starts later (an interpreter's start-up, about 0.5 s) or draws bigger ones
# takes fewer.
SLICES_PER_PROCESS = 4


def partition_of(order_id: Any, k: int) -> int:
    """The partition of an aggregate id (as PARTITION computes it in SQL)."""
    return int(order_id.bytes[15]) % k


def workers_for(db: ReadDb, workers: int | None, events: int | None = None) -> int:
    """How many processes a rebuild splits the log over (this one and the workers it
    starts): 0 (the single-process rebuild) on SQLite, for a small log (fewer than
    PARALLEL_ABOVE events, when `workers` is not given) or when `workers` is 0; otherwise
    `workers` (default: one per core)."""
    if db.dialect != "postgres":
        return 0
    if workers is None:
        if events is None:
            row = db.fetchone(f"SELECT COUNT(*) FROM {db.events_table}")
            events = int(row[0]) if row else 0
        if events < PARALLEL_ABOVE:
            return 0
        workers = os.cpu_count() or 1
    return max(0, int(workers))


class WorkerFailed(RuntimeError):
    """A process of the rebuild failed: the tables being built are to be discarded."""


@dataclass(frozen=True)
class Connection:
    """How a worker connects: the same server, database and credentials as the caller's
    connection (storage.db.ConnectionConfig)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    options: dict[str, str] = field(default_factory=dict)
    kind: str = "postgres"

    @classmethod
    def of(cls, db: ReadDb) -> Connection:
        info = db.conn.info  # type: ignore[attr-defined]
        params = dict(info.get_parameters())
        params.pop("connect_timeout", None)  # (PostgresDb sets its own)
        return cls(
            host=params.pop("host", info.host),
            port=int(params.pop("port", info.port)),
            dbname=params.pop("dbname", info.dbname),
            user=params.pop("user", info.user),
            password=info.password or "",
            options=params,
        )


@dataclass(frozen=True)
class Job:
    index: int  # the process: 0 is the caller's
    processes: int
    slices: int  # the log's partitions, handed out one at a time (`next_slice`)
    connection: Connection
    lock_timeout: int
    mapper: Any
    names: tuple[str, ...]
    tables: dict[str, str]  # this process's (its own counter tables)
    stop: int
    batch_size: int
    started: float  # time.time() when the rebuild started its processes


class PartitionProjector(Projector):
    """A Projector over one partition of the log. Its positions are its own (kept in
    memory: a failed worker fails the whole rebuild, which never resumes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at = {self.tables[p.name]: 0 for p in self.projections}

    def positions(self) -> dict[str, int]:
        return dict(self._at)

    def _advance(self, names: list[str], expected: int, new: int) -> None:
        for name in names:
            self._at[name] = new


def partition_view(db: ReadDb, events: str, index: int, k: int) -> str:
    """A temporary view of this session: the events of partition `index` of `k`."""
    view = f"serviceorders_events__p{index}"
    db.execute(
        f"CREATE TEMPORARY VIEW {view} AS SELECT * FROM {events} "
        f"WHERE {PARTITION.format(k=int(k))} = {int(index)}"
    )
    return view


def _fold(
    job: Job,
    next_slice: Any,
    progress: Callable[[int], None],
    note: Callable[[str], None],
) -> None:
    """Take the next partition of the log until none is left; fold and write each."""
    note(f"ready {time.time() - job.started:.2f} s after the start")
    db = ReadDb.connect(job.connection, job.lock_timeout)  # type: ignore[arg-type]
    try:
        # The planner guesses that a partition's filter keeps 0.5% of the rows, and reads a
        # page as a bitmap scan of the rest of the log, sorted: every page would cost the
        # whole log after it (quadratic). Without sorts it walks the log's index in order and
        # stops after a page (each partition reads the log once), and reads the earlier
        # events of a page's orders by the primary key (measured on 40,000 events: a page
        # 63 -> 12 ms, the earlier events 2.4 -> 0.3 ms).
        db.execute("SET enable_sort = off")
        events = db.events_table
        projections = [p for p in PROJECTIONS if p.name in job.names]
        mapper = job.mapper
        if getattr(mapper, "reveal", False) is None:
            # One revealer (and its cache of keys) for every partition this process folds,
            # as EventLog would make for each (measured: a partition of 1,250 events took
            # 0.35 s with a cold cache of keys, against 0.2 s of folding).
            from serviceorders.audit.pii import KeyStore, Vault

            mapper = copy.copy(mapper)
            mapper.reveal = Vault(KeyStore(db=db)).reveal

        while True:
            with next_slice.get_lock():
                index = next_slice.value
                next_slice.value = index + 1
            if index >= job.slices:
                return
            # Everything this projector reads of the log (pages, earlier events) is the
            # partition's.
            db.events_table = partition_view(db, events, index, job.slices)
            projector = PartitionProjector(
                db,
                mapper,
                projections,
                tables=job.tables,
                lock=None,
                batch_size=job.batch_size,
                fresh=True,
            )
            began = time.perf_counter()
            done = projector.catch_up(stop=job.stop, progress=progress)
            note(
                f"partition {index + 1} of {job.slices}: {done} events in "
                f"{time.perf_counter() - began:.2f} s"
            )
    finally:
        db.close()


def _work(job: Job, next_slice: Any, reports: Any) -> None:
    """A worker process: `_fold`, its progress and its end reported to the caller."""
    try:
        _fold(
            job,
            next_slice,
            lambda n: reports.put(("progress", job.index, n)),
            lambda text: reports.put(("note", job.index, text)),
        )
    except BaseException as e:
        reports.put(("failed", job.index, _one_line(e)))
        raise SystemExit(1) from None
    reports.put(("done", job.index, 0))


def slices(processes: int, events: int, batch_size: int) -> int:
    """How many partitions: about one page of events each (fewer pages: each costs a
    statement or two per read model), at least one per process, at most
    SLICES_PER_PROCESS per process; 1 for one process."""
    if processes <= 1:
        return 1
    pages = -(-max(events, 1) // max(batch_size, 1))
    return max(processes, min(processes * SLICES_PER_PROCESS, pages))


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0]


def partial_table(table: str, index: int) -> str:
    return f"{table}__p{index}"


def build(
    db: ReadDb,
    mapper: Mapper[Any],
    projections: Sequence[Projection],
    tables: dict[str, str],
    stop: int,
    workers: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Fill the fresh (empty) `tables` of the partitionable `projections` with the log up
    to position `stop`, with `workers` processes (this one and `workers - 1` started here),
    and move their positions to `stop`;
    returns the names of the projections built (the others stay at 0). WorkerFailed (the
    tables then hold part of the log: the caller discards them)."""
    built = [p for p in projections if p.name in PARTITIONED or p.name in SUMMED]
    if not built or stop <= 0 or workers < 1:
        return []
    summed = [p for p in built if p.name in SUMMED]
    partials = {
        i: {p.name: partial_table(tables[p.name], i) for p in summed} for i in range(workers)
    }
    with db.transaction():
        for i in range(workers):
            for p in summed:
                db.drop_table(partials[i][p.name])
                db.create_table(p.table, partials[i][p.name], indexes=False)
    try:
        _run(db, mapper, built, tables, partials, stop, workers, batch_size, progress)
        with db.transaction():
            for p in summed:
                _sum(db, p, tables[p.name], [partials[i][p.name] for i in range(workers)])
            names = [tables[p.name] for p in built]
            db.execute(
                f"UPDATE {POSITIONS.name} SET position = %s WHERE name IN "
                f"({', '.join(['%s'] * len(names))})",
                (stop, *names),
            )
    finally:
        with db.transaction():
            for i in range(workers):
                for table in partials[i].values():
                    db.drop_table(table)
    return [p.name for p in built]


def _sum(db: ReadDb, projection: Projection, target: str, parts: list[str]) -> None:
    """The workers' counters added up, into the built table (one statement)."""
    keys = ", ".join(projection.table.primary_key)
    counters = SUMMED[projection.name]
    others = [
        c
        for c in projection.table.column_names
        if c not in projection.table.primary_key and c not in counters
    ]
    cols = [*projection.table.primary_key, *others, *counters]
    union = " UNION ALL ".join(f"SELECT {', '.join(cols)} FROM {t}" for t in parts)
    select = ", ".join(
        [
            *projection.table.primary_key,
            *(f"MAX({c})" for c in others),
            *(f"SUM({c})" for c in counters),
        ]
    )
    db.execute(
        f"INSERT INTO {target} ({', '.join(cols)}) SELECT {select} FROM ({union}) AS parts "
        f"GROUP BY {keys}"
    )


def _run(
    db: ReadDb,
    mapper: Mapper[Any],
    built: list[Projection],
    tables: dict[str, str],
    partials: dict[int, dict[str, str]],
    stop: int,
    processes: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    """This process and `processes - 1` workers take the log's partitions one at a time
    (several per process: one that starts late, or gets bigger ones, takes fewer)."""
    # "spawn": a psycopg connection must never cross a fork; each worker opens its own.
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    next_slice = context.Value("i", 0)
    connection = Connection.of(db)
    names = tuple(p.name for p in built)
    if getattr(mapper, "reveal", None) is not None:
        # The caller's own revealer is not sent: each process reveals with its database.
        mapper = copy.copy(mapper)
        mapper.reveal = None  # type: ignore[attr-defined]
    jobs = [
        Job(
            index=i,
            processes=processes,
            slices=slices(processes, stop, batch_size),
            connection=connection,
            lock_timeout=int(getattr(db, "lock_timeout", 5)),
            mapper=mapper,
            names=names,
            tables={**{p.name: tables[p.name] for p in built}, **partials[i]},
            stop=stop,
            batch_size=batch_size,
            started=time.time(),
        )
        for i in range(processes)
    ]
    workers = {
        job.index: context.Process(
            target=_work, args=(job, next_slice, reports), name=f"rebuild-{job.index}", daemon=True
        )
        for job in jobs[1:]
    }
    done: set[int] = set()

    def heard(block: bool) -> None:
        """Pass on the workers' progress; WorkerFailed when one failed or died."""
        while True:
            try:
                kind, index, value = reports.get(timeout=0.5) if block else reports.get_nowait()
            except queues.Empty:
                break
            if kind == "progress":
                if progress:
                    progress(value)
            elif kind == "note":
                log.debug("rebuild process %d of %d: %s", index + 1, processes, value)
            elif kind == "done":
                done.add(index)
            else:
                raise WorkerFailed(f"rebuild process {index + 1} of {processes} failed: {value}")
            block = False
        for index, worker in workers.items():
            if index not in done and worker.exitcode is not None:
                time.sleep(0.1)  # (its last reports, flushed as it exited)
                if not _said_done(reports, index, done, progress):
                    raise WorkerFailed(
                        f"rebuild process {index + 1} of {processes} exited with code "
                        f"{worker.exitcode}"
                    )

    def mine(n: int) -> None:
        if progress:
            progress(n)
        heard(block=False)

    try:
        for worker in workers.values():
            worker.start()
        try:
            _fold(
                jobs[0],
                next_slice,
                mine,
                lambda text: log.debug("rebuild process 1 of %d: %s", processes, text),
            )
        except WorkerFailed:
            raise
        except Exception as e:
            raise WorkerFailed(f"rebuild process 1 of {processes} failed: {_one_line(e)}") from e
        while len(done) < len(workers):
            heard(block=True)
        for worker in workers.values():
            worker.join()
    finally:
        for worker in workers.values():
            if worker.is_alive():
                worker.terminate()
        for worker in workers.values():
            if worker.pid is not None:
                worker.join(10)
        reports.close()


def _said_done(
    reports: Any, index: int, done: set[int], progress: Callable[[int], None] | None
) -> bool:
    """Whether worker `index`, which exited, said it was done (its reports drained)."""
    while True:
        try:
            kind, who, value = reports.get_nowait()
        except queues.Empty:
            return index in done
        if kind == "progress" and progress:
            progress(value)
        elif kind == "done":
            done.add(who)
        elif kind == "failed":
            raise WorkerFailed(f"rebuild process {who + 1} failed: {value}")

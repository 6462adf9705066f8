"""Rebuild over order-id ranges (PostgreSQL): the log split by aggregate into K partitions,
each folded and written by its own worker process into the same fresh tables, up to a log
position taken at the start; the caller (maintenance.rebuild, verify) then catches up the
rest and swaps, as a single-process rebuild does.

A partition is a stable function of the aggregate id (`PARTITION`): every event of an
order (or of a service) is in the same partition, in log order, so a worker folds whole
aggregates exactly as the single-process projector does, with the same code (Projector,
EventLog, fold: a worker's connection sees only its partition of the events table).

Which read models go which way (docs/performance.md, "Rebuild over order-id ranges"):

- PARTITIONED: every row is a function of one aggregate's events (keyed by its id, or by
  the log position of one of its events): each worker writes its aggregates' rows.
- SUMMED: counters that add up rows of many aggregates (per day, state, ...): each worker
  counts into a table of its own; the main process sums them into the built table with
  one statement.
- any other read model (one added later and not classified here) is built from the first
  event by the main process after the workers, the single-process way.

The chain heads the projector has read (`audit_seen_head`, storage/seen.py) are keyed by
aggregate too: each worker records its own aggregates' heads, as the projector does.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queues
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Mapper
from serviceorders.projections.runner import POSITIONS, Projector
from serviceorders.projections.views import PROJECTIONS, Projection
from serviceorders.storage.db import ReadDb

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


def partition_of(order_id: Any, k: int) -> int:
    """The partition of an aggregate id (as PARTITION computes it in SQL)."""
    return int(order_id.bytes[15]) % k


def workers_for(db: ReadDb, workers: int | None, events: int | None = None) -> int:
    """How many worker processes a rebuild uses: 0 (in this process) on SQLite, for a
    small log (fewer than PARALLEL_ABOVE events, when `workers` is not given) or when
    `workers` is 0; otherwise `workers` (default: one per core)."""
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
    """A worker process failed: the tables it was building are discarded."""


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
    index: int
    k: int
    connection: Connection
    lock_timeout: int
    mapper: Any
    names: tuple[str, ...]
    tables: dict[str, str]
    stop: int
    batch_size: int


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


def partition_view(db: ReadDb, index: int, k: int) -> str:
    """A temporary view of this session: the events of partition `index` of `k`."""
    view = f"serviceorders_events__p{index}"
    db.execute(
        f"CREATE TEMPORARY VIEW {view} AS SELECT * FROM {db.events_table} "
        f"WHERE {PARTITION.format(k=int(k))} = {int(index)}"
    )
    return view


def _work(job: Job, reports: Any) -> None:
    """A worker process: fold and write partition `job.index` up to `job.stop`."""
    try:
        db = ReadDb.connect(job.connection, job.lock_timeout)  # type: ignore[arg-type]
        try:
            # Everything this worker reads of the log (pages, earlier events) is its part.
            db.events_table = partition_view(db, job.index, job.k)
            projector = PartitionProjector(
                db,
                job.mapper,
                [p for p in PROJECTIONS if p.name in job.names],
                tables=job.tables,
                lock=None,
                batch_size=job.batch_size,
                fresh=True,
            )
            projector.catch_up(
                stop=job.stop, progress=lambda n: reports.put(("progress", job.index, n))
            )
        finally:
            db.close()
    except BaseException as e:
        reports.put(("failed", job.index, f"{type(e).__name__}: {e}".splitlines()[0]))
        raise SystemExit(1) from None
    reports.put(("done", job.index, 0))


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
    to position `stop`, with `workers` processes, and move their positions to `stop`;
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
    workers: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    # "spawn": a psycopg connection must never cross a fork; each worker opens its own.
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    connection = Connection.of(db)
    names = tuple(p.name for p in built)
    if getattr(mapper, "reveal", None) is not None:
        # The caller's own revealer is not sent: each worker reveals with its database.
        import copy

        mapper = copy.copy(mapper)
        mapper.reveal = None  # type: ignore[attr-defined]
    processes = []
    for i in range(workers):
        job = Job(
            index=i,
            k=workers,
            connection=connection,
            lock_timeout=int(getattr(db, "lock_timeout", 5)),
            mapper=mapper,
            names=names,
            tables={**{p.name: tables[p.name] for p in built}, **partials[i]},
            stop=stop,
            batch_size=batch_size,
        )
        process = context.Process(
            target=_work, args=(job, reports), name=f"rebuild-{i}", daemon=True
        )
        processes.append(process)
    try:
        for process in processes:
            process.start()
        done: set[int] = set()
        while len(done) < workers:
            try:
                kind, index, value = reports.get(timeout=0.5)
            except queues.Empty:
                for i, process in enumerate(processes):
                    if i not in done and process.exitcode is not None:
                        _drain(reports, done, progress)
                        if i not in done:
                            raise WorkerFailed(
                                f"rebuild worker {i + 1} of {workers} exited with code "
                                f"{process.exitcode}"
                            ) from None
                continue
            if kind == "progress":
                if progress:
                    progress(value)
            elif kind == "done":
                done.add(index)
            else:
                raise WorkerFailed(f"rebuild worker {index + 1} of {workers} failed: {value}")
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            if process.pid is not None:
                process.join(10)
        reports.close()


def _drain(reports: Any, done: set[int], progress: Callable[[int], None] | None) -> None:
    """Reports still in the queue (a worker that said `done` just before it exited)."""
    while True:
        try:
            kind, index, value = reports.get_nowait()
        except queues.Empty:
            return
        if kind == "progress" and progress:
            progress(value)
        elif kind == "done":
            done.add(index)
        elif kind == "failed":
            raise WorkerFailed(f"rebuild worker {index + 1} failed: {value}")

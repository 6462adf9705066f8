"""The projector on an order's later events: approval and fulfilment, each in a page after
the order's creation (issue 21). `python3 -m bench.lifecycle [--orders N] [--rounds R]`.

The burst intake of `python3 -m bench` creates orders whose two events (drafted,
submitted) land in one page: no page reads an earlier event. An order's life goes on with
events minutes or days apart (approved, items in progress, items completed...), each in a
page of its own, and each such page used to read, decode and fold the order's whole
history again before writing its rows. This measures that, in one process, on a scratch
PostgreSQL database:

1. N orders from `consumers/sample.traffic` through the Kafka intake's own code
   (`consumers.intake.Intake`, without a broker), then rounds of one event per order:
   every order approved, then R rounds of an item moved on (inProgress, completed...);
2. after each round, two projectors each catch up into read-model tables of their own:
   one keeping no order between pages (`keep=0`, every page reads its orders' histories),
   one keeping them (`SERVICEORDERS_PROJECTION_CACHE`, projections/log.py `OrderCache`);
   in alternating order from one round to the next;
3. per round and projector: CPU time per event (`time.process_time`, this process: the
   projector's Python and its psycopg client, not PostgreSQL's backend) and wall time;
   at the end, that both sets of tables hold the same rows.

With an engine from before the cache (a baseline installed in its own virtualenv, whose
`Projector` takes no `keep`), only the first projector runs: `python3 -m bench.lifecycle`
from this checkout against that install measures the baseline back to back.

The machine is shared: compare figures of the same run only.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from serviceorders.bootstrap import (
    build_application,
    event_mapper,
    init_database,
    open_read_db,
)
from serviceorders.consumers.intake import Intake, Message
from serviceorders.consumers.sample import traffic
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain import commands as cmd
from serviceorders.domain.errors import DomainError
from serviceorders.domain.values import CommandContext, ItemState, Role
from serviceorders.projections.maintenance import _discard, _fresh
from serviceorders.projections.runner import Projector
from serviceorders.projections.views import PROJECTIONS
from serviceorders.settings import Settings

from .common import DEFAULT_ADMIN_URL, Databases, new_run_id

MANAGER = CommandContext.for_actor("bench-manager", Role.MANAGER)
FULFILMENT = CommandContext.for_actor("bench-fulfilment", Role.FULFILMENT)


def _intake(settings: Settings, orders: int) -> list[UUID]:
    app = build_application(settings)
    db = open_read_db(settings)
    try:
        sample = traffic(orders, duplicates=0, bad=0, seed=641, prefix="LIFE")
        intake = Intake(app, IntakeStore(db), settings.events_topic)
        topic = settings.inbound_topic
        msgs = [Message(topic, 0, i, m.key, m.value) for i, m in enumerate(sample.messages)]
        for i in range(0, len(msgs), 500):
            intake.process(msgs[i : i + 500], {(topic, 0): i or None})
        rows = db.fetchall(f"SELECT DISTINCT originator_id FROM {db.events_table}")
        return sorted(r[0] if isinstance(r[0], UUID) else UUID(str(r[0])) for r in rows)
    finally:
        db.close()
        app.close()


def _round(settings: Settings, ids: list[UUID], n: int) -> int:
    """One event per order: approval (round 0), then an item moved on."""
    app = build_application(settings)
    done = 0
    try:
        for order_id in ids:
            try:
                if n == 0:
                    app.handle(MANAGER, cmd.Approve(order_id))
                else:
                    order = app.get_order(order_id)
                    open_items = sorted(
                        i for i, it in order.items.items() if not (it.state and it.state.is_final)
                    )
                    if not open_items:
                        continue
                    state = ItemState.IN_PROGRESS if n % 2 else ItemState.COMPLETED
                    app.handle(FULFILMENT, cmd.ChangeItemStates.one(order_id, open_items[0], state))
                done += 1
            except DomainError:
                continue
    finally:
        app.close()
    return done


def _catch_up(projector: Projector) -> tuple[int, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    events = projector.catch_up()
    return events, time.process_time() - cpu, time.perf_counter() - wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.lifecycle", description=__doc__)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="item rounds after the approval")
    parser.add_argument("--keep", type=int, default=2000, help="orders kept (the default)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    args = parser.parse_args(argv)
    dbs = Databases(args.admin_url, new_run_id())
    url = dbs.create("lifecycle")
    try:
        settings = Settings.from_env({"DATABASE_URL": url})
        init_database(settings)
        ids = _intake(settings, args.orders)
        db = open_read_db(settings)
        db.execute("ANALYZE")
        caching = "keep" in inspect.signature(Projector).parameters
        kinds = ("none", "kept") if caching else ("none",)
        tables = {k: _fresh(db, PROJECTIONS, k) for k in kinds}
        projectors = {
            k: Projector(
                db,
                event_mapper(),
                PROJECTIONS,
                tables=tables[k],
                lock=None,
                batch_size=settings.projection_batch_size,
                **({"keep": 0 if k == "none" else args.keep} if caching else {}),
            )
            for k in tables
        }
        figures: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in tables}
        print(f"{'round':<22} {'events':>7} {'none kept, us/event':>22} {'kept, us/event':>22}")
        for n in range(-1, args.rounds + 1):
            label = "created (2 events)" if n < 0 else "approved" if n == 0 else f"items {n}"
            if n >= 0 and not _round(settings, ids, n):
                break
            order = kinds if n % 2 else kinds[::-1]
            result: dict[str, tuple[int, float, float]] = {}
            for k in order:
                result[k] = _catch_up(projectors[k])
            events = result["none"][0]
            cells = []
            for k in kinds:
                count, cpu, wall = result[k]
                assert count == events
                per = cpu / max(count, 1) * 1e6
                if n >= 0:
                    figures[k]["cpu"].append(per)
                    figures[k]["wall"].append(wall / max(count, 1) * 1e6)
                cells.append(f"{per:,.0f} cpu / {wall / max(count, 1) * 1e6:,.0f} wall")
            print(f"{label:<22} {events:>7} " + " ".join(f"{c:>22}" for c in cells), flush=True)
        rows: dict[str, Any] = {
            k: {p.name: sorted(db.rows(p.table, tables[k][p.name]), key=repr) for p in PROJECTIONS}
            for k in tables
        }
        same = all(rows[k] == rows["none"] for k in kinds)
        cache = projectors["kept"].log.kept if caching else None
        for k, what in (("none", "no order kept"), ("kept", f"{args.keep} orders kept"))[
            : len(kinds)
        ]:
            cpu = statistics.median(figures[k]["cpu"])
            wall = statistics.median(figures[k]["wall"])
            print(f"later events, median per event, {what}: {cpu:,.0f} us CPU, {wall:,.0f} us wall")
        if cache is not None:
            print(f"cache: {cache.hits} hits, {cache.misses} misses, {len(cache.entries)} orders")
        print(f"same rows in every read model: {same}")
        for k in tables:
            _discard(db, tables[k])
        db.close()
        return 0 if same else 1
    finally:
        dbs.drop_all()


if __name__ == "__main__":
    raise SystemExit(main())

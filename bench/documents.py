"""The TMF641 document of each version of an order, rendered whole or from the order's last
one (issue 21). `python3 -m bench.documents [--orders N] [--rounds R] [--runs K]`.

The projector renders an order's document once per event (order_document, the
notifications); since issue 21 it renders it from the order's last document
(`tmf641.Renders`): the items and milestones that are the same objects are taken as they were
rendered. This measures both ways on the same states, in one process, on a scratch
PostgreSQL database:

1. N orders from `consumers/sample.traffic` through the Kafka intake's code, every order
   approved, then R rounds of an item moved on (bench/lifecycle.py's rounds);
2. the log read back and folded once, keeping each order's state at each version where it
   is a TMF641 order (a shallow copy: the values are shared, as in the fold);
3. K runs, alternating, each rendering every kept state whole and from the last rendering
   (the documents dropped as they are made, as a page's are after it): CPU time per
   document (`time.process_time`); the minimum and median over the runs (the minimum is
   the least disturbed by the rest of a shared machine); then that both ways give equal
   documents.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from serviceorders.bootstrap import event_mapper, init_database, open_read_db
from serviceorders.projections.log import EventLog, visible
from serviceorders.settings import Settings
from serviceorders.tmf.tmf641 import Renders, order_to_tmf641

from .common import DEFAULT_ADMIN_URL, Databases, new_run_id
from .lifecycle import _intake, _round


def _states(settings: Settings) -> list[Any]:
    db = open_read_db(settings)
    try:
        events = EventLog(db, event_mapper()).read(after=0, limit=10**7)
    finally:
        db.close()
    orders: dict[Any, Any] = {}
    states = []
    for _, event in events:
        order = orders[event.originator_id] = event.mutate(orders.get(event.originator_id))
        if visible(order):
            states.append(copy.copy(order))
    return states


def _run(states: list[Any], incremental: bool) -> float:
    renders: dict[Any, Renders] = {}
    started = time.process_time()
    for order in states:
        if incremental:
            order_to_tmf641(order, renders.setdefault(order.id, Renders()))
        else:
            order_to_tmf641(order)
    return (time.process_time() - started) / max(len(states), 1) * 1e6


def _same(states: list[Any]) -> bool:
    renders: dict[Any, Renders] = {}
    return all(
        order_to_tmf641(order, renders.setdefault(order.id, Renders())) == order_to_tmf641(order)
        for order in states
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.documents", description=__doc__)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="item rounds after the approval")
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    args = parser.parse_args(argv)
    dbs = Databases(args.admin_url, new_run_id())
    try:
        url = dbs.create("documents")
        settings = Settings.from_env({"DATABASE_URL": url})
        init_database(settings)
        ids = _intake(settings, args.orders)
        for n in range(args.rounds + 1):
            _round(settings, ids, n)
        states = _states(settings)
        figures: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.runs):
            figures[False].append(_run(states, incremental=False))
            figures[True].append(_run(states, incremental=True))
        same = _same(states)
        print(f"{len(states)} documents of {len(ids)} orders, {args.runs} runs")
        for incremental, label in ((False, "rendered whole"), (True, "from the last one")):
            got = figures[incremental]
            print(
                f"{label:<18} us per document: min {min(got):.1f}, "
                f"median {statistics.median(got):.1f}"
            )
        print(f"same documents: {same}")
        return 0 if same else 1
    finally:
        dbs.drop_all()


if __name__ == "__main__":
    raise SystemExit(main())

"""Aggregate load: the time of `app.get_order(id)` against the length of the order's
history, with snapshots every 50 versions (the default) and with snapshots off
(SERVICEORDERS_SNAPSHOT_INTERVAL=0), on the same database.

Two orders are received (2 events each) and approved, one through each application, then
grow by hold / resume cycles (fulfilment pausing and resuming the work, saved in chunks of
100 events, one transaction each): events whose effect on the order's state does not grow
with their number, so that the figure isolates the cost of the history's length. (Notes,
by contrast, stay in the order's state: an order with 10,000 notes is a bigger order, and
loads slower with or without snapshots.) Snapshots are taken as in production for the
first order and never for the second (the engine reads the snapshot table either way:
IS_SNAPSHOTTING_ENABLED is always on). At each history length the median of several loads
is taken.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from serviceorders.bootstrap import build_application, init_database
from serviceorders.domain import commands as cmd
from serviceorders.domain.values import Channel, CommandContext, Role
from serviceorders.settings import Settings
from serviceorders.tmf.tmf641_in import ServiceOrderCreate, order_to_domain

from .common import engine_env, log

SECTION = "load"


def _median_ms(fn: Any, budget_s: float, least: int = 3, most: int = 50) -> float:
    times: list[float] = []
    spent = 0.0
    while len(times) < most and (len(times) < least or spent < budget_s):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        times.append(dt * 1000)
        spent += dt
    return statistics.median(times)


def run(
    database_url: str, body: dict[str, Any], levels: list[int], budget_s: float
) -> dict[str, dict[int, float]]:
    env = engine_env(database_url)
    init_database(Settings.from_env(env))
    snap = build_application(Settings.from_env({**env, "SERVICEORDERS_SNAPSHOT_INTERVAL": "50"}))
    plain = build_application(Settings.from_env({**env, "SERVICEORDERS_SNAPSHOT_INTERVAL": "0"}))
    out: dict[str, dict[int, float]] = {"snapshots": {}, "no_snapshots": {}}
    try:
        upstream = CommandContext.for_actor("bench", Role.UPSTREAM, Channel.KAFKA)
        operator = CommandContext.for_actor("bench-ops", Role.OPERATOR)
        manager = CommandContext.for_actor("bench-manager", Role.MANAGER)
        header, items, notes = order_to_domain(ServiceOrderCreate.model_validate(body))
        ids = {}
        for name, app in (("snapshots", snap), ("no_snapshots", plain)):
            body = {**body, "externalId": f"{body.get('externalId', 'LOAD')}-{name}"}
            header, items, notes = order_to_domain(ServiceOrderCreate.model_validate(body))
            received = app.handle(upstream, cmd.ReceiveOrder(header, tuple(items), tuple(notes)))
            ids[name] = received.order.id
            app.handle(manager, cmd.Approve(ids[name]))
        versions = {name: 3 for name in ids}
        for level in sorted(levels):
            for name, app in (("snapshots", snap), ("no_snapshots", plain)):
                order_id = ids[name]
                while versions[name] < level:
                    order = app.get_order(order_id)
                    for _ in range(min(100, level - versions[name])):
                        if versions[name] % 2:  # odd versions: in progress, even: held
                            order.hold(operator, "maintenance window")
                        else:
                            order.resume(operator, "window over")
                        versions[name] += 1
                    app.save(order)
                assert app.get_order(order_id).version == level
                out[name][level] = _median_ms(lambda a=app, i=order_id: a.get_order(i), budget_s)
            log(
                f"load at {level:>6} events: {out['snapshots'][level]:.2f} ms with snapshots, "
                f"{out['no_snapshots'][level]:.2f} ms without"
            )
    finally:
        snap.close()
        plain.close()
    return out

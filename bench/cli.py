"""`python3 -m bench`: runs the sections, prints the table, writes the JSON."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.sample import order, traffic

from . import api, ceiling, intake, load, replay, writers
from .common import (
    DEFAULT_ADMIN_URL,
    ROOT,
    Databases,
    Results,
    Target,
    fmt,
    log,
    machine,
    new_run_id,
    noise_probe,
)

SECTIONS = ("ceiling", "intake", "api", "replay", "load", "memory", "writers")
RESULTS = ROOT / "bench" / "results"
RSS_TARGET = Target("<=", 250, text="< 250 MB")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny N, one repetition (CI: checks the harness, not the machine)",
    )
    p.add_argument(
        "--orders",
        type=int,
        default=None,
        help="orders for the ceiling and the intake (default 5000; smoke 150)",
    )
    p.add_argument(
        "--api-orders",
        type=int,
        default=None,
        help="orders POSTed per API repetition (default 2000; smoke 96)",
    )
    p.add_argument("--clients", type=int, default=32, help="concurrent API clients")
    p.add_argument(
        "--intake-rate",
        type=float,
        default=None,
        help="orders/s of the paced intake run (default 500; smoke 300; 0: none)",
    )
    p.add_argument(
        "--api-workers",
        type=int,
        default=2,
        help="`serviceorders api --workers N` (default 2: one per core)",
    )
    p.add_argument(
        "--paced",
        default="100,200",
        metavar="POST,GET",
        help="requests/s of the paced (open-loop) API phases (default 100,200)",
    )
    p.add_argument("--repeat", type=int, default=None, help="repetitions (default 3; smoke 1)")
    p.add_argument(
        "--levels",
        default=None,
        help="history lengths for the load section (default 10,100,1000,10000; smoke 10,100)",
    )
    p.add_argument(
        "--writer-orders",
        type=int,
        default=None,
        help="writers: orders committed per writer count in consume batches (default 40000; "
        "smoke 400)",
    )
    p.add_argument(
        "--writer-batch",
        type=int,
        default=None,
        help="writers: orders per consume-batch commit (default: SERVICEORDERS_CONSUME_BATCH's "
        "default, 500; smoke 50)",
    )
    p.add_argument(
        "--writer-single",
        type=int,
        default=None,
        help="writers: orders committed one per commit per writer count (default 4000; "
        "smoke 40; 0: none)",
    )
    p.add_argument(
        "--writer-sweep",
        default=None,
        help="writers: other batch sizes, 1 writer (default 10,100,2000; smoke none)",
    )
    p.add_argument(
        "--json",
        dest="json_path",
        default=str(RESULTS / "latest.json"),
        help="where to write the JSON (default bench/results/latest.json)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="SECTION",
        help=f"run only these sections (repeatable or comma separated: {', '.join(SECTIONS)})",
    )
    p.add_argument(
        "--admin-url",
        default=DEFAULT_ADMIN_URL,
        help="PostgreSQL maintenance database; scratch databases bench_<run>_* "
        "are created beside it and dropped at the end",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the scratch databases and the processes' logs"
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="sample consume, project and api with py-spy into DIR and print where their CPU goes",
    )
    a = p.parse_args(argv)
    a.orders = a.orders or (150 if a.smoke else 5000)
    a.api_orders = a.api_orders or (96 if a.smoke else 2000)
    a.repeat = a.repeat or (1 if a.smoke else 3)
    if a.intake_rate is None:
        a.intake_rate = 300.0 if a.smoke else 500.0
    post_rate, get_rate = (float(x) for x in a.paced.split(","))
    a.paced = (post_rate, get_rate)
    a.levels = [
        int(x) for x in (a.levels or ("10,100" if a.smoke else "10,100,1000,10000")).split(",")
    ]
    a.writer_orders = a.writer_orders or (400 if a.smoke else 40000)
    a.writer_batch = a.writer_batch or (50 if a.smoke else writers.consume_default_batch())
    if a.writer_single is None:
        a.writer_single = 40 if a.smoke else 4000
    sweep = a.writer_sweep if a.writer_sweep is not None else ("" if a.smoke else "10,100,2000")
    a.writer_sweep = [int(x) for x in sweep.split(",") if x.strip()]
    only = {s.strip() for x in (a.only or []) for s in x.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; one of {', '.join(SECTIONS)}")
    a.sections = [s for s in SECTIONS if not only or s in only]
    return a


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    run_id = new_run_id()
    logs = RESULTS / f"logs-{run_id}"
    logs.mkdir(parents=True, exist_ok=True)
    if a.profile:
        Path(a.profile).mkdir(parents=True, exist_ok=True)
    dbs = Databases(a.admin_url, run_id)
    results = Results()
    started = time.monotonic()
    info = machine(dbs)
    info["noise_before"] = noise_probe()
    log(
        f"run {run_id}: sections {', '.join(a.sections)}; {a.orders} orders, {a.repeat} "
        f"repetition(s); logs in {logs.relative_to(ROOT)}"
    )
    sample = traffic(a.orders, duplicates=0, bad=0, seed=641, prefix=f"BENCH-{run_id}")
    messages = sample.messages
    failed: list[str] = []
    broker = EmbeddedBroker(log_file=logs / "broker.log")
    try:
        broker.start()
        bootstrap = broker.bootstrap_servers
        run_sections(a, results, dbs, bootstrap, messages, sample, run_id, logs, failed)
    except Exception:
        failed.append(traceback.format_exc())
    finally:
        broker.stop()
        if not a.keep:
            dbs.drop_all()
    info["noise_after"] = noise_probe()
    info["duration_s"] = round(time.monotonic() - started, 1)
    table = render(results)
    print(table)
    if results.notes:
        print("\n".join(f"note: {n}" for n in results.notes))
    if a.profile:
        from .profile import report

        for f in sorted(Path(a.profile).glob("*.txt")):
            print()
            print(report(f))
    write_json(Path(a.json_path), a, info, results, failed)
    for f in failed:
        print(f"\nFAILED:\n{f}")
    if not failed and not a.keep:
        shutil.rmtree(logs, ignore_errors=True)
    elif failed:
        log(f"the processes' logs are in {logs}")
    log(f"done in {info['duration_s']:.0f}s; JSON in {a.json_path}")
    return 1 if failed else 0


def run_sections(
    a: argparse.Namespace,
    r: Results,
    dbs: Databases,
    bootstrap: str,
    messages: list[Any],
    sample: Any,
    run_id: str,
    logs: Path,
    failed: list[str],
) -> None:
    want = set(a.sections)
    need_intake = bool(want & {"intake", "replay", "memory"})
    ceiling_url = None
    replay_url = None
    events_per_order = 2
    if "ceiling" in want:
        ceiling_url = dbs.create("ceiling")
        ceiling.prepare(ceiling_url)
        topic = f"bench.{run_id}.ceiling"
        create_topic(bootstrap, topic, 4)
        ceiling.publish(bootstrap, topic, messages)
    values = [m.value for m in messages]
    for rep in range(a.repeat):
        # interleaved: the ceiling and the engine meet the same machine weather
        if need_intake:
            for consumers in (1, 2) if "intake" in want else (1,):
                tag = f"{run_id}-r{rep}-c{consumers}"
                url = dbs.create(f"intake_r{rep}_c{consumers}")
                got = intake.run(
                    database_url=url,
                    bootstrap=bootstrap,
                    messages=messages,
                    consumers=consumers,
                    tag=tag,
                    logs=logs,
                    profile=a.profile if rep == 0 else None,
                )
                record_intake(r, got)
                if rep == 0:  # the read models the live projector wrote equal a rebuild
                    r.add(
                        "intake",
                        f"{consumers} consume: projections verify, rows that differ",
                        "rows",
                        intake.verify_projections(url),
                        target=Target("<=", 0, text="0"),
                        note="the live tables against a rebuild at the same position",
                    )
                events_per_order = max(1, round(got.events / got.orders))
                if consumers == 1:
                    replay_url = url
            if "intake" in want and a.intake_rate:
                tag = f"{run_id}-r{rep}-paced"
                got = intake.run(
                    database_url=dbs.create(f"intake_r{rep}_paced"),
                    bootstrap=bootstrap,
                    messages=messages,
                    consumers=1,
                    tag=tag,
                    logs=logs,
                    rate=a.intake_rate,
                )
                r.add(
                    "intake",
                    f"1 consume, published at {a.intake_rate:,.0f}/s: projection lag at the end",
                    "s",
                    got.lag_s,
                    target=Target("<=", 1.0, text="<= 1 s"),
                    note="a steady stream below capacity, not a burst",
                )
        if ceiling_url is not None:
            got_c = ceiling.run_once(
                bootstrap,
                f"bench.{run_id}.ceiling",
                len(messages),
                ceiling_url,
                values,
                events_per_order,
            )
            record_ceiling(r, got_c, events_per_order)
    finish_intake(r, want)
    if "replay" in want and replay_url:
        for rep in range(a.repeat):
            got_r = replay.run(replay_url, cli=rep == 0, profile=a.profile if rep == 0 else None)
            r.add(
                "replay",
                "projections rebuild",
                "events/s",
                got_r["rebuild_events_per_s"],
                target=Target(">=", 20000),
                note=f"{int(got_r['events']):,} events",
            )
            r.add(
                "replay",
                "audit verify",
                "events/s",
                got_r["verify_events_per_s"],
                note=f"{int(got_r['events']):,} events",
            )
            if "rebuild_cli_s" in got_r:
                r.add(
                    "replay",
                    "`projections rebuild` command, wall",
                    "s",
                    got_r["rebuild_cli_s"],
                    note="includes interpreter start-up",
                )
                r.add(
                    "replay",
                    "`audit verify` command, wall",
                    "s",
                    got_r["verify_cli_s"],
                    note="includes interpreter start-up",
                )
    if "api" in want or "memory" in want:
        rng = random.Random(641)
        for rep in range(a.repeat if "api" in want else 1):
            bodies = [order(f"API-{run_id}-{rep}-{i:06d}", rng) for i in range(a.api_orders)]
            try:
                got_a = api.run(
                    database_url=dbs.create(f"api_r{rep}"),
                    bodies=bodies,
                    clients=a.clients,
                    tag=f"{run_id}-api-r{rep}",
                    logs=logs,
                    profile=a.profile if rep == 0 else None,
                    workers=a.api_workers,
                    rates=a.paced,
                )
            except Exception:
                failed.append(traceback.format_exc())
                break
            record_api(r, got_a, a.clients, "api" in want, a.paced)
    if "load" in want:
        body = next(iter(sample.orders.values()))
        got_l = load.run(dbs.create("load"), body, a.levels, budget_s=0.3 if a.smoke else 2.0)
        record_load(r, got_l)
    if "writers" in want:
        run_writers(a, r, dbs)
    for key in [k for k in r.figures if k[0] not in want]:
        del r.figures[key]


def run_writers(a: argparse.Namespace, r: Results, dbs: Databases) -> None:
    """The event store alone, 1 / 2 / 4 writer processes, a fresh database each (dropped
    right after: a run of 40,000 orders writes ~160 MB of events)."""
    url = dbs.create("writers_templates")
    tpls = writers.templates(url)
    if not a.keep:
        writers.drop(dbs, url)
    # (writers, databases, orders, orders per commit, with a consume batch's intake rows)
    runs: list[tuple[int, int, int, int, bool]] = [
        (n, 1, a.writer_orders, a.writer_batch, True) for n in (1, 2, 4)
    ]
    runs.append((4, 2, a.writer_orders, a.writer_batch, True))  # the intake partitioned
    if a.writer_single:
        runs += [(n, 1, a.writer_single, 1, False) for n in (1, 2, 4)]
    for size in a.writer_sweep:
        runs.append((1, 1, max(a.writer_orders // 10, 10 * size), size, True))
    for rep in range(a.repeat):
        for n, databases, orders, per_commit, with_intake in runs:
            urls = [dbs.create(f"writers_r{rep}_b{per_commit}_w{n}_d{d}") for d in range(databases)]
            got = writers.run(urls, dbs.admin_url, tpls, n, orders, per_commit, with_intake)
            if not a.keep:
                for url in urls:
                    writers.drop(dbs, url)
            record_writers(r, got, sweep=per_commit != a.writer_batch and per_commit != 1)


# ---------------------------------------------------------------- recording
def record_ceiling(r: Results, got: dict[str, float], events_per_order: int) -> None:
    rows = events_per_order + 1
    r.add(
        "ceiling",
        "pipeline: consume + validate + COPY",
        "msgs/s",
        got["msgs_per_s"],
        note=f"{rows} rows per message ({events_per_order} events + the intake row), "
        "1 process, one transaction per poll",
    )
    r.add("ceiling", "pipeline rows written", "rows/s", got["rows_per_s"])
    r.add("ceiling", "Kafka consume only (manual assign)", "msgs/s", got["consume_msgs_per_s"])
    r.add(
        "ceiling",
        "pydantic validate only (ServiceOrderCreate)",
        "msgs/s",
        got["validate_msgs_per_s"],
    )
    r.add("ceiling", "binary COPY only", "rows/s", got["copy_rows_per_s"])


def record_intake(r: Results, got: intake.IntakeRun) -> None:
    c = got.consumers
    label = f"{c} consume"
    r.add(
        "intake", f"{label}: orders stored, acknowledged and visible", "orders/s", got.orders_per_s
    )
    r.add("intake", f"{label}: orders stored and acknowledged", "orders/s", got.stored_per_s)
    r.add("intake", f"{label}: events", "events/s", got.events_per_s)
    r.add(
        "intake",
        f"{label}: projection lag at the end",
        "s",
        got.lag_s,
        target=Target("<=", 1.0, text="<= 1 s"),
    )
    r.add(
        "intake",
        f"{label}: consume CPU per order",
        "ms",
        1000 * got.consume_cpu_s / got.orders,
        note="all consume processes, whole run",
    )
    r.add("intake", f"{label}: project CPU per order", "ms", 1000 * got.project_cpu_s / got.orders)
    if got.kafka_committed is not None and got.kafka_committed != got.orders:
        r.notes.append(
            f"intake x{c}: Kafka committed offsets sum to {got.kafka_committed}, not {got.orders}"
        )
    r.add(
        "memory",
        "consume peak RSS",
        "MB",
        got.peak_consume_mb,
        target=RSS_TARGET,
        note="VmHWM, during the intake",
    )
    r.add(
        "memory",
        "project peak RSS",
        "MB",
        got.peak_project_mb,
        target=RSS_TARGET,
        note="VmHWM, during the intake or the API run",
    )
    r.extra.setdefault("events_per_order", got.events / got.orders)


def finish_intake(r: Results, want: set[str]) -> None:
    """Ceilings and targets on the intake figures (the ceiling's median of the run)."""
    ref = r.get("ceiling", "pipeline: consume + validate + COPY")
    for c in (1, 2):
        for name in (
            f"{c} consume: orders stored, acknowledged and visible",
            f"{c} consume: orders stored and acknowledged",
        ):
            f = r.get("intake", name)
            if f is None:
                continue
            if ref is not None and ref.samples:
                f.ceiling = ref.value
            if c == 1 and "visible" in name:
                f.target = Target(">=", 0.5, on="ratio", text=">= 0.5x ceiling")
    one = r.get("intake", "1 consume: orders stored, acknowledged and visible")
    if one is not None:
        s = r.figure("intake", "1 consume: stretch goal", "orders/s", target=Target(">=", 5000))
        s.samples = list(one.samples)
    epo = r.extra.get("events_per_order")
    if epo:
        r.add("intake", "events per order", "events", epo)
    if "intake" not in want:  # ran only to feed replay / memory
        for key in [k for k in r.figures if k[0] == "intake"]:
            del r.figures[key]


def record_api(
    r: Results,
    got: api.ApiRun,
    clients: int,
    report: bool,
    paced: tuple[float, float] = (100.0, 200.0),
) -> None:
    if report:
        p, g, lst = got.phases["post"], got.phases["get"], got.phases["list"]
        at = f"{clients} clients"
        r.add("api", f"POST serviceOrder ({at})", "req/s", p.throughput, target=Target(">=", 500))
        r.add("api", "POST serviceOrder p50", "ms", p.p50)
        r.add("api", "POST serviceOrder p99", "ms", p.p99, target=Target("<=", 50, text="< 50 ms"))
        r.add("api", f"GET serviceOrder/{{id}} ({at})", "req/s", g.throughput)
        r.add("api", "GET serviceOrder/{id} p50", "ms", g.p50)
        r.add(
            "api", "GET serviceOrder/{id} p99", "ms", g.p99, target=Target("<=", 10, text="< 10 ms")
        )
        r.add("api", f"GET serviceOrder?limit=20 ({at})", "req/s", lst.throughput)
        r.add("api", "GET serviceOrder?limit=20 p50", "ms", lst.p50)
        r.add("api", "GET serviceOrder?limit=20 p99", "ms", lst.p99)
        pp, gp = got.phases["post_paced"], got.phases["get_paced"]
        rate_p, rate_g = paced
        r.add(
            "api",
            f"POST serviceOrder p99, paced at {rate_p:,.0f}/s",
            "ms",
            pp.p99,
            note="open loop; from the moment each request was due",
        )
        r.add(
            "api",
            f"GET serviceOrder/{{id}} p99, paced at {rate_g:,.0f}/s",
            "ms",
            gp.p99,
            note="open loop; from the moment each request was due",
        )
        cpu = p.client_cpu_s / max(1e-9, p.client_cpu_s + p.server_cpu_s)
        r.add(
            "api",
            "client share of CPU during POST",
            "%",
            100 * cpu,
            note="the clients run on the same 2 cores",
        )
    r.add(
        "memory",
        "api peak RSS",
        "MB",
        got.peak_api_mb,
        target=RSS_TARGET,
        note="VmHWM, during the API run",
    )
    r.add("memory", "project peak RSS", "MB", got.peak_project_mb, target=RSS_TARGET)


def record_load(r: Results, got: dict[str, dict[int, float]]) -> None:
    levels = sorted(got["snapshots"])
    for level in levels:
        r.add(
            "load",
            f"get_order, {level:,} events, snapshots every 50",
            "ms",
            got["snapshots"][level],
        )
    for level in levels:
        r.add(
            "load", f"get_order, {level:,} events, no snapshots", "ms", got["no_snapshots"][level]
        )
    lo, hi = levels[0], levels[-1]
    r.add(
        "load",
        f"snapshots: load at {hi:,} / load at {lo:,} events",
        "x",
        got["snapshots"][hi] / got["snapshots"][lo],
        target=Target("<=", 2.0, text="<= 2x"),
        note="'the same cost' read as at most twice",
    )


def record_writers(r: Results, got: writers.WritersRun, sweep: bool = False) -> None:
    w = f"{got.writers} writer{'s' if got.writers > 1 else ''}"
    if got.databases > 1:
        w += f" on {got.databases} databases"
    if got.per_commit == 1:
        at = f"{w}, 1 order/commit (API)"
    else:
        at = f"{w}, {got.per_commit:,} orders/commit"
    epo = got.events // got.orders
    if sweep:  # other batch sizes: the curve of orders/s against the commit's size
        r.add("writers", f"{at}: orders", "orders/s", got.orders_per_s, note="+ intake rows")
        r.add("writers", f"{at}: commit mean", "ms", got.mean_ms)
        return
    r.add("writers", f"{at}: commits", "commits/s", got.commits_per_s)
    if got.per_commit > 1:
        r.add(
            "writers",
            f"{at}: orders",
            "orders/s",
            got.orders_per_s,
            note=f"{epo} events per order, + a consume batch's intake rows",
        )
    r.add("writers", f"{at}: commit mean", "ms", got.mean_ms)
    r.add("writers", f"{at}: commit p99", "ms", got.p99_ms)
    r.add("writers", f"{at}: writers' CPU", "% core", got.writers_cpu_pct)
    if got.postgres_cpu_pct is not None:
        r.add(
            "writers",
            f"{at}: PostgreSQL backends' CPU",
            "% core",
            got.postgres_cpu_pct,
            note="the writers' backends, /proc/<pid>/schedstat",
        )
    if got.postgres_cpu_s:
        r.add(
            "writers",
            f"{at}: PostgreSQL CPU per commit",
            "ms",
            1000 * got.postgres_cpu_s / got.commits,
            note=f"{1e6 * got.postgres_cpu_s / got.orders:.0f} us per order",
        )
    if got.postgres_runq_s:  # the machine is shared: the other work's share of the cores
        r.add(
            "writers",
            f"{at}: PostgreSQL backends runnable, not running",
            "% core",
            100 * got.postgres_runq_s / got.wall_s,
            note="waiting for a core (schedstat): the machine's other work",
        )
    if got.writers > got.databases and got.lock_wait_share:  # one writer never waits for it
        r.add(
            "writers",
            f"{at}: waiting for the events-table lock",
            "%",
            100 * got.lock_wait_share,
            note="of the backends' in-transaction samples (pg_stat_activity, 20 ms)",
        )


# ------------------------------------------------------------------- output
def ordered(r: Results) -> list[Any]:
    return sorted(r.figures.values(), key=lambda f: SECTIONS.index(f.section))


def render(r: Results) -> str:
    head = ("section", "figure", "value", "unit", "ceiling", "ratio", "target", "verdict")
    rows = [head]
    for f in ordered(r):
        spread = f.spread
        value = fmt(f.value)
        if spread and len(f.samples) > 1:
            value += f" ({fmt(spread[0])}-{fmt(spread[1])})"
        rows.append(
            (
                f.section,
                f.name,
                value,
                f.unit,
                fmt(f.ceiling),
                "-" if f.ratio is None else f"{f.ratio:.2f}",
                f.target.describe() if f.target else "",
                f.verdict,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(r: Results) -> str:
    out = [
        "| section | figure | value (min-max) | unit | ceiling | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in ordered(r):
        spread = f.spread
        value = fmt(f.value)
        if spread and len(f.samples) > 1:
            value += f" ({fmt(spread[0])}-{fmt(spread[1])})"
        verdict = f"**{f.verdict}**" if f.verdict == "misses" else f.verdict
        out.append(
            f"| {f.section} | {f.name} | {value} | {f.unit} | {fmt(f.ceiling)} | "
            f"{'-' if f.ratio is None else f'{f.ratio:.2f}'} | "
            f"{f.target.describe() if f.target else ''} | {verdict} |"
        )
    return "\n".join(out)


def write_json(
    path: Path, a: argparse.Namespace, info: dict[str, Any], r: Results, failed: list[str]
) -> None:
    sections: dict[str, dict[str, float]] = {}
    for f in r.figures.values():
        sections.setdefault(f.section, {})[f.name] = f.value
    doc = {
        "machine": info,
        "date": info["date"],
        "git_commit": info["git_commit"],
        "args": {
            "smoke": a.smoke,
            "orders": a.orders,
            "api_orders": a.api_orders,
            "clients": a.clients,
            "repeat": a.repeat,
            "levels": a.levels,
            "sections": a.sections,
        },
        "sections": sections,
        "figures": [f.to_json() for f in ordered(r)],
        "notes": r.notes,
        "markdown": markdown(r),
        "failed": failed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))

"""Replay: `projections rebuild` and `audit verify` over the intake run's database.

The figure is the engine's own function (`projections.maintenance.rebuild`,
`audit.verify`, exactly what the commands call) timed in the harness process, so that
interpreter start-up (~1 s) does not hide the rate; each command is also run once as a
subprocess (it must exit 0) and its wall time is recorded beside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from serviceorders.audit.verify import verify
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.projections.maintenance import rebuild, workers
from serviceorders.settings import Settings

from .common import engine_env, log, run_cli

SECTION = "replay"


def event_count(settings: Settings) -> int:
    db = open_read_db(settings)
    try:
        return int(db.fetchone("SELECT count(*) FROM serviceorders_events")[0])
    finally:
        db.close()


@contextlib.contextmanager
def sampled(out: Path | None) -> Iterator[None]:
    """py-spy on this process for the block (`--profile`)."""
    if out is None:
        yield
        return
    exe = shutil.which("py-spy")
    if not exe:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    spy = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(os.getpid()),
            "--format",
            "raw",
            "--rate",
            "100",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def run(database_url: str, cli: bool, profile: str | None = None) -> dict[str, float]:
    env = engine_env(database_url)
    settings = Settings.from_env(env)
    events = event_count(settings)
    out: dict[str, float] = {"events": events}
    db = open_read_db(settings)
    try:
        # As the command does by default: one process per core on PostgreSQL, this one
        # and workers it starts (projections/parallel.py); 0 is the single-process rebuild.
        out["rebuild_workers"] = workers(db)
        with sampled(Path(profile) / "rebuild.txt" if profile else None):
            t = time.perf_counter()
            rebuild(db, event_mapper())
            out["rebuild_events_per_s"] = events / (time.perf_counter() - t)
        t = time.perf_counter()
        report = verify(db)
        out["verify_events_per_s"] = report.events / (time.perf_counter() - t)
        if not report.ok:
            raise RuntimeError(f"audit verify found problems: {report.lines()[:5]}")
    finally:
        db.close()
    if cli:
        t = time.perf_counter()
        run_cli(["projections", "rebuild"], env)
        out["rebuild_cli_s"] = time.perf_counter() - t
        t = time.perf_counter()
        run_cli(["audit", "verify"], env)
        out["verify_cli_s"] = time.perf_counter() - t
    log(
        f"replay over {events:,} events: rebuild {out['rebuild_events_per_s']:,.0f} events/s "
        f"({int(out['rebuild_workers'])} processes; 0: one, unsplit), "
        f"audit verify {out['verify_events_per_s']:,.0f} events/s"
    )
    return out

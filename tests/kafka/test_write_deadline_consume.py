"""`serviceorders consume` and a stuck write, on PostgreSQL (issue 15, finding 1;
docs/reliability.md, "Timeouts" and "Stopping").

A trigger in the test database makes the insert of a marked order sleep 60 s inside the
transaction that holds the events-table lock. The intake's write fails within
SERVICEORDERS_DB_WRITE_TIMEOUT and releases the lock (the batch is read again); SIGTERM
while the write is stuck stops the process within its documented deadline, nothing written.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from builders import wait_for
from serviceorders.bootstrap import init_database
from serviceorders.consumers.broker import EmbeddedBroker
from serviceorders.consumers.sample import create_event, order
from serviceorders.settings import Settings

from .conftest import kafka_env, produce, spawn_consume

pytestmark = pytest.mark.kafka

WRITE_TIMEOUT = 3
MARKER = "slow-write-marker"  # the slow_marked_inserts fixture (tests/conftest.py) stalls on it


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_sigterm_stops_consume_within_its_deadline_during_a_stuck_write(
    kafka_settings: Settings,
    broker: EmbeddedBroker,
    pg_database: Any,
    slow_marked_inserts: None,
    tmp_path: Path,
) -> None:
    init_database(kafka_settings)
    body = order("slow-1", random.Random(1))
    body["category"] = MARKER  # not sealed (the description is, since issue 19)
    produce(kafka_settings, [(b"slow-1", create_event("evt-slow-1", body))])
    log = tmp_path / "consume.log"
    env = kafka_env(kafka_settings, broker, SERVICEORDERS_DB_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    process = spawn_consume(env, log)
    try:
        wait_for(
            pg_database.events_lock_holders,
            timeout=60,
            what="the intake's write to take the lock",
        )
        # The stuck write times out and the batch is read again (it times out again).
        wait_for(
            lambda: "batch not written (WriteTimeout" in log.read_text(errors="replace"),
            timeout=WRITE_TIMEOUT + 10,
            what="the write to time out",
        )
        wait_for(pg_database.events_lock_holders, timeout=30, what="the batch to be written again")
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        # Documented deadline: the write timeout, plus the commit and leaving the group.
        try:
            code = process.wait(WRITE_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(
                "consume did not stop within its deadline after SIGTERM:\n"
                + log.read_text(errors="replace")
            )
        assert time.monotonic() - stopped < WRITE_TIMEOUT + 10
        assert code == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert pg_database.events_lock_holders() == []
    with pg_database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM serviceorders_events").fetchone()[0] == 0

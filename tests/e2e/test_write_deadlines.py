"""A stuck write against a real `serviceorders api` process on PostgreSQL (issue 15,
finding 1; docs/reliability.md, "Timeouts" and "Stopping").

The insert is made slow independently of any header: a trigger in the test database sleeps
60 s when an event carries a marker, inside the transaction that holds the events-table lock.
The write fails with a TMF Error 503 within SERVICEORDERS_DB_WRITE_TIMEOUT (here 3 s), the
lock is released and another client's write goes through; SIGTERM during such a write stops
the process within its documented deadline (the write timeout plus 2 s of grace, plus the
time to exit).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from builders import order_body

EXE = shutil.which("serviceorders")
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
WRITE_TIMEOUT = 3
MARKER = "slow-write-marker"  # the slow_marked_inserts fixture (tests/conftest.py) stalls on it


@pytest.fixture
def server(
    pg_database: Any,
    pg_cleaner: Callable[[], None],
    slow_marked_inserts: None,
    start_api: Callable[..., Any],
) -> tuple[str, subprocess.Popen[bytes], Callable[[], str]]:
    pg_cleaner()
    api = start_api(
        pg_database.url(),
        env={"SERVICEORDERS_DB_WRITE_TIMEOUT": str(WRITE_TIMEOUT)},
        kill_at_end=True,
    )
    return api.base, api.process, api.output


def _events(pg_database: Any) -> int:
    with pg_database.connect() as conn:
        return conn.execute("SELECT count(*) FROM serviceorders_events").fetchone()[0]


def _post_in_background(base: str, body: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def post() -> None:
        try:
            answers.append(httpx.post(base + ORDERS, json=body, timeout=60))
        except httpx.HTTPError as e:
            answers.append(e)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, answers


def test_a_stuck_write_answers_503_within_the_write_timeout_and_others_proceed(
    server: tuple[str, subprocess.Popen[bytes], Callable[[], str]], pg_database: Any
) -> None:
    base, _, output = server
    started = time.monotonic()
    stuck, answers = _post_in_background(base, order_body(str(uuid.uuid4()), category=MARKER))
    _wait_for_lock(pg_database)
    # Another client writes meanwhile: it waits for the lock, then goes through.
    other = httpx.post(
        base + ORDERS, json=order_body(str(uuid.uuid4()), "another client"), timeout=60
    )
    stuck.join(30)
    assert answers, "the stuck write never answered"
    answer = answers[0]
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503, answer.text
    assert (
        answer.json()["code"] == "write_timeout"
        and "nothing was written" in answer.json()["message"]
    )
    assert other.status_code == 201, other.text
    # The write timeout (3 s) bounds both: neither the trigger's 60 s nor retries of it.
    assert time.monotonic() - started < WRITE_TIMEOUT + 4, output()
    assert pg_database.events_lock_holders() == []
    assert _events(pg_database) == 2  # the other order's OrderDrafted + OrderSubmitted


def _wait_for_lock(pg_database: Any) -> None:
    deadline = time.monotonic() + 10
    while not pg_database.events_lock_holders():
        assert time.monotonic() < deadline, "the marked write never took the lock"
        time.sleep(0.05)


def test_sigterm_during_a_stuck_write_stops_the_process_within_its_deadline(
    server: tuple[str, subprocess.Popen[bytes], Callable[[], str]], pg_database: Any
) -> None:
    base, process, output = server
    _stuck, _answers = _post_in_background(base, order_body(str(uuid.uuid4()), category=MARKER))
    _wait_for_lock(pg_database)
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    # Documented deadline (docs/reliability.md, "Stopping"): the write timeout plus 2 s of
    # grace; a few more seconds for the process to exit on a loaded machine.
    try:
        code = process.wait(WRITE_TIMEOUT + 2 + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"api did not stop within its deadline after SIGTERM:\n{output()}")
    assert time.monotonic() - stopped < WRITE_TIMEOUT + 2 + 5
    assert code == 0, output()
    assert pg_database.events_lock_holders() == []
    assert _events(pg_database) == 0

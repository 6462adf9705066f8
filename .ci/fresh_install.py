#!/usr/bin/env python3
"""The fresh-install check: does the README's first command work on a fresh machine, with the
runtime dependencies alone? `.ci/run` runs it before the test suite; any failure fails CI with
the first error line.

Two paths, each in its own throwaway virtualenv, on a `git clone` of this repository's
committed HEAD (uncommitted changes are not seen; --worktree copies the working tree instead):

readme  The README's first command (the first line of the first code block under
        "## Two commands", read from the README, never copied here), split at its last `&&`:
        the install part runs as written in the clone, with PIP_REQUIRE_VIRTUALENV=1 (pip
        refuses to install outside a virtualenv, as a PEP 668 system Python does); the test
        extra's own packages must not be there. The serve part then runs from an empty
        directory with `--port P --kafka-port K` appended (two free loopback ports) and none
        of the engine's settings in the environment (SQLite in that directory, the embedded
        broker). The check waits for /ready, creates an order through the TMF641 API and
        reads it back, publishes sample traffic to the broker address serve printed
        (`serviceorders publish-sample --count 5`), waits for those orders in the review
        queue (GET /api/v1/reviewQueue), stops serve with SIGTERM and wants it gone, broker
        included, within 10 s.
wheel   As the Dockerfile does: `pip wheel --constraint requirements.lock` of the clone, then a
        second virtualenv installs serviceorders from those wheels only (--no-index), imports
        every module of the package (a runtime import that only an extra provides fails here),
        checks the wheel's license metadata and py.typed, and runs `serviceorders --help`,
        `db init` and `demo` on SQLite in an empty directory.

Usage:
    python3 .ci/fresh_install.py                       # both paths (what CI runs)
    python3 .ci/fresh_install.py --steps wheel         # one path
    python3 .ci/fresh_install.py --uninstall httpx     # pip uninstall NAME from the readme
                                                       # path's virtualenv after the install
                                                       # (the check must then fail)
    python3 .ci/fresh_install.py --print-command test  # the README's test command (.ci/run)
    python3 .ci/fresh_install.py --print-command test-install
                                     # its install part, up to `&& python3 -m pytest`: .ci/run
                                     # runs the static tools in that virtualenv before the suite

Exit status 0 when every step passed; 1 with `fresh install FAILED at <step>: <first error
line>` as the first line on stderr, followed by the failing step's output.
Runs on the system python3 with the standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ORDER_PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"
STOP_WITHIN = 10.0  # seconds serve may take to exit after SIGTERM
# Environment the engine or pip would read: the check runs on the defaults, like a new user.
SCRUB_PREFIXES = ("SERVICEORDERS_", "KAFKA_")
SCRUB = {
    "DATABASE_URL",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
    "PIP_CONSTRAINT",
    "PIP_REQUIREMENT",
}


class CheckFailed(Exception):
    def __init__(self, step: str, line: str, output: str = "") -> None:
        super().__init__(f"{step}: {line}")
        self.step, self.line, self.output = step, line, output


def first_error(text: str) -> str:
    """The line that says what went wrong: the first exception line (`ModuleNotFoundError:
    No module named 'httpx'`), else the first line at an error level (`ERROR: ...`,
    `error: ...`, a log record at ERROR or CRITICAL), else the last line mentioning a failure
    (earlier ones may be the engine's ordinary INFO records), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    firsts = (
        r"^([A-Za-z_][\w.]*)?(Error|Exception)(: |:?$)",
        r"^(?i:error|fatal|critical)\b|\b(ERROR|CRITICAL)\b",
    )
    for pattern in firsts:
        for line in lines:
            if re.search(pattern, line):
                return line
    for line in reversed(lines):
        if re.search(r"(?i)\b(failed|refused|not found|no module named|traceback)\b", line):
            return line
    return lines[-1] if lines else "(no output)"


def say(message: str) -> None:
    print(f"fresh install: {message}", flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in SCRUB and not k.startswith(SCRUB_PREFIXES)
    }
    env["PIP_REQUIRE_VIRTUALENV"] = "1"  # pip refuses to install outside a virtualenv
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(
    step: str,
    argv: list[str] | str,
    cwd: Path,
    timeout: float = 900,
    env: dict[str, str] | None = None,
    shell: bool = False,
) -> str:
    """Run a command; its combined output, or CheckFailed with its first error line."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env or clean_env(),
            shell=shell,
            executable="/bin/bash" if shell else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        out = e.output.decode(errors="replace") if isinstance(e.output, bytes) else e.output
        raise CheckFailed(step, f"still running after {timeout:.0f} s", out or "") from None
    if done.returncode != 0:
        raise CheckFailed(
            step, f"{first_error(done.stdout)} (exit status {done.returncode})", done.stdout
        )
    return done.stdout


# --------------------------------------------------------------------------- the README
def readme_commands(readme: Path) -> tuple[str, str]:
    """(first command, test command): the first and second command lines of the first code
    block under "## Two commands" (comments dropped, backslash continuations joined)."""
    text = readme.read_text(encoding="utf-8")
    section = re.search(r"^## Two commands\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not section:
        raise CheckFailed("README", "no '## Two commands' section in README.md")
    block = re.search(r"^```[a-z]*\n(.*?)^```", section.group(1), re.M | re.S)
    if not block:
        raise CheckFailed("README", "no code block under '## Two commands'")
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    commands = [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if len(commands) != 2:
        raise CheckFailed("README", f"'## Two commands' holds {len(commands)} commands, not 2")
    return commands[0], commands[1]


def split_first_command(command: str) -> tuple[str, list[str]]:
    """The install part (a shell command line) and the serve part's argv."""
    install, sep, serve = command.rpartition("&&")
    argv = shlex.split(serve)
    if not sep or len(argv) < 2 or Path(argv[0]).name != "serviceorders" or argv[1] != "serve":
        raise CheckFailed(
            "README",
            f"the first command does not end with `&& <venv>/bin/serviceorders serve`: {command!r}",
        )
    if "/" not in argv[0]:
        raise CheckFailed(
            "README",
            "the first command must call serviceorders by its path in "
            f"the virtualenv it creates (e.g. .venv/bin/serviceorders): {argv[0]!r}",
        )
    return install.strip(), argv


def split_test_command(command: str) -> str:
    """The test command's install part: everything before its last `&& python3 -m pytest`
    (.ci/run installs, runs the static tools in that virtualenv, then the whole command)."""
    install, sep, pytest = command.rpartition("&&")
    if not sep or pytest.strip() != "python3 -m pytest":
        raise CheckFailed(
            "README", f"the test command does not end with `&& python3 -m pytest`: {command!r}"
        )
    return install.strip()


# --------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def venv_python(bin_dir: Path) -> Path:
    return bin_dir / "python"


def installed_names(python: Path) -> set[str]:
    out = run(
        "list packages",
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))",
        ],
        cwd=python.parent,
    )
    return {normalize(n) for n in json.loads(out.strip().splitlines()[-1])}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return normalize(match.group(1)) if match else ""


def test_only_packages(clone: Path) -> set[str]:
    """The test extra's own packages: in `test`, not pinned in requirements.lock (which holds
    the runtime dependencies and the embedded extra, transitive ones included)."""
    project = tomllib.loads((clone / "pyproject.toml").read_text("utf-8"))["project"]
    test = {requirement_name(r) for r in project["optional-dependencies"].get("test", [])}
    lock = clone / "requirements.lock"
    pinned = (
        {
            requirement_name(line)
            for line in lock.read_text("utf-8").splitlines()
            if line and not line.startswith((" ", "#", "-"))
        }
        if lock.exists()
        else set()
    )
    return test - pinned


def sample_order(external_id: str) -> dict[str, Any]:
    """A valid TMF641 ServiceOrder_Create of the shipped catalog: the example /docs fills in
    (api/order_example.json), under `external_id`."""
    example = json.loads((ROOT / "api" / "order_example.json").read_text(encoding="utf-8"))
    return {**example, "externalId": external_id}


@contextlib.contextmanager
def serving(argv: list[str], cwd: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """serve in its own session; whatever happens, nothing of it outlives the check."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None or _group_alive(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(
    step: str,
    what: str,
    timeout: float,
    probe: Any,
    process: subprocess.Popen[bytes],
    log_path: Path,
) -> None:
    """Call probe() until it returns True; fail when serve exits or time is up."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = log_path.read_text(errors="replace")
            raise CheckFailed(
                step, f"serve exited with status {process.returncode}: {first_error(out)}", out
            )
        try:
            last = probe()
        except OSError as e:  # not listening yet, reset, timeout
            last = e
        if last is True:
            return
        time.sleep(0.5)
    out = log_path.read_text(errors="replace")
    raise CheckFailed(step, f"{what} not seen within {timeout:.0f} s (last: {last!r:.200})", out)


# --------------------------------------------------------------------------- readme path
def check_readme(clone: Path, work: Path, uninstall: list[str]) -> None:
    first, _ = readme_commands(clone / "README.md")
    install, serve_argv = split_first_command(first)
    say(f"README's first command: {first}")
    say(f"install part, in the clone: {install}")
    run("install (README's first command)", install, cwd=clone, shell=True)

    executable = (clone / serve_argv[0]).resolve()
    if not executable.exists():
        raise CheckFailed(
            "install (README's first command)", f"the install part did not create {serve_argv[0]}"
        )
    python = venv_python(executable.parent)
    present = installed_names(python) & test_only_packages(clone)
    if present:
        raise CheckFailed(
            "install (README's first command)",
            f"the first command installs test-only packages: {sorted(present)}",
        )
    for name in uninstall:
        say(f"uninstalling {name} from the virtualenv (--uninstall)")
        run(f"pip uninstall {name}", [str(python), "-m", "pip", "uninstall", "-y", name], cwd=clone)

    empty = work / "serve-here"
    empty.mkdir()
    port, kafka_port = free_port(), free_port()
    argv = [str(executable), *serve_argv[1:], "--port", str(port), "--kafka-port", str(kafka_port)]
    say(f"serve part, from the empty directory {empty}: {shlex.join(argv)}")
    log_path = work / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with serving(argv, empty, log_path) as process:

        def ready() -> Any:
            status, _ = http("GET", f"{base}/ready")
            return status == 200

        wait_for("serve: /ready", "/ready answering 200", 120, ready, process, log_path)
        say(f"serve is ready on {base}")

        external_id = f"FRESH-{uuid.uuid4().hex[:8]}"
        status, created = http("POST", f"{base}{ORDER_PATH}", sample_order(external_id))
        if status != 201 or not isinstance(created, dict) or "id" not in created:
            raise CheckFailed(
                "TMF641 POST serviceOrder",
                f"status {status}: {created!r:.300}",
                log_path.read_text(errors="replace"),
            )
        status, read = http("GET", f"{base}{ORDER_PATH}/{created['id']}")
        if status != 200 or not isinstance(read, dict) or read.get("externalId") != external_id:
            raise CheckFailed("TMF641 GET serviceOrder", f"status {status}: {read!r:.300}")
        say(
            f"created order {created['id']} ({external_id}) through TMF641 and read it "
            f"back: {read.get('state')}"
        )

        printed = log_path.read_text(errors="replace")
        brokers = [
            m.group(1)
            for line in printed.splitlines()
            if "broker" in line.lower()
            for m in [re.search(r"(127\.0\.0\.1:\d+)", line)]
            if m
        ]
        if not brokers:
            raise CheckFailed(
                "serve: embedded broker",
                "serve printed no embedded broker "
                "address (127.0.0.1:PORT on a line naming the broker)",
                printed,
            )
        prefix = f"FRESH-{uuid.uuid4().hex[:8]}"
        env = clean_env(KAFKA_BOOTSTRAP_SERVERS=brokers[0])
        sample = [str(executable), "publish-sample", "--count", "5", "--prefix", prefix]
        say(f"KAFKA_BOOTSTRAP_SERVERS={brokers[0]} {shlex.join(sample[1:])}")
        run("publish-sample", sample, cwd=empty, env=env, timeout=120)
        wanted = {f"{prefix}-{n:06d}" for n in range(5)}

        def queued() -> Any:
            status, body = http("GET", f"{base}/api/v1/reviewQueue?limit=1000")
            seen = (
                {e.get("externalId") for e in body}
                if status == 200 and isinstance(body, list)
                else set()
            )
            return True if wanted <= seen else (status, sorted(wanted - seen))

        wait_for(
            "review queue",
            f"the 5 published orders ({prefix}-*) in the review queue",
            120,
            queued,
            process,
            log_path,
        )
        say(f"the 5 published orders are in the review queue ({prefix}-000000..4)")

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            raise CheckFailed(
                "SIGTERM",
                f"serve still running {STOP_WITHIN:.0f} s after SIGTERM",
                log_path.read_text(errors="replace"),
            ) from None
        took = time.monotonic() - started
        while _group_alive(process.pid) and time.monotonic() - started < STOP_WITHIN:
            time.sleep(0.1)
        if _group_alive(process.pid) or listening(kafka_port) or listening(port):
            raise CheckFailed(
                "SIGTERM",
                f"serve exited but left a process or port behind (ports {port}, {kafka_port})",
                log_path.read_text(errors="replace"),
            )
        if code not in (0, -signal.SIGTERM):
            out = log_path.read_text(errors="replace")
            raise CheckFailed(
                "SIGTERM", f"serve exited with status {code}: {first_error(out)}", out
            )
        say(f"SIGTERM: serve and its broker stopped in {took:.1f} s (status {code})")


# --------------------------------------------------------------------------- wheel path
CHECK_DIST = """
import importlib, importlib.metadata as md, pkgutil, sys
import serviceorders
dist = md.distribution("serviceorders")
assert dist.metadata["License-Expression"] == "Apache-2.0", dist.metadata["License-Expression"]
files = {str(f) for f in dist.files or ()}
assert any(f.endswith("LICENSE") for f in files), "no LICENSE in the wheel"
assert "serviceorders/py.typed" in files, "no serviceorders/py.typed in the wheel"
names = [m.name for m in pkgutil.walk_packages(serviceorders.__path__, "serviceorders.")
         if not m.name.endswith(".__main__")]  # __main__ runs the CLI
for name in names:
    importlib.import_module(name)
print(f"imported {len(names)} modules; License-Expression Apache-2.0; LICENSE and py.typed")
"""


def check_wheel(clone: Path, work: Path) -> None:
    venv = work / "wheel-venv"
    wheels = work / "wheels"
    run("wheel: venv", [sys.executable, "-m", "venv", str(venv)], cwd=work)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    constraint = (
        ["--constraint", "requirements.lock"] if (clone / "requirements.lock").exists() else []
    )
    if not constraint:
        raise CheckFailed("wheel: pip wheel", "no requirements.lock in the clone")
    say("pip wheel --constraint requirements.lock --wheel-dir WHEELS . (as the Dockerfile)")
    run(
        "wheel: pip wheel",
        [*pip, "wheel", "-q", *constraint, "--wheel-dir", str(wheels), "."],
        cwd=clone,
    )
    say("pip install --no-index --find-links WHEELS serviceorders (a second virtualenv)")
    run(
        "wheel: pip install",
        [*pip, "install", "-q", "--no-index", "--find-links", str(wheels), "serviceorders"],
        cwd=work,
    )
    empty = work / "wheel-here"
    empty.mkdir()
    out = run(
        "wheel: import every module", [str(venv / "bin" / "python"), "-c", CHECK_DIST], cwd=empty
    )
    say(f"wheel: {out.strip().splitlines()[-1]}")
    exe = str(venv / "bin" / "serviceorders")
    out = run("wheel: serviceorders --help", [exe, "--help"], cwd=empty, timeout=120)
    if "Usage:" not in out or "serve" not in out:
        raise CheckFailed("wheel: serviceorders --help", "no usage listing serve", out)
    out = run("wheel: serviceorders db init", [exe, "db", "init"], cwd=empty, timeout=120)
    if not (empty / "serviceorders.db").exists():
        raise CheckFailed("wheel: serviceorders db init", "no ./serviceorders.db created", out)
    out = run("wheel: serviceorders demo", [exe, "demo"], cwd=empty, timeout=300)
    if "OrderCompleted" not in out:
        raise CheckFailed("wheel: serviceorders demo", "the demo order did not complete", out)
    say("wheel: --help, db init and demo ran on SQLite in an empty directory")


def copy_worktree(source: Path, clone: Path) -> None:
    listed = run(
        "git ls-files",
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
    )
    for name in filter(None, listed.split("\0")):
        src = source / name
        if src.is_file():  # a deleted but still tracked file is skipped
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", default="readme,wheel", help="comma-separated: readme, wheel (default: both)"
    )
    parser.add_argument(
        "--uninstall",
        action="append",
        default=[],
        metavar="NAME",
        help="pip uninstall NAME from the readme path's virtualenv after "
        "the install part (repeatable)",
    )
    parser.add_argument(
        "--source", type=Path, default=ROOT, help="the repository to clone (default: this one)"
    )
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="copy the working tree (tracked and untracked files git does not "
        "ignore, uncommitted changes included) instead of cloning HEAD",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--print-command",
        choices=("first", "test", "test-install"),
        help="print the README's first or test command, or the test command's install part "
        "(up to its last `&&`), and exit",
    )
    args = parser.parse_args(argv)

    try:
        if args.print_command:
            first, test = readme_commands(args.source / "README.md")
            chosen = {"first": first, "test": test, "test-install": None}[args.print_command]
            print(chosen if chosen is not None else split_test_command(test))
            return 0
        steps = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = set(steps) - {"readme", "wheel"}
        if unknown or not steps:
            parser.error(f"--steps: unknown {sorted(unknown)}; choose readme, wheel")
        work = Path(tempfile.mkdtemp(prefix="fresh-install-"))
        started = time.monotonic()
        try:
            clone = work / "clone"
            if args.worktree:
                say(f"copying the working tree of {args.source} into {clone}")
                copy_worktree(args.source, clone)
            else:
                say(f"git clone {args.source} (committed HEAD) into {clone}")
                run("git clone", ["git", "clone", "-q", str(args.source), str(clone)], cwd=work)
            if "readme" in steps:
                check_readme(clone, work, args.uninstall)
            if "wheel" in steps:
                check_wheel(clone, work)
        finally:
            if args.keep:
                say(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    except CheckFailed as e:
        print(f"fresh install FAILED at {e.step}: {e.line}", file=sys.stderr, flush=True)
        if e.output:
            tail = "\n".join(e.output.rstrip().splitlines()[-40:])
            print(f"--- output of {e.step} (last 40 lines)\n{tail}", file=sys.stderr)
        return 1
    say(f"OK ({', '.join(steps)}) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

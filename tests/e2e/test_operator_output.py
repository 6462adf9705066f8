"""Operator output tells the truth: `projections verify` on read models behind the log, and
the no-keys warning of `api` saying how to try decisions alone. Real processes, SQLite."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXE = shutil.which("serviceorders")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.startswith("SERVICEORDERS_")
    }
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'so.db'}", **extra}


def run(*args: str, tmp_path: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    assert EXE, "the serviceorders console script is not installed"
    done = subprocess.run(
        [EXE, *args],
        env=env_for(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == expect, (
        f"serviceorders {' '.join(args)} exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done


def test_verify_says_when_read_models_are_behind_the_log(tmp_path: Path) -> None:
    run("db", "init", tmp_path=tmp_path)
    order = run(
        "order", "--actor", "alice", "draft", "--external-id", "V-1", tmp_path=tmp_path
    ).stdout.strip()
    run("order", "--actor", "alice", "note", order, "first", tmp_path=tmp_path)
    lag = {
        s["name"]: s["lag"]
        for s in json.loads(run("projections", "status", "--json", tmp_path=tmp_path).stdout)
    }
    assert set(lag.values()) == {2}  # no projector has run: both events unapplied

    behind = run("projections", "verify", tmp_path=tmp_path, expect=1)
    lines = behind.stdout.splitlines()
    assert len(lines) == len(lag)
    for name in lag:
        assert (
            f"{name}: matches a rebuild up to position 0, but is behind the log by 2 "
            f"event(s)" in lines
        )
    assert "OK" not in behind.stdout
    assert "run `serviceorders project --once`" in behind.stderr

    run("project", "--once", tmp_path=tmp_path)
    caught_up = run("projections", "verify", tmp_path=tmp_path)
    assert sorted(caught_up.stdout.splitlines()) == sorted(f"{name}: OK" for name in lag)
    assert "behind" not in caught_up.stderr


def _first_lines(tmp_path: Path, wanted: str, **extra: str) -> str:
    """Start `api` without keys, return its stderr up to the line containing `wanted`
    (at most 60 s), then stop it with SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [EXE, "api", "--port", str(port)],
        env=env_for(tmp_path, **extra),
        cwd=tmp_path,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert server.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in server.stderr],  # type: ignore[union-attr]
        daemon=True,
    ).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(wanted in line for line in seen):
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                assert server.poll() is None, "".join(seen)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return "".join(seen)


def test_the_no_keys_warning_says_how_to_try_decisions_alone(tmp_path: Path) -> None:
    run("db", "init", tmp_path=tmp_path)
    said = _first_lines(tmp_path, "no API keys configured")
    warning = next(line for line in said.splitlines() if "no API keys configured" in line)
    assert "'anonymous'" in warning and "Four-eyes" in warning
    assert "SERVICEORDERS_FOUR_EYES=no" in warning
    assert "SERVICEORDERS_API_KEYS=alice:agent:" in warning and "bob:manager:" in warning

    off = _first_lines(tmp_path, "no API keys configured", SERVICEORDERS_FOUR_EYES="no")
    warning = next(line for line in off.splitlines() if "no API keys configured" in line)
    assert "FOUR_EYES" not in warning  # nothing stands in the way: nothing to explain

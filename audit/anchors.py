"""Anchors outside the database (docs/audit.md, "Anchors"): every fresh checkpoint is also
appended, as one JSON line `{"type": "checkpoint", ...}` (the export's checkpoint line
without "changes"), to a place the operator chooses (SERVICEORDERS_AUDIT_ANCHOR):

- `file:/path`: the file is opened in append mode only (never rewritten); each write is
  flushed and fsync'ed before the checkpoint counts as anchored;
- `kafka:<topic>`: one record per checkpoint (key: the seq, value: the JSON line) on
  partition 0, produced with acks=all and one request in flight (so in seq order), and
  waited for; the topic's retention is the operator's to set (infinite).

The anchor keeps every checkpoint from the first one it received on: `catch_up` reads the
anchor's newest seq and appends the stored checkpoints after it, in seq order, so the
checkpoints missed while the anchor could not be written are appended at the next round.
`audit verify --anchor` reads it back (`read`) and compares it with the stored checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from serviceorders.audit.checkpoints import Checkpoint, load_checkpoints
from serviceorders.settings import parse_anchor
from serviceorders.storage.db import ReadDb

# How long one Kafka call of the anchor may wait (metadata, the acknowledgement, a fetch).
KAFKA_TIMEOUT_SECONDS = 10.0


class AnchorError(Exception):
    """The anchor cannot be written or read; `seqs` are the checkpoints not anchored."""

    def __init__(self, message: str, seqs: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.seqs = tuple(seqs)


def anchor_line(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as the anchor keeps it: one JSON line, "\\n"-terminated."""
    return orjson.dumps({"type": "checkpoint", **checkpoint.to_json()}) + b"\n"


def checkpoint_lines(data: bytes) -> list[dict[str, Any]]:
    """The checkpoint objects of JSON lines. A line that is not JSON (the torn end of a
    write the disk refused; the next write starts on a line of its own) is skipped."""
    found = []
    for line in data.splitlines():
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and value.get("type") == "checkpoint":
            found.append(value)
    return found


def _newest(lines: list[dict[str, Any]]) -> int | None:
    seqs = [int(d["seq"]) for d in lines if isinstance(d.get("seq"), int)]
    return max(seqs) if seqs else None


class Anchor:
    """One anchor: `last_seq`, `append`, `read` per kind; `catch_up` for all."""

    description = "anchor"

    def __init__(self) -> None:
        self._last: int | None = None  # the anchor's newest seq, when known
        self._known = False
        self._first: int | None = None  # the first checkpoint handed to this process's anchor

    def last_seq(self) -> int | None:
        """The newest seq the anchor holds (None: empty)."""
        raise NotImplementedError

    def append(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Append these checkpoints, in order, durably; raises on failure."""
        raise NotImplementedError

    def read(self) -> list[dict[str, Any]]:
        """Every checkpoint line the anchor holds, from its start."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the anchor holds open."""

    def catch_up(self, db: ReadDb, latest: Checkpoint) -> list[int]:
        """Append `latest` (when fresh) and every stored checkpoint after the anchor's
        newest up to it; returns the seqs appended. An empty anchor starts at the first
        fresh checkpoint this process handed it. AnchorError naming the seqs not anchored
        when it cannot be read or written (the next call tries them again), or when it
        holds less than this process appended to it (truncated or replaced: never
        re-filled silently)."""
        if self._first is None and latest.fresh:
            self._first = latest.seq
        confirmed = self._last  # the newest seq this process knows the anchor holds
        start = confirmed + 1 if confirmed is not None else self._first
        pending = list(range(start, latest.seq + 1)) if start is not None else [latest.seq]
        if not self._known:
            try:
                last = self.last_seq()
            except Exception as e:
                raise AnchorError(f"{self.description}: {_reason(e)}", pending) from e
            if confirmed is not None and (last is None or last < confirmed):
                raise AnchorError(
                    f"{self.description}: holds checkpoints up to "
                    f"{'none' if last is None else last}, although {confirmed} was appended "
                    "to it: truncated or replaced",
                    pending,
                )
            self._last, self._known = last, True
        last = self._last
        if last is not None and last >= latest.seq:
            return []
        if last is None and self._first is None:
            return []  # nothing fresh handed to an empty anchor yet
        start = last + 1 if last is not None else self._first
        assert start is not None
        if start == latest.seq:
            todo = [latest]
        else:
            todo = [c for c in load_checkpoints(db) if start <= c.seq <= latest.seq]
        try:
            self.append(todo)
        except Exception as e:
            self._known = False  # read the anchor again: part of the write may have landed
            raise AnchorError(f"{self.description}: {_reason(e)}", [c.seq for c in todo]) from e
        self._last = latest.seq
        return [c.seq for c in todo]


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    name, text = type(error).__name__, str(error)
    return text if text.startswith(name) else f"{name}: {text}"


class FileAnchor(Anchor):
    """`file:/path`: JSON lines appended (O_APPEND), flushed and fsync'ed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.description = f"anchor file {path}"

    def last_seq(self) -> int | None:
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                window = 64 * 1024
                while True:  # the newest checkpoint line, read from the end
                    start = max(0, size - window)
                    f.seek(start)
                    data = f.read(size - start)
                    if start > 0:
                        data = data.split(b"\n", 1)[-1]  # the first line may be cut
                    newest = _newest(checkpoint_lines(data))
                    if newest is not None or start == 0:
                        return newest
                    window *= 4
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise  # the anchor's storage is not there (unmounted?): not an empty anchor
            return None

    def append(self, checkpoints: Sequence[Checkpoint]) -> None:
        data = b"".join(anchor_line(c) for c in checkpoints)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with self.path.open("rb") as f:  # a torn last line stays on its own
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's directory entry, durable too
            with contextlib.suppress(OSError):
                dirfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dirfd)
                finally:
                    os.close(dirfd)

    def read(self) -> list[dict[str, Any]]:
        try:
            return checkpoint_lines(self.path.read_bytes())
        except OSError as e:
            raise AnchorError(f"{self.description}: {_reason(e)}") from e


class KafkaAnchor(Anchor):
    """`kafka:<topic>`: one record per checkpoint on partition 0 (key: the seq), acks=all,
    one request in flight; `options` are the engine's Kafka client options (bootstrap
    servers, TLS, SASL)."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        super().__init__()
        self.topic = topic
        self.options = options
        self.description = f"anchor topic {topic}"
        self._producer: Any = None

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        timeout = int(KAFKA_TIMEOUT_SECONDS * 1000)
        return KafkaConsumer(
            enable_auto_commit=False,
            bootstrap_timeout_ms=timeout,
            request_timeout_ms=timeout + 1000,
            **self.options,
        )

    def _partitions(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            return []
        return [TopicPartition(self.topic, p) for p in sorted(parts)]

    def _records(self, tail: int | None) -> list[dict[str, Any]]:
        """The checkpoint lines of every partition, from its start (or its last `tail`
        records) up to its end offset as of now."""
        consumer = self._consumer()
        try:
            tps = self._partitions(consumer)
            if not tps:
                if tail is None:  # verifying against a topic that is not there
                    raise AnchorError(f"{self.description}: no such topic")
                return []  # an anchor not written yet
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            starts = consumer.beginning_offsets(tps)
            todo = {}
            for tp in tps:
                start = starts[tp] if tail is None else max(starts[tp], ends[tp] - tail)
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    todo[tp] = ends[tp]
            data: list[bytes] = []
            deadline = time.monotonic() + KAFKA_TIMEOUT_SECONDS
            while todo:
                if time.monotonic() > deadline:
                    raise AnchorError(
                        f"{self.description}: could not read up to its end offset in "
                        f"{KAFKA_TIMEOUT_SECONDS:.0f} s"
                    )
                for tp, records in consumer.poll(timeout_ms=500).items():
                    data += [r.value for r in records if r.offset < ends.get(tp, 0) and r.value]
                    deadline = time.monotonic() + KAFKA_TIMEOUT_SECONDS  # progress
                for tp in list(todo):
                    if consumer.position(tp) >= todo[tp]:
                        del todo[tp]
            return checkpoint_lines(b"\n".join(data))
        finally:
            consumer.close()

    def last_seq(self) -> int | None:
        return _newest(self._records(tail=16))

    def read(self) -> list[dict[str, Any]]:
        try:
            return self._records(tail=None)
        except AnchorError:
            raise
        except Exception as e:
            raise AnchorError(f"{self.description}: {_reason(e)}") from e

    def append(self, checkpoints: Sequence[Checkpoint]) -> None:
        if self._producer is None:
            from kafka import KafkaProducer

            timeout = int(KAFKA_TIMEOUT_SECONDS * 1000)
            self._producer = KafkaProducer(
                acks="all",
                max_in_flight_requests_per_connection=1,  # in seq order, retries included
                max_block_ms=timeout,
                bootstrap_timeout_ms=timeout,
                request_timeout_ms=timeout,
                **self.options,
            )
        try:
            futures = [
                self._producer.send(
                    self.topic, key=str(c.seq).encode(), value=anchor_line(c), partition=0
                )
                for c in checkpoints
            ]
            self._producer.flush(timeout=KAFKA_TIMEOUT_SECONDS)
            for future in futures:
                future.get(timeout=KAFKA_TIMEOUT_SECONDS)
        except Exception:
            self.close()  # a new producer next time
            raise

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=5)


def open_anchor(value: str, kafka_options: dict[str, Any] | None = None) -> Anchor:
    """The anchor SERVICEORDERS_AUDIT_ANCHOR (or `audit verify --anchor`) names;
    `kafka_options`: the engine's Kafka client options, for `kafka:<topic>`."""
    kind, where = parse_anchor(value)
    if kind == "file":
        return FileAnchor(Path(where).expanduser())
    if kafka_options is None:
        raise ValueError(f"{value}: Kafka is not configured (KAFKA_BOOTSTRAP_SERVERS)")
    return KafkaAnchor(where, kafka_options)

"""One logging set-up for every long-running process (`serve`, `api` and each of its
workers, `consume`, `project`): docs/operations.md, "Logs".

* `SERVICEORDERS_LOG_LEVEL` (default INFO) and `SERVICEORDERS_LOG_FORMAT` (`text`, the
  default, or `json`: one JSON object a line, through python-json-logger). Every record goes
  through the same handler on stderr: the engine's own, uvicorn's and kafka-python's.
* What is known about the work in hand (the order, the correlation id, the W3C trace id, the
  Kafka position) is held in a context variable (`bind`); `ContextFilter` copies it onto every
  record, as JSON fields or, in text, as ` key=value` after the message. Fields given with
  `extra=` win over the context's.
* An incoming W3C `traceparent` (HTTP header or Kafka message header) is accepted beside the
  correlation id: when no correlation id is given, its trace id becomes the correlation id
  (`correlation`), and the records carry it as `trace_id`. A malformed one is ignored, as the
  W3C Trace Context recommendation tells a receiver to do.

Nothing here logs keys or personal data: the records carry ids, counts and reasons only.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any
from uuid import uuid4

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

log = logging.getLogger("serviceorders.workers")

LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
FORMATS = ("text", "json")
# The context's fields, in the order the text format shows them.
FIELDS = (
    "order_id",
    "correlation_id",
    "trace_id",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)
# Record attributes that are not fields of the record's own (uvicorn's coloured copy of its
# message, asyncio's task name).
_NOT_FIELDS = frozenset({*RESERVED_ATTRS, "color_message", "taskName"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("serviceorders_log_context", default=_EMPTY)


# ------------------------------------------------------------------------ context
def bind_fields(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields (None ones are left out) to the current context; `unbind(token)` undoes it.
    Set in a request's or a message's own context, nothing needs undoing."""
    current = _context.get()
    new = {
        k: (str(v) if not isinstance(v, int | str) else v)
        for k, v in fields.items()
        if v is not None
    }
    return _context.set({**current, **new} if current else new)


def unbind(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    token = bind_fields(**fields)
    try:
        yield
    finally:
        _context.reset(token)


def context() -> Mapping[str, Any]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (never over a field given with `extra=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if name not in record.__dict__:
                setattr(record, name, value)
        return True


# ------------------------------------------------------------------ trace context
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def trace_id(traceparent: str | bytes | None) -> str | None:
    """The trace id of a W3C `traceparent` (version-traceid-parentid-flags, lowercase hex),
    or None when it is absent or malformed: version ff, an all-zero trace or parent id,
    upper-case hex, a version 00 value with anything after the flags. A later version may
    append fields after a `-` (the recommendation's forward compatibility)."""
    if traceparent is None:
        return None
    if isinstance(traceparent, bytes):
        try:
            traceparent = traceparent.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = traceparent.strip(" \t")
    found = _TRACEPARENT.match(value)
    if found is None:
        return None
    version, trace, parent, _ = found.groups()
    rest = value[found.end() :]
    if version == "ff" or (version == "00" and rest) or (rest and not rest.startswith("-")):
        return None
    if trace == "0" * 32 or parent == "0" * 16:
        return None
    return trace


def header(headers: Any, name: str) -> bytes | None:
    """A Kafka message header's value (the first one named `name`, case-insensitively)."""
    for key, value in headers or ():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, bytes) else None
    return None


def correlation(
    given: str | None,
    traceparent: str | bytes | None,
    default: Callable[[], str] = lambda: str(uuid4()),
) -> tuple[str, str | None]:
    """(correlation id, trace id): the id given, else the traceparent's trace id, else
    `default()`; the trace id is None without a valid traceparent."""
    trace = trace_id(traceparent)
    return (given or trace or default()), trace


# --------------------------------------------------------------------- formatting
def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _NOT_FIELDS and not k.startswith("_")
    }


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` (the context's fields first)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _fields_of(record)
        if not fields:
            return line
        ordered = [k for k in FIELDS if k in fields] + [k for k in fields if k not in FIELDS]
        return line + " " + " ".join(f"{k}={_text_value(fields[k])}" for k in ordered)


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, the fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=sorted(_NOT_FIELDS),
            json_ensure_ascii=False,
        )


# ------------------------------------------------------------------------ set-up
def config(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """The `logging.config.dictConfig` of every process (uvicorn is given it too, and
    applies it again in each `api --workers N` worker)."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    quiet = "WARNING" if logging.getLevelName(level) >= logging.INFO else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"main": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's loggers go through the root's handler, not their own.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Its access log shows the query string: the API writes its own (access_log).
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # kafka-python is chatty at INFO (every connection) and logs its protocol at DEBUG.
            "kafka": {"level": quiet, "handlers": [], "propagate": True},
        },
    }


def configure(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """Set up this process's logging; returns the dict config (for uvicorn.run)."""
    settings = config(level, fmt)
    logging.config.dictConfig(settings)
    logging.captureWarnings(True)  # warnings as records, not stray stderr lines
    threading.excepthook = _thread_died
    sys.excepthook = _process_died
    return settings


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    log.critical(
        "thread %s died: %s",
        getattr(args.thread, "name", "?"),
        args.exc_type.__name__,
        exc_info=None
        if args.exc_value is None
        else (args.exc_type, args.exc_value, args.exc_traceback),
    )


def _process_died(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    log.critical("stopped by %s", exc_type.__name__, exc_info=(exc_type, exc, tb))


def worker(name: str, target: Callable[..., Any]) -> Callable[..., Any]:
    """`target` logging its start and stop (and how it failed) at INFO, as `worker=name`."""

    def run(*args: Any, **kwargs: Any) -> Any:
        log.info("%s started", name, extra={"worker": name})
        try:
            return target(*args, **kwargs)
        except Exception as e:
            log.error("%s failed: %s", name, type(e).__name__, extra={"worker": name})
            raise
        finally:
            log.info("%s stopped", name, extra={"worker": name})

    return run


def start_worker(
    name: str, thread_name: str, target: Callable[..., Any], *args: Any
) -> threading.Thread:
    """`target(*args)` started in a daemon thread called `thread_name`, logged as `worker`
    does: the one way the processes start their background workers."""
    thread = threading.Thread(target=worker(name, target), args=args, name=thread_name, daemon=True)
    thread.start()
    return thread

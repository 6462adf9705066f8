"""support/logs.py: the W3C traceparent parsing, the context filter, the two formats."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from serviceorders.api.request_log import correlation_of
from serviceorders.settings import Settings, SettingsError
from serviceorders.support import logs

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


# ------------------------------------------------------------------ traceparent
@pytest.mark.parametrize(
    "value",
    [
        VALID,
        f"00-{TRACE}-{PARENT}-00",
        VALID.encode(),
        f" {VALID}\t",
        f"01-{TRACE}-{PARENT}-01",  # a later version...
        f"cc-{TRACE}-{PARENT}-01-what-comes-later",
    ],
)  # ...extended
def test_a_valid_traceparent_gives_its_trace_id(value: str | bytes) -> None:
    assert logs.trace_id(value) == TRACE


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        VALID.upper(),  # upper-case hex
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # the forbidden version
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"01-{TRACE}-{PARENT}-01extra",  # a later version's extra fields follow a dash
        f"00-{TRACE[:-1]}-{PARENT}-01",
        f"00-{TRACE}0-{PARENT}-01",  # lengths
        f"00-{TRACE}-{PARENT[:-1]}-01",
        f"0-{TRACE}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-1",
        f"00_{TRACE}_{PARENT}_01",
        f"00-{TRACE[:-1]}g-{PARENT}-01",  # separators, not hex
        "00-" + "é" * 32 + f"-{PARENT}-01",
        b"\xff\xfe",
        VALID.encode("utf-16"),
    ],
)
def test_a_malformed_traceparent_is_ignored(value: str | bytes | None) -> None:
    assert logs.trace_id(value) is None


def test_the_correlation_id_given_wins_then_the_trace_id_then_a_new_one() -> None:
    assert logs.correlation("corr-1", VALID) == ("corr-1", TRACE)
    assert logs.correlation(None, VALID) == (TRACE, TRACE)
    assert logs.correlation(None, "bad", default=lambda: "event-9") == ("event-9", None)
    first, _ = logs.correlation(None, None)
    second, _ = logs.correlation(None, None)
    assert first and second and first != second  # a new id each time


def test_the_kafka_header_is_found_by_name_whatever_its_case() -> None:
    headers = (("eventType", b"x"), ("TraceParent", VALID.encode()), ("traceparent", b"2"))
    assert logs.header(headers, "traceparent") == VALID.encode()
    assert logs.header((("eventType", b"x"),), "traceparent") is None
    assert logs.header((), "traceparent") is None and logs.header(None, "traceparent") is None


def test_the_api_takes_the_correlation_header_then_the_traceparent() -> None:
    both = {b"x-correlation-id": b"corr-7", b"traceparent": VALID.encode()}
    assert correlation_of(both) == ("corr-7", TRACE)
    assert correlation_of({b"traceparent": VALID.encode()}) == (TRACE, TRACE)
    fresh, trace = correlation_of({b"traceparent": b"00-zz"})
    assert trace is None and fresh and fresh != "00-zz"
    assert correlation_of({b"x-correlation-id": b"c" * 500})[0] == "c" * 200


# ---------------------------------------------------------------- the filter
@contextlib.contextmanager
def _only_to(handler: logging.Handler, name: str, level: int) -> Iterator[logging.Logger]:
    """The logger `name` at `level`, writing only to `handler` (through the context
    filter) inside the block."""
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, list[logging.LogRecord]]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    with _only_to(Keep(), "serviceorders.test_logs", logging.DEBUG) as logger:
        yield logger, records


def test_the_filter_puts_the_bound_fields_on_each_record(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    logger.info("outside")
    with logs.bind(correlation_id="c-1", order_id="o-1", kafka_offset=7, trace_id=None):
        logger.info("inside")
        with logs.bind(order_id="o-2", kafka_partition=0):
            logger.info("nested")
        logger.info("given", extra={"correlation_id": "explicit"})
    logger.info("after")
    fields = [{k: getattr(r, k) for k in logs.FIELDS if hasattr(r, k)} for r in records]
    assert fields == [
        {},
        {"correlation_id": "c-1", "order_id": "o-1", "kafka_offset": 7},
        {"correlation_id": "c-1", "order_id": "o-2", "kafka_offset": 7, "kafka_partition": 0},
        {"correlation_id": "explicit", "order_id": "o-1", "kafka_offset": 7},  # extra wins
        {},
    ]


def test_bound_fields_stay_in_their_own_context(
    captured: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = captured
    token = logs.bind_fields(correlation_id="main-thread")
    try:
        thread = threading.Thread(target=lambda: logger.info("other thread"))
        thread.start()
        thread.join()
        logger.info("this thread")
    finally:
        logs.unbind(token)
    logger.info("unbound")
    assert [getattr(r, "correlation_id", None) for r in records] == [None, "main-thread", None]


# --------------------------------------------------------------- the formats
def _emit(formatter: logging.Formatter, **fields: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    with (
        _only_to(handler, "serviceorders.test_format", logging.INFO) as logger,
        logs.bind(correlation_id="corr 1", order_id="o-1"),
    ):
        logger.info(
            "batch: %d messages", 3, extra={"applied": 2, **fields, "color_message": "\x1b[1mx"}
        )
    return stream.getvalue()


def test_text_appends_the_fields_as_key_value() -> None:
    line = _emit(logs.TextFormatter(), reason='said "no"')
    assert line.endswith(
        " INFO serviceorders.test_format: batch: 3 messages "
        'order_id=o-1 correlation_id="corr 1" applied=2 '
        'reason="said \\"no\\""\n'
    )
    assert "color_message" not in line


def test_json_is_one_object_a_line_with_the_fields() -> None:
    line = _emit(logs.JsonFormatter())
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record.pop("time").endswith("+00:00")
    assert record == {
        "level": "INFO",
        "logger": "serviceorders.test_format",
        "message": "batch: 3 messages",
        "correlation_id": "corr 1",
        "order_id": "o-1",
        "applied": 2,
    }


def test_the_config_routes_uvicorn_through_the_one_handler() -> None:
    config = logs.config("debug", "json")
    assert config["root"] == {"level": "DEBUG", "handlers": ["stderr"]}
    assert config["handlers"]["stderr"]["filters"] == ["context"]
    assert config["loggers"]["uvicorn"]["handlers"] == []
    assert config["loggers"]["uvicorn"]["propagate"] is True
    assert config["loggers"]["kafka"]["level"] == "INFO"
    assert logs.config("INFO", "text")["loggers"]["kafka"]["level"] == "WARNING"
    with pytest.raises(ValueError, match="log level"):
        logs.config("LOUD", "text")
    with pytest.raises(ValueError, match="log format"):
        logs.config("INFO", "xml")


def test_the_log_settings() -> None:
    settings = Settings.from_env({})
    assert (settings.log_level, settings.log_format, settings.access_log) == ("INFO", "text", False)
    settings = Settings.from_env(
        {
            "SERVICEORDERS_LOG_LEVEL": "debug",
            "SERVICEORDERS_LOG_FORMAT": "JSON",
            "SERVICEORDERS_ACCESS_LOG": "yes",
        }
    )
    assert (settings.log_level, settings.log_format, settings.access_log) == ("DEBUG", "json", True)
    with pytest.raises(SettingsError, match="SERVICEORDERS_LOG_FORMAT"):
        Settings.from_env({"SERVICEORDERS_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="SERVICEORDERS_LOG_LEVEL"):
        Settings.from_env({"SERVICEORDERS_LOG_LEVEL": "loud"})
    with pytest.raises(SettingsError, match="SERVICEORDERS_ACCESS_LOG"):
        Settings.from_env({"SERVICEORDERS_ACCESS_LOG": "maybe"})

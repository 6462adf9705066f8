"""Orders read from JSON files (`serviceorders order create FILE`, `order revise --items`).

A file holds either the TMF641 `ServiceOrder_Create` body the REST API and Kafka take
(recognised by its `serviceOrderItem`, or by having neither `header` nor `items`), read
through the same models (`tmf641_in`), or the CLI's own
`{"header": {...}, "items": [...]}` in the domain's field names. A file that cannot be read
is a `BadFile` naming it (and, for malformed JSON, the line and column); a body with
problems is `Problems`, listing every one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from serviceorders.domain.values import Note, OrderHeader, OrderItem
from serviceorders.tmf.tmf641_in import ServiceOrderCreate, json_limits, order_to_domain


class BadFile(Exception):
    """The file cannot be read as a JSON document of the expected shape (one line)."""


class Problems(Exception):
    """The document is JSON of the right shape but its content is refused."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s): " + "; ".join(problems))


def read_json(path: Path) -> Any:
    """The JSON document in `path`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadFile(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise BadFile(f"{path}: cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadFile(f"{path}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise BadFile(f"{path}: the file is empty (expected a JSON object)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadFile(
            f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise BadFile(f"{path}: the JSON nests too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise BadFile(f"{path}: not valid JSON: {e}") from None
    limit = json_limits(data, root=path.name)
    if limit is not None:
        raise BadFile(f"{path}: {limit}")
    return data


SHAPES = 'a TMF641 ServiceOrder (with "serviceOrderItem") or {"header": {...}, "items": [...]}'


def _kind(value: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _problems(error: ValidationError, prefix: str = "") -> list[str]:
    found = []
    for err in error.errors(include_url=False):
        where = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        found.append(f"{where or 'body'}: {err['msg']}")
    return found


def load_order(path: Path) -> tuple[OrderHeader, list[OrderItem], list[Note]]:
    """The order in the file at `path`: its header, items and notes."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise BadFile(f"{path}: expected a JSON object, {SHAPES}; got {_kind(data)}")
    if "serviceOrderItem" in data or not ({"header", "items"} & data.keys()):
        try:
            body = ServiceOrderCreate.model_validate(data)
        except ValidationError as e:
            raise Problems(_problems(e)) from None
        return order_to_domain(body)
    problems: list[str] = []
    header = None
    raw_header = data.get("header", {})
    if not isinstance(raw_header, dict):
        problems.append(f"header: expected an object, got {_kind(raw_header)}")
    else:
        try:
            header = OrderHeader.model_validate(raw_header)
        except ValidationError as e:
            problems += _problems(e, "header")
    try:
        items = items_from_json(data.get("items", []), "items")
    except Problems as e:
        problems += e.problems
    if problems:
        raise Problems(problems)
    assert header is not None
    return header, items, []


def items_from_json(data: Any, where: str = "items") -> list[OrderItem]:
    """A JSON list of items in the domain's field names (every problem listed)."""
    if not isinstance(data, list):
        raise Problems([f"{where}: expected a list of items, got {_kind(data)}"])
    items, problems = [], []
    for n, raw in enumerate(data):
        try:
            items.append(OrderItem.model_validate(raw))
        except ValidationError as e:
            problems += _problems(e, f"{where}.{n}")
    if problems:
        raise Problems(problems)
    return items

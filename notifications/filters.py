"""A hub subscription's `query`: parsed once, matched against each notification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from serviceorders.projections.notifications import (
    EVENT_TYPES,
)


class QueryError(ValueError):
    """A subscription `query` that does not parse; the message says why."""


_RESOURCES = ("serviceOrder", "cancelServiceOrder")
_MAX_QUERY = 1000


@dataclass(frozen=True)
class Filter:
    """A subscription's `query`: `key=value[,value...]` terms joined by `&`; every term
    must hold (AND), any of a term's values may match (OR).

    * `eventType=ServiceOrderStateChangeEvent,ServiceOrderCreateEvent`
    * any other key is a path into the notification's resource (`state`,
      `serviceOrderItem.state`, `relatedParty.id`...), optionally prefixed with `event.`
      and / or the resource name (`serviceOrder.` or `cancelServiceOrder.`, which then
      only matches that resource). Through a list, any element may match.
    """

    event_types: frozenset[str] | None = None
    terms: tuple[tuple[str | None, tuple[str, ...], frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, query: str | None) -> Filter:
        if query is None or not query.strip():
            return cls()
        if len(query) > _MAX_QUERY:
            raise QueryError(f"the query is longer than {_MAX_QUERY} characters")
        try:
            pairs = parse_qsl(query.strip(), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise QueryError(f"the query {query!r} is not key=value terms joined by &") from None
        types: set[str] | None = None
        terms: dict[tuple[str | None, tuple[str, ...]], set[str]] = {}
        for key, raw in pairs:
            key = key.strip()
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if not key or not values:
                raise QueryError(f"the term {key}={raw} needs a key and a value")
            if key in ("eventType", "event.eventType"):
                known = {t.lower(): t for t in EVENT_TYPES}
                unknown = sorted(v for v in values if v.lower() not in known)
                if unknown:
                    raise QueryError(
                        f"unknown eventType {', '.join(unknown)} (one of {', '.join(EVENT_TYPES)})"
                    )
                wanted = {known[v.lower()] for v in values}
                types = wanted if types is None else types | wanted
                continue
            parts = key.split(".")
            if not all(p and (p.replace("_", "").replace("@", "").isalnum()) for p in parts):
                raise QueryError(f"the key {key!r} is not an attribute path")
            if parts[0] == "event":
                parts = parts[1:]
            resource = None
            if parts and parts[0] in _RESOURCES:
                resource, parts = parts[0], parts[1:]
            if not parts:
                raise QueryError(f"the key {key!r} names no attribute")
            terms.setdefault((resource, tuple(parts)), set()).update(values)
        return cls(
            frozenset(types) if types is not None else None,
            tuple((r, p, frozenset(v)) for (r, p), v in terms.items()),
        )

    def matches(self, payload: dict[str, Any]) -> bool:
        if self.event_types is not None and payload.get("eventType") not in self.event_types:
            return False
        body = payload.get("event") or {}
        for resource, path, values in self.terms:
            name = resource or next((r for r in _RESOURCES if r in body), None)
            if name is None or name not in body:
                return False
            if not any(_text(v) in values for v in _walk(body[name], path)):
                return False
        return True


def _walk(node: Any, path: tuple[str, ...]) -> list[Any]:
    if isinstance(node, list):
        return [found for element in node for found in _walk(element, path)]
    if not path:
        return [node]
    if not isinstance(node, dict) or path[0] not in node:
        return []
    return _walk(node[path[0]], path[1:])


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

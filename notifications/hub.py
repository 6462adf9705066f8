"""The TMF641 hub: listener subscriptions, their delivery queues and the delivery worker.

* `hub_subscription` is written by the API (register / unregister) and by operators
  (resume); it is not a projection. Each subscription has a cursor into the
  `notification_outbox` projection (`notifications.py`): what has been fanned out to it.
* `hub_delivery` holds one row per (subscription, outbox notification) that passed the
  subscription's `query` filter: attempts, next attempt, last error, delivered time.
* `DeliveryWorker` (a thread in `serve` and `project`) fans new outbox rows out into
  deliveries, POSTs them to `{callback}/listener/{eventName}` in log order per order,
  retries with exponential backoff, and suspends a listener that keeps failing (its
  backlog is kept and delivered once an operator resumes it). Nothing is ever dropped.
* Callbacks are safe by default (`parse_callback`, `AllowList`, `check_callback`,
  `resolve`): parsed once and strictly, public addresses only unless the allow-list names
  an address, names resolved once per round and every address checked, the connection
  pinned to a checked address; operators' views say only `unreachable`, `refused by
  policy` or `HTTP <status>` (`public_error`).

The guarantees, settings and operator commands are documented in docs/notifications.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from uuid import UUID, uuid4

import httpx
import idna
from serviceorders.projections.log import EventLog
from serviceorders.projections.notifications import (
    EVENT_TYPES,
    NotificationOutbox,
    absolute_hrefs,
    listener_name,
)
from serviceorders.settings import Settings
from serviceorders.storage.db import ReadDb, Table

log = logging.getLogger(__name__)

OUTBOX = NotificationOutbox.table.name
ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
END_OF_POSITION = 2_000_000_000  # a cursor (position, END) is past every row of position

SUBSCRIPTIONS = Table(
    name="hub_subscription",
    columns=(
        ("id", "text"),
        ("callback", "text"),
        ("query", "text"),
        ("actor", "text"),
        ("created_at", "timestamptz"),
        ("state", "text"),
        ("cursor_position", "bigint"),
        ("cursor_seq", "int"),
        ("failures", "int"),
        ("failing_since", "timestamptz"),
        ("retry_at", "timestamptz"),
        ("last_error", "text"),
        ("last_attempt_at", "timestamptz"),
        ("last_delivered_at", "timestamptz"),
        ("delivered", "bigint"),
        ("suspended_at", "timestamptz"),
        ("deleted_at", "timestamptz"),
    ),
    primary_key=("id",),
    indexes={"state": ("state",)},
)
DELIVERIES = Table(
    name="hub_delivery",
    columns=(
        ("subscription_id", "text"),
        ("position", "bigint"),
        ("seq", "int"),
        ("order_id", "uuid"),
        ("event_id", "text"),
        ("event_type", "text"),
        ("created_at", "timestamptz"),
        ("attempts", "int"),
        ("next_attempt_at", "timestamptz"),
        ("last_error", "text"),
        ("last_attempt_at", "timestamptz"),
        ("delivered_at", "timestamptz"),
    ),
    primary_key=("subscription_id", "position", "seq"),
    indexes={"pending": ("subscription_id", "delivered_at", "position", "seq")},
)
WORKERS = Table(
    name="hub_worker",
    columns=(("name", "text"), ("owner", "text"), ("lease_until", "timestamptz")),
    primary_key=("name",),
)
TABLES = (SUBSCRIPTIONS, DELIVERIES, WORKERS)


def create_tables(db: ReadDb) -> None:
    """The hub's tables (idempotent); `serviceorders db init` calls this."""
    with db.transaction():
        for table in TABLES:
            db.create_table(table)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ===================================================================== the query filter
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


# ================================================================ callbacks, allow-list
# What the admin view and `hub list` show as a delivery's error: never more than this (a
# port scanner learns nothing from "unreachable"); the detail goes to the log.
UNREACHABLE = "unreachable"
REFUSED = "refused by policy"
_SHOWN_ERROR = re.compile(r"HTTP [1-5][0-9][0-9]")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata endpoints: never called, whatever the allow-list says (no
# listener lives there). AWS (IPv4, IPv6, ECS), GCP, Azure, OCI, DigitalOcean: 169.254.169.254;
# Alibaba 100.100.100.200; Azure's wire server 168.63.129.16 (a public address).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_ULA = ipaddress.ip_network("fc00::/7")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS = re.compile(r"[0-9]{1,5}")


class CallbackError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def public_error(error: str | None) -> str | None:
    """A delivery error as operators' views show it: `HTTP <status>` when a listener
    answered, `refused by policy`, else `unreachable` (rows written by older versions
    carried exception text: it is not shown)."""
    if error is None or error == REFUSED or _SHOWN_ERROR.fullmatch(error):
        return error
    return UNREACHABLE


def _ascii_name(host: str) -> str:
    """A DNS name, strictly: lowercase LDH labels of 1-63 characters, at most 253 in all,
    no trailing dot. A Unicode label is IDNA-encoded (UTS 46 mapping, STD3 rules) and must
    become an `xn--` label: look-alikes that map to plain ASCII (full-width digits, the
    ideographic full stop) are refused, as is anything the URL parser and this
    re-serialisation would read differently (`\\`, `%`, `;`, `&`, `_`...)."""
    labels = host.split(".")
    encoded = []
    for label in labels:
        if label.isascii():
            ascii_label = label.lower()
        else:
            try:
                ascii_label = idna.encode(label, uts46=True, std3_rules=True).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                raise CallbackError(
                    "invalid_callback",
                    f"the callback's host {host!r} is not a valid internationalised name",
                ) from None
            if not ascii_label.startswith("xn--"):
                raise CallbackError(
                    "invalid_callback",
                    f"the callback's host {host!r} is not written in its "
                    f"canonical form (it reads as {ascii_label!r})",
                )
        if not _LABEL.fullmatch(ascii_label):
            raise CallbackError(
                "invalid_callback",
                f"the callback's host {host!r} is not a host name (letters, "
                f"digits and inner hyphens, dot-separated labels of 1-63 "
                f"characters)",
            )
        encoded.append(ascii_label)
    name = ".".join(encoded)
    if len(name) > 253:
        raise CallbackError(
            "invalid_callback", "the callback's host name is longer than 253 characters"
        )
    return name


def canonical_host(raw: str) -> tuple[str, IPAddress | None]:
    """(host, address): an IP literal (`[...]` for IPv6; IPv4 only as four decimal octets
    without leading zeros: `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1` are refused
    as ambiguous) or a strict DNS name (`_ascii_name`)."""
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise CallbackError(
                "invalid_callback", f"the callback's host {raw!r} is not a bracketed IPv6 address"
            )
        try:
            if "%" in raw:
                raise ValueError("a zone index")
            address = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise CallbackError(
                "invalid_callback", f"the callback's host {raw!r} is not an IPv6 address"
            ) from None
        return address.compressed, address
    name = _ascii_name(raw)
    last = name.rsplit(".", 1)[-1]
    if last.isdigit() or last.startswith("0x"):  # an IPv4 address, in some spelling
        try:
            address4 = ipaddress.IPv4Address(name)
        except ValueError:
            raise CallbackError(
                "invalid_callback",
                f"the callback's host {raw!r} is an ambiguous IPv4 spelling: "
                f"write four decimal octets",
            ) from None
        return str(address4), address4
    return name, None


@dataclass(frozen=True)
class Target:
    """A callback parsed once, strictly; `url` is its canonical form (what is stored)."""

    scheme: str
    host: str  # a lowercase ASCII name, or an IP address (IPv6 without brackets)
    address: IPAddress | None  # the host, when it is an IP literal
    port: int
    explicit_port: bool
    path: str
    query: str

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if isinstance(self.address, ipaddress.IPv6Address) else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def url(self) -> str:
        return urlunsplit((self.scheme, self.netloc, self.path, self.query, ""))

    def pinned(self, address: IPAddress) -> str:
        """The same URL with the host replaced by the address that was checked."""
        host = f"[{address.compressed}]" if address.version == 6 else str(address)
        return urlunsplit((self.scheme, f"{host}:{self.port}", self.path, self.query, ""))


def parse_callback(url: str) -> Target:
    """The callback, parsed once (urllib) and checked against a strict re-serialisation:
    http(s) only, no credentials (user-info), no fragment, no spaces or control
    characters, a canonical host (`canonical_host`), a decimal port of 1-65535; and
    httpx must read the same host and port from the canonical URL."""
    url = (url or "").strip()
    if not url or len(url) > 2000:
        raise CallbackError(
            "invalid_callback", "the callback must be a URL of at most 2000 characters"
        )
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise CallbackError(
            "invalid_callback", "the callback must not contain spaces or control characters"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise CallbackError("invalid_callback", f"the callback {url!r} is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not url.lower().startswith(f"{scheme}://"):
        raise CallbackError(
            "invalid_callback", f"the callback must be an http or https URL, not {url!r}"
        )
    if parts.fragment or "#" in url:
        raise CallbackError("invalid_callback", "the callback must not have a fragment")
    netloc = parts.netloc
    if "@" in netloc:
        raise CallbackError("invalid_callback", "the callback must not carry credentials")
    if not netloc:
        raise CallbackError("invalid_callback", f"the callback {url!r} has no host")
    if "\\" in url.split("?", 1)[0]:
        raise CallbackError("invalid_callback", "the callback must not contain '\\'")
    if netloc.startswith("["):
        raw_host, _, rest = netloc.partition("]")
        raw_host += "]"
        if rest and not rest.startswith(":"):
            raise CallbackError("invalid_callback", f"the callback {url!r} has junk after its host")
        raw_port = rest[1:] if rest else None
    else:
        raw_host, colon, raw_port_text = netloc.partition(":")
        raw_port = raw_port_text if colon else None
    if not raw_host:
        raise CallbackError("invalid_callback", f"the callback {url!r} has no host")
    if raw_port is not None and not (_DIGITS.fullmatch(raw_port) and 0 < int(raw_port) < 65536):
        raise CallbackError(
            "invalid_callback", f"the callback's port {raw_port!r} is not a number in 1-65535"
        )
    host, address = canonical_host(raw_host)
    default = 443 if scheme == "https" else 80
    port = int(raw_port) if raw_port is not None else default
    target = Target(scheme, host, address, port, raw_port is not None, parts.path, parts.query)
    try:  # the client that will call it must read the very same host and port
        seen = httpx.URL(target.url)
        same = seen.raw_host.decode("ascii") == host and (seen.port or default) == port
    except (httpx.InvalidURL, ValueError):
        same = False
    if not same:
        raise CallbackError(
            "invalid_callback", f"the callback {url!r} does not read the same to every URL parser"
        )
    return target


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address inside IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4
    (2002::/16) IPv6 forms: those are checked as the IPv4 address they reach."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def address_class(address: IPAddress) -> str | None:
    """Why the hub does not call this address by default (None: a public address)."""
    candidate = _unwrap(address)  # an embedded IPv4 address is judged as itself
    if address in METADATA or candidate in METADATA:
        return "cloud metadata"
    if candidate.is_unspecified or (candidate.version == 4 and candidate in _THIS_NETWORK):
        return "unspecified"
    if candidate.is_loopback:
        return "loopback"
    if candidate.is_link_local:
        return "link-local"
    if candidate.is_multicast:
        return "multicast"
    if candidate.version == 4 and candidate in _CGNAT:
        return "shared (CGNAT, 100.64.0.0/10)"
    if candidate.version == 6 and candidate in _ULA:
        return "private (unique local)"
    if candidate.is_reserved or (candidate.version == 6 and candidate.is_site_local):
        return "reserved"
    if candidate.is_private:
        return "private"
    if not candidate.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class _Pattern:
    kind: str  # "any", "suffix" (*.domain), "name", "network" (an address or CIDR block)
    value: str
    network: IPNetwork | None
    port: int | None

    def __str__(self) -> str:
        text = str(self.network) if self.network is not None else self.value
        if self.kind == "suffix":
            text = f"*.{text}"
        if self.network is not None and self.network.num_addresses == 1:
            text = str(self.network.network_address)
        if self.network is not None and self.network.version == 6:
            text = f"[{text}]"
        return f"{text}:{self.port}" if self.port else text


@dataclass(frozen=True)
class AllowList:
    """`SERVICEORDERS_HUB_ALLOWED_HOSTS`: comma-separated `host`, `*.domain`, `*`, an IPv4
    address or CIDR block, an `[IPv6]` address or `[IPv6/len]` block, each optionally with
    `:port` (without one, every port). The rules (docs/notifications.md):

    * Empty (the default): any host name, but only **public** addresses: loopback,
      private, link-local, unspecified, multicast, reserved, CGNAT and metadata addresses
      (and their IPv4-mapped / NAT64 / 6to4 IPv6 forms) are refused; `localhost` and
      `*.localhost` names too.
    * Configured: the callback's host must match an entry (a name entry matches names, an
      address entry addresses), and every address it uses (literal, or resolved at
      delivery) must be public or named by an address / CIDR entry (with its port).
      `*` and name patterns never make a non-public address callable.
    * Metadata addresses are never called.
    """

    patterns: tuple[_Pattern, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> AllowList:
        patterns = []
        for raw in (text or "").split(","):
            entry = raw.strip().lower()
            if entry:
                patterns.append(_parse_pattern(entry, raw.strip()))
        return cls(tuple(patterns))

    def matches(self, host: str, address: IPAddress | None, port: int) -> bool:
        """The host (a canonical name, or an address) passes the list (empty: any)."""
        if not self.patterns:
            return True
        for pattern in self.patterns:
            if pattern.port is not None and pattern.port != port:
                continue
            if pattern.kind == "any":
                return True
            if address is not None:
                found = pattern.network is not None and _in(address, pattern.network)
            else:
                found = (pattern.kind == "name" and host == pattern.value) or (
                    pattern.kind == "suffix" and host.endswith("." + pattern.value)
                )
            if found:
                return True
        return False

    def names_address(self, address: IPAddress, port: int) -> bool:
        """An address or CIDR entry names this address (the operator chose it)."""
        return any(
            p.network is not None and _in(address, p.network) and (p.port is None or p.port == port)
            for p in self.patterns
        )

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why the hub may not connect to this address on this port (None: it may)."""
        kind = address_class(address)
        if kind == "cloud metadata":
            return kind
        if kind is not None and not self.names_address(address, port):
            return kind
        return None

    def allows(self, host: str, port: int) -> bool:
        """The registration rule for a host as written (tests, tools)."""
        text = host.strip()
        if ":" in text and not text.startswith("["):
            text = f"[{text}]"
        try:
            name, address = canonical_host(text)
        except CallbackError:
            return False
        if not self.matches(name, address, port):
            return False
        if address is not None:
            return self.refusal(address, port) is None
        return not _is_localhost(name)

    def describe(self) -> str:
        if not self.patterns:
            return "public addresses only (SERVICEORDERS_HUB_ALLOWED_HOSTS is empty)"
        return ", ".join(str(p) for p in self.patterns)


def _in(address: IPAddress, network: IPNetwork) -> bool:
    return any(
        a.version == network.version and a in network
        for a in dict.fromkeys((address, _unwrap(address)))
    )


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761: loopback


def _parse_pattern(entry: str, raw: str) -> _Pattern:
    def bad(why: str) -> ValueError:
        return ValueError(f"SERVICEORDERS_HUB_ALLOWED_HOSTS: {why} in {raw!r}")

    host, port = entry, None
    if entry.startswith("["):  # [ipv6], [ipv6]:port, [ipv6/len][:port]
        inside, closed, rest = entry[1:].partition("]")
        if not closed:
            raise bad("no closing ']'")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise bad("junk after ']'")
            port = rest[1:]
        try:
            network6 = ipaddress.IPv6Network(host, strict=False)
        except ValueError:
            raise bad("not an IPv6 address or block") from None
        return _Pattern("network", host, network6, _port(port, bad))
    if entry.count(":") > 1:
        raise bad("an IPv6 address must be written in brackets")
    if ":" in entry:
        host, _, port = entry.partition(":")
    if host == "*":
        return _Pattern("any", "*", None, _port(port, bad))
    try:
        network4 = ipaddress.IPv4Network(host, strict=False)
    except ValueError:
        network4 = None
    if network4 is not None:
        return _Pattern("network", host, network4, _port(port, bad))
    suffix = host.startswith("*.")
    try:
        name = _ascii_name(host[2:] if suffix else host)
    except CallbackError:
        raise bad("not a host name, *.domain, address or CIDR block") from None
    return _Pattern("suffix" if suffix else "name", name, None, _port(port, bad))


def _port(text: str | None, bad: Callable[[str], ValueError]) -> int | None:
    if text is None:
        return None
    if not _DIGITS.fullmatch(text) or not 0 < int(text) < 65536:
        raise bad("bad port")
    return int(text)


def check_target(target: Target, allowed: AllowList) -> None:
    """The rules a callback must pass before any address is resolved (CallbackError
    `callback_not_allowed`, naming the reason)."""
    host = f"[{target.host}]" if isinstance(target.address, ipaddress.IPv6Address) else target.host
    where = f"{host}:{target.port}"
    if not allowed.matches(target.host, target.address, target.port):
        raise CallbackError(
            "callback_not_allowed",
            f"callbacks to {where} are not allowed: the hub calls "
            f"{allowed.describe()} (SERVICEORDERS_HUB_ALLOWED_HOSTS)",
        )
    if target.address is not None:
        kind = allowed.refusal(target.address, target.port)
        if kind is not None:
            raise CallbackError(
                "callback_not_allowed",
                f"callbacks to {where} are refused ({kind} address): the "
                f"hub calls public addresses only, unless "
                f"SERVICEORDERS_HUB_ALLOWED_HOSTS names the address"
                + (" (never a metadata address)" if kind == "cloud metadata" else ""),
            )
    elif _is_localhost(target.host):
        raise CallbackError(
            "callback_not_allowed",
            f"callbacks to {target.host} are refused (a loopback name, "
            f"RFC 6761): register the address (e.g. 127.0.0.1) and name it "
            f"in SERVICEORDERS_HUB_ALLOWED_HOSTS",
        )


def check_callback(url: str, allowed: AllowList) -> str:
    """The callback in its canonical form, or CallbackError (`invalid_callback`: not a
    strict http(s) URL; `callback_not_allowed`: the host or its address is refused).
    No DNS here: names are resolved, and their addresses checked, at each delivery."""
    target = parse_callback(url)
    check_target(target, allowed)
    return target.url


def resolve(target: Target, allowed: AllowList, timeout: float) -> list[IPAddress]:
    """The addresses to connect to, every one checked: CallbackError when the callback or
    any address it resolves to is refused; OSError / TimeoutError when the name does not
    resolve (in time). One resolution (getaddrinfo, in a daemon thread so that a stuck
    resolver never holds the worker) per call: the caller connects to these addresses
    only, so a second resolution cannot switch them (no DNS rebinding)."""
    check_target(target, allowed)
    if target.address is not None:
        return [target.address]
    box: list[Any] = []

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM))
        except Exception as e:  # handed to the caller
            box.append(e)

    thread = threading.Thread(target=lookup, name="hub-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        raise TimeoutError(f"resolving {target.host} took longer than {timeout}s")
    if isinstance(box[0], Exception):
        raise box[0]
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in box[0]:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{target.host} resolves to no IP address")
    for address in found:
        kind = allowed.refusal(address, target.port)
        if kind is not None:
            raise CallbackError(
                "callback_not_allowed",
                f"{target.host} resolves to {address} ({kind} address), "
                f"which SERVICEORDERS_HUB_ALLOWED_HOSTS does not name",
            )
    return found


def listener_url(callback: str, event_type: str) -> str:
    """TMF's convention: the callback is the listener's base; each notification goes to
    `{callback}/listener/{lowerCamelEventType}` (the callback's query string is kept)."""
    parts = urlsplit(callback)
    path = f"{parts.path.rstrip('/')}/listener/{listener_name(event_type)}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


# ========================================================================= the store
class HubStore:
    """Subscriptions as the API and operators see them (bound parameters throughout)."""

    def __init__(self, db: ReadDb) -> None:
        self.db = db

    def _ts(self, value: datetime | None) -> Any:
        return self.db.adapt(value, "timestamptz")

    def register(
        self, callback: str, query: str | None, actor: str, now: datetime | None = None
    ) -> dict[str, Any]:
        """A new subscription; it receives the notifications of events committed after
        this moment (its cursor starts at the log head)."""
        now = now or utcnow()
        sub_id = str(uuid4())
        head = EventLog(self.db, None).head()  # type: ignore[arg-type]
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO {SUBSCRIPTIONS.name} (id, callback, query, actor, created_at, "
                f"state, cursor_position, cursor_seq, failures, delivered) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0)",
                (sub_id, callback, query, actor, self._ts(now), ACTIVE, head, END_OF_POSITION),
            )
        found = self.get(sub_id)
        assert found is not None
        return found

    def get(self, sub_id: str) -> dict[str, Any] | None:
        rows = self._select("WHERE s.id = %s", (sub_id,))
        return rows[0] if rows else None

    def list(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        where = "" if include_deleted else f"WHERE s.state <> '{DELETED}'"
        return self._select(where, ())

    def _select(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        cols = SUBSCRIPTIONS.column_names
        rows = self.db.fetchall(
            f"SELECT {', '.join('s.' + c for c in cols)}, "
            f"(SELECT COUNT(*) FROM {DELIVERIES.name} d WHERE d.subscription_id = s.id "
            f" AND d.delivered_at IS NULL), "
            f"(SELECT MIN(d.created_at) FROM {DELIVERIES.name} d "
            f" WHERE d.subscription_id = s.id AND d.delivered_at IS NULL) "
            f"FROM {SUBSCRIPTIONS.name} s {where} ORDER BY s.created_at, s.id",
            params,
        )
        types = SUBSCRIPTIONS.types()
        found = []
        for row in rows:
            item = {c: self.db.decode(v, types[c]) for c, v in zip(cols, row, strict=False)}
            item["last_error"] = public_error(item["last_error"])
            item["pending"] = int(row[len(cols)] or 0)
            item["oldest_pending_at"] = self.db.decode(row[len(cols) + 1], "timestamptz")
            found.append(item)
        return found

    def delete(self, sub_id: str, now: datetime | None = None) -> bool:
        """Unregister: no more deliveries; its queue is pruned by the worker."""
        with self.db.transaction():
            done = self.db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET state = %s, deleted_at = %s "
                f"WHERE id = %s AND state <> %s",
                (DELETED, self._ts(now or utcnow()), sub_id, DELETED),
            )
            return bool(done.rowcount)

    def resume(self, sub_id: str, now: datetime | None = None) -> bool:
        """Reactivate a suspended (or backing-off) listener: its whole backlog is due now,
        in order, with fresh attempt counts."""
        now = now or utcnow()
        with self.db.transaction():
            done = self.db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET state = %s, failures = 0, "
                f"failing_since = NULL, retry_at = NULL, suspended_at = NULL "
                f"WHERE id = %s AND state IN (%s, %s)",
                (ACTIVE, sub_id, ACTIVE, SUSPENDED),
            )
            if not done.rowcount:
                return False
            self.db.execute(
                f"UPDATE {DELIVERIES.name} SET next_attempt_at = %s, attempts = 0 "
                f"WHERE subscription_id = %s AND delivered_at IS NULL",
                (self._ts(now), sub_id),
            )
        log.info(
            "hub listener %s resumed: its backlog is due now",
            sub_id,
            extra={"subscription_id": sub_id},
        )
        return True


# ======================================================================== the worker
@dataclass(frozen=True)
class HubConfig:
    allowed: AllowList = field(default_factory=AllowList)
    timeout: float = 5.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    suspend_after_failures: int = 20
    suspend_after_seconds: float = 3600.0
    poll: float = 0.5
    concurrency: int = 4
    retention: timedelta = timedelta(hours=24)
    public_base_url: str | None = None
    lease_seconds: float = 30.0
    round_size: int = 100  # notifications per listener per round
    verify: Any = True  # httpx `verify` for https listeners (an ssl.SSLContext in tests)
    fan_out_size: int = 1000  # outbox rows per subscription per transaction

    @classmethod
    def from_settings(cls, settings: Settings) -> HubConfig:
        return cls(
            allowed=AllowList.parse(settings.hub_allowed_hosts),
            timeout=settings.hub_timeout_seconds,
            backoff_base=settings.hub_backoff_base_seconds,
            backoff_max=settings.hub_backoff_max_seconds,
            suspend_after_failures=settings.hub_suspend_after_failures,
            suspend_after_seconds=settings.hub_suspend_after_seconds,
            poll=settings.hub_poll_seconds,
            concurrency=settings.hub_concurrency,
            retention=timedelta(hours=settings.hub_retention_hours),
            public_base_url=settings.public_base_url,
            lease_seconds=max(30.0, settings.hub_timeout_seconds * 6),
        )

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next attempt after `attempts` failed ones: base * 2^(n-1),
        at most `backoff_max`."""
        exponent = min(max(attempts - 1, 0), 62)
        return timedelta(seconds=min(self.backoff_base * (2**exponent), self.backoff_max))


@dataclass(frozen=True)
class _Due:
    position: int
    seq: int
    order_id: str
    event_type: str
    attempts: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Result:
    due: _Due
    ok: bool
    error: str | None
    unreachable: bool  # the listener could not be reached (or may not be called) at all
    at: datetime


@dataclass
class _Round:
    subscription_id: str
    future: Future[list[_Result]]


class DeliveryWorker:
    """Delivers the outbox to listeners. One worker process at a time holds the delivery
    lease (`hub_worker`); the others stand by. HTTP calls run on a small thread pool, one
    round per listener at a time, so a slow listener delays nobody else."""

    LEASE = "delivery"

    def __init__(
        self,
        config: HubConfig,
        connect: Callable[[], ReadDb],
        client: httpx.Client | None = None,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.connect = connect
        self.db: ReadDb | None = None
        self.client = client or self._new_client()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.pool = ThreadPoolExecutor(
            max_workers=config.concurrency, thread_name_prefix="hub-delivery"
        )
        self.rounds: dict[str, _Round] = {}
        self.stopping = threading.Event()
        self._lease_until: datetime | None = None
        self._pruned_at: datetime | None = None
        self._filters: dict[str | None, Filter] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, connect: Callable[[], ReadDb], **kw: Any
    ) -> DeliveryWorker:
        return cls(HubConfig.from_settings(settings), connect, **kw)

    # ------------------------------------------------------------------ the loop
    def run(
        self, stopping: threading.Event, on_error: Callable[[Exception], None] | None = None
    ) -> None:
        """Deliver until `stopping` is set; survives database and listener failures."""
        try:
            while not stopping.is_set():
                try:
                    busy = self.tick()
                except Exception as e:  # the database restarting, a lost connection...
                    (on_error or (lambda x: log.exception("hub delivery error")))(e)
                    self._drop_db()
                    stopping.wait(1.0)
                    continue
                if busy:
                    continue
                pending = [r.future for r in self.rounds.values()]
                if pending:
                    wait(pending, timeout=self.config.poll, return_when=FIRST_COMPLETED)
                else:
                    stopping.wait(self.config.poll)
        finally:
            self.close()

    def tick(self) -> bool:
        """One pass: record finished rounds, fan out, start due rounds. True if it did
        something (the caller loops again at once)."""
        db = self._db()
        busy = self._collect(db)
        now = utcnow()
        if not self._lease(db, now):
            return busy
        busy |= self._fan_out(db) > 0
        if self._pruned_at is None or now - self._pruned_at > timedelta(minutes=1):
            self._prune(db, now)
            self._pruned_at = now
        for sub_id, callback, retry_at, failures in db.fetchall(
            f"SELECT id, callback, retry_at, failures FROM {SUBSCRIPTIONS.name} "
            f"WHERE state = %s ORDER BY id",
            (ACTIVE,),
        ):
            if sub_id in self.rounds or self.stopping.is_set():
                continue
            retry_at = db.decode(retry_at, "timestamptz")
            if retry_at is not None and retry_at > now:
                continue
            plan = self._plan(db, sub_id, now)
            if plan:
                self.rounds[sub_id] = _Round(
                    sub_id,
                    self.pool.submit(self._deliver, sub_id, callback, plan, int(failures or 0)),
                )
                busy = True
        return busy

    def drain(self, timeout: float = 10.0) -> None:
        """Tick until nothing is due or in flight (tests and `--once` style use)."""
        deadline = utcnow() + timedelta(seconds=timeout)
        while utcnow() < deadline:
            if not self.tick() and not self.rounds:
                return
            if self.rounds:
                wait(
                    [r.future for r in self.rounds.values()],
                    timeout=0.5,
                    return_when=FIRST_COMPLETED,
                )

    def close(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        try:
            db = self._db()
            self._collect(db)
            if self._lease_until is not None:  # hand the lease over at once
                with db.transaction():
                    db.execute(
                        f"UPDATE {WORKERS.name} SET lease_until = NULL "
                        f"WHERE name = %s AND owner = %s",
                        (self.LEASE, self.owner),
                    )
        except Exception:
            log.warning("hub delivery worker could not record its last round", exc_info=True)
        finally:
            self._drop_db()
            self.client.close()

    # ---------------------------------------------------------------- the steps
    def _db(self) -> ReadDb:
        if self.db is None:
            self.db = self.connect()
        return self.db

    def _drop_db(self) -> None:
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
        self.db = None
        self._lease_until = None

    def _lease(self, db: ReadDb, now: datetime) -> bool:
        """Hold (or renew, once half spent) the delivery lease; False: another worker has it."""
        lease = timedelta(seconds=self.config.lease_seconds)
        if self._lease_until is not None and self._lease_until - now > lease / 2:
            return True
        until = now + lease
        with db.transaction():
            got = db.execute(
                f"INSERT INTO {WORKERS.name} (name, owner, lease_until) VALUES (%s, %s, %s) "
                f"ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                f"lease_until = excluded.lease_until WHERE {WORKERS.name}.owner = "
                f"excluded.owner OR {WORKERS.name}.lease_until IS NULL "
                f"OR {WORKERS.name}.lease_until < %s",
                (
                    self.LEASE,
                    self.owner,
                    db.adapt(until, "timestamptz"),
                    db.adapt(now, "timestamptz"),
                ),
            )
        self._lease_until = until if got.rowcount == 1 else None
        return self._lease_until is not None

    def _filter(self, query: str | None) -> Filter:
        if query not in self._filters:
            try:
                self._filters[query] = Filter.parse(query)
            except QueryError:  # validated at registration; never deliver on a bad filter
                self._filters[query] = Filter(event_types=frozenset())
        return self._filters[query]

    def _fan_out(self, db: ReadDb) -> int:
        """New outbox rows into each live subscription's queue (filtered); returns rows
        looked at. Suspended listeners keep queueing: their backlog is kept."""
        top = db.fetchone(f"SELECT MAX(position) FROM {OUTBOX}")
        if top is None or top[0] is None:
            return 0
        seen = 0
        now = db.adapt(utcnow(), "timestamptz")
        for sub_id, query, position, seq in db.fetchall(
            f"SELECT id, query, cursor_position, cursor_seq FROM {SUBSCRIPTIONS.name} "
            f"WHERE state IN (%s, %s)",
            (ACTIVE, SUSPENDED),
        ):
            if int(top[0]) < int(position) or (
                int(top[0]) == int(position) and int(seq) >= END_OF_POSITION
            ):
                continue
            rows = db.fetchall(
                f"SELECT position, seq, order_id, event_id, event_type, payload FROM {OUTBOX} "
                f"WHERE (position, seq) > (%s, %s) ORDER BY position, seq LIMIT %s",
                (position, seq, self.config.fan_out_size),
            )
            if not rows:
                continue
            wanted = self._filter(query)
            queued = [
                (sub_id, r[0], r[1], db.adapt(UUID(str(r[2])), "uuid"), r[3], r[4], now, 0, now)
                for r in rows
                if wanted.matches(db.decode(r[5], "json"))
            ]
            last = rows[-1]
            with db.transaction():
                moved = db.execute(
                    f"UPDATE {SUBSCRIPTIONS.name} SET cursor_position = %s, cursor_seq = %s "
                    f"WHERE id = %s AND cursor_position = %s AND cursor_seq = %s",
                    (last[0], last[1], sub_id, position, seq),
                )
                if moved.rowcount == 1 and queued:
                    db.executemany(
                        f"INSERT INTO {DELIVERIES.name} (subscription_id, position, seq, "
                        f"order_id, event_id, event_type, created_at, attempts, "
                        f"next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        f"ON CONFLICT (subscription_id, position, seq) DO NOTHING",
                        queued,
                    )
            seen += len(rows)
        return seen

    def _plan(self, db: ReadDb, sub_id: str, now: datetime) -> list[_Due]:
        """What to send in this round, in log order: for each order whose oldest pending
        notification is due, its pending notifications from the oldest on."""
        rows = db.fetchall(
            f"SELECT d.position, d.seq, d.order_id, d.event_type, d.attempts, "
            f"d.next_attempt_at, o.payload FROM {DELIVERIES.name} d JOIN {OUTBOX} o "
            f"ON o.position = d.position AND o.seq = d.seq "
            f"WHERE d.subscription_id = %s AND d.delivered_at IS NULL "
            f"ORDER BY d.position, d.seq LIMIT %s",
            (sub_id, self.config.round_size),
        )
        plan: list[_Due] = []
        blocked: set[str] = set()
        started: set[str] = set()
        for position, seq, order_id, event_type, attempts, next_at, payload in rows:
            order = str(order_id)
            if order in blocked:
                continue
            next_at = db.decode(next_at, "timestamptz")
            if order not in started and next_at is not None and next_at > now:
                blocked.add(order)  # its oldest is backing off: the rest of it waits
                continue
            started.add(order)
            plan.append(
                _Due(
                    int(position),
                    int(seq),
                    order,
                    event_type,
                    int(attempts or 0),
                    db.decode(payload, "json"),
                )
            )
        return plan

    def _deliver(
        self, sub_id: str, callback: str, plan: list[_Due], failures: int = 0
    ) -> list[_Result]:
        """One round for one listener (on the pool, no database): check the callback and
        resolve it once (every address checked, `resolve`), then POST in order to the
        checked addresses only; a failed notification holds back the rest of its order;
        an unreachable (or refused) listener ends the round, and so does reaching the
        consecutive failures that suspend it."""
        if not plan or self.stopping.is_set():
            return []
        try:
            target = parse_callback(callback)
            addresses = resolve(target, self.config.allowed, self.config.timeout)
        except CallbackError as e:  # the policy (or the allow-list) changed since
            log.warning(
                "hub listener %s not called: %s", sub_id, e, extra={"subscription_id": sub_id}
            )
            return [_Result(plan[0], False, REFUSED, True, utcnow())]
        except Exception as e:  # the name does not resolve (in time)
            log.info(
                "hub listener %s unreachable: %s",
                sub_id,
                _detail(e),
                extra={"subscription_id": sub_id},
            )
            return [_Result(plan[0], False, UNREACHABLE, True, utcnow())]
        # A TLS connection is verified for one name: https names get a client of their own
        # for the round, so that no pooled connection is shared between two names.
        own = target.scheme == "https" and target.address is None
        client = self._new_client() if own else self.client
        results: list[_Result] = []
        failed: set[str] = set()
        limit = self.config.suspend_after_failures
        budget = utcnow() + timedelta(seconds=self.config.lease_seconds / 2)
        try:
            for due in plan:
                if self.stopping.is_set() or utcnow() > budget:
                    break
                if due.order_id in failed:
                    continue
                ok, error, unreachable = self._post(client, sub_id, target, addresses, due)
                results.append(_Result(due, ok, error, unreachable, utcnow()))
                failures = 0 if ok else failures + 1
                if not ok:
                    failed.add(due.order_id)
                    if unreachable or (limit and failures >= limit):
                        break
        finally:
            if own:
                client.close()
        return results

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.config.timeout),
            follow_redirects=False,
            trust_env=False,
            verify=self.config.verify,
            headers={"User-Agent": "serviceorders-hub/1", "Accept": "application/json"},
        )

    def _post(
        self,
        client: httpx.Client,
        sub_id: str,
        target: Target,
        addresses: list[IPAddress],
        due: _Due,
    ) -> tuple[bool, str | None, bool]:
        """POST one notification to the checked addresses (the next one only when the
        connection is refused); the error is `unreachable` or `HTTP <status>`, the detail
        goes to the log."""
        body = absolute_hrefs(due.payload, self.config.public_base_url)
        headers = {"X-Event-Id": str(body.get("eventId")), "Host": target.netloc}
        extensions = (
            {"sni_hostname": target.host}
            if target.scheme == "https" and target.address is None
            else {}
        )
        problem: Exception | None = None
        for address in addresses[:3]:
            try:
                with client.stream(
                    "POST",
                    listener_url(target.pinned(address), due.event_type),
                    json=body,
                    headers=headers,
                    extensions=extensions,
                ) as reply:
                    status = reply.status_code
            except httpx.ConnectError as e:  # refused, no route...: the next address
                problem = e
                continue
            except Exception as e:  # timeouts, TLS, protocol errors...; never a crash
                problem = e
                break
            if 200 <= status < 300:
                return True, None, False
            return False, f"HTTP {status}", False
        log.info(
            "hub listener %s unreachable at %s: %s",
            sub_id,
            target.netloc,
            _detail(problem),
            extra={"subscription_id": sub_id},
        )
        return False, UNREACHABLE, True

    def _collect(self, db: ReadDb) -> bool:
        """Record every finished round: deliveries, backoff, the listener's health."""
        busy = False
        for sub_id, done in [(s, r) for s, r in self.rounds.items() if r.future.done()]:
            del self.rounds[sub_id]
            try:
                results = done.future.result()
            except Exception:  # a bug, not a listener failure: the rows stay pending
                log.exception("hub delivery round failed")
                continue
            if results:
                self._record(db, sub_id, results)
                busy = True
        return busy

    def _record(self, db: ReadDb, sub_id: str, results: list[_Result]) -> None:
        cfg = self.config
        ts = lambda v: db.adapt(v, "timestamptz")  # noqa: E731
        with db.transaction():
            row = db.fetchone(
                f"SELECT failures, failing_since FROM {SUBSCRIPTIONS.name} WHERE id = %s", (sub_id,)
            )
            failures = int(row[0] or 0) if row else 0
            failing_since = db.decode(row[1], "timestamptz") if row else None
            delivered, last_ok, last_error = 0, None, None
            for r in results:
                key = (sub_id, r.due.position, r.due.seq)
                if r.ok:
                    db.execute(
                        f"UPDATE {DELIVERIES.name} SET attempts = attempts + 1, "
                        f"delivered_at = %s, last_attempt_at = %s, last_error = NULL "
                        f"WHERE subscription_id = %s AND position = %s AND seq = %s",
                        (ts(r.at), ts(r.at), *key),
                    )
                    delivered += 1
                    last_ok = r.at
                    failures, failing_since = 0, None
                else:
                    attempts = r.due.attempts + 1
                    db.execute(
                        f"UPDATE {DELIVERIES.name} SET attempts = %s, next_attempt_at = %s, "
                        f"last_error = %s, last_attempt_at = %s "
                        f"WHERE subscription_id = %s AND position = %s AND seq = %s "
                        f"AND delivered_at IS NULL",
                        (attempts, ts(r.at + cfg.backoff(attempts)), r.error, ts(r.at), *key),
                    )
                    failures += 1
                    failing_since = failing_since or r.at
                    last_error = r.error
            last = results[-1]
            now = last.at
            retry_at = now + cfg.backoff(failures) if (not last.ok and last.unreachable) else None
            suspend = failures > 0 and (
                (cfg.suspend_after_failures and failures >= cfg.suspend_after_failures)
                or (
                    cfg.suspend_after_seconds
                    and failing_since is not None
                    and (now - failing_since).total_seconds() >= cfg.suspend_after_seconds
                )
            )
            if suspend:
                log.warning(
                    "hub listener %s suspended after %d consecutive failures (%s)",
                    sub_id,
                    failures,
                    last_error,
                    extra={"subscription_id": sub_id},
                )
            db.execute(
                f"UPDATE {SUBSCRIPTIONS.name} SET failures = %s, failing_since = %s, "
                f"retry_at = %s, last_attempt_at = %s, "
                f"last_error = COALESCE(%s, last_error), "
                f"last_delivered_at = COALESCE(%s, last_delivered_at), "
                f"delivered = delivered + %s, state = %s, suspended_at = %s "
                f"WHERE id = %s AND state = %s",
                (
                    failures,
                    ts(failing_since),
                    ts(retry_at),
                    ts(now),
                    last_error,
                    ts(last_ok),
                    delivered,
                    SUSPENDED if suspend else ACTIVE,
                    ts(now) if suspend else None,
                    sub_id,
                    ACTIVE,
                ),
            )

    def _prune(self, db: ReadDb, now: datetime) -> None:
        """Delivered rows older than the retention, and the queues of deleted listeners."""
        with db.transaction():
            db.execute(
                f"DELETE FROM {DELIVERIES.name} WHERE delivered_at IS NOT NULL "
                f"AND delivered_at < %s",
                (db.adapt(now - self.config.retention, "timestamptz"),),
            )
            db.execute(
                f"DELETE FROM {DELIVERIES.name} WHERE subscription_id IN "
                f"(SELECT id FROM {SUBSCRIPTIONS.name} WHERE state = %s)",
                (DELETED,),
            )


def _detail(error: Exception | None) -> str:
    """An error for the log (operators only): its type and text, shortened."""
    if error is None:
        return "no address to connect to"
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return f"timeout ({type(error).__name__})"
    return f"{type(error).__name__}: {error}"[:300]


def start_worker(
    settings: Settings,
    connect: Callable[[], ReadDb],
    stopping: threading.Event,
    on_error: Callable[[Exception], None] | None = None,
) -> threading.Thread | None:
    """The delivery worker in a daemon thread (None when SERVICEORDERS_HUB_DELIVERY=no)."""
    if not settings.hub_delivery:
        return None
    worker = DeliveryWorker.from_settings(settings, connect)
    from serviceorders.support.logs import worker as logged

    thread = threading.Thread(
        target=logged("hub delivery", worker.run),
        args=(stopping, on_error),
        name="hub-delivery",
        daemon=True,
    )
    thread.start()
    return thread

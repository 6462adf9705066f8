"""Callbacks are safe by default (docs/notifications.md): `parse_callback`, `AllowList`,
`check_callback` and `resolve` parse a callback once and strictly, call public addresses
only unless the allow-list (SERVICEORDERS_HUB_ALLOWED_HOSTS) names an address, resolve
names once per round and check every address, and pin the connection to a checked address;
operators' views say only `unreachable`, `refused by policy` or `HTTP <status>`
(`public_error`). The host grammar and the allow-list are support/hosts.py (settings reads
them when a process starts).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from serviceorders.projections.notifications import (
    listener_name,
)
from serviceorders.support.hosts import (
    _DIGITS,
    AllowList,
    CallbackError,
    IPAddress,
    _is_localhost,
    canonical_host,
)
from serviceorders.support.hosts import address_class as address_class

# What the admin view and `hub list` show as a delivery's error: never more than this (a
# port scanner learns nothing from "unreachable"); the detail goes to the log.
UNREACHABLE = "unreachable"
REFUSED = "refused by policy"
_SHOWN_ERROR = re.compile(r"HTTP [1-5][0-9][0-9]")


def public_error(error: str | None) -> str | None:
    """A delivery error as operators' views show it: `HTTP <status>` when a listener
    answered, `refused by policy`, else `unreachable` (rows written by older versions
    carried exception text: it is not shown)."""
    if error is None or error == REFUSED or _SHOWN_ERROR.fullmatch(error):
        return error
    return UNREACHABLE


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

"""Callbacks are safe by default (docs/notifications.md): `parse_callback`, `AllowList`,
`check_callback` and `resolve` parse a callback once and strictly, call public addresses
only unless the allow-list (SERVICEORDERS_HUB_ALLOWED_HOSTS) names an address, resolve
names once per round and check every address, and pin the connection to a checked address;
operators' views say only `unreachable`, `refused by policy` or `HTTP <status>`
(`public_error`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import idna
from serviceorders.projections.notifications import (
    listener_name,
)

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

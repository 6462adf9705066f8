"""Host names, IP addresses and the hub's allow-list (SERVICEORDERS_HUB_ALLOWED_HOSTS):
`canonical_host` reads a host strictly, `address_class` says why an address is not called by
default, `AllowList` parses and applies the allow-list (docs/notifications.md).

Here, below settings, because `Settings.from_env` refuses a malformed allow-list when a
process starts (settings imports nothing above support: the rooms' layers, pyproject's
[tool.importlinter]); the callback policy that uses them is notifications/callbacks.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import idna

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

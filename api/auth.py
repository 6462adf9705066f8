"""API keys: each identifies an actor with a role; compared in constant time, never logged."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from serviceorders.api.errors import ApiError
from serviceorders.domain.values import Actor, Role

log = logging.getLogger(__name__)
API_ROLES: dict[str, Role] = {
    "integrator": Role.UPSTREAM,
    "agent": Role.AGENT,
    "manager": Role.MANAGER,
    "fulfilment": Role.FULFILMENT,
    "auditor": Role.AUDITOR,
    "admin": Role.OPERATOR,
}


@dataclass(frozen=True)
class ApiKey:
    actor: str
    role: str
    key: str

    def __repr__(self) -> str:  # keys never reach logs or tracebacks
        return f"ApiKey(actor={self.actor!r}, role={self.role!r}, key='***')"


class KeyError_(ValueError):
    pass


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """`actor:role:key` entries, separated by commas or new lines; `#` starts a comment."""
    keys = []
    for number, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise KeyError_(f"{where}: entry {number} is not actor:role:key")
        actor, role, key = (p.strip() for p in parts)
        if role not in API_ROLES:
            raise KeyError_(
                f"{where}: entry {number} has unknown role {role!r} (one of {', '.join(API_ROLES)})"
            )
        if len(key) < 16:
            raise KeyError_(f"{where}: entry {number}: keys must be at least 16 characters")
        keys.append(ApiKey(actor, role, key))
    return keys


def load_keys(inline: str | None, file: Path | None) -> list[ApiKey]:
    keys = parse_keys(inline, "SERVICEORDERS_API_KEYS") if inline else []
    if file:
        keys += parse_keys(file.read_text(encoding="utf-8"), str(file))
    return keys


ANONYMOUS = Actor(id="anonymous", role=Role.OPERATOR)


class Authenticator:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @property
    def open(self) -> bool:
        """No keys configured: every request has full access (loopback only)."""
        return not self.keys

    def actor(self, request: Request) -> Actor:
        if self.open:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "unauthenticated",
                "Unauthorized",
                "send an API key as 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = None
        for key in self.keys:  # compare with every key, in constant time each
            if hmac.compare_digest(key.key.encode(), token.strip().encode()):
                found = key
        if found is None:
            log.debug("refused an unknown API key")
            raise ApiError(
                401,
                "unauthenticated",
                "Unauthorized",
                "unknown API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        log.debug("authenticated %r (%s)", found, found.role)  # the key is never shown
        return Actor(id=found.actor, role=API_ROLES[found.role])

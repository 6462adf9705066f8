"""Console sessions: a signed cookie naming the actor, never holding the API key.

The cookie is `base64url(payload).base64url(HMAC-SHA256(secret, payload))`; the payload is
{actor, role, fingerprint of the key (an HMAC of it), expiry, CSRF token}. Every request
checks the signature, the expiry and that a configured key still has that fingerprint, so
a revoked or replaced key ends its sessions at once. A visitor who has not signed in holds
an anonymous session too: it carries the CSRF token of the sign-in form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from ...domain.values import Actor
from ..auth import ANONYMOUS, API_ROLES, ApiKey, Authenticator

COOKIE = "serviceorders_console"
LIFETIME_SECONDS = 8 * 3600
# Without SERVICEORDERS_CONSOLE_SECRET: sessions end on restart and hold on this process only.
_PROCESS_SECRET = secrets.token_bytes(32)


def secret_of(configured: str | None) -> bytes:
    return configured.encode() if configured else _PROCESS_SECRET


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: float
    actor: str | None = None  # None: not signed in
    role: str | None = None  # the API role name (agent, manager, ...)
    fingerprint: str | None = None
    open_mode: bool = False  # issued while no keys were configured: the anonymous operator

    @property
    def signed_in(self) -> bool:
        return self.actor is not None or self.open_mode


class Sessions:
    """Issues and reads session cookies against the configured keys."""

    def __init__(self, secret: bytes, auth: Authenticator) -> None:
        self.secret, self.auth = secret, auth

    # ------------------------------------------------------------------ issuing
    def anonymous(self) -> Session:
        return Session(csrf=secrets.token_urlsafe(24), expires=time.time() + LIFETIME_SECONDS,
                       open_mode=self.auth.open)

    def for_key(self, key: ApiKey) -> Session:
        return Session(csrf=secrets.token_urlsafe(24), expires=time.time() + LIFETIME_SECONDS,
                       actor=key.actor, role=key.role, fingerprint=self.fingerprint(key.key))

    def fingerprint(self, key: str) -> str:
        return hmac.new(self.secret, b"api-key:" + key.encode(), hashlib.sha256).hexdigest()

    def find_key(self, token: str) -> ApiKey | None:
        """The configured key equal to `token`, compared with every key in constant time."""
        found = None
        for key in self.auth.keys:
            if hmac.compare_digest(key.key.encode(), token.encode()):
                found = key
        return found

    # ------------------------------------------------------------------ cookies
    def encode(self, session: Session) -> str:
        payload = json.dumps({"c": session.csrf, "e": int(session.expires), "a": session.actor,
                              "r": session.role, "f": session.fingerprint,
                              "o": session.open_mode}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cookie: str | None) -> tuple[Session | None, str | None]:
        """(the session, None) or (None, why it is not valid: tampered, expired, revoked)."""
        if not cookie:
            return None, None
        try:
            payload_part, signature_part = cookie.split(".", 1)
            payload, signature = _unb64(payload_part), _unb64(signature_part)
        except ValueError:
            return None, "tampered"
        if not hmac.compare_digest(self._sign(payload), signature):
            return None, "tampered"
        try:
            data = json.loads(payload)
            session = Session(csrf=str(data["c"]), expires=float(data["e"]), actor=data["a"],
                              role=data["r"], fingerprint=data["f"], open_mode=bool(data["o"]))
        except (ValueError, KeyError, TypeError):
            return None, "tampered"
        if session.expires < time.time():
            return None, "expired"
        if session.open_mode != self.auth.open:  # keys were configured or removed since
            return None, "revoked"
        if session.actor is not None and not self._key_still_there(session):
            return None, "revoked"
        return session, None

    def actor(self, session: Session) -> Actor | None:
        if session.open_mode:
            return ANONYMOUS
        if session.actor is None or session.role not in API_ROLES:
            return None
        return Actor(id=session.actor, role=API_ROLES[session.role])

    def _key_still_there(self, session: Session) -> bool:
        return any(key.actor == session.actor and key.role == session.role
                   and hmac.compare_digest(self.fingerprint(key.key), session.fingerprint or "")
                   for key in self.auth.keys)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, b"session:" + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise ValueError("not base64") from e

"""Console sessions: a signed cookie naming the actor, never holding the API key, and a
server-side record of each signed-in session.

The cookie is `base64url(payload).base64url(HMAC-SHA256(secret, payload))`; the payload is
{session id, actor, role, fingerprint of the key (an HMAC of it), expiry, CSRF token}. Every
request checks the signature, the expiry and that a configured key still has that
fingerprint, so a revoked or replaced key ends its sessions at once; and, for a signed-in
session, that its row in `console_session` (the database every server process shares) is
still open: not signed out, not idle for longer than SERVICEORDERS_CONSOLE_IDLE_MINUTES.
A visitor who has not signed in holds an anonymous session too (no row): it carries the
CSRF token of the sign-in form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from serviceorders.api.auth import ANONYMOUS, API_ROLES, ApiKey, Authenticator
from serviceorders.domain.values import Actor
from serviceorders.storage.db import ReadDb

COOKIE = "serviceorders_console"
LIFETIME_SECONDS = 8 * 3600
TOUCH_SECONDS = 60.0  # last_seen_at is written at most this often (a quarter of a short idle)
PRUNE_AFTER_SECONDS = 24 * 3600  # rows ended or expired this long ago go at the next sign-in
TABLE = "console_session"  # made by migration 3 (runtime/schema.py)
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
    id: str | None = None  # the server-side record of a signed-in session

    @property
    def signed_in(self) -> bool:
        return self.actor is not None or self.open_mode


class StoreUnavailable(Exception):
    """The sessions' table could not be read or written (the database is down)."""


class SessionStore:
    """The rows of `console_session`: one per signed-in session, opened at sign-in, ended at
    sign-out; a session idle for `idle_seconds` (no request) is over too. Each check is one
    primary-key lookup; `last_seen_at` is written at most every TOUCH_SECONDS."""

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[ReadDb]],
        idle_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connect, self.idle_seconds, self.clock = connect, idle_seconds, clock
        self.touch_seconds = min(TOUCH_SECONDS, idle_seconds / 4)

    def open(self, session: Session) -> None:
        """Record a new session, and delete those ended or expired over a day ago."""
        now = self.clock()
        old = _at(now - PRUNE_AFTER_SECONDS)
        with self._db() as db, db.transaction():
            db.execute(
                f"DELETE FROM {TABLE} WHERE expires_at < %s OR ended_at < %s OR last_seen_at < %s",
                [db.adapt(old, "timestamptz")] * 3,
            )
            db.execute(
                f"INSERT INTO {TABLE} (id, actor, role, created_at, last_seen_at, "
                "expires_at, ended_at) VALUES (%s, %s, %s, %s, %s, %s, NULL)",
                (
                    session.id,
                    session.actor,
                    session.role,
                    *(db.adapt(_at(t), "timestamptz") for t in (now, now, session.expires)),
                ),
            )

    def check(self, session_id: str | None) -> str | None:
        """None if the session is open (its idle clock restarted), else why it is not:
        signed_out, idle, expired, or ended (no such session: pruned, or another database)."""
        if not session_id:
            return "ended"
        now = self.clock()
        with self._db() as db:
            row = db.fetchone(
                f"SELECT last_seen_at, expires_at, ended_at FROM {TABLE} WHERE id = %s",
                (session_id,),
            )
            if row is None:
                return "ended"
            last_seen, expires, ended = (_epoch(db, value) for value in row)
            if ended is not None:
                return "signed_out"
            if expires is not None and expires <= now:
                return "expired"
            if last_seen is None or now - last_seen >= self.idle_seconds:
                return "idle"
            if now - last_seen >= self.touch_seconds:  # never revives an idle session
                db.execute(
                    f"UPDATE {TABLE} SET last_seen_at = %s WHERE id = %s "
                    "AND ended_at IS NULL AND last_seen_at > %s",
                    (
                        db.adapt(_at(now), "timestamptz"),
                        session_id,
                        db.adapt(_at(now - self.idle_seconds), "timestamptz"),
                    ),
                )
        return None

    def end(self, session_id: str) -> None:
        with self._db() as db:
            db.execute(
                f"UPDATE {TABLE} SET ended_at = %s WHERE id = %s AND ended_at IS NULL",
                (db.adapt(_at(self.clock()), "timestamptz"), session_id),
            )

    @contextmanager
    def _db(self) -> Iterator[ReadDb]:
        """A connection whose every failure is StoreUnavailable (an error page, not a 500)."""
        try:
            with self.connect() as db:
                yield db
        except Exception as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from e


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _epoch(db: ReadDb, value: object) -> float | None:
    if value is None:
        return None
    when = db.decode(value, "timestamptz")
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Sessions:
    """Issues and reads session cookies against the configured keys and the store."""

    def __init__(self, secret: bytes, auth: Authenticator, store: SessionStore) -> None:
        self.secret, self.auth, self.store = secret, auth, store

    # ------------------------------------------------------------------ issuing
    def anonymous(self) -> Session:
        return Session(
            csrf=secrets.token_urlsafe(24),
            expires=self.store.clock() + LIFETIME_SECONDS,
            open_mode=self.auth.open,
        )

    def for_key(self, key: ApiKey) -> Session:
        """A new signed-in session (a new id, a new CSRF token), recorded in the store."""
        session = Session(
            csrf=secrets.token_urlsafe(24),
            expires=self.store.clock() + LIFETIME_SECONDS,
            actor=key.actor,
            role=key.role,
            fingerprint=self.fingerprint(key.key),
            id=secrets.token_urlsafe(24),
        )
        self.store.open(session)
        return session

    def end(self, session: Session) -> None:
        """Sign-out: the session's row is ended, so its cookie is refused everywhere."""
        if session.id:
            self.store.end(session.id)

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
        payload = json.dumps(
            {
                "c": session.csrf,
                "e": int(session.expires),
                "a": session.actor,
                "r": session.role,
                "f": session.fingerprint,
                "o": session.open_mode,
                "s": session.id,
            },
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cookie: str | None) -> tuple[Session | None, str | None]:
        """(the session, None) or (None, why it is not valid: tampered, expired, revoked,
        or, from the store, signed_out, idle, ended). Raises StoreUnavailable."""
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
            session = Session(
                csrf=str(data["c"]),
                expires=float(data["e"]),
                actor=data["a"],
                role=data["r"],
                fingerprint=data["f"],
                open_mode=bool(data["o"]),
                id=data.get("s"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, "tampered"
        if session.expires < self.store.clock():
            return None, "expired"
        if session.open_mode != self.auth.open:  # keys were configured or removed since
            return None, "revoked"
        if session.actor is not None and not self._key_still_there(session):
            return None, "revoked"
        if session.actor is not None:
            why = self.store.check(session.id)
            if why is not None:
                return None, why
        return session, None

    def actor(self, session: Session) -> Actor | None:
        if session.open_mode:
            return ANONYMOUS
        if session.actor is None or session.role not in API_ROLES:
            return None
        return Actor(id=session.actor, role=API_ROLES[session.role])

    def _key_still_there(self, session: Session) -> bool:
        return any(
            key.actor == session.actor
            and key.role == session.role
            and hmac.compare_digest(
                self.fingerprint(key.key).encode(), str(session.fingerprint or "").encode()
            )
            for key in self.auth.keys
        )

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, b"session:" + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise ValueError("not base64") from e

"""The keys that seal personal data, one per customer (scope), and the cipher.

`Vault` implements the domain's `Sealer` (domain/privacy.py): AES-256-GCM with a random
nonce and the scope as associated data; the token is `pii:1:<scope>:<nonce+ciphertext>`
(URL-safe base64). Keys live in `pii_key`, in the engine's database. Erasing a customer
deletes the key (the row stays, recording who erased it and when): every token of that
customer then reveals as `[erased]`, while the stored events, and so the hash chain, stay
exactly as they were.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from serviceorders.domain.errors import InvalidCommand
from serviceorders.domain.privacy import ERASED, TOKEN_PREFIX
from serviceorders.storage.db import RECONNECT_ATTEMPTS, ReadDb, reconnect_attempts, unreachable

POSTGRES_DDL = (
    """CREATE TABLE IF NOT EXISTS pii_key (
        scope text PRIMARY KEY, key bytea, created_at timestamptz NOT NULL,
        erased_at timestamptz, erased_by text)""",
    """CREATE TABLE IF NOT EXISTS pii_erasure (
        id bigserial PRIMARY KEY, scope text NOT NULL, erased_at timestamptz NOT NULL,
        erased_by text NOT NULL, reason text, orders integer NOT NULL)""",
)
SQLITE_DDL = (
    """CREATE TABLE IF NOT EXISTS pii_key (
        scope TEXT PRIMARY KEY, key BLOB, created_at TEXT NOT NULL, erased_at TEXT,
        erased_by TEXT)""",
    """CREATE TABLE IF NOT EXISTS pii_erasure (
        id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, erased_at TEXT NOT NULL,
        erased_by TEXT NOT NULL, reason TEXT, orders INTEGER NOT NULL)""",
)
CACHE_SECONDS = 5.0  # how long a process may keep using a key after it was erased
NONCE_BYTES = 12
NONCES_PER_DRAW = 512  # nonces drawn from the OS at once


def create_tables(db: ReadDb) -> None:
    with db.transaction():
        for statement in POSTGRES_DDL if db.dialect == "postgres" else SQLITE_DDL:
            db.execute(statement)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _unb64(text: str) -> bytes:
    # base64.urlsafe_b64decode, without its layers (the projector reveals every sealed
    # value it reads: issue 21). Non-ASCII text or bad base64 raise ValueError, as there.
    return binascii.a2b_base64(text.encode("ascii").translate(_URLSAFE) + b"=" * (-len(text) % 4))


class KeyStore:
    """The `pii_key` table through one connection (used under a lock)."""

    def __init__(
        self, connect: Callable[[], ReadDb] | None = None, db: ReadDb | None = None
    ) -> None:
        """Either `connect` (the store opens, and reopens, its own connection) or `db` (a
        connection owned by the caller, used as it is)."""
        self.connect = connect
        self._db: ReadDb | None = db
        self.owned = db is None
        self.lock = threading.RLock()

    def _now(self, db: ReadDb) -> Any:
        return db.adapt(datetime.now(UTC), "timestamptz")

    def _with_db(self, fn: Callable[[ReadDb], Any]) -> Any:
        """`fn` on the store's connection: after a failure once more on a fresh one, and
        while the server cannot be reached (a restart), again every 0.2 s for about 5 s
        (sealing is the first thing a new order needs from the database)."""
        with self.lock:
            for attempt in reconnect_attempts():
                try:
                    if self._db is None:
                        assert self.connect is not None
                        self._db = self.connect()
                    return fn(self._db)
                except Exception as e:
                    if not self.owned:
                        raise
                    db, self._db = self._db, None
                    if db is not None:
                        with contextlib.suppress(Exception):  # already broken
                            db.close()
                    if attempt == RECONNECT_ATTEMPTS or (attempt > 1 and not unreachable(e)):
                        raise
        raise AssertionError("unreachable")

    def get(self, scope: str) -> tuple[bytes | None, bool]:
        """(key, erased) for a scope; (None, False) when it has none yet."""

        def read(db: ReadDb) -> tuple[bytes | None, bool]:
            row = db.fetchone("SELECT key, erased_at FROM pii_key WHERE scope = %s", (scope,))
            if row is None:
                return None, False
            return (bytes(row[0]) if row[0] is not None else None), row[1] is not None

        found: tuple[bytes | None, bool] = self._with_db(read)
        return found

    def get_or_create(self, scope: str) -> bytes | None:
        """The scope's key, created on first use; None when the scope was erased."""
        key, erased = self.get(scope)
        if key is not None or erased:
            return key

        def create(db: ReadDb) -> None:
            db.execute(
                "INSERT INTO pii_key (scope, key, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (scope) DO NOTHING",
                (scope, AESGCM.generate_key(bit_length=256), self._now(db)),
            )

        self._with_db(create)
        return self.get(scope)[0]

    def close(self) -> None:
        with self.lock:
            if self._db is not None and self.owned:
                self._db.close()
                self._db = None


class ErasedScope(InvalidCommand):
    """New personal data for a customer whose data was erased: it cannot be sealed."""


class Vault:
    """Seals and reveals personal values (the domain's `Sealer`)."""

    def __init__(self, keys: KeyStore, cache_seconds: float = CACHE_SECONDS) -> None:
        self.keys = keys
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, bytes | None]] = {}
        self._ciphers: dict[bytes, AESGCM] = {}
        self._scopes: dict[str, tuple[bytes, str]] = {}  # scope -> (its bytes, token prefix)
        # a token's scope part -> (the scope, its bytes)
        self._scope_parts: dict[str, tuple[str, bytes]] = {}
        self._nonce_lock = threading.Lock()
        self._nonces = b""
        self._nonce_at = 0
        self._nonce_pid = 0

    def _nonce(self) -> bytes:
        """A fresh random 96-bit nonce. Drawn from the OS's CSPRNG like os.urandom(12),
        but NONCES_PER_DRAW at a time: under load the getrandom call cost more than the
        encryption. Every nonce is handed out once (under a lock, for the API's threads),
        and a forked child never uses its parent's unused ones (the pid is checked)."""
        with self._nonce_lock:
            at = self._nonce_at
            if at >= len(self._nonces) or self._nonce_pid != os.getpid():
                self._nonces = os.urandom(NONCE_BYTES * NONCES_PER_DRAW)
                self._nonce_pid = os.getpid()
                at = 0
            self._nonce_at = at + NONCE_BYTES
            return self._nonces[at : at + NONCE_BYTES]

    def _key(self, scope: str, create: bool) -> bytes | None:
        hit = self._cache.get(scope)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        key = self.keys.get_or_create(scope) if create else self.keys.get(scope)[0]
        if key is not None or not create:
            self._cache[scope] = (now, key)
        return key

    def seal(self, scope: str, value: str) -> str:
        if value.startswith(TOKEN_PREFIX):
            return value  # already sealed
        key = self._key(scope, create=True)
        if key is None:
            raise ErasedScope(
                f"the personal data of {scope!r} was erased: new personal data "
                "for it cannot be stored"
            )
        found = self._scopes.get(scope)
        if found is None:
            if len(self._scopes) > 10_000:
                self._scopes.clear()
            raw = scope.encode()
            found = self._scopes[scope] = (raw, f"{TOKEN_PREFIX}{_b64(raw)}:")
        raw, prefix = found
        nonce = self._nonce()
        sealed = self._cipher(key).encrypt(nonce, value.encode(), raw)
        return prefix + _b64(nonce + sealed)

    def reveal(self, value: str) -> str:
        if not value.startswith(TOKEN_PREFIX):
            return value
        try:
            scope_part, data_part = value[len(TOKEN_PREFIX) :].split(":", 1)
            found = self._scope_parts.get(scope_part)
            if found is None:
                if len(self._scope_parts) > 10_000:
                    self._scope_parts.clear()
                scope = _unb64(scope_part).decode()
                found = self._scope_parts[scope_part] = (scope, scope.encode())
            scope, raw = found
            data = _unb64(data_part)
        except (ValueError, UnicodeDecodeError):
            return ERASED
        key = self._key(scope, create=False)
        if key is None:
            return ERASED
        try:
            return self._cipher(key).decrypt(data[:12], data[12:], raw).decode()
        except (InvalidTag, ValueError):
            return ERASED

    def seal_bytes(self, scope: str, data: bytes) -> bytes:
        """`data` sealed under the scope's key: nonce + AES-256-GCM ciphertext, the scope
        as associated data (a dead letter's bytes: consumers/store.py). Raises ErasedScope
        when the scope was erased."""
        key = self._key(scope, create=True)
        if key is None:
            raise ErasedScope(f"the personal data of {scope!r} was erased: it cannot be sealed")
        nonce = self._nonce()
        return nonce + self._cipher(key).encrypt(nonce, data, scope.encode())

    def reveal_bytes(self, scope: str, data: bytes) -> bytes | None:
        """What `seal_bytes` sealed; None once the scope's key is erased (or the bytes do
        not open under it)."""
        key = self._key(scope, create=False)
        if key is None:
            return None
        try:
            return self._cipher(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], scope.encode())
        except (InvalidTag, ValueError):
            return None

    def _cipher(self, key: bytes) -> AESGCM:
        found = self._ciphers.get(key)
        if found is None:
            if len(self._ciphers) > 10_000:
                self._ciphers.clear()
            found = self._ciphers[key] = AESGCM(key)
        return found

    def forget(self, scope: str) -> None:
        self._cache.pop(scope, None)

    def close(self) -> None:
        self.keys.close()


def erase(db: ReadDb, scope: str, actor: str, reason: str | None, orders: int) -> bool:
    """Delete the scope's key and record the erasure. False when it had no key."""
    now = db.adapt(datetime.now(UTC), "timestamptz")
    with db.transaction():
        row = db.fetchone("SELECT key FROM pii_key WHERE scope = %s", (scope,))
        if row is None:  # remember the erasure anyway: no key may be created later
            db.execute(
                "INSERT INTO pii_key (scope, key, created_at, erased_at, erased_by) "
                "VALUES (%s, NULL, %s, %s, %s)",
                (scope, now, now, actor),
            )
        else:
            db.execute(
                "UPDATE pii_key SET key = NULL, erased_at = %s, erased_by = %s WHERE scope = %s",
                (now, actor, scope),
            )
        db.execute(
            "INSERT INTO pii_erasure (scope, erased_at, erased_by, reason, orders) "
            "VALUES (%s, %s, %s, %s, %s)",
            (scope, now, actor, reason, orders),
        )
    return row is not None and row[0] is not None

"""Ed25519 keys for signed audit checkpoints (docs/audit.md): a private key read from a
PKCS#8 PEM file, a public key as the lowercase hex of its 32 raw bytes (or a PEM public key
file), signatures as hex. Through the `cryptography` library.

Every malformed input is a `KeyFileError` with a one-line message naming the file."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEX_DIGITS = frozenset("0123456789abcdef")


class KeyFileError(ValueError):
    """A key file or public key that cannot be used; the message is one line."""


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PKCS#8 PEM file `path` (unencrypted)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the key file {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            f"{path}: the private key is encrypted; give an unencrypted PKCS#8 PEM file "
            "(`serviceorders audit keygen`) and protect it with file permissions"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def generate(path: Path | str) -> Ed25519PrivateKey:
    """A new private key, written to `path` as PKCS#8 PEM readable by the owner only (mode
    0600); an existing file is never overwritten (FileExistsError)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as lowercase hex of its 32 raw bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def is_hex_key(text: str) -> bool:
    return len(text) == 64 and set(text) <= HEX_DIGITS


def parse_public_key(value: str) -> str:
    """A trusted public key given by an auditor: 64 lowercase hex digits, or a file holding
    them or a PEM Ed25519 public key. Returns the hex."""
    if is_hex_key(value.strip().lower()):
        return value.strip().lower()
    try:
        data = Path(value).read_bytes()
    except OSError as e:
        raise KeyFileError(
            f"{value}: neither 64 hex digits nor a readable public key file ({e.strerror or e})"
        ) from None
    text = data.decode("ascii", "replace").strip()
    if is_hex_key(text.lower()):
        return text.lower()
    if b"PRIVATE KEY" in data:
        raise KeyFileError(
            f"{value}: a private key; give the public key (`serviceorders audit public-key`)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{value}: not a PEM public key nor 64 hex digits") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{value}: not an Ed25519 public key ({type(key).__name__})")
    return public_hex(key)


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return key.sign(data).hex()


def verify(public_key: str, signature: str, data: bytes) -> bool:
    """Whether `signature` (hex) is `public_key`'s (hex) over `data`; malformed hex is
    not a signature."""
    try:
        raw_key = bytes.fromhex(public_key)
        raw_signature = bytes.fromhex(signature)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_signature, data)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True

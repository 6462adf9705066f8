"""The Merkle tree over every order's chain head (docs/audit.md).

A leaf is SHA-256 of 0x00 + canonical JSON [order id, version, head hash]; a parent is
SHA-256 of 0x01 + left + right; the root over no heads is SHA-256 of 0x02. `HeadTree` keeps
the heads in 256 buckets so that only the buckets that changed are recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from serviceorders.domain.chain import canonical


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EMPTY_ROOT = sha(b"\x02")  # the root over no heads at all


def head_leaf(order_id: str, version: int, head_hash: str) -> bytes:
    """A Merkle leaf: SHA-256 of 0x00 + canonical JSON [order id, version, head hash]."""
    return hashlib.sha256(b"\x00" + canonical([order_id, version, head_hash])).digest()


def merkle(nodes: list[bytes]) -> bytes:
    """Binary Merkle tree over the nodes in order: a parent is SHA-256(0x01 + left + right);
    an odd node at the end of a level is carried up unchanged."""
    if not nodes:
        return bytes.fromhex(EMPTY_ROOT)
    while len(nodes) > 1:
        paired = [
            hashlib.sha256(b"\x01" + nodes[i] + nodes[i + 1]).digest()
            for i in range(0, len(nodes) - 1, 2)
        ]
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
    return nodes[0]


class HeadTree:
    """Every order's chain head, and their Merkle root.

    The orders, sorted by id, fall into 256 consecutive buckets by the first byte of the
    id; the root is the Merkle root over the 256 bucket roots (each the Merkle root over its
    sorted leaves, an empty bucket the empty root). Sorted by id overall, but only the
    buckets that changed are recomputed from one checkpoint to the next."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self._leaves: list[dict[str, bytes]] = [{} for _ in range(256)]
        self._roots: list[bytes | None] = [None] * 256

    def __len__(self) -> int:
        return len(self.heads)

    def get(self, order_id: str) -> tuple[int, str] | None:
        return self.heads.get(order_id)

    def set(self, order_id: str, version: int, head_hash: str) -> None:
        self.heads[order_id] = (version, head_hash)
        bucket = int(order_id[:2], 16)
        self._leaves[bucket][order_id] = head_leaf(order_id, version, head_hash)
        self._roots[bucket] = None

    def root(self) -> str:
        for i, root in enumerate(self._roots):
            if root is None:
                leaves = self._leaves[i]
                self._roots[i] = merkle([leaves[k] for k in sorted(leaves)])
        return merkle(list(self._roots)).hex()  # type: ignore[arg-type]


def changes_digest(changes: Iterable[tuple[str, int, str]]) -> str:
    """SHA-256 of the canonical JSON list of [order id, version, head hash], sorted."""
    return sha(canonical(sorted([list(c) for c in changes])))

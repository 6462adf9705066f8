"""`audit export`: JSON lines for an auditor (docs/audit.md): a header, every stored event
exactly as stored (decoded, not upcast), then every checkpoint with its changed heads and
the chain heads the projector has read; `verify.verify_file` checks such a file without a
database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any
from uuid import UUID

import orjson
from serviceorders.audit.checkpoints import FORMAT, Checkpoint, load_checkpoints
from serviceorders.audit.store import Row, Store
from serviceorders.storage import seen
from serviceorders.storage.db import ReadDb
from serviceorders.support.isotime import now_iso, parse, utc_iso

Progress = Callable[[int], Any]


def export(
    db: ReadDb,
    out: IO[str],
    *,
    order_id: UUID | None = None,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write JSON lines: a header, every stored event (state exactly as stored, decoded, not
    upcast), then every checkpoint with its changed heads, then the heads the projector
    has read (of the exported order; none with `since`, whose chains start later). Returns
    the header."""
    store = Store(db)
    checkpoints = load_checkpoints(db) if db.table_exists("audit_checkpoint") else []
    # before the events: every event a head names is stored by then
    heads = {} if since is not None else seen.load(db)
    if order_id is not None:
        heads = {k: v for k, v in heads.items() if k == str(order_id)}
    header = {
        "type": "export",
        "format": FORMAT,
        "exported_at": now_iso(),
        "position": store.head(),
        "order": str(order_id) if order_id else None,
        "since": utc_iso(since if since.tzinfo else since.replace(tzinfo=UTC)) if since else None,
        "complete": order_id is None and since is None,
        "public_keys": public_keys(checkpoints),
    }
    out.write(orjson.dumps(header).decode() + "\n")
    events = 0
    for row in store.rows(order_id, keep_raw=True):
        if progress:
            progress(1)
        if since is not None and not _since(row, since):
            continue
        line: dict[str, Any] = {
            "type": "event",
            "order_id": row.order_id,
            "version": row.version,
            "topic": row.topic,
            "position": row.position,
        }
        if row.state is not None:
            line["state"] = row.state
        else:
            line["state_raw"] = (row.raw or b"").hex()
        out.write(orjson.dumps(line).decode() + "\n")
        events += 1
    for c in checkpoints:
        out.write(
            orjson.dumps({"type": "checkpoint", **c.to_json(with_changes=True)}).decode() + "\n"
        )
    for oid, (version, head, position) in sorted(heads.items()):
        line = {
            "type": "seen_head",
            "order_id": oid,
            "version": version,
            "head_hash": head,
            "position": position,
        }
        out.write(orjson.dumps(line).decode() + "\n")
    return {**header, "events": events, "checkpoints": len(checkpoints), "seen_heads": len(heads)}


def public_keys(checkpoints: list[Checkpoint]) -> list[dict[str, Any]]:
    """The keys that signed the checkpoints, in order of first use: [{"public_key": hex,
    "first_seq": n}] (for the auditor's information: trust comes from pinned keys and
    the endorsements in the checkpoints, never from this list)."""
    first: dict[str, int] = {}
    for c in checkpoints:
        if c.public_key is not None and c.public_key not in first:
            first[c.public_key] = c.seq
    return [{"public_key": k, "first_seq": seq} for k, seq in first.items()]


def _since(row: Row, since: datetime) -> bool:
    stamp = row.state.get("timestamp") if row.state is not None else None
    if not isinstance(stamp, str):
        return True  # cannot tell: keep it
    try:
        at = parse(stamp)
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return at >= since

"""Audit and personal data: tamper evidence for the event store, the order's history for
auditors, the auditors' access log, and the sealed personal data (docs/audit.md).

* `merkle`: the Merkle tree over every order's chain head.
* `store`: the events and snapshots tables read exactly as stored.
* `checkpoints`: checkpoint the chain heads (the tables, creating one, the background
  checkpointer, the anchor export).
* `verify`: recompute every chain, check every checkpoint, an anchor and (`snapshots`) every
  snapshot, from the database or offline from an export; `report` is what it found.
* `export`: JSON lines for an offline audit.
* `pii`, `erasure`: the keys that seal personal data, and erasing a customer's.
* `history`, `access_log`: the order's history for auditors, and who read it.

The room sits below the doors and the runtime: it takes a `ReadDb`, the application or a
settings value as arguments and imports neither the runtime nor a door.
"""

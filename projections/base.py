"""The base of every read model (`views.py`, `notifications.py`)."""

from __future__ import annotations

from typing import ClassVar

from serviceorders.projections.log import Batch
from serviceorders.storage.db import ReadDb, Table


class Projection:
    """A read model: its table, and how a page of the log changes it."""

    table: ClassVar[Table]
    # The shape of the table and of what is in its rows. Raise it whenever a change to the
    # table or to `apply` makes rows written before it wrong: `serviceorders db init` then
    # rebuilds the read model from the log (docs/architecture.md, "Schema versions and
    # upgrades"); never ALTER a read model's table by hand.
    VERSION: ClassVar[int] = 1

    @property
    def name(self) -> str:
        return self.table.name

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        raise NotImplementedError

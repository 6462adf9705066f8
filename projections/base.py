"""The base of every read model (`views.py`, `notifications.py`)."""

from __future__ import annotations

from typing import ClassVar

from .db import ReadDb, Table
from .log import Batch


class Projection:
    """A read model: its table, and how a page of the log changes it."""

    table: ClassVar[Table]

    @property
    def name(self) -> str:
        return self.table.name

    def apply(self, db: ReadDb, batch: Batch, table: str) -> None:
        raise NotImplementedError

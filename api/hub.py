"""TMF641 `hub`: listeners registered for notifications delivered from the event log."""

from __future__ import annotations

from fastapi import APIRouter

from ..tmf641 import BASE_PATH

router = APIRouter(prefix=BASE_PATH, tags=["TMF641 hub"])

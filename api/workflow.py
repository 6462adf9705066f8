"""The workflow beyond TMF641, under /api/v1: capture, review, fulfilment, history."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["workflow"])

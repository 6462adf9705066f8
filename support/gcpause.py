"""The cyclic garbage collector paused for one batch of work (an intake batch, a projection
page), then back as it was.

A batch allocates tens of thousands of small objects (pydantic values, events, the orders
held in memory, rows) that stay alive until it is written: every young-generation
collection during the batch traverses them again, and that cost more CPU than the work
itself (measured: about a third of the intake's CPU per order, half of a projection page's
decoding). Batches are bounded, so the cyclic garbage one leaves is bounded too, and the
collector takes it at its next run after the batch; everything else is freed by reference
counting as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():  # someone else (another thread's batch) manages it
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

"""What every request handler needs: the application, the read models, the actor, and
read-your-writes (a write returns only once the projections have reached it)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from serviceorders.api.auth import Authenticator
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.codec import OrjsonTranscoder, PydanticMapper
from serviceorders.projections.queries import ReadModels
from serviceorders.projections.runner import Projector
from serviceorders.settings import Settings
from serviceorders.storage.db import RECONNECT_ATTEMPTS, ReadDb, reconnect_attempts, unreachable


@dataclass
class ApiContext:
    settings: Settings
    app: ServiceOrders
    auth: Authenticator
    base_url: str | None = None  # for absolute hrefs when set; else from the request
    sync_timeout: float = 10.0
    # How read-your-writes gets a projector: the composition root's (with its schema check,
    # runtime/bootstrap.py `build_api_context`, which builds every context a process serves);
    # None: a plain projector on a new connection.
    new_projector: Callable[[], Projector] | None = None
    _pool: queue.Queue[ReadDb] = field(default_factory=queue.Queue)
    _projectors: queue.Queue[Projector] = field(default_factory=queue.Queue)
    _rounds: _Rounds = field(default_factory=lambda: _Rounds())

    def _connect(self) -> ReadDb:
        return ReadDb.connect(self.settings.database, self.settings.lock_timeout_seconds)

    def _projector(self) -> Projector:
        if self.new_projector is not None:
            return self.new_projector()
        mapper = PydanticMapper(transcoder=OrjsonTranscoder())
        return Projector(self._connect(), mapper, batch_size=self.settings.projection_batch_size)

    def _pooled(self) -> ReadDb:
        """An idle connection that still works (the server may have closed it: a database
        restart), else a new one."""
        while True:
            try:
                db = self._pool.get_nowait()
            except queue.Empty:
                return self._connect()
            if db.alive():
                return db
            db.close()

    @contextmanager
    def read(self) -> Iterator[ReadModels]:
        db = self._pooled()
        try:
            yield ReadModels(db)
        except Exception:
            db.close()  # it may be broken; the next request opens a fresh one
            raise
        else:
            self._pool.put(db)

    def sync(self) -> None:
        """Bring the read models up to the log head as it is now (read-your-writes).

        Concurrent callers share the work: one projection round, started after every one
        of them called, serves them all (see `_Rounds`)."""
        self._rounds.join(self._sync_now)

    def _sync_now(self) -> None:
        # A dropped connection (a database restart: the other idle ones are gone too) is
        # tried again on a new one, and again while the server cannot be reached.
        for attempt in reconnect_attempts():
            projector = None
            try:
                try:
                    projector = self._projectors.get_nowait() if attempt == 1 else self._projector()
                except queue.Empty:
                    projector = self._projector()
                projector.wait_until(projector.log.head(), timeout=self.sync_timeout)
            except Exception as e:
                if projector is not None:
                    projector.db.close()
                dropped = unreachable(e) or (
                    projector is not None and projector.db.is_disconnect(e)
                )
                if not dropped or attempt == RECONNECT_ATTEMPTS:
                    raise
                self._drain(self._projectors)
                continue
            self._projectors.put(projector)
            return

    @staticmethod
    def _drain(pool: queue.Queue[Any]) -> None:
        while True:
            try:
                item = pool.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                (item.db if isinstance(item, Projector) else item).close()

    def close(self) -> None:
        self._drain(self._pool)
        self._drain(self._projectors)
        self.app.close()


class _Rounds:
    """Runs `work` for many waiting threads at once: a caller needs one round that starts
    after its call (a round already running may have read the log before the caller's
    write); the first caller to find no round running runs the next one for every caller
    waiting, and its outcome (done, or the error) is theirs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0  # rounds started (one is running while it is ahead of _finished)
        self._finished = 0  # rounds finished
        self._error: BaseException | None = None  # how the latest finished round ended

    def join(self, work: Callable[[], None]) -> None:
        with self._cond:
            needed = self._started + 1
            while self._finished < needed:
                if self._started > self._finished:  # a round is running
                    self._cond.wait()
                    continue
                self._started += 1
                self._cond.release()
                error: BaseException | None = None
                try:
                    work()
                except BaseException as e:
                    error = e
                finally:
                    self._cond.acquire()
                    self._finished, self._error = self._started, error
                    self._cond.notify_all()
            # Every round from `needed` on started after the call: the latest one decides.
            error = self._error
        if error is not None:
            raise error

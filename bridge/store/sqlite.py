"""SQLite's single writer: a write lock that queues threads and processes, and group commit on top of it.

PostgreSQL needs neither: its writers do not block each other on the whole file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Connection, Engine

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows; SQLite's busy timeout still applies
    fcntl = None  # type: ignore[assignment]

Item = TypeVar("Item")
Result = TypeVar("Result")


class WriteLock:
    """Writers to one SQLite file wait their turn here rather than in SQLite's busy handler.

    SQLite lets one writer in at a time; the others sleep in its busy handler, whose sleeps
    grow to 100 ms, so under a burst a few unlucky requests wait a second while others pass
    them. Here a thread lock queues the threads of a process and ``flock`` on
    ``<database>.lock`` queues the processes; the kernel wakes the next waiter as soon as
    the lock is free and releases it when its holder dies. Nothing is held across network
    calls: only the length of one write transaction.
    """

    def __init__(self, database: str | None) -> None:
        self.path = f"{database}.lock" if database and database != ":memory:" and fcntl else None
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self.threads_turn(), self.process_turn():
            yield

    def threads_turn(self) -> threading.Lock:
        """This process's turn: the first half of :meth:`hold`."""
        return self._threads

    @contextmanager
    def process_turn(self) -> Iterator[None]:
        """The file's turn among processes: the second half of :meth:`hold`."""
        if self.path is None:
            yield
            return
        fd = self._file()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        # opened per process: a descriptor inherited across fork() shares its lock with the parent
        if self._fd is None or self._pid != os.getpid():
            assert self.path is not None
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self._fd


@dataclass
class _Waiting(Generic[Item]):
    item: Item
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Writes that arrive while another thread of this process holds the write lock are
    committed together by whichever of their threads gets the lock next, in one transaction.

    A burst then costs one commit (one fsync) per group, not per write, and every caller
    still returns only after its own write is committed. ``write(conn, item)`` does one
    item's work; an exception of an ``own_errors`` type fails only that item (it must have
    written nothing); any other error rolls the group back, and then each item is written
    in a transaction of its own, so one bad item fails alone.
    """

    def __init__(
        self,
        engine: Engine,
        lock: WriteLock,
        write: Callable[[Connection, Item], Result],
        own_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.write = write
        self.own_errors = own_errors
        self._waiting: list[_Waiting[Item]] = []
        self._waiting_lock = threading.Lock()

    def submit(self, item: Item) -> Result:
        """Write ``item`` (maybe with others); its result, or its error raised here."""
        waiting = _Waiting(item)
        with self._waiting_lock:
            self._waiting.append(waiting)
        with self.lock.threads_turn():
            if not waiting.done:
                self._commit_group()
        if waiting.error is not None:
            raise waiting.error
        return cast(Result, waiting.result)

    def waiting(self) -> int:
        """How many writes are queued for the next group (tests)."""
        with self._waiting_lock:
            return len(self._waiting)

    def _commit_group(self) -> None:
        with self.engine.connect() as conn, self.lock.process_turn():
            with self._waiting_lock:  # as late as possible: whoever came while we waited joins in
                group, self._waiting = self._waiting, []
            self._commit(conn, group)

    def _commit(self, conn: Connection, group: list[_Waiting[Item]]) -> None:
        try:
            with conn.begin():
                for each in group:
                    try:
                        each.result = self.write(conn, each.item)
                    except self.own_errors as exc:
                        each.error = exc
        except BaseException as exc:
            if len(group) == 1 or not isinstance(exc, Exception):
                for each in group:
                    each.result, each.error = None, exc
            else:
                self._commit_one_by_one(conn, group)
        finally:
            for each in group:
                each.done = True

    def _commit_one_by_one(self, conn: Connection, group: list[_Waiting[Item]]) -> None:
        for each in group:
            each.result, each.error = None, None
            try:
                with conn.begin():
                    each.result = self.write(conn, each.item)
            except Exception as own:
                each.error = own

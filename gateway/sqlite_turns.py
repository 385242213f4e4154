"""Writers to one SQLite file take turns: a file lock taken before SQLite's own write lock.

SQLite lets one writer at a time hold its write lock; the others wait in its
busy handler, which sleeps and retries with a growing back-off (up to 100 ms a
try).  Under steady writing that is unfair: a waiter that happens to sleep
while the lock changes hands loses its turn again and again, and a worker or the
relay, writing less often than the web workers, could wait seconds for a
hand-over (measured: submit → handed over p99 21 s under 8 writers).

So every connection takes an exclusive `flock` on `<database>.writers` before
its first write statement (or `BEGIN IMMEDIATE`) and gives it up right after
its commit or rollback.  A kernel lock blocks without polling and wakes a
waiter the moment it is free, so SQLite's own lock is almost always free when
asked for, and writers of every process (gunicorn, the relay, RQ workers, the
CLI) go in turn.  Readers never take it (WAL lets them read meanwhile).

A thread takes the file lock once however many of its connections write (the
nesting a `write_transaction` forbids would otherwise wait for itself for
ever, rather than fail after SQLite's busy timeout as it does).

Turns are fair per waiter, which is not enough for the hand-over path: one RQ
worker hands over what eight web threads submit, so with a turn per waiter it
falls behind for good (measured: hand-over p99 21 s).  The relay and the
workers therefore go first (`give_this_process_priority`): while one of them
waits for the lock (holding `<database>.writers-first` shared), a web writer
that gets the lock gives it back and waits until no such writer is waiting.
They are few and write briefly, so the web writers are never shut out.

The wait has no timeout (flock has none), where SQLite's busy handler gave up
after 15 s: a writer waits as long as the one ahead of it takes.  The gateway
never holds a write transaction across network I/O, and the kernel releases a
dead process's lock, so only a process hung inside a write transaction could
hold the others up.
"""

from __future__ import annotations

import fcntl
import os
import threading
from typing import ClassVar

_THIS_PROCESS = {"first": False}  # set by the hand-over path's processes (`gateway worker`, `gateway outbox relay`)


def give_this_process_priority() -> None:
    """This process's writers take their turn before those of processes without priority (see above)."""
    _THIS_PROCESS["first"] = True


WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE", "CREATE", "DROP", "ALTER")


class _Turn:
    """One thread's hold on the file lock, shared by its writing connections."""

    def __init__(self, fd: int, thread: int):
        self.fd, self.thread, self.holders = fd, thread, 0


class WriterTurns:
    """The file lock of one SQLite database, handed to connections as they start writing.

    One per database file and process (`for_database`), whatever the number of engines on it: a thread
    holding the turn through one engine must not wait for itself through another."""

    _registry: ClassVar[dict[str, WriterTurns]] = {}
    _registry_guard = threading.Lock()

    @classmethod
    def for_database(cls, database_path: str) -> WriterTurns:
        with cls._registry_guard:
            if database_path not in cls._registry:
                cls._registry[database_path] = cls(database_path)
            return cls._registry[database_path]

    def __init__(self, database_path: str):
        self.path = f"{database_path}.writers"
        self.first_path = f"{database_path}.writers-first"
        self._by_thread: dict[int, _Turn] = {}
        self._by_connection: dict[int, _Turn] = {}
        self._guard = threading.Lock()

    def before_statement(self, dbapi_connection, statement: str) -> None:
        """Called before every statement: a connection's first write waits for its turn."""
        if id(dbapi_connection) in self._by_connection:
            return
        if statement.lstrip()[:15].upper().startswith(WRITE_STATEMENTS):
            self._acquire(id(dbapi_connection))

    def _acquire(self, key: int) -> None:
        thread = threading.get_ident()
        with self._guard:
            turn = self._by_thread.get(thread)
        if turn is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                self._wait_for_turn(fd)
            except BaseException:
                os.close(fd)
                raise
            turn = _Turn(fd, thread)
        with self._guard:
            self._by_thread[thread] = turn
            turn.holders += 1
            self._by_connection[key] = turn

    def _wait_for_turn(self, fd: int) -> None:
        """flock blocks without polling and wakes a waiter the moment the lock is free."""
        first = os.open(self.first_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if _THIS_PROCESS["first"]:
                fcntl.flock(first, fcntl.LOCK_SH)  # "a writer that goes first is waiting"
                fcntl.flock(fd, fcntl.LOCK_EX)
                return  # closing `first` below drops the shared hold
            while True:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: nobody who goes first waits
                    return
                except BlockingIOError:
                    pass
                fcntl.flock(fd, fcntl.LOCK_UN)  # give the turn to whoever goes first
                fcntl.flock(first, fcntl.LOCK_EX)  # ...and wait until none of them waits any more
                fcntl.flock(first, fcntl.LOCK_UN)
        finally:
            os.close(first)

    def release(self, dbapi_connection) -> None:
        """After a connection's commit or rollback (and when it goes back to the pool or is closed)."""
        with self._guard:
            turn = self._by_connection.pop(id(dbapi_connection), None)
            if turn is None:
                return
            turn.holders -= 1
            if turn.holders:
                return
            if self._by_thread.get(turn.thread) is turn:
                del self._by_thread[turn.thread]
        fcntl.flock(turn.fd, fcntl.LOCK_UN)
        os.close(turn.fd)

"""Writers to one SQLite file take turns through a file lock, and the hand-over path's processes go first.

Real flock on a real file, across a real child process (priority is per process); the gateway's own
Database on a SQLite file: its writers are serialised by the turn lock before SQLite's busy handler.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from sqlalchemy import text

from gateway.db import Database
from gateway.sqlite_turns import WriterTurns, give_this_process_priority


class Connection:
    """Stands for a DB-API connection: the turn lock only keys on its identity."""


def _first_waiter_is_priority(path: str) -> None:
    """Child process: go first, take the turn, note when, hold it a moment."""
    give_this_process_priority()
    turns = WriterTurns(path)
    connection = Connection()
    turns.before_statement(connection, "INSERT INTO t VALUES (1)")
    Path(path + ".child-got-it").write_text(repr(time.monotonic()))
    time.sleep(0.2)
    turns.release(connection)


def _someone_goes_first(path: str) -> bool:
    """True while a priority writer waits (it holds the `-first` file shared)."""
    import fcntl
    import os

    fd = os.open(path + ".writers-first", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_waiting_relay_or_worker_writes_before_a_web_writer_that_waited_too(tmp_path):
    path = str(tmp_path / "gateway.db")
    turns = WriterTurns(path)
    holder = Connection()
    turns.before_statement(holder, "UPDATE t SET x = 1")  # this thread writes; everyone else waits
    child = multiprocessing.get_context("fork").Process(target=_first_waiter_is_priority, args=(path,))
    child.start()
    deadline = time.monotonic() + 10
    while not _someone_goes_first(path):
        assert time.monotonic() < deadline, "the priority writer never started waiting"
        time.sleep(0.01)
    web_got_it: list[float] = []

    def web_writer() -> None:
        connection = Connection()
        turns.before_statement(connection, "BEGIN IMMEDIATE")
        web_got_it.append(time.monotonic())
        turns.release(connection)

    web = threading.Thread(target=web_writer)
    web.start()
    time.sleep(0.2)  # the web writer waits for the lock too
    assert not web_got_it
    turns.release(holder)
    web.join(timeout=10)
    child.join(timeout=10)
    assert child.exitcode == 0
    child_got_it = float(Path(path + ".child-got-it").read_text())
    assert web_got_it and child_got_it < web_got_it[0]
    assert web_got_it[0] - child_got_it >= 0.15  # and the web writer waited for its whole turn


def test_reads_take_no_turn_and_one_thread_never_waits_for_itself(tmp_path):
    turns = WriterTurns(str(tmp_path / "gateway.db"))
    first, second = Connection(), Connection()
    turns.before_statement(first, "SELECT 1")
    assert not turns._by_connection  # a read takes no turn
    turns.before_statement(first, "INSERT INTO t VALUES (1)")
    turns.before_statement(second, "  delete from t")  # the same thread: held already, no wait
    assert len(turns._by_connection) == 2
    turns.release(first)
    turns.release(second)
    turns.release(second)  # twice is harmless
    assert not turns._by_connection and not turns._by_thread


def test_concurrent_writers_through_the_gateways_database_all_commit(tmp_path):
    """Eight threads and two Database objects on one file: every write lands, none fails on a busy lock."""
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    dbs = [Database(url), Database(url)]
    with dbs[0].transaction() as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))
    errors: list[Exception] = []

    def write(n: int) -> None:
        try:
            for i in range(25):
                with dbs[n % 2].write_transaction() as session:
                    session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n * 100 + i})
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with dbs[0].transaction() as session:
        assert session.scalar(text("SELECT count(*) FROM t")) == 200
    turns = WriterTurns.for_database(str((tmp_path / "gateway.db").resolve()))
    assert not turns._by_connection  # every turn given back
    for db in dbs:
        db.dispose()


def test_the_turn_is_given_back_at_commit_not_when_the_connection_goes_back_to_the_pool(tmp_path):
    """SQLAlchemy commits through the pool's proxy of the connection; the turn is keyed on the DB-API
    connection itself, and must be free as soon as COMMIT returns (another writer can go while this
    connection still does its reads or waits to be returned)."""
    path = tmp_path / "gateway.db"
    db = Database(f"sqlite:///{path}")
    turns = WriterTurns.for_database(str(path.resolve()))
    with db.engine.connect() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
        assert turns._by_connection  # the first write took the turn
        connection.commit()
        assert not turns._by_connection  # given back at COMMIT, the connection still checked out
        connection.execute(text("INSERT INTO t VALUES (1)"))
        assert turns._by_connection
        connection.rollback()
        assert not turns._by_connection  # and at ROLLBACK
    db.dispose()
